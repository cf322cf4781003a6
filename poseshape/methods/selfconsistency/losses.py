"""Paper 001's losses that :mod:`poseshape.losses` lacks: the eq. 9 IoU loss and eq. 12.

``L_3drecon`` (eq. 8) is :func:`poseshape.losses.weighted_voxel_bce` with ``pos_weight =
lambda_p``; ``L_sc`` (eq. 6) is :func:`poseshape.losses.consistency.self_consistency_loss`.
"""

from __future__ import annotations

import torch

from poseshape.core.errors import ShapeError

__all__ = ["total_loss", "voxel_iou_loss"]


def voxel_iou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6, literal: bool = False) -> torch.Tensor:
    """Eq. 9: ``L_IoU = exp(1 - sum_i y_i yhat_i / sum_i (y_i + yhat_i - y_i yhat_i)) - 1``, batch mean.

    The paper prints ``+ y_i yhat_i`` in the denominator (as in its eq. 5), which bounds
    the ratio by 1/3; like :func:`~poseshape.losses.consistency.projection_iou_loss` we use the
    soft IoU of its reference [10] and keep the printed form behind ``literal=True``.

    Args:
        pred: ``(B, ...)`` sigmoid occupancy in [0, 1]; target: the same shape in [0, 1].

    Returns:
        Scalar, 0 for a perfect binary match (``literal=False``).
    """
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor) or pred.shape != target.shape:
        raise ShapeError(
            f"pred and target: expected tensors of one shape, got {tuple(getattr(pred, 'shape', ()))} "
            f"and {tuple(getattr(target, 'shape', ()))}"
        )
    if pred.dim() < 2:
        raise ShapeError(f"pred: expected a batch (B, ...), got shape {tuple(pred.shape)}")
    t = target.to(pred)
    inter = (pred * t).flatten(1).sum(1)
    union = (pred + t + (1.0 if literal else -1.0) * pred * t).flatten(1).sum(1)
    return (torch.exp(1.0 - inter / (union + eps)) - 1.0).mean()


def total_loss(
    mask: torch.Tensor, recon: torch.Tensor, iou: torch.Tensor, sc: torch.Tensor, kl: torch.Tensor, lambda_kl: float
) -> torch.Tensor:
    """Eq. 12: ``L_E = (L_m + (L_3drecon + L_IoU)) / 2 + L_sc + lambda_KL L_KL`` (scalars)."""
    return 0.5 * (mask + (recon + iou)) + sc + lambda_kl * kl
