"""The papers' tables from a trained predictor and a rendered test set (``poseshape eval``).

Paper 000 (Tables 3 and 4), per category and over all samples:

=================  ===========================================================================
``ap2d``           2-D AP of the reprojected silhouette against the ground-truth mask in the
                   ``Q x Q`` silhouette frame (mask = pixels more than half covered)
``ap3d``           3-D AP of the pose-aware shape against the ground-truth pose-aware shape
                   (the true aligned shape moved by the true pose, :mod:`...reproject.frame`)
``ap3d_aligned``   3-D AP of the aligned shape against the true aligned shape (Table 4)
``iou3d_aligned``  IoU of the aligned shape (> 0.5) with the true aligned shape (canonical IoU)
``acc_pi6``        fraction of rotation errors below 30 degrees
``rot_mederr``     median geodesic rotation error, degrees
``trans_mederr``   median in-plane translation error over the frame size (paper: 30 px)
``iou2d``          mean silhouette IoU (extra)
=================  ===========================================================================

AP is per sample then averaged (see :func:`poseshape.metrics.average_precision`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from poseshape.core.errors import PoseshapeError
from poseshape.engine.report import results_rows
from poseshape.methods.reproject.data import RenderedSamples
from poseshape.methods.reproject.frame import pose_to_rt, posed_voxels
from poseshape.metrics import average_precision, mask_iou, rotation_error, translation_error, voxel_iou

__all__ = ["COLUMNS", "evaluate", "evaluate_predictor"]

#: Column order of the printed table: key, header, format.
COLUMNS: list[tuple[str, str, str]] = [
    ("n", "n", "{:d}"),
    ("ap2d", "2D AP", "{:.3f}"),
    ("ap3d", "3D AP", "{:.3f}"),
    ("ap3d_aligned", "3D AP aligned", "{:.3f}"),
    ("iou3d_aligned", "3D IoU aligned", "{:.3f}"),
    ("acc_pi6", "Acc pi/6", "{:.2f}"),
    ("rot_mederr", "MedErr (deg)", "{:.1f}"),
    ("trans_mederr", "trans MedErr", "{:.3f}"),
    ("iou2d", "2D IoU", "{:.3f}"),
]


def _summarise(rows: dict[str, torch.Tensor]) -> dict[str, Any]:
    rot = rows["rot"]
    return {
        "n": int(rot.numel()),
        "ap2d": float(rows["ap2d"].nanmean()),
        "ap3d": float(rows["ap3d"].nanmean()),
        "ap3d_aligned": float(rows["ap3d_aligned"].nanmean()),
        "iou3d_aligned": float(rows["iou3d_aligned"].mean()),
        "acc_pi6": float((rot < 30.0).float().mean()),
        "rot_mederr": float(rot.median()),
        "trans_mederr": float(rows["trans"].median()),
        "iou2d": float(rows["iou2d"].mean()),
    }


@torch.no_grad()
def evaluate_predictor(
    predictor, data_root: str | os.PathLike, *, batch_size: int = 32, limit: int | None = None, progress: bool = True
) -> dict[str, Any]:
    """Evaluate a posed-frame predictor (``reproject``) on a rendered test set.

    Args:
        predictor: a :class:`poseshape.engine.predictor.Predictor` with a ``config`` that has
            ``voxel_res``, ``frame_extent`` and ``image_size`` (the reproject family).
        data_root: a folder written by ``poseshape data render`` (with voxels).
        batch_size: images per forward pass.
        limit: evaluate only the first ``limit`` samples.
        progress: show a tqdm bar.

    Returns:
        ``{"overall": {metric: value}, "per_category": {name: {metric: value}},
        "data": str, "samples": int, "per_sample": {"index", "category", "rot_err_deg",
        "mask_iou": lists}}`` (``per_sample`` feeds ``poseshape eval --report``).
    """
    cfg = predictor.config
    ds = RenderedSamples(data_root, cfg, limit=limit, what="test")
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    Q, E = cfg.voxel_res, cfg.frame_extent
    acc: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("rot", "trans", "ap2d", "ap3d", "ap3d_aligned", "iou3d_aligned", "iou2d", "cat")
    }
    for b in tqdm(loader, desc="eval", disable=not progress, dynamic_ncols=True):
        pred = predictor(b["image"], b.get("image_mask"))
        dev = pred.voxels.device
        pose = b["pose"].to(dev)
        aligned_gt = b["aligned"].to(dev)
        R_gt, t_gt = pose_to_rt(pose)
        acc["rot"].append(rotation_error(pred.R.to(R_gt.dtype), R_gt).cpu())
        # translation in pixels of the Q x Q silhouette frame, over the frame size (Table 3)
        to_px = Q / E
        acc["trans"].append(translation_error(pred.t[:, :2] * to_px, t_gt[:, :2] * to_px, frame_size=float(Q)).cpu())
        gt_posed = posed_voxels(aligned_gt, pose, E, out_size=pred.posed_voxels.shape[-1]) > 0.5
        acc["ap3d"].append(average_precision(pred.posed_voxels, gt_posed, reduction="none").cpu())
        acc["ap3d_aligned"].append(average_precision(pred.voxels, aligned_gt > 0.5, reduction="none").cpu())
        acc["iou3d_aligned"].append(voxel_iou(pred.voxels, aligned_gt).cpu())
        sil = pred.silhouette
        mask = b["mask"].to(dev)
        if sil.shape[-1] != mask.shape[-1]:
            sil = torch.nn.functional.interpolate(sil, size=mask.shape[-2:], mode="area")
        acc["ap2d"].append(average_precision(sil, mask > 0.5, reduction="none").cpu())
        acc["iou2d"].append(mask_iou(sil, mask).cpu())
        acc["cat"].append(b["category"])
    rows = {k: torch.cat(v) for k, v in acc.items()}
    cats = rows.pop("cat")
    per_cat = {}
    for ci, name in enumerate(ds.categories):
        sel = cats == ci
        if sel.any():
            per_cat[name] = _summarise({k: v[sel] for k, v in rows.items()})
    per_sample = {
        "index": list(range(len(cats))),
        "category": [ds.categories[int(c)] for c in cats],
        "rot_err_deg": [float(v) for v in rows["rot"]],
        "mask_iou": [float(v) for v in rows["iou2d"]],
        "iou3d_aligned": [float(v) for v in rows["iou3d_aligned"]],
    }
    return {
        "overall": _summarise(rows),
        "per_category": per_cat,
        "data": str(data_root),
        "samples": len(ds),
        "per_sample": per_sample,
    }


def evaluate(
    predictor,
    data: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
    **options,
) -> dict[str, Any]:
    """``MethodSpec.evaluate`` of ``reproject`` (``poseshape eval reproject --data DIR``): paper
    000's Tables 3 and 4 per category and over all samples (:func:`evaluate_predictor`).

    Returns:
        ``{"rows": {category | "all": metrics}, "columns": COLUMNS, "result": ...}``.

    Raises:
        PoseshapeError: no ``data``, or options this method does not have.
    """
    extra = sorted(k for k, v in options.items() if v)
    if extra:
        raise PoseshapeError(f"eval: {', '.join('--' + k for k in extra)} are not options of reproject")
    if data is None:
        raise PoseshapeError("eval: method reproject needs --data (a set written by poseshape data render)")
    res = evaluate_predictor(predictor, data, batch_size=batch_size, limit=limit, progress=progress)
    return {
        "rows": results_rows(res),
        "columns": COLUMNS,
        "result": {k: v for k, v in res.items() if k != "per_sample"},
        "data": res["data"],
        "samples": res["samples"],
        "per_sample": res["per_sample"],
    }
