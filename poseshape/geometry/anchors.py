"""Rotation and translation anchors for anchor + residual pose estimation (paper 004, §3.2-3.3).

Rotation anchors are unit quaternions ``(w, x, y, z)`` of shape (A, 4). A rotation is
assigned to the anchor with the largest ``|<q, a>|`` (the smallest geodesic distance, eq. 3,
sign-invariant since ``q`` and ``-q`` are the same rotation), and regressed as the residual
``q_d = q_gt * q_a^-1`` (eq. 2).

Grids
-----
:func:`quaternion_anchors` is paper 004's grid (eq. 1, Shoemake's uniform-sampling map on a
regular ``n^3`` grid of ``(u1, u2, u3)``). It covers SO(3) poorly: ``u1 = 0`` and ``u1 = 1``
collapse whole grid layers onto a few points, ``u = 0`` and ``u = 1`` coincide, and half of
the remaining points are ``-q`` of another. :func:`super_fibonacci_anchors` (Alexa 2022,
"Super-Fibonacci Spirals: Fast, Low-Discrepancy Sampling of SO(3)") gives any number of
well-spread rotations and covers SO(3) far better at the same count; see ``bench/anchors.py``.
:func:`hopf_anchors` is Yershova et al. 2010's Hopf-fibration grid (HEALPix on S^2 times a
regular circle), 72 * 8^level rotations, also compared there.

How the paper's "259 unique anchors" (N = 7) arises
---------------------------------------------------
With ``u`` on ``linspace(0, 1, 7)`` (endpoints included) the 343 quaternions contain
exactly 259 distinct 4-tuples under *exact* floating-point comparison: the ``u1 = 0`` layer
(49 tuples) collapses to 7 and the ``u1 = 1`` layer to 7 (``sqrt(0) = 0`` removes the other
angle), ``5 * 49 + 7 + 7 = 259``. The duplicates that are equal only up to rounding
(``sin(2 pi) = -2.4e-16`` vs ``sin(0) = 0``) and the ``q`` / ``-q`` pairs survive. A KD-tree
nearest-neighbour search in R^4 on random quaternions (the paper's "closest anchor search")
hits exactly those 259 anchors too. As rotations the grid has only 96 distinct anchors,
which is what ``dedup="rotation"`` (the default) returns. ``dedup="exact"`` reproduces 259.

Translation anchors (§3.3) are equal cells tiling a box of translations; see
:class:`TranslationAnchors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.geometry.rotations import (
    quaternion_canonical,
    quaternion_geodesic_distance,
    quaternion_invert,
    quaternion_multiply,
)

__all__ = [
    "PAPER_TRANSLATION_RANGE",
    "TranslationAnchors",
    "anchor_distances",
    "anchor_stats",
    "apply_quaternion_residual",
    "covering_radius",
    "healpix_centers",
    "hopf_anchors",
    "nearest_anchor",
    "quaternion_anchors",
    "quaternion_residual",
    "random_quaternions",
    "super_fibonacci_anchors",
]

#: Translation box of paper 004 §3.4: x, y in [-0.25, 1.5], z in [0.5, 10.0] (low, high).
PAPER_TRANSLATION_RANGE = ((-0.25, -0.25, 0.5), (1.5, 1.5, 10.0))


def _validate_quat(q: torch.Tensor, name: str) -> None:
    check_shape(q, name, (4,))
    if not torch.is_floating_point(q):
        raise ShapeError(f"{name}: expected a floating-point tensor, got dtype {q.dtype}")
    check_finite(q, name)


def _dedup_rotations(q: np.ndarray, tol: float) -> np.ndarray:
    """Keep the first of every group of quaternions within ``tol`` (as ``1 - |<q, a>|``)."""
    keep: list[int] = []
    dots = np.abs(q @ q.T)
    removed = np.zeros(len(q), dtype=bool)
    for i in range(len(q)):
        if removed[i]:
            continue
        keep.append(i)
        removed |= dots[i] > 1.0 - tol
    return q[keep]


def quaternion_anchors(
    n: int = 7,
    *,
    dedup: str = "rotation",
    tol: float = 1e-9,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Paper 004's rotation anchors (eq. 1): ``(A, 4)`` unit quaternions ``(w, x, y, z)``.

    ``u1, u2, u3`` each take the ``n`` values ``linspace(0, 1, n)`` (endpoints included) and
    ``q = (sqrt(1-u1) sin 2 pi u2, sqrt(1-u1) cos 2 pi u2, sqrt(u1) sin 2 pi u3,
    sqrt(u1) cos 2 pi u3)``, in the paper's component order, read as ``(w, x, y, z)``.

    ``dedup``:
      * ``"rotation"`` (default): one anchor per distinct rotation (``q ~ -q``, tolerance
        ``tol`` on ``1 - |<q, a>|``), each with ``w >= 0``; 28 / 96 / 232 anchors for
        n = 5 / 7 / 9.
      * ``"quaternion"``: distinct unit quaternions up to ``tol`` (``q`` and ``-q`` kept).
      * ``"exact"``: distinct 4-tuples under exact float equality; reproduces the paper's
        259 for n = 7 (85 / 585 for n = 5 / 9). See the module docstring.
      * ``"none"``: all ``n^3``.
    The order is the grid order (u1 slowest, u3 fastest), first occurrence kept.

    ``n = 1`` (the paper's 1^3 ablation, pure residual regression) gives the single anchor at
    ``u = (0, 0, 0)``, ``(0, 1, 0, 0)``: a half-turn about x (``linspace(0, 1, 1) = [0]``).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise PoseshapeError(f"n: expected an integer >= 1, got {n!r}")
    u = np.linspace(0.0, 1.0, n)
    u1, u2, u3 = (a.ravel() for a in np.meshgrid(u, u, u, indexing="ij"))
    q = np.stack(
        [
            np.sqrt(1 - u1) * np.sin(2 * np.pi * u2),
            np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
            np.sqrt(u1) * np.sin(2 * np.pi * u3),
            np.sqrt(u1) * np.cos(2 * np.pi * u3),
        ],
        -1,
    )
    if dedup == "exact":
        _, idx = np.unique(q, axis=0, return_index=True)
        q = q[np.sort(idx)]
    elif dedup == "quaternion":
        keep: list[int] = []
        for i in range(len(q)):
            if not keep or np.max(q[keep] @ q[i]) <= 1.0 - tol:
                keep.append(i)
        q = q[keep]
    elif dedup == "rotation":
        q = _dedup_rotations(q, tol)
        q = np.where(q[:, :1] < 0, -q, q)
    elif dedup != "none":
        raise PoseshapeError(f"dedup: expected 'rotation', 'quaternion', 'exact' or 'none', got {dedup!r}")
    return torch.as_tensor(q, dtype=dtype, device=device)


#: psi, the real root of psi^4 = psi + 4 (Alexa 2022).
_PSI = 1.533751168755204288118041
_PHI = math.sqrt(2.0)


def super_fibonacci_anchors(
    n: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` deterministic, near-uniform rotations (Alexa 2022): ``(n, 4)``, ``w >= 0``.

    Super-Fibonacci spiral on S^3: for ``s = i + 1/2``, ``r = sqrt(s/n)``,
    ``R = sqrt(1 - s/n)``, ``alpha = 2 pi s / sqrt(2)``, ``beta = 2 pi s / psi`` with
    ``psi^4 = psi + 4``: ``q = (r sin alpha, r cos alpha, R sin beta, R cos beta)``
    (read as ``(w, x, y, z)``; any fixed component order gives an isometric grid). Works for
    any count, so it can be matched to another grid's size.
    """
    if not isinstance(n, int) or n < 1:
        raise PoseshapeError(f"n: expected an integer >= 1, got {n!r}")
    s = np.arange(n, dtype=np.float64) + 0.5
    r = np.sqrt(s / n)
    big_r = np.sqrt(1.0 - s / n)
    alpha = 2 * np.pi * s / _PHI
    beta = 2 * np.pi * s / _PSI
    q = np.stack([r * np.sin(alpha), r * np.cos(alpha), big_r * np.sin(beta), big_r * np.cos(beta)], -1)
    q = np.where(q[:, :1] < 0, -q, q)
    return torch.as_tensor(q, dtype=dtype, device=device)


