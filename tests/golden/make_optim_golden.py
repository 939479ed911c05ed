#!/usr/bin/env python3
"""Golden values for tests/unit/test_optim.c and tests/unit/test_loss.c, from Keras itself.

Run by hand (CI only reads the committed output):
    pip install tensorflow-cpu numpy
    python3 tests/golden/make_optim_golden.py     # writes tests/golden/optim_golden.txt

Optimizers: one float32 variable (2 x 5) with fixed initial values gets N fixed gradients
through keras.optimizers.<X>.apply_gradients; the weights after every step are written.
Losses: Keras loss objects (reduction sum_over_batch_size) on fixed inputs, value and the
gradient with respect to the input (tf.GradientTape). Class weights enter as Keras' fit()
passes them, sample_weight = class_weight[label] (checked below against a real fit()).

Format: '#' comments; otherwise a keyword and whitespace-separated values, float32 values
printed with 9 significant digits (exact for float32):
    opt <name> <key=value ...>      an optimizer case: keys learning_rate, beta_1, beta_2,
                                    epsilon, momentum, nesterov, rho, centered
    init <v...>                     initial weights (shared by every case)
    grad <step> <v...>              the gradient of step (shared)
    after <step> <v...>             weights after that step (for the current case)
    loss <name> n=.. c=.. smoothing=.. cw=<w0,w1,..|none>
    x <v...> / y <v...> / value <v> / dx <v...>
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf
import keras

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 6


def f9(a):
    return " ".join("%.9g" % float(v) for v in np.asarray(a, np.float32).reshape(-1))


def optimizer_cases():
    return [
        ("adam_default", keras.optimizers.Adam, {}),
        ("adam_seed000", keras.optimizers.Adam, {"learning_rate": 1e-4}),
        ("sgd_default", keras.optimizers.SGD, {}),
        ("sgd_momentum", keras.optimizers.SGD, {"learning_rate": 0.05, "momentum": 0.9}),
        ("sgd_nesterov", keras.optimizers.SGD,
         {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
        ("rmsprop_default", keras.optimizers.RMSprop, {}),
        ("rmsprop_momentum_centered", keras.optimizers.RMSprop,
         {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
    ]


def opt_params(opt):
    cfg = opt.get_config()
    keys = ["learning_rate", "beta_1", "beta_2", "epsilon", "momentum", "nesterov", "rho",
            "centered"]
    out = []
    for k in keys:
        if k in cfg:
            v = cfg[k]
            if isinstance(v, bool):
                v = int(v)
            out.append("%s=%.9g" % (k, float(v)))
    return " ".join(out)


def check_class_weight_semantics():
    """fit(class_weight=...) == loss with sample_weight=cw[y], divided by the batch size."""
    x = np.array([[1., 2.], [0.5, -1.], [3., 0.], [-2., 1.]], np.float32)
    y = np.array([0, 1, 2, 1])
    cw = {0: 1.0, 1: 3.0, 2: 0.5}
    w0 = np.array([[0.3, -0.2, 0.1], [0.05, 0.4, -0.3]], np.float32)
    m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    m.layers[0].set_weights([w0, np.zeros(3, np.float32)])
    m.compile(optimizer=keras.optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
    h = m.fit(x, y, batch_size=4, epochs=1, class_weight=cw, verbose=0, shuffle=False)
    z = x @ w0
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    l = -np.log(p[np.arange(4), y])
    w = np.array([cw[int(i)] for i in y])
    by_n, by_w = (w * l).sum() / 4, (w * l).sum() / w.sum()
    assert abs(h.history["loss"][0] - by_n) < 1e-5, (h.history["loss"][0], by_n, by_w)
    return h.history["loss"][0], by_n, by_w


def loss_cases():
    rng = np.random.default_rng(2024)
    cases = []
    n, c = 5, 4
    logits = rng.normal(0, 2, (n, c)).astype(np.float32)
    logits[3] = [30.0, -30.0, 0.5, -2.0]  # extreme: clipping matters from probabilities
    y = np.array([0, 3, 2, 1, 1], np.int32)
    cw = np.array([1.0, 2.5, 0.5, 4.0], np.float32)
    probs = tf.nn.softmax(logits).numpy()
    probs[1] *= 1.01  # not normalized: the sparse and categorical paths renormalize
    probs[4] = [0.0, 0.7, 0.2, 0.1]  # an exact zero, clipped
    for from_logits, x in ((True, logits), (False, probs)):
        kind = "logits" if from_logits else "probs"
        for smoothing in (0.0, 0.1):
            for weights in (None, cw):
                if smoothing == 0.0:
                    fn = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
                    target = y
                else:
                    fn = keras.losses.CategoricalCrossentropy(
                        from_logits=from_logits, label_smoothing=smoothing)
                    target = np.eye(c, dtype=np.float32)[y]
                cases.append(("sparse_ce_" + kind, n, c, smoothing, weights, x, y, fn, target,
                              None if weights is None else weights[y]))
    # binary: one output (seed 002's sigmoid) with class weights, and three outputs
    zb = rng.normal(0, 3, (6, 1)).astype(np.float32)
    zb[2] = 25.0
    tb = np.array([[1], [0], [0], [1], [1], [0]], np.float32)
    cwb = np.array([0.7, 2.0], np.float32)
    zm = rng.normal(0, 2, (3, 3)).astype(np.float32)
    tm = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], np.float32)
    for from_logits in (True, False):
        kind = "logits" if from_logits else "probs"
        for smoothing in (0.0, 0.2):
            fn = keras.losses.BinaryCrossentropy(from_logits=from_logits,
                                                 label_smoothing=smoothing)
            xb = zb if from_logits else tf.sigmoid(zb).numpy()
            xm = zm if from_logits else tf.sigmoid(zm).numpy()
            cases.append(("bce_" + kind, 6, 1, smoothing, cwb, xb, tb, fn, tb,
                          cwb[tb[:, 0].astype(int)]))
            cases.append(("bce_" + kind, 3, 3, smoothing, None, xm, tm, fn, tm, None))
    return cases


def main():
    lines = ["# written by tests/golden/make_optim_golden.py with keras %s, tensorflow %s"
             % (keras.__version__, tf.__version__)]
    got, by_n, by_w = check_class_weight_semantics()
    lines.append("# class_weight check: fit() loss %.7g = sum(w*l)/batch %.7g (sum(w*l)/sum(w)"
                 " would be %.7g)" % (got, by_n, by_w))
    rng = np.random.default_rng(7)
    w0 = rng.uniform(-1, 1, (2, 5)).astype(np.float32)
    grads = [rng.normal(0, 1, (2, 5)).astype(np.float32) for _ in range(STEPS)]
    grads[3][0, 0] = 0.0  # a zero gradient: Adam still moves it through m
    lines.append("init " + f9(w0))
    for s, g in enumerate(grads):
        lines.append("grad %d %s" % (s + 1, f9(g)))
    for name, cls, kw in optimizer_cases():
        opt = cls(**kw)
        var = keras.Variable(w0)
        lines.append("opt %s %s" % (name, opt_params(opt)))
        for s, g in enumerate(grads):
            opt.apply_gradients([(tf.constant(g), var)])
            lines.append("after %d %s" % (s + 1, f9(var.numpy())))
    for (name, n, c, smoothing, cw, x, y, fn, target, sw) in loss_cases():
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = fn(target, xt, sample_weight=None if sw is None else tf.constant(sw))
        dx = tape.gradient(value, xt).numpy()
        cws = "none" if cw is None else ",".join("%.9g" % v for v in cw)
        lines.append("loss %s n=%d c=%d smoothing=%.9g cw=%s" % (name, n, c, smoothing, cws))
        lines.append("x " + f9(x))
        lines.append("y " + " ".join("%.9g" % v for v in np.asarray(y).reshape(-1)))
        lines.append("value %.9g" % float(value))
        lines.append("dx " + f9(dx))
    path = os.path.join(HERE, "optim_golden.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
