"""Exact z-buffer mesh rasteriser (not differentiable) for data generation, evaluation, display.

For every pixel centre (``(j + 0.5, i + 0.5)``, OpenCV convention) the visible face is the one
with the smallest camera depth ``z`` among the faces whose projected triangle contains the
centre. Containment is inclusive (a centre exactly on an edge belongs to every face sharing
the edge) and depth ties go to the smallest face index, so the result is deterministic and
edges shared by two faces leave no cracks. Zero-area (degenerate) projected faces never cover
a pixel. Projection, near plane (faces with a corner at ``z <= znear`` are dropped, not
clipped) and weak perspective follow :mod:`poseshape.render.raster_common`.

The work is vectorised over the batch and over face/pixel pairs (each face against the pixels
of its screen bounding box), chunked to bound memory: one pass finds the per-pixel minimum
depth (``scatter_reduce`` amin), a second pass the smallest face index attaining it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from poseshape.render.raster_common import (
    DEFAULT_CHUNK_SIZE,
    parse_image_size,
    plan_pairs,
    prepare_inputs,
    project_faces,
)


@dataclass
class Fragments:
    """Per-pixel rasterisation result.

    Attributes:
        face_idx: ``(B, H, W)`` int64 index into ``faces`` of the visible face, ``-1`` for
            background.
        depth: ``(B, H, W)`` camera-space depth ``z`` of the visible surface point
            (``X_cam[2]``, camera units); ``+inf`` for background.
        bary: ``(B, H, W, 3)`` barycentric coordinates of the surface point w.r.t. the face's
            corners ``faces[f, 0..2]``. Under a pinhole camera they are perspective-correct
            (barycentrics of the 3-D point, so ``X = sum_k bary_k X_k``), under weak
            perspective they equal the screen-space ones. Zero for background.
        mask: ``(B, 1, H, W)`` float 1 where a face is visible, else 0.
    """

    face_idx: torch.Tensor
    depth: torch.Tensor
    bary: torch.Tensor
    mask: torch.Tensor


def _screen_bary(v: torch.Tensor, px: torch.Tensor, py: torch.Tensor):
    """Screen-space barycentrics ``(N, 3)`` of points ``(px, py)`` in triangles ``v (N, 3, 2)``.

    Returns ``(lam, ok)`` where ``ok`` marks non-degenerate triangles; ``lam`` is 0 where not ok.
    """
    e = v.roll(-1, dims=1) - v
    cross = e[..., 0] * (py[:, None] - v[..., 1]) - e[..., 1] * (px[:, None] - v[..., 0])
    area2 = e[:, 0, 0] * (v[:, 2, 1] - v[:, 0, 1]) - e[:, 0, 1] * (v[:, 2, 0] - v[:, 0, 0])
    ok = area2 != 0
    safe = torch.where(ok, area2, torch.ones_like(area2))
    # cross_k (edge v_k -> v_{k+1}) is area2 * lambda_{k+2}; roll so lam[:, k] belongs to v_k.
    lam = (cross / safe[:, None]).roll(-1, dims=1) * ok[:, None]
    return lam, ok


def _depth(lam: torch.Tensor, z: torch.Tensor, perspective: bool) -> torch.Tensor:
    if perspective:
        return 1.0 / (lam / z).sum(-1)
    return (lam * z).sum(-1)


def _projected_faces(verts, faces, R, t, K, scale, znear):
    """Validated inputs -> screen corners ``xy (B, F, 3, 2)``, depths ``z (B, F, 3)``, ``valid (B, F)``, camera."""
    verts, faces, cam = prepare_inputs(verts, faces, R, t, K, scale)
    xy, z, valid = project_faces(verts, faces, cam, znear)
    return xy, z, valid, cam


def _perspective_bary(lam: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Screen-space barycentrics ``(N, 3)`` -> perspective-correct ones, given corner depths ``z (N, 3)``."""
    w = lam / z
    return w / w.sum(-1, keepdim=True)


