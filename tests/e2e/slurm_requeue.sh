# labels: slurm
# Requeue on a real local Slurm cluster: a 2-task train job sent SIGTERM mid-run is requeued
# and finishes with the same weights as an uninterrupted job (radbatch inspect --diff: 0).
#  a) scancel --batch --signal=TERM: what #SBATCH --signal=B:TERM@120 delivers before the
#     time limit; the batch script passes SIGTERM to the tasks, radbatch writes a checkpoint
#     and exits 75, the script runs scontrol requeue, the requeued job resumes (--resume true)
#  b) scancel --full --signal=TERM: every process gets it, srun answers with SIGKILL to the
#     tasks; the job is requeued all the same and resumes from the newest periodic checkpoint
#  c) as a), with the mpirun launcher inside the allocation instead of srun, and with a
#     scontrol that requeues the job and then fails, as one killed by the requeue's SIGTERM
#     before it read the reply: the script sees the restart count go up and says requeued
# A requeued job is held for cred_expire seconds (10 on the local cluster, 120 by default).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm_lib.sh"

"$RADBATCH" convert "$SAMPLE" --out "$T/s96" --height 96 --width 96 --group_regex "$GROUPS_RE" --quiet > /dev/null || fail "convert"
args=(--shards "$T/s96" --backbone cnn --epochs 4 --batch_size 16 --learning_rate 1e-3 --head_dropout 0.3
      --horizontal_flip true --checkpoint_every_steps 3 --quiet)
train_job() {  # run dir [VAR=value for the job] -> job id
    sbatch --parsable --job-name=rbtest-train --ntasks=2 --cpus-per-task=1 --time=10 --output="$T/$1.out" \
        --export="ALL,RUN_DIR=$T/$1${2:+,$2}" "$SL/radbatch-train.sbatch" "${args[@]}"
}
t0=$(date +%s)
ref=$(train_job ref)
swait "$ref" 600 > /dev/null || { logs "$T/ref.out"; fail "uninterrupted job $ref: $(jstate "$ref")"; }
echo "uninterrupted job $ref: $(( $(date +%s) - t0 )) s"

interrupted() {  # name job-variable scancel-options...
    local name=$1 var=$2 j i st; shift 2
    j=$(train_job "$name" "$var")
    # wait for the first checkpoint (mid-epoch 1), then signal
    for i in $(seq 600); do ls "$T/$name"/checkpoints/*.DONE > /dev/null 2>&1 && break; sleep 0.2; done
    [ "$(jstate "$j" | cut -d' ' -f1)" = RUNNING ] || { logs "$T/$name.out"; fail "$name: job $j is not running at the first checkpoint"; }
    scancel "$@" --signal=TERM "$j"
    for i in $(seq 300); do
        if [ "$(jfield "$j" Restarts)" = 1 ] && [ "$(jstate "$j" | cut -d' ' -f1)" = PENDING ]; then break; fi
        sleep 0.2
    done
    [ "$(jfield "$j" Restarts)" = 1 ] || { logs "$T/$name.out"; fail "$name: job $j was not requeued ($(jstate "$j"))"; }
    [ -f "$T/$name/model.h5" ] && fail "$name: the job finished before the signal; make the run longer"
    swait "$j" 600 > /dev/null || { logs "$T/$name.out"; fail "$name: requeued job $j ended $(jstate "$j")"; }
    grep -q "restart 1," "$T/$name.out" || fail "$name: no second start in the log"
    grep -q -- "--resume true" "$T/$name.out" || fail "$name: the requeued job did not resume"
    "$RADBATCH" inspect "$T/ref/model.h5" --diff "$T/$name/model.h5" > "$T/$name.diff" 2>&1
    grep -q "^diff: 0 of" "$T/$name.diff" || { logs "$T/$name.out"; fail "$name: weights differ from the uninterrupted run: $(cat "$T/$name.diff")"; }
    cmp -s <(cut -d, -f1-10 "$T/ref/history.csv") <(cut -d, -f1-10 "$T/$name/history.csv") || fail "$name: history.csv differs"
    echo "$j"
}
t1=$(date +%s)
j=$(interrupted term-batch "" --batch)
grep -q "radbatch train exited with code 75" "$T/term-batch.out" || { logs "$T/term-batch.out"; fail "term-batch: radbatch did not stop with exit code 75"; }
grep -q "requeueing job $j" "$T/term-batch.out" || fail "term-batch: no requeue line"
# slurmstepd's "*** JOB ... CANCELLED AT ... ***" line, then the script's line saying it is expected
awk -v j="$j" 'index($0, "*** JOB " j " ON ") && /CANCELLED AT/ { c = NR } /requeued after preemption; the CANCELLED line above is expected/ { if (c) e = 1 } END { exit !e }' \
    "$T/term-batch.out" || { logs "$T/term-batch.out"; fail "term-batch: no CANCELLED line followed by the line explaining it"; }
ok "SIGTERM to the batch script: checkpoint, exit 75, requeued, resumed, same weights ($(( $(date +%s) - t1 )) s)"
t1=$(date +%s)
j=$(interrupted term-full "" --full)
grep -q "requeueing job $j" "$T/term-full.out" || { logs "$T/term-full.out"; fail "term-full: no requeue line"; }
ok "SIGTERM to every process of the job: requeued, resumed from the last checkpoint, same weights ($(( $(date +%s) - t1 )) s)"
t1=$(date +%s)
mkdir -p "$T/bin"
cat > "$T/bin/scontrol" <<EOF
#!/bin/sh
# the real scontrol, but "requeue" reports failure after it took effect
[ "\$1" = requeue ] && { $(command -v scontrol) "\$@"; echo "scontrol: Terminated" >&2; exit 143; }
exec $(command -v scontrol) "\$@"
EOF
chmod +x "$T/bin/scontrol"
j=$(interrupted term-mpirun "RADBATCH_MPI=mpirun,PATH=$T/bin:$PATH" --batch)
grep -q "requeued after preemption" "$T/term-mpirun.out" || { logs "$T/term-mpirun.out"; fail "term-mpirun: a requeue that took effect, by a scontrol that then failed, is not reported as one"; }
grep -q "launcher: mpirun" "$T/term-mpirun.out" || fail "term-mpirun: the job did not use mpirun"
grep -q "radbatch train exited with code 75" "$T/term-mpirun.out" || { logs "$T/term-mpirun.out"; fail "term-mpirun: radbatch did not stop with exit code 75"; }
ok "the mpirun launcher (RADBATCH_MPI=mpirun): SIGTERM, exit 75, requeued, resumed, same weights ($(( $(date +%s) - t1 )) s)"
# a cancelled job is not brought back by the requeue logic
t1=$(date +%s)
j=$(train_job cancelled)
for i in $(seq 600); do ls "$T/cancelled"/checkpoints/*.DONE > /dev/null 2>&1 && break; sleep 0.2; done
scancel "$j"
swait "$j" 120 > /dev/null || true
sleep 1
[ "$(jstate "$j" | cut -d' ' -f1)" = CANCELLED ] && [ "$(jfield "$j" Restarts)" = 0 ] || { logs "$T/cancelled.out"; fail "scancel'ed job $j: $(jstate "$j"), restarts $(jfield "$j" Restarts)"; }
grep -q "so it is not requeued; resubmit to resume" "$T/cancelled.out" || { logs "$T/cancelled.out"; fail "the cancelled job's log does not say it is not requeued"; }
ok "scancel ends the job for good ($(( $(date +%s) - t0 )) s in all)"
