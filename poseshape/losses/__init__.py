"""Training losses shared by the methods.

Every loss is a pure function of tensors that returns a scalar (mean over the batch unless
``reduction="none"``). Probabilities are clamped away from 0 and 1 before a logarithm so
that no loss or gradient is ever infinite.

=========================  ===============================================================
``reprojection_bce``        paper 000 eq. 4: BCE between a re-projected silhouette and a mask
``reprojection_iou``        ``1 - soft IoU`` of silhouettes (papers 001 eq. 5, 002, 003)
``voxel_l2``                paper 000 / TL-embedding: squared error over voxels
``weighted_voxel_bce``      voxel BCE with a weight on the occupied class (3D-R2N2 style)
``kl_divergence``           KL(N(mu, exp(logvar)) || N(0, 1)) of a VAE, summed over the code
``gan_d_loss/gan_g_loss``   non-saturating GAN losses on logits (3D-GAN / 3D-VAE-GAN)
``feature_matching_l2``     L2 between discriminator features (paper 000's VAE-GAN recon.)
``wgan_gp_penalty``         WGAN-GP gradient penalty (paper 002's mesh GAN)
``anchor_losses``           anchor classification (CE) + Huber residual (paper 004)
``angle_loss``              geodesic angle between rotations, radians
=========================  ===============================================================

Paper 001's self-consistency losses (``ray_consistency_loss``, ``projection_iou_loss``,
``self_consistency_loss``, ``SelfConsistencyLoss``) are in :mod:`.consistency`, on top of the
ray renderer :func:`poseshape.render.voxel.ray_terms`; the Laplacian smoothing loss with
the meshes (:func:`poseshape.shapes.meshes.laplacian_smoothing_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from poseshape.core.checks import check_shape
from poseshape.core.errors import ShapeError

__all__ = [
    "angle_loss",
    "anchor_losses",
    "feature_matching_l2",
    "gan_d_loss",
    "gan_g_loss",
    "kl_divergence",
    "reprojection_bce",
    "reprojection_iou",
    "voxel_l2",
    "wgan_gp_penalty",
    "weighted_voxel_bce",
]

#: Probabilities are clamped to [EPS, 1 - EPS] before ``log``.
EPS = 1e-6


def _same_shape(a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ShapeError(f"{na}, {nb}: expected torch.Tensors")
    if a.shape != b.shape:
        raise ShapeError(f"{na} {tuple(a.shape)} and {nb} {tuple(b.shape)} must have the same shape")


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ShapeError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")


def reprojection_bce(
    silhouette: torch.Tensor, mask: torch.Tensor, reduction: str = "mean", eps: float = EPS
) -> torch.Tensor:
    """Paper 000, eq. 4: ``-1/Q^2 sum_j [m_j log s_j + (1 - m_j) log(1 - s_j)]`` per image.

    Args:
        silhouette: ``(B, 1, H, W)`` predicted silhouette in [0, 1] (e.g. a max-projection).
        mask: ``(B, 1, H, W)`` observed mask in [0, 1] (soft coverage allowed).
        reduction: over the batch: ``"mean"`` (default), ``"sum"`` or ``"none"`` -> ``(B,)``.
    """
    _same_shape(silhouette, mask, "silhouette", "mask")
    check_shape(silhouette, "silhouette", (1, None, None))
    s = silhouette.clamp(eps, 1 - eps)
    m = mask.to(s.dtype)
    bce = -(m * torch.log(s) + (1 - m) * torch.log1p(-s))
    return _reduce(bce.flatten(1).mean(1), reduction)


def reprojection_iou(
    silhouette: torch.Tensor, mask: torch.Tensor, reduction: str = "mean", eps: float = EPS
) -> torch.Tensor:
    """Soft-IoU loss ``1 - sum(s m) / sum(s + m - s m)`` per image, in [0, 1].

    ``silhouette`` and ``mask``: ``(B, 1, H, W)`` in [0, 1]. An image where both are empty
    gives 0 (nothing to disagree on).
    """
    _same_shape(silhouette, mask, "silhouette", "mask")
    s = silhouette.flatten(1)
    m = mask.to(s.dtype).flatten(1)
    inter = (s * m).sum(1)
    union = (s + m - s * m).sum(1)
    return _reduce(1 - (inter + eps) / (union + eps), reduction)


def voxel_l2(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Squared error summed over the voxels of each grid: ``(B, 1, D, H, W)`` -> scalar."""
    _same_shape(pred, target, "pred", "target")
    return _reduce(((pred - target.to(pred.dtype)) ** 2).flatten(1).sum(1), reduction)


