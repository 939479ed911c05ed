# labels: slurm
# Switching models in nightly screening, each night a Slurm job on a real local cluster:
# two nights with model A (everything, then 3 new files --since the first), a third night
# with A killed mid-run (unfinished, with the next night queued), then model B: without
# --new-baseline the run stops with exit 2 naming the option and touches nothing; with
# submit --new-baseline it cancels the old chain's pending job, leaves A's unfinished run
# alone, screens the whole archive with B (no --since) and queues the next night without the
# flag; that queued job of the chain, started at once, screens --since B's baseline.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm_lib.sh"

have_cmd infer || skip "this radbatch has no infer command"
"$RADBATCH" convert "$SAMPLE" --out "$T/s64" --height 64 --width 64 --group_regex "$GROUPS_RE" --quiet > /dev/null || fail "convert"
for m in A:1 B:2; do
    "$RADBATCH" train --shards "$T/s64" --run_dir "$T/model${m%:*}" --backbone cnn --epochs 1 --batch_size 32 \
        --seed "${m#*:}" --quiet > /dev/null || fail "train model ${m%:*}"
done
cmp -s "$T/modelA/model.h5" "$T/modelB/model.h5" && fail "models A and B are the same file"
arch="$T/archive"
add_files() {  # day class first count
    mkdir -p "$arch/$1"
    mapfile -t files < <(find "$SAMPLE/$2" -type f | sort)
    for f in "${files[@]:$3:$4}"; do cp "$f" "$arch/$1/"; done
}
add_files d1 NORMAL 0 12; add_files d1 PNEUMONIA 0 12
S="$T/screens"
# night DATE MODEL [options]: submit one run now; prints the job id once it ended
night() {
    local day=$1 m=$2 out; shift 2
    out=$("$SL/nightly-screen" submit --model "$T/model$m/model.h5" --archive "$arch" --runs "$S" --name rbtest-nm \
        --now --date "$day" --infer "--chunk 4" "$@" -- --ntasks=2 --time=10 2>&1) || fail "nightly-screen submit: $out"
    echo "$out" >> "$T/submits.txt"
    out=$(sed -n 's/^submitted rbtest-nm job \([0-9]*\).*/\1/p' <<<"$out")
    [ -n "$out" ] || fail "no job id from nightly-screen submit"
    swait "$out" 300 > /dev/null || true
    echo "$out"
}
summary() { grep -Eo "\"$2\":[[:space:]]*[0-9]+" "$S/screen-$1/summary.json" | grep -Eo '[0-9]+$'; }
log_of() { echo "$S/logs/rbtest-nm-$1.out"; }
completed() { [ "$(jstate "$1")" = "COMPLETED 0:0" ] || { logs "$(log_of "$1")"; fail "$2: job $1 ended $(jstate "$1")"; }; }

t0=$(date +%s)
j=$(night 2026-01-01 A --once); completed "$j" "night 1 (A)"
[ "$(summary 2026-01-01 new)" = 24 ] || fail "night 1: $(summary 2026-01-01 new) new, expected 24"
add_files d2 PNEUMONIA 20 3
j=$(night 2026-01-02 A --once); completed "$j" "night 2 (A)"
[ "$(summary 2026-01-02 new)" = 3 ] || fail "night 2: $(summary 2026-01-02 new) new, expected 3"
grep -q -- "--since $S/screen-2026-01-01" "$(log_of "$j")" || fail "night 2 did not run --since night 1"
ok "two nights with model A: 24 files, then 3 new --since the first"

# night 3 with A dies mid-run (as on a node failure): unfinished, tomorrow's run queued
add_files d3 NORMAL 20 2
j=$(RADBATCH_TEST_KILL_AFTER_CHUNKS=1 night 2026-01-03 A)
[ "$(jstate "$j" | cut -d' ' -f1)" = FAILED ] || { logs "$(log_of "$j")"; fail "night 3: the killed run ended $(jstate "$j")"; }
[ -f "$S/screen-2026-01-03/.since" ] && [ ! -f "$S/screen-2026-01-03/summary.json" ] || fail "night 3 is not an unfinished run"
oldnext=$(squeue -h -n rbtest-nm -t PENDING -o %i)
[ -n "$oldnext" ] || fail "night 3 did not queue the next night"
[ "$(readlink "$S/latest")" = screen-2026-01-02 ] || fail "latest moved to $(readlink "$S/latest") after a failed night"

