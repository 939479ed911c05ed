# labels: mpi invariance
# radbatch evaluate on image folders (with corrupt and non-image files, which go to
# errors.csv while the run goes on), on 1 and 2 ranks; the same images as shards give the
# same probabilities; an ensemble of two models averages their probabilities; TTA runs.
source "$(dirname "$0")/lib.sh"
W="$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
"$RADBATCH" convert "$SAMPLE" --out "$T/s96" --height 96 --width 96 --group_regex "$GROUPS_RE" --quiet > /dev/null
for s in 1 2; do
    "$RADBATCH" train --shards "$T/s96" --run_dir "$T/run$s" --backbone mobilenetv2 --weights "$W" --epochs 1 \
        --batch_size 16 --seed $s --quiet > "$T/train$s.log" 2>&1 || { cat "$T/train$s.log"; fail "train $s"; }
done

# an image folder: 12 images per class, plus a truncated JPEG, a text file and an empty file
IMG="$T/images"
for c in NORMAL PNEUMONIA; do
    mkdir -p "$IMG/$c"
    ls "$SAMPLE/$c" | sort | head -12 | while read -r f; do cp "$SAMPLE/$c/$f" "$IMG/$c/"; done
done
first=$(ls "$SAMPLE/NORMAL" | sort | head -1)
head -c 2000 "$SAMPLE/NORMAL/$first" > "$IMG/NORMAL/truncated.jpeg"
echo "not an image" > "$IMG/PNEUMONIA/notes.png"
: > "$IMG/PNEUMONIA/empty.jpeg"

for n in 1 2; do
    rb_run $n evaluate --model "$T/run1/model.h5" --data "$IMG" --out "$T/img$n" --batch_size 4 --bootstrap 200 \
        > "$T/img$n.log" 2>&1 || { cat "$T/img$n.log"; fail "evaluate image folder on $n ranks"; }
done
for f in metrics.json predictions.csv classification_report.txt confusion_matrix.csv errors.csv roc.csv report.html; do
    cmp -s "$T/img1/$f" "$T/img2/$f" || fail "$f differs between 1 and 2 ranks"
done
E="$T/img1"
[ "$(tail -n +2 "$E/predictions.csv" | wc -l)" = 24 ] || fail "predictions.csv: expected 24 rows"
[ "$(tail -n +2 "$E/errors.csv" | wc -l)" = 3 ] || fail "errors.csv: expected 3 rows, got $(cat "$E/errors.csv")"
for f in NORMAL/truncated.jpeg PNEUMONIA/notes.png PNEUMONIA/empty.jpeg; do
    grep -q "^$f," "$E/errors.csv" || fail "errors.csv does not name $f"
    grep -q "$f" "$E/report.html" || fail "report.html does not list $f"
done
grep -Eq '"unreadable":[[:space:]]*3' "$E/metrics.json" || fail "metrics.json: unreadable count"
grep -Eq '"evaluated":[[:space:]]*24' "$E/metrics.json" || fail "metrics.json: evaluated count"
grep -Eq '"kind":[[:space:]]*"images"' "$E/metrics.json" || fail "metrics.json: data kind"
grep -Eq '^ +accuracy +[01]\.[0-9]{2} +24$' "$E/classification_report.txt" || fail "report support total"
ok "image folder with bad files, 1 and 2 ranks identical"

# the same images through the shards: the same probabilities (the shards hold them decoded
# and resized exactly as evaluate reads image files)
for sp in train val; do
    "$RADBATCH" evaluate --model "$T/run1/model.h5" --data "$T/s96" --split $sp --out "$T/$sp" --bootstrap 0 --quiet \
        > /dev/null || fail "evaluate the $sp split"
done
"$RADBATCH" evaluate --model "$T/run1/model.h5" --data "$SAMPLE" --out "$T/sample" --bootstrap 0 --quiet > /dev/null \
    || fail "evaluate the sample folder"
matched=$(tail -q -n +2 "$T/train/predictions.csv" "$T/val/predictions.csv" |
    awk -F, 'NR == FNR { p[$1] = $5; next } FNR > 1 && ($1 in p) { n++; d = p[$1] - $5; if (d < 0) d = -d; if (d > 2e-6) { print "differs: " $1 " " p[$1] " " $5 > "/dev/stderr"; bad = 1 } } END { print n + 0; exit bad }' \
    - "$T/sample/predictions.csv") || fail "image folder and shards give different probabilities"
[ "$matched" -ge 150 ] || fail "only $matched images matched between the shards and the folder"
ok "image folder = shards ($matched images)"

# ensemble: probabilities are the mean of the members'
"$RADBATCH" evaluate --model "$T/run2/model.h5" --data "$T/s96" --out "$T/m2" --bootstrap 0 --quiet > /dev/null
"$RADBATCH" evaluate --model "$T/run1/model.h5,$T/run2/model.h5" --data "$T/s96" --out "$T/ens" --bootstrap 0 --quiet \
    > /dev/null || fail "ensemble"
grep -q "run2/model.h5" "$T/ens/metrics.json" || fail "metrics.json does not list both models"
paste -d, "$T/val/predictions.csv" "$T/m2/predictions.csv" "$T/ens/predictions.csv" | tail -n +2 |
    awk -F, '{ m = ($5 + $10) / 2; d = m - $15; if (d < 0) d = -d; if ($1 != $11 || d > 2e-6) { print; bad = 1 } } END { exit bad }' \
    || fail "ensemble probabilities are not the members' mean"
ok "ensemble = mean of the members"

# test-time augmentation: runs, is recorded, changes the probabilities
for tta in 1 2; do
    "$RADBATCH" evaluate --model "$T/run1/model.h5" --data "$T/s96" --out "$T/tta$tta" --tta $tta --bootstrap 0 --quiet \
        > /dev/null || fail "tta $tta"
    grep -Eq "\"tta\":[[:space:]]*$tta" "$T/tta$tta/metrics.json" || fail "tta $tta not recorded"
    cmp -s "$T/val/predictions.csv" "$T/tta$tta/predictions.csv" && fail "tta $tta changed nothing"
done
rb_run 2 evaluate --model "$T/run1/model.h5,$T/run2/model.h5" --data "$T/s96" --out "$T/ens-tta2" --tta 2 --bootstrap 0 \
    --batch_size 4 --quiet > /dev/null || fail "ensemble with tta on 2 ranks"
"$RADBATCH" evaluate --model "$T/run1/model.h5,$T/run2/model.h5" --data "$T/s96" --out "$T/ens-tta1" --tta 2 \
    --bootstrap 0 --batch_size 4 --quiet > /dev/null
cmp -s "$T/ens-tta1/predictions.csv" "$T/ens-tta2/predictions.csv" || fail "ensemble + tta: 1 and 2 ranks differ"
ok "tta 1 and 2; ensemble + tta on 1 and 2 ranks"
