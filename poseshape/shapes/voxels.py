"""Voxel grids: voxelisation of meshes, binvox and packed-npz IO, rigid warps.

Layout (see :mod:`poseshape.geometry.conventions`): a grid ``(D, H, W)`` (or batched
``(B, 1, D, H, W)``) spans the unit cube ``[-0.5, 0.5]^3``; index ``(d, h, w)`` is
``(z, y, x)`` and voxel ``(d, h, w)`` has its centre at
``((w + 0.5) / W - 0.5, (h + 0.5) / H - 0.5, (d + 0.5) / D - 0.5)``. +Y (the ``h`` axis)
is up and the object's front faces +Z (the ``d`` axis).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import FileFormatError, ShapeError
from poseshape.core.io import atomic_write
from poseshape.shapes.meshes import Mesh

__all__ = [
    "BinvoxHeader",
    "load_voxel_npz",
    "read_binvox",
    "voxel_centers",
    "voxelize",
    "warp_voxels",
    "write_binvox",
]


def voxel_centers(resolution: int | tuple[int, int, int], dtype=None, device=None) -> torch.Tensor:
    """Centres of the voxels of a grid spanning the unit cube.

    Args:
        resolution: ``R`` or ``(D, H, W)``.

    Returns:
        ``(D, H, W, 3)`` tensor of ``(x, y, z)`` centres.
    """
    D, H, W = (resolution,) * 3 if isinstance(resolution, int) else tuple(resolution)
    dtype = dtype or torch.get_default_dtype()

    def ax(n):
        return (torch.arange(n, dtype=dtype, device=device) + 0.5) / n - 0.5

    z, y, x = torch.meshgrid(ax(D), ax(H), ax(W), indexing="ij")
    return torch.stack([x, y, z], -1)


# =========================================================================== voxelize


def _parity_votes(
    tri: np.ndarray, R: int, axis: int, chunk: int = 2_000_000, dedup_tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Ray parity along ``axis`` (0=x, 1=y, 2=z) through voxel centres.

    Returns two boolean ``(R, R, R)`` grids in ``(z, y, x)`` index order: inside by the
    parity of crossings below the voxel centre, and by the parity of crossings above.
    Crossings closer than ``dedup_tol`` voxels on one ray count once.
    """
    # ray-plane coordinates (a, b) = the two other axes, c = the ray axis
    a_ax, b_ax = [k for k in range(3) if k != axis]
    # tiny irrational offsets keep rays off shared edges / vertices of axis-aligned CAD
    eps_a, eps_b = 1.2345e-5 / R * np.pi, 2.3456e-5 / R * np.e
    P = (tri + 0.5) * R - 0.5  # continuous voxel-index coordinates, centres at integers
    A, B, C = P[:, :, a_ax] - eps_a, P[:, :, b_ax] - eps_b, P[:, :, axis]
    lo_a = np.clip(np.ceil(A.min(1)), 0, R).astype(np.int64)
    hi_a = np.clip(np.floor(A.max(1)), -1, R - 1).astype(np.int64)
    lo_b = np.clip(np.ceil(B.min(1)), 0, R).astype(np.int64)
    hi_b = np.clip(np.floor(B.max(1)), -1, R - 1).astype(np.int64)
    na, nb = np.maximum(hi_a - lo_a + 1, 0), np.maximum(hi_b - lo_b + 1, 0)
    cnt = na * nb
    # 2-D signed area; degenerate (edge-on) triangles never count
    det = (A[:, 1] - A[:, 0]) * (B[:, 2] - B[:, 0]) - (A[:, 2] - A[:, 0]) * (B[:, 1] - B[:, 0])
    keep = (cnt > 0) & (np.abs(det) > 1e-12)
    idx = np.nonzero(keep)[0]
    hits_ray, hits_c = [], []
    start = 0
    csum = np.cumsum(cnt[idx])
    while start < len(idx):
        stop = int(np.searchsorted(csum, (csum[start - 1] if start else 0) + chunk, side="right"))
        stop = max(stop, start + 1)
        ti = idx[start:stop]
        c = cnt[ti]
        t = np.repeat(ti, c)
        k = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
        ia = lo_a[t] + k // nb[t]
        ib = lo_b[t] + k % nb[t]
        # barycentric coordinates of the ray point (ia, ib) in the projected triangle
        a0, b0 = A[t, 0], B[t, 0]
        da1, db1 = A[t, 1] - a0, B[t, 1] - b0
        da2, db2 = A[t, 2] - a0, B[t, 2] - b0
        pa, pb = ia - a0, ib - b0
        dt = det[t]
        l1 = (pa * db2 - pb * da2) / dt
        l2 = (da1 * pb - db1 * pa) / dt
        l0 = 1.0 - l1 - l2
        hit = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
        cpos = l0 * C[t, 0] + l1 * C[t, 1] + l2 * C[t, 2]
        hits_ray.append((ia * R + ib)[hit])
        hits_c.append(cpos[hit])
        start = stop
    hist = np.zeros((R * R, R + 1), dtype=np.int32)  # (ray = a * R + b, c-bin)
    if hits_ray:
        ray = np.concatenate(hits_ray)
        cpos = np.concatenate(hits_c)
        # coincident crossings on one ray (duplicated / double-sided faces, shared edges)
        # count once
        order = np.lexsort((cpos, ray))
        ray, cpos = ray[order], cpos[order]
        dup = np.zeros(len(ray), dtype=bool)
        dup[1:] = (ray[1:] == ray[:-1]) & (cpos[1:] - cpos[:-1] < dedup_tol)
        ray, cpos = ray[~dup], cpos[~dup]
        cbin = np.clip(np.floor(cpos).astype(np.int64) + 1, 0, R)
        np.add.at(hist, (ray, cbin), 1)
    hist = hist.reshape(R, R, R + 1)
    below = np.cumsum(hist[:, :, :R], axis=2)  # crossings with c < voxel centre
    total = hist.sum(axis=2, keepdims=True)
    above = total - below
    vb, va = (below % 2 == 1), (above % 2 == 1)
    # (a, b, c) -> (z, y, x)
    order = {0: "x", 1: "y", 2: "z"}
    src = order[a_ax] + order[b_ax] + order[axis]
    perm = [src.index(ch) for ch in "zyx"]
    return vb.transpose(perm), va.transpose(perm)


