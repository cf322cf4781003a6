#!/usr/bin/env bash
# Paper 002, Fig. 5: posefree trained on sparse, biased subsets of the 24 ring views
# (poseshape/methods/posefree/config.py: VIEW_SUBSETS), all evaluated on the same held-out
# test set with images from all 24 views.
#
# Each subset is one `cpu`-preset run (seed 0) with `--set data.view_subset=NAME`. Stages 1-2
# (shape manifold, pseudo pose regressor) count iterations, so they get the same number of
# steps as the full run; stage 3 counts epochs, so its epochs are scaled by 24 / |subset| to
# keep the same number of reconstruction steps as the full run (6 epochs of 24 views).
# The full-view row is the shipped model (bench/RESULTS.md "Tables 1-3").
#
# A subset whose run (last.pt) or evaluation (eval.json) exists is not redone.
# Usage: bash bench/posefree_fig5.sh [OUT_DIR=runs/pf_fig5] [SUBSET ...]
# ~16 min per subset on the 2-core CPU (render, train, eval).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
V=${V:-$(bash "$root/scripts/setup.sh" | tail -n 1)}
cd "$root"
OUT=${1:-runs/pf_fig5}
shift || true
SUBSETS=("$@")
[ ${#SUBSETS[@]} -gt 0 ] || SUBSETS=(first second third fourth)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT"
for name in "${SUBSETS[@]}"; do
    n=$("$V/bin/python" -c "from poseshape.methods.posefree.config import VIEW_SUBSETS as S; print(len(S['$name']))")
    epochs=$(( (6 * 24 + n - 1) / n ))
    run="$OUT/$name"
    start=$(date +%s)
    if [ ! -f "$run/last.pt" ]; then
        "$V/bin/poseshape" train posefree --out "$run" --seed 0 --no-progress --set preset=cpu \
            --set data.view_subset="$name" --set recon_epochs="$epochs"
    fi
    if [ ! -f "$run/eval.json" ]; then
        "$V/bin/poseshape" eval posefree --checkpoint "$run/last.pt" --device cpu --label "$name" --out "$run/eval"
    fi
    echo "$name: $n views, $epochs reconstruction epochs, $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
done
"$V/bin/python" - "$OUT" "${SUBSETS[@]}" <<'PY'
import json, sys
from pathlib import Path
from poseshape.methods.posefree.config import VIEW_SUBSETS
out = Path(sys.argv[1])
print("| subset | training views | Table 1 IoU | CD x 0.01 | silhouette IoU | azimuth MedErr |")
print("|---|---|---:|---:|---:|---:|")
for name in sys.argv[2:]:
    row = json.loads((out / name / "eval.json").read_text())[name]["result"]["overall"]
    cells = [row.get(k) for k in ("iou", "cd", "sil_iou", "az_err")]
    fmt = ["-" if c is None else f"{c:.3f}" for c in cells]
    print(f"| {name} | {list(VIEW_SUBSETS[name])} | " + " | ".join(fmt) + " |")
PY
