"""A ``retrieval`` model searching the 73 PASCAL3D+ CAD models (issue 17, items 4 and 5).

By default the shipped model, trained on procedural shapes only; ``--checkpoint RUN/last.pt`` takes
another one, e.g. a run trained on the CAD renders (``--set data.meshes=../shared/data/pascal3d_cad``,
whose training views use the config's train seed, never the test seed used here). Its database is every CAD
model of ``../shared/data/pascal3d_cad`` (embedded by its stage-I network, as
``poseshape retrieval index --meshes ... --out DB`` does), and the queries are renders of those
models with the method's own camera (``framing="fixed"``, the config's test seed, so unseen
appearances): top-1 retrieval among the 73 models, rotation MedErr and Acc@pi/6, overall and per
category, plus the small / large halves by mask area.

    POSESHAPE_DATA=../shared/data python bench/retrieval_pascal3d.py [--views 4] [--checkpoint RUN/last.pt]
        [--rows full small large occluded truncated]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import poseshape
from poseshape.core.paths import shared_data_status
from poseshape.data.synth import render_dataset
from poseshape.methods.retrieval.data import synth_config
from poseshape.methods.retrieval.database import ModelBank, collection_buffers, embed_models, open_collection
from poseshape.methods.retrieval.evaluate import COLUMNS, evaluate
from poseshape.methods.retrieval.train import index_rotations


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=4, help="query renders per CAD model")
    ap.add_argument("--checkpoint", default="retrieval", help="a retrieval checkpoint (default: the shipped model)")
    ap.add_argument(
        "--rows",
        nargs="+",
        default=["full", "small", "large"],
        help="evaluation rows (poseshape eval retrieval --rows)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    root, reason = shared_data_status()
    if reason is not None:
        raise SystemExit(f"needs the shared data: {reason}")
    t0 = time.perf_counter()
    pred = poseshape.load(args.checkpoint, method="retrieval", device="cpu")
    cfg = pred.config
    coll = open_collection(str(root / "pascal3d_cad"))
    buffers, skipped = collection_buffers(coll, cfg.voxel_res)
    bank = ModelBank()
    bank.set(**buffers)
    bank.set_embeddings(embed_models(pred.embed, bank.voxels, index_rotations(cfg)), pred.fingerprint)
    pred.use_bank(bank, where="pascal3d_cad")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "queries"
        render_dataset(coll, folder, synth_config(cfg, args.views, cfg.data.seed + 2), progress=False)
        res = evaluate(pred, data=folder, rows=tuple(args.rows), progress=False)
    keys = [c for c in COLUMNS if c[0] != "n"]
    print(
        f"Database: {len(bank)} PASCAL3D+ CAD models ({len(skipped)} skipped); {res['samples']} queries "
        f"({args.views} renders per model); model {args.checkpoint} trained on {cfg.data.meshes} "
        f"{', '.join(cfg.data.categories) or '(all categories)'}; {time.perf_counter() - t0:.0f} s\n"
    )
    print("| row | n | " + " | ".join(c[1] for c in keys) + " |")
    print("|---|---:|" + "---:|" * len(keys))
    for name, row in res["rows"].items():
        print(f"| {name} | {row['n']} | " + " | ".join(c[2].format(row[c[0]]) for c in keys) + " |")
        for cat, r in row.get("per_category", {}).items() if name == "full" else []:
            print(f"| full [{cat}] | {r['n']} | " + " | ".join(c[2].format(r[c[0]]) for c in keys) + " |")
    print(f"\nchance top-1: {1 / len(bank):.3f}")


if __name__ == "__main__":
    main()
