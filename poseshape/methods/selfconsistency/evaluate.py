"""Paper 001's tables from a trained predictor and a rendered test set (``poseshape eval
selfconsistency --data DIR``), per category and over all samples.

=====================  =====================================================================
``aligned_iou``        Table 1: IoU of the aligned 32^3 prediction and the GT voxels (> 0.5)
``rot_err``            Table 2: mean geodesic rotation error, degrees (``rot_med``: median)
``elev_err``           Table 2: mean absolute elevation error, degrees
``mask_iou``           Table 2: IoU of the mask decoder's 48^2 output and the GT mask
``posed_pp``           Table 3: pose-aware 48^3 IoU, predicted shape & predicted pose vs GT
``posed_pg``           Table 3: predicted shape & GT pose
``posed_gp``           Table 3: GT shape & predicted pose
``proj_pp .. proj_gg``  Table 4: IoU of the 48^2 projection ``1 - q_pen`` (> 0.5) and the GT
                       mask, for (pred | GT shape) x (pred | GT pose)
``flip``               share of azimuth errors above 150 deg (the ~180 deg symmetric flips)
=====================  =====================================================================

GT pose-aware grids are the GT voxels moved by the GT pose with eq. 7 (threshold 0.5).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from poseshape.core.errors import PoseshapeError
from poseshape.engine.report import results_rows
from poseshape.methods.selfconsistency.data import SelfConsistencySamples
from poseshape.methods.selfconsistency.frame import pose_to_rt, posed_grid
from poseshape.metrics import mask_iou, rotation_error, voxel_iou
from poseshape.render.voxel import project_voxels

__all__ = ["COLUMNS", "FLIP_DEG", "evaluate", "evaluate_predictor"]

#: An azimuth error above this (degrees) counts as a symmetric ~180 deg flip.
FLIP_DEG = 150.0

COLUMNS: list[tuple[str, str, str]] = [
    ("n", "n", "{:d}"),
    ("aligned_iou", "T1 IoU", "{:.3f}"),
    ("rot_err", "T2 rot err", "{:.2f}"),
    ("rot_med", "rot med", "{:.2f}"),
    ("elev_err", "T2 elev err", "{:.2f}"),
    ("mask_iou", "T2 mask IoU", "{:.3f}"),
    ("posed_pp", "T3 pp", "{:.3f}"),
    ("posed_pg", "T3 pg", "{:.3f}"),
    ("posed_gp", "T3 gp", "{:.3f}"),
    ("proj_pp", "T4 pp", "{:.3f}"),
    ("proj_pg", "T4 pg", "{:.3f}"),
    ("proj_gp", "T4 gp", "{:.3f}"),
    ("proj_gg", "T4 gg", "{:.3f}"),
    ("flip", "flip share", "{:.3f}"),
]

_KEYS = [k for k, _, _ in COLUMNS if k not in ("n", "rot_med", "flip")] + ["az_err"]


def azimuth_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Absolute wrapped azimuth difference in degrees, ``(B,)`` in [0, 180]."""
    d = torch.remainder(pred - gt + math.pi, 2 * math.pi) - math.pi
    return d.abs().rad2deg()


def _summarise(rows: dict[str, torch.Tensor]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": int(rows["rot_err"].numel())}
    for k in _KEYS:
        if k != "az_err":
            out[k] = float(rows[k].mean())
    out["rot_med"] = float(rows["rot_err"].median())
    out["flip"] = float((rows["az_err"] > FLIP_DEG).float().mean())
    return out


@torch.no_grad()
def evaluate_predictor(
    predictor, data_root: str | os.PathLike, *, batch_size: int = 32, limit: int | None = None, progress: bool = True
) -> dict[str, Any]:
    """Evaluate a :class:`SelfConsistencyPredictor` on a rendered fixed-frame test set.

    Returns:
        ``{"overall": {metric: value}, "per_category": {name: {...}}, "data": str, "samples": int}``.
    """
    cfg = predictor.config
    ds = SelfConsistencySamples(data_root, cfg, limit=limit, what="test")
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    acc: dict[str, list[torch.Tensor]] = {k: [] for k in [*_KEYS, "cat"]}
    P, N = cfg.posed_res, cfg.n_samples
    for b in tqdm(loader, desc="eval", disable=not progress, dynamic_ncols=True):
        pred = predictor(b["image"])
        dev = pred.voxels.device
        gt = b["voxels"].to(dev)
        m = b["mask"].to(dev)
        K = b["K"].to(dev)
        R_gt, t = pose_to_rt(b["pose"].to(dev), cfg.distance)
        R = pred.R.to(R_gt)
        acc["aligned_iou"].append(voxel_iou(pred.voxels, gt).cpu())
        acc["rot_err"].append(rotation_error(R, R_gt).cpu())
        pose = pred.extras["pose"].to(dev)
        acc["elev_err"].append((pose[:, 1] - b["pose"][:, 1].to(dev)).abs().rad2deg().cpu())
        acc["az_err"].append(azimuth_error(pose[:, 0], b["pose"][:, 0].to(dev)).cpu())
        acc["mask_iou"].append(mask_iou(pred.extras["mask"], m).cpu())
        gt_posed = posed_grid(gt, R_gt, P) > 0.5
        acc["posed_pp"].append(voxel_iou(pred.posed_voxels, gt_posed).cpu())
        acc["posed_pg"].append(voxel_iou(posed_grid(pred.voxels, R_gt, P), gt_posed).cpu())
        acc["posed_gp"].append(voxel_iou(posed_grid(gt, R, P), gt_posed).cpu())
        for key, shape, rot in (
            ("proj_pp", pred.voxels, R),
            ("proj_pg", pred.voxels, R_gt),
            ("proj_gp", gt, R),
            ("proj_gg", gt, R_gt),
        ):
            proj = project_voxels(shape, rot, t, K, image_size=cfg.mask_res, mode="absorption", n_samples=N)
            acc[key].append(mask_iou(proj, m).cpu())
        acc["cat"].append(b["category"])
    rows = {k: torch.cat(v) for k, v in acc.items()}
    cats = rows.pop("cat")
    per_cat = {}
    for ci, name in enumerate(ds.categories):
        sel = cats == ci
        if sel.any():
            per_cat[name] = _summarise({k: v[sel] for k, v in rows.items()})
    return {"overall": _summarise(rows), "per_category": per_cat, "data": str(data_root), "samples": len(ds)}


def evaluate(
    predictor,
    data: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
    **options,
) -> dict[str, Any]:
    """``MethodSpec.evaluate`` of ``selfconsistency``: Tables 1-4 and the flip share.

    Raises:
        PoseshapeError: no ``data``, or options this method does not have.
    """
    extra = sorted(k for k, v in options.items() if v)
    if extra:
        raise PoseshapeError(f"eval: {', '.join('--' + k for k in extra)} are not options of selfconsistency")
    if data is None:
        raise PoseshapeError(
            "eval: method selfconsistency needs --data (a set written by poseshape data render --pose ring24 "
            "--framing fixed --voxels 32)"
        )
    res = evaluate_predictor(predictor, data, batch_size=batch_size, limit=limit, progress=progress)
    return {
        "rows": results_rows(res),
        "columns": COLUMNS,
        "result": res,
        "data": res["data"],
        "samples": res["samples"],
    }
