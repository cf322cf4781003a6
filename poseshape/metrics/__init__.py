"""Evaluation metrics of the five papers: IoU, AP, chamfer / F-score, pose errors, retrieval.

Every function takes torch tensors, is batched over a leading ``B`` dimension and returns
tensors (per-sample values) or, for the ``*_stats`` summaries, plain Python floats.
Arguments are validated: wrong shapes, mismatched shapes and NaN/inf raise
:class:`poseshape.core.errors.ShapeError` naming the argument.

Conventions used throughout (see :mod:`poseshape.geometry.conventions`):

* voxels are ``(B, 1, D, H, W)`` occupancies spanning the unit cube ``[-0.5, 0.5]^3`` with
  ``(d, h, w) -> (z, y, x)``; masks are ``(B, 1, H, W)``;
* rotations act on column vectors, ``x' = R @ x``; point sets are ``(B, N, 3)`` rows, so
  a rotated point set is ``p @ R^T``; rotating a voxel grid by ``R`` gives the grid
  ``V'(x) = V(R^T x)`` (the occupied region moves the same way points do);
* angles are radians in arguments and in returned angles, except where a name says ``deg``
  (rotation errors are reported in degrees, as in the papers' tables).

Summary of the paper metrics:

=====================  ===================================================================
paper 000 (reproject)   2-D / 3-D AP (:func:`average_precision`), Acc_pi/6 + MedErr
                        (:func:`rotation_error_stats`), translation MedErr
                        (:func:`translation_error`, :func:`translation_error_stats`)
paper 001               3-D IoU (:func:`voxel_iou`), rotation error
paper 002 (posefree)    3-D IoU at 32^3 and CD x 0.01 on 2048 points, after a search over
                        the azimuth (:func:`align_azimuth_voxels`, :func:`chamfer_distance`)
paper 003 (refine6dof)  mIoU of silhouettes (:func:`mask_iou`), MVE (= MedErr) and Acc_pi/6
paper 004 (retrieval)   MedErr, Acc_pi/6, top-1 retrieval (:func:`topk_retrieval_accuracy`)
=====================  ===================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import ShapeError
from poseshape.geometry.anchors import super_fibonacci_anchors
from poseshape.geometry.rotations import (
    axis_angle_to_matrix,
    geodesic_distance,
    quaternion_to_matrix,
)
from poseshape.shapes.meshes import Mesh, sample_points
from poseshape.shapes.voxels import warp_voxels

__all__ = [
    "AzimuthAlignment",
    "RotationAlignment",
    "align_azimuth_points",
    "align_azimuth_voxels",
    "align_rotation_points",
    "align_rotation_voxels",
    "average_precision",
    "chamfer_distance",
    "failure_auroc",
    "fscore",
    "mask_iou",
    "mesh_chamfer_distance",
    "nearest_sq_dist",
    "rotate_points",
    "rotate_voxels",
    "rotation_error",
    "rotation_error_stats",
    "topk_retrieval_accuracy",
    "translation_error",
    "translation_error_stats",
    "voxel_iou",
]

#: Threshold of Acc_pi/6 (papers 000, 003, 004): a rotation counts as correct when its
#: geodesic error is strictly below pi/6 (30 degrees).
ACC_PI6_RAD = math.pi / 6

#: Soft cap on the number of elements of the pairwise-distance block that
#: :func:`nearest_sq_dist` materialises at once (2**22 floats = 16 MiB in float32).
_CHAMFER_BLOCK_ELEMS = 1 << 22
#: Above this many pairs (N x M) :func:`nearest_sq_dist` uses a k-d tree on the CPU.
_KDTREE_MIN_PAIRS = 1 << 16
#: Soft cap on the number of voxels rotated at once in the alignment searches.
_VOXEL_BLOCK_ELEMS = 1 << 22


# ----------------------------------------------------------------------------- helpers
def _as_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    return x


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ShapeError(f"{na} and {nb}: shapes must match, got {tuple(a.shape)} and {tuple(b.shape)}")


def _voxels_bdhw(x, name: str) -> torch.Tensor:
    """Accept ``(B, 1, D, H, W)`` or ``(B, D, H, W)``; return ``(B, D, H, W)``."""
    x = _as_tensor(x, name)
    if x.dim() == 5:
        if x.shape[1] != 1:
            raise ShapeError(f"{name}: expected shape (B, 1, D, H, W) or (B, D, H, W), got {tuple(x.shape)}")
        x = x[:, 0]
    elif x.dim() != 4:
        raise ShapeError(f"{name}: expected shape (B, 1, D, H, W) or (B, D, H, W), got {tuple(x.shape)}")
    check_finite(x, name)
    return x


def _masks_bhw(x, name: str) -> torch.Tensor:
    """Accept ``(B, 1, H, W)`` or ``(B, H, W)``; return ``(B, H, W)``."""
    x = _as_tensor(x, name)
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise ShapeError(f"{name}: expected shape (B, 1, H, W) or (B, H, W), got {tuple(x.shape)}")
        x = x[:, 0]
    elif x.dim() != 3:
        raise ShapeError(f"{name}: expected shape (B, 1, H, W) or (B, H, W), got {tuple(x.shape)}")
    check_finite(x, name)
    return x


def _binary_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boolean ``(B, ...)`` tensors per sample; 1 where both are empty."""
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    inter = (a & b).sum(1)
    union = (a | b).sum(1)
    iou = inter.double() / union.clamp(min=1).double()
    return torch.where(union == 0, torch.ones_like(iou), iou).float()


def _binarize(x: torch.Tensor, threshold: float) -> torch.Tensor:
    return x > threshold if x.dtype != torch.bool else x


