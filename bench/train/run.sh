#!/usr/bin/env bash
# Training benchmark: `radbatch train` (the real pipeline: shards, prefetching loader,
# allreduce, optimizer) vs TensorFlow/Keras and PyTorch training steps on the same model,
# batch and cores. Usage: bench/train/run.sh [--reps 2] [--steps 20] [--rows ...]
# Env: RADBATCH (binary, default <repo>/build/radbatch), RADBATCH_DATA, TMPDIR.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export TF_CPP_MIN_LOG_LEVEL=3
exec python3 "$here/bench_train.py" "$@"
