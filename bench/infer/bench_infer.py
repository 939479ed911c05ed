"""Driver of the bulk-inference benchmark (bench/infer/run.sh): radbatch infer vs the
TensorFlow/Keras and PyTorch+PIL peers over the same folder, same cores, in one run.

Input: --images files spread evenly over the sorted chest_xray/train set (both classes;
0 = all 5,216), linked into ${TMPDIR:-/tmp}/radbatch-bench/infer-input-<n>/{NORMAL,PNEUMONIA}.
Model: MobileNetV2 at --size with the seed-000 head, made once by radbatch convert + train
(1 epoch on tests/data/chest_xray_sample, Keras ImageNet base) and cached; the peers build
the same architecture with random weights (speed does not depend on the values).

Timing: radbatch is charged the wall time of the whole command (process start, model load,
listing, chunk files, part files with fsync, merge, summary.json, report.html); the peers
only the time they measure themselves from their listing to the CSV closed, after their
imports and model build and a warm-up batch (their best case). The page cache is warm.
Before each run the driver waits for an idle machine and after it reports the share of
the CPUs other processes used ("other load")."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def log(f, *parts):
    line = " ".join(str(p) for p in parts)
    print(line)
    f.write(line + "\n")
    f.flush()


def make_input(n):
    classes, records = common.list_labelled(common.chest_train_dir())[:2]
    recs = records if n <= 0 or n >= len(records) else [records[(i * len(records)) // n] for i in range(n)]
    root = common.bench_tmp("infer-input-%d" % len(recs))
    if sum(len(fs) for _, _, fs in os.walk(root)) != len(recs):
        shutil.rmtree(root)
        os.makedirs(root)
        for path, label, rel in recs:
            dst = os.path.join(root, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(path, dst)
    return root, [r[0] for r in recs]


def make_model(rb, size, logf):
    d = common.bench_tmp("infer-model-%d" % size)
    model = os.path.join(d, "run", "model.h5")
    if os.path.exists(model):
        return model
    sample = os.path.join(common.REPO, "tests", "data", "chest_xray_sample")
    weights = os.path.join(common.REPO, "tests", "data", "mobilenetv2", "mobilenetv2_keras_notop.h5")
    for cmd in ([rb, "convert", sample, "--out", os.path.join(d, "shards"), "--height", str(size), "--width",
                 str(size), "--quiet"],
                [rb, "train", "--shards", os.path.join(d, "shards"), "--run_dir", os.path.join(d, "run"),
                 "--backbone", "mobilenetv2", "--weights", weights, "--epochs", "1", "--batch_size", "16", "--quiet"]):
        log(logf, "$", " ".join(cmd))
        subprocess.run(cmd, check=True)
    return model


def run_tool(tool, a, rb, model, inp, out_root, logf):
    out = os.path.join(out_root, tool)
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ)
    if tool == "radbatch":
        env.pop("OPENBLAS_NUM_THREADS", None)
        cmd = [rb, "infer", "--model", model, "--input", inp, "--out", out, "--threads", str(a.threads),
               "--batch", str(a.batch), "--quiet"]
    elif tool == "radbatch-2ranks":
        cmd = ["mpirun", "-n", str(a.threads), "--allow-run-as-root", "--oversubscribe", "-x", "OPENBLAS_NUM_THREADS=1",
               rb, "infer", "--model", model, "--input", inp, "--out", out, "--threads", "1", "--batch",
               str(a.batch), "--quiet"]
        env["OMPI_ALLOW_RUN_AS_ROOT"] = env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    elif tool == "tf":
        os.makedirs(out)
        cmd = [sys.executable, os.path.join(HERE, "peer_tf.py"), "--input", inp, "--out",
               os.path.join(out, "predictions.csv"), "--size", str(a.size), "--batch", str(a.batch), "--threads",
               str(a.threads)]
    else:
        os.makedirs(out)
        env["GLIBC_TUNABLES"] = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"
        cmd = [sys.executable, os.path.join(HERE, "peer_torch.py"), "--input", inp, "--out",
               os.path.join(out, "predictions.csv"), "--size", str(a.size), "--batch", str(a.batch), "--threads",
               str(a.threads), "--workers", str(a.workers)]
    waited = common.wait_for_idle(max_wait=30)
    meter = common.NoiseMeter().start()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    noise = meter.stop()
    log(logf, "$", " ".join(cmd))
    logf.write(p.stdout + p.stderr)
    if p.returncode != 0:
        log(logf, "FAILED (exit %d): %s" % (p.returncode, p.stderr[-2000:]))
        return None
    r = {"tool": tool, "wall": wall, "noise": noise, "waited": waited}
    if tool.startswith("radbatch"):
        with open(os.path.join(out, "summary.json")) as f:
            s = json.load(f)
        r["images"] = s["predicted"]
        r["seconds"] = wall
        r["inner_images_per_second"] = s["images_per_second"]
        r["peak_rss_mb"] = s["peak_rss_mb"]
    else:
        j = common.last_json_line(p.stdout)
        r["images"], r["seconds"] = j["images"], j["seconds"]
    r["images_per_second"] = r["images"] / r["seconds"]
    log(logf, "  %-16s %5d images  %7.2f s  %6.1f images/s  (wall %.1f s, other load %s)" % (
        tool, r["images"], r["seconds"], r["images_per_second"], wall,
        "-" if noise is None else "%.0f%%" % (100 * noise)))
    return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=1000, help="0 = all 5,216")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="PyTorch DataLoader worker processes")
    p.add_argument("--tools", default="radbatch,radbatch-2ranks,tf,torch")
    a = p.parse_args()
    rb = common.radbatch_bin()
    tmp = common.bench_tmp()
    logf = open(os.path.join(tmp, "infer-bench.log"), "w")
    log(logf, "machine:", common.machine_line())
    model = make_model(rb, a.size, logf)
    inp, files = make_input(a.images)
    common.warm_page_cache(files)
    log(logf, "input: %s (%d images), model %s" % (inp, len(files), model))
    out_root = common.bench_tmp("infer-out")
    tools = a.tools.split(",")
    runs = {t: [] for t in tools}
    for rep in range(a.reps):
        log(logf, "repetition %d" % (rep + 1))
        for t in tools:
            r = run_tool(t, a, rb, model, inp, out_root, logf)
            if r:
                runs[t].append(r)
    rows, result = [], {"images": len(files), "size": a.size, "batch": a.batch, "threads": a.threads,
                        "machine": common.machine_line(), "runs": runs}
    best = {}
    for t in tools:
        rs, clean = common.clean_runs(runs[t])
        if not rs:
            continue
        ips = [r["images_per_second"] for r in rs]
        best[t] = max(ips)
        med = sorted(ips)[len(ips) // 2]
        rows.append([t + ("" if clean else " *"), len(rs), "%.1f" % med, "%.1f" % max(ips)])
    for row in rows:
        t = row[0].rstrip(" *")
        row.append(common.fmt_ratio(best.get("radbatch"), best.get(t)) if t != "radbatch" else "1.00x")
    log(logf, "")
    common.print_table(["tool", "runs", "images/s med", "images/s best", "radbatch (1 rank) / tool"], rows)
    result["best_images_per_second"] = best
    with open(os.path.join(tmp, "infer-results.json"), "w") as f:
        json.dump(result, f, indent=1)
    log(logf, "(* = no run with other load under 20%%; log %s)" % os.path.join(tmp, "infer-bench.log"))


if __name__ == "__main__":
    main()
