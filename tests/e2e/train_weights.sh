# labels: train
# Pretrained weights that do not fit are an error. train --weights always says "loaded N of M
# tensors (K skipped: ...)"; a file whose layers do not fit the base (another architecture:
# a ResNet50 .weights.h5, the seed-001 CNN's files, a miniature MobileNetV2; another width:
# MobileNetV2 alpha 0.5) fails with exit 1 and names the file and the layers, unless
# weights_partial = true; head layers the file lacks or holds in another shape (a sigmoid
# head for a softmax model) stay at their initial values and are named. The mismatching
# files are made here with h5py in the Keras layouts (legacy .h5 and Keras 3 .weights.h5).
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
$PY -c 'import h5py, numpy' 2> /dev/null || { echo "SKIP: python3-h5py is not installed (tests/setup.sh installs it)"; exit 77; }
W="$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
G="$RADBATCH_SRC/tests/golden/keras"
"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null

$PY - "$W" "$T" << 'EOF'
import sys
import h5py
import numpy as np

src, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)


def legacy_copy(path, shape_of, extra=()):
    """The notop file in the legacy save_weights layout, every tensor of shape shape_of(shape),
    plus extra layers [(name, [(weight, shape)])]."""
    with h5py.File(src, "r") as f, h5py.File(path, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        names = list(f.attrs["layer_names"])
        for ln in names:
            grp = g.create_group(ln.decode())
            wn = list(f[ln.decode()].attrs["weight_names"])
            grp.attrs["weight_names"] = np.array(wn, dtype="S")
            for w in wn:
                shape = shape_of(f[ln.decode()][w.decode()].shape)
                grp.create_dataset(w.decode(), data=rng.standard_normal(shape).astype("f4") * 0.01)
        for ln, weights in extra:
            names.append(ln.encode())
            grp = g.create_group(ln)
            grp.attrs["weight_names"] = np.array([f"{ln}/{w}:0".encode() for w, _ in weights], dtype="S")
            for w, shape in weights:
                grp.create_dataset(f"{ln}/{w}:0", data=rng.standard_normal(shape).astype("f4") * 0.01)
        g.attrs["layer_names"] = np.array(names, dtype="S")


def alpha_half(shape):
    """MobileNetV2 alpha 0.5: channel counts halved (multiples of 8, at least 8), except the
    3 input channels, depthwise multipliers (1) and the last 1280 (kept for alpha <= 1)."""
    def half(d):
        return d if d in (1, 3, 1280) else max(8, int(d * 0.5 + 4) // 8 * 8)
    if len(shape) == 4:
        return shape[:2] + (half(shape[2]), half(shape[3]))
    return tuple(half(d) for d in shape)


legacy_copy(f"{out}/mobilenetv2_alpha0.5_notop.h5", alpha_half)
legacy_copy(f"{out}/mobilenetv2_sigmoid_head.h5", lambda s: s,
            [("dense", [("kernel", (1280, 128)), ("bias", (128,))]),
             ("dense_1", [("kernel", (128, 1)), ("bias", (1,))])])

# A ResNet50 stem and first block in Keras 3's .weights.h5 layout (layers/<name>/vars/<i>).
with h5py.File(f"{out}/resnet50.weights.h5", "w") as g:
    g.create_group("vars").attrs["name"] = "resnet50"
    for name, shapes in [("conv1_conv", [(7, 7, 3, 64), (64,)]), ("conv1_bn", [(64,)] * 4),
                         ("conv2_block1_1_conv", [(1, 1, 64, 64), (64,)]),
                         ("conv2_block1_1_bn", [(64,)] * 4),
                         ("predictions", [(2048, 1000), (1000,)])]:
        v = g.create_group(f"layers/{name}/vars")
        v.attrs["name"] = name
        for i, s in enumerate(shapes):
            v.create_dataset(str(i), data=np.zeros(s, "f4"))
EOF

# run_train <name> <expected exit> <args...>: the log in $T/<name>.log
run_train() {
    local name=$1 want=$2; shift 2
    set +e
    "$RADBATCH" train --shards "$T/s64" --run_dir "$T/$name" --epochs 0 --batch_size 16 "$@" > "$T/$name.log" 2>&1
    local rc=$?
    set -e
    [ "$rc" = "$want" ] || { cat "$T/$name.log"; fail "$name: exit $rc, expected $want"; }
}
has() { grep -qF -- "$2" "$T/$1.log" || { cat "$T/$1.log"; fail "$1: the log does not say: $2"; }; }

run_train notop 0 --weights "$W"
has notop "weights: loaded 260 of 264 tensors from $W (4 skipped: dense: not in the file; dense_1: not in the file)"
has notop "weights: 2 head layer(s) stay at their initial values: dense: not in the file; dense_1: not in the file"
ok "the shipped notop weights: 260 of 264 tensors, the new head named"

run_train resnet 1 --weights "$T/resnet50.weights.h5"
has resnet "weights: loaded 0 of 264 tensors"
has resnet "error: weights: $T/resnet50.weights.h5: no tensor of the file fits the mobilenetv2 model (loaded 0 of 264 tensors): Conv1: not in the file;"
has resnet "weights: 5 layer(s) of the file are not in the model: "
[ ! -e "$T/resnet/model.h5" ] || fail "resnet: a model was written"
ok "a ResNet50 .weights.h5: exit 1, file and layers named"

for f in keras3_cnn.weights.h5 tfkeras_cnn_full.h5 tfkeras_mnv2mini.keras; do
    run_train "g_$f" 1 --weights "$G/$f"
    has "g_$f" "error: weights: $G/$f: no tensor of the file fits the mobilenetv2 model (loaded 0 of 264 tensors)"
done
ok "the seed-001 CNN's weight files and a miniature MobileNetV2 .keras as MobileNetV2 weights: exit 1"

A="$T/mobilenetv2_alpha0.5_notop.h5"
run_train alpha 1 --weights "$A"
has alpha "weights: loaded 4 of 264 tensors from $A"
has alpha "error: weights: $A: 103 layer(s) of the base do not fit (loaded 4 of 264 tensors): Conv1: weight 'kernel': shape [3, 3, 3, 16] in the file (/Conv1/Conv1/kernel:0), [3, 3, 3, 32] in the model;"
has alpha "weights_partial = true"
run_train alpha_partial 0 --weights "$A" --weights_partial true
has alpha_partial "weights_partial: 103 layer(s) of the base stay at their initial values: Conv1: weight 'kernel'"
ok "MobileNetV2 alpha 0.5: exit 1 naming the layers; weights_partial = true loads the 4 tensors that fit"

H="$T/mobilenetv2_sigmoid_head.h5"
run_train sig_softmax 0 --weights "$H"
has sig_softmax "weights: loaded 262 of 264 tensors from $H (2 skipped: dense_1: weight 'kernel': shape [128, 1] in the file (/dense_1/dense_1/kernel:0), [128, 2] in the model)"
has sig_softmax "weights: 1 head layer(s) stay at their initial values: dense_1: weight 'kernel': shape [128, 1]"
run_train sig_sigmoid 0 --weights "$H" --output sigmoid
has sig_sigmoid "weights: loaded 264 of 264 tensors from $H (0 skipped)"
ok "a sigmoid-head file: into a softmax model dense_1 stays random and is named; into a sigmoid model all 264 tensors load"

# The CNN has no pretrained base: every layer but the output layer must fit. A seed-001 CNN
# file with a 3-class output (made from a radbatch CNN model in the legacy Keras layout)
# loads all but dense_1; one whose hidden dense layer is wider fails.
"$RADBATCH" train --shards "$T/s64" --run_dir "$T/cnn0" --backbone cnn --epochs 0 --quiet > "$T/cnn0.log" 2>&1 || { cat "$T/cnn0.log"; fail "cnn model"; }
$PY - "$T/cnn0/model.h5" "$T" << 'EOF'
import sys
import h5py
import numpy as np

src, out = sys.argv[1], sys.argv[2]
same = lambda s: s
for name, change in [("cnn_3class", {("dense_1", "kernel"): lambda s: (s[0], 3), ("dense_1", "bias"): lambda s: (3,)}),
                     ("cnn_wide", {("dense", "kernel"): lambda s: (s[0], 2 * s[1]), ("dense", "bias"): lambda s: (2 * s[0],)})]:
    with h5py.File(src, "r") as f, h5py.File(f"{out}/{name}.h5", "w") as g:
        names = [n if isinstance(n, str) else n.decode() for n in f["weights"].attrs["layer_names"]]
        g.attrs["layer_names"] = np.array([n.encode() for n in names], dtype="S")
        g.attrs["keras_version"] = b"2.21.0"
        for ln in names:
            grp = g.create_group(ln)
            wn = [w if isinstance(w, str) else w.decode() for w in f["weights"][ln].attrs["weight_names"]]
            grp.attrs["weight_names"] = np.array([f"{ln}/{w}:0".encode() for w in wn], dtype="S")
            for w in wn:
                shape = change.get((ln, w), same)(f["weights"][ln][w].shape)
                grp.create_dataset(f"{ln}/{w}:0", data=np.zeros(shape, "f4"))
EOF
run_train cnn3 0 --backbone cnn --weights "$T/cnn_3class.h5"
has cnn3 "(2 skipped: dense_1: weight 'kernel': shape ["
has cnn3 "weights: 1 head layer(s) stay at their initial values: dense_1:"
run_train cnnwide 1 --backbone cnn --weights "$T/cnn_wide.h5"
has cnnwide "layer(s) of the model (all layers but the output layer) do not fit"
has cnnwide ": dense: weight 'kernel': shape ["
ok "the CNN: a 3-class file leaves only the output layer random; a wider dense layer is an error"

# the failure is detected on every rank and printed once
set +e
mpirun -n 2 "$RADBATCH" train --shards "$T/s64" --run_dir "$T/alpha2" --epochs 0 --weights "$A" > "$T/alpha2.log" 2> "$T/alpha2.err"
rc=$?
set -e
[ $rc = 1 ] || fail "alpha 0.5 on 2 ranks: exit $rc"
[ "$(grep -c '^error: ' "$T/alpha2.err")" = 1 ] || { cat "$T/alpha2.err"; fail "alpha 0.5 on 2 ranks: not one error message"; }
ok "2 ranks: one error message"
