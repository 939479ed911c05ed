# labels: mpi invariance
# radbatch evaluate on shards: 1, 2 and 3 ranks (and 2 threads on one rank) give
# byte-identical reports; the report files agree with each other (confusion matrix =
# counts of predictions.csv, decisions = threshold on the probabilities); sklearn's
# classification_report layout; threshold rules; exit codes of bad keys.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s96" --height 96 --width 96 --group_regex "$GROUPS_RE" --quiet > /dev/null
"$RADBATCH" train --shards "$T/s96" --run_dir "$T/run" --backbone mobilenetv2 \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" --epochs 1 --batch_size 16 --quiet \
    > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
M="$T/run/model.h5"

# batch_size 4: the 41 val records make 11 batches, so every rank has work
for n in 1 2 3; do
    rb_run $n evaluate --model "$M" --data "$T/s96" --out "$T/ev$n" --batch_size 4 --quiet > "$T/ev$n.log" 2>&1 \
        || { cat "$T/ev$n.log"; fail "evaluate on $n ranks"; }
done
OPENBLAS_NUM_THREADS=2 "$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/ev1t" --batch_size 4 --threads 2 \
    --quiet > /dev/null || fail "evaluate with 2 threads"
for d in ev2 ev3 ev1t; do
    for f in metrics.json predictions.csv classification_report.txt confusion_matrix.csv roc.csv errors.csv report.html; do
        cmp -s "$T/ev1/$f" "$T/$d/$f" || fail "$f differs between ev1 and $d"
    done
done
ok "1, 2, 3 ranks and 2 threads: byte-identical reports"

# a pipeline job file: shards and run_dir give data, model and out
printf 'shards = %s\nrun_dir = %s\n[train]\nepochs = 1\n' "$T/s96" "$T/run" > "$T/job.ini"
rb_run 2 evaluate "$T/job.ini" --batch_size 4 --quiet > /dev/null || fail "evaluate job.ini"
cmp -s "$T/ev1/metrics.json" "$T/run/evaluate/metrics.json" || fail "job.ini run differs from the command-line run"
ok "job file with shards and run_dir"

E="$T/ev1"
for f in metrics.json classification_report.txt confusion_matrix.csv predictions.csv roc.csv errors.csv report.html; do
    [ -s "$E/$f" ] || fail "$f missing or empty"
done
ls "$E" | grep -q '\.tmp\.' && fail "a temporary file was left in the output folder"

# classification_report.txt: sklearn's layout
R="$E/classification_report.txt"
head -1 "$R" | grep -Eq '^ +precision +recall +f1-score +support$' || fail "report header: $(head -1 "$R")"
[ -z "$(sed -n 2p "$R")" ] || fail "report: line 2 must be empty"
grep -Eq '^ +NORMAL +[01]\.[0-9]{2} +[01]\.[0-9]{2} +[01]\.[0-9]{2} +20$' "$R" || fail "report: NORMAL row"
grep -Eq '^ +PNEUMONIA +[01]\.[0-9]{2} +[01]\.[0-9]{2} +[01]\.[0-9]{2} +21$' "$R" || fail "report: PNEUMONIA row"
grep -Eq '^ +accuracy +[01]\.[0-9]{2} +41$' "$R" || fail "report: accuracy row"
grep -Eq '^ +macro avg( +[01]\.[0-9]{2}){3} +41$' "$R" || fail "report: macro avg row"
grep -Eq '^weighted avg( +[01]\.[0-9]{2}){3} +41$' "$R" || fail "report: weighted avg row"
grep -q "Classification Report:" "$T/ev1.log" && grep -q "weighted avg" "$T/ev1.log" || fail "report not printed"
grep -q "sensitivity" "$T/ev1.log" && grep -q "specificity" "$T/ev1.log" || fail "screening line not printed"
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/d4" --digits 4 --bootstrap 0 --quiet > /dev/null
grep -Eq '^ +NORMAL +[01]\.[0-9]{4} +[01]\.[0-9]{4} +[01]\.[0-9]{4} +20$' "$T/d4/classification_report.txt" \
    || fail "digits 4"
ok "classification_report layout"

# predictions.csv: header, one row per record, decisions = model threshold, matrix = counts
head -1 "$E/predictions.csv" | grep -qx 'path,true_label,predicted_label,prob_NORMAL,prob_PNEUMONIA' \
    || fail "predictions.csv header: $(head -1 "$E/predictions.csv")"
