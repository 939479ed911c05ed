# labels: dicom
# DICOM decoding against pydicom: files made at run time from a bundled sample (pydicom
# writes the uncompressed ones; dcmtk's dcmcjpeg/dcmcjpls/dcmcrle, GDCM's gdcmconv --j2k and
# img2dcm the compressed ones). Each decoded image (inspect --export_image) must equal the
# 8-bit image computed from pydicom's decoding with docs/dicom.md's mapping, within the bound
# docs/dicom.md gives (at most 1 level; measured 0); lossless compressed copies must decode
# exactly like their uncompressed source; img2dcm's JPEG baseline like the JPEG itself. Then
# convert and predict take a tree of extensionless DICOM files, and a damaged compressed file
# is an errors.csv row naming its transfer syntax.
source "$(dirname "$0")/lib.sh"
PY=${RADBATCH_PYTHON:-}
[ -x "$PY" ] && "$PY" -c "import pydicom, numpy, PIL" 2>/dev/null ||
    skip "pydicom, numpy and Pillow are needed in \$RADBATCH_PYTHON (bash tests/setup.sh installs them)"
for t in dcmcjpeg dcmcjpls dcmcrle dcmconv gdcmconv img2dcm; do
    command -v $t >/dev/null || skip "$t is not installed (tests/setup.sh PACKAGES)"
done
d="$T/dcm"
mkdir -p "$d"
jpeg="$SAMPLE/NORMAL/$(ls "$SAMPLE/NORMAL" | head -1)"
names=$("$PY" "$RADBATCH_SRC/tests/e2e/dicom_make.py" "$jpeg" "$d" 2> "$T/make.log") ||
    { cat "$T/make.log"; fail "dicom_make.py"; }

# compressed copies: name source command...
compress() {
    local out=$1 src=$2; shift 2
    "$@" "$d/$src" "$d/$out" > "$T/$out.log" 2>&1 || { cat "$T/$out.log"; fail "$*"; }
    cp "$d/$src.expected.npy" "$d/$out.expected.npy"
}
compress jpeg_lossless_sv1 cr12_window dcmcjpeg +e1
compress jpeg_lossless multiframe dcmcjpeg +el
compress jpegls cr12_window dcmcjpls
compress jpegls_mono1 cr12_mono1_rescale dcmcjpls
compress rle s16_window_exact dcmcrle
compress j2k cr12_voilut gdcmconv --j2k
compress j2k_rgb rgb gdcmconv --j2k
compress rle_ybr ybr_full dcmcrle
compress big_endian cr12_window dcmconv +tb
# lossy: compared with the uncompressed source's expected image, within a bound (.bound)
compress jpeg_extended12 cr12_window dcmcjpeg +ee
echo 3 > "$d/jpeg_extended12.bound"
compress jpegls_near cr12_window dcmcjpls +en
echo 1 > "$d/jpegls_near.bound"
img2dcm "$jpeg" "$d/img2dcm_ybr422" > "$T/img2dcm.log" 2>&1 || { cat "$T/img2dcm.log"; fail img2dcm; }
"$PY" -c "import numpy as np, sys; from PIL import Image
np.save(sys.argv[2], np.asarray(Image.open(sys.argv[1]).convert('RGB')))" "$jpeg" "$d/img2dcm_ybr422.expected.npy"
names="$names jpeg_lossless_sv1 jpeg_lossless jpegls jpegls_mono1 rle j2k j2k_rgb rle_ybr img2dcm_ybr422"
names="$names big_endian jpeg_extended12 jpegls_near"

for n in $names; do
    "$RADBATCH" inspect "$d/$n" --export_image 0 --image_out "$d/$n.png" > "$d/$n.inspect" 2>&1 ||
        { cat "$d/$n.inspect"; fail "inspect $n"; }
