# labels: train mpi invariance
# Checkpoints: a run killed with SIGKILL mid-epoch and resumed ends bit-identical to an
# uninterrupted run (weights, BatchNorm statistics, history); SIGTERM writes a checkpoint
# and exits 75, and the resumed run is bit-identical too. The CNN trains in full with
# augmentation and dropout, so every piece of state must come back exactly. Training is
# deterministic, so a resume that started over from scratch would end bit-identical too:
# train_log.jsonl shows that the resumed invocation started from the newest checkpoint and
# ran only the remaining steps.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null
args=(train --shards "$T/s64" --backbone cnn --epochs 3 --batch_size 16 --head_dropout 0.3 --learning_rate 1e-3
      --horizontal_flip true --zoom 0.1 --checkpoint_every_steps 3 --reduce_lr_patience 1 --quiet)
for n in 1 2; do
    rb_run $n "${args[@]}" --run_dir "$T/clean$n" > "$T/clean$n.log" 2>&1 || { cat "$T/clean$n.log"; fail "clean run"; }
    # 10 steps per epoch: die at step 14 (epoch 2, after the step-12 checkpoint)
    set +e
    RADBATCH_TEST_KILL_AFTER_STEPS=14 rb_run $n "${args[@]}" --run_dir "$T/killed$n" > "$T/killed$n.log" 2>&1
    rc=$?
    set -e
    [ $rc -ne 0 ] || fail "killed run exited 0"
    ls "$T/killed$n/checkpoints/"*.DONE > /dev/null || fail "no complete checkpoint after the kill"
    [ ! -f "$T/killed$n/model.h5" ] || fail "killed run wrote model.h5"
    rb_run $n "${args[@]}" --run_dir "$T/killed$n" --resume true > "$T/resume$n.log" 2>&1 || { cat "$T/resume$n.log"; fail "resume"; }
    got=$(train_log_summary "$T/clean$n")
    [ "$got" = "start fresh end finished 30 30" ] || fail "clean run on $n ranks: train_log.jsonl says: $got"
    # the killed invocation wrote no end line; the resumed one started at the step-12
    # checkpoint and ran the 18 steps left of 30
    got=$(train_log_summary "$T/killed$n")
    [ "$got" = "start fresh start 12@ckpt-0000000012.h5 end finished 30 18" ] \
        || fail "SIGKILL+resume on $n ranks did not continue from the step-12 checkpoint: train_log.jsonl says: $got"
    "$RADBATCH" inspect "$T/clean$n/model.h5" --diff "$T/killed$n/model.h5" > "$T/diff$n"
    grep -q "^diff: 0 of" "$T/diff$n" || fail "SIGKILL+resume on $n ranks is not bit-identical: $(cat "$T/diff$n")"
    cmp -s <(cut -d, -f1-10 "$T/clean$n/history.csv") <(cut -d, -f1-10 "$T/killed$n/history.csv") || fail "history differs after resume"

    set +e
    RADBATCH_TEST_TERM_AFTER_STEPS=17 rb_run $n "${args[@]}" --run_dir "$T/term$n" > "$T/term$n.log" 2>&1
    rc=$?
    set -e
    [ $rc -eq 75 ] || { cat "$T/term$n.log"; fail "SIGTERM: exit code $rc, expected 75"; }
    ls "$T/term$n/checkpoints/ckpt-0000000018.DONE" > /dev/null || fail "SIGTERM did not checkpoint at step 18"
    rb_run $n "${args[@]}" --run_dir "$T/term$n" --resume true > /dev/null 2>&1 || fail "resume after SIGTERM"
    "$RADBATCH" inspect "$T/clean$n/model.h5" --diff "$T/term$n/model.h5" > "$T/tdiff$n"
    grep -q "^diff: 0 of" "$T/tdiff$n" || fail "SIGTERM+resume on $n ranks is not bit-identical: $(cat "$T/tdiff$n")"
    got=$(train_log_summary "$T/term$n")
    [ "$got" = "start fresh end preempted 18 18 start 18@ckpt-0000000018.h5 end finished 30 12" ] \
        || fail "SIGTERM+resume on $n ranks did not continue from the step-18 checkpoint: train_log.jsonl says: $got"
    echo "$n rank(s): kill -9 and SIGTERM resumes are bit-identical"
done
ok "checkpoints resume exactly"
