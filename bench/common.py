"""Helpers shared by the benchmark scripts under bench/.

Paths are derived from this file's location (the repo root is its parent's parent) and
from the environment, never hard-coded:

  RADBATCH_DATA  data root holding chest_xray/train/{NORMAL,PNEUMONIA}
                 (default: <repo>/../shared/data)
  RADBATCH       the radbatch binary (default: <repo>/build/radbatch)
  TMPDIR         scratch space; the benches use ${TMPDIR:-/tmp}/radbatch-bench

Only the standard library and numpy are imported here, so the module loads the same in a
TensorFlow process and in a PyTorch process (the two must never share one process: their
bundled LLVMs clash).
"""

import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

IMAGE_EXTS = None  # formats are told by magic bytes in radbatch; the peers take every file


def data_root():
    return os.environ.get("RADBATCH_DATA") or os.path.join(os.path.dirname(REPO), "shared", "data")


def chest_train_dir():
    return os.path.join(data_root(), "chest_xray", "train")


def radbatch_bin():
    return os.environ.get("RADBATCH") or os.path.join(REPO, "build", "radbatch")


def bench_tmp(*parts):
    base = os.path.join(os.environ.get("TMPDIR") or "/tmp", "radbatch-bench")
    path = os.path.join(base, *parts)
    os.makedirs(path, exist_ok=True)
    return path


RUN_ID = time.strftime("%Y%m%d-%H%M%S") + "-%d" % os.getpid()


def list_labelled(root):
    """One folder per class under `root`. Returns (class_names, [(abs_path, label, rel_path)])
    in a deterministic order (classes sorted, files sorted by relative path)."""
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    records = []
    for label, cls in enumerate(classes):
        base = os.path.join(root, cls)
        found = []
        for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
            dirnames.sort()
            for name in filenames:
                full = os.path.join(dirpath, name)
                found.append((full, label, os.path.relpath(full, root)))
        found.sort(key=lambda r: r[2])
        records.extend(found)
    return classes, records


def split_records(records, val_fraction, seed):
    """Seeded shuffle, then the first val_fraction go to 'val', the rest to 'train' (each
    split keeps the shuffled order, so every shard mixes classes)."""
    order = list(records)
    random.Random(seed).shuffle(order)
    n_val = int(round(len(order) * val_fraction))
    splits = {"train": order[n_val:]}
    if n_val:
        splits["val"] = order[:n_val]
    return splits


def plan_shards(splits, record_bytes, shard_bytes, workers):
    """Cut each split into shards of about shard_bytes of pixels; the count per split is
    rounded up to a multiple of `workers` so whole shards spread evenly over the workers.
    Returns a list of dicts {split, index, count, records}."""
    shards = []
    for split, recs in splits.items():
        total = len(recs) * record_bytes
        n = max(1, -(-total // shard_bytes))
        n = -(-n // workers) * workers
        n = min(n, max(1, len(recs)))
        for i in range(n):
            lo = len(recs) * i // n
            hi = len(recs) * (i + 1) // n
            shards.append({"split": split, "index": i, "count": n, "records": recs[lo:hi]})
    # Largest first: better packing when a pool hands shards out dynamically.
    shards.sort(key=lambda s: -len(s["records"]))
    return shards


def shard_name(split, index, count, ext="h5"):
    return "%s-%05d-of-%05d.%s" % (split, index, count, ext)


def chunk_images(height, width, channels, target=1 << 20):
    """Whole images per HDF5 chunk so a chunk is at most about `target` bytes (at least one
    image); the rule io/shard.c uses."""
    return max(1, target // (height * width * channels))


def warm_page_cache(paths):
    """Read every file once so all tools start from a warm page cache."""
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                n += len(b)
    return n


def _proc_stat_busy():
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return (total - idle) / hz, total / hz


def _children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    s = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime + s.ru_utime + s.ru_stime


class NoiseMeter:
    """Share of the machine's CPU used by processes other than this one and its (reaped)
    children while a measurement ran: 0.0 = the bench had the cores to itself. The machine
    is shared; runs with a large share are flagged in the output."""

    def start(self):
        self.s0, self.c0, self.t0 = _proc_stat_busy(), _children_cpu(), time.perf_counter()
        return self

    def stop(self):
        s1, c1, t1 = _proc_stat_busy(), _children_cpu(), time.perf_counter()
        if not self.s0 or not s1:
            return None
        busy = s1[0] - self.s0[0]
        ours = c1 - self.c0
        cap = (t1 - self.t0) * (os.cpu_count() or 1)
        return max(0.0, min(1.0, (busy - ours) / cap)) if cap > 0 else None


def wait_for_idle(max_wait=60.0, threshold=0.10, window=0.5):
    """Wait (up to max_wait s) until other processes use less than `threshold` of the
    machine over a `window` s sample. Returns the seconds waited (or -1 on timeout)."""
    t0 = time.perf_counter()
    while True:
        a = _proc_stat_busy()
        time.sleep(window)
        b = _proc_stat_busy()
        if not a or not b:
            return 0.0
        share = (b[0] - a[0]) / (window * (os.cpu_count() or 1))
        waited = time.perf_counter() - t0
        if share < threshold:
            return waited
        if waited >= max_wait:
            return -1.0


CLEAN_LOAD = 0.20  # a run during which other processes used less than this share is "clean"


def clean_runs(runs, key="noise"):
    """The runs measured while the machine was (nearly) ours, if there are any; else all.
    Returns (runs, all_clean_flag)."""
    clean = [r for r in runs if r.get(key) is not None and r[key] < CLEAN_LOAD]
    return (clean, True) if clean else (list(runs), False)


def summary(values):
    """(min, median) of a list of numbers."""
    return min(values), statistics.median(values)


def now():
    return time.perf_counter()


def emit(obj):
    """One JSON line on stdout: the machine-readable result of a peer run."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def last_json_line(text):
    """The last line of `text` that parses as a JSON object, or None."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def machine_line():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        info = dict(l.split(":", 1) for l in out.splitlines() if ":" in l)
        model = info.get("Model name", "?").strip()
    except OSError:
        model = platform.processor() or "?"
    return "%s, %d cores, Python %s" % (model, os.cpu_count() or 0, platform.python_version())


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return "%.2fx" % (a / b)


def fmt_num(x, digits=1):
    return "-" if x is None else ("%.*f" % (digits, x))


def print_table(headers, rows, out=sys.stdout):
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for k, r in enumerate(cells):
        out.write("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                            for i, c in enumerate(r)).rstrip() + "\n")
        if k == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    out.flush()
