#!/usr/bin/env python3
"""TensorFlow TFRecord peer of `radbatch convert`: the conversion users do today (seed 004).

Class folders -> seeded 80/20 split -> TFRecord shards, each written whole by one of a pool
of worker processes. Per image, in a tf.data graph pipeline: tf.io.read_file ->
tf.io.decode_jpeg(channels) -> tf.image.resize (TF's default: bilinear, no antialias) ->
round/clip to uint8 -> tf.io.encode_jpeg (--encoding jpeg, the usual "image/encoded"
feature; quality 95) or the raw pixel bytes (--encoding raw, the same payload as the HDF5
shards). Then a tf.train.Example (image/encoded, image/height, image/width,
image/channels, image/class/label, image/filename) is serialized and written with
tf.io.TFRecordWriter to <split>-00000-of-00008.tfrecord (temp name, then rename).

Each worker process runs TensorFlow with 1 intra-op and 1 inter-op thread and a tf.data
map of --parallel calls (so decoding overlaps the Python serialization loop); --workers
processes share the cores. Defaults (2 workers, 2 calls each) were the fastest of the
settings tried on the 2-core bench machine (1 worker with 2 threads was slower).

Prints one JSON line: images, seconds (from the first directory listing to the last shard
renamed; interpreter start-up, TensorFlow import and worker start-up excluded), shards.
"""

import argparse
import multiprocessing as mp
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402

ARGS = None
tf = None


def _init(args):
    global ARGS, tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow
    tf = tensorflow
    tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    ARGS = args
    _warm()


def _warm():
    # Build and run the pipeline once on a tiny in-memory JPEG so graph tracing and kernel
    # set-up are not charged to the first shard.
    img = tf.io.encode_jpeg(tf.zeros([8, 8, 3], tf.uint8))
    x = tf.image.resize(tf.io.decode_jpeg(img, channels=ARGS.channels), [ARGS.height, ARGS.width])
    tf.io.encode_jpeg(tf.cast(x, tf.uint8)).numpy()


def _noop(_):
    return os.getpid()


def _prep_factory():
    a = ARGS

    def prep(path):
        raw = tf.io.read_file(path)
        img = tf.io.decode_jpeg(raw, channels=a.channels)
        img = tf.image.resize(img, [a.height, a.width])
        img = tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)
        if a.encoding == "jpeg":
            return tf.io.encode_jpeg(img, quality=95)
        return img
    return prep


def write_shard(shard):
    a = ARGS
    recs = shard["records"]
    ds = tf.data.Dataset.from_tensor_slices([r[0] for r in recs])
    ds = ds.map(_prep_factory(), num_parallel_calls=a.parallel, deterministic=True).prefetch(2)
    name = common.shard_name(shard["split"], shard["index"], shard["count"], "tfrecord")
    final = os.path.join(a.out, name)
    tmp = final + ".tmp"
    Feature, Features, Example = tf.train.Feature, tf.train.Features, tf.train.Example
    BytesList, Int64List = tf.train.BytesList, tf.train.Int64List
    h = Feature(int64_list=Int64List(value=[a.height]))
    w = Feature(int64_list=Int64List(value=[a.width]))
    c = Feature(int64_list=Int64List(value=[a.channels]))
    fmt = Feature(bytes_list=BytesList(value=[b"jpeg" if a.encoding == "jpeg" else b"raw"]))
    n = 0
    with tf.io.TFRecordWriter(tmp) as wr:
        for (_path, label, rel), enc in zip(recs, ds.as_numpy_iterator()):
            payload = enc if a.encoding == "jpeg" else enc.tobytes()
            ex = Example(features=Features(feature={
                "image/encoded": Feature(bytes_list=BytesList(value=[payload])),
                "image/format": fmt,
                "image/height": h, "image/width": w, "image/channels": c,
                "image/class/label": Feature(int64_list=Int64List(value=[label])),
                "image/filename": Feature(bytes_list=BytesList(value=[rel.encode("utf-8")])),
            }))
            wr.write(ex.SerializeToString())
            n += 1
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
    p.add_argument("--parallel", type=int, default=2, help="tf.data map calls per worker")
    p.add_argument("--intra", type=int, default=1, help="intra-op threads per worker")
    p.add_argument("--shard_mb", type=float, default=64.0)
    p.add_argument("--encoding", choices=("jpeg", "raw"), default="jpeg")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)

    # TensorFlow must not be imported before fork; spawn fresh workers that import it,
    # and start them (and warm them up) before the clock.
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(a.workers, initializer=_init, initargs=(a,))
    pool.map(_noop, range(a.workers))

    t0 = common.now()
    _classes, records = common.list_labelled(a.input)
    splits = common.split_records(records, a.val_fraction, a.seed)
    # Shard by the same pixel budget as the HDF5 tools so the shard count matches.
    rec_bytes = a.height * a.width * a.channels
    shards = common.plan_shards(splits, rec_bytes, int(a.shard_mb * (1 << 20)), a.workers)
    done = sum(pool.imap_unordered(write_shard, shards, chunksize=1))
    t1 = common.now()
    pool.close()
    pool.join()
    common.emit({"tool": "tf-" + a.encoding, "images": done, "seconds": t1 - t0,
                 "shards": len(shards), "workers": a.workers, "parallel": a.parallel})


if __name__ == "__main__":
    main()
