#!/usr/bin/env bash
# radbatch's own inference vs onnxruntime running the exported float32 and int8 files of the
# same MobileNetV2 (bench/README.md): images/s at a batch and batch-1 latency, same threads.
#   bench/export/run.sh [--size 224] [--batch 32] [--threads 2] [--iters 5]
# Python: $RADBATCH_PYTHON or the tests' venv (.venv-tests: onnxruntime, onnx, h5py, numpy).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
PY=${RADBATCH_PYTHON:-$repo/.venv-tests/bin/python}
[ -x "$PY" ] || { echo "no Python with onnxruntime: run bash tests/setup.sh or set RADBATCH_PYTHON" >&2; exit 1; }
RADBATCH_ENGINE=${RADBATCH_ENGINE:-$(bash "$repo/bench/build-engine.sh" | tail -1)}
export RADBATCH_ENGINE
exec "$PY" "$here/bench_export.py" "$@"
