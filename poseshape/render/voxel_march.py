"""Rays marched through an aligned voxel grid: the sampling kernel under :mod:`.voxel`'s
projections and :mod:`poseshape.losses.consistency`'s ray losses.

A batch of rays is given in the object frame by its geometry: ray ``(b, p)`` has the sample
points ``X_i = base[b, p] + c_i * step[b, p]`` (``i = 0..N-1``, ``c`` ascending, object units,
the grid spanning the unit cube ``[-0.5, 0.5]^3`` with ``(d, h, w) = (z, y, x)``); sample ``i``
is *valid* when ``c_i > cmin[b, p]`` (an invalid sample, behind the camera, reads 0).  Each
valid sample reads the grid by trilinear interpolation with zero padding, exactly as
``grid_sample(align_corners=False, padding_mode="zeros")`` at ``2 X_i``.

Two layers:

* :func:`sample_rays` -- the reference: every sample's occupancy ``(B, P, N)`` by
  ``grid_sample`` (pure PyTorch, any device; callers chunk it to bound memory).
* :func:`march` -- the per-ray reduction ``(B, P)`` directly: ``"max"`` (``max_i x_i``, paper
  000's eq. 3) or ``"pen"`` (``prod_i (1 - x_i)``, the penetration probability of paper 001's
  eq. 3 / DRC).  On CPU it runs the compiled kernel ``_cpp/voxel_march.cpp`` (OpenMP over
  rays, a ray/box clip so only samples that can touch the grid are read, a hand-written
  backward that recomputes the samples, memory ``O(B P)``: no ``(B, P, N)`` tensor exists);
  elsewhere, when the extension cannot be built, or with ``POSESHAPE_NO_CPP=1`` (read at every
  call) it reduces :func:`sample_rays` in chunks.  Both give the same values to float
  tolerance and the same gradients w.r.t. the voxels, ``base`` and ``step``
  (``tests/render/test_voxel_march.py``).

The pose enters only through ``base`` and ``step``, which the callers build with PyTorch
ops, so autograd carries the kernel's ``d/d base`` and ``d/d step`` on to ``R``, ``t``, ``K``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from poseshape.core.cpp import load_openmp_extension
from poseshape.core.errors import ShapeError

__all__ = ["REDUCTIONS", "cpp_available", "march", "reduce_samples", "sample_rays"]

#: Per-ray reductions of :func:`march`.
REDUCTIONS = ("max", "pen")

_MODE = {"max": 0, "pen": 1}


@functools.cache
def _build():
    src = Path(__file__).with_name("_cpp") / "voxel_march.cpp"
    return load_openmp_extension("poseshape_voxel_march_v4", src, "voxel ray kernel")


def _ext():
    if os.environ.get("POSESHAPE_NO_CPP", "") not in ("", "0"):
        return None
    return _build()


def cpp_available() -> bool:
    """Whether the compiled kernel is in use (``POSESHAPE_NO_CPP`` unset and it built)."""
    return _ext() is not None


def sample_rays(
    voxels: torch.Tensor, base: torch.Tensor, step: torch.Tensor, coeffs: torch.Tensor, cmin: torch.Tensor | None
) -> torch.Tensor:
    """Reference sampler: the occupancy at every ray sample.

    Args:
        voxels: ``(B or 1, 1, D, H, W)`` aligned occupancy.
        base, step: ``(B, P, 3)`` ray geometry in object units (module docstring).
        coeffs: ``(N,)`` ascending sample coefficients ``c_i``.
        cmin: ``(B, P)`` validity bound (``c_i > cmin``) or ``None`` (all valid).

    Returns:
        ``(B, P, N)`` occupancies, near to far, differentiable in all tensor inputs.
    """
    b, P, n = base.shape[0], base.shape[1], coeffs.shape[0]
    # grid_sample's normalised coordinates are 2 * X; one fused op builds all samples
    grid = torch.addcmul((2.0 * base).unsqueeze(2), coeffs.view(1, 1, n, 1), (2.0 * step).unsqueeze(2))
    occ = F.grid_sample(
        voxels.expand(b, *voxels.shape[1:]),
        grid.view(b, 1, P, n, 3),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    ).view(b, P, n)
    if cmin is not None:
        occ = occ * (coeffs.view(1, 1, n) > cmin.detach().unsqueeze(-1)).to(occ.dtype)
    return occ


def reduce_samples(occ: torch.Tensor, reduce: str) -> torch.Tensor:
    """``(B, P, N) -> (B, P)``: ``"max"`` or ``"pen"`` (``prod (1 - x)``) over the samples."""
    if reduce == "max":
        return occ.amax(dim=-1)
    return torch.prod(1.0 - occ, dim=-1)


class _March(torch.autograd.Function):
    @staticmethod
    def forward(ctx, voxels, base, step, coeffs, cmin, mode):
        out, argmax = _ext().march_forward(voxels, base, step, coeffs, cmin, mode)
        ctx.save_for_backward(voxels, base, step, coeffs, cmin, argmax)
        ctx.mode = mode
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        voxels, base, step, coeffs, cmin, argmax = ctx.saved_tensors
        need_vox = ctx.needs_input_grad[0]
        need_pos = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        gv, gb, gs = _build().march_backward(
            voxels, base, step, coeffs, cmin, grad.contiguous(), argmax, ctx.mode, need_vox, need_pos
        )
        return (
            gv if need_vox else None,
            gb if ctx.needs_input_grad[1] else None,
            gs if ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
        )


def use_kernel(voxels: torch.Tensor) -> bool:
    """Whether :func:`march` runs the compiled kernel for these voxels (CPU float32/64)."""
    return voxels.device.type == "cpu" and voxels.dtype in (torch.float32, torch.float64) and _ext() is not None


def march(
    voxels: torch.Tensor,
    base: torch.Tensor,
    step: torch.Tensor,
    coeffs: torch.Tensor,
    cmin: torch.Tensor | None = None,
    reduce: str = "pen",
    *,
    max_points: int = 1 << 21,
) -> torch.Tensor:
    """Reduce every ray's samples to one value.

    Args:
        voxels: ``(B or 1, 1, D, H, W)`` aligned occupancy (batch 1 is shared by all rays).
        base, step: ``(B, P, 3)`` ray geometry in object units (module docstring).
        coeffs: ``(N,)`` ascending sample coefficients (no gradient).
        cmin: ``(B, P)`` validity bound or ``None`` (no gradient).
        reduce: ``"max"`` or ``"pen"``.
        max_points: the reference path holds at most this many samples at once.

    Returns:
        ``(B, P)``, differentiable w.r.t. ``voxels``, ``base`` and ``step``.
    """
    if reduce not in REDUCTIONS:
        raise ShapeError(f"reduce: expected one of {REDUCTIONS}, got {reduce!r}")
    if base.dim() != 3 or base.shape[-1] != 3 or step.shape != base.shape:
        raise ShapeError(f"base, step: expected (B, P, 3) each, got {tuple(base.shape)} and {tuple(step.shape)}")
    if voxels.dim() != 5 or voxels.shape[1] != 1 or voxels.shape[0] not in (1, base.shape[0]):
        raise ShapeError(f"voxels: expected (B or 1, 1, D, H, W) for B = {base.shape[0]}, got {tuple(voxels.shape)}")
    if coeffs.dim() != 1 or coeffs.shape[0] < 1:
        raise ShapeError(f"coeffs: expected (N,), got {tuple(coeffs.shape)}")
    B, P = base.shape[:2]
    if use_kernel(voxels):
        dt = voxels.dtype
        c = coeffs.detach().to(dt).contiguous()
        cm = (
            torch.full((B, P), float("-inf"), dtype=dt)
            if cmin is None
            else cmin.detach().to(dt).expand(B, P).contiguous()
        )
        return _March.apply(
            voxels.squeeze(1).contiguous(), base.to(dt).contiguous(), step.to(dt).contiguous(), c, cm, _MODE[reduce]
        )
    n = coeffs.shape[0]
    pc = max(1, min(P, max_points // max(1, n)))
    outs = []
    for b in range(B):
        vb = voxels[b : b + 1] if voxels.shape[0] > 1 else voxels
        row = []
        for p0 in range(0, P, pc):
            sl = slice(p0, p0 + pc)
            cmb = None if cmin is None else cmin[b : b + 1, sl]
            row.append(reduce_samples(sample_rays(vb, base[b : b + 1, sl], step[b : b + 1, sl], coeffs, cmb), reduce))
        outs.append(torch.cat(row, dim=1))
    return torch.cat(outs, dim=0)
