# radbatch export: the ONNX file of a trained MobileNetV2 (pretrained base: real BatchNorm
# statistics, ZeroPadding, depthwise and ReLU6 layers, softmax head) and of the seed-001 CNN
# (Flatten head, one sigmoid unit) passes onnx.checker, and onnxruntime fed the shards'
# uint8 pixels gives the probabilities `radbatch predict` gives for the same image files,
# within 1e-5, with the same decisions; an ensemble becomes one file per member plus a note
# and the mean of the members is predict's ensemble; bad input is named.
source "$(dirname "$0")/lib.sh"
PY=${RADBATCH_PYTHON:-}
[ -x "$PY" ] && "$PY" -c 'import onnx, onnxruntime, h5py' 2>/dev/null \
    || skip "onnx/onnxruntime not installed in \$RADBATCH_PYTHON (bash tests/setup.sh installs them)"
CHECK="$RADBATCH_SRC/tests/e2e/onnx_check.py"
TOL=1e-5

"$RADBATCH" convert "$SAMPLE" --out "$T/s48" --height 48 --width 48 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s48" --run_dir "$T/mnv2" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet \
    > "$T/train-mnv2.log" 2>&1 || { cat "$T/train-mnv2.log"; fail "train mobilenetv2"; }
"$RADBATCH" train --shards "$T/s48" --run_dir "$T/cnn" --backbone cnn --output sigmoid --epochs 1 --batch_size 16 \
    --quiet > "$T/train-cnn.log" 2>&1 || { cat "$T/train-cnn.log"; fail "train cnn"; }

# predict --json on every image file of the sample (at most 64 inputs per call)
predict_all() { # OUT MODEL...
    local out=$1; shift
    find "$SAMPLE" -type f | sort | xargs -n 50 "$RADBATCH" predict --json=true --model "$@" > "$out" \
        || fail "predict $*"
}

for r in mnv2 cnn; do
    "$RADBATCH" export --model "$T/$r/model.h5" --out "$T/$r.onnx" > "$T/export-$r.out" || fail "export $r"
    grep -q "^wrote $T/$r.onnx" "$T/export-$r.out" || fail "export $r: $(cat "$T/export-$r.out")"
    predict_all "$T/$r.jsonl" "$T/$r/model.h5"
    "$PY" "$CHECK" "$T/$r.onnx" "$T/s48" "$T/$r.jsonl" "$TOL" || fail "$r: onnxruntime differs from predict"
    ok "$r: onnx.checker and onnxruntime = predict within $TOL"
done

# screening: onnxruntime with the file's threshold flags the same images `radbatch infer`
# flags over the sample folder (an image within 1e-5 of the threshold may go either way)
"$RADBATCH" infer --model "$T/mnv2/model.h5" --input "$SAMPLE" --out "$T/infer" --quiet > /dev/null 2>&1 || fail "infer"
"$PY" - "$T/mnv2.onnx" "$T/s48" "$T/infer/predictions.csv" <<'PY' || fail "onnxruntime screening differs from infer"
import csv, glob, json, sys
import h5py, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = s.get_modelmeta().custom_metadata_map
classes = json.loads(meta["class_names"]); pos = classes.index(meta["positive_class"]); thr = float(meta["threshold"])
ref = {r["path"]: r for r in csv.DictReader(open(sys.argv[3]))}
n = same = near = 0
for f in sorted(glob.glob(sys.argv[2] + "/*.h5")):
    with h5py.File(f, "r") as h:
        p = s.run(["probabilities"], {"image": h["images"][...]})[0][:, pos]
        for path, v in zip(h["paths"][...], p):
            r = ref[path.decode()]
            n += 1
            same += (v >= thr) == (r["flagged"] == "1")
            near += abs(v - thr) <= 1e-5
print(f"screening: {same} of {n} images flagged alike by onnxruntime and infer ({near} within 1e-5 of the threshold)")
sys.exit(0 if n == len(ref) and n - same <= near else 1)
PY
ok "onnxruntime screens the sample as infer does"

# int8 of the CNN (Flatten -> Dense head, one sigmoid unit): a valid QDQ file with int8
# per-channel Conv and Gemm weights that onnxruntime runs (the accuracy bounds need a model
# trained on more than the sample: export_int8.sh)
"$RADBATCH" export --model "$T/cnn/model.h5" --out "$T/cnn-int8.onnx" --quantize int8 --calibration "$T/s48" \
    --calibration_images 40 > /dev/null || fail "export cnn int8"
"$PY" "$RADBATCH_SRC/tests/e2e/onnx_int8_check.py" "$T/cnn.onnx" "$T/cnn-int8.onnx" "$T/s48" "$T/s48" 0 1 \
    || fail "cnn int8 is not a QDQ model onnxruntime runs"
ok "cnn int8: QDQ structure"

# an ensemble: one file per member, a note, and the members' mean = predict's ensemble
"$RADBATCH" export --model "$T/mnv2/model.h5,$T/cnn/model.h5" --out "$T/ens.onnx" > "$T/export-ens.out" || fail "export ensemble"
for f in ens-1.onnx ens-2.onnx ens.ensemble.json; do [ -s "$T/$f" ] || fail "ensemble: no $f"; done
[ ! -e "$T/ens.onnx" ] || fail "ensemble: ens.onnx written besides the members"
[ "$(jq -r '.combine + " " + (.members|tostring) + " " + (.files|join(","))' "$T/ens.ensemble.json")" = "mean 2 ens-1.onnx,ens-2.onnx" ] \
    || fail "ensemble note: $(cat "$T/ens.ensemble.json")"
