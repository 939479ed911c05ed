#!/usr/bin/env python3
"""Golden outputs, loss and weight gradients of whole models from tf.keras, for
tests/unit/test_model_golden.c (radbatch must reproduce them).

Run by hand (CI never runs it; the outputs are committed):
    pip install tensorflow-cpu h5py numpy        # checked with tensorflow 2.21 / Keras 3
    python3 tests/golden/make_model_golden.py    # writes tests/golden/model/

Two models, as the seeds build them, with the layer names radbatch's builders give:
  mnv2  tf.keras.applications.MobileNetV2(input_shape=(32,32,3), include_top=False,
        weights=None, alpha=1.0), base.trainable = False, called as base(x, training=False),
        then the seed-000 head: GlobalAveragePooling2D -> Dropout -> Dense(128, relu) ->
        Dense(2, softmax). Input: uint8 pixels through preprocess "tf" (x / 127.5 - 1).
  cnn   the seed-001 CNN at 64x64x3 (32x32 would make the 4th valid conv negative):
        4 x [Conv2D 3x3 valid 32/64/128/128 -> BatchNormalization -> ReLU -> MaxPool 2],
        Flatten, Dense(512, relu), Dense(2, softmax); everything trainable, BatchNorm in
        training mode (batch statistics). Input: uint8 pixels / 255.

Reproducibility choices (the C test makes the same ones):
  - Dropout: the golden mnv2 head has Dropout(rate=0.0) (radbatch: head dropout 0, no
    layer), so the training-mode loss and gradients carry no dropout randomness. Everything
    else is the training-mode graph (training=True; the frozen base runs with
    training=False, as in seed 000).
  - Loss: Keras' model.fit computes sparse categorical cross-entropy from the logits
    cached on the softmax (no probability clipping); this script computes the same thing
    explicitly: logits = dense_1 pre-activation, sparse_categorical_crossentropy(
    from_logits=True), mean over the batch. Gradients by tf.GradientTape over
    model.trainable_weights.
  - Order: inference-mode probabilities first (moving statistics as loaded), then one
    training-mode forward + backward; for the cnn that forward updates the BatchNorm
    moving statistics (momentum 0.99, biased batch variance), which are dumped after it.

Weights: seeded (tf.keras.utils.set_random_seed(1234)) Keras initial values, made
non-trivial for BatchNorm (gamma, beta, moving mean and variance drawn at random), then
every tensor with more than PERIOD values is the tiling of its own first PERIOD values
(made zero-mean for kernels), so
that the weight files compress (deflate) to a few KB although MobileNetV2 has 2.3 M
parameters. PERIOD is prime, so a tensor read in a wrong (transposed) order does not
match. Keras writes the weights (model.save_weights('x.weights.h5'), Keras 3 layout); the
file is then re-written with h5py, byte-for-byte the same groups, attributes and values,
only with each dataset deflate-compressed in one chunk and the HDF5 1.10 file format (its
single-chunk index keeps the ~260 datasets small; libhdf5 >= 1.10 reads it transparently).

Output files (tests/golden/model/):
  <m>.weights.h5  the weights (Keras 3 .weights.h5 layout, compressed)
  <m>.txt         text: a header line per block, then values (%.8g), blocks:
                    input  <n> <h> <w> <c> <salt>  the uint8 pixels are pixels(n,h,w,c,salt)
                    labels <n>
                    probs  <n> <classes>           inference-mode output
                    loss   <value>                 mean training-mode loss
                    grad   <layer> <k> <size> <stride> <count> <max_abs> <sum> <sum_abs> <sum_sq>
                           then <count> values g[0], g[stride], ... (flat Keras order)
                    moving <layer> <k> <size>      (cnn) moving statistics after the step
                  Large gradient tensors are sampled at a stride (file size), the sums
                  (float64) cover every value.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "model")
PERIOD = 31       # tiling period of the weights (prime)
MAX_SAMPLES = 64  # values kept per gradient tensor
N = 3             # batch
keras = tf.keras
L = keras.layers


def pixels(n, h, w, c, salt):
    i = np.arange(n * h * w * c, dtype=np.int64)
    img = i // (h * w * c)
    return ((i * 37 + (i // c) * 11 + salt * 101 + (i * i) % 7 + img * img * 71 + (i * img) % 13)
             % 256).astype(np.uint8) \
        .reshape(n, h, w, c)


def build_mnv2():
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False,
                                          weights=None, alpha=1.0)
    base.trainable = False
    inp = keras.Input((32, 32, 3), name="input_1")
    x = base(inp, training=False)
    x = L.GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    x = L.Dropout(0.0, name="dropout")(x)  # seed 000 has 0.3: see the docstring
    feat = L.Dense(128, activation="relu", name="dense")(x)
    out = L.Dense(2, activation="softmax", name="dense_1")(feat)
    return keras.Model(inp, out, name="seed000"), keras.Model(inp, feat)


def build_cnn():
    inp = keras.Input((64, 64, 3), name="input_1")
    x = inp
    for i, f in enumerate((32, 64, 128, 128)):
        s = "_%d" % i if i else ""
        x = L.Conv2D(f, 3, padding="valid", name="conv2d" + s)(x)
        x = L.BatchNormalization(momentum=0.99, epsilon=1e-3, name="batch_normalization" + s)(x)
        x = L.ReLU(name="re_lu" + s)(x)
        x = L.MaxPool2D(2, name="max_pooling2d" + s)(x)
    x = L.Flatten(name="flatten")(x)
    feat = L.Dense(512, activation="relu", name="dense")(x)
    out = L.Dense(2, activation="softmax", name="dense_1")(feat)
    return keras.Model(inp, out, name="X-ray_CNN"), keras.Model(inp, feat)


def all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        else:
            yield layer


def seed_weights(model, rng):
    for layer in all_layers(model):
        ws = layer.get_weights()
        if not ws:
            continue
        if isinstance(layer, L.BatchNormalization):
            c = ws[0].shape[0]
            ws = [rng.uniform(0.6, 1.4, c), rng.uniform(-0.3, 0.3, c),
                  rng.uniform(-0.3, 0.3, c), rng.uniform(0.5, 1.5, c)]
        elif len(ws) > 1:  # biases: small random instead of zeros
            ws[1] = rng.uniform(-0.1, 0.1, ws[1].shape)
        new = []
        for w in ws:
            w = np.asarray(w, np.float32)
            flat = w.reshape(-1)
            if flat.size > PERIOD:
                base = flat[:PERIOD]
                if w.ndim >= 2:  # kernels: a zero-mean period, or the tiling would add up
                    base = base - base.mean()  # to one common offset (dead ReLUs)
                flat = np.resize(base, flat.size)
            new.append(flat.reshape(w.shape).astype(np.float32))
        layer.set_weights(new)


def coarse(v):
    """float32 with 3 mantissa bits: compresses well, still a generic value."""
    b = np.asarray(v, np.float32).view(np.uint32) & np.uint32(0xFFF00000)
    return b.view(np.float32)


def calibrate_bn(model, x, rng):
    """Deep random MobileNetV2 with unit moving variance loses the input (the outputs
    become the same for every image): set each frozen BatchNorm's moving statistics to
    the batch statistics of its input (one training-mode pass, momentum 0), perturbed
    and coarsened (coarse()) to keep the weight file small."""
    base = model.layers[1]
    bns = [l for l in all_layers(base) if isinstance(l, L.BatchNormalization)]
    base.trainable = True
    for l in bns:
        l.momentum = 0.0
    base(x, training=True)
    for l in bns:
        l.momentum = 0.999
        g, b, mm, mv = l.get_weights()
        c = mm.shape[0]
        mm = coarse(mm + 0.1 * np.sqrt(mv) * rng.uniform(-1, 1, c))
        mv = coarse(mv * rng.uniform(0.8, 1.25, c) + 1e-4)
        l.set_weights([g, b, mm, mv])
    base.trainable = False
    for name in ("dense", "dense_1"):  # features are up to 6 (ReLU6): keep logits moderate
        k, b = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([k * np.float32(0.05), b])


def compress_h5(src, dst):
    with h5py.File(src, "r") as fi, h5py.File(dst, "w", libver=("v110", "v110")) as fo:
        def copy(gi, go):
            for k, v in gi.attrs.items():
                go.attrs[k] = v
            for name, item in gi.items():
                if isinstance(item, h5py.Group):
                    copy(item, go.create_group(name))
                else:
                    data = item[()]
                    if item.shape and item.size > 16:
                        d = go.create_dataset(name, data=data, chunks=item.shape,
                                              compression="gzip", compression_opts=9,
                                              shuffle=True)
                    else:
                        d = go.create_dataset(name, data=data)
                    for k, v in item.attrs.items():
                        d.attrs[k] = v
        copy(fi, fo)


def fmt(v):
    return "%.8g" % float(v)


def run(tag, build, hw, salt):
    tf.keras.utils.set_random_seed(1234)
    model, featm = build()
    layer_of = layer_index(model)
    seed_weights(model, np.random.default_rng(1234 + salt))
    u8 = pixels(N, hw, hw, 3, salt)
    x = u8.astype(np.float32)
    x = x / np.float32(127.5) - np.float32(1) if tag == "mnv2" else x / np.float32(255)
    if tag == "mnv2":
        calibrate_bn(model, x, np.random.default_rng(99))
    raw = os.path.join(OUT, tag + ".raw.weights.h5")
    model.save_weights(raw)
    compress_h5(raw, os.path.join(OUT, tag + ".weights.h5"))
    os.remove(raw)
    labels = np.array([0, 1, 1][:N], np.int32)
    lines = ["input %d %d %d 3 %d" % (N, hw, hw, salt)]  # pixels(): the C test makes them
    lines.append("labels %d" % N)
    lines.append(" ".join(str(int(v)) for v in labels))

    probs = model(x, training=False).numpy()
    lines.append("probs %d %d" % probs.shape)
    lines += [" ".join(fmt(v) for v in row) for row in probs]

    last = model.get_layer("dense_1")
    with tf.GradientTape() as tape:
        feat = featm(x, training=True)
        logits = tf.matmul(feat, last.kernel) + last.bias
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
    tw = model.trainable_weights
    grads = tape.gradient(loss, tw)
    lines.append("loss " + fmt(loss.numpy()))
    for w, g in zip(tw, grads):
        layer, k = layer_of[id(w)]
        g = np.asarray(g, np.float32).reshape(-1)
        stride = max(1, -(-g.size // MAX_SAMPLES))
        s = g[::stride]
        g64 = g.astype(np.float64)
        lines.append("grad %s %d %d %d %d %s %s %s %s" % (
            layer, k, g.size, stride, s.size, fmt(np.abs(g).max()), repr(float(g64.sum())),
            repr(float(np.abs(g64).sum())), repr(float((g64 * g64).sum()))))
        lines.append(" ".join(fmt(v) for v in s))
    if tag == "cnn":
        for layer in all_layers(model):
            if isinstance(layer, L.BatchNormalization):
                for k, w in ((2, layer.moving_mean), (3, layer.moving_variance)):
                    v = w.numpy().reshape(-1)
                    lines.append("moving %s %d %d" % (layer.name, k, v.size))
                    lines.append(" ".join(fmt(t) for t in v))
    with open(os.path.join(OUT, tag + ".txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(tag, "loss", float(loss), "probs", probs.tolist())


def layer_index(model):
    out = {}
    for layer in all_layers(model):
        for k, w in enumerate(layer.weights):
            out[id(w)] = (layer.name, k)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    for tag, build, hw, salt in (("mnv2", build_mnv2, 32, 0), ("cnn", build_cnn, 64, 1)):
        run(tag, build, hw, salt)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote", OUT, total, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
