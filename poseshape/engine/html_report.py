"""``poseshape eval --report report.html``: one self-contained HTML page of an evaluation.

The page holds the evaluation's table, and, when the method's ``evaluate`` returns per-sample
errors (``"per_sample": {"index", "category", "rot_err_deg", "mask_iou"}``, e.g. ``reproject``),
histograms of the rotation error and the mask IoU, the mean mask IoU per category, and a
gallery of the best, median and worst cases (by rotation error): the input image with the
predicted silhouette over it. Every picture is an inline PNG (``data:`` URI), so the file can
be mailed or opened anywhere without its folder.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poseshape.core.errors import PoseshapeError
from poseshape.core.io import atomic_write
from poseshape.data.dataset import ShardDataset
from poseshape.viz import overlay_silhouette, png_bytes

__all__ = ["gallery_cases", "write_html_report"]


def _png_uri(rgb: np.ndarray) -> str:

    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


def _figure_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(per_sample: dict[str, Sequence]) -> list[tuple[str, str]]:
    """``[(title, data URI)]``: rotation-error and IoU histograms, IoU per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    rot = np.asarray(per_sample.get("rot_err_deg", []), dtype=float)
    iou = np.asarray(per_sample.get("mask_iou", []), dtype=float)
    cats = list(per_sample.get("category", []))
    if rot.size:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(rot[np.isfinite(rot)], bins=np.arange(0, 185, 10), color="#3577b5")
        ax.axvline(30, color="k", ls="--", lw=1, label="30 deg")
        ax.set_xlabel("rotation error (deg)")
        ax.set_ylabel("images")
        ax.legend()
        out.append(("Rotation error", _figure_uri(fig)))
        plt.close(fig)
    if iou.size:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(iou[np.isfinite(iou)], bins=np.linspace(0, 1, 21), color="#4a9a4a")
        ax.set_xlabel("mask IoU")
        ax.set_ylabel("images")
        out.append(("Mask IoU", _figure_uri(fig)))
        plt.close(fig)
    if iou.size and len(cats) == iou.size:
        names = sorted(set(cats))
        means = [float(np.nanmean(iou[[c == n for c in cats]])) for n in names]
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(names) + 2), 3))
        ax.bar(names, means, color="#c07a2c")
        ax.set_ylim(0, 1)
        ax.set_ylabel("mean mask IoU")
        ax.tick_params(axis="x", rotation=45)
        out.append(("Mask IoU per category", _figure_uri(fig)))
        plt.close(fig)
    return out


def gallery_cases(predictor, data_root, per_sample: dict[str, Sequence], per_group: int = 3) -> list[dict[str, Any]]:
    """The best, median and worst ``per_group`` cases by rotation error, each drawn as its input
    image with the predicted silhouette over it.

    Args:
        predictor: the evaluated predictor (run again on the chosen images only).
        data_root: the rendered test set the indices refer to (a ``poseshape data render`` folder).
        per_sample: ``{"index": [...], "rot_err_deg": [...], "mask_iou": [...], "category": [...]}``.
        per_group: cases per group.

    Returns:
        ``[{"group", "index", "category", "rot_err_deg", "mask_iou", "image": (H, W, 3) uint8}]``.
    """
    import torch
    import torch.nn.functional as F

    rot = np.asarray(per_sample["rot_err_deg"], dtype=float)
    if rot.size == 0:
        return []
    order = np.argsort(np.nan_to_num(rot, nan=1e9), kind="stable")
    k = min(per_group, rot.size)
    mid = max(0, rot.size // 2 - k // 2)
    groups = [("best", order[:k]), ("median", order[mid : mid + k]), ("worst", order[::-1][:k])]
    ds = ShardDataset(data_root)
    cases = []
    for group, picks in groups:
        for j in picks:
            idx = int(per_sample["index"][j])
            img = ds[idx]["image"].float()  # (3, H, W)
            pred = predictor(img[None])
            sil = pred.render_silhouette(0)  # (1, S, S) of the predictor's input square
            shown = F.interpolate(img[None], size=tuple(sil.shape[-2:]), mode="bilinear", align_corners=False)[0]
            cases.append(
                {
                    "group": group,
                    "index": idx,
                    "category": per_sample["category"][j] if "category" in per_sample else "",
                    "rot_err_deg": float(rot[j]),
                    "mask_iou": float(per_sample["mask_iou"][j]) if "mask_iou" in per_sample else float("nan"),
                    "image": overlay_silhouette(shown.clamp(0, 1), sil.to(torch.float32)),
                }
            )
    return cases


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}.figs img{margin:.5em;border:1px solid #ddd}
.case{display:inline-block;margin:.4em;text-align:center;font-size:.85em}
.case img{width:160px;image-rendering:pixelated;border:1px solid #ddd}"""


def write_html_report(
    path: str | os.PathLike,
    *,
    title: str,
    rows: dict[str, dict[str, Any]],
    columns: Sequence[tuple[str, str, str]],
    per_sample: dict[str, Sequence] | None = None,
    cases: Sequence[dict[str, Any]] = (),
    notes: Sequence[str] = (),
) -> Path:
    """Write the report page (atomic) and return its path.

    Args:
        path: the ``.html`` file.
        title: page title (method, checkpoint, data).
        rows, columns: the evaluation table (as :func:`poseshape.engine.report.format_table`).
        per_sample: per-sample errors for the plots (``None``: tables only, with a note).
        cases: :func:`gallery_cases` output.
        notes: lines shown under the title (commands, data paths).

    Raises:
        PoseshapeError: ``path`` does not end in ``.html`` / ``.htm``.
    """
    p = Path(path)
    if p.suffix.lower() not in (".html", ".htm"):
        raise PoseshapeError(f"--report {p}: expected an .html file")
    esc = html.escape
    heads = [h for _, h, _ in columns]
    body = ["<tr><th></th>" + "".join(f"<th>{esc(h)}</th>" for h in heads) + "</tr>"]
    for label, m in rows.items():
        cells = []
        for key, _, fmt in columns:
            v = m.get(key)
            ok = v is not None and not (isinstance(v, float) and not np.isfinite(v))
            cells.append(f"<td>{esc(fmt.format(v)) if ok else '-'}</td>")
        body.append(f"<tr><td>{esc(str(label))}</td>{''.join(cells)}</tr>")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        *(f"<p><code>{esc(n)}</code></p>" for n in notes),
        "<h2>Table</h2><table>" + "".join(body) + "</table>",
    ]
    if per_sample:
        parts.append("<h2>Plots</h2><div class='figs'>")
        parts += [
            f"<figure><img alt='{esc(t)}' src='{u}'><figcaption>{esc(t)}</figcaption></figure>"
            for t, u in _plots(per_sample)
        ]
        parts.append("</div>")
    else:
        parts.append("<p>This method's evaluation returns no per-sample errors: tables only.</p>")
    if cases:
        parts.append("<h2>Best, median and worst cases (by rotation error)</h2>")
        for group in ("best", "median", "worst"):
            mine = [c for c in cases if c["group"] == group]
            if not mine:
                continue
            parts.append(f"<h3>{group}</h3><div>")
            for c in mine:
                cap = f"#{c['index']} {c['category']}: {c['rot_err_deg']:.1f} deg, IoU {c['mask_iou']:.2f}"
                parts.append(
                    f"<div class='case'><img alt='{esc(cap)}' src='{_png_uri(c['image'])}'><br>{esc(cap)}</div>"
                )
            parts.append("</div>")
    parts.append("</body></html>\n")
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, "".join(parts))
    return p
