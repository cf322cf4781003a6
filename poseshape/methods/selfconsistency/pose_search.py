"""Azimuth bins found by self-consistency search (ours; off in the ``paper`` preset).

Paper 001 regresses the azimuth and lets the gradient of ``L_sc`` (eq. 6) move it.  Seen
from a wrong azimuth, the GT voxels' projection still overlaps the GT mask in places, so
``L_sc(azimuth)`` has local minima: for held-out procedural aeroplanes the basin of the true
azimuth is about +-40 deg wide, with 4-7 other local minima (``bench/selfconsistency_search.py``,
bench/RESULTS.md).  A regressor that starts in the wrong basin stays there (our ``paper``-head
model: 60-90 deg mean rotation error).

The same supervision (GT voxels and GT masks, never the GT pose) can answer the global
question directly: evaluate ``L_sc`` of the GT voxels at ``K`` bin-centre azimuths (cheaply,
without gradient, at a coarser mask and fewer ray samples), take the best bin as a
classification target for the head's bin logits, and let the full eq. 6 loss refine the
residual inside that bin.  Symmetric shapes still tie between a bin and its mirror (the car's
180 deg flips); the search does not invent pose information the masks do not hold.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from poseshape.core.errors import ShapeError
from poseshape.losses.consistency import self_consistency_loss
from poseshape.methods.selfconsistency.frame import pose_to_rt, scale_intrinsics

__all__ = ["bin_centers", "binned_azimuth", "search_bins"]


def bin_centers(bins: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """``(K,)`` bin-centre azimuths ``2 pi k / K`` wrapped to (-pi, pi], radians."""
    if int(bins) < 2:
        raise ShapeError(f"bins: expected >= 2, got {bins}")
    a = 2.0 * math.pi * torch.arange(int(bins), dtype=torch.float64) / int(bins)
    a = torch.where(a > math.pi, a - 2.0 * math.pi, a)
    if like is None:
        return a.float()
    return a.to(device=like.device, dtype=like.dtype)


def binned_azimuth(index: torch.Tensor, residual: torch.Tensor, bins: int) -> torch.Tensor:
    """Azimuth ``(B,)`` of bin ``index (B,)`` long plus ``residual (B,)`` radians, in (-pi, pi]."""
    a = 2.0 * math.pi * index.to(residual.dtype) / int(bins) + residual
    return torch.atan2(torch.sin(a), torch.cos(a))


@torch.no_grad()
def search_bins(
    voxels: torch.Tensor,
    elevation: torch.Tensor,
    K: torch.Tensor,
    mask: torch.Tensor,
    bins: int,
    distance: float,
    *,
    res: int = 24,
    n_samples: int = 32,
    lambda_ray: float = 10.0,
    lambda_proj: float = 0.25,
    sampling: str = "paper",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (azimuth bin, elevation candidate) that best explains each GT mask with its GT voxels.

    Args:
        voxels: ``(B, 1, D, D, D)`` GT aligned occupancy in [0, 1].
        elevation: ``(B,)`` or ``(B, E)`` candidate elevations, radians (e.g. the head's
            current estimate, or it and its neighbours).
        K: ``(B, 3, 3)`` pinhole intrinsics over ``mask``'s pixels.
        mask: ``(B, 1, M, M)`` GT silhouettes in [0, 1].
        bins: number of azimuth bins ``K``.
        distance: camera distance (object units, fixed translation).
        res: mask side the search renders at (the mask is area-averaged to it).
        n_samples, lambda_ray, lambda_proj, sampling: the eq. 6 loss, as
            :func:`poseshape.losses.consistency.self_consistency_loss`.

    Returns:
        ``(bin (B,) long, elevation index (B,) long, losses (B, E, K))``: the arg-min over
        all ``E x K`` candidates and the ``L_sc`` of each.
    """
    if voxels.dim() != 5 or mask.dim() != 4 or voxels.shape[0] != mask.shape[0]:
        raise ShapeError(
            f"voxels, mask: expected (B, 1, D, D, D) and (B, 1, M, M), got {tuple(voxels.shape)}, {tuple(mask.shape)}"
        )
    B, nb = voxels.shape[0], int(bins)
    els = elevation.to(voxels).reshape(B, -1)
    ne = els.shape[1]
    m = mask.to(voxels)
    Ks = K.to(voxels).expand(B, 3, 3)
    if res != m.shape[-1]:
        Ks = scale_intrinsics(Ks, res / m.shape[-1])
        m = F.adaptive_avg_pool2d(m, res)
    n = ne * nb
    az = bin_centers(nb, voxels).repeat(B * ne)
    el = els.repeat_interleave(nb, 1).reshape(-1)
    R, t = pose_to_rt(torch.stack([az, el], 1), distance)
    losses = self_consistency_loss(
        voxels.repeat_interleave(n, 0),
        R,
        t,
        Ks.repeat_interleave(n, 0),
        m.repeat_interleave(n, 0),
        n_samples=n_samples,
        lambda_ray=lambda_ray,
        lambda_proj=lambda_proj,
        sampling=sampling,
        reduction="none",
    ).view(B, ne, nb)
    best = losses.flatten(1).argmin(1)
    return best % nb, best // nb, losses
