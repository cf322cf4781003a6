#!/usr/bin/env bash
# Train the shipped mask segmenter poseshape/assets/segmenter.pt (poseshape.engine.segmenter: a small
# U-Net that `--mask auto` uses when an image comes without a mask), from this repository and the
# shared data folder:
#   1. render the world mix's *train* models (poseshape.data.world: procedural aeroplanes / cars /
#      chairs nos. 0-99 plus the PASCAL3D+ and ObjectNet3D CAD models of $POSESHAPE_DATA, default
#      ../shared/data; the meshes are read, never copied) in the natural-like domain, half with the
#      reproject framing and half with the "realistic" preset (30-90 deg lenses, off-centre and
#      truncated objects, occluders), and the *val* models the same way for validation;
#   2. train (a U-Net of width 16, Adam 1e-3, cosine, BCE + Dice; resumable: rerun the same command
#      to continue; about 15 min on a 2-core CPU);
#   3. copy the weights to EXPORT (default poseshape/assets/segmenter.pt).
# The test models of the world split (bench/cross_dataset.py) and the procedural nos. 100-139
# (bench/cross_dataset.py, bench/auto_mask.py) are never rendered here.
# Environment: OUT (default runs/segmenter), VIEWS (per model and framing, default 4), STEPS (3000),
# SIZE (64), EXPORT. Extra arguments go to `python -m poseshape.engine.segmenter`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup.sh" | tail -n 1)"
cd "$root"
out="${OUT:-runs/segmenter}"
views="${VIEWS:-4}"
steps="${STEPS:-3000}"
size="${SIZE:-64}"
export_to="${EXPORT:-poseshape/assets/segmenter.pt}"
start=$(date +%s)
"$venv/bin/python" - "$out/data" "$views" "$size" <<'PY'
import sys
from dataclasses import replace
from pathlib import Path
from poseshape.data.synth import render_dataset
from poseshape.data.world import WORLD_SPLIT, world_collection
from poseshape.methods.reproject.data import reproject_synth_config
out, views, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
mix = world_collection(per_category=100)
for split, seed in (("train", 11), ("val", 12)):
    part = mix.split(split, WORLD_SPLIT)
    base = replace(reproject_synth_config(size, views, 32, "natural", seed=seed), voxel_res=0)
    render_dataset(part, out / f"{split}_plain", base, workers=2)
    render_dataset(part, out / f"{split}_real", replace(base, seed=seed + 100, realism="realistic"), workers=2)
PY
"$venv/bin/python" -m poseshape.engine.segmenter --train "$out/data/train_plain" "$out/data/train_real" \
    --val "$out/data/val_plain" "$out/data/val_real" --out "$out/run" --steps "$steps" --image-size "$size" "$@"
cp "$out/run/segmenter.pt" "$export_to"
echo "wall time: $(( $(date +%s) - start )) s"
