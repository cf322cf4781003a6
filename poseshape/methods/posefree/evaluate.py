"""Paper 002's evaluation (``poseshape eval posefree [--data DIR]``), per category and overall.

=================  ===========================================================================
``iou``            Table 1: 32^3 voxel IoU of R's mesh (voxelised) and the GT voxels after the
                   best-azimuth search (paper: "search the rotation angle to align"; 5 deg steps)
``cd``             Table 1: chamfer distance x 0.01 on 2,048 surface points each (after the
                   best-azimuth search of the points)
``sil_iou``        silhouette IoU of R's mesh rendered at Rpose's azimuth and the GT mask
``az_err``         median azimuth error (deg) of Rpose after removing one global offset (the
                   pseudo poses live in G's canonical frame, whose azimuth origin is arbitrary)
``manifold_iou``   Table 2's "shape manifold" row, with ``--rows manifold``: the best 32^3 IoU
                   over 32 samples of G (azimuth search in 15 deg steps): how well the manifold
                   alone covers the test shapes (slow: 32 x 24 grid rotations per image)
=================  ===========================================================================

The default test set: the run's own held-out renders (``data.test``, or rendered into a
temporary folder from the config's ``data`` settings with the test seed).
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

import torch
from tqdm import tqdm

from poseshape.core.errors import PoseshapeError
from poseshape.engine.report import results_rows
from poseshape.methods.posefree.data import SilhouetteSamples, prepare_renders
from poseshape.metrics import align_azimuth_points, align_azimuth_voxels
from poseshape.shapes.convert import voxels_to_mesh
from poseshape.shapes.meshes import Mesh, sample_points
from poseshape.shapes.voxels import voxelize

__all__ = ["COLUMNS", "evaluate", "evaluate_predictor", "global_offset_error"]

COLUMNS: list[tuple[str, str, str]] = [
    ("n", "n", "{:d}"),
    ("iou", "T1 IoU", "{:.3f}"),
    ("cd", "T1 CD x0.01", "{:.3f}"),
    ("sil_iou", "sil IoU", "{:.3f}"),
    ("az_err", "az MedErr", "{:.1f}"),
]
N_POINTS = 2048


def global_offset_error(pred: torch.Tensor, gt: torch.Tensor, steps: int = 360) -> tuple[torch.Tensor, float]:
    """Azimuth errors ``(N,)`` in degrees after the one offset ``c`` minimising their median,
    ``|wrap(pred + c - gt)|``, and ``c`` (radians). ``pred, gt (N,)`` radians."""
    cs = torch.arange(steps, dtype=torch.float64) * (2 * math.pi / steps)
    d = pred.double()[None] + cs[:, None] - gt.double()[None]
    e = torch.atan2(torch.sin(d), torch.cos(d)).abs().rad2deg()
    k = int(e.median(1).values.argmin())
    return e[k].float(), float(cs[k])


def _points_of_voxels(vox: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    m = voxels_to_mesh(vox[0])
    if m.num_faces == 0:
        return torch.zeros(n, 3)
    return sample_points(m, n, seed=seed)


@torch.no_grad()
def evaluate_predictor(
    predictor, data_root, *, batch_size: int = 32, limit: int | None = None, progress: bool = True,
    manifold: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Table 1's metrics of a :class:`PosefreePredictor` on a ``ring24`` render folder.

    Returns:
        ``{"overall": {...}, "per_category": {name: {...}}, "data": str, "samples": int,
        "azimuths": {"pred": [...], "gt": [...]}}`` (the azimuths for Fig. 4).
    """
    cfg = predictor.config
    ds = SilhouetteSamples(data_root, cfg, limit=limit)
    cats = ds.ds.categories
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    rows: dict[str, list] = {"iou": [], "cd": [], "sil_iou": [], "az": [], "az_gt": [], "cat": [], "manifold_iou": []}
    G = predictor.models.get("G")
    gvox = None
    if manifold and G is not None:  # 32 samples of the manifold, voxelised once
        z = torch.randn(32, cfg.latent_dim, generator=torch.Generator().manual_seed(0)).to(predictor.device)
        gvox = torch.stack([voxelize(Mesh(v, G.faces.cpu()), 32).float()[None] for v in G(z).cpu()])
    seen = 0
    for b in tqdm(loader, desc="eval posefree", disable=not progress, dynamic_ncols=True):
        pred = predictor.predict(b["image"], b["mask"])
        B = b["image"].shape[0]
        gt_vox = b["voxels"]
        vox = torch.stack([voxelize(Mesh(m.verts.cpu(), m.faces.cpu()), 32).float()[None] for m in pred.meshes])
        rows["iou"].append(align_azimuth_voxels(vox, gt_vox).score)
        p_pts = torch.stack([sample_points(Mesh(m.verts.cpu(), m.faces.cpu()), N_POINTS, seed=seen + i)
                             for i, m in enumerate(pred.meshes)])  # fmt: skip
        q_pts = torch.stack([_points_of_voxels(gt_vox[i], N_POINTS, seen + i) for i in range(B)])
        rows["cd"].append(100 * align_azimuth_points(p_pts, q_pts).score)
        s, m = pred.silhouette.cpu() > 0.5, b["mask"] > 0.5
        rows["sil_iou"].append((s & m).flatten(1).sum(1).float() / (s | m).flatten(1).sum(1).clamp(min=1).float())
        rows["az"].append(pred.extras["azimuth"].cpu())
        rows["az_gt"].append(b["azimuth"])
        rows["cat"].append(torch.tensor([int(ds.ds[ds.index[seen + i]]["category"]) for i in range(B)]))
        if gvox is not None:
            best = torch.stack(
                [
                    align_azimuth_voxels(gvox, gt_vox[i : i + 1].expand(len(gvox), -1, -1, -1, -1), 24).score.max()
                    for i in range(B)
                ]
            )
            rows["manifold_iou"].append(best)
        seen += B
    cat = torch.cat(rows.pop("cat"))
    az, az_gt = torch.cat(rows.pop("az")), torch.cat(rows.pop("az_gt"))
    err, offset = global_offset_error(az, az_gt)
    vals = {k: torch.cat(v) for k, v in rows.items() if v}
    vals["az_err"] = err

    def summary(sel: torch.Tensor) -> dict[str, Any]:
        out: dict[str, Any] = {"n": int(sel.sum())}
        for k, v in vals.items():
            out[k] = float(v[sel].median()) if k == "az_err" else float(v[sel].mean())
        return out

    per = {name: summary(cat == ci) for ci, name in enumerate(cats) if bool((cat == ci).any())}
    return {
        "overall": summary(torch.ones_like(cat, dtype=torch.bool)),
        "per_category": per,
        "data": str(data_root),
        "samples": len(ds),
        "azimuth_offset_deg": math.degrees(offset),
        "azimuths": {"pred": az.tolist(), "gt": az_gt.tolist()},
    }


