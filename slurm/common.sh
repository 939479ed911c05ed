# slurm/common.sh: shared by radbatch's sbatch scripts and submit tools (sourced, bash).
#
# What a job step gets from here (rb_step):
#   - the radbatch binary: $RADBATCH, else <repo>/build/radbatch next to this folder,
#     else radbatch on PATH
#   - the MPI launcher: srun with the MPI plugin this Slurm and this MPI both support
#     (srun --mpi=list; pmix, else pmi2), else mpirun inside the allocation;
#     RADBATCH_MPI=pmix|pmi2|mpirun|<srun plugin> forces one
#   - threads: OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = SLURM_CPUS_PER_TASK (default 1)
#   - HDF5_USE_FILE_LOCKING=FALSE (cluster file systems)
#   - SIGTERM before the time limit or on preemption: passed on to radbatch, which
#     checkpoints and exits 75; the job then requeues itself and the requeued job resumes
#     (RADBATCH_MAX_REQUEUES, default 20, bounds the loop)

RB_SLURM_DIR=${RB_SLURM_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
RB_EXIT_REQUEUE=75

rb_log() { echo "[$(date '+%F %T')] ${RB_NAME:-radbatch}: $*"; }
rb_die() { echo "${RB_NAME:-radbatch}: error: $*" >&2; exit "${RB_DIE_CODE:-1}"; }

# The radbatch binary, absolute.
rb_binary() {
    local b=${RADBATCH:-}
    if [ -z "$b" ] && [ -x "$RB_SLURM_DIR/../build/radbatch" ]; then b=$RB_SLURM_DIR/../build/radbatch; fi
    if [ -z "$b" ]; then b=$(command -v radbatch || true); fi
    [ -n "$b" ] && [ -x "$b" ] ||
        rb_die "radbatch binary not found: set RADBATCH=/path/to/radbatch, build <repo>/build/radbatch, or put radbatch on PATH"
    case "$b" in /*) ;; *) b=$(cd "$(dirname "$b")" && pwd)/$(basename "$b") ;; esac
    echo "$b"
}

# Value of KEY in an INI file: the [SECTION] value, else the top-level one, else "".
rb_ini_get() {
    local file=$1 section=$2 key=$3
    [ -f "$file" ] || return 0
    awk -v want="$section" -v key="$key" '
        { sub(/\r$/, "") }
        /^[ \t]*[#;]/ || /^[ \t]*$/ { next }
        /^[ \t]*\[/ { s = $0; gsub(/^[ \t]*\[[ \t]*|[ \t]*\].*$/, "", s); next }
        {
            i = index($0, "="); if (i == 0) next
            k = substr($0, 1, i - 1); v = substr($0, i + 1)
            gsub(/^[ \t]+|[ \t]+$/, "", k); gsub(/^[ \t]+|[ \t]+$/, "", v)
            sub(/[ \t]+[#;].*$/, "", v)
            if (k != key) next
            if (s == "") top = v; else if (s == want) { sec = v; has = 1 }
        }
        END { print (has ? sec : top) }' "$file"
}

# Value of --KEY in an argument list (--key value or --key=value), last one wins.
rb_arg_get() {
    local key=$1 v="" prev=""; shift
    local a
    for a in "$@"; do
        if [ "$prev" = "--$key" ]; then v=$a; fi
        case "$a" in --"$key"=*) v=${a#--"$key"=} ;; esac
        prev=$a
    done
    echo "$v"
}

# The first argument if it is a job file (*.ini / existing file not starting with --).
rb_job_file() {
    case "${1:-}" in --*|"") ;; *.ini|*.conf) echo "$1" ;; *) if [ -f "$1" ]; then echo "$1"; fi ;; esac
}

# A command's key: --key argument, else the job file's [command] or top-level value.
rb_key() {  # command key args...
    local cmd=$1 key=$2 v jf; shift 2
    v=$(rb_arg_get "$key" "$@")
    if [ -z "$v" ]; then
        jf=$(rb_job_file "$@")
        if [ -n "$jf" ]; then v=$(rb_ini_get "$jf" "$cmd" "$key"); fi
    fi
    echo "$v"
}

# Expand %j %x %A %a in a path as sbatch does for --output.
rb_expand() {
    local p=$1
    p=${p//%j/${SLURM_JOB_ID:-0}}
    p=${p//%x/${SLURM_JOB_NAME:-radbatch}}
    p=${p//%A/${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-0}}}
    p=${p//%a/${SLURM_ARRAY_TASK_ID:-0}}
    echo "$p"
}

# Run directory of this job: RUN_DIR (may hold %j %x %A %a), else
# ${RADBATCH_RUNS:-runs}/<job name>-<job id> (array tasks: <name>-<array id>_<task>).
rb_default_run_dir() {
    if [ -n "${RUN_DIR:-}" ]; then rb_expand "$RUN_DIR"; return; fi
    local id=${SLURM_JOB_ID:-$$}
    if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then id=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}; fi
    echo "${RADBATCH_RUNS:-runs}/${SLURM_JOB_NAME:-radbatch}-$id"
}

# Environment every step gets.
rb_env() {
    local c=${SLURM_CPUS_PER_TASK:-1}
    export OPENBLAS_NUM_THREADS=${RADBATCH_THREADS:-$c} OMP_NUM_THREADS=${RADBATCH_THREADS:-$c}
    export HDF5_USE_FILE_LOCKING=FALSE
    # since Slurm 22.05 srun does not inherit --cpus-per-task from the batch job by itself
    if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK; fi
    if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
}

# Which MPI plugins of srun the installed MPI library can use. Open MPI: pmix through its
# PMIx components (ext2x/ext3x/pmix3x/...), pmi2 only when built with Slurm's PMI (s2).
# Debian's Open MPI 4.1 has PMIx only: srun --mpi=pmi2 fails in MPI_Init there.
rb_mpi_choice() {
    local want=${RADBATCH_MPI:-auto} list ompi=""
    if [ "$want" != auto ]; then echo "$want"; return; fi
    if [ -z "${SLURM_JOB_ID:-}" ] || ! command -v srun >/dev/null; then echo single; return; fi
    list=$(srun --mpi=list 2>&1 | awk '/^[ \t]/ { gsub(/[ \t]/, ""); print }' | tr '\n' ' ')
    if command -v ompi_info >/dev/null; then ompi=$(ompi_info 2>/dev/null | awk '$1 == "MCA" && $2 == "pmix:" { print $3 }' | tr '\n' ' '); fi
    if [[ " $list " == *" pmix "* ]] && { [ -z "$ompi" ] || [[ "$ompi" =~ (ext|pmix)[0-9] ]]; }; then echo pmix; return; fi
    if [[ " $list " == *" pmi2 "* ]] && { [ -z "$ompi" ] || [[ " $ompi " == *" s2 "* ]]; }; then echo pmi2; return; fi
    if command -v mpirun >/dev/null; then echo mpirun; return; fi
    echo none
}

# Fill RB_LAUNCH with the launcher command.
rb_launcher() {
    RB_MPI=$(rb_mpi_choice)
    case "$RB_MPI" in
        single) RB_LAUNCH=() ;;
        # mpirun reads the allocation from Slurm (task count, nodes)
        mpirun) RB_LAUNCH=(mpirun) ;;
        *) RB_LAUNCH=(srun "--mpi=$RB_MPI" ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK}) ;;
    esac
}

RB_GOT_TERM=0
RB_CHILD=""
rb_on_term() {
    RB_GOT_TERM=1
    [ -n "$RB_CHILD" ] || return 0
    rb_log "SIGTERM (time limit near, preemption or scancel): asking radbatch to checkpoint and stop"
    case "$RB_MPI" in
        single) kill -TERM "$RB_CHILD" 2>/dev/null || true ;;
        # Open MPI's mpirun does not pass SIGTERM on (and then hangs): signal the ranks it
        # started on this node; radbatch agrees on the stop across all ranks
        mpirun) pkill -TERM -P "$RB_CHILD" 2>/dev/null || true ;;
        # the tasks of the job's steps, not srun itself: srun answers SIGTERM with SIGKILL
        *) scancel --signal=TERM "$SLURM_JOB_ID" 2>/dev/null || kill -TERM "$RB_CHILD" 2>/dev/null || true ;;
    esac
}

# rb_step COMMAND ARGS...: run radbatch COMMAND on all tasks of the job; return its code.
rb_step() {
    local cmd=$1 rc t0; shift
    [ -n "${RB_LAUNCH+x}" ] || rb_launcher
    t0=$(date +%s.%N)
    rb_log "radbatch $cmd on ${SLURM_NTASKS:-1} task(s) x ${OPENBLAS_NUM_THREADS:-1} thread(s), launcher: ${RB_LAUNCH[*]:-none (1 process)}"
    rb_log "command: $RB_BIN $cmd $*"
    trap rb_on_term TERM
    "${RB_LAUNCH[@]}" "$RB_BIN" "$cmd" "$@" &
    RB_CHILD=$!
    while :; do
        wait "$RB_CHILD"; rc=$?
        # wait returns early (>128) when the trap ran; the step is still going
        if [ $rc -gt 128 ] && kill -0 "$RB_CHILD" 2>/dev/null; then continue; fi
        break
    done
    RB_CHILD=""
    RB_STEP_SECONDS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    rb_log "radbatch $cmd exited with code $rc after $RB_STEP_SECONDS s"
    return $rc
}

# rb_scontrol ARGS...: scontrol with SIGTERM ignored (an ignored signal stays ignored across
# exec). slurmctld answers a requeue by signalling every process of the job, and may do so
# before scontrol has read its reply, or while the next scontrol runs.
rb_scontrol() { (trap '' TERM; exec scontrol "$@"); }

# rb_requeued N: true when this job was requeued since its restart count was N
rb_requeued() {
    local r i
    for i in 1 2 3; do
        r=$(rb_scontrol show job -o "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/.* Restarts=\([0-9]*\).*/\1/p')
        [ -n "$r" ] && break
        sleep 1
    done
    [ -n "$r" ] && [ "$r" -gt "$1" ]
}

# After a step ended with RC: requeue the job when radbatch stopped early (exit 75), or when
# this job got SIGTERM and the step did not finish; otherwise exit with the step's code.
rb_finish() {
    local rc=$1 what=$2 n=${SLURM_RESTART_COUNT:-0} max=${RADBATCH_MAX_REQUEUES:-20} st
    if [ "$rc" = 0 ]; then return 0; fi
    if [ "$rc" = "$RB_EXIT_REQUEUE" ] || { [ "$RB_GOT_TERM" = 1 ] && [ "$rc" -gt 128 ]; }; then
        if [ -z "${SLURM_JOB_ID:-}" ]; then
            rb_log "$what stopped early (exit $rc); run the same command again to resume"; exit "$RB_EXIT_REQUEUE"
        fi
        if [ "$n" -ge "$max" ]; then
            rb_log "$what stopped early (exit $rc) but the job was requeued $n times already (RADBATCH_MAX_REQUEUES=$max); resubmit to resume"
            exit "$RB_EXIT_REQUEUE"
        fi
        # scontrol requeue also brings back a cancelled job: only a job still RUNNING (the
        # warning before the time limit, preemption notice, scancel --signal) goes back;
        # a cancelled one (and one already past its time limit) shows COMPLETING here
        st=$(rb_scontrol show job -o "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
        case "$st" in
            RUNNING) ;;
            *) rb_log "$what stopped early (exit $rc); the job is ${st:-gone} (cancelled?), so it is not requeued; resubmit to resume"
               exit "$RB_EXIT_REQUEUE" ;;
        esac
        rb_log "$what stopped early (exit $rc): requeueing job $SLURM_JOB_ID (restart $((n + 1))); it resumes where it stopped"
        # a scontrol that failed all the same counts when the job's restart count went up
        if rb_scontrol requeue "$SLURM_JOB_ID" || rb_requeued "$n"; then
            rb_log "requeued after preemption; the CANCELLED line above is expected: slurmstepd prints '*** JOB $SLURM_JOB_ID ON ... CANCELLED AT ... ***' when a job is signalled (scancel --signal, preemption) or requeued, and this job is back in the queue, not cancelled"
            # slurmctld ends this batch script now; the job returns to the queue
            sleep 60 & wait $! 2>/dev/null || true
            exit 0
        fi
        rb_log "scontrol requeue failed (job cancelled, --no-requeue, or JobRequeue=0 on this cluster); resubmit to resume"
        exit "$RB_EXIT_REQUEUE"
    fi
    rb_log "$what FAILED (exit code $rc); see the messages above. Jobs waiting for this one with afterok will not run (submit-pipeline and sweep cancel them)."
    exit "$rc"
}

