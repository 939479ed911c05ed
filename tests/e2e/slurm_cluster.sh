# labels: slurm cluster
# A real 3-node Slurm cluster on this machine (slurm/local-cluster, RADBATCH_SLURM_NODES=3):
# every node a network + UTS + mount namespace with its own hostname and address, one slurmd
# each, slurmctld in a head namespace holding the bridge. On it:
#  - train on 3 nodes x 1 rank (srun --mpi=pmix): summary.json names node1..node3, the ranks'
#    gradients cross the veth links (byte counters), weights bit-identical to 3 ranks on one
#    node (same rank count: docs/train.md);
#  - evaluate and infer on 3 nodes: reports and predictions byte-identical to one process;
#  - submit-pipeline (convert, train, evaluate, infer chained with afterok) on 3 nodes, and a
#    3-task sweep array whose tasks land on different nodes;
#  - a node SIGKILLed mid-train (every process of its namespace): the job ends on the
#    surviving node with "Node failure" within 60 s, Slurm requeues it, it resumes from the
#    last checkpoint on two other nodes and ends bit-identical to an uninterrupted run;
#  - teardown leaves no namespace, daemon or process, also when a test fails.
RB_CLUSTER_NODES=3
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm_lib.sh"
t0=$(date +%s)
NS=$("$SL/local-cluster" netns "$C"); NS=${NS%-head}
[ "$(sinfo -h -N -o '%N %T' | tr '\n' ' ')" = "node1 idle node2 idle node3 idle " ] || fail "3 idle nodes expected: $(sinfo -N)"
[ "$(srun -N 3 --ntasks-per-node=1 hostname | sort | tr '\n' ' ')" = "node1 node2 node3 " ] || fail "hostnames of the nodes"
ok "3 nodes up ($(( $(date +%s) - t0 )) s)"

"$RADBATCH" convert "$SAMPLE" --out "$T/s96" --height 96 --width 96 --group_regex "$GROUPS_RE" --quiet > /dev/null || fail "convert"
args=(--shards "$T/s96" --backbone cnn --batch_size 16 --learning_rate 1e-3 --checkpoint_every_steps 3 --quiet)
# sbatch on N nodes, one task each: name nodes [VAR=value] script args... -> job id
submit() {
    local name=$1 n=$2 var=$3; shift 3
    sbatch --parsable --job-name="rbtest-$name" --nodes="$n" --ntasks="$n" --ntasks-per-node=1 --cpus-per-task=1 \
        --time=10 --output="$T/$name.out" --export="ALL,RUN_DIR=$T/$name${var:+,$var}" "$@"
}
hosts_of() { jq -r '.hosts | map(. + " ") | add' "$1/summary.json"; }      # "node1 node2 "
rx() { ip -n "$NS-$1" -s link show eth0 | awk 'f { print $1; exit } /RX:/ { f = 1 }'; }  # bytes received

# ---- train on 3 nodes, compared with 3 ranks on one node ----
mpirun -n 3 "$RADBATCH" train "${args[@]}" --epochs 2 --run_dir "$T/local3" > "$T/local3.log" 2>&1 || { cat "$T/local3.log"; fail "train, 3 ranks on one node"; }
before=$(rx node2)
j=$(submit train3 3 "" "$SL/radbatch-train.sbatch" "${args[@]}" --epochs 2)
swait "$j" 300 > /dev/null || { logs "$T/train3.out"; fail "train on 3 nodes: job $j $(jstate "$j")"; }
got=$(( $(rx node2) - before ))
grep -q "launcher: srun --mpi=pmix" "$T/train3.out" || { logs "$T/train3.out"; fail "train3 did not use srun --mpi=pmix"; }
hosts=$(hosts_of "$T/train3")
[ "$hosts" = "node1 node2 node3 " ] || fail "summary.json hosts: '$hosts', expected node1 node2 node3"
"$RADBATCH" inspect "$T/local3/model.h5" --diff "$T/train3/model.h5" > "$T/train3.diff" 2>&1
grep -q "^diff: 0 of" "$T/train3.diff" || fail "3 nodes vs 3 ranks on one node: $(cat "$T/train3.diff")"
cmp -s <(cut -d, -f1-10 "$T/local3/history.csv") <(cut -d, -f1-10 "$T/train3/history.csv") || fail "history.csv differs"
# 20 steps, each an allreduce of every weight (4 bytes each) of which node2 must receive
# at least the others' share; the bound below is a quarter of that
values=$(sed -n 's/^diff: 0 of \([0-9]*\) values.*/\1/p' "$T/train3.diff")
[ "$got" -gt $(( 20 * values )) ] || fail "node2 received only $got bytes on eth0 for 20 allreduces of $values values"
ok "train on node1..node3 over TCP ($((got / 1000000)) MB into node2), bit-identical to 3 ranks on one node ($(( $(date +%s) - t0 )) s)"

