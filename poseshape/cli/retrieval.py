"""``poseshape retrieval``: tools of the ``retrieval`` method (paper 004).

``poseshape retrieval index --meshes DIR --out DB`` embeds every mesh of a folder (any
:class:`~poseshape.data.collections.MeshCollection` layout, or ``procedural``) with a trained
retrieval model's stage-I network and writes a database file the predictor can search
(``--set database=DB`` at load time, or ``RetrievalPredictor.use_database``). Files that
fail to load are skipped with a warning naming each, and counted; an empty result is an
error. Examples::

    poseshape retrieval index --meshes ../shared/data/pascal3d_cad --out runs/rt/pascal.db \\
        --checkpoint runs/rt/last.pt
    poseshape retrieval index --meshes procedural --categories car,chair --per-category 8 --out cars.db
"""

from __future__ import annotations

import argparse
import time

from poseshape.cli.args import output_path
from poseshape.engine.predictor import load_predictor
from poseshape.methods.retrieval.database import (
    ModelBank,
    collection_buffers,
    embed_models,
    open_collection,
    save_database,
)
from poseshape.methods.retrieval.train import index_rotations

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "retrieval",
        help="retrieval method tools (build a CAD database)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rs = p.add_subparsers(dest="retrieval_command", required=True)
    ix = rs.add_parser("index", help="embed a folder of meshes into a retrieval database file")
    ix.add_argument("--meshes", required=True, help="mesh folder (any collection layout) or 'procedural'")
    ix.add_argument("--out", type=output_path, required=True, help="database file to write (e.g. cad.db)")
    ix.add_argument("--checkpoint", default=None, help="retrieval checkpoint (default: the shipped model)")
    ix.add_argument("--categories", default="", help="comma-separated categories to keep (default: all)")
    ix.add_argument("--per-category", type=int, default=4, help="procedural models per category")
    ix.add_argument("--seed", type=int, default=0, help="procedural seed")
    ix.add_argument("--device", default="cpu")
    return p


def run(args) -> int:
    t0 = time.perf_counter()
    pred = load_predictor(args.checkpoint, method="retrieval", device=args.device)
    cats = [c for c in args.categories.split(",") if c] or None
    if args.meshes == "procedural" and cats is None:
        cats = list(pred.config.data.categories)
    coll = open_collection(args.meshes, cats, args.per_category, args.seed)
    buffers, skipped = collection_buffers(coll, pred.config.voxel_res)
    bank = ModelBank()
    bank.set(**buffers)
    bank.set_embeddings(embed_models(pred.embed, bank.voxels, index_rotations(pred.config)), pred.fingerprint)
    path = save_database(args.out, bank, skipped)
    print(
        f"retrieval index: {len(bank)} models embedded, {len(skipped)} skipped "
        f"-> {path} ({time.perf_counter() - t0:.1f} s)"
    )
    for p, why in skipped:
        print(f"  skipped {p}: {why}")
    return 0
