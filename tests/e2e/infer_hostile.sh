# labels: infer mpi
# Bad input never stops the run: corrupt, truncated, empty and non-image files, a symbolic
# link loop, a self-referencing link, a broken link, a FIFO, a second link to a folder and
# a file that vanished between the listing and its chunk all become errors.csv rows with a
# reason; the good images are predicted; bad flags get one clear line.
source "$(dirname "$0")/lib.sh"
W=work # the name of a run folder's subfolder of chunk and part files
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --quiet > /dev/null
"$RADBATCH" train --shards "$T/s32" --run_dir "$T/m" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet > /dev/null
A="$T/arch"
mkdir -p "$A/good" "$A/bad/deeper"
for f in $(ls "$SAMPLE/NORMAL" | head -12); do cp "$SAMPLE/NORMAL/$f" "$A/good/"; done
real=$(ls "$A/good" | head -1)
{ printf '\xff\xd8\xff\xe0'; head -c 3000 /dev/urandom; } > "$A/bad/corrupt.jpeg"
head -c 1500 "$A/good/$real" > "$A/bad/truncated.jpeg"
echo "this is a radiology report, not an image" > "$A/bad/report.jpeg"
: > "$A/bad/empty.png"
ln -s .. "$A/bad/deeper/loop"
ln -s self "$A/bad/self"
ln -s missing.jpeg "$A/bad/broken.jpeg"
mkfifo "$A/bad/pipe.jpeg"
ln -s good "$A/zz-again"
cp "$A/good/$real" "$A/bad/zz-vanishing.jpeg"

args=(infer --model "$T/m/model.h5" --input "$A" --chunk 4 --quiet)
# the listing finishes, one chunk is done, then the run dies; a file of a later chunk
# disappears before the rerun, which reuses the listing
set +e
RADBATCH_TEST_WAIT_LISTING=1 RADBATCH_TEST_KILL_AFTER_CHUNKS=1 "$RADBATCH" "${args[@]}" --out "$T/run" > "$T/k.log" 2>&1
set -e
[ -f "$T/run/$W/part-000000.csv" ] && [ ! -f "$T/run/$W/part-000001.csv" ] || fail "the first run did not stop after chunk 0"
grep -q zz-vanishing "$T/run/$W/chunk-000001.csv" || fail "zz-vanishing.jpeg is not in chunk 1"
rm "$A/bad/zz-vanishing.jpeg"
# 10 of 22 files are errors: more than max_error_fraction (0.1) allows, so exit 1 with
# complete outputs; the rerun with a higher limit succeeds from the same work folder
set +e
rb_run 2 "${args[@]}" --out "$T/run" > "$T/run.log" 2>&1
rc=$?
set -e
[ $rc -eq 1 ] || { cat "$T/run.log"; fail "expected exit 1 for 10 errors in 22 files, got $rc"; }
grep -q "max_error_fraction" "$T/run.log" || { cat "$T/run.log"; fail "no line about max_error_fraction"; }
[ -f "$T/run/predictions.csv" ] || fail "outputs missing after the error-share exit"
rb_run 2 "${args[@]}" --out "$T/run" --max_error_fraction 0.5 > "$T/run.log" 2>&1 || { cat "$T/run.log"; fail "the run did not succeed"; }
E="$T/run/errors.csv"
cat "$E"
expect() { grep -q "^$1,.*$2" "$E" || fail "errors.csv has no row for $1 with '$2'"; }
expect bad/corrupt.jpeg .
expect bad/truncated.jpeg .
expect bad/report.jpeg .
expect bad/empty.png .
expect bad/deeper/loop "already visited"
expect bad/self "loop"
expect bad/broken.jpeg "broken symbolic link"
expect bad/pipe.jpeg "FIFO"
expect zz-again "already visited"
expect bad/zz-vanishing.jpeg "vanished"
[ "$(wc -l < "$E")" = 11 ] || fail "errors.csv: $(($(wc -l < "$E") - 1)) rows, expected 10"
[ "$(wc -l < "$T/run/predictions.csv")" = 13 ] || fail "expected the 12 good images predicted"
grep -q '"errors":[[:space:]]*10' "$T/run/summary.json" || fail "summary.json errors"
grep -q "bad/truncated.jpeg" "$T/run/report.html" || fail "errors not in report.html"

# bad flags and inputs: one clear line naming the key
bad() {
    set +e
    "$RADBATCH" infer "$@" > "$T/bad.log" 2>&1
    local rc=$?
    set -e
    [ $rc != 0 ] || fail "accepted: $*"
}
bad --model "$T/m/model.h5" --input "$A" --out "$T/b1" --chunk 0
grep -q "chunk" "$T/bad.log" || fail "chunk 0: $(cat "$T/bad.log")"
bad --model "$T/m/model.h5" --input "$A" --out "$T/b2" --tta 7
grep -q "tta" "$T/bad.log" || fail "tta 7: $(cat "$T/bad.log")"
bad --model "$T/m/model.h5" --input "$T/nowhere" --out "$T/b3"
grep -q "nowhere" "$T/bad.log" || fail "missing input: $(cat "$T/bad.log")"
bad --model "$T/m/model.h5" --input "$A" --out "$T/b4" --change_detection mtime
grep -q "change_detection" "$T/bad.log" || fail "bad choice: $(cat "$T/bad.log")"
bad --input "$A" --out "$T/b5"
grep -q "model" "$T/bad.log" || fail "no model: $(cat "$T/bad.log")"
# a rerun into the same folder with other settings is refused
bad --model "$T/m/model.h5" --input "$A" --out "$T/run" --chunk 8
grep -q "other settings" "$T/bad.log" || fail "changed chunk accepted: $(cat "$T/bad.log")"
ok "hostile inputs are errors.csv rows; the run succeeds"
