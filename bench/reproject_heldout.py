"""Shipped ``reproject`` on held-out procedural test splits: the training seed and another seed.

Renders the ``test`` split (model-level, 10 %) of the procedural aeroplane / car / chair
collection with the data engine's current sampling, evaluates the shipped model with
:func:`poseshape.methods.reproject.evaluate.evaluate_predictor` and prints paper 000's
columns. With sampling version 1 the training-seed split repeated the training set's poses,
lights and backgrounds sample for sample (see docs/data.md); this script measures the honest
figure on both seeds.

    python bench/reproject_heldout.py --seeds 7 123 --models 100 --views 12
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from poseshape.data.synth import SAMPLING_VERSION, render_dataset
from poseshape.engine.predictor import default_checkpoint, load_predictor
from poseshape.engine.report import format_table, results_rows
from poseshape.methods.reproject.data import reproject_synth_config
from poseshape.methods.reproject.evaluate import COLUMNS, evaluate_predictor


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 123])
    ap.add_argument("--models", type=int, default=100, help="procedural models per category (10 %% are test)")
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--checkpoint", default=None, help="default: the shipped reproject model")
    ap.add_argument("--out", default=None, help="where the test sets are rendered (default: a temp folder)")
    args = ap.parse_args(argv)
    pred = load_predictor(checkpoint=args.checkpoint or default_checkpoint("reproject"), method="reproject")
    root = Path(args.out or tempfile.mkdtemp(prefix="reproject_heldout_"))
    print(f"sampling version {SAMPLING_VERSION}; checkpoint {args.checkpoint or default_checkpoint('reproject')}")
    for seed in args.seeds:
        out = root / f"seed{seed}"
        cfg = reproject_synth_config(64, args.views, 30, "natural", seed=seed)
        render_dataset(
            "procedural",
            out,
            cfg,
            categories=["aeroplane", "car", "chair"],
            split="test",
            models_per_category=args.models,
            progress=False,
        )
        t0 = time.perf_counter()
        res = evaluate_predictor(pred, out, batch_size=32)
        print(
            f"\nseed {seed}: test split of {args.models} models/category x {args.views} views "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        print(format_table(results_rows(res), COLUMNS))


if __name__ == "__main__":
    main()
