#!/usr/bin/env python3
"""Write the small Keras weight files that tests/unit/test_keras_import.c loads.

Run by hand (CI never runs it; the outputs are committed):
    pip install tensorflow-cpu tf-keras h5py numpy
    python3 tests/golden/make_keras_files.py            # writes tests/golden/keras/

Two models, each with seeded non-default weights (so a value read from the wrong tensor,
or a transposed one, cannot pass):
  mnv2mini  seed 000 in miniature: a Functional backbone named "mobilenetv2_1.00_160" with
            MobileNetV2 layer names (Conv2D, BatchNormalization, ReLU(6), DepthwiseConv2D),
            nested as one layer of an outer Functional model with the seed-000 head
            (GlobalAveragePooling2D, Dropout 0.3, Dense relu, Dense softmax).
  cnn       seed 001 in miniature: Sequential of two subclassed `Conv` blocks (Conv2D, BN,
            ReLU, MaxPool2D as attributes), Flatten, Dense relu, Dense softmax; layer names
            are Keras' automatic ones (conv2d, batch_normalization, conv2d_1, ...).

Files (each writer's own layout, bytes as the framework wrote them):
  keras3_mnv2mini.keras      Keras 3 archive (config.json + model.weights.h5); both archives
                             are re-zipped with deflate (members byte-identical) to stay small
  keras3_cnn.weights.h5      Keras 3 save_weights (layers/<attr>/vars/<i>, name attributes)
  keras3_mnv2mini_full.h5    Keras 3 model.save('x.h5'): legacy layout under /model_weights
  tfkeras_mnv2mini_weights.h5  tf-keras (Keras 2) save_weights: legacy layout at the root,
                               weight names with ':0'
  tfkeras_cnn_full.h5        tf-keras model.save('x.h5') of the subclassed CNN
  tfkeras_mnv2mini.keras     tf-keras archive: its model.weights.h5 has no `name`
                             attributes, so names come from config.json
  expected.json              every tensor: layer, weight, shape, values as float.hex()
"""
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "keras")


def build(keras, which):
    layers = keras.layers
    if which == "mnv2mini":
        inp = keras.Input((12, 12, 3))
        x = layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False, name="Conv1")(inp)
        x = layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name="bn_Conv1")(x)
        x = layers.ReLU(6.0, name="Conv1_relu")(x)
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False,
                                   name="expanded_conv_depthwise")(x)
        x = layers.BatchNormalization(epsilon=1e-3, momentum=0.999,
                                      name="expanded_conv_depthwise_BN")(x)
        x = layers.ReLU(6.0, name="expanded_conv_depthwise_relu")(x)
        x = layers.Conv2D(5, 1, use_bias=False, name="expanded_conv_project")(x)
        x = layers.BatchNormalization(epsilon=1e-3, momentum=0.999,
                                      name="expanded_conv_project_BN")(x)
        base = keras.Model(inp, x, name="mobilenetv2_1.00_160")
        base.trainable = False
        inputs = keras.Input((12, 12, 3))
        x = base(inputs, training=False)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dropout(0.3)(x)
        x = layers.Dense(7, activation="relu")(x)
        outputs = layers.Dense(3, activation="softmax")(x)
        return keras.Model(inputs, outputs)

    # seed 001: a Sequential of subclassed blocks
    class Conv(keras.Model):
        def __init__(self, filters, kernel_size, **kw):
            super().__init__(**kw)
            self.filters, self.kernel_size = filters, kernel_size
            self.conv = layers.Conv2D(filters=filters, kernel_size=kernel_size)
            self.bn = layers.BatchNormalization()
            self.relu = layers.ReLU()
            self.pool = layers.MaxPool2D(pool_size=(2, 2))

        def call(self, inputs, training=True):
            x = self.conv(inputs)
            x = self.bn(x, training=training)
            return self.pool(self.relu(x))

        def get_config(self):
            return {"filters": self.filters, "kernel_size": self.kernel_size}

    m = keras.Sequential(name="X-ray_CNN")
    m.add(Conv(4, (3, 3)))
    m.add(Conv(6, (3, 3)))
    m.add(layers.Flatten())
    m.add(layers.Dense(5, activation="relu"))
    m.add(layers.Dense(2, activation="softmax"))
    m.build((None, 14, 14, 3))
    return m