def _surface_voxels(tri: np.ndarray, R: int, chunk: int = 4_000_000) -> np.ndarray:
    """Voxels touched by the surface: each triangle is sampled on a barycentric lattice
    finer than half a voxel, so every voxel a triangle passes through (by more than a
    sliver) is marked. Returns a bool ``(R, R, R)`` ``(z, y, x)`` grid."""
    occ = np.zeros(R * R * R, dtype=bool)
    e = np.stack([tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 1], tri[:, 0] - tri[:, 2]], 1)
    longest = np.linalg.norm(e, axis=-1).max(1)
    n = np.maximum(np.ceil(longest * R * 2.0).astype(np.int64), 1)  # lattice steps per edge
    npts = (n + 1) * (n + 2) // 2
    order = np.arange(len(tri))
    csum = np.cumsum(npts)
    start = 0
    while start < len(tri):
        stop = int(np.searchsorted(csum, (csum[start - 1] if start else 0) + chunk, side="right"))
        stop = max(stop, start + 1)
        ti = order[start:stop]
        c = npts[ti]
        t = np.repeat(ti, c)
        k = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)
        nt = n[t]
        # k -> (i, j) with 0 <= j <= i <= n: row i holds i + 1 points
        i = np.floor((np.sqrt(8 * k + 1) - 1) / 2).astype(np.int64)
        i = np.where((i + 1) * (i + 2) // 2 <= k, i + 1, i)
        i = np.where(i * (i + 1) // 2 > k, i - 1, i)
        j = k - i * (i + 1) // 2
        w1 = (i - j) / nt
        w2 = j / nt
        w0 = 1.0 - i / nt
        p = w0[:, None] * tri[t, 0] + w1[:, None] * tri[t, 1] + w2[:, None] * tri[t, 2]
        v = np.floor((p + 0.5) * R).astype(np.int64)
        ok = ((v >= 0) & (v < R)).all(1)
        v = v[ok]
        occ[(v[:, 2] * R + v[:, 1]) * R + v[:, 0]] = True
        start = stop
    return occ.reshape(R, R, R)


def voxelize(mesh: Mesh, resolution: int = 32, surface: bool = True, min_votes: int = 4) -> torch.Tensor:
    """Solid voxelisation of a mesh that lies in the unit cube (normalise it first).

    Method: ray-parity voting. For each of the 3 axes, rays through the voxel centres are
    intersected with every triangle (vectorised numpy, chunked); a voxel gets one vote
    if the number of crossings *below* its centre along the ray is odd and one if the
    number *above* is odd (6 votes in all). A watertight mesh gives 6 or 0 votes; a hole
    corrupts only the votes of the rays through it, so voxels with at least ``min_votes``
    votes are filled. This handles non-watertight CAD (PASCAL3D+, ObjectNet3D) and
    self-intersecting parts. With ``surface=True`` every voxel the surface passes through
    is also set (dense barycentric sampling of each triangle, spacing < half a voxel), so
    thin parts (chair legs, sheets) are kept.

    Args:
        mesh: the mesh, object frame, inside ``[-0.5, 0.5]^3`` (parts outside are cut).
        resolution: ``R``.
        surface: add the surface voxels.
        min_votes: votes (of 6) needed for an interior voxel.

    Returns:
        ``(R, R, R)`` float occupancy (0/1) in ``(d, h, w) = (z, y, x)`` layout on the
        mesh's device, dtype ``mesh.verts.dtype``. Not differentiable.
    """
    if not isinstance(mesh, Mesh):
        raise ShapeError(f"voxelize: expected a Mesh, got {type(mesh).__name__}")
    R = int(resolution)
    if R < 1:
        raise ShapeError(f"voxelize: resolution must be >= 1, got {resolution}")
    if not 0 <= min_votes <= 6:
        raise ShapeError(f"voxelize: min_votes must be in [0, 6], got {min_votes}")
    v = mesh.verts.detach().cpu().double().numpy()
    f = mesh.faces.cpu().numpy()
    tri = v[f]  # (F, 3, 3)
    votes = np.zeros((R, R, R), dtype=np.int8)
    if len(tri):
        for axis in range(3):
            vb, va = _parity_votes(tri, R, axis)
            votes += vb.astype(np.int8) + va.astype(np.int8)
    occ = votes >= max(min_votes, 1)
    if surface and len(tri):
        occ |= _surface_voxels(tri, R)
    return torch.from_numpy(occ).to(device=mesh.verts.device, dtype=mesh.verts.dtype)


# =========================================================================== binvox


@dataclass
class BinvoxHeader:
    """binvox header: ``dims`` (the cube side R), ``translate (3,)`` and ``scale``.

    The binvox grid covers the axis-aligned cube ``translate + [0, scale]^3`` of the model's
    coordinates; voxel ``(x, y, z)`` has its centre at
    ``translate + (index + 0.5) / R * scale``.
    """

    dims: tuple[int, int, int]
    translate: tuple[float, float, float]
    scale: float


def read_binvox(path) -> tuple[torch.Tensor, BinvoxHeader]:
    """Read a binvox file.

    binvox stores run-length encoded ``(value, count)`` byte pairs over the grid with the
    y index fastest, then z, then x (``index = x * R*R + z * R + y``), in the model's own
    (x, y, z) coordinates. The grid is returned in our ``(d, h, w) = (z, y, x)`` order,
    i.e. ``grid[z, y, x]``, with binvox's +y along ``h``.

    Returns:
        ``(grid (R, R, R) bool, header)``.

    Raises:
        FileFormatError: missing file, bad header, non-cubic grid, truncated or corrupt
        run-length data.
    """
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"{p}: no such binvox file")
    data = p.read_bytes()
    pos = 0
    dims = translate = scale = None

    def next_line():
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0:
            raise FileFormatError(f"{p}: truncated binvox header")
        line = data[pos:end]
        pos = end + 1
        return line.strip()

    first = next_line()
    if not first.startswith(b"#binvox"):
        raise FileFormatError(f"{p}: not a binvox file (missing '#binvox' magic)")
    try:
        while True:
            line = next_line()
            if not line or line.startswith(b"#"):
                continue
            words = line.split(b"#", 1)[0].split()
            key = words[0].lower()
            if key == b"dim":
                dims = tuple(int(w) for w in words[1:4])
            elif key == b"translate":
                translate = tuple(float(w) for w in words[1:4])
            elif key == b"scale":
                scale = float(words[1])
            elif key == b"data":
                break
            else:
                raise FileFormatError(f"{p}: unexpected binvox header line {line[:40]!r}")
    except (ValueError, IndexError):
        raise FileFormatError(f"{p}: malformed binvox header") from None
    if dims is None or len(dims) != 3:
        raise FileFormatError(f"{p}: binvox header has no valid 'dim' line")
    if len(set(dims)) != 1 or dims[0] <= 0:
        raise FileFormatError(f"{p}: only cubic binvox grids are supported, got dim {dims}")
    translate = translate if translate is not None and len(translate) == 3 else (0.0, 0.0, 0.0)
    scale = 1.0 if scale is None else scale
    rle = np.frombuffer(data, dtype=np.uint8, offset=pos)
    if len(rle) % 2:
        raise FileFormatError(f"{p}: corrupt binvox data (odd number of run-length bytes)")
    values, counts = rle[0::2], rle[1::2].astype(np.int64)
    n = dims[0] * dims[1] * dims[2]
    if counts.sum() != n:
        raise FileFormatError(
            f"{p}: binvox run-lengths cover {int(counts.sum())} voxels, expected {n} (truncated or corrupt file)"
        )
    if (values > 1).any():
        raise FileFormatError(f"{p}: corrupt binvox data (run values must be 0 or 1)")
    flat = np.repeat(values.astype(bool), counts)
    xzy = flat.reshape(dims)  # (x, z, y)
    grid = np.ascontiguousarray(xzy.transpose(1, 2, 0))  # (z, y, x)
    return torch.from_numpy(grid), BinvoxHeader(dims, tuple(float(v) for v in translate), float(scale))


def write_binvox(grid, path, translate=(0.0, 0.0, 0.0), scale: float = 1.0) -> None:
    """Write a cubic ``(R, R, R)`` grid in our ``(z, y, x)`` order as binvox (values > 0.5 are set).

    ``translate`` and ``scale`` go to the header (see :class:`BinvoxHeader`); the default
    ``translate=(-0.5,)*3, scale=1`` describes our unit cube. The file is written
    atomically (:func:`poseshape.core.io.atomic_write`; ``FileWriteError`` when it cannot be).
    """
    g = torch.as_tensor(grid).detach().cpu()
    if g.dim() == 5 and g.shape[:2] == (1, 1):
        g = g[0, 0]
    elif g.dim() == 4 and g.shape[0] == 1:
        g = g[0]
    check_shape(g, "grid", (None, None, None), batch=False)
    if len(set(g.shape)) != 1:
        raise ShapeError(f"grid: binvox needs a cubic grid, got {tuple(g.shape)}")
    b = (g > 0.5 if g.is_floating_point() else g.bool()).numpy()
    R = b.shape[0]
    flat = b.transpose(2, 0, 1).reshape(-1).astype(np.uint8)  # (z,y,x) -> (x,z,y)
    # run-length encode with runs of at most 255
    change = np.nonzero(np.diff(flat))[0] + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [len(flat)]]))
    vals, runs = [], []
    for s, ln in zip(starts.tolist(), lengths.tolist()):
        v = int(flat[s])
        while ln > 0:
            k = min(ln, 255)
            vals.append(v)
            runs.append(k)
            ln -= k
    body = np.empty(2 * len(vals), dtype=np.uint8)
    body[0::2], body[1::2] = vals, runs
    t = [float(x) for x in translate]
    header = (
        f"#binvox 1\ndim {R} {R} {R}\ntranslate {t[0]:.9g} {t[1]:.9g} {t[2]:.9g}\nscale {float(scale):.9g}\ndata\n"
    ).encode()
    atomic_write(path, header + body.tobytes())


