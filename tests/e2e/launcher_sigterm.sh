# labels: mpi train
# SIGTERM and the launcher (Open MPI 4.1's mpirun, 2 ranks of train):
#  - SIGTERM to the ranks (what the sbatch scripts and slurm/mpirun-term do): every rank
#    checkpoints and exits 75, and mpirun exits 75;
#  - SIGTERM to slurm/mpirun-term (the launcher wrapper): exit 75;
#  - SIGTERM to mpirun itself: mpirun exits 1 whatever the ranks return (it forwards SIGTERM
#    and SIGKILLs the ranks 1 s later); documented, and checked here so that the docs notice
#    a change of Open MPI;
# in every case the run folder has no summary.json, and `--resume true` finishes it with the
# same weights as an uninterrupted run.
source "$(dirname "$0")/lib.sh"
"$RADBATCH" convert "$SAMPLE" --out "$T/s32" --height 32 --width 32 --quiet > /dev/null
targs=(train --shards "$T/s32" --backbone mobilenetv2 --weights "$RADBATCH_SRC/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5"
       --epochs 12 --batch_size 16 --checkpoint_every_steps 5)
mpirun -n 2 "$RADBATCH" "${targs[@]}" --run_dir "$T/clean" --quiet > "$T/clean.log" 2>&1 || { cat "$T/clean.log"; fail "uninterrupted run"; }

# stopped NAME LAUNCHER... : start the run, SIGTERM (to whom: $who) once epoch 2 runs; sets rc
stopped() {
    local name=$1 pid i; shift
    "$@" "$RADBATCH" "${targs[@]}" --run_dir "$T/$name" > "$T/$name.log" 2>&1 &
    pid=$!
    for i in $(seq 600); do grep -q "Epoch 2/" "$T/$name.log" 2>/dev/null && break; sleep 0.1; done
    grep -q "Epoch 2/" "$T/$name.log" || { kill -KILL "$pid"; cat "$T/$name.log"; fail "$name: the run did not start"; }
    case "$who" in
        ranks) pkill -TERM -P "$pid" ;;  # the processes mpirun started
        launcher) kill -TERM "$pid" ;;
    esac
    set +e
    wait "$pid"
    rc=$?
    set -e
    echo "$name: SIGTERM to the $who: exit $rc"
    grep -q "Epoch 12/" "$T/$name.log" && fail "$name: the run finished before the signal; make it longer"
    [ ! -e "$T/$name/summary.json" ] || fail "$name: a stopped run has summary.json"
    return 0
}
resumed_same() {
    local name=$1
    mpirun -n 2 "$RADBATCH" "${targs[@]}" --run_dir "$T/$name" --resume true --quiet > "$T/$name.r.log" 2>&1 ||
        { cat "$T/$name.r.log"; fail "$name: resume"; }
    grep -q '"complete":[[:space:]]*true' "$T/$name/summary.json" || fail "$name: no complete summary.json after the resume"
    "$RADBATCH" inspect "$T/clean/model.h5" --diff "$T/$name/model.h5" > "$T/$name.diff" 2>&1 || { cat "$T/$name.diff"; fail "$name: inspect --diff"; }
    grep -q 'diff: 0 of ' "$T/$name.diff" || { cat "$T/$name.diff"; fail "$name: the resumed run's weights differ from the uninterrupted run's"; }
}

who=ranks stopped ranks mpirun -n 2
[ $rc = 75 ] || { cat "$T/ranks.log"; fail "SIGTERM to the ranks: mpirun exited $rc, expected 75"; }
resumed_same ranks

who=launcher stopped wrapper "$RADBATCH_SRC/slurm/mpirun-term" -n 2
[ $rc = 75 ] || { cat "$T/wrapper.log"; fail "SIGTERM to slurm/mpirun-term: exit $rc, expected 75"; }
resumed_same wrapper

who=launcher stopped mpirun mpirun -n 2
[ $rc = 1 ] || { cat "$T/mpirun.log"; fail "SIGTERM to mpirun itself: exit $rc; docs/train.md says Open MPI 4.1's mpirun exits 1: update it"; }
resumed_same mpirun
ok "SIGTERM to the ranks or to slurm/mpirun-term: exit 75; to mpirun itself: exit 1; all resume to the same weights"

# what mpirun does to the ranks on a SIGTERM of its own: SIGTERM, then SIGKILL 1 s later (a
# rank that needs 3 s to stop never finishes)
cat > "$T/slow-rank.sh" <<EOS
trap 'sleep 3; touch "$T/slow-finished-\$OMPI_COMM_WORLD_RANK"; exit 75' TERM
touch "$T/slow-ready-\$OMPI_COMM_WORLD_RANK"
sleep 100 & wait
EOS
mpirun -n 2 bash "$T/slow-rank.sh" > "$T/slow.log" 2>&1 &
pid=$!
for i in $(seq 300); do [ -e "$T/slow-ready-0" ] && [ -e "$T/slow-ready-1" ] && break; sleep 0.1; done
kill -TERM "$pid"
set +e
wait "$pid"
rc=$?
set -e
sleep 3.5
[ $rc = 1 ] || fail "mpirun with slow ranks: exit $rc, expected 1"
! ls "$T"/slow-finished-* > /dev/null 2>&1 || fail "a rank got 3 s to stop after SIGTERM to mpirun; docs/train.md says it is killed after 1 s"
ok "SIGTERM to mpirun: the ranks are killed 1 s later and mpirun exits 1"
