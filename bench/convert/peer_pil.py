#!/usr/bin/env python3
"""PIL + h5py peer of `radbatch convert`: the same work in the Python a user would write.

Class folders -> seeded 80/20 split -> shards written by a pool of worker processes, each
shard whole (temp name, then rename), in the shard layout of docs/formats.md:
  /images uint8 [N,H,W,C] chunked ~1 MiB, /labels int32 [N], /paths UTF-8 strings [N],
  /checksums uint32 [N] (CRC-32 of each record's pixels), /source_size int32 [N,2],
  root attributes (as io/shard.h lists them), marked format_version 1. Not done here:
  radbatch's per-file content hash (/source_hash, used to find duplicates) and version 2's
  metadata_checksum over labels, sizes, hashes and paths -- extra work radbatch does and
  this peer skips (so radbatch refuses these shards: they are for timing only).
Each image: PIL decode -> convert('RGB' or 'L') -> resize(W,H, BILINEAR) (Pillow's bilinear
antialiases when shrinking) -> numpy.

--draft additionally asks libjpeg-turbo for DCT-domain downscaling (Image.draft), the lever
radbatch uses on large JPEGs; it is off by default because a plain Image.open/resize script
(what users write) does not do it.

Prints one JSON line: images, seconds (from the first directory listing to the last shard
renamed; interpreter start-up and worker start-up excluded), shards.
"""

import argparse
import multiprocessing as mp
import os
import sys
import zlib

import h5py
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402

ARGS = None


def _init(args):
    global ARGS
    ARGS = args


def _noop(_):
    return os.getpid()


def load(path):
    a = ARGS
    im = Image.open(path)
    src_size = (im.size[1], im.size[0])
    if a.draft and im.format == "JPEG":
        im.draft("RGB" if a.channels == 3 else "L", (a.width, a.height))
    im = im.convert("RGB" if a.channels == 3 else "L")
    if im.size != (a.width, a.height):
        im = im.resize((a.width, a.height), Image.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    return arr.reshape(a.height, a.width, a.channels), src_size


def write_shard(shard):
    a = ARGS
    recs = shard["records"]
    n = len(recs)
    images = np.empty((n, a.height, a.width, a.channels), dtype=np.uint8)
    crcs = np.empty(n, dtype=np.uint32)
    sizes = np.empty((n, 2), dtype=np.int32)
    for i, (path, _label, _rel) in enumerate(recs):
        images[i], sizes[i] = load(path)
        crcs[i] = zlib.crc32(images[i])
    labels = np.array([r[1] for r in recs], dtype=np.int32)
    name = common.shard_name(shard["split"], shard["index"], shard["count"])
    final = os.path.join(a.out, name)
    tmp = final + ".tmp"
    k = min(n, common.chunk_images(a.height, a.width, a.channels))
    with h5py.File(tmp, "w") as f:
        f.create_dataset("images", data=images, chunks=(k, a.height, a.width, a.channels))
        f.create_dataset("labels", data=labels)
        f.create_dataset("paths", data=[r[2] for r in recs], dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("checksums", data=crcs)
        f.create_dataset("source_size", data=sizes)
        f.attrs["format"] = "radbatch-shard"
        f.attrs["format_version"] = 1
        f.attrs["class_names"] = shard["class_names"]
        f.attrs["height"], f.attrs["width"], f.attrs["channels"] = a.height, a.width, a.channels
        f.attrs["split"] = shard["split"]
        f.attrs["shard_index"], f.attrs["shard_count"] = shard["index"], shard["count"]
        f.attrs["num_records"] = n
        f.attrs["source_roots"] = a.input
        f.attrs["resize"] = "stretch"
        f.attrs["resize_filter"] = "PIL.Image.BILINEAR"
        f.attrs["dct_scaling"] = int(a.draft)
        f.attrs["tool_version"] = "bench/convert/peer_pil.py"
    os.rename(tmp, final)
    return n


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("input")
    p.add_argument("--out", required=True)
    p.add_argument("--height", type=int, default=160)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--val_fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--shard_mb", type=float, default=64.0)
    p.add_argument("--draft", action="store_true", help="use JPEG DCT-domain downscaling")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)

    # Start the workers before the clock (a long-running converter pays this once).
    ctx = mp.get_context("fork")
    pool = ctx.Pool(a.workers, initializer=_init, initargs=(a,))
    pool.map(_noop, range(a.workers))

    t0 = common.now()
    a.class_names, records = common.list_labelled(a.input)
    splits = common.split_records(records, a.val_fraction, a.seed)
    rec_bytes = a.height * a.width * a.channels
    shards = common.plan_shards(splits, rec_bytes, int(a.shard_mb * (1 << 20)), a.workers)
    for s in shards:  # the workers were started before the class names were known
        s["class_names"] = a.class_names
    done = sum(pool.imap_unordered(write_shard, shards, chunksize=1))
    t1 = common.now()
    pool.close()
    pool.join()
    common.emit({"tool": "pil" + ("-draft" if a.draft else ""), "images": done,
                 "seconds": t1 - t0, "shards": len(shards), "workers": a.workers})


if __name__ == "__main__":
    main()