predict_all "$T/ens.jsonl" "$T/mnv2/model.h5,$T/cnn/model.h5"
"$PY" "$CHECK" "$T/ens-1.onnx" "$T/s48" "$T/ens.jsonl" "$TOL" --ensemble "$T/ens-1.onnx,$T/ens-2.onnx" \
    || fail "ensemble: mean of the members differs from predict"
ok "ensemble: one file per member, mean = predict"

# bad input: exit 2 for missing keys, 1 naming the file otherwise; nothing half-written
set +e
"$RADBATCH" export --model "$T/mnv2/model.h5" > /dev/null 2> "$T/e1"; rc1=$?
"$RADBATCH" export --model "$T/missing.h5" --out "$T/x.onnx" > /dev/null 2> "$T/e2"; rc2=$?
echo "not a model" > "$T/junk.h5"
"$RADBATCH" export --model "$T/junk.h5" --out "$T/x.onnx" > /dev/null 2> "$T/e3"; rc3=$?
"$RADBATCH" export --model "$T/mnv2/model.h5" --out "$T/no/such/dir/x.onnx" > /dev/null 2> "$T/e4"; rc4=$?
set -e
[ $rc1 = 2 ] && grep -q "no output file given" "$T/e1" || fail "no --out: exit $rc1: $(cat "$T/e1")"
set +e
"$RADBATCH" export --out "$T/x.onnx" > /dev/null 2> "$T/e0"; rc0=$?
set -e
[ $rc0 = 2 ] && grep -q "no model file given" "$T/e0" || fail "no --model: exit $rc0: $(cat "$T/e0")"
"$RADBATCH" export "$T/cnn/model.h5" --out "$T/positional.onnx" > /dev/null || fail "model as positional argument"
cmp -s "$T/positional.onnx" "$T/cnn.onnx" || fail "the positional model gives another file than --model"
[ $rc2 = 1 ] && grep -q "$T/missing.h5" "$T/e2" || fail "missing model: exit $rc2: $(cat "$T/e2")"
[ $rc3 = 1 ] && grep -q "$T/junk.h5" "$T/e3" || fail "junk model: exit $rc3: $(cat "$T/e3")"
[ $rc4 = 1 ] && grep -q "$T/no/such/dir/x.onnx" "$T/e4" || fail "bad out: exit $rc4: $(cat "$T/e4")"
[ ! -e "$T/x.onnx" ] || fail "a failed export left $T/x.onnx"
ok "bad input named"

# docs/export.md: its Python serving example runs as written, and its Triton configuration
# names the exported file's input and output with their types and ranks
awk '/^```python$/ { f = 1; next } /^```$/ { f = 0 } f' "$RADBATCH_SRC/docs/export.md" > "$T/serve.py"
[ -s "$T/serve.py" ] || fail "docs/export.md: no python block"
"$PY" "$T/serve.py" "$T/mnv2.onnx" "$T/s48/val-00000-of-00001.h5" > "$T/serve.out" || fail "docs/export.md python example"
[ "$(grep -Ec '^(NORMAL|PNEUMONIA)/[^ ]+ (NORMAL|PNEUMONIA) NORMAL=[0-9.]+ PNEUMONIA=[0-9.]+$' "$T/serve.out")" = 16 ] \
    || fail "docs/export.md python example output: $(head -3 "$T/serve.out")"
while read -r file dec rest; do
    want=$(grep -F "/$file\"" "$T/mnv2.jsonl" | jq -r .class)
    [ "$dec" = "$want" ] || fail "docs example decides $dec for $file, predict $want"
done < "$T/serve.out"
awk '/^name: "chest_xray"$/ { f = 1 } /^```$/ { f = 0 } f' "$RADBATCH_SRC/docs/export.md" > "$T/config.pbtxt"
"$PY" - "$T/mnv2.onnx" "$T/config.pbtxt" <<'PY' || fail "docs/export.md Triton config does not fit the exported file"
import re, sys, onnx
m, cfg = onnx.load(sys.argv[1]), open(sys.argv[2]).read()
types = {onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.FLOAT: "TYPE_FP32"}
for kind, vi in (("input", m.graph.input[0]), ("output", m.graph.output[0])):
    g = re.search(kind + r' \[ \{ name: "(\w+)", data_type: (\w+), dims: \[([^\]]*)\] \} \]', cfg)
    t = vi.type.tensor_type
    ok = g and g.group(1) == vi.name and g.group(2) == types[t.elem_type] and len(g.group(3).split(",")) == len(t.shape.dim) - 1
    if not ok:
        sys.exit(f"{kind}: config {g and g.groups()} vs model {vi.name} {t.elem_type} rank {len(t.shape.dim)}")
assert "max_batch_size" in cfg and m.graph.input[0].type.tensor_type.shape.dim[0].dim_param
PY
ok "docs/export.md examples"
