#!/usr/bin/env bash
# The main job on the bundled sample: image folders -> HDF5 shards -> inspect.
# Runs with 2 MPI ranks when mpirun is there (as on a cluster node), else 1.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE
RB=${RADBATCH:-build/radbatch}
RUN=runs/demo
mkdir -p "$RUN"
MPI=()
command -v mpirun > /dev/null && MPI=(mpirun -n 2)

echo "== convert: tests/data/chest_xray_sample -> $RUN/shards (160x160, 80/20 split grouped by patient)"
"${MPI[@]}" "$RB" convert jobs/examples/demo.ini --out "$RUN/shards"
echo
echo "== inspect --verify"
"$RB" inspect "$RUN/shards" --verify
