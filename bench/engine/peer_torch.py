#!/usr/bin/env python3
"""PyTorch peer for the engine benchmark (same flags as radbatch's engine bench).

  --model mobilenetv2  torchvision.models.mobilenet_v2(weights=None).features (the same
                       MobileNetV2 1.0 body as Keras' include_top=False, 1280 channels
                       out) + the seed-000 head: global average pool -> Dropout(0.3) ->
                       Linear(1280,128) -> ReLU -> Linear(128,2)
  --model cnn          the seed-001 CNN: 4 x [Conv2d 3x3 valid 32/64/128/128 ->
                       BatchNorm2d -> ReLU -> MaxPool2d(2)] -> Flatten -> Linear(512) ->
                       ReLU -> Linear(2)
  --mode infer         model.eval() under torch.inference_mode()
         train-frozen  base.eval() with requires_grad False, run under no_grad (no
                       autograd graph through it); head in train mode; Adam on the head
         train-full    model.train(): BatchNorm with batch statistics (--bn moving: the
                       base's BatchNorm in eval mode, still trainable)
  Loss: cross-entropy on the logits (= sparse categorical cross-entropy after softmax);
  Adam(lr 1e-4).

Threads: torch.set_num_threads(--threads), torch.set_num_interop_threads(1). Memory
format: --channels_last 1/0, or auto (default): time a few iterations in each and keep the
faster (the JSON says which). Run it with
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295 (PyTorch's
CPU allocator then stops returning and re-faulting its large buffers; bench/engine/run.sh
sets it). Input: a fixed batch of random floats in [-1, 1); labels random 0/1.
Prints one JSON line: images_per_s (over the K timed iterations), iter_s list, details.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402


def build(torch, model, size):
    nn = torch.nn
    if model == "mobilenetv2":
        import torchvision
        base = torchvision.models.mobilenet_v2(weights=None).features
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3),
                             nn.Linear(1280, 128), nn.ReLU(inplace=True), nn.Linear(128, 2))
        return base, head
    if model == "cnn":
        layers, cin, s = [], 3, size
        for f in (32, 64, 128, 128):
            layers += [nn.Conv2d(cin, f, 3), nn.BatchNorm2d(f, eps=1e-3, momentum=0.01),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin, s = f, (s - 2) // 2
        body = nn.Sequential(*layers)
        head = nn.Sequential(nn.Flatten(), nn.Linear(cin * s * s, 512), nn.ReLU(inplace=True),
                             nn.Linear(512, 2))
        return body, head
    raise SystemExit("unknown model %r" % model)


def make_step(torch, base, head, mode, bn, x, y):
    if mode == "infer":
        base.eval()
        head.eval()

        def step():
            with torch.inference_mode():
                return head(base(x))
        return step
    loss_fn = torch.nn.CrossEntropyLoss()
    if mode == "train-frozen":
        base.eval()
        base.requires_grad_(False)
        head.train()
        opt = torch.optim.Adam(head.parameters(), lr=1e-4)

        def step():
            with torch.no_grad():
                feat = base(x)
            loss = loss_fn(head(feat), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
        return step
    base.train(bn == "batch")
    head.train()
    opt = torch.optim.Adam(list(base.parameters()) + list(head.parameters()), lr=1e-4)

    def step():
        loss = loss_fn(head(base(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step


def run(torch, a, channels_last, iters, warmup):
    torch.manual_seed(123)
    base, head = build(torch, a.model, a.size)
    if a.model == "cnn" and a.mode == "train-frozen":
        raise SystemExit("cnn has no base to freeze")
    g = torch.Generator().manual_seed(123)
    x = torch.rand(a.batch, 3, a.size, a.size, generator=g) * 2 - 1
    y = torch.randint(0, 2, (a.batch,), generator=g)
    if channels_last:
        base = base.to(memory_format=torch.channels_last)
        head = head.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    step = make_step(torch, base, head, a.mode, a.bn, x, y)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in list(base.parameters()) + list(head.parameters()) if p.requires_grad)
    return times, params


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("mobilenetv2", "cnn"), required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--mode", choices=("infer", "train-frozen", "train-full"), required=True)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels_last", choices=("auto", "0", "1"), default="auto")
    p.add_argument("--bn", choices=("batch", "moving"), default="batch")
    a = p.parse_args()

    import torch
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)

    if a.channels_last == "auto":
        trial = {}
        for cl in (False, True):
            t, _ = run(torch, a, cl, iters=3, warmup=2)
            trial[cl] = min(t)  # the least disturbed iteration
        cl = trial[True] < trial[False]
        choice = "auto (trial best s/iter: contiguous %.3f, channels_last %.3f)" % (trial[False], trial[True])
    else:
        cl = a.channels_last == "1"
        choice = "forced"
    times, params = run(torch, a, cl, a.iters, a.warmup)
    common.emit({
        "framework": "torch", "version": torch.__version__, "model": a.model, "size": a.size,
        "batch": a.batch, "mode": a.mode, "threads": a.threads, "bn": a.bn,
        "channels_last": bool(cl), "memory_format_choice": choice,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "trainable_params": int(params),
        "images_per_s": a.batch * len(times) / sum(times),
        "iter_s": [round(t, 5) for t in times],
    })


if __name__ == "__main__":
    main()
