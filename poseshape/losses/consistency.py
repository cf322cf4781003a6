"""Paper 001's 2D-3D self-consistency losses: ``L_ray`` (eqs. 1-4), ``L_proj`` (eq. 5) and
``L_sc`` (eq. 6), plus the module form.

Two ray-sampling schemes (``sampling=``):

* ``"paper"`` (default for pinhole cameras): paper 001's fixed depth set ``d_i = i / N``,
  ``1 <= i <= N``: the ``i``-th point of pixel ``(u, v)``'s ray is
  ``l_i = d_i D ((u - u0) / fu, (v - v0) / fv, 1)`` in the camera frame, i.e. camera *depths*
  ``z_i = D i / N``, mapped to the object frame by ``X = R^T (l_i - t)`` (the paper writes
  the camera-to-object map as ``R (l_i + t)``).  The paper's depths are in normalised units;
  ours are in units of ``D = depth_far`` (default ``2 |t|``: the samples reach from the
  camera to twice the object's distance, the object centre at ``i = N / 2``).
* ``"sphere"``: :func:`poseshape.render.voxel.ray_terms`' samples on the bounding-sphere
  chord (metric spacing ``2 r / N``, ``r = sqrt(3) / 2``); also used for weak perspective,
  for which the paper defines no depth set.
"""

from __future__ import annotations

import torch
from torch import nn

from poseshape.core.checks import check_finite
from poseshape.core.errors import ShapeError
from poseshape.render.voxel import DEFAULT_MAX_POINTS, check_mask, ray_terms, ray_terms_from_pen
from poseshape.render.voxel_march import march, sample_rays, use_kernel

__all__ = [
    "RAY_SAMPLINGS",
    "SelfConsistencyLoss",
    "paper_ray_geometry",
    "paper_ray_samples",
    "projection_iou_loss",
    "ray_consistency_loss",
    "ray_terms_sampled",
    "self_consistency_loss",
]

#: Ray-sampling schemes of the losses (module docstring).
RAY_SAMPLINGS = ("paper", "sphere")