# ----------------------------------------------------------------------------- IoU
def voxel_iou(pred: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Intersection over union of two voxel occupancy grids, per sample.

    Both grids are binarised as ``occupied = value > threshold`` (boolean grids are used
    as they are). When both the prediction and the ground truth are empty (empty union)
    the IoU is defined as **1** (a perfect prediction of nothing); when only one is empty
    it is 0.

    Args:
        pred: ``(B, 1, D, H, W)`` or ``(B, D, H, W)`` predicted occupancy (probabilities
            in [0, 1] or bool).
        gt: ground-truth occupancy of the same grid size (either layout).
        threshold: occupancy threshold.

    Returns:
        ``(B,)`` float32 IoU in [0, 1] (not differentiable; see ``losses.py`` for soft IoU).
    """
    p = _voxels_bdhw(pred, "pred")
    g = _voxels_bdhw(gt, "gt")
    _check_same_shape(p, g, "pred", "gt")
    return _binary_iou(_binarize(p, threshold), _binarize(g, threshold))


def mask_iou(pred: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Intersection over union of two silhouettes, per sample (paper 003's mIoU is its mean).

    Masks are binarised as ``value > threshold``; the IoU of two empty masks is **1**.

    Args:
        pred: ``(B, 1, H, W)`` or ``(B, H, W)`` predicted mask in [0, 1] (or bool).
        gt: ground-truth mask of the same size (either layout).
        threshold: foreground threshold.

    Returns:
        ``(B,)`` float32 IoU in [0, 1].
    """
    p = _masks_bhw(pred, "pred")
    g = _masks_bhw(gt, "gt")
    _check_same_shape(p, g, "pred", "gt")
    return _binary_iou(_binarize(p, threshold), _binarize(g, threshold))


# ----------------------------------------------------------------------------- AP
def average_precision(scores: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Average precision of per-voxel (3-D AP) or per-pixel (2-D AP) occupancy scores.

    Paper 000 (Tables 2-4) reports "AP ... following the practice of [24]" (3D-VAE-GAN,
    which follows the TL-embedding network): the predicted occupancy probabilities of all
    voxels (or silhouette pixels) of one sample are ranked against that sample's binary
    ground truth, giving one AP per sample, and the table shows the mean over samples.
    The paper's text does not spell out the averaging; per-sample-then-mean
    (``reduction="mean"``, the default) is the reading used here, and
    ``reduction="pooled"`` gives the alternative (one ranking over all voxels of all
    samples).

    AP is the step-wise sum ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score
    thresholds in decreasing order (``R_0 = 0``), with tied scores forming one threshold,
    exactly like ``sklearn.metrics.average_precision_score`` (no interpolation).

    Args:
        scores: ``(B, ...)`` real scores (e.g. occupancy probabilities), e.g.
            ``(B, 1, D, H, W)`` voxels or ``(B, 1, H, W)`` masks.
        labels: same shape, binary ground truth (bool, or numbers in {0, 1}).
        reduction: ``"none"`` -> ``(B,)`` per-sample AP; ``"mean"`` -> 0-dim mean of the
            per-sample APs; ``"pooled"`` -> 0-dim AP of all elements ranked together.

    Returns:
        AP in [0, 1] in ``scores``' floating dtype (float32 for integer scores). A sample
        whose ground truth has no positive element has an undefined AP: it is NaN for
        ``"none"`` and left out of the ``"mean"`` (which is NaN only if every sample is).
    """
    scores = _as_tensor(scores, "scores")
    labels = _as_tensor(labels, "labels")
    _check_same_shape(scores, labels, "scores", "labels")
    if scores.dim() < 1 or scores.shape[0] == 0:
        raise ShapeError(f"scores: expected shape (B, ...) with B >= 1, got {tuple(scores.shape)}")
    if reduction not in ("none", "mean", "pooled"):
        raise ValueError(f"reduction: expected 'none', 'mean' or 'pooled', got {reduction!r}")
    check_finite(scores, "scores")
    if labels.dtype != torch.bool and not ((labels == 0) | (labels == 1)).all():
        raise ShapeError("labels: expected binary values (0/1 or bool); threshold soft labels first")
    out_dtype = scores.dtype if scores.is_floating_point() else torch.float32
    s = scores.reshape(scores.shape[0], -1).double()
    y = labels.reshape(labels.shape[0], -1).double()
    if reduction == "pooled":
        s, y = s.reshape(1, -1), y.reshape(1, -1)
    ap = _ap_rows(s, y)
    if reduction == "none":
        return ap.to(out_dtype)
    if reduction == "pooled":
        return ap[0].to(out_dtype)
    return ap.nanmean().to(out_dtype)


def _ap_rows(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Step-wise AP of each row of ``s`` (B, N) against binary ``y`` (B, N), float64."""
    n = s.shape[1]
    order = torch.argsort(s, dim=1, descending=True)
    s_sorted = torch.gather(s, 1, order)
    y_sorted = torch.gather(y, 1, order)
    tps = torch.cumsum(y_sorted, 1)
    ranks = torch.arange(1, n + 1, device=s.device, dtype=s.dtype).expand_as(tps)
    precision = tps / ranks
    # The last index of each run of tied scores is where sklearn evaluates precision;
    # every positive in the run contributes (1 / P) * precision at that index.
    is_end = torch.ones_like(s_sorted, dtype=torch.bool)
    is_end[:, :-1] = s_sorted[:, :-1] != s_sorted[:, 1:]
    idx = torch.arange(n, device=s.device).expand(s.shape[0], n)
    end_idx = torch.where(is_end, idx, torch.full_like(idx, n - 1))
    end_idx = torch.flip(torch.cummin(torch.flip(end_idx, [1]), dim=1).values, [1])
    p_at_end = torch.gather(precision, 1, end_idx)
    n_pos = y.sum(1)
    ap = (y_sorted * p_at_end).sum(1) / n_pos.clamp(min=1)
    return torch.where(n_pos > 0, ap, torch.full_like(ap, float("nan")))


# ----------------------------------------------------------------------------- points
def _points_b(x, name: str) -> tuple[torch.Tensor, bool]:
    x = _as_tensor(x, name)
    if x.dim() == 2:
        x, squeeze = x[None], True
    else:
        squeeze = False
    check_shape(x, name, (None, None, 3), batch=False)
    check_finite(x, name)
    if x.shape[1] == 0:
        raise ShapeError(f"{name}: expected at least one point, got shape {tuple(x.shape)}")
    return x, squeeze


def nearest_sq_dist(p: torch.Tensor, q: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Squared Euclidean distance from every point of ``p`` to its nearest point of ``q``.

    The nearest neighbours are found without gradient: on the CPU, for more than
    ``2**16`` pairs and no ``chunk_size``, by scipy's exact k-d tree; otherwise block-wise by
    brute force (at most about ``2**22`` pairwise distances in memory at a time, or
    ``B * chunk_size * M`` when ``chunk_size`` is given). The returned distances are then recomputed exactly as
    ``|p_i - q_nn(i)|^2``, so they are differentiable in both ``p`` and ``q`` and the
    autograd graph is only ``O(B * N)``.

    Args:
        p: ``(B, N, 3)`` query points.
        q: ``(B, M, 3)`` reference points (same ``B``, same dtype/device).
        chunk_size: number of query points per block (default: automatic).

    Returns:
        ``(B, N)`` squared distances, in squared units of the input coordinates.
    """
    b, n, _ = p.shape
    m = q.shape[1]
    if chunk_size is None and p.device.type == "cpu" and n * m > _KDTREE_MIN_PAIRS:
        # large sets on the CPU: exact nearest neighbours from scipy's k-d tree,
        # O((N + M) log M) instead of N x M distances
        from scipy.spatial import cKDTree

        workers = max(1, torch.get_num_threads())
        qn, pn = q.detach().double().numpy(), p.detach().double().numpy()
        idx = torch.stack(
            [torch.from_numpy(cKDTree(qn[i]).query(pn[i], k=1, workers=workers)[1]) for i in range(b)]
        ).long()
        q_nn = torch.gather(q, 1, idx[..., None].expand(b, n, 3))
        return ((p - q_nn) ** 2).sum(-1)
    if chunk_size is None:
        chunk_size = max(1, _CHAMFER_BLOCK_ELEMS // max(1, b * m))
    idx_parts = []
    with torch.no_grad():
        # Centre both sets on a common point to limit cancellation in |p|^2 + |q|^2 - 2 p.q.
        centre = q.detach().mean(1, keepdim=True)
        qd = q.detach() - centre
        q2 = (qd * qd).sum(-1)  # (B, M)
        for start in range(0, n, chunk_size):
            pc = p.detach()[:, start : start + chunk_size] - centre
            d = (pc * pc).sum(-1, keepdim=True) + q2[:, None, :] - 2.0 * torch.bmm(pc, qd.transpose(1, 2))
            idx_parts.append(d.argmin(-1))
    idx = torch.cat(idx_parts, 1)  # (B, N)
    q_nn = torch.gather(q, 1, idx[..., None].expand(b, n, 3))
    return ((p - q_nn) ** 2).sum(-1)


def chamfer_distance(
    p: torch.Tensor,
    q: torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Symmetric chamfer distance with squared L2, per sample.

    Convention (the one paper 002 reports, as "CD (x0.01)" on 2048 surface points, i.e.
    the table shows ``100 * chamfer_distance``; the paper does not state the formula and
    this is the common PSGN / VPL one)::

        CD(p, q) = mean_i min_j |p_i - q_j|^2  +  mean_j min_i |q_j - p_i|^2

    i.e. the mean over the points of each direction, the two directions summed (not
    averaged). Memory stays bounded for large sets (see :func:`nearest_sq_dist`).

    Args:
        p: ``(B, N, 3)`` (or ``(N, 3)``) points, object-frame units (unit cube).
        q: ``(B, M, 3)`` (or ``(M, 3)``) points.
        chunk_size: query points per block (default: automatic, ~16 MiB blocks).

    Returns:
        ``(B,)`` chamfer distances in squared object units (0-dim for unbatched input);
        differentiable in ``p`` and ``q``.
    """
    p, sq_p = _points_b(p, "p")
    q, sq_q = _points_b(q, "q")
    if p.shape[0] != q.shape[0]:
        raise ShapeError(f"p and q: batch sizes must match, got {tuple(p.shape)} and {tuple(q.shape)}")
    cd = nearest_sq_dist(p, q, chunk_size).mean(1) + nearest_sq_dist(q, p, chunk_size).mean(1)
    return cd[0] if (sq_p and sq_q) else cd


def fscore(
    p: torch.Tensor,
    q: torch.Tensor,
    tau: float,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """F-score at distance ``tau`` (Tatarchenko et al. 2019), per sample.

    ``precision`` is the fraction of predicted points ``p`` whose nearest ground-truth
    point lies strictly closer than ``tau`` (Euclidean, not squared), ``recall`` the
    fraction of ground-truth points ``q`` with a predicted point closer than ``tau``, and
    ``F = 2 P R / (P + R)`` (0 when both are 0).

    Args:
        p: ``(B, N, 3)`` (or ``(N, 3)``) predicted points.
        q: ``(B, M, 3)`` (or ``(M, 3)``) ground-truth points.
        tau: distance threshold in object units (> 0).
        chunk_size: see :func:`nearest_sq_dist`.

    Returns:
        ``(f, precision, recall)``, each ``(B,)`` (0-dim for unbatched input), in [0, 1].
    """
    if not tau > 0:
        raise ValueError(f"tau: expected a positive distance, got {tau}")
    p, sq_p = _points_b(p, "p")
    q, sq_q = _points_b(q, "q")
    if p.shape[0] != q.shape[0]:
        raise ShapeError(f"p and q: batch sizes must match, got {tuple(p.shape)} and {tuple(q.shape)}")
    with torch.no_grad():
        t2 = float(tau) ** 2
        prec = (nearest_sq_dist(p, q, chunk_size) < t2).to(p.dtype).mean(1)
        rec = (nearest_sq_dist(q, p, chunk_size) < t2).to(p.dtype).mean(1)
        denom = prec + rec
        f = torch.where(denom > 0, 2 * prec * rec / denom.clamp(min=1e-12), torch.zeros_like(denom))
    if sq_p and sq_q:
        return f[0], prec[0], rec[0]
    return f, prec, rec


def mesh_chamfer_distance(mesh_a, mesh_b, num_points: int = 2048, generator: torch.Generator | None = None):
    """Chamfer distance between two meshes from ``num_points`` surface samples each.

    Paper 002 evaluates on 2048 points per surface (the default). Sampling uses
    ``poseshape.shapes.meshes.sample_points`` (area-weighted, uniform on the surface).

    Args:
        mesh_a, mesh_b: :class:`poseshape.shapes.meshes.Mesh` objects (or ``(N, 3)`` /
            ``(B, N, 3)`` point tensors, used as they are).
        num_points: surface samples per mesh.
        generator: optional ``torch.Generator`` for reproducible sampling.

    Returns:
        0-dim chamfer distance (squared object units), see :func:`chamfer_distance`.
    """
    pts = [_mesh_points(m, name, num_points, generator) for m, name in ((mesh_a, "mesh_a"), (mesh_b, "mesh_b"))]
    return chamfer_distance(pts[0], pts[1])


def _mesh_points(m, name: str, num_points: int, generator) -> torch.Tensor:
    if isinstance(m, torch.Tensor):
        return m
    if not isinstance(m, Mesh):
        raise ShapeError(f"{name}: expected a Mesh or a point tensor, got {type(m).__name__}")
    return sample_points(m, num_points, generator=generator)


# ----------------------------------------------------------------------------- pose errors
def rotation_error(R_pred: torch.Tensor, R_gt: torch.Tensor, method: str = "log") -> torch.Tensor:
    """Geodesic rotation error in **degrees**, per sample.

    ``err = arccos((trace(R_pred^T R_gt) - 1) / 2) = |log(R_pred^T R_gt)|_F / sqrt(2)``,
    the angle of the relative rotation (paper 003's equation, the "geodesic distance
    over the manifold of rotation" of papers 000 and 004), in [0, 180].

    Args:
        R_pred: ``(..., 3, 3)`` predicted rotation matrices.
        R_gt: ``(..., 3, 3)`` ground-truth rotations (same shape).
        method: ``"log"`` or ``"quaternion"``, passed to
            :func:`poseshape.geometry.rotations.geodesic_distance` (equal to rounding).

    Returns:
        ``(...)`` errors in degrees (differentiable).
    """
    R_pred = _as_tensor(R_pred, "R_pred")
    R_gt = _as_tensor(R_gt, "R_gt")
    check_shape(R_pred, "R_pred", (3, 3))
    check_shape(R_gt, "R_gt", (3, 3))
    _check_same_shape(R_pred, R_gt, "R_pred", "R_gt")
    check_finite(R_pred, "R_pred")
    check_finite(R_gt, "R_gt")
    return torch.rad2deg(geodesic_distance(R_pred, R_gt, method=method))


def rotation_error_stats(
    R_pred_or_errors: torch.Tensor,
    R_gt: torch.Tensor | None = None,
    threshold_deg: float = 30.0,
) -> dict[str, float]:
    """MedErr, Acc_pi/6 and mean error over a test set (papers 000, 003, 004).

    Args:
        R_pred_or_errors: ``(B, 3, 3)`` predicted rotations (with ``R_gt``), or ``(B,)``
            errors in degrees as returned by :func:`rotation_error` (without ``R_gt``).
        R_gt: ``(B, 3, 3)`` ground-truth rotations, or ``None``.
        threshold_deg: accuracy threshold in degrees (30 = pi/6).

    Returns:
        ``{"med_err_deg": median error (deg), "acc_pi6": fraction of errors strictly below
        threshold_deg, "mean_err_deg": mean error (deg), "n": number of samples}``.
    """
    if R_gt is None:
        err = _as_tensor(R_pred_or_errors, "errors")
        if err.dim() != 1 or err.numel() == 0:
            raise ShapeError(f"errors: expected a non-empty (B,) tensor of degrees, got {tuple(err.shape)}")
        check_finite(err, "errors")
    else:
        err = rotation_error(R_pred_or_errors, R_gt).reshape(-1)
        if err.numel() == 0:
            raise ShapeError("R_pred: expected at least one rotation")
    err = err.detach().double()
    return {
        "med_err_deg": float(torch.quantile(err, 0.5)),
        "acc_pi6": float((err < threshold_deg).double().mean()),
        "mean_err_deg": float(err.mean()),
        "n": int(err.numel()),
    }


def translation_error(t_pred: torch.Tensor, t_gt: torch.Tensor, frame_size: float = 30.0) -> torch.Tensor:
    """Translation error of paper 000: absolute offset over the silhouette frame size.

    Paper 000 (Table 3) measures "the ratio of the absolute offset against the frame size
    of the silhouette (30px)". Its translation is in-plane, ``t = [tx, ty, 0]``, so the
    offset is the Euclidean norm ``|t_pred - t_gt|_2`` in pixels, divided by the frame
    size in pixels (a 3-vector with a third component is handled the same way).

    Args:
        t_pred: ``(B, 2)`` or ``(B, 3)`` predicted translations in pixels of the frame.
        t_gt: ground-truth translations, same shape.
        frame_size: side of the silhouette frame in pixels (paper 000: 30).

    Returns:
        ``(B,)`` relative offsets (dimensionless).
    """
    t_pred = _as_tensor(t_pred, "t_pred")
    t_gt = _as_tensor(t_gt, "t_gt")
    if t_pred.dim() < 1 or t_pred.shape[-1] not in (2, 3):
        raise ShapeError(f"t_pred: expected shape (..., 2) or (..., 3), got {tuple(t_pred.shape)}")
    _check_same_shape(t_pred, t_gt, "t_pred", "t_gt")
    check_finite(t_pred, "t_pred")
    check_finite(t_gt, "t_gt")
    if not frame_size > 0:
        raise ValueError(f"frame_size: expected a positive size in pixels, got {frame_size}")
    return torch.linalg.vector_norm(t_pred - t_gt, dim=-1) / frame_size


def translation_error_stats(
    t_pred_or_errors: torch.Tensor,
    t_gt: torch.Tensor | None = None,
    frame_size: float = 30.0,
) -> dict[str, float]:
    """Median (paper 000's translation MedErr) and mean of :func:`translation_error`.

    Args:
        t_pred_or_errors: ``(B, 2|3)`` predicted translations (with ``t_gt``) or ``(B,)``
            relative errors (without).
        t_gt: ground truth or ``None``.
        frame_size: frame side in pixels.

    Returns:
        ``{"med_err": median relative offset, "mean_err": mean, "n": count}``.
    """
    if t_gt is None:
        err = _as_tensor(t_pred_or_errors, "errors")
        if err.dim() != 1 or err.numel() == 0:
            raise ShapeError(f"errors: expected a non-empty (B,) tensor, got {tuple(err.shape)}")
        check_finite(err, "errors")
    else:
        err = translation_error(t_pred_or_errors, t_gt, frame_size).reshape(-1)
        if err.numel() == 0:
            raise ShapeError("t_pred: expected at least one translation")
    err = err.detach().double()
    return {"med_err": float(torch.quantile(err, 0.5)), "mean_err": float(err.mean()), "n": int(err.numel())}


# ----------------------------------------------------------------------------- retrieval
def topk_retrieval_accuracy(
    scores: torch.Tensor,
    gt_index: torch.Tensor,
    k: int = 1,
    largest: bool = True,
    return_hits: bool = False,
):
    """Top-k retrieval accuracy (paper 004's Top-1-Acc for k = 1).

    A query counts as a hit when its ground-truth item is among the ``k`` best of its
    ``M`` candidates. Ties count **against** the query: the rank of the ground truth is
    the number of *other* candidates scoring at least as well, and the query is a hit
    when that rank is below ``k`` (so constant scores never give a spurious hit).

    Args:
        scores: ``(B, M)`` similarity scores (``largest=True``) or distances
            (``largest=False``) between each query and every database item.
        gt_index: ``(B,)`` integer index of the correct item of each query, in [0, M).
        k: how many top candidates to accept (1 <= k).
        largest: whether higher scores are better.
        return_hits: also return the ``(B,)`` boolean hit vector.

    Returns:
        The accuracy as a Python float in [0, 1] (and the hits when ``return_hits``).
    """
    scores = _as_tensor(scores, "scores")
    gt_index = _as_tensor(gt_index, "gt_index")
    if scores.dim() != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ShapeError(f"scores: expected a non-empty (B, M) tensor, got {tuple(scores.shape)}")
    b, m = scores.shape
    if gt_index.shape != (b,):
        raise ShapeError(f"gt_index: expected shape ({b},), got {tuple(gt_index.shape)}")
    if gt_index.is_floating_point() or gt_index.dtype == torch.bool:
        raise ShapeError(f"gt_index: expected an integer tensor, got {gt_index.dtype}")
    if (gt_index < 0).any() or (gt_index >= m).any():
        raise ShapeError(f"gt_index: values must lie in [0, {m}), got [{int(gt_index.min())}, {int(gt_index.max())}]")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive integer, got {k!r}")
    if torch.isnan(scores).any():
        raise ShapeError("scores: contains NaN")
    s = scores if largest else -scores
    gt_s = s.gather(1, gt_index.long()[:, None])
    rank = (s >= gt_s).sum(1) - 1  # candidates other than the gt scoring at least as well
    hits = rank < k
    acc = float(hits.double().mean())
    return (acc, hits) if return_hits else acc


# ----------------------------------------------------------------------------- rotation of shapes
def _rotations_b33(R, name: str) -> torch.Tensor:
    R = _as_tensor(R, name)
    check_shape(R, name, (3, 3))
    check_finite(R, name)
    return R.reshape(-1, 3, 3)


def rotate_voxels(voxels: torch.Tensor, R: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Rotate voxel grids about the centre of the unit cube: ``V'(x) = V(R^T x)``.

    The occupied region moves like points, ``x -> R x``. Sampling uses
    ``torch.nn.functional.affine_grid`` / ``grid_sample`` with ``align_corners=False``, in
    which the normalised coordinate is ``2 * (x, y, z)`` for every axis (see
    :mod:`poseshape.geometry.conventions`); outside the cube is empty.

    Args:
        voxels: ``(B, C, D, H, W)`` grids (or ``(B, D, H, W)``, returned in that layout).
        R: ``(B, 3, 3)`` rotations, or ``(3, 3)`` shared by the batch.
        mode: ``"bilinear"`` (trilinear) or ``"nearest"``.

    Returns:
        Rotated grids, same shape and dtype as ``voxels``; differentiable in both.
    """
    voxels = _as_tensor(voxels, "voxels")
    squeeze = voxels.dim() == 4
    v = voxels[:, None] if squeeze else voxels
    if v.dim() != 5:
        raise ShapeError(f"voxels: expected shape (B, C, D, H, W) or (B, D, H, W), got {tuple(voxels.shape)}")
    R = _rotations_b33(R, "R").to(v.dtype)
    if R.shape[0] == 1 and v.shape[0] != 1:
        R = R.expand(v.shape[0], 3, 3)
    if R.shape[0] != v.shape[0]:
        raise ShapeError(f"R: expected {v.shape[0]} rotations (one per grid) or one, got {R.shape[0]}")
    out = _rotate_voxels_unchecked(v, R, mode)
    return out[:, 0] if squeeze else out


def _rotate_voxels_unchecked(v: torch.Tensor, R: torch.Tensor, mode: str) -> torch.Tensor:
    # V'(x) = V(R^T x): the shapes layer's rigid warp with t = 0
    return warp_voxels(v, R, R.new_zeros(R.shape[0], 3), mode=mode)


def rotate_points(points: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Rotate row-vector point sets: ``(B, N, 3) @ R^T`` with ``R`` ``(B, 3, 3)`` or ``(3, 3)``."""
    return points @ R.transpose(-1, -2)


# ----------------------------------------------------------------------------- alignment searches
class AzimuthAlignment(NamedTuple):
    """Result of :func:`align_azimuth_voxels` / :func:`align_azimuth_points`.

    Attributes:
        score: ``(B,)`` best IoU (voxels) or smallest chamfer distance (points).
        azimuth: ``(B,)`` angle in radians, in [0, 2 pi), of the rotation about +Y that
            takes the prediction onto the ground truth.
        rotation: ``(B, 3, 3)`` the same rotation as a matrix.
    """

    score: torch.Tensor
    azimuth: torch.Tensor
    rotation: torch.Tensor


class RotationAlignment(NamedTuple):
    """Result of :func:`align_rotation_voxels` / :func:`align_rotation_points`.

    Attributes:
        score: ``(B,)`` best IoU (voxels) or smallest chamfer distance (points), after
            refinement when requested.
        rotation: ``(B, 3, 3)`` rotation taking the prediction onto the ground truth.
        anchor_index: ``(B,)`` index of the best candidate before refinement.
    """

    score: torch.Tensor
    rotation: torch.Tensor
    anchor_index: torch.Tensor


def _azimuth_rotations(num_azimuths: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(num_azimuths, int) or num_azimuths < 1:
        raise ValueError(f"num_azimuths: expected a positive integer, got {num_azimuths!r}")
    az = torch.arange(num_azimuths, dtype=torch.float64, device=device) * (2 * math.pi / num_azimuths)
    aa = torch.zeros(num_azimuths, 3, dtype=torch.float64, device=device)
    aa[:, 1] = az
    return az.to(dtype), axis_angle_to_matrix(aa).to(dtype)


def _voxel_iou_scorer(pred: torch.Tensor, gt: torch.Tensor, threshold: float, mode: str):
    """Return ``score(R (B, K, 3, 3)) -> (B, K)`` IoU of the rotated ``pred`` with ``gt``."""
    p = pred.float() if not pred.is_floating_point() else pred
    g = gt > threshold if gt.dtype != torch.bool else gt
    b = p.shape[0]
    nvox = p[0].numel()

    def score(R: torch.Tensor) -> torch.Tensor:
        k = R.shape[1]
        per = max(1, _VOXEL_BLOCK_ELEMS // max(1, nvox))
        out = []
        # chunk over candidates so that at most ~per grids are rotated at once
        step = max(1, per // max(1, b))
        for s in range(0, k, step):
            Rc = R[:, s : s + step].to(p.dtype)
            kc = Rc.shape[1]
            v = p[:, None].expand(b, kc, *p.shape[1:]).reshape(b * kc, 1, *p.shape[1:])
            rot = _rotate_voxels_unchecked(v, Rc.reshape(b * kc, 3, 3), mode)[:, 0]
            gg = g[:, None].expand(b, kc, *g.shape[1:]).reshape(b * kc, *g.shape[1:])
            out.append(_binary_iou(rot > threshold, gg).reshape(b, kc))
        return torch.cat(out, 1)

    return score


def _chamfer_scorer(p: torch.Tensor, q: torch.Tensor):
    """Return ``score(R (B, K, 3, 3)) -> (B, K)`` chamfer of the rotated ``p`` to ``q``."""
    b, n, _ = p.shape
    m = q.shape[1]

    def score(R: torch.Tensor) -> torch.Tensor:
        k = R.shape[1]
        step = max(1, (1 << 24) // max(1, b * n * 3 + b * m * 3))
        out = []
        for s in range(0, k, step):
            Rc = R[:, s : s + step].to(p.dtype)
            kc = Rc.shape[1]
            pr = torch.einsum("bnj,bkij->bkni", p, Rc).reshape(b * kc, n, 3)
            qq = q[:, None].expand(b, kc, m, 3).reshape(b * kc, m, 3)
            out.append(chamfer_distance(pr, qq).reshape(b, kc))
        return torch.cat(out, 1)

    return score


def _search(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    candidates: torch.Tensor,
    b: int,
    maximize: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate shared ``candidates`` (K, 3, 3) for every sample; return best (score, index)."""
    scores = score_fn(candidates[None].expand(b, *candidates.shape))
    if maximize:
        best, idx = scores.max(1)
    else:
        best, idx = scores.min(1)
    return best, idx


def _validate_voxel_pair(pred, gt) -> tuple[torch.Tensor, torch.Tensor]:
    p = _voxels_bdhw(pred, "pred")
    g = _voxels_bdhw(gt, "gt")
    _check_same_shape(p, g, "pred", "gt")
    return p, g


def _validate_point_pair(p, q) -> tuple[torch.Tensor, torch.Tensor]:
    p, _ = _points_b(p, "p")
    q, _ = _points_b(q, "q")
    if p.shape[0] != q.shape[0]:
        raise ShapeError(f"p and q: batch sizes must match, got {tuple(p.shape)} and {tuple(q.shape)}")
    return p, q


@torch.no_grad()
def align_azimuth_voxels(
    pred: torch.Tensor,
    gt: torch.Tensor,
    num_azimuths: int = 72,
    threshold: float = 0.5,
    mode: str = "bilinear",
) -> AzimuthAlignment:
    """Paper 002's evaluation alignment: the azimuth that maximises voxel IoU.

    Methods that learn their canonical frame without pose labels (paper 002, ``posefree``)
    predict shapes whose azimuth is arbitrary; paper 002 "search[es] the rotation angle to
    align the results before evaluating them". The prediction is rotated about the up
    axis +Y by ``num_azimuths`` evenly spaced angles (72 -> 5 degree steps), each rotated
    grid (resampled with ``mode`` then thresholded) is compared with the ground truth,
    and the best is returned.

    Args:
        pred: ``(B, 1, D, H, W)`` or ``(B, D, H, W)`` predicted occupancy (unit cube).
        gt: ground-truth occupancy, same grid size.
        num_azimuths: number of azimuths in [0, 2 pi).
        threshold: occupancy threshold for both grids.
        mode: ``"bilinear"`` (trilinear) or ``"nearest"`` resampling.

    Returns:
        :class:`AzimuthAlignment` ``(score=(B,) best IoU, azimuth=(B,) radians,
        rotation=(B, 3, 3))``; ``rotate_voxels(pred, rotation)`` matches ``gt`` best.
    """
    p, g = _validate_voxel_pair(pred, gt)
    dtype = p.dtype if p.is_floating_point() else torch.float32
    az, Rs = _azimuth_rotations(num_azimuths, dtype, p.device)
    best, idx = _search(_voxel_iou_scorer(p, g, threshold, mode), Rs, p.shape[0], maximize=True)
    return AzimuthAlignment(best, az[idx], Rs[idx])


@torch.no_grad()
def align_azimuth_points(p: torch.Tensor, q: torch.Tensor, num_azimuths: int = 72) -> AzimuthAlignment:
    """Azimuth (rotation about +Y) of the predicted points ``p`` minimising chamfer to ``q``.

    Args:
        p: ``(B, N, 3)`` predicted points; q: ``(B, M, 3)`` ground-truth points.
        num_azimuths: number of evenly spaced azimuths in [0, 2 pi) (72 -> 5 degrees).

    Returns:
        :class:`AzimuthAlignment` with ``score`` the smallest chamfer distance
        (see :func:`chamfer_distance`); ``rotate_points(p, rotation)`` matches ``q`` best.
    """
    p, q = _validate_point_pair(p, q)
    az, Rs = _azimuth_rotations(num_azimuths, p.dtype, p.device)
    best, idx = _search(_chamfer_scorer(p, q), Rs, p.shape[0], maximize=False)
    return AzimuthAlignment(best, az[idx], Rs[idx])


def _default_anchor_rotations(num_anchors: int, dtype, device) -> torch.Tensor:
    """``(num_anchors, 3, 3)`` near-uniform rotations (super-Fibonacci grid of the anchors module)."""
    if not isinstance(num_anchors, int) or num_anchors < 1:
        raise ValueError(f"num_anchors: expected a positive integer, got {num_anchors!r}")
    q = super_fibonacci_anchors(num_anchors, dtype=torch.float64, device=device)
    return quaternion_to_matrix(q).to(dtype=dtype, device=device)


def _anchor_spacing(R: torch.Tensor) -> float:
    """Median angle (radians) from each candidate rotation to its nearest other one."""
    k = R.shape[0]
    if k < 2:
        return math.pi / 4
    flat = R.reshape(k, 9).double()
    nn = []
    for s in range(0, k, 1024):
        tr = flat[s : s + 1024] @ flat.T  # trace(R_i^T R_j)
        tr[torch.arange(tr.shape[0]), torch.arange(s, s + tr.shape[0])] = -1.0
        nn.append(torch.arccos(((tr.max(1).values - 1) / 2).clamp(-1, 1)))
    return float(torch.cat(nn).median())


def _refine(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    R: torch.Tensor,
    best: torch.Tensor,
    step: float,
    iters: int,
    maximize: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy pattern search on SO(3) around ``R`` (B, 3, 3).

    Each iteration tries ``exp(+-step * e_i) @ R`` for the three axes; a sample moves to
    its best candidate when that improves its score, and otherwise halves its step.
    """
    b = R.shape[0]
    eye = torch.eye(3, dtype=torch.float64, device=R.device)
    dirs = torch.cat([eye, -eye], 0)  # (6, 3)
    steps = torch.full((b,), float(step), dtype=torch.float64, device=R.device)
    for _ in range(iters):
        deltas = axis_angle_to_matrix(dirs[None] * steps[:, None, None]).to(R.dtype)  # (B, 6, 3, 3)
        cand = deltas @ R[:, None]
        sc = score_fn(cand)
        cbest, cidx = sc.max(1) if maximize else sc.min(1)
        better = cbest > best if maximize else cbest < best
        R = torch.where(better[:, None, None], cand[torch.arange(b), cidx], R)
        best = torch.where(better, cbest, best)
        steps = torch.where(better, steps, steps / 2)
    return best, R


def _rotation_search(score_fn, b, rotations, num_anchors, refine, refine_iters, refine_step, maximize, dtype, device):
    if rotations is None:
        cands = _default_anchor_rotations(num_anchors, dtype, device)
    else:
        cands = _rotations_b33(rotations, "rotations").to(dtype=dtype, device=device)
        if rotations.dim() != 3 or cands.shape[0] == 0:
            raise ShapeError(f"rotations: expected a non-empty (N, 3, 3) tensor, got {tuple(rotations.shape)}")
    best, idx = _search(score_fn, cands, b, maximize)
    R = cands[idx]
    if refine and refine_iters > 0:
        step = refine_step if refine_step is not None else _anchor_spacing(cands) / 2
        best, R = _refine(score_fn, R, best, step, refine_iters, maximize)
    return RotationAlignment(best, R, idx)


@torch.no_grad()
def align_rotation_voxels(
    pred: torch.Tensor,
    gt: torch.Tensor,
    rotations: torch.Tensor | None = None,
    num_anchors: int = 512,
    threshold: float = 0.5,
    mode: str = "bilinear",
    refine: bool = False,
    refine_iters: int = 20,
    refine_step: float | None = None,
) -> RotationAlignment:
    """Best rotation over SO(3) of a predicted voxel grid to the ground truth (max IoU).

    For methods whose canonical frame is completely free. Every candidate rotation is
    applied to ``pred`` (:func:`rotate_voxels`, then thresholded) and the IoU with ``gt``
    is computed; the best candidate is optionally refined by a greedy pattern search
    (steps ``exp(+-s e_i)``, halving ``s`` on failure).

    Args:
        pred: ``(B, 1, D, H, W)`` or ``(B, D, H, W)`` predicted occupancy.
        gt: ground-truth occupancy, same grid size.
        rotations: ``(N, 3, 3)`` candidate rotations, e.g. paper 004's grid
            ``quaternion_to_matrix(quaternion_anchors(7))``; default (None):
            ``num_anchors`` near-uniform rotations from
            :func:`poseshape.geometry.anchors.super_fibonacci_anchors` (512 -> nearest
            neighbours a median 26 degrees apart).
        num_anchors: size of the default grid when ``rotations`` is None.
        threshold: occupancy threshold.
        mode: ``"bilinear"`` (trilinear) or ``"nearest"``.
        refine: run the local refinement after the grid search.
        refine_iters: refinement iterations (each evaluates 6 rotations per sample).
        refine_step: initial refinement step in radians (default: half the median
            nearest-neighbour spacing of the candidates).

    Returns:
        :class:`RotationAlignment` ``(score=(B,) IoU, rotation=(B, 3, 3),
        anchor_index=(B,))``.
    """
    p, g = _validate_voxel_pair(pred, gt)
    dtype = p.dtype if p.is_floating_point() else torch.float32
    return _rotation_search(
        _voxel_iou_scorer(p, g, threshold, mode),
        p.shape[0],
        rotations,
        num_anchors,
        refine,
        refine_iters,
        refine_step,
        True,
        dtype,
        p.device,
    )


@torch.no_grad()
def align_rotation_points(
    p: torch.Tensor,
    q: torch.Tensor,
    rotations: torch.Tensor | None = None,
    num_anchors: int = 512,
    refine: bool = False,
    refine_iters: int = 20,
    refine_step: float | None = None,
) -> RotationAlignment:
    """Best rotation over SO(3) of predicted points ``p`` onto ``q`` (min chamfer).

    Args:
        p: ``(B, N, 3)`` predicted points; q: ``(B, M, 3)`` ground-truth points.
        rotations, num_anchors, refine, refine_iters, refine_step: as in
            :func:`align_rotation_voxels`.

    Returns:
        :class:`RotationAlignment` with ``score`` the smallest chamfer distance;
        ``rotate_points(p, rotation)`` matches ``q`` best.
    """
    p, q = _validate_point_pair(p, q)
    return _rotation_search(
        _chamfer_scorer(p, q),
        p.shape[0],
        rotations,
        num_anchors,
        refine,
        refine_iters,
        refine_step,
        False,
        p.dtype,
        p.device,
    )


def failure_auroc(confidence, failed) -> float:
    """How well a confidence ranks failures: the AUROC of "low confidence" as a detector of
    ``failed`` (issue 19: "rotation error > 30 deg" against ``pose.json``'s confidence).

    Args:
        confidence: ``(N,)`` confidences (NaN entries are left out).
        failed: ``(N,)`` booleans.

    Returns:
        The probability that a random failure is less confident than a random success (ties
        count one half): 1 when every failure is less confident, 0.5 for chance; NaN without
        both classes.
    """
    from scipy.stats import mannwhitneyu

    c, f = np.asarray(confidence, float).reshape(-1), np.asarray(failed, bool).reshape(-1)
    if c.shape != f.shape:
        raise ShapeError(f"failure_auroc: {c.shape[0]} confidences for {f.shape[0]} outcomes")
    ok = np.isfinite(c)
    c, f = c[ok], f[ok]
    if f.all() or not f.any():
        return float("nan")
    u = mannwhitneyu(-c[f], -c[~f], alternative="two-sided").statistic
    return float(u / (f.sum() * (~f).sum()))
