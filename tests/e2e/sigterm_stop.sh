# labels: mpi convert evaluate
# SIGTERM ends convert and evaluate (2 ranks, as Slurm sends it to every task before the time
# limit) with exit 75, "stopped, rerun the same command to finish", like train and infer
# (train_resume, infer_resume, launcher_sigterm): they have no stop point of their own and
# end at once. Convert: the shards finished before are whole (each passes inspect --verify),
# no summary.json or index.json marks the folder finished, and the rerun keeps them and ends
# byte-identical to an uninterrupted run. Evaluate into a folder holding an earlier complete
# evaluation: its reports stay whole, its summary.json is gone (the folder is unfinished);
# the rerun ends identical to an uninterrupted run.
# The signal comes from test hooks (after a number of shards or forward passes) so that it
# surely falls in the middle of the work.
source "$(dirname "$0")/lib.sh"
conv=(convert "$SAMPLE" --height 32 --width 32 --shard_size_mb 0.05 --group_regex "$GROUPS_RE" --quiet)

# ---- convert
mpirun -n 2 "$RADBATCH" "${conv[@]}" --out "$T/clean" > "$T/clean.log" 2>&1 || { cat "$T/clean.log"; fail "uninterrupted convert"; }
n=$(ls "$T/clean"/*.h5 | wc -l)
[ "$n" -ge 6 ] || fail "expected at least 6 shards to stop between, got $n"
set +e
RADBATCH_TEST_TERM_AFTER_SHARDS=1 mpirun -n 2 "$RADBATCH" "${conv[@]}" --out "$T/stopped" > "$T/stopped.log" 2>&1
rc=$?
set -e
[ "$rc" = 75 ] || { cat "$T/stopped.log"; fail "convert after SIGTERM: exit $rc, expected 75"; }
[ ! -e "$T/stopped/summary.json" ] && [ ! -e "$T/stopped/index.json" ] || fail "a stopped convert marked its folder finished"
done_shards=$(ls "$T/stopped"/*.h5 2> /dev/null | wc -l)
[ "$done_shards" -ge 1 ] && [ "$done_shards" -lt "$n" ] || fail "the stopped convert finished $done_shards of $n shards"
for f in "$T/stopped"/*.h5; do
    "$RADBATCH" inspect "$f" --verify > "$T/verify.log" 2>&1 || { cat "$T/verify.log"; fail "$(basename "$f") is not whole after SIGTERM"; }
done
mpirun -n 2 "$RADBATCH" "${conv[@]}" --out "$T/stopped" > "$T/rerun.log" 2>&1 || { cat "$T/rerun.log"; fail "convert rerun"; }
same_shards "$T/clean" "$T/stopped"
[ -z "$(find "$T/stopped" -name '*.tmp*')" ] || fail "temporary files left after the rerun: $(find "$T/stopped" -name '*.tmp*')"
ok "convert: SIGTERM after $done_shards of $n shards exits 75, finished shards whole, the rerun is byte-identical"

# ---- evaluate: a small model, an earlier complete evaluation in the folder, then SIGTERM
"$RADBATCH" train --shards "$T/clean" --run_dir "$T/run" --backbone mobilenetv2 --epochs 1 --batch_size 16 --quiet \
    --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5" \
    > "$T/train.log" 2>&1 || { cat "$T/train.log"; fail "train"; }
ev=(evaluate --model "$T/run/model.h5" --data "$T/clean" --split train --batch_size 8 --bootstrap 100 --quiet)
mpirun -n 2 "$RADBATCH" "${ev[@]}" --out "$T/ev-clean" > "$T/ev-clean.log" 2>&1 || { cat "$T/ev-clean.log"; fail "evaluate"; }
mpirun -n 2 "$RADBATCH" "${ev[@]}" --split val --out "$T/ev" > "$T/ev-val.log" 2>&1 || { cat "$T/ev-val.log"; fail "evaluate val"; }
cp -r "$T/ev" "$T/ev-before"
set +e
RADBATCH_TEST_TERM_AFTER_PASSES=2 mpirun -n 2 "$RADBATCH" "${ev[@]}" --out "$T/ev" > "$T/ev-stopped.log" 2>&1
rc=$?
set -e
[ "$rc" = 75 ] || { cat "$T/ev-stopped.log"; fail "evaluate after SIGTERM: exit $rc, expected 75"; }
# the stopped run took the folder's marker away first (an unfinished folder is never taken
# for a finished one) and left every earlier report whole
[ ! -e "$T/ev/summary.json" ] || fail "the stopped evaluation left a summary.json: the folder looks finished"
for f in "$T/ev-before"/*; do
    [ "$(basename "$f")" = summary.json ] && continue
    cmp -s "$f" "$T/ev/$(basename "$f")" || fail "the earlier evaluation's $(basename "$f") changed after SIGTERM"
done
mpirun -n 2 "$RADBATCH" "${ev[@]}" --out "$T/ev" > "$T/ev-rerun.log" 2>&1 || { cat "$T/ev-rerun.log"; fail "evaluate rerun"; }
for f in classification_report.txt confusion_matrix.csv predictions.csv roc.csv metrics.json; do
    cmp -s "$T/ev-clean/$f" "$T/ev/$f" || fail "$f of the rerun differs from an uninterrupted evaluation"
done
ok "evaluate: SIGTERM mid-pass exits 75, the earlier reports stay whole and unmarked, the rerun is identical"
