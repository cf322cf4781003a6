#!/usr/bin/env bash
# Paper 000's Table 3 and Table 4 for `reproject` on the real CAD models of ../shared/data
# (aeroplane, car, chair: PASCAL3D+ CAD + the 30 meshes_obj chairs), before and after the
# reprojection fine-tuning. Nothing from the data folder is copied into the repository: the
# renders, the run and the report go to $OUT (default runs/shared, git-ignored).
#   1. render train / natural (silhouettes only) / test sets from disjoint models of each
#      category (model-level split 60/20/20, so each category has >= 2 test models),
#   2. train the three stages (VAE, regressors, fine-tuning) as scripts/train_default.sh does,
#   3. `poseshape eval` the stage-2 checkpoint (before) and the last one (after).
# About an hour on a 2-core CPU. Environment: OUT, POSESHAPE_DATA, VIEWS (train/natural views per
# model), TEST_VIEWS, ITERS ("vae regress finetune"), extra arguments go to `poseshape train`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$root/scripts/setup.sh" | tail -n 1)"
cd "$root"
out="${OUT:-runs/shared}"
data="${POSESHAPE_DATA:-$root/../shared/data}"
views="${VIEWS:-36}"
test_views="${TEST_VIEWS:-24}"
read -r it_vae it_reg it_ft <<<"${ITERS:-600 1200 300}"
"$venv/bin/python" - "$data" "$out/data" "$views" "$test_views" <<'PY'
import sys
from pathlib import Path
from poseshape.data.collections import MeshCollection
from poseshape.methods.reproject.data import render_reproject_data
data, out, views, test_views = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
models = MeshCollection.concat(
    MeshCollection(data / "pascal3d_cad", categories=["aeroplane", "car", "chair"], cache_size=0),
    MeshCollection(data / "meshes_obj", categories=["chair"], source="yup_xfront", cache_size=0))
print(models.summary())
render_reproject_data(models, out, categories=None, image_size=64, views=views, test_views=test_views,
                      seed=11, workers=2, train_domain="natural", split_fractions=(0.6, 0.2, 0.2))
PY
"$venv/bin/poseshape" train reproject --out "$out/run" --seed 0 \
    --set data.train="$out/data/train" --set data.natural="$out/data/natural" \
    --set data.val="$out/data/test" \
    --set image_size=64 --set width=0.5 --set batch_size=32 \
    --set vae_iters="$it_vae" --set regress_iters="$it_reg" --set finetune_iters="$it_ft" \
    --set val_every=500 --set val_samples=192 "$@"
"$venv/bin/poseshape" eval --checkpoint "$out/run/stage_1_regress.pt" --checkpoint "$out/run/last.pt" \
    --label before --label after --data "$out/data/test" --out "$out/eval"
