"""Conversions between voxel grids and meshes.

* :func:`voxels_to_mesh`: marching cubes (scikit-image) placed in the unit cube.
* :func:`mesh_to_voxels`: solid voxelisation (:func:`poseshape.shapes.voxels.voxelize`).
* :func:`normalize_mesh` / :func:`apply_transform` are re-exported from
  :mod:`poseshape.shapes.meshes` for convenience.
"""

from __future__ import annotations

import numpy as np
import torch

from poseshape.core.checks import check_finite
from poseshape.core.errors import ShapeError
from poseshape.shapes.meshes import Mesh, MeshTransform, apply_transform, normalize_mesh
from poseshape.shapes.voxels import voxelize

__all__ = ["MeshTransform", "apply_transform", "mesh_to_voxels", "normalize_mesh", "voxels_to_mesh"]


def voxels_to_mesh(grid: torch.Tensor, threshold: float = 0.5) -> Mesh:
    """Iso-surface of an occupancy grid as a closed triangle mesh in the unit cube.

    The grid is padded by one empty voxel on every side so that shapes touching the
    border still give closed (watertight) surfaces, then
    ``skimage.measure.marching_cubes`` extracts the ``threshold`` level set. Vertices are
    placed with the voxel-centre convention of :mod:`poseshape.geometry.conventions`
    (voxel ``(d, h, w)`` centred at ``((w+.5)/W-.5, (h+.5)/H-.5, (d+.5)/D-.5)``). At the
    0.5 level the surface of a binary grid passes half-way between set and empty voxel
    centres, i.e. on the voxel faces: a full grid gives the unit cube's surface.

    Args:
        grid: ``(D, H, W)``, ``(1, D, H, W)`` or ``(1, 1, D, H, W)`` occupancy (float or bool).
        threshold: iso level.

    Returns:
        A :class:`Mesh` (float32 unless the grid is float64) with outward,
        counter-clockwise faces; an empty mesh (0 vertices) if no voxel exceeds the level.
    """
    g = torch.as_tensor(grid).detach()
    while g.dim() > 3 and g.shape[0] == 1:
        g = g[0]
    if g.dim() != 3:
        raise ShapeError(f"grid: expected (D, H, W) or (1, D, H, W), got {tuple(torch.as_tensor(grid).shape)}")
    dtype = g.dtype if g.dtype == torch.float64 else torch.float32
    g = g.to(torch.float64)
    check_finite(g, "grid")
    D, H, W = g.shape
    vol = np.pad(g.cpu().numpy(), 1, mode="constant", constant_values=0.0)
    if not (vol > threshold).any() or not (vol < threshold).any():
        return Mesh(torch.zeros(0, 3, dtype=dtype), torch.zeros(0, 3, dtype=torch.int64))
    from skimage.measure import marching_cubes

    verts, faces, _, _ = marching_cubes(vol, level=float(threshold))
    # padded index i (axis order d, h, w) -> unpadded index i - 1 -> centre (i - 1 + .5) / N - .5
    n = np.array([D, H, W], dtype=np.float64)
    zyx = (verts - 0.5) / n - 0.5
    xyz = zyx[:, ::-1].copy()
    # skimage's faces (gradient_direction='descent') are outward once the (d, h, w) axes
    # are reversed into (x, y, z); tests check the signed volume is positive.
    faces = faces.astype(np.int64)
    return Mesh(torch.from_numpy(xyz).to(dtype), torch.from_numpy(faces))


def mesh_to_voxels(mesh: Mesh, resolution: int = 32, **kwargs) -> torch.Tensor:
    """Solid ``(R, R, R)`` occupancy of a unit-cube mesh; see :func:`poseshape.shapes.voxels.voxelize`."""
    return voxelize(mesh, resolution, **kwargs)