def weighted_voxel_bce(
    pred: torch.Tensor, target: torch.Tensor, pos_weight: float = 1.0, reduction: str = "mean", eps: float = EPS
) -> torch.Tensor:
    """Voxel BCE averaged over the voxels of each grid, occupied voxels weighted by ``pos_weight``.

    ``pred`` ``(B, 1, D, H, W)`` occupancy in [0, 1]; ``target`` the same shape in [0, 1].
    """
    _same_shape(pred, target, "pred", "target")
    p = pred.clamp(eps, 1 - eps)
    t = target.to(p.dtype)
    bce = -(pos_weight * t * torch.log(p) + (1 - t) * torch.log1p(-p))
    return _reduce(bce.flatten(1).mean(1), reduction)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` summed over the code: ``(B, L)`` -> scalar."""
    _same_shape(mu, logvar, "mu", "logvar")
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
    return _reduce(kl.flatten(1).sum(1), reduction)


def gan_d_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss ``-log D(real) - log(1 - D(fake))`` on logits ``(B,)`` or ``(B, 1)``."""
    return F.binary_cross_entropy_with_logits(
        logit_real, torch.ones_like(logit_real)
    ) + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))


def gan_g_loss(logit_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-log D(fake)`` on logits."""
    return F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake))


def feature_matching_l2(feat_real: torch.Tensor, feat_fake: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Squared L2 between feature maps ``(B, ...)``, summed per sample (paper 000, App. I.b)."""
    _same_shape(feat_real, feat_fake, "feat_real", "feat_fake")
    return _reduce(((feat_real - feat_fake) ** 2).flatten(1).sum(1), reduction)


def wgan_gp_penalty(
    critic, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """WGAN-GP: ``weight * E[(||grad_x critic(x_hat)||_2 - 1)^2]`` on random interpolates.

    Args:
        critic: callable mapping a batch like ``real`` to scores ``(B,)`` or ``(B, 1)``.
        real, fake: ``(B, ...)`` batches of the same shape (``fake`` may carry a graph).
    """
    _same_shape(real, fake, "real", "fake")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    a = torch.rand(shape, dtype=real.dtype, device=real.device, generator=generator)
    x = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    score = critic(x)
    (g,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    return weight * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()


def anchor_losses(
    logits: torch.Tensor,
    residual_pred: torch.Tensor,
    anchor_index: torch.Tensor,
    residual_gt: torch.Tensor,
    huber_delta: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper 004's anchor classification and residual regression.

    Args:
        logits: ``(B, A)`` scores over the ``A`` anchors.
        residual_pred: ``(B, A, D)`` a residual per anchor (only the true anchor's is penalised)
            or ``(B, D)``.
        anchor_index: ``(B,)`` int64 index of the nearest anchor.
        residual_gt: ``(B, D)`` the residual to that anchor.

    Returns:
        ``(cross_entropy, huber)`` scalars.
    """
    if logits.dim() != 2 or anchor_index.shape != logits.shape[:1]:
        raise ShapeError(f"logits (B, A) / anchor_index (B,): got {tuple(logits.shape)} / {tuple(anchor_index.shape)}")
    ce = F.cross_entropy(logits, anchor_index)
    if residual_pred.dim() == 3:
        idx = anchor_index.view(-1, 1, 1).expand(-1, 1, residual_pred.shape[-1])
        residual_pred = residual_pred.gather(1, idx)[:, 0]
    _same_shape(residual_pred, residual_gt, "residual_pred", "residual_gt")
    hub = F.huber_loss(residual_pred, residual_gt, delta=huber_delta, reduction="none").sum(-1).mean()
    return ce, hub


def angle_loss(R_pred: torch.Tensor, R_gt: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Geodesic angle (radians) between rotations ``(B, 3, 3)``; smooth at 0 through acos clamp.

    Uses ``acos`` of ``(tr(R_pred^T R_gt) - 1) / 2`` clamped to ``[-1 + 1e-6, 1 - 1e-6]``,
    so that its gradient stays finite at 0 and pi.
    """
    _same_shape(R_pred, R_gt, "R_pred", "R_gt")
    check_shape(R_pred, "R_pred", (3, 3))
    tr = (R_pred * R_gt).sum((-1, -2))
    c = ((tr - 1) / 2).clamp(-1 + 1e-6, 1 - 1e-6)
    return _reduce(torch.acos(c), reduction)
