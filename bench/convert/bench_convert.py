#!/usr/bin/env python3
"""Convert benchmark: `radbatch convert` vs a PIL+h5py script vs TensorFlow's TFRecord
conversion, same inputs, same cores, one run. See bench/README.md.

Inputs
  small  the shared 5,216 224x224 chest X-ray JPEGs            -> 160x160x3
  large  N of those X-rays upscaled to ~2000x2000, JPEG q90,   -> 224x224x3
         made here once with PIL and cached under ${TMPDIR:-/tmp}/radbatch-bench

Timing
  Page cache warmed (every input file read) before each input's runs; each tool then runs
  --reps times, the tools interleaved within a repetition; outputs are deleted before each
  run, outside the clock.
  radbatch: wall time of the whole `mpirun -n 2 radbatch convert ...` command (MPI start-up,
            listing, decoding, writing, index) -- charged everything.
  peers:    the time each script measures itself from its directory listing to its last
            shard renamed, with its worker processes already started and (TF) TensorFlow
            imported and warmed -- the peers' best case. Their whole-command wall time is
            printed too.
  images/s = images written / seconds; min and median seconds over the repetitions.
  Before each run the driver waits (up to 30 s) for the machine to be idle, and prints the
  share of the CPUs other processes used during the run ("other load"): the machine is
  shared, so compare only figures of one run.
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402

MPI_FLAGS = ["--allow-run-as-root", "--oversubscribe",
             "-x", "OPENBLAS_NUM_THREADS=1", "-x", "HDF5_USE_FILE_LOCKING=FALSE"]

DEFAULT_TOOLS = {
    "small": ["radbatch", "pil", "tf-jpeg", "tf-raw"],
    "large": ["radbatch", "pil", "pil-draft", "tf-jpeg", "tf-raw"],
}


IDLE_WAIT = [30.0]

# ---------------------------------------------------------------- large input, made once

def _make_one(job):
    from PIL import Image
    src, dst, w, h, quality = job
    im = Image.open(src).convert("RGB")
    im = im.resize((w, h), Image.BICUBIC)
    tmp = dst + ".tmp"
    im.save(tmp, "JPEG", quality=quality)
    os.rename(tmp, dst)
    return os.path.getsize(dst)


def large_stamp(root):
    return root.rstrip("/") + ".json"


def make_large(count, side, quality, workers):
    """`count` X-rays spread evenly over the sorted shared set (both classes), upscaled with
    PIL bicubic to about side x side (each a little different, 0.95-1.05 x side, like real
    scans), saved as baseline JPEG of `quality` in class folders. Cached by parameters."""
    root = common.bench_tmp("large-n%d-s%d-q%d" % (count, side, quality))
    stamp = large_stamp(root)  # beside the folder: nothing but class folders inside it
    if os.path.exists(os.path.join(root, "COMPLETE")):  # where older versions kept it
        os.replace(os.path.join(root, "COMPLETE"), stamp)
    if os.path.exists(stamp):
        return root
    _classes, records = common.list_labelled(common.chest_train_dir())
    if count > len(records):
        raise SystemExit("large input: asked for %d images, the data has %d" % (count, len(records)))
    jobs = []
    for i in range(count):
        path, _label, rel = records[(i * len(records)) // count]
        w = int(side * (0.95 + 0.1 * ((i * 37) % 101) / 100.0))
        h = int(side * (0.95 + 0.1 * ((i * 61) % 101) / 100.0))
        dst = os.path.join(root, os.path.splitext(rel)[0] + ".jpeg")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        jobs.append((path, dst, w, h, quality))
    print("making the large input: %d JPEGs of ~%dx%d q%d in %s ..." % (count, side, side, quality, root),
          flush=True)
    import multiprocessing as mp
    with mp.get_context("fork").Pool(workers) as pool:
        sizes = pool.map(_make_one, jobs)
    with open(stamp, "w") as f:
        json.dump({"count": count, "side": side, "quality": quality,
                   "mean_bytes": sum(sizes) / len(sizes)}, f)
    return root


# ---------------------------------------------------------------- one tool, one run

def tool_command(tool, root, out, size, np_):
    py = sys.executable
    common_args = [root, "--out", out, "--height", str(size), "--width", str(size),
                   "--channels", "3", "--val_fraction", "0.2", "--seed", "123"]
    if tool == "radbatch":
        return ["mpirun", "-n", str(np_)] + MPI_FLAGS + [
            common.radbatch_bin(), "convert", root, "--out", out,
            "--height", str(size), "--width", str(size), "--channels", "3",
            "--resize", "stretch", "--val_fraction", "0.2", "--seed", "123",
            "--overwrite", "true"]
    if tool in ("pil", "pil-draft"):
        return [py, os.path.join(HERE, "peer_pil.py")] + common_args + [
            "--workers", str(np_)] + (["--draft"] if tool == "pil-draft" else [])
    if tool in ("tf-jpeg", "tf-raw"):
        return [py, os.path.join(HERE, "peer_tf.py")] + common_args + [
            "--workers", str(np_), "--encoding", tool[3:]]
    raise SystemExit("unknown tool %r" % tool)


def count_h5_records(out):
    import h5py
    n = 0
    for path in sorted(glob.glob(os.path.join(out, "*.h5"))):
        with h5py.File(path, "r") as f:
            n += f["labels"].shape[0] if "labels" in f else f["images"].shape[0]
    return n


def run_tool(tool, root, out, size, np_, log):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = tool_command(tool, root, out, size, np_)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OPENBLAS_NUM_THREADS="1",
               HDF5_USE_FILE_LOCKING="FALSE")
    common.wait_for_idle(max_wait=IDLE_WAIT[0])
    meter = common.NoiseMeter().start()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t0
    noise = meter.stop() or 0.0
    log.write("$ %s\n[exit %d, %.3f s]\n%s\n%s\n" % (" ".join(cmd), p.returncode, wall,
                                                     p.stdout[-4000:], p.stderr[-4000:]))
    if p.returncode != 0:
        lines = [l.strip() for l in (p.stderr + "\n" + p.stdout).splitlines()]
        lines = [l for l in lines if l.strip("-") and not l.startswith(("Primary job", "a non-zero exit",
                                                                       "mpirun", "Per user"))]
        return {"ok": False, "error": "exit %d: %s" % (p.returncode, (lines or ["(no message)"])[0][:160])}
    if tool == "radbatch":
        errs = os.path.join(out, "errors.csv")
        if os.path.exists(errs):
            with open(errs) as f:
                rows = [l for l in f.read().splitlines()[1:] if l.strip()]
            if rows:
                print("  radbatch errors.csv: %d row(s), first: %s" % (len(rows), rows[0][:120]))
        return {"ok": True, "seconds": wall, "wall": wall, "images": count_h5_records(out), "noise": noise}
    res = common.last_json_line(p.stdout)
    if not res:
        return {"ok": False, "error": "no result line"}
    if tool.startswith("pil"):
        res["images"] = count_h5_records(out)  # what is really on disk
    return {"ok": True, "seconds": res["seconds"], "wall": wall, "images": res["images"], "noise": noise}


# ---------------------------------------------------------------- same work?

def compare_pixels(out_a, out_b, limit=300):
    """Mean and max absolute pixel difference between two HDF5 outputs, records matched by
    path (shows both tools did the same decode + resize)."""
    import h5py
    import numpy as np

    def load(out, keep):
        recs = {}
        for path in sorted(glob.glob(os.path.join(out, "*.h5"))):
            with h5py.File(path, "r") as f:
                paths = [p.decode() if isinstance(p, bytes) else p for p in f["paths"][:]]
                for i, p in enumerate(paths):
                    if (keep is None and len(recs) < limit) or (keep is not None and p in keep):
                        recs[p] = f["images"][i]
        return recs
    a = load(out_a, None)
    b = load(out_b, set(a))
    common_paths = sorted(set(a) & set(b))
    if not common_paths:
        return None
    diffs = [np.abs(a[p].astype(np.int16) - b[p].astype(np.int16)) for p in common_paths]
    return {"records": len(common_paths),
            "mean_abs": float(np.mean([d.mean() for d in diffs])),
            "max_abs": int(max(d.max() for d in diffs))}


# ---------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--np", type=int, default=2, help="processes per tool (MPI ranks / workers)")
    p.add_argument("--inputs", default="small,large")
    p.add_argument("--tools", default="", help="comma list (default: per input, see source)")
    p.add_argument("--large_count", type=int, default=300)
    p.add_argument("--large_side", type=int, default=2000)
    p.add_argument("--large_quality", type=int, default=90)
    p.add_argument("--idle_wait", type=float, default=30.0,
                   help="before each run, wait up to this many s for the machine to be idle")
    p.add_argument("--keep", action="store_true", help="keep the last outputs")
    a = p.parse_args()
    IDLE_WAIT[0] = a.idle_wait

    tmp = common.bench_tmp()
    # Per-run names: two benches started at once must not clobber each other's files.
    log_path = os.path.join(tmp, "convert-%s.log" % common.RUN_ID)
    log = open(log_path, "w")
    print("convert bench -- %s -- %s" % (time.strftime("%Y-%m-%d %H:%M"), common.machine_line()))
    print("radbatch: %s; data: %s; scratch: %s; log: %s" % (
        common.radbatch_bin(), common.chest_train_dir(), tmp, log_path))
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    have_rb = os.access(common.radbatch_bin(), os.X_OK)

    results = []
    for inp in a.inputs.split(","):
        if inp == "small":
            root, size = common.chest_train_dir(), 160
            label = "5,216 x 224^2 JPEG -> 160^2"
        elif inp == "large":
            root = make_large(a.large_count, a.large_side, a.large_quality, a.np)
            size = 224
            with open(large_stamp(root)) as f:
                meta = json.load(f)
            label = "%d x ~%d^2 JPEG q%d (%.0f KB avg) -> 224^2" % (
                a.large_count, a.large_side, a.large_quality, meta["mean_bytes"] / 1024)
        else:
            raise SystemExit("unknown input %r (small, large)" % inp)
        tools = a.tools.split(",") if a.tools else DEFAULT_TOOLS[inp]
        _c, records = common.list_labelled(root)
        nbytes = common.warm_page_cache([r[0] for r in records])
        print("\n[%s] %s: %d files, %.1f MB, page cache warmed" % (inp, label, len(records), nbytes / 1e6),
              flush=True)

        runs = {t: [] for t in tools}
        errors = {}
        for rep in range(a.reps):
            for t in tools:
                if t == "radbatch" and not have_rb:
                    errors[t] = "not built (%s)" % common.radbatch_bin()
                    continue
                if t in errors:
                    continue
                out = os.path.join(tmp, "out-" + common.RUN_ID, inp, t)
                r = run_tool(t, root, out, size, a.np, log)
                if not r["ok"]:
                    errors[t] = r["error"]
                    print("  %-10s rep %d: FAILED %s" % (t, rep + 1, r["error"]), flush=True)
                    continue
                if r["images"] != len(records):
                    print("  %-10s rep %d: wrote %d of %d images" % (t, rep + 1, r["images"], len(records)))
                runs[t].append(r)
                print("  %-10s rep %d: %6.2f s  %7.0f images/s  (command wall %.2f s, other load %.0f%%)" % (
                    t, rep + 1, r["seconds"], r["images"] / r["seconds"], r["wall"], 100 * r["noise"]),
                    flush=True)

        rows = []
        best = {}
        used = {}
        for t in tools:
            if not runs[t]:
                continue
            rs, clean = common.clean_runs(runs[t])
            used[t] = "%d/%d" % (len(rs), len(runs[t])) if clean else "0/%d!" % len(runs[t])
            tmin, tmed = common.summary([r["seconds"] for r in rs])
            n = rs[0]["images"]
            best[t] = (n / tmin, n / tmed)
        peers = [t for t in tools if t != "radbatch" and t in best]
        n_images = lambda t: runs[t][0]["images"]  # noqa: E731
        fastest = max(peers, key=lambda t: best[t][1]) if peers else None
        for t in tools:
            if t in best:
                ips_best, ips_med = best[t]
                rb = best.get("radbatch")
                rows.append([t, used[t], "%.0f" % ips_med, "%.0f" % ips_best,
                             "%.2f" % (n_images(t) / ips_best),
                             "%.2f" % common.summary([r["wall"] for r in runs[t]])[1],
                             "-" if t == "radbatch" or not rb else common.fmt_ratio(rb[1], ips_med),
                             "-" if t == "radbatch" or not rb else common.fmt_ratio(rb[0], ips_best)])
            else:
                rows.append([t, "-", "-", "-", "-", "-", "-", "-"])
        print("\n%s, %d processes each, %d reps" % (label, a.np, a.reps))
        common.print_table(["tool", "clean runs", "img/s med", "img/s best", "s min", "wall med",
                            "radbatch/x med", "radbatch/x best"], rows)
        print("  clean runs: runs during which other processes used < %d%% of the CPUs; the figures"
              " use only those when there are any ('0/N!': none was clean, all N used)"
              % (100 * common.CLEAN_LOAD))
        for t, e in errors.items():
            print("  %s: %s" % (t, e))
        if fastest:
            print("  fastest peer: %s (%.0f images/s median)" % (fastest, best[fastest][1]))
        if "radbatch" in best and "pil" in best:
            outs = os.path.join(tmp, "out-" + common.RUN_ID, inp)
            cmp = compare_pixels(os.path.join(outs, "radbatch"), os.path.join(outs, "pil"))
            if cmp:
                print("  radbatch vs pil pixels: %d records, mean |diff| %.3f, max |diff| %d" % (
                    cmp["records"], cmp["mean_abs"], cmp["max_abs"]))
        results.append({"input": inp, "label": label, "images": len(records),
                        "images_per_s": {t: {"median": best[t][1], "best": best[t][0]} for t in best},
                        "errors": errors})
        if not a.keep:
            shutil.rmtree(os.path.join(tmp, "out-" + common.RUN_ID, inp), ignore_errors=True)

    print("\nload average at end: %.2f %.2f %.2f" % os.getloadavg())
    if not a.keep:
        shutil.rmtree(os.path.join(tmp, "out-" + common.RUN_ID), ignore_errors=True)
    res_path = os.path.join(tmp, "convert-%s.json" % common.RUN_ID)
    with open(res_path, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": common.machine_line(),
                   "np": a.np, "reps": a.reps, "results": results}, f, indent=1)
    print("\nresults: %s" % res_path)


if __name__ == "__main__":
    main()
