#!/usr/bin/env bash
# Train the shipped default posefree model (paper 002) on the project's PROCEDURAL chairs only
# (no pose labels are read: silhouettes and images of the 24-view ring), with the `cpu` preset
# (poseshape/methods/posefree/config.py: PRESETS["cpu"]), and export it (weights and config,
# no optimiser state, no run-local paths) to poseshape/assets/posefree.pt.
# Usage: bash scripts/train_default_posefree.sh [RUN_DIR] [extra `poseshape train` arguments]
# Reruns resume. Prints the wall time at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
V=${V:-$(bash "$root/scripts/setup.sh" | tail -n 1)}
cd "$root"
RUN=${1:-runs/posefree_default}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
start=$(date +%s)
"$V/bin/poseshape" train posefree --out "$RUN" --seed 0 --no-progress --set preset=cpu "${@:2}"
"$V/bin/python" -m poseshape.engine.checkpoint export "$RUN/last.pt" "${EXPORT:-poseshape/assets/posefree.pt}" \
    --set data.train= --set data.test=
echo "wall time: $(( $(date +%s) - start )) s"