# Common start of a batch script: name, binary, environment, launcher, a header in the log.
rb_begin() {
    RB_NAME=$1
    RB_BIN=$(rb_binary)
    rb_env
    rb_launcher
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        rb_log "job $SLURM_JOB_ID ($SLURM_JOB_NAME) on ${SLURM_JOB_NODELIST:-?}, restart ${SLURM_RESTART_COUNT:-0}, binary $RB_BIN"
    else
        rb_log "not in a Slurm job: one process on $(hostname -s), binary $RB_BIN"
    fi
}

# Output folder of COMMAND (its key OUTKEY: run_dir or out): --OUTKEY argument (convert: or
# --shards), else RUN_DIR, else the job file's value (convert: or its shards), else (evaluate)
# <run_dir>/evaluate, else the default run directory.
rb_out_dir() {
    local cmd=$1 key=$2 v jf; shift 2
    v=$(rb_arg_get "$key" "$@")
    # convert writes the pipeline's shards folder: --shards, or the job file's shards key
    if [ -z "$v" ] && [ "$cmd" = convert ]; then v=$(rb_arg_get shards "$@"); fi
    if [ -z "$v" ] && [ -n "${RUN_DIR:-}" ]; then v=$(rb_expand "$RUN_DIR"); fi
    if [ -z "$v" ]; then jf=$(rb_job_file "$@"); if [ -n "$jf" ]; then v=$(rb_ini_get "$jf" "$cmd" "$key"); fi; fi
    if [ -z "$v" ] && [ "$cmd" = convert ] && [ -n "$jf" ]; then v=$(rb_ini_get "$jf" convert shards); fi
    # evaluate with a training run_dir (argument or job file) writes to <run_dir>/evaluate
    if [ -z "$v" ] && [ "$cmd" = evaluate ]; then
        v=$(rb_key evaluate run_dir "$@"); if [ -n "$v" ]; then v=$v/evaluate; fi
    fi
    if [ -z "$v" ]; then v=$(rb_default_run_dir); fi
    echo "$v"
}

