#!/usr/bin/env python3
"""Golden values for tests/unit/test_augment.c, from Keras' own affine augmentation.

Run by hand (CI only reads the committed output):
    pip install tensorflow-cpu scipy numpy
    python3 tests/golden/make_augment_golden.py    # writes tests/golden/augment_golden.txt

One fixed 32x32x1 image (integer gray levels: gradient, disk, bar, noise) is transformed by
tf.keras.preprocessing.image.apply_affine_transform (Keras 3: keras.src.legacy.preprocessing
.image; scipy.ndimage.affine_transform with order=1) with explicit parameters
(theta, tx, ty, shear, zx, zy), channels-last (row_axis=0, col_axis=1, channel_axis=2), in
each fill mode radbatch supports. Outputs are Keras' float64 values, which the C test
compares with its uint8 result (tolerance +-1 gray level).

Format: '#' comments; otherwise a keyword and whitespace-separated values:
    image <h> <w> <c> <v...>                               input, integers 0..255
    case <name> <fill_mode> <cval> <theta> <tx> <ty> <shear> <zx> <zy>
    out <v...>                                             Keras' output for the case, %.3f
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import scipy
import tensorflow as tf
import keras

HERE = os.path.dirname(os.path.abspath(__file__))
H = W = 32

CASES = [
    # name, fill_mode, cval, theta, tx, ty, shear, zx, zy
    ("all_nearest", "nearest", 0.0, 17.0, 2.5, -3.25, 8.0, 0.9, 1.15),
    ("all_constant", "constant", 7.0, -33.0, -4.0, 1.5, -12.0, 1.2, 0.85),
    ("all_reflect", "reflect", 0.0, 50.0, 6.0, 5.0, 20.0, 1.3, 1.25),
    ("seed001_like", "nearest", 0.0, 38.5, -5.1, 4.4, 0.2, 1.18, 0.83),
    ("shift_int", "nearest", 0.0, 0.0, 3.0, -2.0, 0.0, 1.0, 1.0),
    ("zoom_out", "constant", 0.0, 0.0, 0.0, 0.0, 0.0, 1.6, 1.6),
    ("rot90_theta", "nearest", 0.0, 90.0, 0.0, 0.0, 0.0, 1.0, 1.0),
]


def make_image():
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    img = 3.0 * x + 2.0 * y                                   # gradient 0..155
    img += 90.0 * (((x - 12.5) ** 2 + (y - 19.0) ** 2) < 36)  # off-centre disk
    img[4:7, 6:27] = 250.0                                     # horizontal bar near the top
    rng = np.random.default_rng(1234)
    img += rng.integers(0, 8, size=img.shape)                  # a little texture
    return np.clip(np.round(img), 0, 255).astype(np.uint8).reshape(H, W, 1)


def main():
    apply = tf.keras.preprocessing.image.apply_affine_transform
    img = make_image()
    lines = [
        "# written by tests/golden/make_augment_golden.py with keras %s, tensorflow %s, "
        "scipy %s" % (keras.__version__, tf.__version__, scipy.__version__),
        "# function: tf.keras.preprocessing.image.apply_affine_transform (%s)"
        % apply.__module__,
        "image %d %d 1 %s" % (H, W, " ".join(str(int(v)) for v in img.reshape(-1))),
    ]
    for name, mode, cval, theta, tx, ty, shear, zx, zy in CASES:
        out = apply(img.astype(np.float64), theta=theta, tx=tx, ty=ty, shear=shear, zx=zx,
                    zy=zy, row_axis=0, col_axis=1, channel_axis=2, fill_mode=mode,
                    cval=cval, order=1)
        lines.append("case %s %s %g %g %g %g %g %g %g"
                     % (name, mode, cval, theta, tx, ty, shear, zx, zy))
        lines.append("out " + " ".join("%.3f" % v for v in out.reshape(-1)))
    path = os.path.join(HERE, "augment_golden.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
