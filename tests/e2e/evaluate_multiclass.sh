# labels: mpi invariance
# radbatch evaluate with three classes (the sample's PNEUMONIA split into BACTERIA and
# VIRUS by file name): argmax decisions, one-vs-rest AUCs, no screening and no roc.csv
# unless positive_class is given; 1 and 2 ranks identical.
source "$(dirname "$0")/lib.sh"
D="$T/three"
mkdir -p "$D/NORMAL" "$D/BACTERIA" "$D/VIRUS"
cp "$SAMPLE"/NORMAL/* "$D/NORMAL/"
cp "$SAMPLE"/PNEUMONIA/*bacteria* "$D/BACTERIA/"
cp "$SAMPLE"/PNEUMONIA/*virus* "$D/VIRUS/"
"$RADBATCH" convert "$D" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s64" --run_dir "$T/run" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet \
    > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
M="$T/run/model.h5"

for n in 1 2; do
    rb_run $n evaluate --model "$M" --data "$T/s64" --out "$T/ev$n" --batch_size 4 > "$T/ev$n.log" 2>&1 \
        || { cat "$T/ev$n.log"; fail "evaluate on $n ranks"; }
done
for f in metrics.json predictions.csv classification_report.txt confusion_matrix.csv report.html; do
    cmp -s "$T/ev1/$f" "$T/ev2/$f" || fail "$f differs between 1 and 2 ranks"
done
E="$T/ev1"
[ -e "$E/roc.csv" ] && fail "roc.csv written without a screening class"
grep -q '"screening"' "$E/metrics.json" && fail "screening metrics without a screening class"
grep -q 'Error galleries are drawn for two-class screening only' "$E/report.html" || fail "report.html: no note on the galleries"
grep -q '<img' "$E/report.html" && fail "report.html: error galleries without a screening class"
for c in BACTERIA NORMAL VIRUS; do
    grep -Eq "^ +$c( +[01]\.[0-9]{2}){3} +[0-9]+$" "$E/classification_report.txt" || fail "report row $c"
done
grep -Eq '^ +accuracy +[01]\.[0-9]{2} +[0-9]+$' "$E/classification_report.txt" || fail "report accuracy row"
head -1 "$E/predictions.csv" | grep -qx 'path,true_label,predicted_label,prob_BACTERIA,prob_NORMAL,prob_VIRUS' \
    || fail "predictions.csv header"
# decisions are the argmax
tail -n +2 "$E/predictions.csv" | awk -F, 'BEGIN { split("BACTERIA NORMAL VIRUS", c, " ") }
    { m = 4; for (i = 5; i <= 6; i++) if ($i + 0 > $m + 0) m = i
      if ($3 != c[m - 3]) { ties = 0; for (i = 4; i <= 6; i++) if ($i + 0 == $m + 0) ties++; if (ties < 2) { print; bad = 1 } } }
    END { exit bad }' \
    || fail "multi-class decisions are not the argmax"
grep -q "ROC AUC one-vs-rest: BACTERIA" "$T/ev1.log" || fail "one-vs-rest AUCs not printed"
grep -q '"macro":' "$E/metrics.json" || fail "metrics.json: no macro one-vs-rest AUC"

# a screening class on demand: one-vs-rest screening at 0.5 (the card's threshold is for another class)
"$RADBATCH" evaluate --model "$M" --data "$T/s64" --out "$T/virus" --positive_class VIRUS --bootstrap 100 --batch_size 4 --quiet \
    > /dev/null || fail "positive_class VIRUS"
grep -Eq '"positive_class":[[:space:]]*"VIRUS"' "$T/virus/metrics.json" || fail "screening class not recorded"
[ -s "$T/virus/roc.csv" ] || fail "no roc.csv for the screening class"
cmp -s "$E/predictions.csv" "$T/virus/predictions.csv" || fail "a screening class must not change multi-class decisions"
[ -e "$E/calibration.csv" ] && fail "calibration.csv written without a screening class"
grep -q '"calibration"' "$E/metrics.json" && fail "calibration metrics without a screening class"
# the stress test needs a screening class: exit 2 naming the key
set +e
"$RADBATCH" evaluate --model "$M" --data "$T/s64" --out "$T/stress" --stress true --quiet > /dev/null 2> "$T/stress.err"
rc=$?
set -e
[ $rc = 2 ] && grep -q "key 'stress'" "$T/stress.err" || { cat "$T/stress.err"; fail "stress without a screening class: exit $rc"; }
[ -s "$T/virus/calibration.csv" ] || fail "no calibration.csv for the screening class VIRUS"
ok "three classes"