# =========================================================================== packed npz sets

#: How each packed set in ``shared_data/voxels`` indexes space, found by inspecting the data
#: (chairs: legs / seat / back). Both are Z-up; ModelNet10 has its front toward -y (back
#: at high y), 3D ShapeNets (rotation 0) has its front toward -x (back at high x).
#: Each entry maps the stored axes (a0, a1, a2) to ours: ``x_ours, y_ours, z_ours``.
_NPZ_LAYOUTS = {
    # ours = (a0, a2, -a1)
    "modelnet": ((0, 1), (2, 1), (1, -1)),
    # ours = (-a1, a2, -a0)
    "3dshapenets": ((1, -1), (2, 1), (0, -1)),
}


def _to_ours(native: np.ndarray, layout) -> np.ndarray:
    """Re-index ``native (..., a0, a1, a2)`` so that the last 3 axes are (z, y, x) ours."""
    (sx, fx), (sy, fy), (sz, fz) = layout
    lead = native.ndim - 3
    out = np.transpose(native, tuple(range(lead)) + (lead + sz, lead + sy, lead + sx))
    for k, fl in enumerate((fz, fy, fx)):
        if fl < 0:
            out = np.flip(out, lead + k)
    return np.ascontiguousarray(out)


def load_voxel_npz(path, split: str | None = None, rotation: int | None = None, indices=None) -> torch.Tensor:
    """Read one of the packed voxel sets of ``shared_data/voxels`` into our layout.

    Formats (``MANIFEST.json``): ``voxels = np.packbits(bool (N, R, R, R), axis=-1)`` with
    ``shape`` (ModelNet10 ``modelnet10_*_32.npz``), or ``{split}_voxels =
    np.packbits(bool (N, 12, R, R, R), axis=-1)`` with ``{split}_shape`` / ``{split}_ids``
    (3D ShapeNets ``3dshapenets_chair_30.npz``; 12 rotations about the up axis).

    Args:
        path: the ``.npz`` file.
        split: ``"train"`` / ``"test"`` for split files (required there, refused otherwise).
        rotation: for 12-rotation sets, keep only this rotation index (0 = canonical).
        indices: optional index / slice / list selecting models (decoded lazily).

    Returns:
        bool tensor ``(N, R, R, R)``, or ``(N, 12, R, R, R)`` for 12-rotation sets without
        ``rotation``, in ``(d, h, w) = (z, y, x)`` order with +Y up (``h``) and the front
        toward +Z (``d``).

    Raises:
        FileFormatError: missing file or keys, inconsistent shapes.
    """
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"{p}: no such voxel file")
    try:
        z = np.load(p, allow_pickle=False)
        keys = set(z.files)
    except Exception as exc:
        raise FileFormatError(f"{p}: cannot read npz ({type(exc).__name__}: {exc})") from exc
    if "voxels" in keys:
        if split is not None:
            raise FileFormatError(f"{p}: this file has no splits (keys {sorted(keys)}); pass split=None")
        vkey, skey = "voxels", "shape"
    else:
        splits = sorted(k[: -len("_voxels")] for k in keys if k.endswith("_voxels"))
        if not splits:
            raise FileFormatError(f"{p}: no 'voxels' or '<split>_voxels' key (keys {sorted(keys)})")
        if split not in splits:
            raise FileFormatError(f"{p}: split must be one of {splits}, got {split!r}")
        vkey, skey = f"{split}_voxels", f"{split}_shape"
    if skey not in keys:
        raise FileFormatError(f"{p}: missing key {skey!r}")
    try:
        packed = z[vkey]
        shape = tuple(int(s) for s in z[skey])
    except Exception as exc:
        raise FileFormatError(f"{p}: cannot read {vkey!r} ({type(exc).__name__}: {exc})") from exc
    # the stored shape may drop repeated trailing sizes: complete with the cube side
    if len(shape) == packed.ndim - 1:
        shape = shape + (shape[-1],)
    R = shape[-1]
    if packed.ndim not in (4, 5) or packed.shape[:-1] != shape[:-1] or packed.shape[-1] != (R + 7) // 8:
        raise FileFormatError(f"{p}: {vkey!r} has shape {packed.shape}, inconsistent with {skey}={shape}")
    if shape[-3:] != (R, R, R):
        raise FileFormatError(f"{p}: expected cubic grids, got {shape}")
    if indices is not None:
        packed = packed[indices]
        if packed.ndim == len(shape) - 1:
            packed = packed[None]
    if packed.ndim == 5:
        if rotation is not None:
            if not 0 <= rotation < packed.shape[1]:
                raise FileFormatError(f"{p}: rotation must be in [0, {packed.shape[1]}), got {rotation}")
            packed = packed[:, rotation]
        layout = _NPZ_LAYOUTS["3dshapenets"]
    else:
        if rotation is not None:
            raise FileFormatError(f"{p}: this set has no rotations; pass rotation=None")
        layout = _NPZ_LAYOUTS["modelnet"]
    native = np.unpackbits(packed, axis=-1)[..., :R].astype(bool)
    return torch.from_numpy(_to_ours(native, layout))


