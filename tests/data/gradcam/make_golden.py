#!/usr/bin/env python3
"""Reference Grad-CAM maps for tests/unit/test_gradcam_golden.c, computed by TensorFlow/Keras.

The radbatch model file (model.h5: the network description in the `architecture`
attribute, the weights under /weights/<layer>/<weight>) is rebuilt layer by layer as a
Keras model with the same weights (h5py), split at the explained layer (the input of
Flatten / GlobalAveragePooling2D), and Grad-CAM is computed with tf.GradientTape exactly as
docs/engine.md defines it: score = logit of the explained unit (the last Dense without its
softmax/sigmoid), alpha_k = mean over (h, w) of dScore/dA_k, coarse = ReLU(sum_k alpha_k A_k),
map = tf.image.resize(coarse, input size, "bilinear") / max.

The images are the first `--count` records of a radbatch shard (the preprocessed uint8
inputs radbatch itself feeds the model, so both sides see the same pixels).

Run (TensorFlow is not a test dependency; any venv with tensorflow-cpu and h5py):
    python3 -m venv /tmp/venv-tf && /tmp/venv-tf/bin/pip install tensorflow-cpu h5py
    /tmp/venv-tf/bin/python tests/data/gradcam/make_golden.py \
        --model tests/data/gradcam/cnn96_gray.h5 --shard <shards>/val-00000-of-00001.h5 \
        --out tests/data/gradcam/golden_cnn96.h5
The committed files were made with TensorFlow 2.21.0 / Keras 3.15.1 (versions stored as
attributes of the output). How the model and the shard were made: README.md here.
"""
import argparse

import h5py
import numpy as np
import tensorflow as tf
import keras


def parse_architecture(text):
    layers = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("[") or line.startswith("[model]"):
            continue
        cls, rest = line[1:].split("]", 1)
        kv = dict(tok.split("=", 1) for tok in rest.split())
        layers.append((cls, kv))
    return layers


def build(layers, weights):
    """Keras layers in order; returns (input shape, preprocess, [(name, callable)])"""
    out = []
    inp = None
    for cls, kv in layers:
        name = kv["name"]
        if cls == "InputLayer":
            inp = tuple(int(v) for v in kv["shape"].split(","))
            pre = kv.get("preprocess", "none")
            continue
        if cls == "Conv2D":
            k = int(kv.get("kernel", "1").split(",")[0])
            s = int(kv.get("strides", "1").split(",")[0])
            l = keras.layers.Conv2D(int(kv["filters"]), k, strides=s, padding=kv.get("padding", "valid"),
                                    use_bias=kv.get("use_bias", "true") == "true",
                                    activation=kv.get("activation", "linear"), name=name)
        elif cls == "BatchNormalization":
            l = keras.layers.BatchNormalization(epsilon=float(kv.get("epsilon", "0.001")),
                                                momentum=float(kv.get("momentum", "0.99")), name=name)
        elif cls == "ReLU":
            mv = kv.get("max_value")
            l = keras.layers.ReLU(max_value=float(mv) if mv else None, name=name)
        elif cls == "MaxPooling2D":
            p = int(kv.get("pool", "2").split(",")[0])
            l = keras.layers.MaxPooling2D(p, strides=int(kv.get("strides", str(p)).split(",")[0]), name=name)
        elif cls == "Flatten":
            l = keras.layers.Flatten(name=name)
        elif cls == "GlobalAveragePooling2D":
            l = keras.layers.GlobalAveragePooling2D(name=name)
        elif cls == "Dropout":
            l = keras.layers.Dropout(float(kv["rate"]), name=name)
        elif cls == "Dense":
            l = keras.layers.Dense(int(kv["units"]), activation=kv.get("activation", "linear"), name=name)
        else:
            raise SystemExit(f"layer class {cls} not handled by this script")
        out.append((cls, name, l, kv))
    return inp, pre, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--shard", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--unit", type=int, default=1, help="explained output unit (1: PNEUMONIA)")
    a = ap.parse_args()

    with h5py.File(a.model, "r") as f:
        arch = f.attrs["architecture"]
        arch = arch.decode() if isinstance(arch, bytes) else arch
        w = {g: {k: np.array(f["weights"][g][k]) for k in f["weights"][g]} for g in f["weights"]}
    inp, pre, layers = build(parse_architecture(arch), w)
    with h5py.File(a.shard, "r") as f:
        images = np.array(f["images"][: a.count])
        paths = [p.decode() if isinstance(p, bytes) else p for p in f["paths"][: a.count]]

    x = keras.Input(shape=inp)
    t = x
    split = None
    for i, (cls, name, l, kv) in enumerate(layers):
        if cls in ("Flatten", "GlobalAveragePooling2D") and split is None:
            split = i
        t = l(t)
    for cls, name, l, kv in layers:
        if cls == "Conv2D":
            l.set_weights([w[name]["kernel"]] + ([w[name]["bias"]] if l.use_bias else []))
        elif cls == "BatchNormalization":
            l.set_weights([w[name][k] for k in ("gamma", "beta", "moving_mean", "moving_variance")])
        elif cls == "Dense":
            l.set_weights([w[name]["kernel"], w[name]["bias"]])

    xf = tf.cast(images, tf.float32)
    if pre == "div255":
        xf = xf / 255.0
    elif pre == "tf":
        xf = xf / 127.5 - 1.0
    elif pre != "none":
        raise SystemExit(f"preprocess {pre} not handled")
    A = xf
    for cls, name, l, kv in layers[:split]:
        A = l(A, training=False) if cls in ("BatchNormalization", "Dropout") else l(A)
    with tf.GradientTape() as tape:
        tape.watch(A)
        h = A
        for cls, name, l, kv in layers[split:]:
            if l is layers[-1][2]:
                h = tf.matmul(h, l.kernel) + l.bias  # the logits: the last Dense without activation
            else:
                h = l(h, training=False) if cls == "Dropout" else l(h)
        score = h[:, a.unit]
    G = tape.gradient(score, A)
    alpha = tf.reduce_mean(G, axis=(1, 2))
    coarse = tf.nn.relu(tf.reduce_sum(A * alpha[:, None, None, :], axis=-1))
    up = tf.image.resize(coarse[..., None], (inp[0], inp[1]), method="bilinear")[..., 0]
    mx = tf.reduce_max(up, axis=(1, 2), keepdims=True)
    maps = tf.where(mx > 0, up / tf.where(mx > 0, mx, 1.0), 0.0)

    with h5py.File(a.out, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("paths", data=np.array(paths, dtype=h5py.string_dtype()))
        f.create_dataset("logits", data=h.numpy().astype(np.float32))
        f.create_dataset("A", data=A.numpy().astype(np.float32))
        f.create_dataset("G", data=G.numpy().astype(np.float32))
        f.create_dataset("coarse", data=coarse.numpy().astype(np.float32))
        f.create_dataset("maps", data=maps.numpy().astype(np.float32))
        f.attrs["unit"] = np.int32(a.unit)
        f.attrs["layer"] = layers[split - 1][1]
        f.attrs["tensorflow"] = tf.__version__
        f.attrs["keras"] = keras.__version__
    print(f"{a.out}: {len(images)} images, layer {layers[split - 1][1]} {tuple(A.shape[1:])}, "
          f"logits {h.numpy()[:, a.unit]}")


if __name__ == "__main__":
    main()
