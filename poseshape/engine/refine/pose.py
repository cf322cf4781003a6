"""Test-time pose (and optionally shape) refinement against an object mask, for any method.

Paper 003 (§3.2, §4.2) corrects a predicted 6-DoF pose at test time by rendering the shape's
silhouette with a differentiable rasteriser and back-propagating its misalignment with the
observed mask for 30 steps. :func:`refine_pose` does this for a batch of images and several
starting poses per image at once, with the fixes the issue asks for:

Data flow (``docs/refine.md``)::

    masks (B,1,H,W) --crop around each mask--> working masks (B,1,S,S)       (S = render_size)
    shape (Mesh | per-image Meshes) + camera (K | weak-perspective scale)
    initial pose R (B,3,3), t (B,3)  or hypotheses (B,M,3,3), (B,M,3)
        --starts--> B x M poses --Adam, `steps` steps, one batched soft-render per step-->
        --hard-raster IoU per surviving start--> best start per image -> RefineResult

* **Working frame.** Each mask is cut to a square around its bounding box (``crop_margin``
  of the box's side on each side) and resized to ``S x S``; the camera is mapped into that
  crop (pinhole ``K' = A K`` with ``A`` the crop's pixel affine; weak perspective ``s' = f s``,
  ``t2' = f (t2 - (x0, y0))``) and the results are mapped back, so any mask size works and
  resolution is spent on the object.
* **Parametrisation.** Rotation: a residual on the start, ``R = exp([w]x) R0`` (axis-angle
  left-multiplied, camera frame; ``w = 0`` at the start) or, with ``rotation="6d"``, the 6-D
  representation of ``R`` initialised from ``R0``. Translation: the image-plane shift of the
  projected object origin (fraction of ``S``) and a log scale ``l``: weak perspective
  ``s = s0 e^l``; pinhole depth ``z = z0 e^-l`` (both make the object ``e^l`` times larger
  on screen), so every parameter has a comparable, unit-free step size. Optional per-image
  vertex offsets (``optimize_verts``) with a uniform-Laplacian penalty on the offsets.
* **Loss.** ``w_iou * soft-IoU + w_bce * BCE`` between the soft silhouette and the mask,
  both blurred by a Gaussian whose width follows a geometric schedule from
  ``blur_start * S`` pixels to 0 over the first ``blur_fraction`` of the steps (blurry
  to sharp: a wide basin first, an undistorted silhouette at the end, since the renderer's
  own ``sigma`` stays small). ``blur="render"`` instead anneals the renderer's SoftRas sigma
  from ``sigma_start`` to ``sigma`` (slower: the pair count grows with sigma). While the blur
  is at least 2 pixels the silhouettes are rendered at ``S/2`` (``coarse``).
* **Multi-start.** Hypotheses ``(B, M, ...)`` are used as given; otherwise :func:`start_rotations`
  makes ``starts`` rotations around the initial pose: the pose itself, the 180-degree flip
  about the object's up axis (+Y), rotations by ``perturb_deg`` about the object's up axis and
  about the camera's x and z axes, then further flips. After ``prune_fraction`` of the steps
  only the ``keep`` starts with the lowest loss per image continue (successive halving); the
  survivors are scored by the exact (hard-raster) IoU and the best one is returned.
* **Batched.** All ``B x M`` poses of images that share a mesh go through the renderer in
  one call per step; images with different meshes are rendered in one call per mesh.

Bad input raises :class:`poseshape.core.errors.ShapeError` (wrong shapes, NaN/inf, empty mask)
or :class:`poseshape.core.errors.PoseshapeError` (a mask the shape cannot cover: see
:func:`refine_pose`, "Raises").
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.engine.inputs import crop_to_square
from poseshape.geometry.rotations import (
    geodesic_distance,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
    so3_exp,
)
from poseshape.losses import reprojection_bce, reprojection_iou
from poseshape.render.fastraster import rasterize
from poseshape.render.mesh_soft import render_silhouette
from poseshape.shapes.meshes import Mesh, Meshes, laplacian
from poseshape.viz import overlay_silhouette, png_bytes, write_bytes_atomic

__all__ = [
    "RefineConfig",
    "RefineResult",
    "hard_silhouettes",
    "overlay_frames",
    "refine_pose",
    "save_animation",
    "simplify_mesh",
    "start_rotations",
]


# =============================================================================== config
@dataclass
class RefineConfig:
    """Settings of :func:`refine_pose` (defaults: paper 003's 30 steps at 128 x 128).

    Attributes:
        steps: Adam steps (paper 003: 30).
        starts: starts per image when no hypotheses are given (:func:`start_rotations`; 16
            cover a 35-degree ball around the initial pose and its flip evenly, 8 only its axes).
        use_hypotheses: :func:`~poseshape.engine.refine.refine_prediction` also starts from the
            prediction's pose hypotheses (``Prediction.hypotheses``, see
            :func:`poseshape.engine.refine.hypotheses.hypothesis_starts`); ``refine_pose`` ignores it.
        perturb_deg: angle of the perturbed starts, degrees.
        keep: starts per image that survive pruning; prune_fraction: when (fraction of the
            steps) to prune; ``keep >= starts`` disables pruning.
        rotation: ``"axis_angle"`` (residual ``exp([w]x) R0``) or ``"6d"``.
        optimize_scale: optimise the log scale (weak perspective) / log depth (pinhole).
        optimize_verts: optimise per-image vertex offsets (Laplacian-regularised).
        optimize_aspect: optimise a per-axis log scale of the shape in the object frame
            (``X -> e^a * X``, ``a`` (3,) per start): a 3-parameter shape correction that a voxel
            grid represents exactly (used by ``reconstruct --refine``).
        aspect_weight: weight of the penalty ``aspect_weight * |a|^2`` on that log scale (per
            start), so that a silhouette is matched by the pose before the shape is stretched
            (0: free stretching).
        rotation_weight: weight of the penalty ``rotation_weight * |w|^2`` on each start's
            rotation residual ``w`` (radians, ``rotation="axis_angle"``): a prior that keeps the
            refined rotation near its start unless the silhouette pays for the turn (0: none).
        lr_rotation (rad), lr_translation (fraction of S), lr_scale, lr_aspect (log units),
            lr_verts (object units):
            Adam step sizes at the start; they decay with a cosine to ``lr_final`` times that.
        laplacian_weight, offset_weight: weights of ``|L d|^2`` and ``|d|^2`` (per vertex mean)
            of the vertex offsets ``d``.
        render_size: ``S``, side of the working crop in pixels.
        crop_margin: margin of the working crop on each side (fraction of the mask box side).
        blur: ``"image"`` (Gaussian blur of both maps), ``"render"`` (anneal SoftRas sigma) or
            ``"none"``.
        blur_start: initial blur std as a fraction of ``S`` (``"image"``).
        blur_fraction: fraction of the steps over which the blur decays to 0.
        sigma_start, sigma: the renderer's SoftRas sigma (squared NDC units) decays
            geometrically from ``sigma_start`` to ``sigma`` over the blurred steps and stays at
            ``sigma`` after. A small final sigma matters: SoftRas' silhouette is dilated by
            its blur (at 128 x 128, +11 % area at 1e-4, +2.5 % at 1e-5 for a car), and the
            optimum then shrinks the object. With ``blur="render"`` give a large
            ``sigma_start`` (e.g. 2e-3) for a wide basin. eps: the renderer's culling threshold.
        coarse: render at ``S/2`` while the blur std is >= 2 pixels.
        w_iou, w_bce: loss weights.
        select_margin: how the returned start is chosen: the best final IoU, except that among
            the starts within ``select_margin`` of it the one nearest (geodesic) to the initial
            pose wins (the prediction breaks near-ties between silhouette-equivalent poses, e.g.
            a car and its 180-degree flip); ``0``: the best IoU alone.
        coarse_faces: in the coarse (``S/2``) steps, render a vertex-clustered proxy with at most
            this many faces (level of detail: at ``S/2`` a few-thousand-face mesh has sub-pixel
            faces, whose per-face cost dominates); ``None``: off. Not used with
            ``optimize_verts``.
        moment_init: before the first step, shift (and, with ``optimize_scale``, scale) each
            start so that its hard silhouette's centroid (and area) matches the mask's.
        max_faces: optimise the pose on a vertex-clustered proxy of meshes with more faces than
            this (:func:`simplify_mesh`); IoUs are always measured with the full mesh. Default
            5000: on a 28,937-face CAD car, 30 steps take 0.35 s instead of 0.63 s and end at a
            full-mesh IoU of 0.972 instead of 0.961 (``bench/refine.py --part large``). Not used
            with ``optimize_verts`` (the refined vertices are the mesh's own). ``None``: off.
        area_ratio_limit: refuse a mask whose area differs from the shape's projected area at
            the initial pose by more than this factor (either way).
        record_frames: keep the soft silhouette of every step (for :func:`save_animation`).
    """

    steps: int = 30
    starts: int = 16
    use_hypotheses: bool = True
    perturb_deg: float = 35.0
    keep: int = 2
    prune_fraction: float = 0.27
    rotation: str = "axis_angle"
    optimize_scale: bool = True
    optimize_verts: bool = False
    optimize_aspect: bool = False
    lr_rotation: float = 0.05
    lr_translation: float = 0.01
    lr_scale: float = 0.02
    lr_verts: float = 0.003
    lr_aspect: float = 0.02
    aspect_weight: float = 0.0
    rotation_weight: float = 0.0
    lr_final: float = 0.1
    laplacian_weight: float = 10.0
    offset_weight: float = 1.0
    render_size: int = 128
    crop_margin: float = 0.25
    blur: str = "image"
    blur_start: float = 0.05
    blur_fraction: float = 0.6
    sigma: float = 1e-5
    sigma_start: float = 1e-4
    eps: float = 1e-3
    coarse: bool = True
    w_iou: float = 1.0
    w_bce: float = 1.0
    select_margin: float = 0.01
    max_faces: int | None = 5000
    coarse_faces: int | None = 1500
    moment_init: bool = True
    area_ratio_limit: float = 6.0
    record_frames: bool = False

    def __post_init__(self) -> None:
        def bad(name, want):
            raise ShapeError(f"RefineConfig.{name}: expected {want}, got {getattr(self, name)!r}")

        for name in ("steps", "starts", "keep", "render_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(name, "an int >= 1")
        if self.render_size < 8:
            bad("render_size", "an int >= 8")
        if self.rotation not in ("axis_angle", "6d"):
            bad("rotation", "'axis_angle' or '6d'")
        if self.rotation_weight > 0 and self.rotation != "axis_angle":
            bad("rotation_weight", "0 with rotation='6d' (the prior is on the axis-angle residual)")
        if self.blur not in ("image", "render", "none"):
            bad("blur", "'image', 'render' or 'none'")
        for name in (
            "lr_rotation",
            "lr_translation",
            "lr_scale",
            "lr_aspect",
            "aspect_weight",
            "rotation_weight",
            "lr_verts",
            "lr_final",
            "perturb_deg",
            "laplacian_weight",
            "offset_weight",
            "crop_margin",
            "blur_start",
            "w_iou",
            "w_bce",
            "select_margin",
        ):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                bad(name, "a finite number >= 0")
        for name in ("prune_fraction", "blur_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                bad(name, "a number in [0, 1]")
        for name in ("sigma", "sigma_start"):
            if not getattr(self, name) > 0:
                bad(name, "a positive number")
        if not 0 < self.eps < 0.5:
            bad("eps", "0 < eps < 0.5")
        if not self.area_ratio_limit > 1:
            bad("area_ratio_limit", "a number > 1")
        if self.max_faces is not None and (isinstance(self.max_faces, bool) or int(self.max_faces) < 4):
            bad("max_faces", "None or an int >= 4")
        if self.w_iou + self.w_bce <= 0:
            raise ShapeError("RefineConfig: w_iou + w_bce must be > 0")


@dataclass
class RefineResult:
    """What :func:`refine_pose` returns for ``B`` images and ``M`` starts each.

    Attributes:
        R: ``(B, 3, 3)`` refined object-to-camera rotation.
        t: ``(B, 3)`` refined translation in the caller's camera (pinhole: camera units;
            weak perspective: ``t[:, :2]`` the input-pixel offset ``t2``, ``t[:, 2]`` as given).
        scale: ``(B,)`` refined weak-perspective scale (pixels per object unit); ``None`` for
            a pinhole camera (the depth ``t[:, 2]`` carries it).
        iou: ``(B,)`` hard-raster IoU of the refined pose with the mask (working frame).
        iou_init: ``(B,)`` the same for the initial pose (start 0, the given pose / first
            hypothesis) before refinement.
        start: ``(B,)`` int64 index of the chosen start in ``starts_R``.
        starts_R: ``(B, M, 3, 3)`` the starting rotations.
        start_iou: ``(B, M)`` final hard IoU of each start (NaN for starts pruned early).
        final_R: ``(B, M, 3, 3)`` the refined rotation of each start (NaN for starts pruned
            early): where the surviving starts ended, e.g. to tell one basin from two.
        loss: ``(steps, B)`` loss of the chosen start at each step.
        loss_starts: ``(steps, B, M)`` loss of every start (NaN after it was pruned).
        verts: per-image refined vertices ``(V_b, 3)`` when ``optimize_verts``, else ``None``.
        aspect: ``(B, 3)`` per-axis shape scale factors ``e^a`` when ``optimize_aspect``, else
            ``None`` (the refined shape is ``aspect * X``; ``verts`` include it).
        frames: ``(steps + 1, B, S, S)`` uint8 soft silhouettes of the chosen start in the
            working crop (frame 0 = the start) when ``record_frames``, else ``None``.
        boxes: ``(B, 3)`` working crops ``(x0, y0, side)`` in mask pixels (see
            :func:`poseshape.engine.inputs.crop_to_square`).
        masks: ``(B, 1, S, S)`` the working masks.
        seconds: wall time of the call.
    """

    R: torch.Tensor
    t: torch.Tensor
    scale: torch.Tensor | None
    iou: torch.Tensor
    iou_init: torch.Tensor
    start: torch.Tensor
    starts_R: torch.Tensor
    start_iou: torch.Tensor
    loss: torch.Tensor
    loss_starts: torch.Tensor
    verts: list[torch.Tensor] | None
    aspect: torch.Tensor | None
    frames: torch.Tensor | None
    boxes: torch.Tensor
    masks: torch.Tensor
    seconds: float = 0.0
    config: RefineConfig = field(default_factory=RefineConfig)
    final_R: torch.Tensor | None = None


# =============================================================================== helpers
def simplify_mesh(mesh: Mesh, max_faces: int) -> Mesh:
    """Vertex-clustering simplification to at most ``max_faces`` faces (silhouette proxy).

    Vertices are snapped to a cubic grid, each cell's vertices merged into their mean, and
    collapsed or duplicated faces dropped; the cell size is found by bisection. The
    silhouette changes by at most about one cell (reported nowhere else: IoUs in
    :func:`refine_pose` are always measured with the full mesh). Returns ``mesh`` itself when
    it already has ``<= max_faces`` faces.
    """
    if mesh.num_faces <= max_faces:
        return mesh
    v = mesh.verts.detach().double()
    lo, ext = v.amin(0), float((v.amax(0) - v.amin(0)).max())

    def unique_rows(x: torch.Tensor, base: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``torch.unique(x, dim=0, return_inverse=True)`` for ``(n, 3)`` ints in ``[0, base)``,
        through one int64 code per row (a 1-D unique is ~10x faster); rows in code order."""
        if base**3 >= 2**62:
            return torch.unique(x, dim=0, return_inverse=True)
        code = x[:, 0] + base * (x[:, 1] + base * x[:, 2])
        return torch.unique(code, return_inverse=True)

    def cluster(cell: float) -> Mesh:
        key = torch.floor((v - lo) / cell).long()
        uniq, inv = unique_rows(key, int(key.max()) + 1)
        cnt = torch.bincount(inv, minlength=len(uniq)).to(v.dtype)
        nv = torch.zeros(len(uniq), 3, dtype=v.dtype).index_add_(0, inv, v) / cnt[:, None]
        nf = inv[mesh.faces]
        ok = (nf[:, 0] != nf[:, 1]) & (nf[:, 1] != nf[:, 2]) & (nf[:, 0] != nf[:, 2])
        nf = nf[ok]
        if len(nf):
            _, idx = unique_rows(torch.sort(nf, 1).values, len(uniq))
            first = torch.full((int(idx.max()) + 1,), len(nf)).scatter_reduce(0, idx, torch.arange(len(nf)), "amin")
            nf = nf[first.sort().values]
        return Mesh(nv.to(mesh.verts.dtype), nf)

    lo_c, hi_c = ext * 1e-4, ext * 0.5
    best = cluster(hi_c)
    for _ in range(18):
        mid = math.sqrt(lo_c * hi_c)
        m = cluster(mid)
        if m.num_faces <= max_faces:
            best, hi_c = m, mid
        else:
            lo_c = mid
    return best


