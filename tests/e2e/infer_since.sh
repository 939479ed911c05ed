# labels: infer mpi invariance
# --since: a second run over an archive with 3 new files, 1 modified and 1 deleted predicts
# exactly those 4, carries the others over, and writes a cumulative index equal to a full
# run's; a run that finds nothing new says so and exits 0 with an empty report;
# change_detection=hash ignores a touched file and catches a rewrite that kept size and mtime.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --quiet > /dev/null
for m in m1 m2; do
    "$RADBATCH" train --shards "$T/s32" --run_dir "$T/$m" --backbone mobilenetv2 --seed $([ $m = m1 ] && echo 1 || echo 2) \
        --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet > /dev/null
done
cp -r "$SAMPLE" "$T/arch"
args=(infer --model "$T/m1/model.h5" --input "$T/arch" --chunk 16 --quiet)
field() { sed -n "s/.*\"$2\":[[:space:]]*\\([0-9]*\\).*/\\1/p" "$1/summary.json" | head -1; }

rb_run 1 "${args[@]}" --out "$T/night1" > /dev/null 2>&1 || fail "first night"
[ -f "$T/night1/index.csv" ] && [ -f "$T/night1/index.idx" ] || fail "no cumulative index"

# 3 new files (one in a new folder), 1 modified, 1 deleted
cp "$SAMPLE/NORMAL/IM-0115-0001.jpeg" "$T/arch/NORMAL/new-1.jpeg"
cp "$SAMPLE/PNEUMONIA/$(ls "$SAMPLE/PNEUMONIA" | head -1)" "$T/arch/PNEUMONIA/new-2.jpeg"
mkdir "$T/arch/LATE"
cp "$SAMPLE/NORMAL/IM-0141-0001.jpeg" "$T/arch/LATE/new-3.jpeg"
mod=$(ls "$T/arch/NORMAL" | sed -n 5p)
cp "$SAMPLE/PNEUMONIA/$(ls "$SAMPLE/PNEUMONIA" | sed -n 7p)" "$T/arch/NORMAL/$mod"
touch -d '2030-01-01 00:00:00' "$T/arch/NORMAL/$mod"
del=$(ls "$T/arch/PNEUMONIA" | sed -n 3p)
rm "$T/arch/PNEUMONIA/$del"

rb_run 2 "${args[@]}" --out "$T/night2" --since "$T/night1" > "$T/night2.log" 2>&1 || { cat "$T/night2.log"; fail "second night"; }
got=$(tail -n +2 "$T/night2/predictions.csv" | cut -d, -f1 | sort | tr '\n' ' ')
want=$(printf '%s\n' LATE/new-3.jpeg NORMAL/new-1.jpeg "NORMAL/$mod" PNEUMONIA/new-2.jpeg | sort | tr '\n' ' ')
[ "$got" = "$want" ] || fail "second night predicted [$got], expected [$want]"
[ "$(field "$T/night2" new)" = 3 ] && [ "$(field "$T/night2" changed)" = 1 ] && [ "$(field "$T/night2" unchanged)" = 197 ] \
    && [ "$(field "$T/night2" removed)" = 1 ] && [ "$(field "$T/night2" images_this_run)" = 4 ] \
    || fail "second night counts: $(grep -E '"(new|changed|unchanged|removed|images_this_run)"' "$T/night2/summary.json" | tr -d '\n\t ')"
[ "$(wc -l < "$T/night2/index.csv")" = 202 ] || fail "cumulative index: $(wc -l < "$T/night2/index.csv") lines, expected 202"
# the cumulative index equals the index of a full run over tonight's archive
rb_run 1 "${args[@]}" --out "$T/full2" > /dev/null 2>&1 || fail "full run"
cmp -s "$T/night2/index.csv" "$T/full2/index.csv" || fail "cumulative index differs from a full run's"
echo "second night: 3 new + 1 changed predicted, 197 carried over, 1 removed"

# nothing new
rb_run 1 "${args[@]}" --quiet false --out "$T/night3" --since "$T/night2" > "$T/night3.log" 2>&1 || { cat "$T/night3.log"; fail "third night"; }
[ "$(wc -l < "$T/night3/predictions.csv")" = 1 ] || fail "third night predicted something"
grep -q "nothing new or changed" "$T/night3.log" || fail "no 'nothing new' message"
grep -q "No new or changed files" "$T/night3/report.html" || fail "report does not say nothing is new"
cmp -s "$T/night3/index.csv" "$T/night2/index.csv" || fail "index changed without changes"

# hash: a touched file is unchanged; a same-size rewrite with the old mtime is changed
touch "$T/arch/NORMAL/new-1.jpeg"
f=$(ls "$T/arch/NORMAL" | sed -n 9p)
cp -p "$T/arch/NORMAL/$f" "$T/keep"
printf '\x00' | dd of="$T/arch/NORMAL/$f" bs=1 seek=$(( $(stat -c %s "$T/keep") - 3 )) conv=notrunc 2>/dev/null
touch -r "$T/keep" "$T/arch/NORMAL/$f"
rb_run 1 "${args[@]}" --out "$T/stat4" --since "$T/night3" > /dev/null 2>&1 || fail "stat night"
[ "$(tail -n +2 "$T/stat4/predictions.csv" | cut -d, -f1)" = "NORMAL/new-1.jpeg" ] || fail "stat: expected only the touched file"
rb_run 2 "${args[@]}" --out "$T/hash4" --since "$T/night3" --change_detection hash > /dev/null 2>&1 || fail "hash night"
[ "$(tail -n +2 "$T/hash4/predictions.csv" | cut -d, -f1)" = "NORMAL/$f" ] || fail "hash: expected only the rewritten file, got $(tail -n +2 "$T/hash4/predictions.csv" | cut -d, -f1 | tr '\n' ' ')"

# another model cannot carry the old predictions over
set +e
"$RADBATCH" infer --model "$T/m2/model.h5" --input "$T/arch" --out "$T/other" --since "$T/night3" --quiet > "$T/other.log" 2>&1
rc=$?
set -e
[ $rc != 0 ] && grep -q "other models" "$T/other.log" || fail "--since with another model was accepted"
ok "incremental screening"
