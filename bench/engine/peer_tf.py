#!/usr/bin/env python3
"""TensorFlow/Keras peer for the engine benchmark (same flags as radbatch's engine bench).

  --model mobilenetv2  tf.keras.applications.MobileNetV2(alpha 1.0, weights=None,
                       include_top=False) + the seed-000 head: GlobalAveragePooling2D ->
                       Dropout(0.3) -> Dense(128, relu) -> Dense(2, softmax)
  --model cnn          the seed-001 CNN: 4 x [Conv2D 3x3 valid 32/64/128/128 ->
                       BatchNormalization -> ReLU -> MaxPool2D(2)] -> Flatten ->
                       Dense(512, relu) -> Dense(2, softmax)
  --mode infer         model(x, training=False)
         train-frozen  base.trainable = False, base called with training=False (seed 000);
                       one step = forward, loss, gradients of the head, Adam update
         train-full    everything trainable, BatchNormalization in training mode (batch
                       statistics; --bn moving keeps moving statistics as seed 003 does)
  Loss: sparse categorical cross-entropy on the softmax output; Adam(1e-4).

Graph mode: the step is a tf.function (jit_compile=False, TF's default). Threads: exactly
--threads intra-op threads and 1 inter-op thread. Input: a fixed batch of random floats in
[-1, 1) (the MobileNetV2 preprocessing range) made once in memory; labels random 0/1.
Prints one JSON line: images_per_s (over the K timed iterations), iter_s list, details.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402


def build(tf, model, size, mode, bn):
    layers = tf.keras.layers
    if model == "mobilenetv2":
        base = tf.keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=1.0,
                                                 include_top=False, weights=None)
        inputs = tf.keras.Input(shape=(size, size, 3))
        if mode == "train-frozen" or mode == "infer":
            base.trainable = mode != "train-frozen"
            x = base(inputs, training=False)
        else:
            x = base(inputs, training=(bn == "batch"))
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dropout(0.3)(x)
        x = layers.Dense(128, activation="relu")(x)
        outputs = layers.Dense(2, activation="softmax")(x)
        return tf.keras.Model(inputs, outputs)
    if model == "cnn":
        if mode == "train-frozen":
            raise SystemExit("cnn has no base to freeze")
        m = tf.keras.Sequential(name="X-ray_CNN")
        m.add(tf.keras.Input(shape=(size, size, 3)))
        for f in (32, 64, 128, 128):
            m.add(layers.Conv2D(f, (3, 3)))
            m.add(layers.BatchNormalization())
            m.add(layers.ReLU())
            m.add(layers.MaxPool2D((2, 2)))
        m.add(layers.Flatten())
        m.add(layers.Dense(512, activation="relu"))
        m.add(layers.Dense(2, activation="softmax"))
        return m
    raise SystemExit("unknown model %r" % model)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("mobilenetv2", "cnn"), required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--mode", choices=("infer", "train-frozen", "train-full"), required=True)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bn", choices=("batch", "moving"), default="batch",
                   help="train-full: BatchNormalization statistics of the base")
    a = p.parse_args()

    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(123)

    model = build(tf, a.model, a.size, a.mode, a.bn)
    rng = np.random.default_rng(123)
    x = tf.constant(rng.uniform(-1, 1, (a.batch, a.size, a.size, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, 2, a.batch).astype(np.int32))

    if a.mode == "infer":
        @tf.function(jit_compile=False)
        def step():
            return model(x, training=False)
    else:
        opt = tf.keras.optimizers.Adam(1e-4)
        loss_fn = tf.keras.losses.SparseCategoricalCrossentropy()
        tvars = model.trainable_variables
        opt.build(tvars)

        @tf.function(jit_compile=False)
        def step():
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                loss = loss_fn(y, pred)
            grads = tape.gradient(loss, tvars)
            opt.apply_gradients(zip(grads, tvars))
            return loss

    for _ in range(a.warmup):
        step().numpy()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - t0)
    common.emit({
        "framework": "tensorflow", "version": tf.__version__, "model": a.model, "size": a.size,
        "batch": a.batch, "mode": a.mode, "threads": a.threads, "bn": a.bn,
        "trainable_params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "images_per_s": a.batch * len(times) / sum(times),
        "iter_s": [round(t, 5) for t in times],
    })


if __name__ == "__main__":
    main()