[ "$(tail -n +2 "$E/predictions.csv" | wc -l)" = 41 ] || fail "predictions.csv: expected 41 rows"
thr=$(grep -A3 '"threshold"' "$E/metrics.json" | sed -n 's/.*"value":[[:space:]]*\([0-9.e+-]*\).*/\1/p' | head -1)
[ -n "$thr" ] || fail "metrics.json: no screening threshold"
tail -n +2 "$E/predictions.csv" | awk -F, -v t="$thr" '{ want = ($5 + 0 >= t - 1e-6) ? "PNEUMONIA" : "NORMAL";
    if ($5 + 0 > t + 1e-6 || $5 + 0 < t - 1e-6) if ($3 != want) { print "row " NR ": " $0; bad = 1 }
    s = $4 + $5; if (s < 0.9999 || s > 1.0001) { print "probabilities do not sum to 1: " $0; bad = 1 } } END { exit bad }' \
    || fail "predicted labels do not follow the threshold $thr"
awk -F, 'NR == FNR { if (FNR > 1) c[$2 "," $3]++; next }
         FNR == 1 { for (i = 2; i <= NF; i++) col[i] = $i; next }
         { for (i = 2; i <= NF; i++) if ($i != c[$1 "," col[i]] + 0) { print $1 " -> " col[i] ": " $i " vs " c[$1 "," col[i]] + 0; bad = 1 } }
         END { exit bad }' "$E/predictions.csv" "$E/confusion_matrix.csv" || fail "confusion_matrix.csv != counts of predictions.csv"
head -1 "$E/roc.csv" | grep -qx 'fpr,tpr,threshold' || fail "roc.csv header"
head -1 "$E/errors.csv" | grep -qx 'path,reason' || fail "errors.csv header"
for key in '"accuracy"' '"macro_avg"' '"weighted_avg"' '"sensitivity"' '"specificity"' '"ppv"' '"npv"' '"mcc"' \
    '"balanced_accuracy"' '"roc_auc"' '"bootstrap"' '"auc_ovr"' '"confusion_matrix"' '"models"' '"tta"' '"counts"'; do
    grep -q "$key" "$E/metrics.json" || fail "metrics.json has no $key"
done
ok "report files agree with each other"

# threshold rules: a value 0.5 decides by prob >= 0.5; youden is recorded
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/fixed" --threshold 0.5 \
    --bootstrap 0 --quiet > /dev/null || fail "threshold fixed"
tail -n +2 "$T/fixed/predictions.csv" | awk -F, '{ want = ($5 + 0 >= 0.5) ? "PNEUMONIA" : "NORMAL"; if ($3 != want) bad = 1 } END { exit bad }' \
    || fail "threshold fixed 0.5 not applied"
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/youden" --threshold youden --bootstrap 0 --quiet > /dev/null \
    || fail "threshold youden"
grep -q '"rule":[[:space:]]*"youden"' "$T/youden/metrics.json" || fail "youden rule not recorded"
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/sens" --threshold sensitivity:0.9 --bootstrap 0 \
    --quiet > /dev/null || fail "threshold sensitivity"
awk -F, 'NR > 1 && $2 == "PNEUMONIA" { n++; if ($3 == "PNEUMONIA") tp++ } END { exit !(tp / n >= 0.9) }' \
    "$T/sens/predictions.csv" || fail "target sensitivity 0.9 not reached"
ok "threshold rules"

# bad keys: exit 2; a missing model or shards folder: exit 1
set +e
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/x" --tta 5 > /dev/null 2>&1; [ $? = 2 ] || fail "tta 5: exit 2"
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/x" --bogus 1 > /dev/null 2>&1; [ $? = 2 ] || fail "unknown key: exit 2"
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/x" --positive_class CAT > /dev/null 2>&1; [ $? = 2 ] || fail "bad class: exit 2"
"$RADBATCH" evaluate --data "$T/s96" --out "$T/x" > /dev/null 2>&1; [ $? = 2 ] || fail "no model: exit 2"
"$RADBATCH" evaluate --model "$T/nope.h5" --data "$T/s96" --out "$T/x" > /dev/null 2>&1; [ $? = 1 ] || fail "missing model: exit 1"
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --split test --out "$T/x" > /dev/null 2>&1; [ $? = 1 ] || fail "missing split: exit 1"
rb_run 2 evaluate --model "$T/nope.h5" --data "$T/s96" --out "$T/x" > "$T/err2.log" 2>&1; [ $? = 1 ] || fail "2 ranks, missing model: exit 1"
set -e
ok "exit codes"
