# labels: slurm
# A 2-configuration sweep on a real local Slurm cluster: slurm/sweep submits one convert job,
# a 2-task job array (train + evaluate per configuration, MobileNetV2 and the CNN at 96x96)
# and the gather job; comparison.csv and comparison.html hold one complete row per
# configuration.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm_lib.sh"

cat > "$T/sweep.ini" <<INI
# shared by both configurations
inputs = $SAMPLE
group_regex = $GROUPS_RE
input_size = 96
epochs = 2
batch_size = 16
quiet = true

[mobilenetv2-lr1e-3]
backbone = mobilenetv2
weights = $RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5
learning_rate = 1e-3

[cnn-lr1e-4]
backbone = cnn
learning_rate = 1e-4

[slurm]
ntasks = 1
cpus_per_task = 1
time = 10
INI
t0=$(date +%s)
"$SL/sweep" "$T/sweep.ini" --runs "$T/runs" > "$T/submit.txt" 2>&1 || { cat "$T/submit.txt"; fail "slurm/sweep"; }
cat "$T/submit.txt"
P=$(sed -n 's/^sweep sweep: //p' "$T/submit.txt")
[ -f "$P/jobs.txt" ] || fail "no sweep folder in the output"
array=$(awk '$1 == "array" {print $2}' "$P/jobs.txt")
gather=$(awk '$1 == "gather" {print $2}' "$P/jobs.txt")
[ "$(awk '$1 == "convert" {print NF - 1}' "$P/jobs.txt")" = 1 ] || fail "one image size should give one convert job: $(cat "$P/jobs.txt")"
swait "$gather" 600 > /dev/null || { logs "$P"/logs/*.out; fail "gather job $gather: $(jstate "$gather")"; }
swait "$array" 10 || { logs "$P"/logs/*.out; fail "array job $array did not complete"; }
[ "$(swait "$array" 10 | wc -l)" = 2 ] || fail "the array should have 2 tasks"
cat "$P/logs/gather-$gather.out"
csv="$P/comparison.csv"
[ -s "$csv" ] && [ -s "$P/comparison.html" ] || fail "no comparison.csv/comparison.html"
head -n 1 "$csv" | grep -q '^config,status,backbone,input,learning_rate,accuracy,auc,sensitivity,specificity,threshold,threshold_source,chosen_on_reported_split,params,train_seconds,images_per_second,best_epoch,epochs,' ||
    fail "comparison.csv header: $(head -n 1 "$csv")"
[ "$(wc -l < "$csv")" = 3 ] || fail "comparison.csv should have 2 rows"
want=ok; have_cmd evaluate || want="not evaluated"
awk -F, -v want="$want" 'NR > 1 {
    if ($2 != want) { print "status " $2 " for " $1; bad = 1 }
    if ($4 != "96x96x3") { print "input " $4 " for " $1; bad = 1 }
    for (i = 6; i <= 14; i++) if ($i == "") { print "empty column " i " for " $1; bad = 1 }
    if ($6 < 0 || $6 > 1 || $7 < 0 || $7 > 1) { print "accuracy/auc out of range for " $1; bad = 1 }
    if ($10 < 0 || $10 > 1) { print "threshold out of range for " $1; bad = 1 }
    if ($2 == "ok" && $11 !~ /^model card: youden on val of /) { print "threshold_source " $11 " for " $1; bad = 1 }
    # evaluate reports val, where the card chose its threshold: the rates are optimistic
    if ($2 == "ok" && $12 != "true") { print "chosen_on_reported_split " $12 " for " $1; bad = 1 }
} END { exit bad }' "$csv" || { cat "$csv"; fail "incomplete comparison rows"; }
grep -q '^mobilenetv2-lr1e-3,[^,]*,mobilenetv2,96x96x3,1e-3,' "$csv" || fail "no mobilenetv2 row"
grep -q '^cnn-lr1e-4,[^,]*,cnn,96x96x3,1e-4,' "$csv" || fail "no cnn row"
grep -q '<td class="best">' "$P/comparison.html" || fail "comparison.html marks no best value"
ok "sweep: 2 configurations compared in comparison.csv/html ($(( $(date +%s) - t0 )) s)"
