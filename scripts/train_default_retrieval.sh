#!/usr/bin/env bash
# Train the shipped default retrieval model (paper 004) on PROCEDURAL models only, with the
# CPU preset (poseshape/methods/retrieval/config.py: CPU_PRESET), and copy it (with its
# database of the 16 procedural models, stored inside the checkpoint) to
# poseshape/assets/retrieval.pt. Also writes the same database as a separate file,
# poseshape/assets/retrieval_db.pt, with `poseshape retrieval index`.
# Usage: bash scripts/train_default_retrieval.sh [RUN_DIR] [extra `poseshape train` arguments]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
V=${V:-$(bash "$root/scripts/setup.sh" | tail -n 1)}
cd "$root"
RUN=${1:-runs/retrieval_default}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
start=$(date +%s)
# shellcheck disable=SC2086
"$V/bin/poseshape" train retrieval --out "$RUN" --seed 0 --no-progress --set preset=cpu "${@:2}"
"$V/bin/python" -m poseshape.engine.checkpoint export "$RUN/last.pt" poseshape/assets/retrieval.pt \
    --set data.train= --set data.val= --set data.test=
"$V/bin/poseshape" retrieval index --meshes procedural --checkpoint poseshape/assets/retrieval.pt \
    --out poseshape/assets/retrieval_db.pt
echo "wall time: $(( $(date +%s) - start )) s"
