"""``poseshape eval``: the papers' tables for one or more checkpoints on a rendered test set.

Examples::

    poseshape eval --checkpoint runs/rp/stage_1_regress.pt --checkpoint runs/rp/last.pt \\
        --label before --label after --data data/rp/test --out runs/rp/eval
    poseshape eval --method reproject --data data/rp/test      # the shipped default model
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="evaluate checkpoints on a rendered test set (paper tables)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", default=[], help="checkpoint file (repeatable)")
    p.add_argument("--label", action="append", default=[], help="row label per checkpoint")
    p.add_argument("--method", default=None, help="use this method's shipped default model")
    p.add_argument("--data", required=True, help="rendered test set (poseshape data render)")
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N samples only")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args) -> int:
    from .errors import PoseshapeError
    from .evaluate import evaluate_predictor, format_table, results_rows, write_report
    from .predict import load_predictor

    ckpts = list(args.checkpoint) or [None]
    if ckpts == [None] and not args.method:
        raise PoseshapeError("eval: give --checkpoint FILE (repeatable) or --method NAME")
    labels = list(args.label) or [str(c) if c else f"{args.method} (default)" for c in ckpts]
    if len(labels) != len(ckpts):
        raise PoseshapeError(f"eval: {len(labels)} --label for {len(ckpts)} checkpoints")
    results = {}
    for label, ck in zip(labels, ckpts):
        pred = load_predictor(checkpoint=ck, method=args.method, device=args.device)
        results[label] = evaluate_predictor(pred, args.data, batch_size=args.batch_size, limit=args.limit,
                                            progress=not args.no_progress)
    rows = {}
    for label, res in results.items():
        rows.update(results_rows(res, prefix=f"{label} " if len(results) > 1 else ""))
    print(format_table(rows))
    if args.out:
        js, md = write_report(results, args.out)
        print(f"wrote {js} and {md}")
    return 0