# ---- evaluate and infer on 3 nodes, compared with one process ----
M="$T/train3/model.h5"
"$RADBATCH" evaluate --model "$M" --data "$T/s96" --out "$T/ev1" --batch_size 4 --quiet > /dev/null || fail "evaluate, 1 process"
"$RADBATCH" infer --model "$M" --input "$SAMPLE" --out "$T/in1" --chunk 16 --batch 8 --quiet > /dev/null || fail "infer, 1 process"
je=$(submit ev3 3 "" "$SL/radbatch-evaluate.sbatch" --model "$M" --data "$T/s96" --out "$T/ev3" --batch_size 4 --quiet)
ji=$(submit in3 3 "" "$SL/radbatch-infer.sbatch" --model "$M" --input "$SAMPLE" --out "$T/in3" --chunk 16 --batch 8 --quiet)
swait "$je" 300 > /dev/null || { logs "$T/ev3.out"; fail "evaluate on 3 nodes: $(jstate "$je")"; }
swait "$ji" 300 > /dev/null || { logs "$T/in3.out"; fail "infer on 3 nodes: $(jstate "$ji")"; }
for f in metrics.json predictions.csv classification_report.txt confusion_matrix.csv roc.csv errors.csv; do
    cmp -s "$T/ev1/$f" "$T/ev3/$f" || fail "evaluate: $f differs between 3 nodes and one process"
done
for f in predictions.csv flagged.csv errors.csv index.csv; do
    cmp -s "$T/in1/$f" "$T/in3/$f" || fail "infer: $f differs between 3 nodes and one process"
done
for d in ev3 in3; do
    hosts=$(hosts_of "$T/$d")
    [ "$hosts" = "node1 node2 node3 " ] || fail "$d/summary.json hosts: '$hosts'"
done
ok "evaluate and infer on node1..node3: byte-identical to one process ($(( $(date +%s) - t0 )) s)"

# ---- the pipeline (afterok chain) and a sweep array, spread over the nodes ----
printf '[convert]\ninputs = %s\nheight = 96\nwidth = 96\n[train]\nepochs = 1\nbatch_size = 16\nbackbone = cnn\n[infer]\ninput = %s\n[slurm]\nnodes = 3\nntasks = 3\ncpus_per_task = 1\ntime = 10\nsbatch = --ntasks-per-node=1\n' \
    "$SAMPLE" "$SAMPLE" > "$T/pipeline.ini"
"$SL/local-cluster" exec "$C" "$SL/submit-pipeline" "$T/pipeline.ini" --runs "$T/runs" --steps convert,train,evaluate,infer > "$T/submit.txt" 2>&1 ||
    { cat "$T/submit.txt"; fail "submit-pipeline"; }
P=$(sed -n 's/^pipeline pipeline: //p' "$T/submit.txt")
printf 'inputs = %s\ninput_size = 96\nepochs = 1\nbatch_size = 16\nbackbone = cnn\nquiet = true\n[lr1e-3]\nlearning_rate = 1e-3\n[lr3e-4]\nlearning_rate = 3e-4\n[lr1e-4]\nlearning_rate = 1e-4\n[slurm]\nntasks = 1\ncpus_per_task = 2\ntime = 10\n' \
    "$SAMPLE" > "$T/sweep.ini"
