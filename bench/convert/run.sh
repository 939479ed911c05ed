#!/usr/bin/env bash
# Convert benchmark: radbatch convert vs PIL+h5py vs TensorFlow TFRecords, same cores.
# Usage: bench/convert/run.sh [--reps 3] [--inputs small,large] [--tools radbatch,pil,...]
# Env: RADBATCH (binary, default <repo>/build/radbatch), RADBATCH_DATA (default
# <repo>/../shared/data), TMPDIR (scratch: ${TMPDIR:-/tmp}/radbatch-bench).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export TF_CPP_MIN_LOG_LEVEL=3
exec python3 "$here/bench_convert.py" "$@"
