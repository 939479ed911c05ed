#!/usr/bin/env bash
# bench/allreduce/run.sh [NODES] [REPS]: the gradient allreduce of radbatch train over a
# real network: a Slurm cluster of NODES (default 3) namespaces on this machine
# (slurm/local-cluster, RADBATCH_SLURM_NODES), ranks started by srun --mpi=pmix one per node,
# Open MPI over TCP between the namespaces (veth pairs on a bridge). Every link is rate
# limited with tc tbf (each node's eth0 and the bridge's port towards it, both directions)
# to the profiles 25, 10 and 1 Gbit/s, plus the bare veth ("none"). Sizes: a 1-float
# message (latency) and the gradient spans of MobileNetV2 (docs/scaling.md): head only
# 164,226 floats, top 30 % fine-tuned 1,963,842, full 2,422,210. For 2..NODES ranks.
# Prints "profile ranks floats MB median_ms best_ms" and writes the same to
# ${TMPDIR:-/tmp}/radbatch-bench/allreduce-<time>-<pid>.txt. Needs root, mpicc, Slurm
# (slurmctld slurmd slurm-client munge) and iproute2 (tc).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$(dirname "$here")")
nodes=${1:-3}
reps=${2:-15}
out=${TMPDIR:-/tmp}/radbatch-bench/allreduce-$(date +%Y%m%dT%H%M%S)-$$
mkdir -p "$out"
mpicc -O2 -o "$out/allreduce" "$here/allreduce.c"
C=$out/cluster
L="$repo/slurm/local-cluster"
trap '"$L" stop "$C" > /dev/null 2>&1 || true' EXIT
RADBATCH_SLURM_NODES=$nodes "$L" start "$C" > "$out/start.log" 2>&1 || { cat "$out/start.log"; exit 1; }
head=$("$L" netns "$C")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

shape() {  # rate in Gbit/s, or none
    local k dev ns
    for k in $(seq "$nodes"); do
        for dev in "$("$L" netns "$C" "node$k") eth0" "$head v$k"; do
            read -r ns dev <<<"$dev"
            ip -n "$ns" link set "$dev" qlen 1000
            if [ "$1" = none ]; then
                tc -n "$ns" qdisc del dev "$dev" root 2> /dev/null || true
            else
                # burst: 1 ms of traffic at the rate (at least 64 KiB); queue: 20 ms
                tc -n "$ns" qdisc replace dev "$dev" root tbf rate "${1}gbit" \
                    burst $(( $1 * 125000 > 65536 ? $1 * 125000 : 65536 )) latency 20ms
            fi
        done
    done
}

result=$out/../allreduce-$(basename "$out" | sed 's/^allreduce-//').txt
echo "# $(date -u +%FT%TZ) $(hostname) $(nproc) cores, Open MPI $(ompi_info --version 2>/dev/null | head -1 | awk '{print $NF}'), $reps timed calls per row" | tee "$result"
echo "profile ranks floats MB median_ms best_ms hosts" | tee -a "$result"
for profile in none 25 10 1; do
    shape "$profile"
    for p in $(seq 2 "$nodes"); do
        "$L" exec "$C" srun --mpi=pmix -N "$p" -n "$p" --ntasks-per-node=1 \
            "$out/allreduce" "$reps" 1 164226 1963842 2422210 2> "$out/srun-$profile-$p.err" |
            awk -v pr="$profile" '{ printf "%s %s %s %.2f %s %s %s\n", pr, $3, $1, $2 / 1e6, $4, $5, $6 }' | tee -a "$result"
    done
done
echo "results: $result"