def evaluate(
    predictor,
    data: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
    rows: str | list[str] | None = None,
    **options,
) -> dict[str, Any]:
    """``MethodSpec.evaluate`` of ``posefree``: Table 1 (+ Table 2's manifold row with
    ``--rows manifold``).

    Raises:
        PoseshapeError: options this method does not have, an unknown row, a bad data folder.
    """
    extra = sorted(k for k, v in options.items() if v)
    if extra:
        raise PoseshapeError(f"eval: {', '.join('--' + k for k in extra)} are not options of posefree")
    wanted = [r for r in (rows.split(",") if isinstance(rows, str) else rows or []) if r]
    bad = sorted(set(wanted) - {"manifold"})
    if bad:
        raise PoseshapeError(f"eval posefree: unknown row(s) {bad}; the one optional row is 'manifold'")
    if data is None:
        if predictor.config.data.test:
            data = predictor.config.data.test
        else:
            data = prepare_renders(predictor.config, tempfile.mkdtemp(prefix="posefree_eval_"), splits=("test",))[
                "test"
            ]
    res = evaluate_predictor(
        predictor, data, batch_size=batch_size, limit=limit, progress=progress, manifold="manifold" in wanted
    )
    columns = list(COLUMNS) + ([("manifold_iou", "T2 manifold IoU", "{:.3f}")] if "manifold" in wanted else [])
    return {
        "rows": results_rows(res),
        "columns": columns,
        "result": res,
        "data": res["data"],
        "samples": res["samples"],
    }
