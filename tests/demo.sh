#!/usr/bin/env bash
# The main job on the bundled sample (199 chest X-rays, a pretrained MobileNetV2):
# convert -> train (frozen base, then fine-tuning) -> evaluate -> infer, as a cluster runs it,
# then export of the trained model to ONNX for other runtimes.
# Runs with 2 MPI ranks when mpirun is there, else 1. Settings: jobs/examples/demo.ini.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE
RB=${RADBATCH:-build/radbatch}
JOB=jobs/examples/demo.ini
MPI=()
command -v mpirun > /dev/null && MPI=(mpirun -n 2)
rm -rf runs/demo
mkdir -p runs/demo

echo "== convert: tests/data/chest_xray_sample -> runs/demo/shards (160x160, train/val/test 65/20/15 grouped by patient)"
"${MPI[@]}" "$RB" convert "$JOB"
"$RB" inspect runs/demo/shards --verify
echo
echo "== train: MobileNetV2 (pretrained base frozen, then top 30% fine-tuned) -> runs/demo/train"
"${MPI[@]}" "$RB" train "$JOB" --quiet
cat runs/demo/train/history.csv
echo
echo "== evaluate on the val split, choosing the threshold for sensitivity >= 0.95 -> runs/demo/evaluate,"
echo "   the operating point stored in runs/demo/train/model-sens95.h5"
"${MPI[@]}" "$RB" evaluate "$JOB"
echo
echo "== evaluate on the held-out test split at that operating point -> runs/demo/evaluate-test"
"${MPI[@]}" "$RB" evaluate "$JOB" --model runs/demo/train/model-sens95.h5 --split test --threshold model \
    --set_threshold= --out runs/demo/evaluate-test
echo
echo "== infer over the whole sample folder as an unlabelled archive -> runs/demo/infer"
"${MPI[@]}" "$RB" infer "$JOB"
echo
echo "== export the trained model to ONNX -> runs/demo/model.onnx (docs/export.md)"
"$RB" export --model runs/demo/train/model.h5 --out runs/demo/model.onnx
echo
echo "== reports"
echo "evaluation report: $(pwd)/runs/demo/evaluate-test/report.html (test split; val: runs/demo/evaluate)"
echo "screening report:  $(pwd)/runs/demo/infer/report.html"
