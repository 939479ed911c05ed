#!/usr/bin/env python3
"""Training throughput: radbatch train vs TensorFlow/Keras and PyTorch, one run.

Rows (global batch 32, 2 cores in all):
  mnv2-160-frozen      MobileNetV2 160x160, base frozen (inference BatchNorm), seed-000 head.
                       radbatch twice: running the base every step (feature_cache false) and
                       with the frozen-base feature cache (per-epoch figure; the one-time
                       feature pass is reported separately).
  mnv2-160-full        every layer trainable; BatchNorm with batch statistics
                       (radbatch: freeze_base false, base_training true).
  cnn-150              the seed-001 CNN trained in full.
radbatch runs as 1 rank x 2 threads and as 2 ranks x 1 thread (mpirun); the 2-rank run
prints the share of training time spent in the gradient allreduce. Peers: the step
programs of bench/engine (peer_tf.py, peer_torch.py --mode train-frozen|train-full, fixed
synthetic batch, no data loading), so the peers do less work than radbatch, which reads
and shuffles real records every step. Images/s of radbatch come from its epoch line
(training time only, validation excluded; max_steps steps of the first epoch).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402

ENGINE = os.path.join(os.path.dirname(HERE), "engine")
TORCH_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"
REPO = os.path.dirname(os.path.dirname(HERE))
WEIGHTS = os.path.join(REPO, "tests", "data", "mobilenetv2", "mobilenetv2_keras_notop.h5")

ROWS = {
    "mnv2-160-frozen": dict(model="mobilenetv2", size=160, peer_mode="train-frozen",
                            rb=["--backbone", "mobilenetv2", "--weights", WEIGHTS]),
    "mnv2-160-full": dict(model="mobilenetv2", size=160, peer_mode="train-full",
                          rb=["--backbone", "mobilenetv2", "--weights", WEIGHTS, "--freeze_base", "false",
                              "--base_training", "true"]),
    "cnn-150": dict(model="cnn", size=150, peer_mode="train-full", rb=["--backbone", "cnn"]),
}


def mpi_env(threads):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", HDF5_USE_FILE_LOCKING="FALSE",
               OPENBLAS_NUM_THREADS="1")
    return env


def make_shards(rb, size, n_images, log):
    """A fixed subset of the chest X-rays as shards at size x size (cached between runs)."""
    out = os.path.join(common.bench_tmp(), "train-shards-%d-%d" % (size, n_images))
    if os.path.exists(os.path.join(out, "index.json")):
        return out
    classes, recs = common.list_labelled(common.chest_train_dir())
    recs = recs[:: max(1, len(recs) // n_images)][:n_images]  # both classes, spread evenly
    lst = out + ".csv"
    with open(lst, "w") as f:
        for path, label, _rel in recs:
            f.write("%s,%s\n" % (path, classes[label]))
    cmd = [rb, "convert", lst, "--out", out, "--height", str(size), "--width", str(size),
           "--classes", "NORMAL,PNEUMONIA", "--val_fraction", "0.1", "--quiet"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mpi_env(1))
    log.write("$ %s\n%s%s\n" % (" ".join(cmd), p.stdout, p.stderr))
    if p.returncode != 0:
        sys.exit("convert failed: %s" % p.stderr[-500:])
    return out


EPOCH = re.compile(r"(\d+) img/s.*?(?:allreduce: ([0-9.]+)% of training time)?$", re.M)
CACHE = re.compile(r"feature cache: .* in ([0-9.]+) s")


def run_radbatch(rb, shards, row, ranks, threads, steps, cache, log):
    run_dir = common.bench_tmp("train-run")
    cmd = [rb, "train", "--shards", shards, "--run_dir", run_dir, "--epochs", "1", "--batch_size", "32",
           "--max_steps", str(steps), "--threads", str(threads), "--feature_cache", cache] + row["rb"]
    if ranks > 1:
        cmd = ["mpirun", "-n", str(ranks)] + cmd
    common.wait_for_idle(max_wait=30)
    meter = common.NoiseMeter().start()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mpi_env(threads))
    noise = meter.stop()
    log.write("$ %s\n[exit %d, %.1f s]\n%s\n%s\n" % (" ".join(cmd), p.returncode, time.perf_counter() - t0,
                                                    p.stdout[-2000:], p.stderr[-2000:]))
    m = None
    for m in EPOCH.finditer(p.stdout):
        pass
    if p.returncode != 0 or not m:
        return None
    c = CACHE.search(p.stdout)
    return dict(ips=float(m.group(1)), allreduce=float(m.group(2)) if m.group(2) else None,
                cache_s=float(c.group(1)) if c else None, noise=noise)


def run_peer(fw, row, steps, threads, log):
    script = os.path.join(ENGINE, "peer_tf.py" if fw == "tensorflow" else "peer_torch.py")
    cmd = [sys.executable, script, "--model", row["model"], "--size", str(row["size"]), "--batch", "32",
           "--mode", row["peer_mode"], "--iters", str(steps), "--threads", str(threads), "--warmup", "3",
           "--bn", "batch"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if fw == "torch":
        env["GLIBC_TUNABLES"] = TORCH_TUNABLES
    common.wait_for_idle(max_wait=30)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log.write("$ %s\n[exit %d]\n%s\n%s\n" % (" ".join(cmd), p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    res = common.last_json_line(p.stdout)
    if p.returncode != 0 or not res:
        return None
    it = res.get("iter_s")
    return 32 / statistics.median(it) if it else float(res["images_per_s"])


def best(vals):
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--images", type=int, default=1600, help="records converted for the radbatch runs")
    ap.add_argument("--rows", default=",".join(ROWS))
    a = ap.parse_args()
    rb = common.radbatch_bin()
    logp = os.path.join(common.bench_tmp(), "train-bench.log")
    print("radbatch train benchmark  %s" % common.machine_line())
    print("log: %s" % logp)
    table = []
    with open(logp, "w") as log:
        for key in a.rows.split(","):
            row = ROWS[key]
            shards = make_shards(rb, row["size"], a.images, log)
            steps = a.steps if key != "mnv2-160-full" else max(5, a.steps // 2)
            r = {"rb12": [], "rb21": [], "rbc": [], "tf": [], "torch": []}
            ar, cache_s = [], []
            for _ in range(a.reps):
                x = run_radbatch(rb, shards, row, 1, 2, steps, "false", log)
                r["rb12"].append(x and x["ips"])
                x = run_radbatch(rb, shards, row, 2, 1, steps, "false", log)
                r["rb21"].append(x and x["ips"])
                if x and x["allreduce"] is not None:
                    ar.append(x["allreduce"])
                if key == "mnv2-160-frozen":
                    x = run_radbatch(rb, shards, row, 1, 2, 100000, "true", log)
                    r["rbc"].append(x and x["ips"])
                    if x and x["cache_s"]:
                        cache_s.append(x["cache_s"])
                r["tf"].append(run_peer("tensorflow", row, steps, 2, log))
                r["torch"].append(run_peer("torch", row, steps, 2, log))
            b = {k: best(v) for k, v in r.items()}
            rbbest = best([b["rb12"], b["rb21"]])
            peer = best([b["tf"], b["torch"]])
            table.append([key, common.fmt_num(b["rb12"]), common.fmt_num(b["rb21"]),
                          ("%.0f%%" % statistics.median(ar)) if ar else "-",
                          common.fmt_num(b["tf"]), common.fmt_num(b["torch"]),
                          common.fmt_ratio(rbbest, b["tf"]), common.fmt_ratio(rbbest, b["torch"]),
                          common.fmt_ratio(rbbest, peer)])
            if b["rbc"]:
                table.append([key + " +cache", common.fmt_num(b["rbc"]), "-", "-", common.fmt_num(b["tf"]),
                              common.fmt_num(b["torch"]), common.fmt_ratio(b["rbc"], b["tf"]),
                              common.fmt_ratio(b["rbc"], b["torch"]), common.fmt_ratio(b["rbc"], peer)])
                if cache_s:
                    print("%s: one-time feature pass %.1f s for %d records" % (key, min(cache_s), a.images))
            print("%s done" % key, flush=True)
    print()
    common.print_table(["row", "rb 1x2 img/s", "rb 2x1 img/s", "allreduce", "TF img/s", "torch img/s",
                        "vs TF", "vs torch", "vs faster"], table)
    common.emit({"bench": "train", "rows": table})


if __name__ == "__main__":
    main()
