#!/usr/bin/env bash
# Reproduce the shipped default model poseshape/assets/reproject.pt (paper 000's p-TL on the
# procedural aeroplane / car / chair categories), from nothing but this repository:
#   1. render the three reproject sets (train / natural-like silhouettes / test) of procedural
#      shapes with the data engine,
#   2. train the three stages (VAE, regressors, reprojection fine-tuning),
#   3. export the final weights (no optimiser state) to poseshape/assets/reproject.pt.
# About 40 minutes on a 2-core CPU. Extra arguments are passed to `poseshape train` (e.g.
# `--device cuda`). Environment: OUT (work folder, default runs/default), MODELS, VIEWS,
# EXPORT (where the exported model goes).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup.sh" | tail -n 1)"
cd "$root"
out="${OUT:-runs/default}"
models="${MODELS:-100}"   # procedural models per category (80% train, 10% natural, 10% test)
views="${VIEWS:-12}"      # rendered views per model
export_to="${EXPORT:-poseshape/assets/reproject.pt}"
"$venv/bin/python" - "$out/data" "$models" "$views" <<'PY'
import sys
from poseshape.methods.reproject.data import render_reproject_data
render_reproject_data("procedural", sys.argv[1], categories=("aeroplane", "car", "chair"),
                      image_size=64, views=int(sys.argv[3]), models_per_category=int(sys.argv[2]),
                      seed=7, workers=2, train_domain="natural")
PY
"$venv/bin/poseshape" train reproject --out "$out/run" --seed 0 \
    --set data.train="$out/data/train" --set data.natural="$out/data/natural" \
    --set data.val="$out/data/test" \
    --set image_size=64 --set width=0.5 --set batch_size=32 \
    --set vae_iters=1500 --set regress_iters=2500 --set finetune_iters=400 \
    --set val_every=500 --set val_samples=192 "$@"
"$venv/bin/python" -m poseshape.engine.checkpoint export "$out/run/last.pt" "$export_to"
