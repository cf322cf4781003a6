"""Paper 002 on CAD models it never saw: Table 1's metrics of a posefree model on ``ring24``
renders of ``../shared/data`` CAD models (all models of the category, none trained on).

The renders use the checkpoint's own camera (NMR ring: 24 azimuths at elevation 30 deg,
distance 2.732, 64 x 64, fixed framing; :func:`poseshape.methods.posefree.data.synth_config`),
so only the shapes are new. The data set is rendered once into ``--out/data`` and reused.

Usage::

    python bench/posefree_cad.py                                   # shipped model, PASCAL3D+ chairs
    python bench/posefree_cad.py --checkpoint runs/pf_cabinet/last.pt \
        --meshes $POSESHAPE_DATA/objectnet3d_cad/CAD --categories cabinet --out runs/pf_cabinet/cad

Prints one JSON line ``{"set": ..., "n": ..., "iou": ..., "cd": ..., "sil_iou": ..., "az_err": ...}``
and writes it to ``--out/eval.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import poseshape
from poseshape.core.paths import shared_data_dir
from poseshape.data.synth import render_dataset
from poseshape.methods.posefree.data import synth_config
from poseshape.methods.posefree.evaluate import evaluate_predictor
from poseshape.methods.retrieval.database import open_collection


def main(argv=None) -> dict:
    data_root = shared_data_dir()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="posefree", help="checkpoint, or 'posefree' for the shipped model")
    ap.add_argument("--meshes", default=str(Path(data_root) / "pascal3d_cad" / "CAD"), help="CAD mesh folder")
    ap.add_argument("--categories", nargs="+", default=["chair"])
    ap.add_argument("--out", default="runs/posefree_cad/pascal3d_chair")
    ap.add_argument("--seed", type=int, default=1, help="render seed")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    pred = poseshape.load(args.checkpoint, method="posefree" if args.checkpoint != "posefree" else None, device="cpu")
    out = Path(args.out)
    folder = out / "data"
    t0 = time.time()
    coll = open_collection(args.meshes, args.categories)
    render_dataset(coll, folder, synth_config(pred.config, args.seed), progress=False)
    t_render = time.time() - t0
    res = evaluate_predictor(pred, folder, limit=args.limit, progress=False)
    o = res["overall"]
    row = {
        "set": f"{Path(args.meshes).parent.name}/{','.join(args.categories)}",
        "checkpoint": str(args.checkpoint),
        "n": o["n"],
        "iou": round(o["iou"], 4),
        "cd": round(o["cd"], 4),
        "sil_iou": round(o["sil_iou"], 4),
        "az_err": round(o["az_err"], 2),
        "render_s": round(t_render, 1),
        "eval_s": round(time.time() - t0 - t_render, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(row, indent=1))
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    main()
