"""Check an ONNX file written by `radbatch export` with the real ONNX tools (run by
tests/e2e/export_onnx.sh through $RADBATCH_PYTHON).

  onnx_check.py MODEL.onnx SHARDS_DIR PREDICT_JSONL TOL [--ensemble a.onnx,b.onnx]

- onnx.checker.check_model(full_check=True) accepts the file (and every ensemble member);
- the graph has one input "image" uint8 [batch, H, W, C] with a symbolic batch and one
  output "probabilities" float [batch, K];
- metadata_props holds class_names (JSON, as the shards' class_names) and the model card;
- onnxruntime, fed the uint8 pixels of every image of the shards (in batches of 7 and of 1:
  the batch is dynamic), gives per image the probabilities `radbatch predict --json` printed
  for that image file, within TOL (an ensemble: the mean of the members' outputs);
- the decisions (argmax, or the threshold on the positive class for two classes) agree.
Prints the largest difference and the number of images compared."""
import glob
import json
import sys

import h5py
import numpy as np
import onnx
import onnxruntime as ort


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check_file(path):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    if model.ir_version != 8 or opsets != {"": 17}:
        fail(f"{path}: IR version {model.ir_version}, opsets {opsets}: expected IR 8, opset 17")
    g = model.graph
    for t in g.initializer:
        if "/" not in t.name:
            fail(f"{path}: initializer {t.name} is not named <layer>/<weight>")
    if [i.name for i in g.input] != ["image"] or [o.name for o in g.output] != ["probabilities"]:
        fail(f"{path}: inputs {[i.name for i in g.input]}, outputs {[o.name for o in g.output]}")
    it = g.input[0].type.tensor_type
    if it.elem_type != onnx.TensorProto.UINT8:
        fail(f"{path}: input type {it.elem_type}, expected uint8")
    dims = it.shape.dim
    if len(dims) != 4 or dims[0].dim_param == "" or any(d.dim_value <= 0 for d in dims[1:]):
        fail(f"{path}: input shape {dims}: expected [batch, H, W, C] with a symbolic batch")
    ot = g.output[0].type.tensor_type
    if ot.elem_type != onnx.TensorProto.FLOAT or ot.shape.dim[0].dim_param == "":
        fail(f"{path}: output must be float [batch, K]")
    return model, {p.key: p.value for p in model.metadata_props}


def main():
    path, shards, predict_jsonl, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    members = [path]
    if len(sys.argv) > 6 and sys.argv[5] == "--ensemble":
        members = sys.argv[6].split(",")
    metas = []
    for p in members:
        _, meta = check_file(p)
        metas.append(meta)
    meta = metas[0]
    for key in ("class_names", "model_card", "positive_class", "threshold", "preprocessing"):
        if key not in meta:
            fail(f"metadata_props without {key}: {sorted(meta)}")
    classes = json.loads(meta["class_names"])
    card = json.loads(meta["model_card"])
    if not isinstance(card, dict) or not card:
        fail("model_card is not a JSON object")
    if len(members) > 1 and any("ensemble" not in m for m in metas):
        fail("an ensemble member without the ensemble note in metadata_props")

    images, paths = [], []
    for f in sorted(glob.glob(shards + "/*.h5")):
        with h5py.File(f, "r") as h:
            shard_classes = [c.decode() if isinstance(c, bytes) else str(c) for c in h.attrs["class_names"]]
            if shard_classes != classes:
                fail(f"class_names {classes} differ from the shards' {shard_classes}")
            images.append(h["images"][...])
            paths += [p.decode() if isinstance(p, bytes) else str(p) for p in h["paths"][...]]
    x = np.concatenate(images)
    if x.dtype != np.uint8:
        fail(f"shard images are {x.dtype}")

    ref = {}
    with open(predict_jsonl) as f:
        for line in f:
            o = json.loads(line)
            ref[o["file"]] = o
    sessions = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in members]

    def run(batch):
        out = []
        for i in range(0, len(x), batch):
            acc = sum(s.run(["probabilities"], {"image": x[i:i + batch]})[0] for s in sessions)
            out.append(acc / len(sessions))
        return np.concatenate(out)

    p7, p1 = run(7), run(1)
    if p7.shape != (len(x), len(classes)):
        fail(f"output shape {p7.shape}, expected {(len(x), len(classes))}")
    pos = classes.index(meta["positive_class"])
    thr = float(meta["threshold"])
    worst, worst_file, compared, disagree = 0.0, "", 0, 0
    for i, rel in enumerate(paths):
        hits = [k for k in ref if k.endswith("/" + rel)]
        if len(hits) != 1:
            fail(f"{rel}: {len(hits)} predict results")
        r = ref[hits[0]]
        want = np.array([r["probabilities"][c] for c in classes])
        for got in (p7[i], p1[i]):
            d = float(np.max(np.abs(got - want)))
            if d > worst:
                worst, worst_file = d, rel
        got = p7[i]
        if len(classes) == 2:
            dec = classes[pos] if got[pos] >= thr else classes[1 - pos]
        else:
            dec = classes[int(np.argmax(got))]
        if dec != r["class"]:
            disagree += 1
        compared += 1
    print(f"compared {compared} images: largest |onnxruntime - predict| = {worst:.3g} ({worst_file}); "
          f"{disagree} decisions differ")
    if compared == 0:
        fail("no image compared")
    if worst > tol:
        fail(f"difference {worst:.3g} > {tol} at {worst_file}")
    # a probability within tol of the threshold may fall either side of it
    if disagree and worst > 0:
        near = sum(1 for i in range(len(paths)) if len(classes) == 2 and abs(p7[i][pos] - thr) <= tol)
        if disagree > near:
            fail(f"{disagree} decisions differ, only {near} probabilities are within {tol} of the threshold")


main()
