#!/usr/bin/env bash
# Install, build and run the whole default test suite: a Release build, then the same
# suite under AddressSanitizer + UndefinedBehaviorSanitizer. Opt-in slow tests carry the
# ctest label "long" and are left out (run them with: ctest --test-dir build -L long).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
J=$(nproc)
echo "== Release build: ctest"
ctest --test-dir build -LE long -j "$J" --output-on-failure --timeout 1200

echo "== Sanitizer build (ASan + UBSan): ctest"
RADBATCH_BUILD=build-asan BUILD_TYPE=RelWithDebInfo RADBATCH_SANITIZE=ON bash tests/setup.sh
# Open MPI keeps some allocations until exit; leaks are not what this run looks for.
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan -LE 'long|nosan' -j "$J" --output-on-failure --timeout 2400
echo "all tests passed"
