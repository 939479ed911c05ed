"""PyTorch + PIL peer of `radbatch infer`.

A torch DataLoader over the sorted file list (--workers worker processes, the main
process computes): PIL Image.open -> convert("RGB") -> resize((SIZE, SIZE), BILINEAR; Pillow
antialiases when shrinking, as radbatch does) -> tensor scaled to [-1, 1] (MobileNetV2's
Keras preprocessing); torchvision mobilenet_v2(weights=None).features + AdaptiveAvgPool ->
Dropout(0.3) -> Linear(1280,128) -> ReLU -> Linear(128,2) -> softmax, eval() under
torch.inference_mode(), channels_last; rows path,prob_0,prob_1 written to a CSV.
torch.set_num_threads(--threads), 1 inter-op thread. Run it with
GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295 (as the driver
does): PyTorch's CPU allocator otherwise maps and unmaps every activation.

Prints one JSON line: images, seconds (from the listing to the CSV closed; model built and
warmed before the clock), wall (whole process)."""
import argparse
import os
import sys
import time

T_START = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402


class Files:
    def __init__(self, paths, size):
        self.paths, self.size = paths, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        import numpy as np
        import torch
        from PIL import Image
        with Image.open(self.paths[i]) as im:
            im = im.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
            x = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
        return torch.from_numpy(x).permute(2, 0, 1), i


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    import torch
    import torchvision
    from torch import nn
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    model = nn.Sequential(torchvision.models.mobilenet_v2(weights=None).features, nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Dropout(0.3), nn.Linear(1280, 128), nn.ReLU(inplace=True),
                          nn.Linear(128, 2), nn.Softmax(dim=1)).eval()
    model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(torch.zeros(a.batch, 3, a.size, a.size).to(memory_format=torch.channels_last))

    t0 = time.perf_counter()
    paths = []
    for dirpath, dirnames, filenames in os.walk(a.input, followlinks=True):
        dirnames.sort()
        paths.extend(os.path.join(dirpath, f) for f in sorted(filenames))
    dl = torch.utils.data.DataLoader(Files(paths, a.size), batch_size=a.batch, num_workers=a.workers,
                                     shuffle=False)
    n = 0
    with open(a.out + ".tmp", "w") as f, torch.inference_mode():
        f.write("path,prob_0,prob_1\n")
        for xb, idx in dl:
            probs = model(xb.contiguous(memory_format=torch.channels_last)).numpy()
            for i, pr in zip(idx.tolist(), probs):
                f.write("%s,%.6f,%.6f\n" % (os.path.relpath(paths[i], a.input), pr[0], pr[1]))
            n += len(probs)
    os.replace(a.out + ".tmp", a.out)
    t1 = time.perf_counter()
    common.emit({"tool": "torch", "images": n, "seconds": t1 - t0, "wall": t1 - T_START})


if __name__ == "__main__":
    main()