@torch.no_grad()
def rasterize(
    verts: torch.Tensor,
    faces: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor | None = None,
    image_size: int | tuple[int, int] = 128,
    *,
    scale: float | torch.Tensor | None = None,
    znear: float = 1e-3,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Fragments:
    """Rasterise a mesh under a batch of poses with an exact z-buffer.

    Args:
        verts: ``(B, V, 3)`` or ``(V, 3)`` vertices; faces: ``(F, 3)`` int indices.
        R: ``(B, 3, 3)``; t: ``(B, 3)`` (``X_cam = R X + t``).
        K: ``(3, 3)`` or ``(B, 3, 3)`` pinhole intrinsics in pixels, or ``None`` with ``scale``
            (weak perspective ``u = scale * (R X)[:2] + t[:2]``, depth ``(R X)[2] + t[2]``).
            A number or ``(B,)`` tensor passed as ``K`` is taken as ``scale``.
        image_size: ``H`` or ``(H, W)``.
        znear: near plane (pinhole only); faces with a corner at ``z <= znear`` are dropped.
        chunk_size: face/pixel pairs processed at once.

    Returns:
        :class:`Fragments`. An empty mesh gives an all-background result.

    Raises:
        ShapeError: bad shapes, non-finite inputs, image size < 1.
    """
    H, W = parse_image_size(image_size)
    xy, z, valid, cam = _projected_faces(verts, faces, R, t, K, scale, znear)
    B, F = xy.shape[0], xy.shape[1]
    dev, dt = xy.device, xy.dtype
    plan = plan_pairs(xy, valid, H, W, 0.0)
    flat_xy = xy.reshape(-1, 3, 2)
    flat_z = z.reshape(-1, 3)
    persp = cam.perspective
    zbuf = torch.full((B * H * W,), float("inf"), dtype=dt, device=dev)

    def covered(fidx, jj, ii):
        px, py = jj.to(dt) + 0.5, ii.to(dt) + 0.5
        lam, ok = _screen_bary(flat_xy[fidx], px, py)
        inside = ok & (lam >= 0).all(-1)
        return inside, _depth(lam, flat_z[fidx], persp)

    for f, pix, jj, ii in plan.chunks(chunk_size):
        inside, d = covered(f, jj, ii)
        zbuf.scatter_reduce_(0, pix[inside], d[inside], reduce="amin")
    big = B * F
    fbuf = torch.full((B * H * W,), big, dtype=torch.long, device=dev)
    for f, pix, jj, ii in plan.chunks(chunk_size):
        inside, d = covered(f, jj, ii)
        win = inside & (d == zbuf[pix])
        fbuf.scatter_reduce_(0, pix[win], f[win], reduce="amin")
    hit = fbuf < big
    face_idx = torch.where(hit, fbuf % max(F, 1), torch.full_like(fbuf, -1))
    bary = torch.zeros(B * H * W, 3, dtype=dt, device=dev)
    pid = torch.nonzero(hit).squeeze(1)
    if pid.numel():
        fh = fbuf[pid]
        jj, ii = pid % W, torch.div(pid, W, rounding_mode="floor") % H
        lam, _ = _screen_bary(flat_xy[fh], jj.to(dt) + 0.5, ii.to(dt) + 0.5)
        if persp:
            lam = _perspective_bary(lam, flat_z[fh])
        bary[pid] = lam
    return Fragments(
        face_idx=face_idx.view(B, H, W),
        depth=zbuf.view(B, H, W),
        bary=bary.view(B, H, W, 3),
        mask=hit.to(dt).view(B, 1, H, W),
    )


@torch.no_grad()
def rasterize_dense(
    verts: torch.Tensor,
    faces: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor | None = None,
    image_size: int | tuple[int, int] = 128,
    *,
    scale: float | torch.Tensor | None = None,
    znear: float = 1e-3,
) -> Fragments:
    """Naive reference of :func:`rasterize`: every face against every pixel, no culling.

    Same arguments, tie rules and output as :func:`rasterize`, but it materialises
    ``(B, F, H, W)`` tensors (memory ``O(B F H W)``), so it is only for small cases (tests and
    the benchmark's baseline).
    """
    H, W = parse_image_size(image_size)
    xy, z, valid, cam = _projected_faces(verts, faces, R, t, K, scale, znear)
    B, F = xy.shape[0], xy.shape[1]
    dev, dt = xy.device, xy.dtype
    ii, jj = torch.meshgrid(torch.arange(H, device=dev), torch.arange(W, device=dev), indexing="ij")
    px = (jj.reshape(-1).to(dt) + 0.5).repeat(B * F)
    py = (ii.reshape(-1).to(dt) + 0.5).repeat(B * F)
    v = xy.reshape(B * F, 1, 3, 2).expand(B * F, H * W, 3, 2).reshape(-1, 3, 2)
    zz = z.reshape(B * F, 1, 3).expand(B * F, H * W, 3).reshape(-1, 3)
    lam, ok = _screen_bary(v, px, py)
    inside = (ok & (lam >= 0).all(-1)).view(B, F, H * W) & valid[..., None]
    depth = torch.where(
        inside, _depth(lam, zz, cam.perspective).view(B, F, H * W), torch.full((), float("inf"), dtype=dt, device=dev)
    )
    zbuf = depth.amin(1) if F else torch.full((B, H * W), float("inf"), dtype=dt, device=dev)
    win = inside & (depth == zbuf[:, None])
    fidx = torch.arange(F, device=dev).view(1, F, 1)
    first = (
        torch.where(win, fidx, torch.full_like(fidx, F)).amin(1)
        if F
        else torch.zeros(B, H * W, dtype=torch.long, device=dev)
    )
    hit = first < F
    bary = torch.zeros(B, H * W, 3, dtype=dt, device=dev)
    if hit.any():
        lam = lam.view(B, F, H * W, 3)
        bsel, psel = torch.nonzero(hit, as_tuple=True)
        lh = lam[bsel, first[bsel, psel], psel]
        if cam.perspective:
            lh = _perspective_bary(lh, z[bsel, first[bsel, psel]])
        bary[bsel, psel] = lh
    return Fragments(
        face_idx=torch.where(hit, first, torch.full_like(first, -1)).view(B, H, W),
        depth=zbuf.view(B, H, W),
        bary=bary.view(B, H, W, 3),
        mask=hit.to(dt).view(B, 1, H, W),
    )


class HardRasterizer(nn.Module):
    """``nn.Module`` wrapper of :func:`rasterize`: ``forward(verts, faces, R, t, K=None, scale=None)``."""

    def __init__(self, image_size=128, znear: float = 1e-3, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        super().__init__()
        self.image_size = parse_image_size(image_size)
        self.znear, self.chunk_size = znear, chunk_size

    def forward(self, verts, faces, R, t, K=None, scale=None) -> Fragments:
        return rasterize(
            verts, faces, R, t, K, self.image_size, scale=scale, znear=self.znear, chunk_size=self.chunk_size
        )

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}"