def _axis_rot(axis: int, angle: float, dtype=torch.float64) -> torch.Tensor:

    w = torch.zeros(3, dtype=dtype)
    w[axis] = angle
    return so3_exp(w)


def start_rotations(R0: torch.Tensor, n: int, perturb_deg: float = 35.0) -> torch.Tensor:
    """``n`` starting rotations around ``R0`` ``(B, 3, 3)`` -> ``(B, n, 3, 3)``.

    In order (the first ``n`` are taken): ``R0``; the 180-degree flip about the object's up
    axis ``R0 Ry(pi)``; ``R0 Ry(+-a)`` (azimuth); ``Rx(+-a) R0`` (camera x: elevation);
    ``Rz(+-a) R0`` (camera z: in-plane) -- the default 8; then the 8 rotations by ``a`` about
    the camera's cube diagonals ``(+-1, +-1, +-1)/sqrt(3)`` (with the 6 axis ones they cover
    the ball of radius ``a`` around ``R0`` evenly); ``R0 Ry(pi +- a)``; ``R0 Ry(+-pi/2)``;
    ``Rx(+-a) R0 Ry(pi)``, ``Rz(+-a) R0 Ry(pi)``; beyond these, rotations about the face
    diagonals by ``+-a``, ``+-2a``, ... ``a = perturb_deg`` in degrees.
    """
    a = math.radians(perturb_deg)
    dt = R0.dtype
    right: list[tuple[torch.Tensor | None, torch.Tensor | None]] = []  # (left factor, right factor)

    def Rx(x):
        return _axis_rot(0, x)

    def Ry(x):
        return _axis_rot(1, x)

    def Rz(x):
        return _axis_rot(2, x)

    diag = [
        so3_exp(torch.tensor([sx, sy, sz], dtype=torch.float64) * a / math.sqrt(3))
        for sx in (1, -1)
        for sy in (1, -1)
        for sz in (1, -1)
    ]
    right += [
        (None, None),
        (None, Ry(math.pi)),
        (None, Ry(a)),
        (None, Ry(-a)),
        (Rx(a), None),
        (Rx(-a), None),
        (Rz(a), None),
        (Rz(-a), None),
    ]
    right += [(d, None) for d in diag]
    right += [
        (None, Ry(math.pi + a)),
        (None, Ry(math.pi - a)),
        (None, Ry(math.pi / 2)),
        (None, Ry(-math.pi / 2)),
        (Rx(a), Ry(math.pi)),
        (Rx(-a), Ry(math.pi)),
        (Rz(a), Ry(math.pi)),
        (Rz(-a), Ry(math.pi)),
    ]
    k = 1
    while len(right) < n:
        for d in ((1, 1, 0), (1, -1, 0), (0, 1, 1), (0, 1, -1), (1, 0, 1), (1, 0, -1)):
            ax = torch.tensor(d, dtype=torch.float64) / math.sqrt(2)
            right += [(so3_exp(ax * a * k), None), (so3_exp(-ax * a * k), None)]
        k += 1
    out = []
    for L, Rr in right[:n]:
        R = R0
        if Rr is not None:
            R = R @ Rr.to(dt)
        if L is not None:
            R = L.to(dt) @ R
        out.append(R)
    return torch.stack(out, 1)


