"""``poseshape eval``: the papers' tables for one or more checkpoints on a rendered test set.

Examples::

    poseshape eval --checkpoint runs/rp/stage_1_regress.pt --checkpoint runs/rp/last.pt \\
        --label before --label after --data data/rp/test --out runs/rp/eval
    poseshape eval --method reproject --data data/rp/test      # the shipped default model
    poseshape eval refine6dof --checkpoint runs/r6/last.pt      # refine6dof: its run's test split
    poseshape eval refine6dof                                   # the shipped refine6dof model
    poseshape eval --checkpoint runs/r6/last.pt --rows encoder,online --online lr=1e-4 \\
        --online render=softras --online render_size=32        # Table 2-style variant

Methods with their own paper table (``refine6dof``: Table 1 rows ``encoder``, ``online``
(paper §4.2), ``refine`` (``poseshape refine``'s multi-start pose refinement) and
``online+refine`` on the same images) evaluate by their ``MethodSpec.evaluate``; the others
by :func:`poseshape.engine.evaluate.evaluate_predictor` (paper 000's Tables 3 and 4).
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="evaluate checkpoints on a rendered test set (paper tables)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method_name", nargs="?", default=None, metavar="METHOD",
                   help="method (as `poseshape train METHOD`): its shipped model, or the method the "
                        "checkpoints must belong to; same as --method")
    p.add_argument("--checkpoint", action="append", default=[], help="checkpoint file (repeatable)")
    p.add_argument("--label", action="append", default=[], help="row label per checkpoint")
    p.add_argument("--method", default=None, help="use this method's shipped default model")
    p.add_argument("--data", default=None,
                   help="rendered test set (poseshape data render); refine6dof: default its run's test split")
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N samples only")
    p.add_argument("--batch-size", type=int, default=None, help="images per pass (default 32; refine6dof 20)")
    p.add_argument("--rows", default=None,
                   help="refine6dof: comma-separated rows among encoder, online, refine, online+refine "
                        "(default encoder,online,refine)")
    p.add_argument("--online", action="append", default=[], metavar="KEY=VALUE",
                   help="refine6dof: override an online setting (steps, batch, lr, render, sigma, loss, render_size)")
    p.add_argument("--refine", action="append", default=[], metavar="KEY=VALUE",
                   help="refine6dof: override a RefineConfig field of the refine row (e.g. starts=8)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p


def _method_rows(spec, pred, args) -> dict:
    opts = {"limit": args.limit, "progress": not args.no_progress, "online": args.online, "refine": args.refine}
    if args.batch_size is not None:
        opts["batch_size"] = args.batch_size
    if args.rows:
        opts["rows"] = [r.strip() for r in args.rows.split(",") if r.strip()]
    return spec.evaluate(pred, args.data, **opts)


def run(args) -> int:
    from poseshape.core.errors import PoseshapeError
    from poseshape.engine.evaluate import COLUMNS, evaluate_predictor, format_table, results_rows, write_report
    from poseshape.engine.registry import get_method
    from poseshape.engine.predict import load_predictor

    if args.method_name:
        if args.method and args.method != args.method_name:
            raise PoseshapeError(f"eval: METHOD {args.method_name!r} and --method {args.method!r} disagree")
        args.method = args.method_name
    ckpts = list(args.checkpoint) or [None]
    if ckpts == [None] and not args.method:
        raise PoseshapeError("eval: give --checkpoint FILE (repeatable) or --method NAME")
    labels = list(args.label) or [str(c) if c else f"{args.method} (default)" for c in ckpts]
    if len(labels) != len(ckpts):
        raise PoseshapeError(f"eval: {len(labels)} --label for {len(ckpts)} checkpoints")
    results, rows, columns = {}, {}, None
    prefix = len(ckpts) > 1
    for label, ck in zip(labels, ckpts):
        pred = load_predictor(checkpoint=ck, method=args.method, device=args.device)
        spec = get_method(pred.method)
        if spec.evaluate is not None:
            res = _method_rows(spec, pred, args)
            part = {}
            for k, v in res["rows"].items():
                part[f"{label} {k}" if prefix else k] = v
                for cat, m in (v.get("per_category") or {}).items():  # a multi-category test set
                    part[f"{label} {k} [{cat}]" if prefix else f"{k} [{cat}]"] = m
            cols = res["columns"]
        else:
            if args.rows or args.online or args.refine:
                raise PoseshapeError(f"eval: --rows/--online/--refine are options of refine6dof, not {pred.method}")
            if not args.data:
                raise PoseshapeError(f"eval: method {pred.method} needs --data (a set written by poseshape data render)")
            res = evaluate_predictor(pred, args.data, batch_size=args.batch_size or 32, limit=args.limit,
                                     progress=not args.no_progress)
            part = results_rows(res, prefix=f"{label} " if prefix else "")
            cols = COLUMNS
        if columns is not None and cols != columns:
            raise PoseshapeError("eval: the checkpoints belong to methods with different tables; evaluate them "
                                 "separately")
        columns = cols
        results[label] = res
        rows.update(part)
    print(format_table(rows, columns))
    if args.out:
        js, md = write_report(results, args.out, rows=rows, columns=columns)
        print(f"wrote {js} and {md}")
    return 0
