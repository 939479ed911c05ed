#!/usr/bin/env bash
# Engine benchmark: radbatch vs TensorFlow/Keras vs PyTorch, same model, shapes, batch,
# threads; plus OpenBLAS sgemm peak. Usage: bench/engine/run.sh [--reps 3] [--rows ...]
# Env: RADBATCH_ENGINE (engine bench binary; default: built by bench/build-engine.sh),
# TMPDIR (scratch: ${TMPDIR:-/tmp}/radbatch-bench).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export TF_CPP_MIN_LOG_LEVEL=3
exec python3 "$here/bench_engine.py" "$@"
