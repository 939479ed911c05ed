# A run_dir that holds an earlier run (finished, or started and killed) is never replaced
# silently: train without --resume true refuses it (exit 2, a hint naming --resume true,
# --overwrite true and a new run_dir) and leaves it untouched; --overwrite true starts
# afresh there (the earlier checkpoints removed); an empty existing folder is a fresh start.
source "$(dirname "$0")/lib.sh"
W="$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --quiet > /dev/null
args=(train --shards "$T/s32" --backbone mobilenetv2 --weights "$W" --epochs 1 --max_steps 2 --batch_size 16)
mkdir -p "$T/run" # an empty folder, as the sbatch scripts create it
"$RADBATCH" "${args[@]}" --run_dir "$T/run" > "$T/first.log" 2>&1 || { cat "$T/first.log"; fail "train into an empty folder"; }
[ -f "$T/run/summary.json" ] || fail "no summary.json"
cp "$T/run/model.h5" "$T/model-first.h5"
# refused: exit 2 without touching the run
refused() { # NAME RUN_DIR WHAT
    local rc
    set +e
    "$RADBATCH" "${args[@]}" --run_dir "$2" > "$T/$1.log" 2>&1
    rc=$?
    set -e
    [ $rc = 2 ] || { cat "$T/$1.log"; fail "$1: exit $rc, expected 2"; }
    grep -qF "error: train: $2 holds an earlier run ($3)" "$T/$1.log" || { cat "$T/$1.log"; fail "$1: no error naming $3"; }
    grep -qF "hint: continue it with --resume true, start afresh there with --overwrite true, or choose a new run_dir" \
        "$T/$1.log" || { cat "$T/$1.log"; fail "$1: no hint"; }
}
before=$(ls -l --time-style=+%s.%N "$T/run")
refused finished "$T/run" summary.json
[ "$before" = "$(ls -l --time-style=+%s.%N "$T/run")" ] || fail "the refused run changed run_dir"
cmp -s "$T/run/model.h5" "$T/model-first.h5" || fail "model.h5 changed"
# a started run that was killed (no summary.json, no model.h5: its log and checkpoints)
set +e
RADBATCH_TEST_KILL_AFTER_STEPS=2 "$RADBATCH" "${args[@]}" --checkpoint_every_steps 1 --run_dir "$T/killed" > "$T/killed.log" 2>&1
set -e
[ ! -f "$T/killed/summary.json" ] || fail "the killed run finished"
ls "$T/killed/checkpoints/"ckpt-0000000001.DONE > /dev/null 2>&1 || fail "expected the killed run's step-1 checkpoint"
refused started "$T/killed" train_log.jsonl
# --overwrite true starts afresh; --resume true continues
"$RADBATCH" "${args[@]}" --run_dir "$T/run" --overwrite true > "$T/over.log" 2>&1 || { cat "$T/over.log"; fail "--overwrite true"; }
[ "$(grep -c '"event":"start","time":"[^"]*","ranks":1,"epoch":0,"step":0,"resumed_from":null' "$T/run/train_log.jsonl")" = 2 ] ||
    { cat "$T/run/train_log.jsonl"; fail "--overwrite true did not start afresh"; }
"$RADBATCH" "${args[@]}" --run_dir "$T/killed" --resume true > "$T/resume.log" 2>&1 || { cat "$T/resume.log"; fail "--resume true"; }
[ -f "$T/killed/summary.json" ] || fail "the resumed run did not finish"
# --overwrite true removes the earlier run's checkpoints: every checkpoint left is the new run's
ls "$T/killed/checkpoints/"ckpt-0000000001.DONE > /dev/null 2>&1 || fail "the step-1 checkpoint should still be there before --overwrite"
touch "$T/stamp"
sleep 1
"$RADBATCH" "${args[@]}" --run_dir "$T/killed" --overwrite true > "$T/over2.log" 2>&1 || { cat "$T/over2.log"; fail "--overwrite true on a resumed run"; }
ls "$T/killed/checkpoints/"*.DONE > /dev/null || fail "no checkpoint after --overwrite true"
old=$(find "$T/killed/checkpoints" -type f ! -newer "$T/stamp")
[ -z "$old" ] || fail "--overwrite true kept checkpoints of the earlier run: $old"
ok "an earlier run in run_dir is refused without --resume or --overwrite, and kept"
