# labels: train mpi invariance
# The frozen-base feature cache gives the same model as running the base every step (the
# head's dropout masks are keyed by layer name, so the cut-out head draws the same ones),
# up to float rounding (the cut-out head may run differently fused kernels than the whole
# model: measured 3e-8 relative, bound 1e-6), through a two-stage run, on 1 and 2 ranks: stage 1 caches the pooled features; stage 2
# fine-tunes the top 30% of the base (from block_12_expand, whose BatchNorms must stay in
# inference mode as base layers) and caches block_11_add. A SIGTERM in the middle of the
# cached stage resumes bit-identically to the uninterrupted cached run, and train_log.jsonl
# shows that it continued from the step-7 checkpoint (a restart from scratch would end
# bit-identical too).
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s96" --height 96 --width 96 --group_regex "$GROUPS_RE" --quiet > /dev/null
W="$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
args=(train --shards "$T/s96" --weights "$W" --epochs 2 --fine_tune_epochs 1 --threads 1 --fine_tune_fraction 0.3
      --batch_size 16 --checkpoint_every_steps 4)
for n in 1 2; do
    rb_run $n "${args[@]}" --run_dir "$T/plain$n" --feature_cache false > "$T/plain$n.log" 2>&1 || { cat "$T/plain$n.log"; fail "no cache"; }
    rb_run $n "${args[@]}" --run_dir "$T/cache$n" --feature_cache true > "$T/cache$n.log" 2>&1 || { cat "$T/cache$n.log"; fail "cache"; }
    "$RADBATCH" inspect "$T/plain$n/model.h5" --diff "$T/cache$n/model.h5" > "$T/diff$n"
    rel=$(sed -n 's/.*relative \([0-9.e+-]*\).*/\1/p' "$T/diff$n")
    awk -v r="$rel" 'BEGIN { exit !(r <= 1e-6) }' || fail "feature cache changes the model on $n ranks: $(cat "$T/diff$n")"
    paste -d, "$T/plain$n/history.csv" "$T/cache$n/history.csv" | tail -n +2 | awk -F, '{ n = NF / 2; for (i = 3; i < n; i++) { d = $i - $(i + n); if (d < 0) d = -d; if (d > 1e-5) bad = 1 } } END { exit bad }' \
        || fail "history differs with the cache"
    [ "$(grep -c 'feature cache:' "$T/cache$n.log")" = 2 ] || fail "the cache was not used in both stages"
    set +e
    RADBATCH_TEST_TERM_AFTER_STEPS=6 rb_run $n "${args[@]}" --run_dir "$T/term$n" > "$T/term$n.log" 2>&1
    rc=$?
    set -e
    [ $rc -eq 75 ] || { cat "$T/term$n.log"; fail "SIGTERM in the cached stage: exit $rc"; }
    rb_run $n "${args[@]}" --run_dir "$T/term$n" --resume true > "$T/resume$n.log" 2>&1 || { cat "$T/resume$n.log"; fail "resume"; }
    "$RADBATCH" inspect "$T/cache$n/model.h5" --diff "$T/term$n/model.h5" > "$T/tdiff$n"
    grep -q "^diff: 0 of" "$T/tdiff$n" || fail "resume in the cached stage differs: $(cat "$T/tdiff$n")"
    # 10 steps per epoch, 3 epochs; SIGTERM after step 6 checkpoints at step 7 and exits
    got=$(train_log_summary "$T/term$n")
    [ "$got" = "start fresh end preempted 7 7 start 7@ckpt-0000000007.h5 end finished 30 23" ] \
        || fail "SIGTERM+resume in the cached stage on $n ranks did not continue from the step-7 checkpoint: train_log.jsonl says: $got"
    [ "$(train_log_summary "$T/cache$n")" = "start fresh end finished 30 30" ] || fail "cached run: train_log.jsonl says: $(train_log_summary "$T/cache$n")"
    echo "$n rank(s): cache = no cache, SIGTERM resume exact"
done
ok "feature cache"