def _box_blur_1d(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Mean over a window of ``2 r + 1`` along ``dim`` (zero padding), via a cumulative sum."""
    n = x.shape[dim]
    pad = [0, 0] * (x.dim() - 1 - (dim % x.dim())) + [r + 1, r]
    c = F.pad(x, pad).cumsum(dim)
    return (c.narrow(dim, 2 * r + 1, n) - c.narrow(dim, 0, n)) / (2 * r + 1)


def _blur_radius(std: float) -> int:
    return round((math.sqrt(4 * std * std + 1) - 1) / 2)


def _box_blur_3x(x: torch.Tensor, r: int) -> torch.Tensor:
    for _ in range(3):
        x = _box_blur_1d(_box_blur_1d(x, r, -1), r, -2)
    return x


class _SymmetricBlur(torch.autograd.Function):
    """The blur is a symmetric linear map (each zero-padded box mean is a symmetric banded
    matrix, and the x and y passes commute), so its backward is the same blur of the gradient:
    no graph of the 12 cumulative-sum passes is kept, and the backward costs one forward."""

    @staticmethod
    def forward(ctx, x, r):
        ctx.r = r
        return _box_blur_3x(x, r)

    @staticmethod
    def backward(ctx, g):
        return _box_blur_3x(g, ctx.r), None


def _gaussian_blur(x: torch.Tensor, std: float) -> torch.Tensor:
    """Approximate Gaussian blur of ``(N, 1, H, W)`` maps (std in pixels, zero padding).

    Three box filters of width ``w = 2 r + 1`` per axis (variance ``3 (w^2 - 1) / 12``, the
    nearest odd ``w`` to ``std``), each a difference of cumulative sums: the cost does not grow
    with the blur, unlike a convolution with a ``6 std`` wide kernel. Differentiable w.r.t.
    ``x`` (the gradient is the same blur of the incoming gradient).
    """
    r = _blur_radius(std)
    if r < 1:
        return x
    return _SymmetricBlur.apply(x, r)


def hard_silhouettes(verts, faces, R, t, K=None, scale=None, image_size=128) -> torch.Tensor:
    """Exact silhouettes ``(N, 1, H, W)`` {0, 1} (the C++ z-buffer when it builds, else
    :func:`poseshape.render.mesh_hard.rasterize`; the two are bit-identical)."""

    with torch.no_grad():
        return rasterize(verts, faces, R, t, K, image_size, scale=scale).mask


# =============================================================================== input checks
def _as_meshes(shape, B: int) -> list[Mesh]:

    if isinstance(shape, Mesh):
        meshes = [shape] * B
    elif isinstance(shape, Meshes):
        meshes = shape.to_list()
    elif isinstance(shape, (list, tuple)):
        meshes = list(shape)
    else:
        raise ShapeError(
            f"shape: expected a Mesh or a list of B Meshes, got {type(shape).__name__} "
            "(convert voxels with poseshape.shapes.convert.voxels_to_mesh)"
        )
    if len(meshes) != B:
        raise ShapeError(f"shape: got {len(meshes)} meshes for {B} masks; give one Mesh or one per mask")
    for i, m in enumerate(meshes):
        if not isinstance(m, Mesh):
            raise ShapeError(f"shape[{i}]: expected a Mesh, got {type(m).__name__}")
        if m.num_faces == 0:
            raise ShapeError(f"shape[{i}]: the mesh has no faces (an empty shape cannot be refined)")
    return meshes


def _check_masks(masks) -> torch.Tensor:
    if not isinstance(masks, torch.Tensor):
        raise ShapeError(f"masks: expected a torch.Tensor (B, 1, H, W), got {type(masks).__name__}")
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ShapeError(f"masks: expected shape (B, 1, H, W), got {tuple(masks.shape)}")
    if masks.shape[0] < 1 or masks.shape[-1] < 2 or masks.shape[-2] < 2:
        raise ShapeError(f"masks: expected a non-empty batch of images of at least 2 x 2, got {tuple(masks.shape)}")
    m = masks.detach().float()
    check_finite(m, "masks")
    if m.min() < 0 or m.max() > 1:
        raise ShapeError("masks: expected values in [0, 1]")
    fg = (m >= 0.5).flatten(1).sum(1)
    empty = torch.nonzero(fg == 0).flatten().tolist()
    if empty:
        raise ShapeError(f"masks: mask(s) {empty} are empty (no pixel >= 0.5): nothing to align the shape to")
    return (m >= 0.5).float()


def _check_pose(R, t, B: int):
    if not isinstance(R, torch.Tensor) or not isinstance(t, torch.Tensor):
        raise ShapeError("R, t: expected torch.Tensors")
    if R.dim() == 3:
        R, t_ok = R[:, None], t.dim() == 2
        t = t[:, None] if t_ok else t
    elif R.dim() != 4:
        raise ShapeError(f"R: expected shape (B, 3, 3) or hypotheses (B, M, 3, 3), got {tuple(R.shape)}")
    check_shape(R, "R", (None, None, 3, 3), batch=False)
    if t.dim() != 3 or t.shape[-1] != 3 or tuple(t.shape[:2]) != tuple(R.shape[:2]):
        want = "(B, 3)" if R.shape[1] == 1 else f"(B, M, 3) = {(R.shape[0], R.shape[1], 3)}"
        raise ShapeError(f"t: expected shape {want} matching R {tuple(R.shape)}, got {tuple(t.shape)}")
    if R.shape[0] != B:
        raise ShapeError(f"R: batch size {R.shape[0]} does not match masks' {B}")
    check_finite(R, "initial pose R")
    check_finite(t, "initial pose t")
    Rd = R.detach().double()
    err = (Rd.transpose(-1, -2) @ Rd - torch.eye(3, dtype=torch.float64)).abs().amax()
    det = torch.linalg.det(Rd)
    if err > 1e-3 or (det < 0.99).any():
        raise ShapeError(
            f"R: not a rotation matrix (max |R^T R - I| = {float(err):.2g}, min det = {float(det.min()):.3g})"
        )
    return R.detach().double(), t.detach().double()


def _check_camera(K, scale, B: int, M: int):
    if (K is None) == (scale is None):
        raise ShapeError(
            "give exactly one camera: K (pinhole intrinsics (B, 3, 3) or (3, 3)) or "
            "scale (weak perspective, float or (B,))"
        )
    if K is not None:
        K = torch.as_tensor(K, dtype=torch.float64)
        if K.dim() == 2:
            K = K[None].expand(B, 3, 3)
        if K.dim() != 3 or tuple(K.shape) != (B, 3, 3):
            raise ShapeError(f"K: expected shape (3, 3) or (B, 3, 3) = {(B, 3, 3)}, got {tuple(K.shape)}")
        check_finite(K, "K")
        if (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any():
            raise ShapeError("K: focal lengths must be positive")
        return K.clone(), None
    s = torch.as_tensor(scale, dtype=torch.float64)
    if s.dim() == 0:
        s = s.expand(B, M)
    elif s.dim() == 1 and s.shape[0] == B:
        s = s[:, None].expand(B, M)
    elif not (s.dim() == 2 and tuple(s.shape) == (B, M)):
        raise ShapeError(f"scale: expected a float, (B,) or (B, M) = {(B, M)}, got {tuple(s.shape)}")
    check_finite(s, "scale")
    if (s <= 0).any():
        raise ShapeError("scale: expected positive values (pixels per object unit)")
    return None, s.clone()


# =============================================================================== working frame
def _working_crops(masks: torch.Tensor, S: int, margin: float):
    """Square crops around each mask: ``(B, 1, S, S)`` masks and boxes ``(B, 3)`` (x0, y0, side)."""

    crops, boxes = [], []
    for m in masks:
        _, cm, box = crop_to_square(m.expand(3, -1, -1), m, S, margin=margin)
        crops.append(cm)
        boxes.append(box)
    return torch.stack(crops).double(), torch.tensor(boxes, dtype=torch.float64)


def _crop_affine(boxes: torch.Tensor, S: float, pad: float = 0.0) -> torch.Tensor:
    """``(B, 3, 3)`` pixel affine input -> working crop (+ ``pad`` pixels on each side)."""
    f = S / boxes[:, 2]
    A = torch.zeros(len(boxes), 3, 3, dtype=torch.float64)
    A[:, 0, 0] = f
    A[:, 1, 1] = f
    A[:, 0, 2] = -f * boxes[:, 0] + pad
    A[:, 1, 2] = -f * boxes[:, 1] + pad
    A[:, 2, 2] = 1
    return A


class _Poses:
    """The optimised parameters of ``N = B * M`` poses and their mapping to ``(R, t, K|scale)``.

    Working-frame camera: pinhole ``K (N, 3, 3)`` or weak perspective ``scale (N,)`` with
    ``t[:, :2]`` the pixel position of the object origin.
    """

    def __init__(self, R0, t0, K, s0, S, cfg: RefineConfig):
        self.R0, self.t0, self.K, self.s0, self.S, self.cfg = R0, t0, K, s0, float(S), cfg
        N = R0.shape[0]
        dt = torch.float32
        if cfg.rotation == "6d":
            self.rot = matrix_to_rotation_6d(R0).to(dt).clone().requires_grad_(True)
        else:
            self.rot = torch.zeros(N, 3, dtype=dt, requires_grad=True)
        self.shift = torch.zeros(N, 2, dtype=dt, requires_grad=True)
        self.logs = torch.zeros(N, dtype=dt, requires_grad=cfg.optimize_scale)
        self.aspect = torch.zeros(N, 3, dtype=dt, requires_grad=cfg.optimize_aspect)
        if K is not None:  # projected origin and depth of the start
            self.z0 = t0[:, 2].clone()
            uvw = (K @ t0[:, :, None])[..., 0]
            self.uv0 = uvw[:, :2] / uvw[:, 2:3]

    def params(self):
        groups = [
            {"params": [self.rot], "lr": self.cfg.lr_rotation, "base": self.cfg.lr_rotation},
            {"params": [self.shift], "lr": self.cfg.lr_translation, "base": self.cfg.lr_translation},
        ]
        if self.cfg.optimize_scale:
            groups.append({"params": [self.logs], "lr": self.cfg.lr_scale, "base": self.cfg.lr_scale})
        if self.cfg.optimize_aspect:
            groups.append({"params": [self.aspect], "lr": self.cfg.lr_aspect, "base": self.cfg.lr_aspect})
        return groups

    def select(self, idx: torch.Tensor) -> None:
        """Keep poses ``idx`` (the optimiser state is sliced by the caller)."""
        for name in ("R0", "t0", "K", "s0", "z0", "uv0"):
            x = getattr(self, name, None)
            if x is not None:
                setattr(self, name, x[idx])
        for name in ("rot", "shift", "logs", "aspect"):
            x = getattr(self, name)
            setattr(self, name, x.detach()[idx].clone().requires_grad_(x.requires_grad))

    def rotation(self) -> torch.Tensor:

        if self.cfg.rotation == "6d":
            return rotation_6d_to_matrix(self.rot)
        return so3_exp(self.rot) @ self.R0.to(self.rot.dtype)

    def camera(self, factor: float = 1.0, pad: float = 0.0, detach: bool = False):
        """``(R, t, K, scale)`` (float32) in the working frame scaled by ``factor`` (+ ``pad`` px)."""
        R = self.rotation()
        shift, logs = self.shift, self.logs
        if detach:
            R, shift, logs = R.detach(), shift.detach(), logs.detach()
        S = self.S
        if self.K is None:
            s = self.s0.float() * torch.exp(logs)
            t2 = self.t0[:, :2].float() + shift * S
            t = torch.cat([t2 * factor + pad, self.t0[:, 2:].float()], 1)
            return R, t, None, s * factor
        z = self.z0.float() * torch.exp(-logs)
        uv = self.uv0.float() + shift * S
        Kf = self.K.float()
        ray = torch.linalg.solve(Kf, torch.cat([uv, torch.ones_like(uv[:, :1])], 1)[..., None])[..., 0]
        t = ray / ray[:, 2:3] * z[:, None]
        A = torch.tensor([[factor, 0, pad], [0, factor, pad], [0, 0, 1]], dtype=torch.float32)
        return R, t, A @ Kf, None


def _render_soft(verts, faces, R, t, K, s, size, sigma, eps):

    return render_silhouette(verts, faces, R, t, K, scale=s, image_size=size, sigma=sigma, eps=eps)


def _slice_adam(opt: torch.optim.Adam, old_new: list[tuple[torch.Tensor, torch.Tensor]], idx: torch.Tensor):
    """Replace parameters in ``opt`` (and slice their Adam moments) after pruning."""
    for group in opt.param_groups:
        for k, p in enumerate(group["params"]):
            for old, new in old_new:
                if p is old:
                    st = opt.state.pop(old, None)
                    group["params"][k] = new
                    if st:
                        opt.state[new] = {
                            key: (v[idx].clone() if isinstance(v, torch.Tensor) and v.dim() > 0 else v)
                            for key, v in st.items()
                        }


# =============================================================================== main entry
def refine_pose(
    masks: torch.Tensor,
    shape,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor | None = None,
    *,
    scale=None,
    config: RefineConfig | None = None,
    progress: bool = False,
    **overrides,
) -> RefineResult:
    """Refine the pose of a shape so that its silhouette matches each mask.

    Args:
        masks: ``(B, 1, H, W)`` object masks in [0, 1] (foreground = ``>= 0.5``).
        shape: a :class:`~poseshape.shapes.meshes.Mesh` (object frame) shared by all images,
            or a list of ``B`` meshes. Voxels: convert with
            :func:`poseshape.shapes.convert.voxels_to_mesh`.
        R: ``(B, 3, 3)`` initial object-to-camera rotation, or hypotheses ``(B, M, 3, 3)``
            (then used as the starts instead of :func:`start_rotations`).
        t: ``(B, 3)`` (or ``(B, M, 3)``) translation, ``X_cam = R X + t``. Pinhole: camera
            units. Weak perspective: ``t[..., :2]`` is the pixel position of the object origin
            (``u = scale (R X)[:2] + t[:2]``).
        K: ``(3, 3)`` or ``(B, 3, 3)`` pinhole intrinsics in mask pixels, or ``None`` with
            ``scale``.
        scale: weak-perspective scale in mask pixels per object unit: float, ``(B,)`` or
            ``(B, M)``.
        config: :class:`RefineConfig`; keyword ``overrides`` replace its fields
            (``refine_pose(..., steps=50, starts=1)``).
        progress: show a tqdm bar over the steps.

    Returns:
        :class:`RefineResult`.

    Raises:
        ShapeError: wrong shapes or types, NaN/inf in the masks, the pose or the camera, a
            non-rotation ``R``, an empty mask, an empty mesh, a bad config value.
        PoseshapeError: a mask the shape cannot cover. With the initial pose (start 0) placed
            in the working crop of its mask (a square ``1 + 2 crop_margin`` times the mask's
            box, padded by half its side on each side) the shape must be visible, and the
            mask's area and the shape's projected area must agree within
            ``area_ratio_limit`` (either way): a shape 6 times too small or too large is a
            wrong camera or a wrong object, not something 30 small steps repair.
    """
    t_start = time.perf_counter()
    unknown = set(overrides) - {f.name for f in fields(RefineConfig)}
    if unknown:
        raise ShapeError(f"refine_pose: unknown setting(s) {sorted(unknown)}")
    cfg = replace(config or RefineConfig(), **overrides) if overrides else (config or RefineConfig())
    m_bin = _check_masks(masks)
    B = m_bin.shape[0]
    meshes = _as_meshes(shape, B)
    Rh, th = _check_pose(R, t, B)
    hyp = Rh.shape[1] > 1
    M = Rh.shape[1] if hyp else cfg.starts
    K0, s0 = _check_camera(K, scale, B, Rh.shape[1])
    S = cfg.render_size

    # --- working frame: crops around the masks, camera mapped into them
    wmask, boxes = _working_crops(m_bin, S, cfg.crop_margin)
    A = _crop_affine(boxes, S)
    f = S / boxes[:, 2]
    if not hyp:
        starts = start_rotations(Rh[:, 0], M, cfg.perturb_deg)
        th = th.expand(B, M, 3)
        if s0 is not None:
            s0 = s0[:, :1].expand(B, M)
    else:
        starts = Rh
    N = B * M
    R0 = starts.reshape(N, 3, 3)
    t0 = th.reshape(N, 3).clone()
    img = torch.arange(B).repeat_interleave(M)  # image of each pose
    if K0 is not None:
        Kw = (A @ K0)[img]
        sw = None
    else:
        Kw = None
        sw = s0.reshape(N) * f[img]
        t0[:, :2] = f[img, None] * (t0[:, :2] - boxes[img, :2])

    # --- meshes: groups of images sharing one mesh; optional proxies
    groups: dict[int, list[int]] = {}
    for b, m in enumerate(meshes):
        groups.setdefault(id(m), []).append(b)
    group_list = []
    for ids in groups.values():
        full = meshes[ids[0]]
        proxy = simplify_mesh(full, int(cfg.max_faces)) if cfg.max_faces and not cfg.optimize_verts else full
        lod = proxy
        if cfg.coarse and cfg.coarse_faces and not cfg.optimize_verts:
            lod = simplify_mesh(proxy, int(cfg.coarse_faces))
        group_list.append({"images": torch.tensor(ids), "full": full, "proxy": proxy, "coarse": lod})

    poses = _Poses(R0, t0, Kw, sw, S, cfg)

    # --- initial silhouettes: the coverage check and the initial IoU (start 0 of each image)
    pad = S / 2.0
    big = 2 * S
    wmask_big = F.pad(wmask, (int(pad),) * 4)
    first = torch.arange(B) * M  # start 0 of each image
    iou_first = _hard_iou_all(poses, group_list, img, wmask_big, big, pad, subset=first)
    area_m = wmask.flatten(1).sum(1)
    iou_init = iou_first["iou"].clone()
    for b in range(B):
        sil_area = float(iou_first["area"][b])
        if sil_area == 0:
            raise PoseshapeError(
                f"mask {b}: at the initial pose the shape projects outside the region around the mask "
                "(or behind the camera); check the pose's translation and the camera"
            )
        ratio = max(sil_area / float(area_m[b]), float(area_m[b]) / sil_area)
        if ratio > cfg.area_ratio_limit:
            raise PoseshapeError(
                f"mask {b}: the shape cannot cover the mask: the mask has {float(area_m[b]):.0f} pixels and the "
                f"shape's silhouette at the initial pose {sil_area:.0f} (working crop), a factor {ratio:.1f} "
                f"> area_ratio_limit {cfg.area_ratio_limit}; check the camera scale / K or the shape"
            )

    # --- moment matching: move each start so that its silhouette's centroid (and, with
    # optimize_scale, its area) matches the mask's before any gradient step. Adam moves every
    # parameter by about its learning rate per step whatever the gradient's size, so an
    # offset left to the optimiser also drags the rotation away in the blurred phase.
    if cfg.moment_init:
        cm = _centroids(wmask_big.float())[img]
        am = area_m[img].float()
        with torch.no_grad():
            for _ in range(2):
                # at half resolution: the moments need no more (the blurred first steps, at S/2, refine them)
                iou_start = _hard_iou_all(poses, group_list, img, None, big, pad, factor=0.5)
                ok = iou_start["area"] > 0
                du = torch.where(ok[:, None], (cm - iou_start["centroid"]) / S, torch.zeros_like(cm))
                poses.shift += du.clamp(-0.5, 0.5)
                if cfg.optimize_scale:
                    dl = torch.where(ok, 0.5 * torch.log(am / iou_start["area"].clamp_min(1)), torch.zeros_like(am))
                    poses.logs += dl.clamp(-1.0, 1.0)

    # --- vertex offsets
    offsets = None
    if cfg.optimize_verts:
        offsets = [torch.zeros(len(g["images"]), g["proxy"].num_verts, 3, requires_grad=True) for g in group_list]
    opt_groups = poses.params()
    if offsets is not None:
        opt_groups.append({"params": offsets, "lr": cfg.lr_verts, "base": cfg.lr_verts})
    opt = torch.optim.Adam(opt_groups, betas=(0.9, 0.99))

    # --- schedules
    steps = cfg.steps
    n_blur = max(1, round(cfg.blur_fraction * steps)) if cfg.blur != "none" else 0

    def blur_at(k: int) -> float:
        if k >= n_blur:
            return 0.0
        b0 = cfg.blur_start * S
        if n_blur == 1:
            return b0
        return b0 * (0.5 / b0) ** (k / (n_blur - 1)) if b0 > 0.5 else b0

    def sigma_at(k: int) -> float:
        if k >= n_blur:
            return cfg.sigma
        return cfg.sigma_start * (cfg.sigma / cfg.sigma_start) ** (k / max(1, n_blur - 1))

    prune_step = round(cfg.prune_fraction * steps) if cfg.keep < M else -1
    alive = torch.arange(N)  # global pose ids still optimised
    loss_log = torch.full((steps, N), float("nan"))
    frames = torch.zeros(steps + 1, N, S, S, dtype=torch.uint8) if cfg.record_frames else None
    mask_half = F.interpolate(wmask.float(), size=(S // 2, S // 2), mode="area")
    wmask_f = wmask.float()

    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="refine", unit="step", leave=False)
    for k in it:
        frac = k / max(1, steps - 1)
        for g in opt.param_groups:
            g["lr"] = g["base"] * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * frac)))
        bl = blur_at(k) if cfg.blur == "image" else 0.0
        coarse = cfg.coarse and bl >= 2.0
        factor = 0.5 if coarse else 1.0
        size = S // 2 if coarse else S
        target_all = mask_half if coarse else wmask_f
        target_blur = _gaussian_blur(target_all, bl * factor) if bl > 0 else target_all  # once per image
        Rk, tk, Kk, sk = poses.camera(factor=size / S)
        per_pose = torch.zeros(len(alive))
        total = 0.0
        for gi, g in enumerate(group_list):
            sel = torch.nonzero(torch.isin(img[alive], g["images"])).flatten()
            if sel.numel() == 0:
                continue
            mesh_k = g["coarse"] if coarse else g["proxy"]
            verts = mesh_k.verts.float()
            local = torch.searchsorted(g["images"], img[alive][sel])  # index within the group
            if offsets is not None:
                vb = verts[None] + offsets[gi][local]
            else:
                vb = verts[None].expand(sel.numel(), -1, -1)
            if cfg.optimize_aspect:
                vb = vb * torch.exp(poses.aspect[sel])[:, None, :]
            sil = _render_soft(
                vb,
                mesh_k.faces,
                Rk[sel],
                tk[sel],
                None if Kk is None else Kk[sel],
                None if sk is None else sk[sel],
                size,
                sigma_at(k),
                cfg.eps,
            )
            tb = target_blur[img[alive][sel]]
            sb = _gaussian_blur(sil, bl * factor) if bl > 0 else sil

            lp = cfg.w_iou * reprojection_iou(sb, tb, reduction="none") + cfg.w_bce * reprojection_bce(
                sb.clamp(0, 1), tb, reduction="none"
            )
            if cfg.optimize_aspect and cfg.aspect_weight > 0:
                lp = lp + cfg.aspect_weight * poses.aspect[sel].pow(2).sum(-1)
            if cfg.rotation_weight > 0 and cfg.rotation == "axis_angle":
                lp = lp + cfg.rotation_weight * poses.rot[sel].pow(2).sum(-1)
            if offsets is not None:
                d = offsets[gi][local]

                lp = (
                    lp
                    + cfg.laplacian_weight * laplacian(d, g["proxy"].faces).pow(2).sum(-1).mean(-1)
                    + cfg.offset_weight * d.pow(2).sum(-1).mean(-1)
                )
            per_pose = per_pose.index_put((sel,), lp.detach().float())
            total = total + lp.sum()
            if frames is not None:
                s8 = sil.detach()
                if s8.shape[-1] != S:
                    s8 = F.interpolate(s8, size=(S, S), mode="bilinear", align_corners=False)
                frames[k, alive[sel]] = (s8[:, 0].clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        loss_log[k, alive] = per_pose
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if k + 1 == prune_step and len(alive) > B * cfg.keep:
            keep_local = []
            for b in range(B):
                mine = torch.nonzero(img[alive] == b).flatten()
                order = torch.argsort(per_pose[mine])[: cfg.keep]
                keep_local.append(mine[order.sort().values])
            kl = torch.cat(keep_local)
            olds = [poses.rot, poses.shift, poses.logs, poses.aspect]
            poses.select(kl)
            _slice_adam(opt, list(zip(olds, [poses.rot, poses.shift, poses.logs, poses.aspect])), kl)
            alive = alive[kl]
    if frames is not None:  # the final pose
        Rk, tk, Kk, sk = poses.camera()
        for gi, g in enumerate(group_list):
            sel = torch.nonzero(torch.isin(img[alive], g["images"])).flatten()
            if sel.numel() == 0:
                continue
            local = torch.searchsorted(g["images"], img[alive][sel])
            vb = g["proxy"].verts.float()[None] + (offsets[gi][local] if offsets is not None else 0)
            vb = vb.expand(sel.numel(), -1, -1) * torch.exp(poses.aspect[sel].detach())[:, None, :]
            with torch.no_grad():
                sil = _render_soft(
                    vb,
                    g["proxy"].faces,
                    Rk[sel],
                    tk[sel],
                    None if Kk is None else Kk[sel],
                    None if sk is None else sk[sel],
                    S,
                    cfg.sigma,
                    cfg.eps,
                )
            frames[steps, alive[sel]] = (sil[:, 0].clamp(0, 1) * 255 + 0.5).to(torch.uint8)

    # --- final hard IoU of the survivors, choice, mapping back
    with torch.no_grad():
        fin = _hard_iou_all(poses, group_list, img[alive], wmask_big, big, pad, offsets=offsets)
    start_iou = torch.full((N,), float("nan"))
    start_iou[alive] = fin["iou"]
    Rf, tf, _, sf = poses.camera(detach=True)
    final_R = torch.full((N, 3, 3), float("nan"), dtype=Rf.dtype)
    final_R[alive] = Rf
    best_local = torch.zeros(B, dtype=torch.long)
    prior = starts[:, 0]  # (B, 3, 3): the given pose / first hypothesis
    for b in range(B):
        mine = torch.nonzero(img[alive] == b).flatten()
        # ties (equal IoU) go to the lower final loss
        scores = fin["iou"][mine] - 1e-6 * torch.nan_to_num(loss_log[-1, alive[mine]], nan=1e3)
        pick = torch.argmax(scores)
        if cfg.select_margin > 0:  # near-ties in IoU (e.g. a car and its 180-degree flip): the prior decides
            close = fin["iou"][mine] >= fin["iou"][mine].max() - cfg.select_margin
            dist = geodesic_distance(Rf[mine].double(), prior[b : b + 1].double().expand(len(mine), 3, 3))
            pick = torch.argmin(torch.where(close, dist, torch.full_like(dist, math.inf)))
        best_local[b] = mine[pick]
    Rb = Rf[best_local].double()
    tb = tf[best_local].double()
    if K0 is None:
        fb = f
        s_out = sf[best_local].double() / fb
        t_out = torch.cat([tb[:, :2] / fb[:, None] + boxes[:, :2], th[:, 0, 2:]], 1)
    else:
        s_out, t_out = None, tb
    chosen = alive[best_local]
    start_idx = chosen - torch.arange(B) * M
    verts_out = None
    if offsets is not None:
        verts_out = []
        for b in range(B):
            for gi, g in enumerate(group_list):
                if b in g["images"].tolist():
                    j = g["images"].tolist().index(b)
                    asp = torch.exp(poses.aspect[best_local[b]].detach())
                    verts_out.append(((g["proxy"].verts.float() + offsets[gi][j].detach()) * asp).clone())
    loss_starts = loss_log.view(steps, B, M)
    loss = loss_log[:, chosen]
    fr = frames[:, chosen] if frames is not None else None
    return RefineResult(
        R=Rb.to(R.dtype),
        t=t_out.to(t.dtype),
        scale=s_out,
        iou=fin["iou"][best_local].float(),
        iou_init=iou_init.float(),
        start=start_idx.long(),
        starts_R=starts.to(R.dtype),
        start_iou=start_iou.view(B, M),
        loss=loss,
        loss_starts=loss_starts,
        verts=verts_out,
        aspect=torch.exp(poses.aspect[best_local].detach()) if cfg.optimize_aspect else None,
        frames=fr,
        boxes=boxes,
        masks=wmask.float(),
        seconds=time.perf_counter() - t_start,
        config=cfg,
        final_R=final_R.view(B, M, 3, 3).to(R.dtype),
    )


def _hard_iou_all(
    poses: _Poses, group_list, img_alive, wmask_big, big, pad, offsets=None, subset=None, factor: float = 1.0
):
    """Hard-raster IoU, silhouette area and centroid of every current pose on the padded working canvas.

    ``subset``: only these poses (indices into ``poses``). ``factor`` < 1: render the canvas at
    ``factor`` times its size; area and centroid are given in full-canvas pixels. The IoU needs
    ``wmask_big`` at the rendered size (``factor`` 1); with ``wmask_big=None`` it is left at 0.
    """
    if wmask_big is not None and factor != 1.0:
        raise ValueError("_hard_iou_all: the IoU is only computed at factor 1 (pass wmask_big=None)")
    Rk, tk, Kk, sk = poses.camera(factor=factor, pad=pad * factor, detach=True)
    aspect = poses.aspect.detach()
    if subset is not None:
        Rk, tk, img_alive, aspect = Rk[subset], tk[subset], img_alive[subset], aspect[subset]
        Kk = None if Kk is None else Kk[subset]
        sk = None if sk is None else sk[subset]
    size = int(round(big * factor))
    n = Rk.shape[0]
    iou = torch.zeros(n)
    area = torch.zeros(n)
    cen = torch.zeros(n, 2)
    for gi, g in enumerate(group_list):
        sel = torch.nonzero(torch.isin(img_alive, g["images"])).flatten()
        if sel.numel() == 0:
            continue
        full = g["full"]
        verts = full.verts.float()[None].expand(sel.numel(), -1, -1)
        if offsets is not None:  # offsets live on the proxy; they apply when the proxy is the mesh
            local = torch.searchsorted(g["images"], img_alive[sel])
            if g["proxy"] is full:
                verts = verts + offsets[gi][local].detach()
        verts = verts * torch.exp(aspect[sel])[:, None, :]
        sil = hard_silhouettes(
            verts, full.faces, Rk[sel], tk[sel], None if Kk is None else Kk[sel], None if sk is None else sk[sel], size
        )
        a_sil = sil.flatten(1).sum(1)
        if wmask_big is not None:
            tgt = wmask_big[img_alive[sel]].float()
            a_tgt = tgt.flatten(1).sum(1)
            inter = (sil * tgt).flatten(1).sum(1)
            iou[sel] = (inter / (a_sil + a_tgt - inter).clamp_min(1)).float()
        area[sel] = a_sil.float() / (factor * factor)
        cen[sel] = _centroids(sil) / factor
    return {"iou": iou, "area": area, "centroid": cen}


def _centroids(maps: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` -> ``(N, 2)`` pixel centroids ``(u, v)`` (pixel centres at +0.5)."""
    H, W = maps.shape[-2:]
    w = maps[:, 0].double()
    tot = w.flatten(1).sum(1).clamp_min(1e-9)
    u = (w.sum(1) * (torch.arange(W, dtype=torch.float64) + 0.5)).sum(1) / tot
    v = (w.sum(2) * (torch.arange(H, dtype=torch.float64) + 0.5)).sum(1) / tot
    return torch.stack([u, v], 1).float()


# =============================================================================== pictures
def overlay_frames(result: RefineResult, i: int, image: torch.Tensor | None = None) -> list[np.ndarray]:
    """Overlay pictures ``(S, S, 3)`` uint8 of item ``i``'s recorded silhouettes, one per step.

    ``image``: the working crop ``(3, S, S)`` in [0, 1] to draw on (e.g. from
    :func:`poseshape.engine.inputs.crop_to_square` with the same mask, ``render_size`` and
    ``crop_margin``); default: the working mask in grey. The mask's contour is drawn too.
    """

    if result.frames is None:
        raise PoseshapeError("overlay_frames: the result has no frames; refine with record_frames=True")
    m = result.masks[i, 0]
    base = image if image is not None else (0.35 + 0.4 * m)[None].expand(3, -1, -1)
    out = []
    for k in range(result.frames.shape[0]):
        sil = result.frames[k, i].float() / 255.0
        out.append(overlay_silhouette(base, sil, m))
    return out


def _label(img: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(img)
    ImageDraw.Draw(im).text((3, 2), text, fill=(255, 255, 0))
    return np.asarray(im)


def save_animation(
    frames: Sequence[np.ndarray],
    gif_path: str | Path | None = None,
    strip_path: str | Path | None = None,
    n_strip: int = 8,
    duration_ms: int = 120,
) -> dict[str, bytes]:
    """Encode overlay frames (e.g. :func:`overlay_frames`) as a GIF and a frame-strip PNG.

    The strip shows ``n_strip`` evenly spaced frames (first and last included) side by side,
    each labelled with its step (paper 003 Fig. 5). Files are written atomically when paths are
    given. Returns ``{"gif": bytes, "strip": bytes}``.
    """
    import io

    from PIL import Image

    if len(frames) == 0:
        raise ShapeError("save_animation: no frames")
    pics = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    buf = io.BytesIO()
    pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=duration_ms, loop=0)
    idx = np.unique(np.linspace(0, len(frames) - 1, min(n_strip, len(frames))).round().astype(int))
    tiles = [_label(np.asarray(frames[j], np.uint8), f"t={j}") for j in idx]
    h = tiles[0].shape[0]
    strip = np.full((h, sum(t.shape[1] for t in tiles) + 2 * (len(tiles) - 1), 3), 255, np.uint8)
    x = 0
    for tile in tiles:
        strip[:, x : x + tile.shape[1]] = tile
        x += tile.shape[1] + 2
    out = {"gif": buf.getvalue(), "strip": png_bytes(strip)}
    if gif_path is not None:
        write_bytes_atomic(gif_path, out["gif"])
    if strip_path is not None:
        write_bytes_atomic(strip_path, out["strip"])
    return out


# =============================================================================== predictions
