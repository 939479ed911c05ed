#!/usr/bin/env bash
# Install, build and run the default test suite in four passes:
#   release      the Release build, every test but the opt-in slow ones (label "long")
#   haswell      the same suite again, OpenBLAS forced to its Haswell (AVX2) kernels, then to
#   sandybridge  its Sandybridge (AVX) ones: what hosts without AVX-512 get, so a result that
#                holds only on this host's kernels cannot be green here and red there
#   asan         the same suite as release under AddressSanitizer + UndefinedBehaviorSanitizer
# Every pass runs to its end and writes a JUnit file (<build>/junit-<pass>.xml); the run ends
# with a table of how many tests ran, passed, failed and were skipped in each pass, and exits
# 1 when any test failed. A skipped test (exit code 77, see tests/CMakeLists.txt) is listed by
# name with its SKIP line. Under CI=true a skip fails the run: CI must run every test (the
# fixture tests need ../shared or RADBATCH_DATA/RADBATCH_FIXTURES, the Slurm and root-only
# tests need root, report_html needs Chromium), except the names listed, space-separated, in
# RADBATCH_CI_MAY_SKIP. Opt-in slow tests: ctest --test-dir build -L long.
set -uo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh || exit 1
J=$(nproc)
SUMMARY=$(mktemp)
FAILED=0
trap 'rm -f "$SUMMARY"' EXIT

# pass BUILD NAME [ctest args...]: run ctest, then count the JUnit results
pass() {
    local build=$1 name=$2 junit
    shift 2
    junit="$PWD/$build/junit-$name.xml"
    rm -f "$junit"
    echo "== pass $name ($build): ctest $*"
    ctest --test-dir "$build" -j "$J" --output-on-failure --output-junit "$junit" "$@" || FAILED=1
    if [ ! -s "$junit" ]; then
        echo "pass $name: ctest wrote no $junit" >&2
        FAILED=1
        printf '%-12s %6s %6s %6s %7s\n' "$name" "?" "?" "?" "?" >> "$SUMMARY"
        return
    fi
    # one line per test: "status name|first SKIP line" (status: run, fail, notrun, or skipped
    # when ctest saw exit code 77); the tests' output is inside their <testcase> element
    awk '/<testcase / { match($0, /name="[^"]*"/); n = substr($0, RSTART + 6, RLENGTH - 7)
                        match($0, /status="[^"]*"/); t[n] = substr($0, RSTART + 8, RLENGTH - 9); o[++k] = n }
         /<skipped /  { t[n] = "skipped" }
         /SKIP: / && !(n in why) { why[n] = substr($0, index($0, "SKIP: ")) }
         END          { for (i = 1; i <= k; i++) print t[o[i]], o[i] "|" why[o[i]] }' "$junit" > "$junit.status"
    local total ran passed failed skipped
    total=$(wc -l < "$junit.status")
    passed=$(grep -c '^run ' "$junit.status")
    failed=$(grep -c '^fail ' "$junit.status")
    skipped=$(grep -c '^skipped ' "$junit.status")
    ran=$((total - skipped))
    printf '%-12s %6d %6d %6d %7d\n' "$name" "$ran" "$passed" "$failed" "$skipped" >> "$SUMMARY"
    [ $((passed + failed + skipped)) = "$total" ] || { echo "pass $name: $((total - passed - failed - skipped)) tests neither ran nor skipped" >&2; FAILED=1; }
    local t reason
    while IFS='|' read -r t reason; do
        echo "pass $name: $t skipped: ${reason:-no SKIP line}"
        if [ "${CI:-}" = true ] && ! [[ " ${RADBATCH_CI_MAY_SKIP:-} " == *" $t "* ]]; then
            echo "FAIL: CI=true and $t was skipped; CI must run it (give it what it needs, or list it in RADBATCH_CI_MAY_SKIP)" >&2
            FAILED=1
        fi
    done < <(sed -n 's/^skipped //p' "$junit.status")
}

# the kernel family a pass asks for must be the one OpenBLAS runs
coretype_is() {
    local got
    got=$(OPENBLAS_VERBOSE=2 OPENBLAS_CORETYPE=$1 build/radbatch --version 2>&1 | sed -n 's/^Core: //p')
    [ "$got" = "$1" ] || { echo "FAIL: OPENBLAS_CORETYPE=$1 gives OpenBLAS core '${got:-unknown}' (an OpenBLAS without DYNAMIC_ARCH?)" >&2; FAILED=1; return 1; }
}

echo "OpenBLAS core of this host: $(OPENBLAS_VERBOSE=2 build/radbatch --version 2>&1 | sed -n 's/^Core: //p')"
pass build release -LE long --timeout 1200
for core in Haswell Sandybridge; do
    if coretype_is $core; then
        OPENBLAS_CORETYPE=$core pass build "${core,,}" -LE long --timeout 1200
    fi
done

RADBATCH_BUILD=build-asan BUILD_TYPE=RelWithDebInfo RADBATCH_SANITIZE=ON bash tests/setup.sh || exit 1
# Open MPI keeps some allocations until exit; leaks are not what this run looks for.
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    pass build-asan asan -LE 'long|nosan' --timeout 2400

echo
echo "== summary"
printf '%-12s %6s %6s %6s %7s\n' pass ran passed failed skipped
cat "$SUMMARY"
if [ "$FAILED" != 0 ]; then
    echo "FAILED (see above)"
    exit 1
fi
echo "all tests passed"