# =========================================================================== warp


def warp_voxels(
    grid: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    out_size: int | tuple[int, int, int] | None = None,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Rigidly move a voxel grid: ``out(x) = in(R^T (x - t))`` in unit-cube coordinates.

    Inverse sampling with ``grid_sample`` (``align_corners=False``, trilinear by default),
    so the output is differentiable in ``grid``, ``R`` and ``t``. Both grids span the unit
    cube; content moved outside it is lost.

    Args:
        grid: ``(B, C, D, H, W)`` voxels.
        R: ``(B, 3, 3)`` rotation (object units, acting on (x, y, z)).
        t: ``(B, 3)`` translation in object units.
        out_size: output ``(D, H, W)`` (or ``R``); default the input size.
        mode, padding_mode: passed to ``grid_sample`` (``"bilinear"`` is trilinear in 3-D).

    Returns:
        ``(B, C, D', H', W')`` warped grid.
    """
    check_shape(grid, "grid", (None, None, None, None, None), batch=False)
    B = grid.shape[0]
    check_shape(R, "R", (B, 3, 3), batch=False)
    check_shape(t, "t", (B, 3), batch=False)
    check_finite(R, "R")
    check_finite(t, "t")
    if out_size is None:
        out_size = tuple(grid.shape[2:])
    elif isinstance(out_size, int):
        out_size = (out_size,) * 3
    R = R.to(grid.dtype)
    t = t.to(grid.dtype)
    Rt = R.transpose(1, 2)
    # normalised coords n = 2 x:  n_in = R^T n_out - 2 R^T t
    theta = torch.cat([Rt, -2.0 * (Rt @ t.unsqueeze(-1))], 2)
    coords = F.affine_grid(theta, (B, grid.shape[1], *out_size), align_corners=False)
    return F.grid_sample(grid, coords, mode=mode, padding_mode=padding_mode, align_corners=False)
