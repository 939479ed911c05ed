#!/usr/bin/env python3
"""Engine benchmark: radbatch's compute engine vs TensorFlow/Keras vs PyTorch, same model,
shapes, batch and threads, one run. See bench/README.md.

Rows (batch 32, 2 intra-op threads, 1 inter-op thread everywhere):
  mobilenetv2-224-infer         MobileNetV2 + seed-000 head, inference at 224x224
  mobilenetv2-160-train-frozen  training step, base frozen (inference mode), Adam on head
  mobilenetv2-160-train-full    training step, everything trainable
  cnn-150-train-full            seed-001 CNN training step at 150x150

Every framework is a separate process taking the same flags
  --model M --size N --batch B --mode infer|train-frozen|train-full --iters K --threads T
  --warmup W --bn batch|moving   (--bn: BatchNormalization statistics in train-full)
and printing one JSON line with images_per_s (and, optionally, iter_s: the K iteration
times). A run's figure is batch / median iteration time (images_per_s when no iter_s);
the runs are interleaved (row by row, framework by framework) and repeated --reps times;
the table gives the median over repetitions and the best.

The radbatch side is the binary built by bench/build-engine.sh (the last line it prints is
the binary's path), or $RADBATCH_ENGINE. Without it the radbatch column reads "not built".
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402
import flops  # noqa: E402

TORCH_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"

# (model, size, mode, timed iterations, warm-up iterations)
IDLE_WAIT = [30.0]

ROWS = [
    ("mobilenetv2", 224, "infer", 10, 3),
    ("mobilenetv2", 160, "train-frozen", 10, 3),
    ("mobilenetv2", 160, "train-full", 5, 3),
    ("cnn", 150, "train-full", 8, 3),
]


def row_key(model, size, mode):
    return "%s-%d-%s" % (model, size, mode)


def find_engine(log):
    """Path of radbatch's engine bench binary, or (None, reason)."""
    env = os.environ.get("RADBATCH_ENGINE")
    if env:
        return (env, None) if os.access(env, os.X_OK) else (None, "RADBATCH_ENGINE=%s is not executable" % env)
    script = os.path.join(common.REPO, "bench", "build-engine.sh")
    if not os.path.exists(script):
        return None, "not built (no bench/build-engine.sh)"
    p = subprocess.run(["bash", script], cwd=common.REPO, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    log.write("$ bash %s\n[exit %d]\n%s\n" % (script, p.returncode, p.stdout[-6000:]))
    if p.returncode != 0:
        return None, "not built (bench/build-engine.sh exit %d, see log)" % p.returncode
    lines = [l.strip() for l in p.stdout.strip().splitlines() if l.strip()]
    path = lines[-1] if lines else ""
    if not os.path.isabs(path):
        path = os.path.join(common.REPO, path)
    if not os.access(path, os.X_OK):
        return None, "not built (bench/build-engine.sh printed no executable path last)"
    return path, None


def command(fw, engine, model, size, mode, iters, warmup, threads, batch, bn):
    args = ["--model", model, "--size", str(size), "--batch", str(batch), "--mode", mode,
            "--iters", str(iters), "--threads", str(threads), "--warmup", str(warmup),
            "--bn", bn]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if fw == "radbatch":
        env["OPENBLAS_NUM_THREADS"] = str(threads)
        return [engine] + args, env
    if fw == "tensorflow":
        return [sys.executable, os.path.join(HERE, "peer_tf.py")] + args, env
    if fw == "torch":
        env["GLIBC_TUNABLES"] = TORCH_TUNABLES
        return [sys.executable, os.path.join(HERE, "peer_torch.py")] + args, env
    raise ValueError(fw)


def run_one(cmd, env, batch, log):
    waited = common.wait_for_idle(max_wait=IDLE_WAIT[0])
    meter = common.NoiseMeter().start()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t0
    noise = meter.stop()
    log.write("$ %s\n[exit %d, %.1f s, other load %.2f]\n%s\n%s\n" % (
        " ".join(cmd), p.returncode, wall, noise or 0, p.stdout[-3000:], p.stderr[-3000:]))
    log.flush()
    res = common.last_json_line(p.stdout)
    if p.returncode != 0 or not res or "images_per_s" not in res:
        lines = [l for l in (p.stderr + p.stdout).strip().splitlines() if l.strip()]
        return {"ok": False, "error": "exit %d: %s" % (p.returncode, (lines or ["no result"])[-1][:160])}
    it = res.get("iter_s")
    ips = batch / statistics.median(it) if it else float(res["images_per_s"])
    return {"ok": True, "ips": ips, "ips_mean": float(res["images_per_s"]), "noise": noise,
            "waited": waited, "res": res}


def measure_peak(sg, threads, peak):
    """Run sgemm_peak and keep, per thread count, the best figure seen so far (it is measured
    at the start and at the end of the run: the machine's figure is the least disturbed)."""
    common.wait_for_idle(max_wait=IDLE_WAIT[0])
    meter = common.NoiseMeter().start()
    out = subprocess.run([sg, "1", str(threads)], stdout=subprocess.PIPE, text=True).stdout
    noise = meter.stop() or 0.0
    sys.stdout.write("".join("  " + l + "\n" for l in out.splitlines() if not l.startswith("{")))
    print("  (other load %.0f%%)" % (100 * noise))
    for k, v in (common.last_json_line(out) or {}).items():
        k = int(k)
        if k not in peak or v["best"] > peak[k]["best"]:
            peak[k] = v


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rows", default="", help="comma list of row keys (default: all four)")
    p.add_argument("--frameworks", default="radbatch,tensorflow,torch")
    p.add_argument("--iters_scale", type=float, default=1.0, help="multiply every row's K")
    p.add_argument("--idle_wait", type=float, default=30.0,
                   help="before each run, wait up to this many s for the machine to be idle")
    p.add_argument("--full_bn", choices=("batch", "moving"), default="batch",
                   help="train-full: BatchNormalization with batch statistics or moving ones")
    a = p.parse_args()
    IDLE_WAIT[0] = a.idle_wait

    tmp = common.bench_tmp()
    # Per-run names: two benches started at once must not clobber each other's files.
    log_path = os.path.join(tmp, "engine-%s.log" % common.RUN_ID)
    log = open(log_path, "w")
    print("engine bench -- %s -- %s" % (time.strftime("%Y-%m-%d %H:%M"), common.machine_line()))
    print("load average at start: %.2f %.2f %.2f; log: %s" % (os.getloadavg() + (log_path,)))

    # sgemm peak of this machine (OpenBLAS, the library radbatch uses)
    peak = {}
    sg = os.path.join(tmp, "sgemm_peak-%s" % common.RUN_ID)
    cc = subprocess.run("cc -O2 %s -o %s $(pkg-config --cflags --libs openblas)" % (
        os.path.join(HERE, "sgemm_peak.c"), sg), shell=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    if cc.returncode == 0:
        measure_peak(sg, a.threads, peak)
    else:
        print("sgemm_peak: cannot build (%s)" % cc.stdout.strip().splitlines()[-1:])

    fws = a.frameworks.split(",")
    engine, why = (None, "not asked")
    if "radbatch" in fws:
        engine, why = find_engine(log)
        print("radbatch engine: %s" % (engine or why))

    rows = [r for r in ROWS if not a.rows or row_key(*r[:3]) in a.rows.split(",")]
    runs = {(row_key(*r[:3]), fw): [] for r in rows for fw in fws}
    errors = {}
    for rep in range(a.reps):
        for model, size, mode, iters, warmup in rows:
            key = row_key(model, size, mode)
            k = max(2, int(round(iters * a.iters_scale)))
            for fw in fws:
                if fw == "radbatch" and not engine:
                    errors[(key, fw)] = why
                    continue
                if (key, fw) in errors:
                    continue
                bn = a.full_bn if mode == "train-full" else "moving"
                cmd, env = command(fw, engine, model, size, mode, k, warmup, a.threads, a.batch, bn)
                r = run_one(cmd, env, a.batch, log)
                if not r["ok"]:
                    errors[(key, fw)] = r["error"]
                    print("  rep %d %-30s %-10s FAILED %s" % (rep + 1, key, fw, r["error"]), flush=True)
                    continue
                runs[(key, fw)].append(r)
                extra = ""
                if fw == "torch":
                    extra = " channels_last" if r["res"].get("channels_last") else " contiguous"
                print("  rep %d %-30s %-10s %7.1f img/s  (other load %.0f%%%s)" % (
                    rep + 1, key, fw, r["ips"], 100 * (r["noise"] or 0), extra), flush=True)

    if cc.returncode == 0:
        measure_peak(sg, a.threads, peak)
    peak2 = peak.get(a.threads, {}).get("best")
    results = {}
    for which in ("median", "best"):
        table = []
        for model, size, mode, _i, _w in rows:
            key = row_key(model, size, mode)
            fpi = flops.flops_per_image(model, size, mode)
            v = {}
            clean_all = True
            for fw in fws:
                rs, clean = common.clean_runs(runs[(key, fw)])
                clean_all = clean_all and (clean or not rs)
                xs = [r["ips"] for r in rs]
                v[fw] = (statistics.median(xs) if which == "median" else max(xs)) if xs else None
            results.setdefault(key, {})[which] = v
            results[key]["gflop_per_image"] = fpi / 1e9
            rb, tf_, th = v.get("radbatch"), v.get("tensorflow"), v.get("torch")
            gf = lambda x: None if x is None else x * fpi / 1e9  # noqa: E731
            table.append([key + ("" if clean_all else " !"),
                          common.fmt_num(rb) if rb is not None else (
                              "not built" if "radbatch" in fws and not engine else "-"),
                          common.fmt_num(tf_), common.fmt_num(th),
                          common.fmt_ratio(rb, tf_), common.fmt_ratio(rb, th),
                          "%.3f" % (fpi / 1e9),
                          common.fmt_num(gf(rb)),
                          "-" if rb is None or not peak2 else "%.0f%%" % (100 * gf(rb) / peak2),
                          common.fmt_num(gf(tf_)), common.fmt_num(gf(th))])
        print("\nimages/s, %s over the clean runs of %d reps (batch %d, %d threads); sgemm peak %s GFLOP/s at %d threads"
              % (which, a.reps, a.batch, a.threads, common.fmt_num(peak2), a.threads))
        common.print_table(["row", "radbatch", "TF", "torch", "rb/TF", "rb/torch", "GFLOP/img",
                            "rb GFLOP/s", "rb %peak", "TF GFLOP/s", "torch GFLOP/s"], table)
    print("clean runs: other processes used < %d%% of the CPUs during the run; the figures use"
          " only those when a framework has any; '!' marks a row where one framework had none"
          % (100 * common.CLEAN_LOAD))
    for (key, fw), e in sorted(errors.items()):
        if fw != "radbatch" or engine:
            print("  %s %s: %s" % (key, fw, e))
    print("\nload average at end: %.2f %.2f %.2f" % os.getloadavg())
    try:
        os.remove(sg)
    except OSError:
        pass
    res_path = os.path.join(tmp, "engine-%s.json" % common.RUN_ID)
    with open(res_path, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": common.machine_line(),
                   "threads": a.threads, "batch": a.batch, "reps": a.reps, "sgemm_peak": peak,
                   "rows": results,
                   "runs": {"%s|%s" % k: [dict(ips=r["ips"], noise=r["noise"], res=r["res"]) for r in v]
                            for k, v in runs.items()}}, f, indent=1)
    print("results: %s" % res_path)


if __name__ == "__main__":
    main()
