"""radbatch inference vs onnxruntime fp32 and int8 of the exported model (bench/export/run.sh).

The model: MobileNetV2 (pretrained Keras base) with radbatch's default head, trained for one
step on the bundled sample at --size, so that `radbatch export` has a model.h5; exported as
float32 and as int8 (calibrated on the same sample). Timed:
  radbatch   bench/engine_radbatch --mode infer (the engine alone: BN folded, threads
             sample-parallel; input already preprocessed floats), the same architecture
  ort fp32   onnxruntime CPU, the exported file, uint8 input (preprocessing inside)
  ort int8   the same with the int8 QDQ file
each at --batch (images/s over --iters batches, median) and at batch 1 (latency, median of
30 single-image runs), with --threads threads (onnxruntime: intra_op_num_threads). The
images are the sample's pixels. Decoding and resizing are not timed anywhere."""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run(cmd, log):
    log.write("$ " + " ".join(cmd) + "\n")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(p.stdout)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout[-2000:]}")
    return p.stdout


def ort_time(path, x, batch, iters, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    xb = np.resize(x, (batch,) + x.shape[1:])
    for _ in range(2):
        s.run(None, {"image": xb})
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        s.run(None, {"image": xb})
        times.append(time.perf_counter() - t)
    lat = []
    for i in range(30):
        t = time.perf_counter()
        s.run(None, {"image": x[i % len(x):i % len(x) + 1]})
        lat.append(time.perf_counter() - t)
    return batch / statistics.median(times), statistics.median(lat)


def engine_time(size, batch, iters, threads, log):
    eng = os.environ["RADBATCH_ENGINE"]
    args = ["--model", "mobilenetv2", "--size", str(size), "--mode", "infer", "--threads", str(threads)]
    a = common.last_json_line(run([eng] + args + ["--batch", str(batch), "--iters", str(iters)], log))
    b = common.last_json_line(run([eng] + args + ["--batch", "1", "--iters", "30"], log))
    return a["median_images_per_s"], b["step_s_median"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    o = ap.parse_args()
    rb = common.radbatch_bin()
    tmp = common.bench_tmp(f"export-{int(time.time())}-{os.getpid()}")
    os.makedirs(tmp, exist_ok=True)
    log = open(tmp + ".log", "w")
    sample = os.path.join(REPO, "tests", "data", "chest_xray_sample")
    shards, rdir = os.path.join(tmp, "shards"), os.path.join(tmp, "run")
    run([rb, "convert", sample, "--out", shards, "--height", str(o.size), "--width", str(o.size), "--quiet"], log)
    run([rb, "train", "--shards", shards, "--run_dir", rdir, "--backbone", "mobilenetv2", "--weights",
         os.path.join(REPO, "tests", "data", "mobilenetv2", "mobilenetv2_keras_notop.h5"), "--epochs", "1",
         "--max_steps", "1", "--batch_size", "16", "--quiet"], log)
    f32, i8 = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
    run([rb, "export", "--model", rdir + "/model.h5", "--out", f32], log)
    run([rb, "export", "--model", rdir + "/model.h5", "--out", i8, "--quantize", "int8", "--calibration", shards,
         "--calibration_images", "64"], log)
    x = np.concatenate([h5py.File(f, "r")["images"][...] for f in sorted(glob.glob(shards + "/*.h5"))])
    rows = []
    common.wait_for_idle(max_wait=10)
    ips, lat = engine_time(o.size, o.batch, o.iters, o.threads, log)
    rows.append(("radbatch engine", ips, lat))
    for name, path in (("onnxruntime fp32", f32), ("onnxruntime int8", i8)):
        common.wait_for_idle(max_wait=10)
        ips, lat = ort_time(path, x, o.batch, o.iters, o.threads)
        rows.append((name, ips, lat))
    print(f"MobileNetV2 {o.size}x{o.size}, batch {o.batch}, {o.threads} threads, onnxruntime {ort.__version__}")
    print(common.machine_line())
    print(f"{'runtime':18s} {'images/s':>10s} {'batch-1 ms':>11s} {'vs radbatch':>12s}")
    for name, ips, lat in rows:
        print(f"{name:18s} {ips:10.1f} {lat * 1e3:11.2f} {ips / rows[0][1]:11.2f}x")
    print(f"int8 speed-up over onnxruntime fp32: {rows[2][1] / rows[1][1]:.2f}x images/s, "
          f"{rows[1][2] / rows[2][2]:.2f}x batch-1 latency")
    common.emit({"bench": "export", "size": o.size, "batch": o.batch, "threads": o.threads,
                 "rows": [{"runtime": n, "images_per_s": i, "batch1_s": l} for n, i, l in rows]})
    log.close()
    subprocess.run(["rm", "-rf", tmp])


main()
