"""fp32 and int8 ONNX files of one model side by side (run by tests/e2e/export_int8.sh
through $RADBATCH_PYTHON).

  onnx_int8_check.py FP32.onnx INT8.onnx VAL_SHARDS SAMPLE_SHARDS MIN_AGREE MAX_AUC_DROP

- onnx.checker accepts the int8 file; it is a QDQ model: every Conv and Gemm reads its
  weight from a DequantizeLinear of an int8 initializer with one scale per output channel
  (symmetric: zero points 0), and its activation input from a DequantizeLinear of a
  QuantizeLinear (uint8), except the first, which reads the float preprocessed image;
  every Conv's output goes to one QuantizeLinear (BatchNorm, ReLU and padding folded in);
- on the validation split (every val-*.h5 of VAL_SHARDS) prints accuracy, sensitivity,
  specificity at the model's threshold and ROC AUC of both, and requires
  AUC(fp32) - AUC(int8) <= MAX_AUC_DROP;
- on every image of SAMPLE_SHARDS (the bundled sample) the two decisions (threshold on the
  positive class) agree for at least MIN_AGREE of the images."""
import glob
import json
import sys

import h5py
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def load(pattern):
    xs, ys = [], []
    for f in sorted(glob.glob(pattern)):
        with h5py.File(f, "r") as h:
            xs.append(h["images"][...])
            ys.append(h["labels"][...])
    if not xs:
        fail(f"no shards match {pattern}")
    return np.concatenate(xs), np.concatenate(ys)


def auc(score, positive):
    p, n = score[positive], score[~positive]
    if len(p) == 0 or len(n) == 0:
        fail("the validation split needs both classes")
    order = np.argsort(np.concatenate([p, n]), kind="mergesort")
    allv = np.concatenate([p, n])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    return (r[:len(p)].sum() - len(p) * (len(p) + 1) / 2) / (len(p) * len(n))


def check_qdq(path):
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    inits = {t.name: t for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    nq = 0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm"):
            continue
        x, w = producer.get(n.input[0]), producer.get(n.input[1])
        first = nq == 0  # the first layer reads the float preprocessed image (docs/export.md)
        if first and x and x.op_type in ("Transpose", "Pad"):
            pass
        elif not x or x.op_type != "DequantizeLinear" or producer.get(x.input[0]).op_type != "QuantizeLinear":
            fail(f"{n.name}: input is not QuantizeLinear -> DequantizeLinear")
        elif inits[x.input[2]].data_type != onnx.TensorProto.UINT8:
            fail(f"{n.name}: activation zero point is not uint8")
        if not w or w.op_type != "DequantizeLinear" or w.input[0] not in inits:
            fail(f"{n.name}: weight is not a DequantizeLinear of an initializer")
        q = inits[w.input[0]]
        scale = numpy_helper.to_array(inits[w.input[1]])
        zp = numpy_helper.to_array(inits[w.input[2]])
        axis = next((a.i for a in w.attribute if a.name == "axis"), 1)
        if q.data_type != onnx.TensorProto.INT8 or scale.shape != (q.dims[axis],) or np.any(zp != 0):
            fail(f"{n.name}: weights are not int8 symmetric per output channel")
        readers = [r.op_type for r in m.graph.node if n.output[0] in r.input]
        if n.op_type == "Conv" and readers != ["QuantizeLinear"]:
            fail(f"{n.name}: output read by {readers}, not by one QuantizeLinear")
        nq += 1
    if nq == 0:
        fail("no quantized Conv or Gemm")
    return m, nq


def main():
    f32, i8, val_dir, sample_dir = sys.argv[1:5]
    min_agree, max_drop = float(sys.argv[5]), float(sys.argv[6])
    _, nq = check_qdq(i8)
    s32 = ort.InferenceSession(f32, providers=["CPUExecutionProvider"])
    s8 = ort.InferenceSession(i8, providers=["CPUExecutionProvider"])
    meta = s32.get_modelmeta().custom_metadata_map
    classes = json.loads(meta["class_names"])
    pos, thr = classes.index(meta["positive_class"]), float(meta["threshold"])

    def score(s, x):
        return np.concatenate([s.run(["probabilities"], {"image": x[i:i + 64]})[0][:, pos]
                               for i in range(0, len(x), 64)])

    x, y = load(val_dir + "/val-*.h5")
    y = y == pos
    rows, dec = [], []
    for name, s in (("fp32", s32), ("int8", s8)):
        p = score(s, x)
        d = p >= thr
        dec.append(d)
        rows.append((name, (d == y).mean(), d[y].mean(), (~d[~y]).mean(), auc(p, y)))
    print(f"validation split: {len(x)} images, threshold {thr:.4f} on {classes[pos]}, {nq} quantized Conv/Gemm")
    print(f"{'model':6s} {'accuracy':>9s} {'sensitivity':>12s} {'specificity':>12s} {'AUC':>8s}")
    for r in rows:
        print(f"{r[0]:6s} {r[1]:9.4f} {r[2]:12.4f} {r[3]:12.4f} {r[4]:8.4f}")
    val_agree = (dec[0] == dec[1]).mean()
    print(f"validation decisions agree on {val_agree * 100:.2f}%")
    drop = rows[0][4] - rows[1][4]
    xs, _ = load(sample_dir + "/*.h5")
    p32, p8 = score(s32, xs), score(s8, xs)
    a, b = p32 >= thr, p8 >= thr
    agree = (a == b).mean()
    print(f"AUC drop {drop:.4f}; decisions agree on {agree * 100:.2f}% of {len(xs)} sample images")
    print(f"sample: max |p_int8 - p_fp32| {np.abs(p8 - p32).max():.4f}; flipped images' fp32 distance to the threshold: "
          + ", ".join(f"{abs(v - thr):.4f}" for v in p32[a != b]))
    if drop > max_drop:
        fail(f"AUC drop {drop:.4f} > {max_drop}")
    if agree < min_agree:
        fail(f"agreement {agree:.4f} < {min_agree} on the sample")
    if val_agree < min_agree:
        fail(f"agreement {val_agree:.4f} < {min_agree} on the validation split")


main()
