# radbatch predict --explain: a Grad-CAM overlay PNG at the model's input size for one image
# (the file named), a folder of <n>-<name>.png for several, the path in the text and JSON
# output, the same heatmap for an image alone or among others and for a model alone or as
# a two-member ensemble of itself, and an unwritable target named in the error (exit 1).
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s64" --run_dir "$T/run" --backbone cnn --head_units 16 --epochs 2 \
    --batch_size 16 --learning_rate 1e-3 --quiet > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
M="$T/run/model.h5"
A="$SAMPLE/NORMAL/$(ls "$SAMPLE/NORMAL" | sort | head -1)"
B="$SAMPLE/PNEUMONIA/$(ls "$SAMPLE/PNEUMONIA" | sort | head -1)"
stem() { local b; b=$(basename "$1"); echo "${b%.*}"; }

# PNG header: width, height, bit depth, colour type (2 = RGB)
png_ihdr() { od -An -tx1 -j16 -N10 "$1" | tr -d ' \n'; }

"$RADBATCH" predict --model "$M" "$A" --explain "$T/heat.png" > "$T/one.out" || fail "predict --explain"
[ -f "$T/heat.png" ] || fail "no heat.png"
[ "$(png_ihdr "$T/heat.png")" = "00000040000000400802" ] || fail "not a 64x64 8-bit RGB PNG: $(png_ihdr "$T/heat.png")"
grep -qx "  heatmap: $T/heat.png" "$T/one.out" || fail "no heatmap line: $(cat "$T/one.out")"
ok "one image: the PNG named"

"$RADBATCH" predict --model "$M" "$A" "$B" --explain "$T/heats" --json > "$T/two.out" || fail "predict --explain folder"
for pair in "1:$A" "2:$B"; do
    f="$T/heats/${pair%%:*}-$(stem "${pair#*:}").png"
    [ -f "$f" ] || fail "no $f: $(ls "$T/heats")"
    grep -F "\"file\":\"${pair#*:}\"" "$T/two.out" | grep -qF "\"heatmap\":\"$f\"" || fail "json without heatmap $f"
done
[ "$(ls "$T/heats" | wc -l)" = 2 ] || fail "extra files: $(ls "$T/heats")"
cmp -s "$T/heat.png" "$T/heats/1-$(stem "$A").png" || fail "heatmap of $A differs alone and with another image"
# an existing folder with one image gets the folder naming too
mkdir -p "$T/one-dir"
"$RADBATCH" predict --model "$M" "$B" --explain "$T/one-dir" > /dev/null || fail "predict --explain existing folder"
cmp -s "$T/one-dir/1-$(stem "$B").png" "$T/heats/2-$(stem "$B").png" || fail "folder with one image"
ok "several images: <n>-<name>.png in the folder"

# an ensemble of the model with itself: the mean of two equal maps is the map
"$RADBATCH" predict --model "$M,$M" "$A" --explain "$T/ens.png" > /dev/null || fail "ensemble --explain"
cmp -s "$T/heat.png" "$T/ens.png" || fail "ensemble heatmap differs"
ok "ensemble"

# the overlay is coloured (the jet colour map), and pixels without evidence keep the gray image
python3 - "$T/heat.png" <<'PY' || fail "overlay pixels"
import sys, zlib, struct
data = open(sys.argv[1], "rb").read()
pos, idat = 8, b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    if kind == b"IHDR":
        w, h = struct.unpack(">II", data[pos + 8:pos + 16])
    if kind == b"IDAT":
        idat += data[pos + 8:pos + 8 + n]
    pos += 12 + n
raw, stride, prev, rows = zlib.decompress(idat), w * 3, bytearray(w * 3), []
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - 3] if i >= 3 else 0
        b, c = prev[i], prev[i - 3] if i >= 3 else 0
        p = a + b - c
        pred = [0, a, b, (a + b) // 2, a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c][f]
        line[i] = (line[i] + pred) & 255
    rows.append(line)
    prev = line
coloured = sum(1 for r in rows for x in range(w) if max(r[3*x:3*x+3]) - min(r[3*x:3*x+3]) > 20)
print("coloured pixels:", coloured, "of", w * h)
sys.exit(0 if coloured > 0 else 1)
PY
ok "coloured overlay"

# an unwritable target: named in the error, exit 1
set +e
"$RADBATCH" predict --model "$M" "$A" --explain "$T/no/such/dir/heat.png" > "$T/bad.out" 2> "$T/bad.err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "exit $rc for an unwritable heatmap"
grep -q "$T/no/such/dir/heat.png" "$T/bad.err" || fail "error does not name the file: $(cat "$T/bad.err")"
ok "unwritable target named"
