"""Differentiable projection of posed voxel grids (papers 000 and 001).

Three operations, all pure functions with thin :class:`torch.nn.Module` wrappers:

* :func:`pose_voxels` -- paper 000's rigid inverse warp ``W^-1`` (eqs. 2 and 6) and paper
  001's eq. 7: resample the *aligned* grid into a camera-aligned *posed* grid by trilinear
  inverse sampling.
* :func:`project_voxels` -- render the silhouette of the posed shape by sampling every
  pixel's camera ray through the *aligned* grid (no posed grid is materialised):
  ``mode="max"`` is paper 000's eq. 3 (max along the ray), ``mode="absorption"`` is DRC's
  ray-escape complement ``1 - prod_i (1 - x_i)`` (paper 001, ``1 - q_pen``).
* :func:`ray_terms` -- paper 001's per-ray stop / penetration probabilities (eqs. 1-4);
  the losses built on them are in :mod:`poseshape.losses.consistency`.

Conventions (``poseshape/geometry/conventions.py``): the aligned grid ``(B, 1, D, H, W)``
spans the unit cube ``[-0.5, 0.5]^3`` of the object frame with ``(d, h, w) -> (z, y, x)``;
a point maps into the OpenCV camera as ``X_cam = R @ X_obj + t``; ``K`` is in pixels with
pixel centres at ``+0.5``; weak perspective is ``u = s * (R X)[:2] + t2`` (pixels).

Ray sampling.  Every pixel's ray is sampled at ``n_samples`` points spread uniformly (in
metric units, the same spacing ``2 r / N`` for every ray) over the segment of the ray that
can meet the object's bounding sphere (radius ``r = sqrt(3)/2`` around the object origin,
which holds the whole unit cube): for a pinhole camera the segment is centred on the
ray's closest approach to the sphere centre ``t`` and has metric length ``2 r``, so the
sphere chord always lies inside it and no samples are spent far in front of or behind the
object.  The segment is a smooth (linear) function of ``t``, so the rendering is exactly
differentiable in the pose (an exact per-ray chord would put a square root with infinite
slope at grazing rays).  Samples at depth ``z <= 0`` (behind the camera) read as empty,
so an object behind the camera renders to an all-zero image with zero (not NaN)
gradients.  For weak perspective the rays are parallel to the camera's z axis and the
segment is ``z in [-r, r]`` of the rotated object frame.

Backends.  On CPU (float32 / float64) :func:`project_voxels` and :func:`ray_terms` run the
compiled ray kernel of :mod:`poseshape.render.voxel_march` (C++ / OpenMP): each ray is
clipped to the grid's box, its samples are read and reduced (max or ``prod (1 - x)``) in
one pass, and a hand-written backward recomputes them, so memory is ``O(B H W)`` (no
per-sample tensor exists) and 32^3 -> 64^2 at batch 64 runs forward + backward 10-17x
faster than the reference (``bench/render_voxel.py``, figures in ``bench/RESULTS.md``).  The pure-PyTorch reference (``grid_sample`` over all samples) runs
on other devices and dtypes, when the kernel cannot build, and with ``POSESHAPE_NO_CPP=1``;
the two agree to float tolerance in values and gradients (``tests/render/test_voxel_march.py``).

Memory (reference path).  Rays are processed in chunks of at most ``max_points`` samples
(batch and pixel chunking); with gradients enabled each chunk is wrapped in
:func:`torch.utils.checkpoint.checkpoint`, so neither the forward nor the backward pass ever
holds more than one chunk's samples (peak memory is independent of the image size).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from poseshape.core.checks import check_finite
from poseshape.core.errors import ShapeError
from poseshape.render.raster_common import split_camera
from poseshape.render.voxel_march import march, sample_rays, use_kernel
from poseshape.shapes.voxels import warp_voxels

__all__ = [
    "BOUNDING_RADIUS",
    "VoxelPoser",
    "VoxelProjector",
    "ray_terms",
    "max_projection",
    "pose_voxels",
    "project_voxels",
]

#: Radius of the object's bounding sphere (holds the whole unit cube [-0.5, 0.5]^3).
BOUNDING_RADIUS = math.sqrt(3.0) / 2.0

#: Default number of ray samples held at once per chunk (24 MiB of float32 grid
#: coordinates; a chunk's forward+backward peaks at roughly 8x that).
DEFAULT_MAX_POINTS = 1 << 21

_MODES = ("max", "absorption")


# ----------------------------------------------------------------------------------------
# argument checking
# ----------------------------------------------------------------------------------------
def _check_voxels(voxels: torch.Tensor, name: str = "voxels") -> None:
    if not isinstance(voxels, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor, got {type(voxels).__name__}")
    if voxels.dim() != 5 or voxels.shape[1] != 1 or min(voxels.shape[2:]) < 1:
        raise ShapeError(f"{name}: expected shape (B, 1, D, H, W), got {tuple(voxels.shape)}")
    if voxels.shape[0] < 1:
        raise ShapeError(f"{name}: expected a non-empty batch, got {tuple(voxels.shape)}")
    if not voxels.is_floating_point():
        raise ShapeError(f"{name}: expected a floating-point tensor, got {voxels.dtype}")
    check_finite(voxels, name)


def _batched(x, name: str, tail: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Return ``x`` as a ``(b, *tail)`` tensor (``b`` = 1 when unbatched) of ``like``'s dtype."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    want = "(" + ", ".join(str(s) for s in tail) + ")"
    if tuple(x.shape) == tail:
        x = x.unsqueeze(0)
    elif x.dim() != len(tail) + 1 or tuple(x.shape[1:]) != tail or x.shape[0] < 1:
        raise ShapeError(f"{name}: expected shape {want} or (B, {want[1:]}, got {tuple(x.shape)}")
    check_finite(x, name)
    return x.to(device=like.device, dtype=like.dtype)


def _batch_size(name_sizes: Sequence[tuple[str, int]]) -> int:
    sizes = {s for _, s in name_sizes if s != 1}
    if len(sizes) > 1:
        got = ", ".join(f"{n}: {s}" for n, s in name_sizes)
        raise ShapeError(f"batch sizes must be equal or 1, got {got}")
    return sizes.pop() if sizes else 1


def _image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        hw = (image_size, image_size)
    else:
        try:
            hw = tuple(int(s) for s in image_size)
        except TypeError:
            raise ShapeError(f"image_size: expected an int or (H, W), got {image_size!r}") from None
    if len(hw) != 2 or min(hw) < 1:
        raise ShapeError(f"image_size: expected positive (H, W), got {image_size!r}")
    return hw


def _check_count(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ShapeError(f"{name}: expected a positive int, got {n!r}")
    return n


# ----------------------------------------------------------------------------------------
# pose-aware grids (paper 000 eqs. 2 and 6, paper 001 eq. 7)
# ----------------------------------------------------------------------------------------
def pose_voxels(
    voxels: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor | None = None,
    out_size: int | Sequence[int] | None = None,
    extent: float | None = None,
) -> torch.Tensor:
    """Pose an aligned voxel grid: trilinear inverse warp into a camera-aligned grid.

    The *posed* grid is a cube of side ``extent`` (object units) whose axes are the camera
    axes (x right, y down, z forward, OpenCV), centred at ``Y = 0`` of the rigid motion
    ``Y = R @ X + t`` (with ``t = 0`` the object origin sits at the cube centre): its voxel ``(d', h', w')`` has its centre
    at ``Y = ((w'+0.5)/W' - 0.5, (h'+0.5)/H' - 0.5, (d'+0.5)/D' - 0.5) * extent`` and holds
    the aligned occupancy at ``X = R^T (Y - t)`` (paper 000's ``W^-1``, eq. 6; trilinear
    interpolation, zero outside the unit cube).  ``t`` is therefore in object (unit-cube)
    units and shifts the object inside the posed cube; for paper 000's weak-perspective
    model ``t = (tx, ty, 0)``, and paper 001's eq. 7 is ``t = 0``.  The projection along
    the posed grid's depth axis (:func:`max_projection`) is the silhouette seen by an
    orthographic camera looking along +z with image rows = y (down) and columns = x.

    Args:
        voxels: ``(B, 1, D, H, W)`` aligned occupancy in [0, 1] spanning the unit cube.
        R: ``(B, 3, 3)`` or ``(3, 3)`` object-to-camera rotation.
        t: ``(B, 3)`` or ``(3,)`` translation in object units, default zero.
        out_size: ``D'`` or ``(D', H', W')``; default ``(D, H, W)``.
        extent: side of the posed cube in object units; default ``D' / D`` (keeps the
            voxel pitch, so paper 001's 32^3 -> 48^3 covers a cube of side 1.5).

    Returns:
        ``(B, 1, D', H', W')`` posed occupancy (same dtype/device as ``voxels``),
        differentiable w.r.t. ``voxels``, ``R`` and ``t``.
    """
    _check_voxels(voxels)
    Rb = _batched(R, "R", (3, 3), voxels)
    tb = torch.zeros_like(Rb[:, :, 0]) if t is None else _batched(t, "t", (3,), voxels)
    B = _batch_size([("voxels", voxels.shape[0]), ("R", Rb.shape[0]), ("t", tb.shape[0])])
    if out_size is None:
        out = tuple(voxels.shape[2:])
    elif isinstance(out_size, int) and not isinstance(out_size, bool):
        out = (out_size,) * 3
    else:
        out = tuple(int(s) for s in out_size)
    if len(out) != 3 or min(out) < 1:
        raise ShapeError(f"out_size: expected a positive int or (D, H, W), got {out_size!r}")
    if extent is None:
        extent = out[0] / voxels.shape[2]
    if not (isinstance(extent, (int, float)) and math.isfinite(extent) and extent > 0):
        raise ShapeError(f"extent: expected a positive finite number, got {extent!r}")
    # warp_voxels maps unit cube -> unit cube, out(x) = in(R'^T (x - t')); a posed cube of
    # side `extent` is x = Y / extent, i.e. R' = extent R and t' = t / extent.
    return warp_voxels(
        voxels.expand(B, *voxels.shape[1:]), extent * Rb.expand(B, 3, 3), tb.expand(B, 3) / extent, out_size=out
    )


def max_projection(posed: torch.Tensor) -> torch.Tensor:
    """Paper 000's eq. 3 on a posed grid: ``M(x, y) = max_z V``.

    Args:
        posed: ``(B, 1, D, H, W)`` posed occupancy (e.g. from :func:`pose_voxels`).

    Returns:
        ``(B, 1, H, W)`` silhouette (orthographic, looking along +z; rows = y, cols = x).
    """
    _check_voxels(posed, "posed")
    return posed.amax(dim=2)


# ----------------------------------------------------------------------------------------
# ray sampling through the aligned grid
# ----------------------------------------------------------------------------------------
def _pixel_centres(H: int, W: int, like: torch.Tensor) -> torch.Tensor:
    """``(H*W, 2)`` pixel centres ``(u, v) = (j + 0.5, i + 0.5)``, row-major."""
    v, u = torch.meshgrid(
        torch.arange(H, device=like.device, dtype=like.dtype) + 0.5,
        torch.arange(W, device=like.device, dtype=like.dtype) + 0.5,
        indexing="ij",
    )
    return torch.stack([u.reshape(-1), v.reshape(-1)], -1)


class _Camera:
    """Per-batch ray geometry in the object frame: point(b, p, i) = o + lam * dir."""

    def __init__(self, voxels, R, t, K, scale, image_size, n_samples):
        _check_voxels(voxels)
        self.n = _check_count(n_samples, "n_samples")
        self.H, self.W = _image_size(image_size)
        Rb = _batched(R, "R", (3, 3), voxels)
        K, scale = split_camera(K, scale)
        if (K is None) == (scale is None):
            raise ShapeError("give exactly one of K (pinhole) or scale (weak perspective)")
        self.pinhole = K is not None
        if self.pinhole:
            tb = _batched(t, "t", (3,), voxels)
            Kb = _batched(K, "K", (3, 3), voxels)
            sizes = [("voxels", voxels.shape[0]), ("R", Rb.shape[0]), ("t", tb.shape[0]), ("K", Kb.shape[0])]
            if torch.linalg.det(Kb[:, :2, :2]).abs().min() <= 0 or (Kb[:, 2] != Kb.new_tensor([0.0, 0.0, 1.0])).any():
                raise ShapeError(
                    "K: expected intrinsics [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with non-zero focal lengths"
                )
        else:
            if not isinstance(t, torch.Tensor) or t.shape[-1:] not in ((2,), (3,)):
                raise ShapeError(
                    f"t: expected shape (B, 2|3) or (2|3,) for weak perspective, got {tuple(getattr(t, 'shape', ()))}"
                )
            tb = _batched(t, "t", (t.shape[-1],), voxels)[:, :2]
            sb = torch.as_tensor(scale, device=voxels.device, dtype=voxels.dtype)
            if sb.dim() > 1 or (sb.dim() == 1 and sb.shape[0] < 1):
                raise ShapeError(f"scale: expected a number or shape (B,), got {tuple(sb.shape)}")
            sb = sb.reshape(-1)
            check_finite(sb, "scale")
            if (sb == 0).any():
                raise ShapeError("scale: must be non-zero")
            sizes = [("voxels", voxels.shape[0]), ("R", Rb.shape[0]), ("t", tb.shape[0]), ("scale", sb.shape[0])]
        self.B = B = _batch_size(sizes)
        self.voxels = voxels.expand(B, *voxels.shape[1:])
        self.R = Rb.expand(B, 3, 3)
        self.t = tb.expand(B, tb.shape[1])
        if self.pinhole:
            self.K = Kb.expand(B, 3, 3)
        else:
            self.s = sb.expand(B)
        self.pix = _pixel_centres(self.H, self.W, voxels)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        if self.pinhole:
            return (self.voxels, self.R, self.t, self.K)
        return (self.voxels, self.R, self.t, self.s)

    def rays(self, pix: torch.Tensor, R, t, cam):
        """Ray geometry of pixels ``pix (P, 2)`` in the object frame, for :mod:`.voxel_march`:
        ``(base (b, P, 3), step (b, P, 3), coeffs (N,), cmin (b, P) or None)``; sample ``i`` is
        ``base + coeffs[i] * step``, valid where ``coeffs[i] > cmin``."""
        n, r = self.n, BOUNDING_RADIUS
        frac = (torch.arange(n, device=pix.device, dtype=pix.dtype) + 0.5) / n - 0.5  # (N,)
        offs = (2.0 * r) * frac
        if self.pinhole:
            # camera-frame unit directions d = K^-1 (u, v, 1) / |.|  (b, P, 3); batched
            # matmuls throughout (no (b, P, 3, 3) broadcast products)
            hom = torch.cat([pix, torch.ones_like(pix[:, :1])], -1)  # (P, 3)
            if cam.shape[0] == 1 or cam.stride(0) == 0:
                # one K for the batch (an expanded (1, 3, 3)): the directions once, (P, 3)
                d = hom @ torch.linalg.inv(cam[0]).transpose(0, 1)
                d = d / d.norm(dim=-1, keepdim=True)
                lam_c = (d @ t.transpose(0, 1)).transpose(0, 1).unsqueeze(-1)  # (b, P, 1)
            else:
                d = torch.matmul(hom, torch.linalg.inv(cam).transpose(-1, -2))  # (b, P, 3)
                d = d / d.norm(dim=-1, keepdim=True)
                lam_c = torch.matmul(d, t.unsqueeze(-1))  # (b, P, 1)
            # segment centred on the closest approach of the ray to the object origin (at t in
            # the camera frame), lam_c = d . t, metric half length r: lam_i = lam_c + 2 r frac_i.
            # Object frame: X = R^T (Y - t), i.e. row vectors times R:
            # base = (lam_c d - t) R = lam_c dirs - t R.
            dirs = torch.matmul(d, R)  # (b, P, 3)
            base = lam_c * dirs - torch.matmul(t.unsqueeze(1), R)  # (b, P, 3)
            # depth > 0 <=> lam > 0 (directions point forward); mask only when needed
            near = lam_c + offs[0]  # (b, P, 1) nearest sample
            cmin = -lam_c.squeeze(-1).detach() if bool((near <= 0).any()) else None
            return base, dirs, offs, cmin
        ab = (pix.unsqueeze(0) - t[:, None, :]) / cam[:, None, None]  # (b, P, 2)
        # X = R^T Y with Y = (a, b, z): a combination of R's rows
        base = torch.einsum("bpk,bkj->bpj", ab, R[:, :2, :])  # (b, P, 3)
        step = R[:, None, 2, :].expand_as(base)
        return base, step, offs, None

    def sample(self, pix: torch.Tensor, voxels, R, t, cam) -> torch.Tensor:
        """Occupancy ``(b, P, N)`` at the ray samples of pixels ``pix (P, 2)``, near to far."""
        return sample_rays(voxels, *self.rays(pix, R, t, cam))

    def march(self, reduce: str) -> torch.Tensor:
        """``(B, H*W)`` per-ray reduction over all pixels by the compiled kernel."""
        vox, R, t, c = self.tensors()
        return march(vox, *self.rays(self.pix, R, t, c), reduce=reduce)


def _run_chunked(
    cam: _Camera,
    reduce: Callable[..., tuple[torch.Tensor, ...]],
    extras: Sequence[torch.Tensor],
    max_points: int,
) -> tuple[torch.Tensor, ...]:
    """Apply ``reduce(occ (b, P, N), *extra_chunks) -> tuple of (b, P)`` over ray chunks.

    ``extras`` are ``(B, H*W)`` per-pixel tensors sliced alongside the rays.  Returns the
    tuple of ``(B, H*W)`` results.
    """
    max_points = _check_count(max_points, "max_points")
    B, n, npix = cam.B, cam.n, cam.H * cam.W
    # whole images per chunk when they fit (each chunk's voxel gradient is then touched
    # once), otherwise one image at a time split over pixels
    bc = max(1, min(B, max_points // (n * npix)))
    pc = max(1, min(npix, max_points // (bc * n)))
    tens = cam.tensors()
    need_grad = torch.is_grad_enabled() and any(x.requires_grad for x in tens)
    multi = (B + bc - 1) // bc * ((npix + pc - 1) // pc) > 1

    def chunk(pix, voxels, R, t, c, *ex):
        return reduce(cam.sample(pix, voxels, R, t, c), *ex)

    rows = []
    for b0 in range(0, B, bc):
        parts = []
        sl = [x[b0 : b0 + bc] for x in tens]
        for p0 in range(0, npix, pc):
            pix = cam.pix[p0 : p0 + pc]
            ex = [e[b0 : b0 + bc, p0 : p0 + pc] for e in extras]
            if need_grad and multi:
                res = checkpoint(chunk, pix, *sl, *ex, use_reentrant=False)
            else:
                res = chunk(pix, *sl, *ex)
            parts.append(res)
        rows.append(tuple(torch.cat(p, dim=1) for p in zip(*parts)))
    return tuple(torch.cat(r, dim=0) for r in zip(*rows))


def _reduce_max(occ: torch.Tensor) -> tuple[torch.Tensor]:
    return (occ.amax(dim=-1),)


def _reduce_absorption(occ: torch.Tensor) -> tuple[torch.Tensor]:
    return (1.0 - torch.prod(1.0 - occ, dim=-1),)


def project_voxels(
    voxels: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor | None = None,
    *,
    scale: float | torch.Tensor | None = None,
    image_size: int | Sequence[int] = 64,
    mode: str = "absorption",
    n_samples: int = 64,
    max_points: int = DEFAULT_MAX_POINTS,
) -> torch.Tensor:
    """Render the silhouette of the posed aligned grid by sampling every pixel's ray.

    Each pixel centre ``(u, v) = (j + 0.5, i + 0.5)`` casts a ray; ``n_samples`` points along
    it (see the module docstring for their placement inside the bounding sphere) are
    mapped into the object frame, ``X_obj = R^T (X_cam - t)``, and read from the *aligned*
    grid by trilinear interpolation, so the result is differentiable w.r.t. ``voxels``,
    ``R``, ``t`` (and ``K`` / ``scale``).  The image size is independent of the grid size.

    Camera models (exactly one of ``K`` or ``scale``; a number or ``(B,)`` tensor passed as
    ``K`` is taken as ``scale``):
        * pinhole: ``K`` ``(3, 3)`` or ``(B, 3, 3)``; ``t`` ``(B, 3)`` or ``(3,)``.
        * weak perspective / scaled orthographic: ``scale`` s (pixels per object unit,
          number or ``(B,)``), rays parallel to the camera z axis with
          ``u = s * (R X)[:2] + t2``; ``t`` ``(B, 2)`` (``t2`` in pixels) or ``(B, 3)``
          (only ``t[..., :2]`` is used).

    Modes:
        * ``"max"``: paper 000's eq. 3, ``max_i x_i`` along the ray.
        * ``"absorption"``: ``1 - prod_i (1 - x_i)``, the probability that the ray stops in
          the shape (paper 001 / DRC, ``1 - q_pen``).  As in DRC each sample is one
          independent event, so for fractional occupancies the opacity grows with
          ``n_samples`` (binary grids saturate either way); keep ``n_samples`` fixed
          between training and evaluation.

    Args:
        voxels: ``(B, 1, D, H, W)`` aligned occupancy in [0, 1] (batch 1 broadcasts).
        R: ``(B, 3, 3)`` or ``(3, 3)`` object-to-camera rotation.
        t: translation (see camera models).
        K: pinhole intrinsics in pixels.
        scale: weak-perspective scale in pixels per object unit.
        image_size: ``S`` or ``(H, W)`` in pixels.
        mode: ``"max"`` or ``"absorption"``.
        n_samples: samples per ray ``N``.
        max_points: at most this many samples are held at once (memory bound).

    Returns:
        ``(B, 1, H, W)`` silhouette in [0, 1].
    """
    if mode not in _MODES:
        raise ShapeError(f"mode: expected one of {_MODES}, got {mode!r}")
    cam = _Camera(voxels, R, t, K, scale, image_size, n_samples)
    if use_kernel(cam.voxels):
        pen_or_max = cam.march("max" if mode == "max" else "pen")
        img = pen_or_max if mode == "max" else 1.0 - pen_or_max
    else:
        reduce = _reduce_max if mode == "max" else _reduce_absorption
        (img,) = _run_chunked(cam, reduce, (), max_points)
    return img.reshape(cam.B, 1, cam.H, cam.W)


# ----------------------------------------------------------------------------------------
# paper 001: 2D-3D self-consistency
# ----------------------------------------------------------------------------------------
def _reduce_ray(occ: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    trans = torch.cumprod(1.0 - occ, dim=-1)  # prod_{j<=i} (1 - x_j)
    excl = torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)
    q = occ * excl  # eq. 2: stop probability at sample i
    pen = trans[..., -1]  # eq. 3: penetration probability
    loss = m * pen + (1.0 - m) * q.sum(dim=-1)  # eq. 4
    return loss, 1.0 - pen


def ray_terms_from_pen(pen: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4 and the projection from the penetration probability ``pen = q_pen`` alone.

    ``sum_i q_i = sum_i x_i prod_{j<i} (1 - x_j)`` telescopes to ``1 - q_pen``, so the
    per-pixel loss is ``m q_pen + (1 - m) (1 - q_pen)``.  Returns ``(loss, 1 - q_pen)``.
    """
    return m * pen + (1.0 - m) * (1.0 - pen), 1.0 - pen


def check_mask(mask: torch.Tensor, name: str = "mask") -> None:
    if not isinstance(mask, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor, got {type(mask).__name__}")
    if mask.dim() != 4 or mask.shape[1] != 1 or min(mask.shape[2:], default=0) < 1:
        raise ShapeError(f"{name}: expected shape (B, 1, H, W) with H, W >= 1, got {tuple(mask.shape)}")
    check_finite(mask, name)


def ray_terms(voxels, R, t, mask, K=None, scale=None, n_samples: int = 64, max_points: int = DEFAULT_MAX_POINTS):
    """Paper 001's per-ray quantities for every pixel of ``mask`` (eqs. 1-4, after DRC).

    Each pixel's ray is sampled at ``N = n_samples`` depths (eq. 1: ``x_i = Tri(voxels,
    X_obj(l_i))``), giving the stop probabilities ``q_i = x_i prod_{j<i} (1 - x_j)`` (eq. 2)
    and the penetration probability ``q_pen = prod_{j<=N} (1 - x_j)`` (eq. 3).

    Args:
        voxels: ``(B, 1, D, H, W)`` aligned occupancy in [0, 1].
        R, t, K, scale: camera as in :func:`project_voxels`.
        mask: ``(B, 1, H, W)`` observed silhouette in [0, 1] (sets the image size).

    Returns:
        ``(ray_loss, proj, m)``, each ``(B, 1, H, W)``: the per-pixel eq. 4
        ``m q_pen + (1 - m) sum_i q_i``, the projection ``1 - q_pen`` and the mask as used.
        Memory is bounded by ``max_points`` samples per chunk; differentiable in voxels and pose.
    """
    if mask is None:
        raise ShapeError("mask: required, the observed (B, 1, H, W) silhouette")
    check_mask(mask)
    cam = _Camera(voxels, R, t, K, scale, tuple(mask.shape[2:]), n_samples)
    B = _batch_size([("camera/voxels", cam.B), ("mask", mask.shape[0])])
    if B != cam.B:  # mask batch larger: broadcast the camera tensors
        cam.B = B
        cam.voxels = cam.voxels.expand(B, *cam.voxels.shape[1:])
        cam.R, cam.t = cam.R.expand(B, 3, 3), cam.t.expand(B, cam.t.shape[1])
        if cam.pinhole:
            cam.K = cam.K.expand(B, 3, 3)
        else:
            cam.s = cam.s.expand(B)
    m = mask.to(device=cam.voxels.device, dtype=cam.voxels.dtype).expand(B, 1, cam.H, cam.W)
    if use_kernel(cam.voxels):
        loss, proj = ray_terms_from_pen(cam.march("pen"), m.reshape(B, -1))
    else:
        loss, proj = _run_chunked(cam, _reduce_ray, (m.reshape(B, -1),), max_points)
    return loss.reshape(B, 1, cam.H, cam.W), proj.reshape(B, 1, cam.H, cam.W), m


# ----------------------------------------------------------------------------------------
# nn.Module wrappers
# ----------------------------------------------------------------------------------------
class VoxelPoser(nn.Module):
    """Module form of :func:`pose_voxels` (paper 000's transformation layer)."""

    def __init__(self, out_size: int | Sequence[int] | None = None, extent: float | None = None):
        super().__init__()
        self.out_size = out_size
        self.extent = extent

    def forward(self, voxels, R, t=None):
        return pose_voxels(voxels, R, t, out_size=self.out_size, extent=self.extent)


class VoxelProjector(nn.Module):
    """Module form of :func:`project_voxels` with a fixed mode, image size and camera model.

    Args:
        mode: ``"max"`` or ``"absorption"``.
        image_size: ``S`` or ``(H, W)``.
        n_samples: samples per ray.
        K: optional fixed pinhole intrinsics ``(3, 3)`` (stored as a buffer); otherwise
            pass ``K`` or ``scale`` to :meth:`forward`.
        scale: optional fixed weak-perspective scale.
        max_points: memory bound per chunk.
    """

    def __init__(
        self,
        mode: str = "absorption",
        image_size: int | Sequence[int] = 64,
        n_samples: int = 64,
        K: torch.Tensor | None = None,
        scale: float | None = None,
        max_points: int = DEFAULT_MAX_POINTS,
    ):
        super().__init__()
        if mode not in _MODES:
            raise ShapeError(f"mode: expected one of {_MODES}, got {mode!r}")
        self.mode, self.image_size, self.n_samples = mode, _image_size(image_size), n_samples
        self.scale, self.max_points = scale, max_points
        self.register_buffer("K", None if K is None else torch.as_tensor(K), persistent=False)

    def forward(self, voxels, R, t, K=None, scale=None):
        if K is None and scale is None:
            K, scale = self.K, self.scale
        return project_voxels(
            voxels,
            R,
            t,
            K,
            scale=scale,
            image_size=self.image_size,
            mode=self.mode,
            n_samples=self.n_samples,
            max_points=self.max_points,
        )
