# Helpers for the full-disk tests (tests/e2e/fault_full_disk_*.sh), sourced before lib.sh
# (a mount left by a killed earlier run is removed first, so lib.sh can clear the folder).
# (Named .bash so that the e2e glob, *.sh, does not take it for a test.)
#
# Small tmpfs mounts stand in for a full file system: writes past the size fail with ENOSPC
# the way a full disk or an exhausted quota does. Mounting needs root (CI runs as root);
# without it the test exits 77 with a SKIP line.

FD_STALE="${RADBATCH_TEST_TMP:-/tmp/radbatch-tests}/$(basename "$0" .sh)/mnt"
! mountpoint -q "$FD_STALE" 2> /dev/null || umount "$FD_STALE" 2> /dev/null || umount -l "$FD_STALE" || true

FD_MOUNTS=()
fd_cleanup() {
    local m
    for m in "${FD_MOUNTS[@]}"; do umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null || true; done
}
trap fd_cleanup EXIT

# fd_mount DIR SIZE: a fresh tmpfs of SIZE (e.g. 600k) at DIR, or SKIP (exit 77)
fd_mount() {
    local dir=$1 size=$2
    mkdir -p "$dir"
    if [ "$(id -u)" != 0 ] || ! mount -t tmpfs -o "size=$size" tmpfs "$dir" 2> /dev/null; then
        echo "SKIP: needs root to mount tmpfs"
        exit 77
    fi
    FD_MOUNTS+=("$dir")
}
# fd_grow DIR SIZE: more space on the mounted tmpfs, contents kept (the "space was freed" step)
fd_grow() { mount -o "remount,size=$2" "$1" || fail "cannot remount $1 with size $2"; }
# fd_umount DIR
fd_umount() { umount "$1" || fail "cannot unmount $1"; }

FD_BOUND=${FD_BOUND:-30} # seconds a failing run may take, on a loaded 2-core machine

# fd_expect_full NAME PATH_PART N ARGS...: radbatch ARGS on N ranks must fail on the full disk: exit code 1 (not a
# timeout, not a signal: no SIGSEGV, no core), within FD_BOUND seconds, on every rank (mpirun
# returns only when all ranks have ended), with one error that names a file under
# PATH_PART and says the disk is full. The log is in $T/NAME.log.
fd_expect_full() {
    local name=$1 where=$2 n=$3; shift 3
    local log="$T/$name.log" t0 rc cmd=("$RADBATCH")
    [ "$n" = 1 ] || cmd=(mpirun -n "$n" "$RADBATCH")
    t0=$(date +%s)
    set +e
    timeout -k 5 "$FD_BOUND" "${cmd[@]}" "$@" > "$log" 2>&1
    rc=$?
    set -e
    local took=$(( $(date +%s) - t0 ))
    [ $rc -ne 124 ] && [ $rc -ne 137 ] || { cat "$log"; fail "$name: still running after ${FD_BOUND} s (a hang)"; }
    [ $rc -lt 128 ] || { cat "$log"; fail "$name: died of signal $((rc - 128)) (exit $rc)"; }
    ! grep -qiE 'segmentation fault|signal: |core dumped|sanitizer' "$log" || { cat "$log"; fail "$name: crashed"; }
    [ $rc -eq 1 ] || { cat "$log"; fail "$name: exit code $rc, expected 1"; }
    grep -q "^error: .*$where[^ ]*: cannot write" "$log" || { cat "$log"; fail "$name: no error naming a file under $where"; }
    grep -qE "cannot write [0-9]+ bytes: No space left on device \([0-9]+ bytes free on that file system\)" "$log" ||
        { cat "$log"; fail "$name: the error does not say the disk is full, the bytes needed and the space left"; }
    grep -q "hint: the disk is full" "$log" || { cat "$log"; fail "$name: no hint"; }
    [ "$(grep -c '^error: ' "$log")" -le "${FD_MAX_ERRORS:-1}" ] || { cat "$log"; fail "$name: more than one error line"; }
    echo "$name: exit 1 after ${took} s: $(grep -m1 '^error: ' "$log")"
}

# fd_no_temp DIR: no temporary files left behind in DIR (recursively)
fd_no_temp() {
    local left
    left=$(find "$1" -name '*.tmp.*' -o -name '*.tmp-*' | sed -n 1,3p) # sed reads all: no SIGPIPE
    [ -z "$left" ] || fail "temporary files left in $1: $left"
}
