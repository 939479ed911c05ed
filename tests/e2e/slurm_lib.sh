# Shared by the slurm_*.sh tests (sourced after lib.sh): start a real Slurm cluster for the
# test (slurm/local-cluster; one node, or RB_CLUSTER_NODES nodes in network namespaces), stop
# it on exit, and small helpers.
SL="$RADBATCH_SRC/slurm"
# ---- a real one-node Slurm cluster for this test (slurm/local-cluster), stopped on exit ----
if ! command -v slurmctld > /dev/null || ! command -v slurmd > /dev/null || ! command -v sbatch > /dev/null || ! command -v munged > /dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then  # tests/setup.sh normally did this
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge > /dev/null 2>&1 ||
            { apt-get -o DPkg::Lock::Timeout=300 update -qq > /dev/null 2>&1 &&
              apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge > /dev/null 2>&1; } || true
    fi
fi
for c in slurmctld slurmd sbatch munged; do
    command -v $c > /dev/null || skip "$c is not installed and cannot be installed here (Debian: slurmctld slurmd slurm-client munge)"
done
[ "$(id -u)" = 0 ] || skip "slurm/local-cluster starts munged and slurmd as root; run the test as root"
C="$T/cluster"
# RB_CLUSTER_NODES=N (set before sourcing): N nodes, each in its own network namespace; the
# client commands then run in the cluster's head namespace (local-cluster exec)
if [ -n "${RB_CLUSTER_NODES:-}" ]; then
    command -v ip > /dev/null && command -v nsenter > /dev/null && command -v unshare > /dev/null ||
        skip "several nodes need ip (iproute2), nsenter and unshare (util-linux)"
    ip netns add "rbprobe$$" 2> /dev/null && ip netns del "rbprobe$$" ||
        skip "network namespaces cannot be created here (ip netns add failed)"
    export RADBATCH_SLURM_NODES=$RB_CLUSTER_NODES
    for c in sbatch squeue scontrol scancel sinfo srun; do
        eval "$c() { \"\$SL/local-cluster\" exec \"\$C\" $c \"\$@\"; }"
    done
fi
"$SL/local-cluster" start "$C" > "$T/cluster-start.log" 2>&1 || { cat "$T/cluster-start.log"; fail "local-cluster start"; }
export SLURM_CONF="$C/slurm.conf" RADBATCH
# on failure the cluster's logs are kept in $T/cluster-log (stop removes $C)
# SIGTERM and SIGINT (ctest's timeout, Ctrl-C) end the test through the EXIT trap too;
# after a SIGKILL, the next start of the same folder removes the namespaces and all in them
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'rc=$?; [ $rc = 0 ] || { cp -r "$C/log" "$T/cluster-log" 2> /dev/null; tail -n 30 "$T/cluster-log/slurmctld.log" >&2 2> /dev/null; }
      "$SL/local-cluster" stop "$C" > /dev/null 2>&1 || true; rb_exit_trap $rc' EXIT
swait() { "$SL/local-cluster" wait "$C" "$@"; }                 # JOBID [SECONDS]
jstate() { scontrol show job -o "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*ExitCode=\([0-9:]*\).*/\1 \2/p'; }
jfield() { scontrol show job -o "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
logs() { local f; for f in "$@"; do echo "== $f" >&2; cat "$f" >&2 || true; done; }
# have_cmd NAME: does this radbatch have the command? When not, the steps that need it are
# left out and the test reports itself skipped.
have_cmd() {
    local h; h=$("$RADBATCH" --help)
    awk '/^commands:/ {f = 1; next} f == 1 && NF {print $1} f == 1 && !NF {f = 2}' <<<"$h" | grep -x "$1" > /dev/null && return 0
    [ -s "$T/skipped-parts" ] && grep -qx "radbatch has no $1 command" "$T/skipped-parts" || skip_part "radbatch has no $1 command"
    return 1
}