# rb_finished DIR: true when DIR holds the marker of a finished radbatch run: every command
# (convert, train, evaluate, infer) writes summary.json with "complete": true last, after all
# its other outputs. Exit code 0 without it means the ranks never ran (srun returns 0 when a
# step fails to launch); a folder without it is unfinished whatever else it holds.
rb_finished() { [ -f "$1/summary.json" ] && [ "$(rb_json_get "$1/summary.json" complete)" = true ]; }

# The whole body of radbatch-<command>.sbatch: COMMAND OUTKEY ARGS...
rb_main() {
    local cmd=$1 key=$2 out extra=() rc; shift 2
    rb_begin "radbatch-$cmd"
    out=$(rb_out_dir "$cmd" "$key" "$@")
    mkdir -p "$out" || rb_die "cannot create $out"
    rb_log "output folder: $out"
    # a requeued job continues: train from its newest checkpoint, infer and convert from
    # what they finished (they resume when run again with the same output folder)
    if [ "$cmd" = train ] && { [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] || [ "${RADBATCH_RESUME:-false}" = true ]; }; then
        extra=(--resume true)
    fi
    if [ -z "$(rb_arg_get "$key" "$@")" ]; then extra=("--$key" "$out" "${extra[@]}"); fi
    rb_step "$cmd" "$@" "${extra[@]}"
    rc=$?
    if [ "$rc" = 0 ] && ! rb_finished "$out"; then
        rb_log "radbatch $cmd exited 0 but $out has no complete summary.json: the ranks did not run (see the launcher's messages above)"
        rc=1
    fi
    rb_finish "$rc" "radbatch $cmd"
    rb_log "done: $out"
}

