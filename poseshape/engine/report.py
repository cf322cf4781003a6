"""Evaluation tables and reports shared by every method's ``evaluate`` (``poseshape eval``).

Each method owns its evaluation (``MethodSpec.evaluate``, in ``methods/<name>/evaluate.py``)
and returns ``{"rows": {label: {metric: value}}, "columns": [(key, header, format)], ...}``;
this module prints and writes such tables.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from poseshape.core.io import atomic_write

__all__ = ["format_table", "results_rows", "write_report"]


def format_table(
    results: dict[str, dict[str, Any]], columns: Sequence[tuple[str, str, str]], markdown: bool = False
) -> str:
    """Format ``{row label: {metric: value}}`` as a plain-text (or Markdown) table."""
    heads = ["", *[h for _, h, _ in columns]]
    body = []
    for label, m in results.items():
        cells = [label]
        for key, _, fmt in columns:
            v = m.get(key)
            cells.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v))
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [heads, *body]) for i in range(len(heads))]
    fmt_row = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt_row(heads), *(fmt_row(r) for r in body)])


def results_rows(result: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """A result ``{"overall": ..., "per_category": ...}`` -> table rows (one per category, then ``all``)."""
    rows = {f"{prefix}{k}": v for k, v in result["per_category"].items()}
    rows[f"{prefix}all"] = result["overall"]
    return rows


def write_report(
    results: dict[str, Any],
    out: str | os.PathLike,
    *,
    rows: dict[str, dict[str, Any]] | None = None,
    columns: Sequence[tuple[str, str, str]],
) -> tuple[Path, Path]:
    """Write ``{label: result}`` to ``out.json`` and the table to ``out.md`` (atomic).

    ``rows``: the table's rows (default: :func:`results_rows` of each result with
    ``overall`` / ``per_category``); ``columns``: its columns ``(key, header, format)``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    js, md = out.with_suffix(".json"), out.with_suffix(".md")
    if rows is None:
        rows = {}
        for label, res in results.items():
            rows.update(results_rows(res, prefix=f"{label} " if len(results) > 1 else ""))
    atomic_write(js, json.dumps(results, indent=2, default=str))
    atomic_write(md, format_table(rows, columns, markdown=True) + "\n")
    return js, md
