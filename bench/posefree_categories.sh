#!/usr/bin/env bash
# Paper 002, Table 1 per category: one `cpu`-preset posefree run (seed 0) per category of the
# paper's extra set (cabinet, speaker, rifle, telephone; procedural, poseshape/shapes/procedural/),
# each evaluated on
#   1. its own held-out procedural models (`poseshape eval posefree`: 8 models x 24 ring views), and
#   2. every ObjectNet3D CAD model of that category in $POSESHAPE_DATA (bench/posefree_cad.py:
#      ring24 renders with the run's camera; none of these models was trained on).
# A run (last.pt) or evaluation (eval.json) that exists is not redone.
# Usage: bash bench/posefree_categories.sh [OUT_DIR=runs/pf_cat] [CATEGORY ...]
# ~9 min per category on the 2-core CPU (render, train, both evaluations).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
V=${V:-$(bash "$root/scripts/setup.sh" | tail -n 1)}
cd "$root"
OUT=${1:-runs/pf_cat}
shift || true
CATS=("$@")
[ ${#CATS[@]} -gt 0 ] || CATS=(cabinet speaker rifle telephone)
DATA=${POSESHAPE_DATA:-$root/../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT"
for cat in "${CATS[@]}"; do
    run="$OUT/$cat"
    start=$(date +%s)
    if [ ! -f "$run/last.pt" ]; then
        "$V/bin/poseshape" train posefree --out "$run" --seed 0 --no-progress --set preset=cpu \
            --set "data.categories=[$cat]"
    fi
    if [ ! -f "$run/eval.json" ]; then
        "$V/bin/poseshape" eval posefree --checkpoint "$run/last.pt" --device cpu --label "$cat" --out "$run/eval" \
            --no-progress
    fi
    # the ObjectNet3D folder names the phone 'telephone' and the loudspeaker 'speaker', as we do
    if [ ! -f "$run/cad/eval.json" ] && [ -d "$DATA/objectnet3d_cad/CAD/$cat" ]; then
        "$V/bin/python" bench/posefree_cad.py --checkpoint "$run/last.pt" --meshes "$DATA/objectnet3d_cad/CAD" \
            --categories "$cat" --out "$run/cad"
    fi
    echo "$cat: $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
done
"$V/bin/python" - "$OUT" "${CATS[@]}" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| category | test set | n | Table 1 IoU | CD x 0.01 | silhouette IoU | azimuth MedErr |")
print("|---|---|---:|---:|---:|---:|---:|")
for cat in sys.argv[2:]:
    ev = out / cat / "eval.json"
    if ev.is_file():
        r = json.loads(ev.read_text())[cat]["result"]["overall"]
        print(f"| {cat} | procedural, held out | {r['n']} | {r['iou']:.3f} | {r['cd']:.3f} | {r['sil_iou']:.3f} | {r['az_err']:.1f} deg |")
    cad = out / cat / "cad" / "eval.json"
    if cad.is_file():
        r = json.loads(cad.read_text())
        print(f"| {cat} | ObjectNet3D CAD | {r['n']} | {r['iou']:.3f} | {r['cd']:.3f} | {r['sil_iou']:.3f} | {r['az_err']:.1f} deg |")
PY