# Flatten a JSON document (file or stdin) to "path<TAB>value" lines, e.g.
# "screening.roc_auc	0.68", "class_names.0	NORMAL". Strings are unescaped for \" \\ \/ \t \n
# only; enough for radbatch's reports and model cards. Plain awk, no jq needed.
rb_json_flat() {
    awk '
    function emit(v) { print (depth ? path[depth] : "") "\t" v }
    function setkey(k,   p) { p = depth > 1 ? path[depth - 1] "." : ""; path[depth] = p k }
    BEGIN { RS = "\001" }
    {
        s = $0; n = length(s); depth = 0; expect_key = 0
        for (i = 1; i <= n; i++) {
            c = substr(s, i, 1)
            if (c ~ /[ \t\r\n,:]/) {
                if (c == "," && depth && kind[depth] == "a") { idx[depth]++; setkey(idx[depth]) }
                if (c == "," && depth && kind[depth] == "o") expect_key = 1
                continue
            }
            if (c == "{" || c == "[") {
                depth++; kind[depth] = (c == "{") ? "o" : "a"
                if (kind[depth] == "a") { idx[depth] = 0; setkey(0) } else expect_key = 1
                continue
            }
            if (c == "}" || c == "]") { depth--; expect_key = 0; continue }
            if (c == "\"") {
                v = ""; i++
                while (i <= n) {
                    c = substr(s, i, 1)
                    if (c == "\\") {
                        i++; e = substr(s, i, 1)
                        v = v (e == "n" ? " " : e == "t" ? " " : e)
                    } else if (c == "\"") break
                    else v = v c
                    i++
                }
                if (expect_key && kind[depth] == "o") { setkey(v); expect_key = 0 } else emit(v)
                continue
            }
            j = i; while (j <= n && substr(s, j, 1) !~ /[ \t\r\n,}\]]/) j++
            emit(substr(s, i, j - i)); i = j - 1
        }
    }' "$@"
}

# Value of one flattened JSON path ("" when absent).
rb_json_get() {  # file path
    rb_json_flat "$1" 2>/dev/null | awk -F'\t' -v k="$2" '$1 == k && !done { print $2; done = 1 }'
}

# The commands a radbatch binary has (from its --help), one per line. No pipe here ends
# early, so pipefail never sees SIGPIPE.
rb_commands() {
    local h
    h=$("$1" --help 2>/dev/null) || true
    awk '/^commands:/ { f = 1; next } f == 1 && NF { print $1 } f == 1 && !NF { f = 2 }' <<<"$h"
}
rb_has_command() { rb_commands "$1" | grep -x -- "$2" > /dev/null; }
