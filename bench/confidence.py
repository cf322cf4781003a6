"""Which confidence ranks rotation failures? (issue 19, item 3)

Runs the shipped model (or ``--checkpoint``) through the user path (``reconstruct`` with the
render's mask, default refinement) on validation renders that no test table uses (the world
mix's ``val`` models and procedural nos. 120-139, seed 321; see ``bench/auto_mask.py``), and
prints the AUROC of each candidate confidence as a detector of "rotation error > 30 deg"
(1: every failure is less confident than every success; 0.5: chance; below 0.5: inverted):

  iou x p          the silhouette IoU after refinement x category probability (the confidence
                   before 2026-12-07)
  agreement        pose_agreement: (1 + cos a) / 2, a = how far refinement turned the network's rotation
  uniqueness       basin_uniqueness: 1 minus the strongest rival refinement start's weight
  agreement x uniqueness x p   the confidence now (poseshape.engine.diagnostics.confidence_terms)
  ... x min(1, iou / 0.7)      the same, also penalising a poor fit

The choice was made on these renders; the test sets' AUROC is ``bench/cross_dataset.py``'s column.

    POSESHAPE_DATA=../shared/data python bench/confidence.py --models 24 --views 2
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
from auto_mask import val_collection

from poseshape.core.errors import PoseshapeError
from poseshape.core.paths import shared_data_dir
from poseshape.data.dataset import ShardDataset
from poseshape.data.synth import render_dataset
from poseshape.engine.predictor import load_predictor
from poseshape.methods.reproject.data import reproject_synth_config
from poseshape.metrics import failure_auroc, rotation_error


def candidates(t: dict) -> dict[str, float]:
    p = t["category_probability"] if t["category_probability"] is not None else 1.0
    a, u, iou = t["pose_agreement"], t["basin_uniqueness"], t["mask_iou"]
    return {
        "iou x p": iou * p,
        "agreement": a,
        "uniqueness": u,
        "agreement x uniqueness x p": a * u * p,
        "... x min(1, iou / 0.7)": a * u * p * min(1.0, iou / 0.7),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--method", default="reproject")
    ap.add_argument("--models", type=int, default=24)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--data", default=None)
    args = ap.parse_args(argv)
    data = Path(args.data) if args.data else shared_data_dir()
    pred = load_predictor(checkpoint=args.checkpoint, method=args.method, device="cpu")
    rows = []
    with tempfile.TemporaryDirectory(prefix="confidence_") as tmp:
        for name in ("procedural", "world-val"):
            col = val_collection(name, data, args.models)
            cfg = reproject_synth_config(128, args.views, 30, "natural", seed=321)
            render_dataset(col, Path(tmp) / name, cfg, workers=1, progress=False)
            ds = ShardDataset(Path(tmp) / name, keys=("image", "mask", "R"))
            for i in range(len(ds)):
                it = ds[i]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        p = pred.reconstruct(it["image"], mask=it["mask"], refine=True)
                    except PoseshapeError:  # a shape that cannot cover the mask: no refined result
                        continue
                err = float(rotation_error(p.R[:1].double().cpu(), it["R"][None].double())[0])
                rows.append({"set": name, "err": err, **candidates(p.extras["record"]["confidence_terms"])})
    fail = np.array([r["err"] > 30 for r in rows])
    sets = {"all": np.ones(len(rows), bool)} | {
        n: np.array([r["set"] == n for r in rows]) for n in ("procedural", "world-val")
    }
    print(
        f"{len(rows)} refined images, rotation MedErr {np.median([r['err'] for r in rows]):.1f} deg, "
        f"{100 * fail.mean():.0f}% over 30 deg"
    )
    print("| confidence | " + " | ".join(f"AUROC {k} (n={int(v.sum())})" for k, v in sets.items()) + " |")
    print("|---|" + "---:|" * len(sets))
    out = {}
    for key in candidates({"category_probability": 1, "pose_agreement": 1, "basin_uniqueness": 1, "mask_iou": 1}):
        vals = np.array([r[key] for r in rows])
        out[key] = {k: failure_auroc(vals[s].tolist(), fail[s].tolist()) for k, s in sets.items()}
        print(f"| {key} | " + " | ".join(f"{v:.3f}" for v in out[key].values()) + " |")
    return out


if __name__ == "__main__":
    main()
