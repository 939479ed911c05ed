#!/usr/bin/env bash
# Install what radbatch needs from Debian 12's packages and build it (Release, ./build).
#   bash tests/setup.sh            install + build
#   RADBATCH_BUILD=dir BUILD_TYPE=... RADBATCH_SANITIZE=ON bash tests/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config git
          libopenmpi-dev openmpi-bin libopenblas-dev
          libhdf5-dev hdf5-tools
          libjpeg62-turbo-dev libturbojpeg0-dev libpng-dev libtiff-dev
          libinih-dev libcjson-dev libxxhash-dev libzip-dev zlib1g-dev jq
          slurmctld slurmd slurm-client munge iproute2 chromium
          libgdcm-dev libgdcm-tools dcmtk dicom3tools
          python3-h5py python3-numpy
          protobuf-c-compiler libprotobuf-c-dev)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

BUILD=${RADBATCH_BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
      -DRADBATCH_SANITIZE="${RADBATCH_SANITIZE:-OFF}" > /dev/null
# compiler diagnostics and make's failure lines only (a target may be named *error*)
cmake --build "$BUILD" -j "$(nproc)" 2>&1 | grep -E ': (fatal )?(error|warning):|\*\*\*' || true
test -x "$BUILD/radbatch" || { echo "build failed" >&2; exit 1; }
echo "built $BUILD/radbatch"

# Python packages some tests compare radbatch with (reference decoders and runtimes, from
# PyPI; radbatch itself never needs them): one virtual environment for every build folder,
# refreshed when tests/python-requirements.txt changes. Tests find it as $RADBATCH_PYTHON.
PYENV=.venv-tests
if grep -q '^[^#[:space:]]' tests/python-requirements.txt; then
    [ -x "$PYENV/bin/python" ] || python3 -m venv "$PYENV"
    if ! cmp -s tests/python-requirements.txt "$PYENV/requirements.installed"; then
        echo "installing the tests' Python packages into $PYENV"
        "$PYENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/python-requirements.txt
        cp tests/python-requirements.txt "$PYENV/requirements.installed"
    fi
fi