# model B without --new-baseline: exit 2 with the option named, nothing touched
j=$(night 2026-01-04 B --once)
[ "$(jstate "$j")" = "FAILED 2:0" ] || { logs "$(log_of "$j")"; fail "model B without --new-baseline: $(jstate "$j"), expected FAILED 2:0"; }
grep -q "another model.*--new-baseline" "$(log_of "$j")" || { logs "$(log_of "$j")"; fail "the error does not name --new-baseline"; }
[ ! -e "$S/screen-2026-01-04" ] || fail "the refused run left a folder"
[ -f "$S/screen-2026-01-03/.since" ] || fail "the refused run changed night 3's unfinished run"
ok "model B without --new-baseline: FAILED 2:0, the message names --new-baseline, nothing touched"

# model B with --new-baseline (a chain: the next night is queued)
add_files d4 PNEUMONIA 30 2
j=$(night 2026-01-04 B --new-baseline)
completed "$j" "night 4 (B, new baseline)"
L=$(log_of "$j")
grep -q "cancelled the pending rbtest-nm job(s) of the previous chain: $oldnext" "$T/submits.txt" || fail "submit --new-baseline did not cancel the old chain's job $oldnext"
[ "$(jstate "$oldnext" | cut -d' ' -f1)" = CANCELLED ] || fail "old chain job $oldnext: $(jstate "$oldnext")"
grep -q -- "--since" <(grep "command:" "$L") && fail "the new baseline ran with --since"
[ "$(summary 2026-01-04 new)" = 31 ] || fail "night 4: $(summary 2026-01-04 new) new, expected the whole archive (31)"
grep -q "leaving the unfinished run screen-2026-01-03 as it is: superseded" "$L" || { logs "$L"; fail "night 3's unfinished run was not left alone"; }
[ -f "$S/screen-2026-01-03/.superseded" ] && [ ! -f "$S/screen-2026-01-03/.since" ] || fail "night 3 is not marked superseded"
[ "$(readlink "$S/latest")" = screen-2026-01-04 ] || fail "latest is $(readlink "$S/latest"), expected screen-2026-01-04"
next=$(squeue -h -n rbtest-nm -t PENDING -o %i)
[ -n "$next" ] || fail "the new baseline did not queue the next night"
scontrol show job "$next" | grep -q -- "--new-baseline" && fail "the next night's job carries --new-baseline"
ok "model B with --new-baseline: old chain's job cancelled, 31 files without --since, night 3 left alone, next night queued"

# the chain's next night (started now; it names its folder after today) continues from B
add_files d5 NORMAL 40 3
scontrol update JobId="$next" StartTime=now || fail "cannot start job $next now"
swait "$next" 300 > /dev/null || true
completed "$next" "night 5 (the chain's next job)"
today=$(date +%F)
grep -q -- "--since $S/screen-2026-01-04" "$(log_of "$next")" || { logs "$(log_of "$next")"; fail "night 5 did not run --since B's baseline"; }
[ "$(summary "$today" new)" = 3 ] || fail "night 5: $(summary "$today" new) new, expected 3"
grep -q "finishing the unfinished run" "$(log_of "$next")" && fail "night 5 tried night 3's unfinished run again"
[ "$(readlink "$S/latest")" = "screen-$today" ] || fail "latest did not move to screen-$today"
"$SL/nightly-screen" stop --name rbtest-nm > /dev/null
ok "the chain's next night: 3 new --since B's baseline, the old unfinished run not retried ($(( $(date +%s) - t0 )) s)"