done
# GDCM tries 16-bit samples on a 12-bit JPEG first, and libjpeg prints that failure itself
! grep -l "JPEG data precision" "$d"/*.inspect > "$T/noisy" || fail "a codec's own message on stderr: $(cat "$T/noisy")"
"$PY" - "$d" $names <<'EOF' || fail "decoded pixels differ from pydicom's"
import os, sys, numpy as np
from PIL import Image
d, bad = sys.argv[1], 0
for n in sys.argv[2:]:
    e = np.load(f"{d}/{n}.expected.npy").astype(int)
    g = np.asarray(Image.open(f"{d}/{n}.png")).astype(int)
    bound = int(open(f"{d}/{n}.bound").read()) if os.path.exists(f"{d}/{n}.bound") else 1
    diff = int(np.abs(e - g).max()) if e.shape == g.shape else -1
    print(f"{n:22s} {str(g.shape):14s} max |radbatch - pydicom| = {diff} (bound {bound})")
    bad += not (0 <= diff <= bound)
sys.exit(bad)
EOF
ok "pixels of $(echo $names | wc -w) files equal pydicom's within 1 level (lossy copies: within their bound)"

# what inspect says (docs/dicom.md shows these lines)
grep -q "TransferSyntaxUID .*1.2.840.10008.1.2.4.90 (JPEG 2000 (lossless only))" "$d/j2k.inspect" || fail "inspect j2k: transfer syntax"
grep -q "to 8 bits: VOI LUT from the file" "$d/j2k.inspect" || fail "inspect j2k: VOI LUT"
grep -q "to 8 bits: percentile window .*inverted (MONOCHROME1)" "$d/jpegls_mono1.inspect" || fail "inspect: percentile + MONOCHROME1"
grep -q "NumberOfFrames             2 (first frame decoded)" "$d/jpeg_lossless.inspect" || fail "inspect: multi-frame"
grep -q "to 8 bits: window from the file \[500, 3500\]" "$d/cr12_window.inspect" || fail "inspect: window"
grep -q "to 8 bits: as stored" "$d/mono2_u8.inspect" || fail "inspect: 8-bit as stored"
grep -q "decoded: 224x224x1 (height x width x channels), 8 bits" "$d/rle.inspect" || fail "inspect: decoded size"
grep -q "decoded: 224x224x3" "$d/j2k_rgb.inspect" || fail "inspect: colour size"
ok "inspect names the tags, the window and the decoded size"

# convert and predict: a tree of extensionless files, one damaged JPEG-LS file
in="$T/in"
mkdir -p "$in/NORMAL/study1/series1" "$in/PNEUMONIA/study2/series1"
for n in cr12_window jpegls j2k rle jpeg_lossless_sv1 mono2_u8; do cp "$d/$n" "$in/NORMAL/study1/series1/$n"; done
for n in cr12_implicit jpegls_mono1 j2k_rgb rle_ybr img2dcm_ybr422 multiframe; do cp "$d/$n" "$in/PNEUMONIA/study2/series1/$n"; done
cp "$d/jpegls" "$in/PNEUMONIA/study2/series1/damaged"
size=$(stat -c %s "$d/jpegls")
# overwrite the middle of the JPEG-LS stream (the headers stay intact)
head -c 600 /dev/zero | tr '\0' '\377' | dd of="$in/PNEUMONIA/study2/series1/damaged" bs=1 seek=$((size - 2000)) conv=notrunc 2>/dev/null
"$RADBATCH" convert "$in" --out "$T/shards" --height 64 --width 64 --val_fraction 0.25 --max_error_fraction 0.5 \
    --dct_scaling false > "$T/convert.log" 2>&1 ||
    { cat "$T/convert.log"; fail "convert of a DICOM tree"; }
grep -q "wrote 12 records" "$T/convert.log" || { cat "$T/convert.log"; fail "convert: 12 DICOM records expected"; }
# the damaged file's line reaches stderr although it was found while stderr was silenced
grep -q "series1/damaged: .*1.2.840.10008.1.2.4.80" "$T/convert.log" || { cat "$T/convert.log"; fail "convert: no line naming the damaged file"; }
cat "$T/shards/errors.csv"
[ "$(($(wc -l < "$T/shards/errors.csv") - 1))" = 1 ] || fail "errors.csv: one row expected"
grep -F damaged "$T/shards/errors.csv" | grep -q "1.2.840.10008.1.2.4.80" || fail "errors.csv: the row must name the transfer syntax"
ok "convert reads extensionless DICOM files; a damaged one is an errors.csv row naming its transfer syntax"

# predict and infer: a model trained on those shards gives a DICOM copy of a JPEG exactly the
# JPEG's probabilities (img2dcm keeps the JPEG stream; GDCM decodes it as libjpeg-turbo does;
# dct_scaling off, since the JPEG path would otherwise decode at a reduced DCT scale)
"$RADBATCH" train --shards "$T/shards" --run_dir "$T/run" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 4 --quiet > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train on DICOM shards"; }
M="$T/run/model.h5"
"$RADBATCH" predict --model "$M" "$d/img2dcm_ybr422" --json > "$T/p_dcm.json" || fail "predict a DICOM file"
"$RADBATCH" predict --model "$M" "$jpeg" --json > "$T/p_jpeg.json" || fail "predict the JPEG"
pd=$(grep -o '"probabilities":{[^}]*}' "$T/p_dcm.json"); pj=$(grep -o '"probabilities":{[^}]*}' "$T/p_jpeg.json")
[ -n "$pd" ] && [ "$pd" = "$pj" ] || fail "predict: DICOM $pd vs JPEG $pj"
ok "predict: a DICOM copy of a JPEG gets the JPEG's probabilities ($pd)"
"$RADBATCH" infer --model "$M" --input "$in" --out "$T/infer" > "$T/infer.log" 2>&1 || { cat "$T/infer.log"; fail "infer over a DICOM tree"; }
[ "$(($(wc -l < "$T/infer/predictions.csv") - 1))" = 12 ] || { cat "$T/infer/predictions.csv"; fail "infer: 12 predictions expected"; }
grep -F damaged "$T/infer/errors.csv" | grep -q "1.2.840.10008.1.2.4.80" || fail "infer errors.csv: the damaged file with its transfer syntax"
ok "infer screens the DICOM tree: 12 predictions, the damaged file in errors.csv"

# damaged compressed files: 40 random mutations (1..8 bytes, some also truncated) of each
# compressed file, decoded by one convert: every one an image or an errors.csv row, no crash
"$PY" - "$d" "$T/fuzz" <<'EOF2' || fail "making mutated files"
import os, random, sys
d, out = sys.argv[1], sys.argv[2]
random.seed(15)
for cls in ("NORMAL", "PNEUMONIA"):
    os.makedirs(f"{out}/{cls}", exist_ok=True)
names = ["jpeg_lossless_sv1", "jpeg_lossless", "jpegls", "jpegls_mono1", "rle", "j2k", "j2k_rgb", "rle_ybr", "img2dcm_ybr422"]
for i, n in enumerate(names):
    b = open(f"{d}/{n}", "rb").read()
    for k in range(40):
        m = bytearray(b)
        for _ in range(random.randint(1, 8)):
            j = random.randrange(132, len(m))
            m[j] = random.randrange(256)
        if random.random() < 0.2:
            m = m[:random.randrange(132, len(m))]
        open(f"{out}/{('NORMAL', 'PNEUMONIA')[k % 2]}/{n}.{k}", "wb").write(m)
EOF2
"$RADBATCH" convert "$T/fuzz" --out "$T/fuzz_shards" --height 32 --width 32 --val_fraction 0.25 --max_error_fraction 1 \
    > "$T/fuzz.log" 2>&1 || { tail -20 "$T/fuzz.log"; fail "convert stopped on mutated DICOM files"; }
recs=$(grep -o "wrote [0-9]* records" "$T/fuzz.log" | grep -o "[0-9]*")
errs=$(($(wc -l < "$T/fuzz_shards/errors.csv") - 1))
[ $((recs + errs)) = 360 ] || fail "mutated files: $recs records + $errs errors != 360"
ok "360 mutated compressed files: $recs decoded, $errs errors.csv rows, no crash"
