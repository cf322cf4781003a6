"""Exact silhouettes of meshes seen by a :class:`~poseshape.geometry.camera.Camera` (any kind).

The one place that turns ``(mesh, R, t, Camera)`` into the renderer's camera arguments, so
the overlay and IoU of every method's files come from the camera that ``pose.json`` records.
"""

from __future__ import annotations

import torch

from poseshape.core.errors import ShapeError
from poseshape.geometry.camera import Camera
from poseshape.render.fastraster import rasterize

__all__ = ["camera_silhouette", "raster_camera"]


def raster_camera(t: torch.Tensor, camera: Camera) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(t', K, scale)`` for the rasterisers' camera arguments.

    Pinhole: ``t' = t``, ``K = camera.K``. Weak perspective (``u = s (R X + t)[:2] + c``):
    the rasterisers take ``u = s (R X)[:2] + t'[:2]``, so ``t'[:2] = s t[:2] + c`` (pixels)
    and ``scale = s`` (``fx``; weak-perspective cameras here have square pixels).
    """
    K = camera.K.to(t)
    if camera.is_pinhole:
        return t, K, None
    s = K[:, 0, 0]
    tp = t.clone()
    tp[..., :2] = s[:, None] * t[..., :2] + K[:, :2, 2]
    return tp, None, s


def camera_silhouette(
    verts: torch.Tensor, faces: torch.Tensor, R: torch.Tensor, t: torch.Tensor, camera: Camera
) -> torch.Tensor:
    """Hard silhouette ``(B, 1, H, W)`` {0, 1} of object-frame ``verts (V, 3)`` / ``faces (F, 3)``
    under poses ``R (B, 3, 3)``, ``t (B, 3)`` at the camera's image size (not differentiable)."""
    if R.dim() != 3 or t.dim() != 2 or R.shape[0] != t.shape[0]:
        raise ShapeError(
            f"camera_silhouette: expected R (B, 3, 3) and t (B, 3), got {tuple(R.shape)}, {tuple(t.shape)}"
        )
    cam = camera.expand(R.shape[0]) if len(camera) == 1 else camera
    tp, K, s = raster_camera(t.to(verts.dtype), cam)
    with torch.no_grad():
        return rasterize(verts, faces, R.to(verts.dtype), tp, K, cam.image_size, scale=s).mask
