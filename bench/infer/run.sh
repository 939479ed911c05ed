#!/usr/bin/env bash
# Bulk-inference benchmark: radbatch infer vs TensorFlow/Keras (tf.data) vs PyTorch+PIL over
# the same folder of chest X-rays: decode, resize to the model's size, MobileNetV2 forward,
# CSV of probabilities; same 2 cores. Usage: bench/infer/run.sh [--images 1000] [--reps 1]
# [--tools radbatch,radbatch-2ranks,tf,torch]. See bench/infer/README.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export TF_CPP_MIN_LOG_LEVEL=3
exec python3 "$here/bench_infer.py" "$@"
