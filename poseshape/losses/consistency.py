"""Paper 001's 2D-3D self-consistency losses on the voxel ray renderer
(:func:`poseshape.render.voxel.ray_terms`): ``L_ray`` (eqs. 1-4), ``L_proj`` (eq. 5) and
``L_sc`` (eq. 6), plus the module form."""

from __future__ import annotations

import torch
from torch import nn

from poseshape.core.errors import ShapeError
from poseshape.render.voxel import DEFAULT_MAX_POINTS, check_mask, ray_terms

__all__ = ["SelfConsistencyLoss", "projection_iou_loss", "ray_consistency_loss", "self_consistency_loss"]


def ray_consistency_loss(
    voxels: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    *,
    scale: float | torch.Tensor | None = None,
    n_samples: int = 64,
    reduction: str = "mean",
    max_points: int = DEFAULT_MAX_POINTS,
) -> torch.Tensor:
    """Paper 001's ray-consistency loss ``L_ray`` (eqs. 1-4, after DRC).

    For every pixel ``(u, v)`` of ``mask`` the ray is sampled at ``N = n_samples`` depths
    (eq. 1: ``x_i = Tri(voxels, X_obj(l_i))``), giving the stop probabilities
    ``q_i = x_i prod_{j<i} (1 - x_j)`` (eq. 2) and the penetration probability
    ``q_pen = prod_{j<=N} (1 - x_j)`` (eq. 3); the per-pixel loss (eq. 4) is
    ``m q_pen + (1 - m) sum_i q_i``.  ``L_ray`` is the mean over all pixels (and images).

    Args:
        voxels: ``(B, 1, D, H, W)`` aligned occupancy in [0, 1].
        R, t, K, scale: camera as in :func:`project_voxels` (weak perspective:
            ``K=None, mask=..., scale=s``).
        mask: ``(B, 1, H, W)`` observed silhouette in [0, 1] (required; sets the image
            size).
        n_samples: samples per ray (paper 001: 64).
        reduction: ``"mean"`` (paper), ``"sum"`` or ``"none"`` (``(B, 1, H, W)`` map).
        max_points: memory bound as in :func:`project_voxels`.

    Returns:
        Scalar loss (or the per-pixel map), differentiable w.r.t. voxels and pose.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ShapeError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    loss, _, _ = ray_terms(voxels, R, t, mask, K, scale, n_samples, max_points)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def projection_iou_loss(
    proj: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6, literal: bool = False
) -> torch.Tensor:
    """Paper 001's projection IoU loss (eq. 5): ``exp(1 - IoU(P, m)) - 1``, batch mean.

    ``IoU = sum_i P_i m_i / sum_i (P_i + m_i - P_i m_i)`` per image (soft IoU, sums over
    pixels).  The paper prints ``+ P_i m_i`` in the denominator, which bounds the "IoU" by
    1/3 and makes the loss minimum non-zero; we read it as the usual soft IoU (its
    reference [10]'s loss) and keep the printed form behind ``literal=True``.

    Args:
        proj: ``(B, 1, H, W)`` projection in [0, 1] (e.g. ``1 - q_pen``).
        mask: ``(B, 1, H, W)`` observed mask in [0, 1].
        eps: added to the denominator (empty projection and mask give IoU 0).
        literal: use the paper's printed ``+ P m`` denominator.

    Returns:
        Scalar loss, 0 for a perfect match (with ``literal=False``).
    """
    check_mask(proj, "proj")
    check_mask(mask)
    if proj.shape != mask.shape:
        raise ShapeError(f"proj and mask: shapes differ, {tuple(proj.shape)} vs {tuple(mask.shape)}")
    m = mask.to(proj)
    inter = (proj * m).flatten(1).sum(1)
    union = (proj + m + (inter.new_tensor(1.0) if literal else -1.0) * proj * m).flatten(1).sum(1)
    iou = inter / (union + eps)
    return (torch.exp(1.0 - iou) - 1.0).mean()


def self_consistency_loss(
    voxels: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    *,
    scale: float | torch.Tensor | None = None,
    n_samples: int = 64,
    lambda_ray: float = 10.0,
    lambda_proj: float = 0.25,
    max_points: int = DEFAULT_MAX_POINTS,
) -> torch.Tensor:
    """Paper 001's 2D-3D self-consistency loss (eq. 6).

    ``L_sc = (lambda_ray L_ray + lambda_proj L_proj) / 2`` with ``L_ray`` from
    :func:`ray_consistency_loss`, ``L_proj`` from :func:`projection_iou_loss` applied to the
    projection ``P = 1 - q_pen`` of the same rays, and the paper's weights
    ``lambda_ray = 10``, ``lambda_proj = 0.25`` as defaults.  One pass over the rays
    computes both terms.

    Args:
        voxels: ``(B, 1, D, H, W)`` aligned occupancy in [0, 1].
        R, t, K, scale: camera as in :func:`project_voxels`.
        mask: ``(B, 1, H, W)`` observed silhouette in [0, 1] (required; sets the image size).
        n_samples: samples per ray (paper 001: 64).
        lambda_ray, lambda_proj: the weights of eq. 6.
        max_points: memory bound as in :func:`project_voxels`.

    Returns:
        Scalar loss, differentiable w.r.t. voxels and pose.
    """
    loss, proj, m = ray_terms(voxels, R, t, mask, K, scale, n_samples, max_points)
    return 0.5 * (lambda_ray * loss.mean() + lambda_proj * projection_iou_loss(proj, m))


class SelfConsistencyLoss(nn.Module):
    """Module form of :func:`self_consistency_loss` (paper 001's weights by default)."""

    def __init__(
        self,
        n_samples: int = 64,
        lambda_ray: float = 10.0,
        lambda_proj: float = 0.25,
        max_points: int = DEFAULT_MAX_POINTS,
    ):
        super().__init__()
        self.n_samples, self.lambda_ray, self.lambda_proj = n_samples, lambda_ray, lambda_proj
        self.max_points = max_points

    def forward(self, voxels, R, t, K=None, mask=None, scale=None):
        return self_consistency_loss(
            voxels,
            R,
            t,
            K,
            mask,
            scale=scale,
            n_samples=self.n_samples,
            lambda_ray=self.lambda_ray,
            lambda_proj=self.lambda_proj,
            max_points=self.max_points,
        )
