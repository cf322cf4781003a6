#!/usr/bin/env bash
# Train and export the shipped `selfconsistency` model (paper 001, `cpu` preset).
#   scripts/train_default_selfconsistency.sh [WORK_DIR]   (default /tmp/poseshape_sc)
# Procedural data only (24-view ring, elevation 30 deg, the fixed pinhole frame); the weights
# are not copies of any data. ~12 min on a 2-core CPU. Reruns resume (data and training).
set -euo pipefail
W=${1:-/tmp/poseshape_sc}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cd "$(dirname "$0")/.."
for split in train val test; do
  $PY -m poseshape data render --meshes procedural --out "$W/$split" --pose ring24 --framing fixed \
    --size 64 --voxels 32 --categories aeroplane car chair --split "$split" \
    --models-per-category 24 --workers 2 --quiet
done
$PY -m poseshape train selfconsistency --out "$W/run" --device cpu --seed 0 --no-progress \
  --config poseshape/methods/selfconsistency/presets/cpu.yaml \
  --set data.train="$W/train" --set data.val="$W/val"
$PY -m poseshape.engine.checkpoint export "$W/run/last.pt" poseshape/assets/selfconsistency.pt --set data.train= --set data.val=
ls -l poseshape/assets/selfconsistency.pt
