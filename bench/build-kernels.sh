#!/usr/bin/env bash
# Build the layer-kernel micro benchmark bench/kernels.c.
#   bench/build-kernels.sh [BUILD_DIR] [OUT]
# Links BUILD_DIR/libradbatch_core.a (default BUILD_DIR: <repo>/build; make its
# radbatch_core target first, e.g.
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && make -C build -j2 radbatch_core).
# Only the layer objects are pulled from the archive, so just OpenBLAS and libm are needed.
# Without the archive, or with --sources first (to measure the working tree while other
# parts of the library do not build), it compiles src/layers/*.c directly with the CMake
# build's flags.
# OUT defaults to BUILD_DIR/bench_kernels. Run: OUT [--batch 32] [--reps 5] [--threads 1,2]
set -euo pipefail
from_sources=0
if [[ "${1:-}" == --sources ]]; then
    from_sources=1
    shift
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
build="${1:-$repo/build}"
out="${2:-$build/bench_kernels}"
mkdir -p "$(dirname "$out")"
lib="$build/libradbatch_core.a"
cflags="${CFLAGS:--O3 -march=x86-64-v2 -mtune=native}"
if [[ -f "$lib" && $from_sources == 0 ]]; then
    srcs=("$lib")
else
    [[ $from_sources == 1 ]] || echo "build-kernels.sh: $lib not found; compiling src/layers/*.c directly" >&2
    srcs=("$repo"/src/layers/*.c)
fi
# shellcheck disable=SC2086
"${CC:-cc}" -std=gnu11 $cflags -g -Wall -I"$repo/src" -I"$repo/src/layers" \
    $(pkg-config --cflags openblas) "$here/kernels.c" "${srcs[@]}" -o "$out" \
    $(pkg-config --libs openblas) -lm
echo "$out"
