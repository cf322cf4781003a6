#!/usr/bin/env bash
# Train the shipped default posefree model (paper 002) on PROCEDURAL chairs only, with the CPU
# preset (poseshape/methods/posefree/config.py: PRESETS["cpu"]), and export it without run-local
# data paths to poseshape/assets/posefree.pt.
# Usage: bash scripts/train_default_posefree.sh [RUN_DIR] [extra `poseshape train` arguments]
# On the shared 2-core machine: nice flock /tmp/cpu.lock bash scripts/train_default_posefree.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
V=${V:-$(bash "$root/scripts/setup.sh" | tail -n 1)}
cd "$root"
RUN=${1:-runs/posefree_default}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
start=$(date +%s)
"$V/bin/poseshape" train posefree --out "$RUN" --seed 0 --no-progress --set preset=cpu "${@:2}"
"$V/bin/python" -m poseshape.engine.checkpoint export "$RUN/last.pt" poseshape/assets/posefree.pt \
    --set data.train= --set data.test=
# store the weights as float16 (13.9 MiB instead of 27.7; they load into float32 modules)
"$V/bin/python" - <<'PY'
import torch
p = "poseshape/assets/posefree.pt"
c = torch.load(p, weights_only=True, map_location="cpu")
for sd in c["models"].values():
    for k, t in sd.items():
        if torch.is_tensor(t) and t.is_floating_point():
            sd[k] = t.half()
torch.save(c, p)
PY
"$V/bin/poseshape" eval posefree --checkpoint "$RUN/last.pt" --out "$RUN/eval"
echo "wall time: $(( $(date +%s) - start )) s"
