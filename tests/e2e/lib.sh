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

# run N ranks: mpirun for N > 1, plain (MPI singleton) for 1
rb_run() {
    local n=$1; shift
    if [ "$n" = 1 ]; then "$RADBATCH" "$@"; else mpirun -n "$n" "$RADBATCH" "$@"; fi
}

# Shared data set, or a SKIP line.
shared_data() {
    local d="${RADBATCH_DATA:-$RADBATCH_SRC/../shared/data}"
    if [ ! -d "$d/$1" ]; then
        echo "SKIP: $d/$1 not found (set RADBATCH_DATA to the folder holding $1)"
        return 1
    fi
    echo "$d"
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