def healpix_centers(nside: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the ``12 * nside^2`` HEALPix pixels (ring order; Gorski et al. 2005).

    Returns ``(theta, phi)`` float64 arrays: colatitude in ``[0, pi]`` and longitude in
    ``[0, 2 pi)``. Ring ``i`` (1 .. 4 nside - 1, from the north pole) has ``4 i`` pixels at
    ``z = cos(theta) = 1 - i^2 / (3 nside^2)`` in the polar caps and ``4 nside`` pixels at
    ``z = 4/3 - 2 i / (3 nside)`` in the equatorial belt; all pixels have equal area.
    """
    if not isinstance(nside, int) or nside < 1:
        raise PoseshapeError(f"nside: expected a positive integer, got {nside!r}")
    z_all, phi_all = [], []
    for i in range(1, 4 * nside):
        if i < nside or i > 3 * nside:  # polar caps
            k = i if i < nside else 4 * nside - i
            z = 1.0 - k * k / (3.0 * nside * nside)
            z = z if i < nside else -z
            j = np.arange(1, 4 * k + 1)
            phi = np.pi / (2.0 * k) * (j - 0.5)
        else:  # equatorial belt
            z = 4.0 / 3.0 - 2.0 * i / (3.0 * nside)
            shift = ((i - nside + 1) % 2) / 2.0
            j = np.arange(1, 4 * nside + 1)
            phi = np.pi / (2.0 * nside) * (j - shift)
        z_all.append(np.full(len(j), z))
        phi_all.append(np.mod(phi, 2 * np.pi))
    z = np.concatenate(z_all)
    return np.arccos(np.clip(z, -1.0, 1.0)), np.concatenate(phi_all)


def hopf_anchors(
    level: int = 0,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Yershova et al. 2010's Hopf-fibration grid on SO(3): ``(72 * 8^level, 4)``, ``w >= 0``.

    The HEALPix centres ``(theta, phi)`` of :func:`healpix_centers` with ``nside = 2^level``
    on the base sphere S^2, times ``m = 6 * 2^level`` evenly spaced fibre angles
    ``psi_k = 2 pi (k + 1/2) / m`` on S^1, mapped with the Hopf coordinates::

        q = (cos(theta/2) cos(psi/2), cos(theta/2) sin(psi/2),
             sin(theta/2) cos(phi + psi/2), sin(theta/2) sin(phi + psi/2))

    read as ``(w, x, y, z)``. Level 0 has 72 rotations, level 1 576, level 2 4608. Each
    level refines the previous one uniformly (equal-volume cells).
    """
    if not isinstance(level, int) or level < 0:
        raise PoseshapeError(f"level: expected an integer >= 0, got {level!r}")
    theta, phi = healpix_centers(2**level)
    m = 6 * 2**level
    psi = 2 * np.pi * (np.arange(m) + 0.5) / m
    th, ps = np.meshgrid(theta, psi, indexing="ij")
    ph, _ = np.meshgrid(phi, psi, indexing="ij")
    th, ph, ps = th.ravel(), ph.ravel(), ps.ravel()
    q = np.stack(
        [
            np.cos(th / 2) * np.cos(ps / 2),
            np.cos(th / 2) * np.sin(ps / 2),
            np.sin(th / 2) * np.cos(ph + ps / 2),
            np.sin(th / 2) * np.sin(ph + ps / 2),
        ],
        -1,
    )
    q = np.where(q[:, :1] < 0, -q, q)
    return torch.as_tensor(q, dtype=dtype, device=device)


def random_quaternions(
    n: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` uniformly random rotations (Haar measure) as unit quaternions ``(n, 4)``, ``w >= 0``.

    Normalised 4-D Gaussians, from a private ``torch.Generator`` seeded with ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.to(dtype=dtype, device=device)


def nearest_anchor(q: torch.Tensor, anchors: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Index of the nearest anchor (smallest geodesic distance) for each rotation.

    ``q`` (..., 4), ``anchors`` (A, 4) unit quaternions -> ``int64`` (...,). Uses
    ``argmax |<q, a>|``, which is sign-invariant and monotone in eq. 3's distance; ties
    resolve to the lowest index. Evaluated in chunks of ``chunk`` rotations.
    """
    _validate_quat(q, "q")
    check_shape(anchors, "anchors", (None, 4), batch=False)
    _validate_quat(anchors, "anchors")
    flat = q.reshape(-1, 4)
    a = anchors.to(flat.dtype)
    out = [torch.abs(c @ a.T).argmax(-1) for c in flat.split(chunk)] if len(flat) else []
    idx = torch.cat(out) if out else torch.zeros(0, dtype=torch.int64, device=q.device)
    return idx.reshape(q.shape[:-1])


def anchor_distances(q: torch.Tensor, anchors: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Geodesic distance (radians) from each rotation ``q`` (..., 4) to its nearest anchor."""
    idx = nearest_anchor(q, anchors, chunk)
    return quaternion_geodesic_distance(q, anchors.to(q.dtype)[idx])


def covering_radius(anchors: torch.Tensor, n_samples: int = 100_000, seed: int = 0) -> float:
    """Monte-Carlo covering radius of an anchor set, in radians.

    The largest geodesic distance from ``n_samples`` uniformly random rotations (seeded) to
    their nearest anchor: a lower bound on the true covering radius that tightens with
    ``n_samples``.
    """
    return float(anchor_stats(anchors, n_samples, seed)["covering_radius"])


def anchor_stats(anchors: torch.Tensor, n_samples: int = 100_000, seed: int = 0) -> dict:
    """Summary of an anchor set ``(A, 4)``.

    Returns ``{"count": A, "covering_radius": rad, "mean_distance": rad}``: the number of
    anchors, the max and the mean over ``n_samples`` uniform random rotations of the
    distance to the nearest anchor (float64).
    """
    check_shape(anchors, "anchors", (None, 4), batch=False)
    _validate_quat(anchors, "anchors")
    a = anchors.to(torch.float64)
    d = anchor_distances(random_quaternions(n_samples, seed=seed, device=a.device), a)
    return {
        "count": int(a.shape[0]),
        "covering_radius": float(d.max()),
        "mean_distance": float(d.mean()),
    }


def quaternion_residual(q_gt: torch.Tensor, q_anchor: torch.Tensor) -> torch.Tensor:
    """Residual rotation ``q_d = q_gt * q_a^-1`` (eq. 2), (..., 4), canonical ``w >= 0``.

    ``q_gt`` and ``q_anchor`` are unit quaternions (..., 4) (broadcast). With the sign
    fixed to ``w >= 0`` the residual of a nearby anchor is close to ``(1, 0, 0, 0)``
    whichever sign the inputs had. Invert with :func:`apply_quaternion_residual`.
    """
    _validate_quat(q_gt, "q_gt")
    _validate_quat(q_anchor, "q_anchor")
    return quaternion_canonical(quaternion_multiply(q_gt, quaternion_invert(q_anchor)))


def apply_quaternion_residual(q_residual: torch.Tensor, q_anchor: torch.Tensor) -> torch.Tensor:
    """Recover the rotation from an anchor and a residual: ``q = q_d * q_a`` (..., 4), ``w >= 0``.

    The result equals ``q_gt`` up to sign (the same rotation). ``q_residual`` is normalised
    first, so raw network outputs can be passed.
    """
    _validate_quat(q_residual, "q_residual")
    _validate_quat(q_anchor, "q_anchor")
    qd = q_residual / torch.linalg.vector_norm(q_residual, dim=-1, keepdim=True)
    return quaternion_canonical(quaternion_multiply(qd, q_anchor))


@dataclass(frozen=True)
class TranslationAnchors:
    """Translation anchors (paper 004 §3.3): equal cells tiling the box ``[low, high]``.

    ``low``, ``high``: the box corners (3,) in the translation's units; ``counts``: cells
    per axis (3,). Cell ``(ix, iy, iz)`` has index ``(ix * ny + iy) * nz + iz``, size
    ``(high - low) / counts`` and centre ``t_a``. A translation is encoded as the index of
    the cell containing it and the residual normalised by the cell size,
    ``(t - cell_low) / size``, which lies in ``[0, 1]^3`` inside the box. Outside the box
    the nearest boundary cell is used and the residual leaves ``[0, 1]`` so that
    :meth:`decode` still returns ``t`` exactly. Use :meth:`from_cube_size` for true cubes.
    """

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    counts: tuple[int, int, int]

    def __post_init__(self) -> None:
        if len(self.low) != 3 or len(self.high) != 3 or len(self.counts) != 3:
            raise PoseshapeError("low, high, counts: expected 3 values each")
        if any(int(c) != c or c < 1 for c in self.counts):
            raise PoseshapeError(f"counts: expected positive integers, got {self.counts}")
        if any(h <= lo for lo, h in zip(self.low, self.high)):
            raise PoseshapeError(f"high: must exceed low on every axis, got {self.low}, {self.high}")

    @classmethod
    def from_cube_size(
        cls, low: tuple[float, float, float], high: tuple[float, float, float], size: float
    ) -> TranslationAnchors:
        """Cubes of side ``size`` from ``low``; ``high`` is extended to a whole number of cubes."""
        if size <= 0:
            raise PoseshapeError(f"size: expected > 0, got {size}")
        counts = tuple(max(1, math.ceil((h - lo) / size - 1e-9)) for lo, h in zip(low, high))
        new_high = tuple(lo + c * size for lo, c in zip(low, counts))
        return cls(tuple(low), new_high, counts)

    @property
    def num_anchors(self) -> int:
        """Total number of cells."""
        return self.counts[0] * self.counts[1] * self.counts[2]

    def _tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        low = torch.tensor(self.low, dtype=like.dtype, device=like.device)
        counts = torch.tensor(self.counts, dtype=torch.int64, device=like.device)
        size = (torch.tensor(self.high, dtype=like.dtype, device=like.device) - low) / counts
        return low, size, counts

    def cell_size(self) -> torch.Tensor:
        """Cell size per axis, (3,) float64."""
        _, size, _ = self._tensors(torch.zeros((), dtype=torch.float64))
        return size

    def centers(self, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
        """Anchor centres ``t_a`` (M, 3), in index order."""
        like = torch.zeros((), dtype=dtype, device=device)
        low, size, _ = self._tensors(like)
        axes = [low[k] + (torch.arange(self.counts[k], dtype=dtype, device=device) + 0.5) * size[k] for k in range(3)]
        g = torch.meshgrid(*axes, indexing="ij")
        return torch.stack(g, -1).reshape(-1, 3)

    def encode(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Translation ``t`` (..., 3) -> (index (...,) int64, residual (..., 3) in [0, 1])."""
        check_shape(t, "t", (3,))
        check_finite(t, "t")
        low, size, counts = self._tensors(t)
        rel = (t - low) / size
        cell = torch.minimum(torch.floor(rel).clamp_min(0).to(torch.int64), counts - 1)
        residual = rel - cell.to(t.dtype)
        index = (cell[..., 0] * counts[1] + cell[..., 1]) * counts[2] + cell[..., 2]
        return index, residual

    def decode(self, index: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`: (index (...,), residual (..., 3)) -> ``t`` (..., 3)."""
        check_shape(residual, "residual", (3,))
        check_finite(residual, "residual")
        index = torch.as_tensor(index, device=residual.device)
        if index.shape != residual.shape[:-1]:
            raise ShapeError(
                f"index: expected shape {tuple(residual.shape[:-1])} to match residual, got {tuple(index.shape)}"
            )
        if bool(((index < 0) | (index >= self.num_anchors)).any()):
            raise ShapeError(f"index: values must lie in [0, {self.num_anchors})")
        low, size, counts = self._tensors(residual)
        iz = index % counts[2]
        iy = (index // counts[2]) % counts[1]
        ix = index // (counts[1] * counts[2])
        cell = torch.stack([ix, iy, iz], -1).to(residual.dtype)
        return low + (cell + residual) * size