def seeded_weights(model, seed):
    """Distinct, non-default values for every variable; variances positive."""
    import numpy as np
    rng = np.random.default_rng(seed)
    out = []
    for w in model.weights:
        shape = tuple(w.shape)
        name = w.name.split("/")[-1].split(":")[0]
        v = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        if name == "moving_variance":
            v = rng.uniform(0.1, 2.0, size=shape).astype(np.float32)
        out.append(v)
    return out


def layer_listing(model):
    """(layer, weight, array) in model order, nested models flattened."""
    out = []

    def walk(layer):
        sub = getattr(layer, "layers", None)
        if sub:  # a model: its own layers, flattened
            for l in sub:
                walk(l)
            return
        for w in layer.weights:
            out.append((layer.name, w.name.split("/")[-1].split(":")[0], w.numpy()))

    for l in model.layers:
        walk(l)
    return out


def deflate_archive(path):
    """Keras stores archive members uncompressed; re-zip them with deflate so the committed
    files stay small. The members (config.json, model.weights.h5) keep their exact bytes."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        members = [(i, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(path + ".tmp", "w", compression=zipfile.ZIP_DEFLATED) as z:
        for info, data in members:
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    os.replace(path + ".tmp", path)


def writer(framework):
    """Runs in a subprocess so each framework starts with fresh automatic layer names."""
    if framework == "keras3":
        import keras
    else:
        import tf_keras as keras
    import numpy as np
    expected = {}
    for which, seed in (("mnv2mini", 1000), ("cnn", 1001)):
        keras.backend.clear_session()
        m = build(keras, which)
        m.set_weights(seeded_weights(m, seed))
        base = os.path.join(OUT, f"{framework}_{which}")
        if framework == "keras3":
            if which == "mnv2mini":
                m.save(base + ".keras")
                deflate_archive(base + ".keras")
                m.save(base + "_full.h5")
            else:
                m.save_weights(base + ".weights.h5")
        else:
            if which == "mnv2mini":
                m.save_weights(base + "_weights.h5")
                m.save(base + ".keras")
                deflate_archive(base + ".keras")
            else:
                m.save(base + "_full.h5")
        expected[which] = [
            {"layer": l, "weight": w, "shape": list(a.shape),
             "hex": [float(x).hex() for x in a.reshape(-1).astype(np.float64)]}
            for (l, w, a) in layer_listing(m)]
    versions = {"keras": keras.__version__}
    import tensorflow as tf
    versions["tensorflow"] = tf.__version__
    print(json.dumps({"expected": expected, "versions": versions}))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--writer":
        writer(sys.argv[2])
        return
    os.makedirs(OUT, exist_ok=True)
    results = {}
    for fw in ("keras3", "tfkeras"):
        r = subprocess.run([sys.executable, __file__, "--writer", fw], check=True,
                           capture_output=True, text=True)
        results[fw] = json.loads(r.stdout.strip().splitlines()[-1])
    # both frameworks were given the same values: check, then write one listing
    a, b = results["keras3"]["expected"], results["tfkeras"]["expected"]
    for which in a:
        ka = [(t["layer"], t["weight"], t["hex"]) for t in a[which]]
        kb = [(t["layer"], t["weight"], t["hex"]) for t in b[which]]
        if ka != kb:
            # tf-keras names DepthwiseConv2D's kernel depthwise_kernel, Keras 3 kernel
            for x, y in zip(ka, kb):
                if x[0] != y[0] or x[2] != y[2]:
                    sys.exit(f"{which}: frameworks disagree at {x[0]}/{x[1]} vs {y[0]}/{y[1]}")
    listing = {
        "about": "written by tests/golden/make_keras_files.py; values are float32 as float.hex()",
        "versions": {fw: results[fw]["versions"] for fw in results},
        "models": b,  # tf-keras weight names (depthwise_kernel), radbatch's names
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(listing, f, indent=0)
        f.write("\n")
    for fn in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, fn)):8d} {fn}")


if __name__ == "__main__":
    main()
