"""Soft (differentiable) mesh silhouette rasteriser.

Two forms, both differentiable w.r.t. the vertices, the pose ``(R, t)`` and ``K``:

``mode="softras"`` (SoftRas, Liu et al. 2019, as used by paper 002)
    For face ``j`` and pixel centre ``p`` let ``d_j(p)`` be the Euclidean distance from ``p``
    to the boundary of the projected triangle and ``delta_j = +1`` inside, ``-1`` outside.
    ``D_j = sigmoid(delta_j * d_j**2 / sigma)`` and the silhouette is
    ``A = 1 - prod_j (1 - D_j)``. It is evaluated stably as
    ``A = 1 - exp(-sum_j softplus(delta_j * d_j**2 / sigma))`` since
    ``log(1 - D_j) = -softplus(delta_j d_j^2 / sigma)``.

    **Units of sigma.** By default (``sigma_units="ndc"``) ``sigma`` is in squared NDC units,
    where NDC spans ``[-1, 1]`` across the image's shorter side (SoftRas' square images:
    across the image), i.e. ``1 NDC = min(H, W) / 2`` pixels. The pixel value used
    internally is ``sigma_px2 = sigma * (min(H, W) / 2) ** 2`` (:func:`sigma_ndc_to_px2`);
    the SoftRas / paper-002 default ``sigma = 1e-4`` is ``0.41 px^2`` at 128 x 128 and
    ``1.64 px^2`` at 256 x 256. Pass ``sigma_units="px"`` to give ``sigma`` in pixels^2.

    Culling: face ``j`` only touches pixels where ``D_j > eps`` (outside), i.e. where
    ``d^2 < sigma_px2 * log(1/eps - 1)``; the screen bounding box is grown by that radius,
    and the pairs of that box farther out than the radius are dropped too. The neglected
    terms change ``sum softplus`` by less than ``eps`` each.

``mode="edge"`` (paper 003, Sec. 3.2, Eq. 5)
    Each face contributes ``F_norm(prod_k max(e_k(p) * o, 0))`` where ``e_k`` are the three
    edge functions (2x2 determinants) and ``o`` is the face's orientation determinant, so
    both windings render. The silhouette is the sum over faces, clamped to ``[0, 1]``
    (the paper leaves the sum unbounded; we clamp so that the output is a silhouette in
    ``[0, 1]``; gradients vanish where the clamped sum exceeds 1).
    ``F_norm(x) = tanh((x - min x) / (max x - min x))``. We use the *continuous* extrema of
    ``x`` over the image plane instead of the sampled pixel extrema: ``min x = 0`` (outside)
    and ``max x = (2A)^6 / 27`` at the centroid, with ``e_k o = (2A)^2 lambda_k`` for the
    barycentric coordinates ``lambda_k``. So each face contributes
    ``tanh(27 * lambda_0 * lambda_1 * lambda_2)`` inside and 0 outside. This is independent
    of pixel sampling (a triangle that covers no pixel centre would give 0/0 with sampled
    extrema) and local to the face, which the tiling needs. ``sigma`` is not used.

Projection, culling, near plane (faces with a corner at ``z <= znear`` are dropped, not
clipped) and pixel centres (+0.5) follow :mod:`poseshape.render.raster_common`. Memory is
bounded by ``chunk_size`` face/pixel pairs; the backward pass recomputes the pair terms
chunk by chunk (nothing per pair is stored) and skips pairs whose pixel gradient is 0.

Backends: the same pair loops exist as optional C++ CPU kernels (``_cpp/soft_raster.cpp``,
built on first use with ``torch.utils.cpp_extension.load``; analytic gradients; per-thread
``(B*H*W)`` accumulators, so memory is O(threads x B x H x W)) and in pure PyTorch (chunked,
autograd per chunk). ``backend="auto"`` uses C++ on CPU when it builds and falls back to
PyTorch otherwise (``POSESHAPE_NO_CPP=1`` forces the fallback); the tests run both.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import torch
from torch import nn

from poseshape.core.cpp import load_openmp_extension
from poseshape.core.errors import ShapeError
from poseshape.render.raster_common import (
    DEFAULT_CHUNK_SIZE,
    PairPlan,
    parse_image_size,
    plan_pairs,
    prepare_inputs,
    project_faces,
)

MODES = ("softras", "edge")
BACKENDS = ("auto", "torch", "cpp")
_TINY = 1e-12


@functools.cache
def _cpp_ext():
    """Build/load the optional C++ pair kernels (``_cpp/soft_raster.cpp``); ``None`` on failure.

    Set ``POSESHAPE_NO_CPP=1`` to skip it. The build (gcc + ninja, ~1 min, cached by torch in
    ``~/.cache/torch_extensions``) happens on first use; any failure falls back to PyTorch.
    """
    if os.environ.get("POSESHAPE_NO_CPP", "") not in ("", "0"):
        return None
    src = Path(__file__).with_name("_cpp") / "soft_raster.cpp"
    return load_openmp_extension("poseshape_soft_raster_v3", src, "soft rasteriser")


def cpp_available() -> bool:
    """Whether the optional C++ kernels built and loaded."""
    return _cpp_ext() is not None


def _resolve_backend(backend: str, device: torch.device):
    if backend not in BACKENDS:
        raise ShapeError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "torch" or device.type != "cpu":
        if backend == "cpp":
            raise ShapeError("backend='cpp' only supports CPU tensors")
        return None
    ext = _cpp_ext()
    if ext is None and backend == "cpp":
        raise RuntimeError("backend='cpp' requested but the C++ extension could not be built")
    return ext


def sigma_ndc_to_px2(sigma: float, image_size) -> float:
    """Convert a SoftRas ``sigma`` from squared NDC units to squared pixels.

    NDC spans ``[-1, 1]`` across ``min(H, W)`` pixels, so ``sigma_px2 = sigma * (min(H, W)/2)^2``.
    """
    H, W = parse_image_size(image_size)
    return float(sigma) * (min(H, W) / 2.0) ** 2


def pair_terms(
    v: torch.Tensor, px: torch.Tensor, py: torch.Tensor, mode: str, sigma_px2: float, cutoff_px2: float = math.inf
) -> torch.Tensor:
    """Per face/pixel-pair contribution (differentiable w.r.t. ``v``).

    Args:
        v: ``(N, 3, 2)`` projected triangle corners in pixels.
        px, py: ``(N,)`` pixel-centre coordinates in pixels.
        mode: ``"softras"`` -> ``softplus(delta * d^2 / sigma_px2)`` (= ``-log(1 - D)``);
            ``"edge"`` -> ``tanh(27 * prod_k max(lambda_k, 0))``.
        sigma_px2: SoftRas sigma in pixels^2 (unused for ``"edge"``).
        cutoff_px2: ``"softras"`` only: outside pairs with ``d^2 >= cutoff_px2`` (pixels^2) give 0,
            the culling of :func:`render_silhouette` (their term is below its ``eps``); the C++
            kernel drops the same pairs. The default keeps every pair.

    Returns:
        ``(N,)`` terms; the silhouette accumulates them per pixel.
    """
    e = v.roll(-1, dims=1) - v  # edge k: v_k -> v_{k+1}, (N, 3, 2)
    wx = px[:, None] - v[..., 0]
    wy = py[:, None] - v[..., 1]
    cross = e[..., 0] * wy - e[..., 1] * wx  # (N, 3); equals area2 * lambda_{k+2}
    area2 = e[:, 0, 0] * (v[:, 2, 1] - v[:, 0, 1]) - e[:, 0, 1] * (v[:, 2, 0] - v[:, 0, 0])
    if mode == "edge":
        nz = area2 != 0
        safe = torch.where(nz, area2, torch.ones_like(area2))
        lam = (cross / safe[:, None]).clamp_min(0.0)
        return torch.tanh(27.0 * lam.prod(-1)) * nz
    ee = (e * e).sum(-1)
    tt = ((wx * e[..., 0] + wy * e[..., 1]) / ee.clamp_min(_TINY)).clamp(0.0, 1.0)
    qx = wx - tt * e[..., 0]
    qy = wy - tt * e[..., 1]
    d2 = (qx * qx + qy * qy).amin(-1)
    inside = ((cross * area2[:, None]) > 0).all(-1)
    term = nn.functional.softplus(torch.where(inside, d2, -d2) / sigma_px2)
    if math.isfinite(cutoff_px2):
        term = torch.where(inside | (d2 < cutoff_px2), term, torch.zeros_like(term))
    return term


def _finish(S: torch.Tensor, mode: str) -> torch.Tensor:
    return -torch.expm1(-S) if mode == "softras" else S.clamp(max=1.0)


class _SoftRaster(torch.autograd.Function):
    """``face_xy (B, F, 3, 2) -> silhouette (B, H, W)`` with a chunked, recomputing backward."""

    @staticmethod
    def forward(ctx, face_xy, plan: PairPlan, B: int, mode: str, sigma_px2: float, cutoff_px2: float, chunk: int, ext):
        H, W = plan.H, plan.W
        flat = face_xy.reshape(-1, 3, 2)
        if ext is not None:
            S = ext.soft_forward(
                flat.contiguous(), *_plan_args(plan), B, H, W, plan.F, MODES.index(mode), sigma_px2, cutoff_px2
            )
        else:
            S = face_xy.new_zeros(B * H * W)
            for f, pix, jj, ii in plan.chunks(chunk):
                s = pair_terms(flat[f], jj.to(flat.dtype) + 0.5, ii.to(flat.dtype) + 0.5, mode, sigma_px2, cutoff_px2)
                S.index_add_(0, pix, s)
        ctx.save_for_backward(face_xy, S)
        ctx.plan, ctx.mode, ctx.sigma, ctx.chunk, ctx.ext, ctx.B = plan, mode, sigma_px2, chunk, ext, B
        ctx.cutoff = cutoff_px2
        return _finish(S, mode).view(B, H, W)

    @staticmethod
    def backward(ctx, grad_out):
        face_xy, S = ctx.saved_tensors
        mode = ctx.mode
        g = grad_out.reshape(-1)
        gS = g * torch.exp(-S) if mode == "softras" else g * (S < 1.0)
        flat = face_xy.detach().reshape(-1, 3, 2)
        if ctx.ext is not None:
            plan = ctx.plan
            grad = ctx.ext.soft_backward(
                flat.contiguous(),
                *_plan_args(plan),
                gS.contiguous(),
                ctx.B,
                plan.H,
                plan.W,
                plan.F,
                MODES.index(mode),
                ctx.sigma,
                ctx.cutoff,
            )
            return grad.view_as(face_xy), None, None, None, None, None, None, None
        grad = torch.zeros_like(flat)
        for f, pix, jj, ii in ctx.plan.chunks(ctx.chunk):
            gp = gS[pix]
            keep = torch.nonzero(gp != 0).squeeze(1)
            if keep.numel() == 0:
                continue
            if keep.numel() < gp.numel():
                f, jj, ii, gp = f[keep], jj[keep], ii[keep], gp[keep]
            with torch.enable_grad():
                v = flat[f].requires_grad_(True)
                s = pair_terms(v, jj.to(flat.dtype) + 0.5, ii.to(flat.dtype) + 0.5, mode, ctx.sigma, ctx.cutoff)
                (gv,) = torch.autograd.grad(s, v, gp)
            grad.index_add_(0, f, gv)
        return grad.view_as(face_xy), None, None, None, None, None, None, None


def _plan_args(plan: PairPlan):
    return plan.face, plan.i0, plan.j0, plan.w, plan.h


def _support_radius(mode: str, sigma_px2: float, eps: float) -> float:
    if mode == "edge":
        return 0.0
    return math.sqrt(sigma_px2 * math.log(1.0 / eps - 1.0))


def _check_mode(mode: str, sigma: float, sigma_units: str, eps: float) -> None:
    if mode not in MODES:
        raise ShapeError(f"mode: expected one of {MODES}, got {mode!r}")
    if sigma_units not in ("ndc", "px"):
        raise ShapeError(f"sigma_units: expected 'ndc' or 'px', got {sigma_units!r}")
    if mode == "softras" and not (sigma > 0 and math.isfinite(sigma)):
        raise ShapeError(f"sigma: expected a positive finite float, got {sigma!r}")
    if not 0 < eps < 0.5:
        raise ShapeError(f"eps: expected 0 < eps < 0.5, got {eps!r}")


def render_silhouette(
    verts: torch.Tensor,
    faces: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor | None = None,
    *,
    scale: float | torch.Tensor | None = None,
    image_size: int | tuple[int, int] = 128,
    sigma: float = 1e-4,
    mode: str = "softras",
    sigma_units: str = "ndc",
    eps: float = 1e-5,
    znear: float = 1e-3,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: str = "auto",
) -> torch.Tensor:
    """Render soft silhouettes of a mesh under a batch of poses.

    Args:
        verts: ``(B, V, 3)`` or ``(V, 3)`` vertices in the object frame.
        faces: ``(F, 3)`` int vertex indices (any winding).
        R: ``(B, 3, 3)`` object-to-camera rotation; t: ``(B, 3)`` translation
            (``X_cam = R X + t``). For weak perspective ``t[:, :2]`` are pixel offsets.
        K: ``(3, 3)`` or ``(B, 3, 3)`` pinhole intrinsics in pixels, or ``None`` with ``scale``.
            A number or ``(B,)`` tensor passed as ``K`` is taken as the weak-perspective scale.
        scale: weak-perspective scale (pixels per object unit), float or ``(B,)``:
            ``u = scale * (R X)[:2] + t[:2]``.
        image_size: ``H`` (square) or ``(H, W)``.
        sigma: SoftRas blur (default 1e-4, paper 002 / SoftRas) in ``sigma_units``.
        mode: ``"softras"`` or ``"edge"`` (paper 003, Eq. 5); see the module docstring.
        sigma_units: ``"ndc"`` (squared NDC, default) or ``"px"`` (squared pixels).
        eps: culling threshold on ``D_j`` (softras): pairs with ``D_j < eps`` are skipped.
        znear: pinhole near plane; faces with a corner at ``z <= znear`` are dropped.
        chunk_size: face/pixel pairs processed at once (bounds memory; PyTorch path).
        backend: ``"auto"`` (C++ kernels on CPU when they build, else PyTorch), ``"torch"``
            or ``"cpp"``. Both compute the same function; the C++ one has analytic gradients
            and needs no chunking (it streams over pairs, O(B H W) memory per thread).

    Returns:
        ``(B, 1, H, W)`` silhouettes in ``[0, 1]``, differentiable w.r.t. ``verts``, ``R``,
        ``t``, ``K`` and ``scale``. An empty mesh or a mesh entirely behind the camera gives
        zeros (with zero gradients).

    Raises:
        ShapeError: bad shapes, non-finite inputs (NaN vertices), image size < 1, bad mode.
    """
    _check_mode(mode, sigma, sigma_units, eps)
    if backend not in BACKENDS:
        raise ShapeError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    H, W = parse_image_size(image_size)
    verts, faces, cam = prepare_inputs(verts, faces, R, t, K, scale)
    B = verts.shape[0]
    sigma_px2 = sigma_ndc_to_px2(sigma, (H, W)) if sigma_units == "ndc" else float(sigma)
    xy, _, valid = project_faces(verts, faces, cam, znear)
    radius = _support_radius(mode, sigma_px2, eps)
    plan = plan_pairs(xy, valid, H, W, radius)
    if plan.total == 0:
        # Keep the graph connected so that backward yields zero (not None) gradients.
        return xy.sum().mul(0.0) + xy.new_zeros(B, 1, H, W)
    ext = _resolve_backend(backend, xy.device)
    cutoff_px2 = radius * radius if mode == "softras" else math.inf
    out = _SoftRaster.apply(xy, plan, B, mode, sigma_px2, cutoff_px2, int(chunk_size), ext)
    return out.unsqueeze(1)


def render_silhouette_dense(
    verts,
    faces,
    R,
    t,
    K=None,
    *,
    scale=None,
    image_size=128,
    sigma=1e-4,
    mode="softras",
    sigma_units="ndc",
    znear=1e-3,
) -> torch.Tensor:
    """Naive reference: every face against every pixel, plain autograd, no culling.

    Same arguments and output as :func:`render_silhouette`; memory is ``O(B F H W)``, so it is
    only for small cases (tests and the benchmark's baseline).
    """
    _check_mode(mode, sigma, sigma_units, 1e-5)
    H, W = parse_image_size(image_size)
    verts, faces, cam = prepare_inputs(verts, faces, R, t, K, scale)
    B, F = verts.shape[0], faces.shape[0]
    sigma_px2 = sigma_ndc_to_px2(sigma, (H, W)) if sigma_units == "ndc" else float(sigma)
    xy, _, valid = project_faces(verts, faces, cam, znear)
    ii, jj = torch.meshgrid(torch.arange(H, device=xy.device), torch.arange(W, device=xy.device), indexing="ij")
    px = (jj.reshape(-1).to(xy.dtype) + 0.5).repeat(B * F)
    py = (ii.reshape(-1).to(xy.dtype) + 0.5).repeat(B * F)
    v = xy.reshape(B * F, 1, 3, 2).expand(B * F, H * W, 3, 2).reshape(-1, 3, 2)
    s = pair_terms(v, px, py, mode, sigma_px2).view(B, F, H * W) * valid[..., None]
    return _finish(s.sum(1), mode).view(B, 1, H, W)


class SoftSilhouetteRenderer(nn.Module):
    """``nn.Module`` wrapper of :func:`render_silhouette` with fixed settings.

    ``forward(verts, faces, R, t, K=None, scale=None) -> (B, 1, H, W)``.
    """

    def __init__(
        self,
        image_size=128,
        sigma: float = 1e-4,
        mode: str = "softras",
        sigma_units: str = "ndc",
        eps: float = 1e-5,
        znear: float = 1e-3,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_mode(mode, sigma, sigma_units, eps)
        self.backend = backend
        self.image_size = parse_image_size(image_size)
        self.sigma, self.mode, self.sigma_units = sigma, mode, sigma_units
        self.eps, self.znear, self.chunk_size = eps, znear, chunk_size

    def forward(self, verts, faces, R, t, K=None, scale=None) -> torch.Tensor:
        return render_silhouette(
            verts,
            faces,
            R,
            t,
            K,
            scale=scale,
            image_size=self.image_size,
            sigma=self.sigma,
            mode=self.mode,
            sigma_units=self.sigma_units,
            eps=self.eps,
            znear=self.znear,
            chunk_size=self.chunk_size,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, mode={self.mode!r}, sigma={self.sigma} ({self.sigma_units})"
