"""Differentiable renderers: posed-voxel projection, ray consistency, soft and hard mesh rasterisers.

Every renderer is a pure function with a thin :class:`torch.nn.Module` on top, follows the
project conventions (:mod:`poseshape.geometry.conventions`: OpenCV camera,
``X_cam = R @ X_obj + t``, ``K`` in pixels, pixel centres at ``+0.5``, voxels
``(B, 1, D, H, W)`` spanning the unit cube) and bounds its memory by chunking. The camera is
either a pinhole ``K (3, 3) | (B, 3, 3)`` or weak perspective ``u = scale * (R X)[:2] + t[:2]``
(pass ``scale=s``, or a number / ``(B,)`` tensor as ``K``).

Meshes (:mod:`.mesh_soft`, :mod:`.mesh_hard`)
    * :func:`render_silhouette` ``(verts (B,V,3), faces (F,3), R (B,3,3), t (B,3), K, image_size,
      sigma, mode="softras"|"edge") -> (B,1,H,W)``, differentiable w.r.t. vertices and pose;
      ``sigma`` in squared NDC units by default (SoftRas / paper 002: ``1e-4``).
      :class:`SoftSilhouetteRenderer` is its module; :func:`render_silhouette_dense` the naive
      all-faces x all-pixels reference.
    * :func:`rasterize` ``(verts, faces, R, t, K, image_size) ->`` :class:`Fragments`
      (per-pixel face index, depth, barycentrics, mask); exact z-buffer, not differentiable.
      :class:`HardRasterizer` is its module; :func:`rasterize_dense` the naive reference.

Voxels (:mod:`.voxel`)
    * :func:`pose_voxels` ``(voxels (B,1,D,H,W), R, t, out_size) ->`` posed grid (paper 000's
      inverse warp, paper 001's eq. 7); :func:`max_projection` of a posed grid (paper 000 eq. 3).
    * :func:`project_voxels` ``(voxels, R, t, K, image_size, mode="max"|"absorption") ->
      (B,1,H,W)`` by sampling the camera rays through the aligned grid.
    * :func:`ray_terms` ``(voxels, R, t, mask, K, n_samples=64)`` -> per-pixel ray quantities of
      paper 001 (eqs. 1-4); its losses live in :mod:`poseshape.losses.consistency`.
      Modules: :class:`VoxelPoser`, :class:`VoxelProjector`.

RGB shading and backgrounds for synthetic data live in :mod:`poseshape.render.shading`
(imported on demand; it is not re-exported here).
"""

from __future__ import annotations

from poseshape.render.mesh_hard import Fragments, HardRasterizer, rasterize, rasterize_dense
from poseshape.render.mesh_soft import (
    SoftSilhouetteRenderer,
    cpp_available,
    render_silhouette,
    render_silhouette_dense,
    sigma_ndc_to_px2,
)
from poseshape.render.raster_common import DEFAULT_CHUNK_SIZE, parse_image_size
from poseshape.render.voxel import (
    BOUNDING_RADIUS,
    VoxelPoser,
    VoxelProjector,
    max_projection,
    pose_voxels,
    project_voxels,
    ray_terms,
)

__all__ = [
    "BOUNDING_RADIUS",
    "DEFAULT_CHUNK_SIZE",
    "Fragments",
    "HardRasterizer",
    "SoftSilhouetteRenderer",
    "VoxelPoser",
    "VoxelProjector",
    "cpp_available",
    "max_projection",
    "parse_image_size",
    "pose_voxels",
    "project_voxels",
    "ray_terms",
    "rasterize",
    "rasterize_dense",
    "render_silhouette",
    "render_silhouette_dense",
    "sigma_ndc_to_px2",
]
