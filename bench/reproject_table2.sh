#!/usr/bin/env bash
# Paper 000's Table 2: coupled vs decoupled style and pose. Average precision of
#   3D VAE        V2V on aligned shapes      vs  V2V on pose-aware shapes      (stage 1, generator=vae)
#   3D-VAE-GAN    im2V on aligned shapes     vs  im2V on pose-aware shapes     (stage 1, generator=vaegan)
#   p-3D-VAE-GAN  im2V on pose-aware shapes: the aligned 3D-VAE-GAN + the pose regressor (stage 2)
# on held-out models (the validation columns the trainer logs: val_ap of stage 1 = reconstruction
# AP against the shape in the chosen frame, val_ap3d of stage 2 = AP of the posed prediction).
# `shape_frame=posed` trains stage 1 on the pose-aware shapes (the coupled baselines).
# Data: the embedded procedural aeroplanes, cars and chairs (DATA=folder of a rendered reproject
# set to reuse one). Environment: OUT (default runs/table2), MODELS, VIEWS, ITERS ("stage1 regress").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup.sh" | tail -n 1)"
cd "$root"
out="${OUT:-runs/table2}"
models="${MODELS:-40}"
views="${VIEWS:-12}"
read -r it1 it2 <<<"${ITERS:-600 600}"
data="${DATA:-$out/data}"
if [ -z "${DATA:-}" ]; then
"$venv/bin/python" - "$data" "$models" "$views" <<'PY'
import sys
from poseshape.methods.reproject.data import render_reproject_data
render_reproject_data("procedural", sys.argv[1], categories=("aeroplane", "car", "chair"), image_size=64,
                      views=int(sys.argv[3]), models_per_category=int(sys.argv[2]), seed=3, workers=2,
                      train_domain="natural")
PY
fi
common=(--seed 0 --no-progress --set data.train="$data/train" --set data.natural="$data/natural"
        --set data.val="$data/test" --set image_size=64 --set width=0.5 --set batch_size=32
        --set vae_iters="$it1" --set finetune_iters=0 --set val_every=1000000 --set val_samples=192)
for gen in vae vaegan; do
  for frame in aligned posed; do
    reg=0
    if [ "$gen" = vaegan ] && [ "$frame" = aligned ]; then reg="$it2"; fi
    "$venv/bin/poseshape" train reproject --out "$out/${gen}_${frame}" "${common[@]}" \
        --set generator="$gen" --set shape_frame="$frame" --set regress_iters="$reg" "$@"
  done
done
"$venv/bin/python" - "$out" <<'PY'
import csv, sys
from pathlib import Path
out = Path(sys.argv[1])
def last(run, stage, key):
    f = next((out / run / "logs").glob(f"val_*_{stage}.csv"), None)
    if f is None:
        return float("nan")
    rows = list(csv.DictReader(open(f)))
    return float(rows[-1][key]) if rows else float("nan")
vae_a, vae_p = last("vae_aligned", "vae", "val_ap"), last("vae_posed", "vae", "val_ap")
gan_a, gan_p = last("vaegan_aligned", "vaegan", "val_ap"), last("vaegan_posed", "vaegan", "val_ap")
p_gan = last("vaegan_aligned", "regress", "val_ap3d")
lines = ["| | aligned V2V | aligned im2V | pose-aware V2V | pose-aware im2V |", "|---|---|---|---|---|",
         f"| 3D VAE | {vae_a:.3f} | - | {vae_p:.3f} | - |",
         f"| 3D-VAE-GAN | - | {gan_a:.3f} | - | {gan_p:.3f} |",
         f"| p-3D-VAE-GAN | - | - | - | {p_gan:.3f} |"]
(out / "table2.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
