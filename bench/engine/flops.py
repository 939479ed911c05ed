#!/usr/bin/env python3
"""FLOPs per image of the engine benchmark rows, counted analytically.

Convention (the usual one for GFLOP/s figures):
  * only the multiply-adds of Conv2D, DepthwiseConv2D and Dense count, 2 FLOPs each;
    BatchNormalization, activations, pooling, Add, softmax/loss and the optimizer update
    are memory-bound element-wise work and are not counted;
  * inference: the forward pass;
  * a training step: for every trainable layer the forward pass + the weight gradient (same
    MACs as forward) + the input gradient (same MACs as forward) unless no layer below
    needs it (the first layer of the network, or the first layer above a frozen base);
    a frozen base costs its forward pass only.
Shapes follow Keras: MobileNetV2 alpha 1.0 (stride-2 layers give ceil(n/2)), the seed-000
head, the seed-001 CNN. `python3 bench/engine/flops.py --check` compares the forward and
training counts with PyTorch's own counter (torch.utils.flop_counter) on the torchvision
models the PyTorch peer runs: it agrees exactly on every row except full MobileNetV2
training, where PyTorch 2.x's counter charges the backward of a grouped (depthwise)
convolution as if it were a dense one (it ignores `groups` in convolution_backward: a
3x3 depthwise layer on 96 channels at 40x40 is counted 97x its forward cost instead of 2x).
"""

import argparse
import json
import sys

# (expansion t, output channels c, repeats n, first stride s) -- MobileNetV2 paper, Table 2
MBV2_BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1)]


def _ceil2(n):
    return (n + 1) // 2


def mobilenetv2_layers(size):
    """[(name, macs, part)] for MobileNetV2 1.0 without top + the seed-000 head."""
    out = []
    h = _ceil2(size)
    out.append(("Conv1", h * h * 32 * 3 * 9, "base"))
    cin = 32
    for bi, (t, c, n, s) in enumerate(MBV2_BLOCKS):
        for r in range(n):
            stride = s if r == 0 else 1
            hid = cin * t
            if t != 1:
                out.append(("block%d_%d_expand" % (bi, r), h * h * hid * cin, "base"))
            ho = _ceil2(h) if stride == 2 else h
            out.append(("block%d_%d_depthwise" % (bi, r), ho * ho * hid * 9, "base"))
            out.append(("block%d_%d_project" % (bi, r), ho * ho * c * hid, "base"))
            h, cin = ho, c
    out.append(("Conv_1", h * h * 1280 * 320, "base"))
    out.append(("dense", 1280 * 128, "head"))
    out.append(("dense_1", 128 * 2, "head"))
    return out


def cnn_layers(size):
    out = []
    cin, s = 3, size
    for i, f in enumerate((32, 64, 128, 128)):
        s = s - 2
        out.append(("conv%d" % i, s * s * f * cin * 9, "base"))
        s //= 2
        cin = f
    out.append(("dense", s * s * cin * 512, "head"))
    out.append(("dense_1", 512 * 2, "head"))
    return out


def flops_per_image(model, size, mode):
    layers = mobilenetv2_layers(size) if model == "mobilenetv2" else cnn_layers(size)
    fwd = sum(m for _, m, _ in layers)
    if mode == "infer":
        return 2 * fwd
    total = 0
    need_input_grad = False  # does any layer below need a gradient?
    for _name, macs, part in layers:
        frozen = mode == "train-frozen" and part == "base"
        total += macs  # forward
        if frozen:
            continue
        total += macs  # weight gradient
        if need_input_grad:
            total += macs  # input gradient
        need_input_grad = True
    return 2 * total


ROWS = [
    ("mobilenetv2", 224, "infer"),
    ("mobilenetv2", 160, "train-frozen"),
    ("mobilenetv2", 160, "train-full"),
    ("cnn", 150, "train-full"),
]


def torch_count(model, size, mode):
    """FLOPs per image by torch.utils.flop_counter on the PyTorch peer's models."""
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    import peer_torch
    base, head = peer_torch.build(torch, model, size)
    x = torch.rand(2, 3, size, size)
    if mode == "train-frozen":
        base.requires_grad_(False)
    with FlopCounterMode(display=False) as fc:
        if mode == "infer":
            with torch.no_grad():
                head(base(x))
        else:
            head(base(x)).sum().backward()
    return fc.get_total_flops() / 2


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="compare with PyTorch's flop counter")
    a = p.parse_args()
    res = {}
    for model, size, mode in ROWS:
        key = "%s-%d-%s" % (model, size, mode)
        res[key] = flops_per_image(model, size, mode)
        line = "%-30s %8.3f GFLOP/image" % (key, res[key] / 1e9)
        if a.check:
            t = torch_count(model, size, mode)
            line += "   torch counter %8.3f (%+.2f%%)" % (t / 1e9, 100.0 * (t - res[key]) / res[key])
            if model == "mobilenetv2" and mode == "train-full":
                line += "  (counter ignores groups in depthwise backward)"
        print(line)
    if not a.check:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
