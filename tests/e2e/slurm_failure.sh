# labels: slurm
# Failures on a real local Slurm cluster: a pipeline whose input folder is missing ends with
# the convert job FAILED, a clear message in its log, and every dependent job CANCELLED (not
# left pending); a train job on a missing shards folder fails the same way and takes its
# afterok dependent with it. Also: slurm/local-cluster start is idempotent and stop cleans up.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm_lib.sh"

t0=$(date +%s)
again=$("$SL/local-cluster" start "$C" 2>&1) || fail "second local-cluster start: $again"
grep -q "already running" <<<"$again" || fail "a second local-cluster start should find it running: $again"
"$SL/local-cluster" status "$C" > /dev/null || fail "local-cluster status"

steps=convert,train
have_cmd evaluate && steps=$steps,evaluate
printf '[convert]\ninputs = %s\nheight = 96\nwidth = 96\n[train]\nepochs = 1\nbatch_size = 16\n[slurm]\nntasks = 1\ncpus_per_task = 1\ntime = 5\n' \
    "$T/no-such-folder" > "$T/broken.ini"
"$SL/submit-pipeline" "$T/broken.ini" --runs "$T/runs" --steps "$steps" > "$T/submit.txt" 2>&1 || { cat "$T/submit.txt"; fail "submit-pipeline"; }
grep -q "warning: input $T/no-such-folder does not exist" "$T/submit.txt" || { cat "$T/submit.txt"; fail "no warning about the missing input at submission"; }
P=$(sed -n 's/^pipeline broken: //p' "$T/submit.txt")
mapfile -t ids < <(cut -f2 "$P/jobs.txt")
for id in "${ids[@]}"; do swait "$id" 120 > /dev/null || true; done
conv=${ids[0]}
[ "$(jstate "$conv")" = "FAILED 1:0" ] || { logs "$P"/logs/*.out; fail "convert job $conv: $(jstate "$conv"), expected FAILED 1:0"; }
log="$P/logs/convert-$conv.out"
grep -q "$T/no-such-folder: no such folder" "$log" || { logs "$log"; fail "the convert log does not name the missing folder"; }
grep -q "radbatch convert FAILED (exit code 1)" "$log" || { logs "$log"; fail "no FAILED line in the convert log"; }
for id in "${ids[@]:1}"; do
    st=$(jstate "$id")
    [ "${st%% *}" = CANCELLED ] || fail "dependent job $id: $st, expected CANCELLED"
    echo "dependent job $id: $st ($(jfield "$id" Reason))"
done
ok "missing input: convert FAILED with the folder named in its log, $(( ${#ids[@]} - 1 )) dependent job(s) CANCELLED"

# a train job on a missing shards folder, with an afterok dependent
tj=$(sbatch --parsable --job-name=rbtest-train --ntasks=1 --time=5 --output="$T/train-%j.out" \
     "$SL/radbatch-train.sbatch" --shards "$T/missing-shards" --run_dir "$T/run")
dj=$(sbatch --parsable --job-name=rbtest-after --ntasks=1 --time=5 --output=/dev/null \
     --dependency=afterok:"$tj" --kill-on-invalid-dep=yes --wrap true)
swait "$dj" 120 > /dev/null || true
[ "$(jstate "$tj")" = "FAILED 1:0" ] || { logs "$T/train-$tj.out"; fail "train job $tj: $(jstate "$tj")"; }
grep -q "$T/missing-shards/index.json: cannot open" "$T/train-$tj.out" || { logs "$T/train-$tj.out"; fail "the train log does not name the missing shards"; }
[ "$(jstate "$dj" | cut -d' ' -f1)" = CANCELLED ] || fail "the dependent of the failed train job is $(jstate "$dj")"
ok "missing shards: train FAILED with the path in its log, dependent CANCELLED"

# a misspelt key, a bad value or an unknown [slurm] key: exit 2 at submission, naming the
# key and its section; no job submitted, no pipeline folder
njobs() { scontrol show job -o 2> /dev/null | grep -c '^JobId=' || true; }
good="$T/keys-ok.ini"
printf '[convert]\ninputs = %s\nheight = 96\nwidth = 96\n[train]\nepochs = 2\nbatch_size = 16\n[evaluate]\nbootstrap = 100\n[slurm]\nntasks = 1\ncpus_per_task = 1\ntime = 5\n' \
    "$SAMPLE" > "$good"
"$SL/submit-pipeline" "$good" --runs "$T/keyruns" --dry-run > "$T/dry.txt" 2>&1 || { cat "$T/dry.txt"; fail "submit-pipeline --dry-run of a good job file"; }
before=$(njobs)
check_refused() {  # sed-expression words... : the edited job file is refused with exit 2 and these words
    local expr=$1 rc=0 f="$T/keys-bad.ini" w; shift
    sed "$expr" "$good" > "$f"
    cmp -s "$good" "$f" && fail "the edit $expr changed nothing"
    rm -rf "$T/keyruns"
    "$SL/submit-pipeline" "$f" --runs "$T/keyruns" > "$T/refused.txt" 2>&1 || rc=$?
    [ "$rc" = 2 ] || { cat "$T/refused.txt"; fail "$expr: submit-pipeline exited $rc, expected 2"; }
    for w in "$@"; do grep -qF -- "$w" "$T/refused.txt" || { cat "$T/refused.txt"; fail "$expr: the message does not say '$w'"; }; done
    grep -q "nothing submitted" "$T/refused.txt" || { cat "$T/refused.txt"; fail "$expr: no 'nothing submitted'"; }
    [ "$(njobs)" = "$before" ] || fail "$expr: a job was submitted"
    [ -z "$(ls -A "$T/keyruns" 2> /dev/null)" ] || fail "$expr: a pipeline folder was created: $(ls "$T/keyruns")"
}
check_refused 's/^epochs = 2/epoch = 2/' "unknown key 'epoch' in section [train]" "keys-bad.ini"
check_refused 's/^bootstrap = 100/bootstrap = -3/' "'bootstrap' = '-3' is out of range"
check_refused 's/^height = 96/height = big/' "'height' = 'big' is not an integer"
check_refused 's/^ntasks = 1/ntask = 1/' "unknown key(s) in section [slurm]: ntask"
# no radbatch binary on the submit host: a warning, the keys are not checked
mkdir -p "$T/nobin" && cp -r "$SL" "$T/nobin/slurm"
command -v radbatch > /dev/null && fail "radbatch is on PATH; this check needs a submit host without it"
sed 's/^epochs = 2/epoch = 2/' "$good" > "$T/keys-nobin.ini"
env -u RADBATCH "$T/nobin/slurm/submit-pipeline" "$T/keys-nobin.ini" --runs "$T/keyruns" --dry-run > "$T/nobin.txt" 2>&1 ||
    { cat "$T/nobin.txt"; fail "submit-pipeline --dry-run without a binary failed"; }
grep -q "warning: no radbatch binary here.*keys are not checked" "$T/nobin.txt" || { cat "$T/nobin.txt"; fail "no warning that the keys are not checked"; }
ok "a misspelt key, a bad value, an unknown [slurm] key: exit 2 naming key and section, nothing submitted; no binary: a warning"

# stop: no daemon of this cluster left, state folder gone
pids=$(cat "$C"/run/*.pid)
[ "$(echo "$pids" | wc -w)" = 3 ] || fail "expected pid files of munged, slurmctld and slurmd: $(ls "$C/run")"
"$SL/local-cluster" stop "$C" > /dev/null 2>&1 || fail "local-cluster stop"
[ ! -e "$C" ] || fail "local-cluster stop left $C"
for p in $pids; do
    if [ -r "/proc/$p/stat" ] && [ "$(awk '{print $3}' "/proc/$p/stat")" != Z ]; then fail "process $p ($(cat "/proc/$p/comm")) still running after stop"; fi
done
ok "local-cluster: idempotent start, clean stop ($(( $(date +%s) - t0 )) s)"
