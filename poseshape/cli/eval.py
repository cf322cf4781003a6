"""``poseshape eval``: the papers' tables for one or more checkpoints on a rendered test set.

Examples::

    poseshape eval --checkpoint runs/rp/stage_1_regress.pt --checkpoint runs/rp/last.pt \\
        --label before --label after --data data/rp/test --out runs/rp/eval
    poseshape eval --method reproject --data data/rp/test      # the shipped default model
    poseshape eval refine6dof --checkpoint runs/r6/last.pt      # refine6dof: its run's test split
    poseshape eval refine6dof                                   # the shipped refine6dof model
    poseshape eval --checkpoint runs/r6/last.pt --rows encoder,online --online lr=1e-4 \\
        --online render=softras --online render_size=32        # Table 2-style variant
    poseshape eval reproject --data data/rp/test --report report.html   # one HTML page with plots

Methods with their own paper table (``refine6dof``: Table 1 rows ``encoder``, ``online``
(paper §4.2), ``refine`` (``poseshape refine``'s multi-start pose refinement) and
``online+refine`` on the same images) evaluate by their ``MethodSpec.evaluate``; the others
by their own hook too (``reproject``: paper 000's Tables 3 and 4,
:func:`poseshape.methods.reproject.evaluate.evaluate_predictor`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from poseshape.cli.args import int_at_least, output_path
from poseshape.core.errors import PoseshapeError
from poseshape.engine.html_report import gallery_cases, write_html_report
from poseshape.engine.predictor import load_predictor
from poseshape.engine.registry import get_method
from poseshape.engine.report import format_table, write_report

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="evaluate checkpoints on a rendered test set (paper tables)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "method_name",
        nargs="?",
        default=None,
        metavar="METHOD",
        help="method (as `poseshape train METHOD`): its shipped model, or the method the "
        "checkpoints must belong to; same as --method",
    )
    p.add_argument("--checkpoint", action="append", default=[], help="checkpoint file (repeatable)")
    p.add_argument("--label", action="append", default=[], help="row label per checkpoint")
    p.add_argument("--method", default=None, help="use this method's shipped default model")
    p.add_argument(
        "--data",
        default=None,
        help="rendered test set (poseshape data render); refine6dof: default its run's test split",
    )
    p.add_argument("--out", type=output_path, default=None, help="write OUT.json and OUT.md")
    p.add_argument(
        "--report",
        type=output_path,
        default=None,
        metavar="FILE.html",
        help="write one self-contained HTML page: the table, error histograms, IoU per category and a "
        "gallery of the best, median and worst cases (the plots need a method whose evaluation returns "
        "per-sample errors, e.g. reproject)",
    )
    p.add_argument("--limit", type=int_at_least(1), default=None, help="evaluate the first N samples only")
    p.add_argument(
        "--batch-size", type=int_at_least(1), default=None, help="images per pass (default 32; refine6dof 20)"
    )
    p.add_argument(
        "--rows",
        default=None,
        help="refine6dof: comma-separated rows among encoder, online, refine, online+refine "
        "(default encoder,online,refine)",
    )
    p.add_argument(
        "--online",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="refine6dof: override an online setting (steps, batch, lr, render, sigma, loss, render_size)",
    )
    p.add_argument(
        "--refine",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="refine6dof: override a RefineConfig field of the refine row (e.g. starts=8)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p


def _method_rows(spec, pred, args) -> dict:
    opts = {"limit": args.limit, "progress": not args.no_progress}
    if args.batch_size is not None:
        opts["batch_size"] = args.batch_size
    if args.rows:
        opts["rows"] = [r.strip() for r in args.rows.split(",") if r.strip()]
    if args.online:
        opts["online"] = args.online
    if args.refine:
        opts["refine"] = args.refine
    return spec.evaluate(pred, args.data, **opts)


def run(args) -> int:
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
    if args.report and Path(args.report).suffix.lower() not in (".html", ".htm"):
        raise PoseshapeError(f"--report {args.report}: expected an .html file")
    if args.report and Path(args.report).is_dir():
        raise PoseshapeError(f"--report {args.report}: is a folder")
    results, rows, columns = {}, {}, None
    first = None  # (predictor, result) of the first checkpoint, for the report's plots and gallery
    prefix = len(ckpts) > 1
    for label, ck in zip(labels, ckpts):
        pred = load_predictor(checkpoint=ck, method=args.method, device=args.device)
        spec = get_method(pred.method)
        if spec.evaluate is None:
            raise PoseshapeError(f"eval: method {pred.method!r} registers no evaluation")
        res = _method_rows(spec, pred, args)
        part = {}
        for k, v in res["rows"].items():
            part[f"{label} {k}" if prefix else k] = v
            for cat, m in (v.get("per_category") or {}).items():  # a multi-category test set
                part[f"{label} {k} [{cat}]" if prefix else f"{k} [{cat}]"] = m
        cols = res["columns"]
        if columns is not None and cols != columns:
            raise PoseshapeError(
                "eval: the checkpoints belong to methods with different tables; evaluate them separately"
            )
        columns = cols
        results[label] = {k: v for k, v in res.items() if k not in ("columns", "per_sample")}
        if first is None:
            first = (label, pred, res)
        rows.update(part)
    print(format_table(rows, columns))
    if args.out:
        js, md = write_report(results, args.out, rows=rows, columns=columns)
        print(f"wrote {js} and {md}")
    if args.report:
        print(f"wrote {_report(args, rows, columns, first, len(ckpts))}")
    return 0


def _report(args, rows, columns, first, n_checkpoints: int):
    """Write ``--report``: the table of every checkpoint; plots and gallery of the first."""

    label, pred, res = first
    per_sample = res.get("per_sample")
    cases = gallery_cases(pred, res["data"], per_sample) if per_sample and res.get("data") else []
    notes = [f"method {pred.method}; data {res.get('data', '?')}; {res.get('samples', '?')} samples"]
    if n_checkpoints > 1 and per_sample:
        notes.append(f"plots and gallery: {label}")
    return write_html_report(
        args.report,
        title=f"poseshape eval: {label}",
        rows=rows,
        columns=columns,
        per_sample=per_sample,
        cases=cases,
        notes=notes,
    )
