# Shared helpers for the end-to-end tests (sourced). ctest sets RADBATCH (the binary),
# RADBATCH_SRC (the source tree) and RADBATCH_TEST_TMP.
set -euo pipefail
: "${RADBATCH:?run through ctest, or set RADBATCH to the radbatch binary}"
: "${RADBATCH_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} HDF5_USE_FILE_LOCKING=FALSE
SAMPLE="$RADBATCH_SRC/tests/data/chest_xray_sample"
GROUPS_RE='^(person[0-9]+|NORMAL2-IM-[0-9]+|IM-[0-9]+)'

# A fresh scratch folder named after the test.
T="${RADBATCH_TEST_TMP:-/tmp/radbatch-tests}/$(basename "$0" .sh)"
rm -rf "$T"
mkdir -p "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# A test that cannot run its checks says why and reports itself skipped: exit 77 (ctest's
# SKIP_RETURN_CODE), never 0. skip_part: one part is left out, the test goes on, and a run
# that would have passed exits 77 instead (rb_exit_trap, the EXIT trap; a test that sets its
# own EXIT trap calls rb_exit_trap with the exit status at its end).
skip() { echo "SKIP: $*"; exit 77; }
skip_part() { echo "SKIP: $*"; echo "$*" >> "$T/skipped-parts"; }
rb_exit_trap() {
    local rc=${1:-$?}
    if [ "$rc" = 0 ] && [ -s "$T/skipped-parts" ]; then
        echo "some parts were skipped (SKIP lines above): reporting the test as skipped"
        exit 77
    fi
}
trap 'rb_exit_trap $?' EXIT

# run N ranks: mpirun for N > 1, plain (MPI singleton) for 1
rb_run() {
    local n=$1; shift
    if [ "$n" = 1 ]; then "$RADBATCH" "$@"; else mpirun -n "$n" "$RADBATCH" "$@"; fi
}

# html_self_contained FILE: true when an HTML report refers to nothing outside itself (no
# script, no link, no remote or relative resource); inline data: PNG images are part of it.
html_self_contained() {
    local page # read whole first: grep -q leaving a pipe early would fail the pipeline under pipefail
    page=$(sed -E 's#src="data:image/png;base64,[A-Za-z0-9+/=]*"#inline#g' "$1") || return 1
    grep -qi '<script' <<<"$page" && return 1
    ! grep -Eqi '(https?:|ftp:|//[a-z0-9.-]+\.[a-z]{2,}/|src=|@import|url\((["'"'"']?)[^#])' <<<"$page"
}

# render HTML PNG [WIDTH,HEIGHT]: a headless Chromium screenshot of a page (window 1200,1600
# unless given); a test that renders calls need_chromium first (a SKIP without it).
need_chromium() {
    CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
    [ -n "$CHROME" ] || skip "chromium not installed (tests/setup.sh installs it); render check not run"
}
render() {
    timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$T/chrome-profile" \
        --screenshot="$2" --window-size="${3:-1200,1600}" "file://$1" > "$T/chrome.log" 2>&1 || true
    [ -s "$2" ] || { cat "$T/chrome.log"; fail "chromium wrote no screenshot of $1"; }
}
# the screenshot of an empty page, to compare a rendering with: its size in bytes on stdout
empty_page_png() {
    printf '<!DOCTYPE html><html><head><meta charset="utf-8"><title>empty</title></head><body></body></html>\n' > "$T/empty.html"
    render "$T/empty.html" "$T/empty.png" "$@"
    wc -c < "$T/empty.png"
}

# kill_tree SIGNAL PID: SIGNAL to every process below PID (mpirun and the ranks it started,
# however deep), then wait until they are all gone. Killing only mpirun leaves its ranks
# running as orphans, and a rerun into the same folder would race with them.
descendants() {
    local c
    for c in $(pgrep -P "$1" 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}
running() { # PID...: true while one of them runs (a zombie has ended)
    local p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && return 0
    done
    return 1
}
kill_tree() {
    local sig=$1 pids i
    pids=$(descendants "$2")
    [ -n "$pids" ] || return 0
    kill "-$sig" $pids 2>/dev/null || true
    for i in $(seq 300); do
        running $pids || return 0
        sleep 0.1
    done
    fail "processes $pids still run 30 s after SIG$sig"
}

# The shared data set's folder on stdout, or a SKIP line on stderr and status 1:
#   D=$(shared_data chest_xray/train) || exit 77
shared_data() {
    local d="${RADBATCH_DATA:-$RADBATCH_SRC/../shared/data}"
    if [ ! -d "$d/$1" ]; then
        echo "SKIP: $d/$1 not found (set RADBATCH_DATA to the folder holding $1)" >&2
        return 1
    fi
    echo "$d"
}

# A training run's train_log.jsonl in one line: per invocation "start <step>@<checkpoint>" (or
# "start fresh") and "end <status> <step> <steps_this_run>"
train_log_summary() {
    [ -s "$1/train_log.jsonl" ] || fail "$1/train_log.jsonl missing or empty"
    jq -r 'if .event == "start" then
               "start " + (if .resumed_from == null then "fresh"
                           else "\(.resumed_from.step)@\(.resumed_from.checkpoint | sub(".*/"; ""))" end)
           else "end \(.status) \(.step) \(.steps_this_run)" end' "$1/train_log.jsonl" | paste -sd' ' -
}

# all shard files of two folders byte-identical, index.json equal except the config line and
# the checksum that covers it
same_shards() {
    local a=$1 b=$2 f
    [ "$(cd "$a" && ls *.h5 | sort)" = "$(cd "$b" && ls *.h5 | sort)" ] || fail "$a and $b hold different shard names"
    for f in "$a"/*.h5; do cmp -s "$f" "$b/$(basename "$f")" || fail "$(basename "$f") differs between $a and $b"; done
    diff <(grep -Ev '"(config|index_checksum)"' "$a/index.json") <(grep -Ev '"(config|index_checksum)"' "$b/index.json") >/dev/null || fail "index.json differs between $a and $b"
    cmp -s "$a/errors.csv" "$b/errors.csv" || fail "errors.csv differs between $a and $b"
    cmp -s "$a/duplicates.csv" "$b/duplicates.csv" || fail "duplicates.csv differs between $a and $b"
}