def paper_ray_geometry(
    voxels: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor,
    image_size: tuple[int, int],
    n_samples: int = 64,
    depth_far: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paper 001's ray samples (eq. 1) as :mod:`poseshape.render.voxel_march` geometry.

    Pixel centres are ``(u, v) = (j + 0.5, i + 0.5)``; sample ``i = 1..N`` of a pixel's ray
    is the camera point of depth ``z_i = depth_far * i / N`` on it (module docstring).
    Samples outside the unit cube read 0 (trilinear, zero padding).

    Args:
        voxels: ``(B, 1, D, H, W)`` aligned occupancy over the unit cube ``(d, h, w) = (z, y, x)``.
        R: ``(B, 3, 3)`` object-to-camera rotation; t: ``(B, 3)`` translation (object units).
        K: ``(B, 3, 3)`` pinhole intrinsics in pixels of an ``image_size = (H, W)`` image.
        n_samples: ``N``.
        depth_far: ``D`` (object units), a number or ``(B,)``; default ``2 |t|``.

    Returns:
        ``(base (B, H*W, 3), step (B, H*W, 3), coeffs (N,))``: sample ``i`` of pixel ``p`` is
        ``base[:, p] + coeffs[i] * step[:, p]`` (object frame), differentiable in R, t and K.
    """
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ShapeError(f"n_samples: expected a positive int, got {n_samples!r}")
    B = voxels.shape[0]
    for name, x, tail in (("R", R, (3, 3)), ("t", t, (3,)), ("K", K, (3, 3))):
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (B, *tail):
            raise ShapeError(f"{name}: expected shape {(B, *tail)}, got {tuple(getattr(x, 'shape', ()))}")
    H, W = int(image_size[0]), int(image_size[1])
    dt = voxels.dtype
    if depth_far is None:
        far = 2.0 * t.to(dt).norm(dim=-1)
    else:
        far = torch.as_tensor(depth_far, dtype=dt, device=voxels.device).reshape(-1).expand(B)
    check_finite(far, "depth_far")
    if (far <= 0).any():
        raise ShapeError("depth_far: must be > 0 (the camera must not sit at the object origin)")
    v, u = torch.meshgrid(
        torch.arange(H, device=voxels.device, dtype=dt) + 0.5,
        torch.arange(W, device=voxels.device, dtype=dt) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)], -1)  # (P, 3)
    rays = torch.einsum("bij,pj->bpi", torch.linalg.inv(K.to(dt)), pix)  # (B, P, 3), z = 1
    # X_i = R^T (d_i ray - t) = base + (i / N) step with base = -R^T t, step = D R^T ray
    Rt = R.to(dt)
    base = -torch.einsum("bk,bkj->bj", t.to(dt), Rt)[:, None, :].expand_as(rays)  # row vector times R
    step = far[:, None, None] * torch.einsum("bpk,bkj->bpj", rays, Rt)
    coeffs = torch.arange(1, n_samples + 1, device=voxels.device, dtype=dt) / n_samples
    return base, step, coeffs


def paper_ray_samples(
    voxels: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor,
    image_size: tuple[int, int],
    n_samples: int = 64,
    depth_far: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Occupancy at paper 001's ray samples (eq. 1): ``x_i = Tri(voxels, R^T (l_i - t))``.

    Arguments as :func:`paper_ray_geometry`.  Returns ``(B, H*W, N)`` occupancies, near to
    far, differentiable in voxels, R, t and K (the reference the compiled kernel matches).
    """
    return sample_rays(voxels, *paper_ray_geometry(voxels, R, t, K, image_size, n_samples, depth_far), None)


def _ray_reduce(occ: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 2-4 on ``occ (B, P, N)`` and the mask ``m (B, P)``: ``(per-pixel loss, 1 - q_pen)``."""
    trans = torch.cumprod(1.0 - occ, dim=-1)
    excl = torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)
    q = occ * excl  # eq. 2
    pen = trans[..., -1]  # eq. 3
    return m * pen + (1.0 - m) * q.sum(dim=-1), 1.0 - pen  # eq. 4


def ray_terms_sampled(
    voxels,
    R,
    t,
    mask,
    K=None,
    scale=None,
    n_samples: int = 64,
    max_points: int = DEFAULT_MAX_POINTS,
    sampling: str = "paper",
    depth_far=None,
):
    """:func:`poseshape.render.voxel.ray_terms` with the sampling scheme chosen (module docstring).

    ``sampling="paper"`` needs a pinhole ``K`` (``(B, 3, 3)`` or ``(3, 3)``) and processes
    ``max_points`` samples at a time (whole images); weak perspective (``scale``) always
    uses ``"sphere"``.  Returns ``(ray_loss, proj, m)``, each ``(B, 1, H, W)``.
    """
    if sampling not in RAY_SAMPLINGS:
        raise ShapeError(f"sampling: expected one of {RAY_SAMPLINGS}, got {sampling!r}")
    is_pinhole = isinstance(K, torch.Tensor) and K.shape[-2:] == (3, 3) and scale is None
    if sampling == "sphere" or not is_pinhole:
        if depth_far is not None:
            raise ShapeError("depth_far: only used by sampling='paper' with a pinhole K")
        return ray_terms(voxels, R, t, mask, K, scale, n_samples, max_points)
    if mask is None:
        raise ShapeError("mask: required, the observed (B, 1, H, W) silhouette")
    check_mask(mask)
    if not isinstance(voxels, torch.Tensor) or voxels.dim() != 5 or voxels.shape[1] != 1:
        raise ShapeError(f"voxels: expected shape (B, 1, D, H, W), got {tuple(getattr(voxels, 'shape', ()))}")
    B = max(voxels.shape[0], mask.shape[0], R.shape[0] if R.dim() == 3 else 1)
    vox = voxels.expand(B, *voxels.shape[1:])
    Rb = R.expand(B, 3, 3) if R.dim() == 3 else R[None].expand(B, 3, 3)
    tb = t.expand(B, 3) if t.dim() == 2 else t[None].expand(B, 3)
    Kb = K.to(vox).expand(B, 3, 3) if K.dim() == 3 else K.to(vox)[None].expand(B, 3, 3)
    H, W = mask.shape[2:]
    m = mask.to(device=vox.device, dtype=vox.dtype).expand(B, 1, H, W).reshape(B, -1)
    far = depth_far
    if isinstance(far, torch.Tensor) and far.dim() == 1 and far.shape[0] != B:
        far = far.expand(B)
    if use_kernel(vox):
        geo = paper_ray_geometry(vox, Rb, tb, Kb, (H, W), n_samples, far)
        loss, proj = ray_terms_from_pen(march(vox, *geo, None, "pen"), m)
        shape = (B, 1, H, W)
        return loss.reshape(shape), proj.reshape(shape), m.reshape(shape)
    bc = max(1, int(max_points) // max(1, H * W * n_samples))
    losses, projs = [], []
    for b0 in range(0, B, bc):
        sl = slice(b0, b0 + bc)
        f = far[sl] if isinstance(far, torch.Tensor) and far.dim() == 1 else far
        occ = paper_ray_samples(vox[sl], Rb[sl], tb[sl], Kb[sl], (H, W), n_samples, f)
        lo, pr = _ray_reduce(occ, m[sl])
        losses.append(lo)
        projs.append(pr)
    shape = (B, 1, H, W)
    return torch.cat(losses).reshape(shape), torch.cat(projs).reshape(shape), m.reshape(shape)


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
    sampling: str = "paper",
    depth_far: float | torch.Tensor | None = None,
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
        sampling: ``"paper"`` (``d_i = i / N``; pinhole) or ``"sphere"`` (module docstring).
        depth_far: the depth unit ``D`` of ``sampling="paper"`` (default ``2 |t|``).

    Returns:
        Scalar loss (or the per-pixel map), differentiable w.r.t. voxels and pose.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ShapeError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    loss, _, _ = ray_terms_sampled(voxels, R, t, mask, K, scale, n_samples, max_points, sampling, depth_far)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def projection_iou_loss(
    proj: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6, literal: bool = False, reduction: str = "mean"
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
        reduction: ``"mean"`` over the batch (paper) or ``"none"`` (``(B,)``, one per image).

    Returns:
        Scalar loss (or ``(B,)``), 0 for a perfect match (with ``literal=False``).
    """
    if reduction not in ("mean", "none"):
        raise ShapeError(f"reduction: expected 'mean' or 'none', got {reduction!r}")
    check_mask(proj, "proj")
    check_mask(mask)
    if proj.shape != mask.shape:
        raise ShapeError(f"proj and mask: shapes differ, {tuple(proj.shape)} vs {tuple(mask.shape)}")
    m = mask.to(proj)
    inter = (proj * m).flatten(1).sum(1)
    union = (proj + m + (inter.new_tensor(1.0) if literal else -1.0) * proj * m).flatten(1).sum(1)
    iou = inter / (union + eps)
    per_image = torch.exp(1.0 - iou) - 1.0
    return per_image.mean() if reduction == "mean" else per_image


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
    sampling: str = "paper",
    depth_far: float | torch.Tensor | None = None,
    reduction: str = "mean",
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
        sampling, depth_far: the ray samples, as in :func:`ray_consistency_loss`.
        reduction: ``"mean"`` (paper: one scalar for the batch) or ``"none"``: ``(B,)``, the
            loss of each image alone (its mean is the ``"mean"`` value).

    Returns:
        Scalar loss (or ``(B,)``), differentiable w.r.t. voxels and pose.
    """
    if reduction not in ("mean", "none"):
        raise ShapeError(f"reduction: expected 'mean' or 'none', got {reduction!r}")
    loss, proj, m = ray_terms_sampled(voxels, R, t, mask, K, scale, n_samples, max_points, sampling, depth_far)
    if reduction == "mean":
        return 0.5 * (lambda_ray * loss.mean() + lambda_proj * projection_iou_loss(proj, m))
    return 0.5 * (lambda_ray * loss.flatten(1).mean(1) + lambda_proj * projection_iou_loss(proj, m, reduction="none"))


class SelfConsistencyLoss(nn.Module):
    """Module form of :func:`self_consistency_loss` (paper 001's weights by default)."""

    def __init__(
        self,
        n_samples: int = 64,
        lambda_ray: float = 10.0,
        lambda_proj: float = 0.25,
        max_points: int = DEFAULT_MAX_POINTS,
        sampling: str = "paper",
        depth_far: float | None = None,
    ):
        super().__init__()
        if sampling not in RAY_SAMPLINGS:
            raise ShapeError(f"sampling: expected one of {RAY_SAMPLINGS}, got {sampling!r}")
        self.n_samples, self.lambda_ray, self.lambda_proj = n_samples, lambda_ray, lambda_proj
        self.max_points, self.sampling, self.depth_far = max_points, sampling, depth_far

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
            sampling=self.sampling,
            depth_far=self.depth_far,
        )
