# labels: convert infer
# Image trees with empty folders (at the top, inside a class, nested), a symbolic link to a
# folder and an unreadable file: convert and infer finish, count the linked folder's images
# once, report the unreadable file in errors.csv with its reason, and (in the sanitizer
# build, where this test runs too) trip no AddressSanitizer or UBSan check.
source "$(dirname "$0")/lib.sh"
in="$T/tree"
mkdir -p "$in/NORMAL/empty" "$in/NORMAL/nested/deeper/deepest" "$in/PNEUMONIA" "$T/elsewhere/more" "$in/zz-empty"
for f in $(ls "$SAMPLE/NORMAL" | head -6); do cp "$SAMPLE/NORMAL/$f" "$in/NORMAL/"; done
for f in $(ls "$SAMPLE/PNEUMONIA" | head -4); do cp "$SAMPLE/PNEUMONIA/$f" "$in/PNEUMONIA/"; done
for f in $(ls "$SAMPLE/PNEUMONIA" | sed -n 5,7p); do cp "$SAMPLE/PNEUMONIA/$f" "$T/elsewhere/more/"; done
mkdir -p "$T/elsewhere/more/empty-too"
ln -s "$T/elsewhere/more" "$in/PNEUMONIA/linked"
cp "$SAMPLE/NORMAL/$(ls "$SAMPLE/NORMAL" | sed -n 7p)" "$in/NORMAL/locked.jpeg"
chmod 000 "$in/NORMAL/locked.jpeg"

run_as=()
if [ "$(id -u)" = 0 ]; then
    # root reads any file: run as nobody so the locked file really is unreadable
    command -v setpriv > /dev/null || { echo "SKIP: running as root without setpriv, cannot make a file unreadable"; exit 77; }
    chmod -R a+rX "$in" "$T/elsewhere"; chmod 000 "$in/NORMAL/locked.jpeg"; chmod a+rwx "$T"
    run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi
clean_log() { ! grep -Eq 'runtime error|AddressSanitizer|LeakSanitizer' "$1" || { cat "$1"; fail "$2: sanitizer report"; }; }

# convert: 6 + 4 + 3 (linked) readable images, the locked one is an error
"${run_as[@]}" "$RADBATCH" convert "$in" --out "$T/shards" --height 32 --width 32 --val_fraction 0 > "$T/convert.log" 2>&1 ||
    { cat "$T/convert.log"; fail "convert on a tree with empty and linked folders"; }
clean_log "$T/convert.log" convert
grep -Eq '^"?NORMAL/locked.jpeg"?,.*(ermission|denied)' "$T/shards/errors.csv" || { cat "$T/shards/errors.csv"; fail "convert: no errors.csv row for the unreadable file"; }
n=$("$RADBATCH" inspect "$T/shards" --list | grep -c '^record')
[ "$n" = 13 ] || fail "convert: $n records, expected 13 (6 NORMAL + 4 PNEUMONIA + 3 through the link)"
"$RADBATCH" inspect "$T/shards" --list | grep -q 'PNEUMONIA/linked/' || fail "convert: the linked folder's images are missing"
ok "convert: empty folders skipped, linked folder read, unreadable file reported"

# infer on the same tree with a small model
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --quiet > /dev/null
"$RADBATCH" train --shards "$T/s32" --run_dir "$T/m" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --max_steps 2 --batch_size 16 --quiet > /dev/null
chmod -R a+rX "$T/m"
"${run_as[@]}" "$RADBATCH" infer --model "$T/m/model.h5" --input "$in" --out "$T/inf" --chunk 4 --max_error_fraction 0.5 > "$T/infer.log" 2>&1 ||
    { cat "$T/infer.log"; fail "infer on a tree with empty and linked folders"; }
clean_log "$T/infer.log" infer
[ "$(wc -l < "$T/inf/predictions.csv")" = 14 ] || { cat "$T/inf/predictions.csv"; fail "infer: expected 13 predictions"; }
grep -q 'PNEUMONIA/linked/' "$T/inf/predictions.csv" || fail "infer: the linked folder's images are missing"
grep -Eq '^"?NORMAL/locked.jpeg"?,.*(ermission|denied)' "$T/inf/errors.csv" || { cat "$T/inf/errors.csv"; fail "infer: no errors.csv row for the unreadable file"; }
# the same on 2 ranks
"${run_as[@]}" mpirun -n 2 "$RADBATCH" infer --model "$T/m/model.h5" --input "$in" --out "$T/inf2" --chunk 4 --max_error_fraction 0.5 > "$T/infer2.log" 2>&1 ||
    { cat "$T/infer2.log"; fail "infer on 2 ranks"; }
clean_log "$T/infer2.log" "infer on 2 ranks"
cmp -s "$T/inf/predictions.csv" "$T/inf2/predictions.csv" || fail "infer: 1 and 2 ranks differ"
ok "infer: empty folders skipped, linked folder read, unreadable file reported"
