#!/usr/bin/env bash
# Build bench/engine_radbatch against a CMake build's libradbatch_core.a.
#   bench/build-engine.sh [BUILD_DIR] [OUT]
# BUILD_DIR defaults to <repo>/build; the radbatch_core target is (re)built there first
# (configured as Release when the folder has no CMake cache);
# OUT defaults to BUILD_DIR/engine_radbatch. CFLAGS from the environment are added (the
# default matches the CMake build's -O3 -march=x86-64-v2 -mtune=native).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
build="${1:-$repo/build}"
out="${2:-$build/engine_radbatch}"
lib="$build/libradbatch_core.a"
if [[ ! -f "$build/CMakeCache.txt" ]]; then
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release >&2
fi
if ! make -C "$build" -j"$(nproc)" radbatch_core >&2; then
    echo "build-engine.sh: building radbatch_core in $build failed" >&2
    exit 1
fi
pkgs="hdf5 openblas libturbojpeg libpng libtiff-4 inih libcjson libxxhash libzip zlib"
cc="${CC:-cc}"
mpi_libs=""
if command -v mpicc >/dev/null 2>&1; then
    mpi_libs="$(mpicc --showme:link 2>/dev/null || true)"
fi
# shellcheck disable=SC2046
"$cc" -std=gnu11 ${CFLAGS:--O3 -march=x86-64-v2 -mtune=native} -g \
    -I"$repo/src" -I"$repo/src/layers" -I"$repo/io" \
    $(pkg-config --cflags $pkgs) \
    "$here/engine_radbatch.c" -o "$out" \
    "$lib" $(pkg-config --libs $pkgs) -ljpeg $mpi_libs -lpthread -lm
echo "$out"
