"""Paper 004's tables for a ``retrieval`` predictor (``poseshape eval retrieval``).

Rows (``rows=``):

``full``       retrieval by the nearest database embedding (the method), rotation by the
               anchor + residual heads, translation by the cell + residual head;
``head``       the same, but the model from the shape classification head's argmax (the
               paper's "shape label"; only when the database is the training models);
``small`` / ``large``   ``full`` on the test images whose mask area is below / above the median;
``occluded`` / ``truncated``   ``full`` on extra renders of the same models with occluders
               (``RealismConfig(occluder_prob=1)``) / cut by the image border
               (``truncation_prob=1``), made by the data engine (Table 4).

Metrics: ``top1`` (top-1 retrieval accuracy of the exact model, Table 2), ``MedErr`` (median
geodesic rotation error, degrees, eq. 4) and ``Acc_pi6`` (fraction below 30 degrees)
(Table 1), ``t_err`` (median translation error, object units), ``n`` images; rows of a
multi-category set carry ``per_category``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from poseshape.core.errors import PoseshapeError
from poseshape.data.synth import RealismConfig, render_dataset
from poseshape.geometry.rotations import quaternion_to_matrix
from poseshape.methods.retrieval.data import ImageSamples, config_collection, prepare_renders, synth_config
from poseshape.metrics import rotation_error, topk_retrieval_accuracy

__all__ = ["COLUMNS", "ROWS", "evaluate", "metrics_of"]

#: ``(key, header, format)`` of the table ``poseshape eval`` prints.
COLUMNS: list[tuple[str, str, str]] = [
    ("n", "n", "{:d}"),
    ("top1", "top-1", "{:.3f}"),
    ("MedErr", "MedErr (deg)", "{:.1f}"),
    ("Acc_pi6", "Acc pi/6", "{:.3f}"),
    ("t_err", "t error", "{:.3f}"),
]
ROWS = ("full", "head", "small", "large", "occluded", "truncated")
_REALISM = {
    "occluded": RealismConfig(occluder_prob=1.0),
    "truncated": RealismConfig(truncation_prob=1.0),
}


def metrics_of(hits: torch.Tensor, rot_deg: torch.Tensor, t_err: torch.Tensor) -> dict[str, float]:
    """``{"top1", "MedErr", "Acc_pi6", "t_err", "n"}`` of per-image hits, errors (deg) and t errors."""
    if len(hits) == 0:
        return {"top1": float("nan"), "MedErr": float("nan"), "Acc_pi6": float("nan"), "t_err": float("nan"), "n": 0}
    return {
        "top1": float(hits.float().mean()),
        "MedErr": float(rot_deg.median()),
        "Acc_pi6": float((rot_deg < 30).float().mean()),
        "t_err": float(t_err.median()),
        "n": int(len(hits)),
    }


@torch.no_grad()
def _run(predictor, ds: ImageSamples, limit: int | None, batch_size: int) -> dict[str, torch.Tensor]:
    n = len(ds) if limit is None else min(len(ds), int(limit))
    if n == 0:
        raise PoseshapeError("evaluate: the test set is empty")
    step = max(1, len(ds) // n)
    order = list(range(0, len(ds), step))[:n]
    acc: dict[str, list] = {k: [] for k in ("scores", "head", "gt", "rot", "t", "area", "cat")}
    for lo in range(0, n, batch_size):
        items = [ds[i] for i in order[lo : lo + batch_size]]
        img = torch.stack([it["image"] for it in items])
        out = predictor.embeddings(img)
        d = torch.cdist(out["shape"].float(), predictor.index.x)
        heads_out = predictor.heads(out["shape"], out["pose"])
        q = predictor.heads.rotation(heads_out)
        R = quaternion_to_matrix(q.double())
        gt_R = torch.stack([it["R"] for it in items]).to(R)
        acc["scores"].append(-d.cpu())
        acc["head"].append(heads_out["shape_logits"].cpu())
        acc["gt"].append(torch.stack([it["model"] for it in items]))
        acc["rot"].append(rotation_error(R.double(), gt_R.double()).cpu())
        t = predictor.regressor.translation(out).cpu()
        acc["t"].append((t - torch.stack([it["t"] for it in items])).norm(dim=-1))
        acc["area"].append(torch.stack([it["mask"].mean() for it in items]))
        acc["cat"].extend(predictor.bank.name(int(it["model"])).split("/", 1)[0] for it in items)
    res = {k: torch.cat(v) for k, v in acc.items() if k != "cat"}
    res["cat"] = acc["cat"]
    return res


def _row(res: dict, mask: torch.Tensor | None, by_head: bool) -> dict[str, Any]:
    sel = torch.ones(len(res["gt"]), dtype=torch.bool) if mask is None else mask
    scores = res["head"] if by_head else res["scores"]
    _, hits = topk_retrieval_accuracy(scores[sel], res["gt"][sel], 1, return_hits=True)
    row: dict[str, Any] = metrics_of(hits, res["rot"][sel], res["t"][sel])
    cats = sorted(set(res["cat"]))
    if len(cats) > 1:
        per = {}
        for c in cats:
            cm = sel & torch.tensor([x == c for x in res["cat"]])
            if cm.any():
                _, h = topk_retrieval_accuracy(scores[cm], res["gt"][cm], 1, return_hits=True)
                per[c] = metrics_of(h, res["rot"][cm], res["t"][cm])
        row["per_category"] = per
    return row


def evaluate(
    predictor,
    data: str | os.PathLike | None = None,
    *,
    rows=("full", "head"),
    limit: int | None = None,
    batch_size: int = 32,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Paper 004's Tables 1, 2 and 4 rows (module docstring) for a ``retrieval`` predictor.

    Args:
        data: a test set rendered from the database's models (``framing="fixed"``);
            ``None``: the config's own held-out views, rendered into ``run_dir/data/test``
            (or a temporary folder).
        rows: some of :data:`ROWS`; limit: at most this many images per set.

    Raises:
        PoseshapeError: not a retrieval predictor, unknown rows, a test set of other models.
    """
    if getattr(predictor, "method", "") != "retrieval" or not hasattr(predictor, "bank"):
        raise PoseshapeError("evaluate: expected a retrieval predictor")
    rows = list(rows)
    bad = [r for r in rows if r not in ROWS]
    if bad or not rows:
        raise PoseshapeError(f"evaluate: rows must be some of {ROWS}, got {rows}")
    cfg = predictor.config
    base = Path(run_dir) if run_dir is not None else Path(tempfile.gettempdir()) / "retrieval_eval"
    root = [Path(data)] if data else prepare_renders(cfg, base, splits=("test",))["test"]
    names = [predictor.bank.name(i) for i in range(len(predictor.bank))]
    res = _run(predictor, ImageSamples(root, names), limit, int(batch_size))
    out: dict[str, Any] = {}
    med = res["area"].median()
    for r in rows:
        if r in ("full", "head"):
            if r == "head" and res["head"].shape[1] != len(names):
                continue  # the database is not the training models: no head row
            out[r] = _row(res, None, by_head=(r == "head"))
        elif r == "small":
            out[r] = _row(res, res["area"] <= med, False)
        elif r == "large":
            out[r] = _row(res, res["area"] > med, False)
        else:
            folder = base / "data" / f"test_{r}"
            render_dataset(
                config_collection(cfg),
                folder,
                synth_config(cfg, cfg.data.test_views, cfg.data.seed + 2, realism=_REALISM[r]),
                progress=False,
            )
            out[r] = _row(_run(predictor, ImageSamples(folder, names), limit, int(batch_size)), None, False)
    return {
        "rows": out,
        "columns": COLUMNS,
        "data": ",".join(str(r) for r in root),
        "samples": int(len(res["gt"])),
        "models": len(names),
    }