"$SL/local-cluster" exec "$C" "$SL/sweep" "$T/sweep.ini" --runs "$T/sweeps" > "$T/sweep.txt" 2>&1 || { cat "$T/sweep.txt"; fail "slurm/sweep"; }
S=$(sed -n 's/^sweep sweep: //p' "$T/sweep.txt")
mapfile -t ids < <(cut -f2 "$P/jobs.txt")
for id in "${ids[@]}"; do swait "$id" 300 > /dev/null || { logs "$P"/logs/*.out; fail "pipeline job $id: $(jstate "$id")"; }; done
for d in shards train evaluate infer; do
    [ "$(hosts_of "$P/$d")" = "node1 node2 node3 " ] || fail "pipeline $d: hosts '$(hosts_of "$P/$d")'"
done
[ "$(($(wc -l < "$P/infer/predictions.csv") - 1))" = 199 ] || fail "pipeline infer: $(wc -l < "$P/infer/predictions.csv") lines"
gather=$(awk '$1 == "gather" { print $2 }' "$S/jobs.txt")
swait "$gather" 300 > /dev/null || { logs "$S"/logs/*.out; fail "sweep gather job $gather: $(jstate "$gather")"; }
[ "$(awk -F, 'NR > 1 && $2 == "ok"' "$S/comparison.csv" | wc -l)" = 3 ] || { cat "$S/comparison.csv"; fail "sweep: 3 ok rows expected"; }
spread=$(find "$S" -path '*/train/summary.json' -exec jq -r '.hosts[]' {} + | sort -u | tr '\n' ' ')
[ "$(wc -w <<<"$spread")" -ge 2 ] || fail "the sweep's 3 tasks (2 CPUs each, 2 per node) all ran on '$spread'"
ok "pipeline convert -> train -> evaluate -> infer (afterok) on node1..node3; sweep of 3 tasks over ${spread% } ($(( $(date +%s) - t0 )) s)"

# ---- a node killed mid-train ----
mpirun -n 2 "$RADBATCH" train "${args[@]}" --epochs 4 --run_dir "$T/local2" > "$T/local2.log" 2>&1 || { cat "$T/local2.log"; fail "train, 2 ranks on one node"; }
j=$(submit lost 2 "" "$SL/radbatch-train.sbatch" "${args[@]}" --epochs 4)
for i in $(seq 600); do ls "$T/lost"/checkpoints/*.DONE > /dev/null 2>&1 && break; sleep 0.2; done
[ "$(jstate "$j" | cut -d' ' -f1)" = RUNNING ] || { logs "$T/lost.out"; fail "job $j is not running at its first checkpoint"; }
nodes=$(scontrol show hostnames "$(jfield "$j" NodeList)" | tr '\n' ' ')
victim=$(awk '{ print $2 }' <<<"$nodes")       # not the first node: that one runs the batch script
[ -n "$victim" ] || fail "job $j runs on '$nodes', expected two nodes"
tk=$(date +%s)
"$SL/local-cluster" kill-node "$C" "$victim" 2> /dev/null || fail "kill-node $victim"
for i in $(seq 300); do
    grep -q "Node failure on $victim" "$T/lost.out" && [ "$(jfield "$j" Restarts)" -ge 1 ] && break
    sleep 0.2
done
waited=$(( $(date +%s) - tk ))
grep -q "Node failure on $victim" "$T/lost.out" || { logs "$T/lost.out"; fail "no 'Node failure on $victim' in the job's log $waited s after the kill"; }
[ "$(jfield "$j" Restarts)" -ge 1 ] || fail "job $j was not requeued after losing $victim ($(jstate "$j"))"
[ "$waited" -le 60 ] || fail "the job took $waited s to end after $victim died (at most 60 s)"
echo "$victim killed: the job ended with 'Node failure on $victim' and was requeued after $waited s"
swait "$j" 300 > /dev/null || { logs "$T/lost.out"; fail "requeued job $j: $(jstate "$j")"; }
[ "$(sinfo -h -n "$victim" -o %T)" = "down*" ] || fail "$victim is $(sinfo -h -n "$victim" -o %T), expected down*"
hosts=$(hosts_of "$T/lost")
[ "$(wc -w <<<"$hosts")" = 2 ] && [[ " $hosts" != *" $victim "* ]] || fail "the resumed run ran on '$hosts' (2 nodes without $victim expected)"
grep -q -- "--resume true" "$T/lost.out" || fail "the requeued job did not resume"
[ "$(train_log_summary "$T/lost" | grep -o 'start [0-9]*@' | wc -l)" = 1 ] || fail "train_log: $(train_log_summary "$T/lost")"
"$RADBATCH" inspect "$T/local2/model.h5" --diff "$T/lost/model.h5" > "$T/lost.diff" 2>&1
grep -q "^diff: 0 of" "$T/lost.diff" || fail "resumed run vs uninterrupted: $(cat "$T/lost.diff")"
cmp -s <(cut -d, -f1-10 "$T/local2/history.csv") <(cut -d, -f1-10 "$T/lost/history.csv") || fail "history.csv differs after the resume"
ok "$victim lost mid-train: ended within $waited s, resumed ($(train_log_summary "$T/lost")) on ${hosts% }, bit-identical ($(( $(date +%s) - t0 )) s)"

# ---- teardown leaves nothing, on success and when a test fails ----
gone() {  # state folder, namespace prefix
    local p
    [ ! -e "$1" ] || fail "$1 is left"
    [ -z "$(ip netns list | awk -v p="$2-" 'index($1, p) == 1')" ] || fail "namespaces left: $(ip netns list)"
    for p in $(pgrep -x 'slurmd|slurmctld|slurmstepd|munged' || true); do
        tr '\0' '\n' < "/proc/$p/cmdline" 2> /dev/null | grep -qF "$1" && fail "process $p ($(cat "/proc/$p/comm")) left"
    done
    ! grep -qF "$1" /proc/mounts || fail "mounts left: $(grep -F "$1" /proc/mounts)"
}
pids=$(cat "$C"/run/*.pid)
"$SL/local-cluster" stop "$C" > /dev/null 2>&1 || fail "local-cluster stop"
gone "$C" "$NS"
for p in $pids; do
    if [ -r "/proc/$p/stat" ] && [ "$(awk '{print $3}' "/proc/$p/stat")" != Z ]; then fail "process $p ($(cat "/proc/$p/comm")) still running after stop"; fi
done
# a test that fails with its cluster up: the EXIT trap of slurm_lib.sh tears it down
mkdir -p "$T/child"
printf 'RB_CLUSTER_NODES=2\nsource %q\nsource %q\nsinfo -h -N -o %%T > %q\nfail "a deliberate failure"\n' \
    "$RADBATCH_SRC/tests/e2e/lib.sh" "$RADBATCH_SRC/tests/e2e/slurm_lib.sh" "$T/child/nodes.txt" > "$T/child/slurm_child.sh"
RADBATCH_TEST_TMP="$T/child" bash "$T/child/slurm_child.sh" > "$T/child.log" 2>&1 && fail "the failing child test passed"
[ "$(tr '\n' ' ' < "$T/child/nodes.txt")" = "idle idle " ] || { cat "$T/child.log"; fail "the child's 2-node cluster did not come up"; }
gone "$T/child/slurm_child/cluster" "rbc$(printf '%s' "$T/child/slurm_child/cluster" | cksum | cut -d' ' -f1)"
ok "stop and a failing test's exit leave no namespace, daemon, process or mount ($(( $(date +%s) - t0 )) s in all)"
