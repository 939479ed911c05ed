"""TensorFlow/Keras peer of `radbatch infer`: the seeds' way of predicting a folder.

tf.data: sorted file list -> read_file -> decode_jpeg(channels=3) -> resize to SIZE
(bilinear; TF's default has no antialiasing, which is less work than radbatch's and
Pillow's) -> mobilenet_v2.preprocess_input -> batch -> prefetch; model(x, training=False) on
MobileNetV2 (weights=None: the numbers do not matter for speed) + GAP -> Dropout(0.3) ->
Dense(128, relu) -> Dense(2, softmax), the radbatch model's head; rows path,prob_0,prob_1
written to a CSV. TensorFlow gets --threads intra-op threads, 1 inter-op thread, and the
map runs --threads calls in parallel.

Prints one JSON line: images, seconds (from the listing to the CSV closed; model built and
warmed before the clock), wall (whole process)."""
import argparse
import os
import sys
import time

T_START = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    layers = tf.keras.layers
    base = tf.keras.applications.MobileNetV2(input_shape=(a.size, a.size, 3), alpha=1.0, include_top=False,
                                             weights=None)
    inp = tf.keras.Input((a.size, a.size, 3))
    x = base(inp, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu")(x)
    out = layers.Dense(2, activation="softmax")(x)
    model = tf.keras.Model(inp, out)

    @tf.function(reduce_retracing=True)
    def predict(xb):
        return model(xb, training=False)

    predict(tf.zeros((a.batch, a.size, a.size, 3)))  # warm up (graph built before the clock)

    def load(path):
        img = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        img = tf.image.resize(img, (a.size, a.size))
        return tf.keras.applications.mobilenet_v2.preprocess_input(img), path

    t0 = time.perf_counter()
    paths = []
    for dirpath, dirnames, filenames in os.walk(a.input, followlinks=True):
        dirnames.sort()
        paths.extend(os.path.join(dirpath, f) for f in sorted(filenames))
    ds = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=a.threads)
    ds = ds.batch(a.batch).prefetch(2)
    n = 0
    with open(a.out + ".tmp", "w") as f:
        f.write("path,prob_0,prob_1\n")
        for xb, pb in ds:
            probs = predict(xb).numpy()
            for path, pr in zip(pb.numpy(), probs):
                f.write("%s,%.6f,%.6f\n" % (os.path.relpath(path.decode(), a.input), pr[0], pr[1]))
            n += len(probs)
    os.replace(a.out + ".tmp", a.out)
    t1 = time.perf_counter()
    common.emit({"tool": "tf", "images": n, "seconds": t1 - t0, "wall": t1 - T_START})


if __name__ == "__main__":
    main()
