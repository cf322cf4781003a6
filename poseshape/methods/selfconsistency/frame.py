"""The camera frame of ``selfconsistency`` (paper 001: translation fixed, intrinsics known).

The camera looks at the object origin from ``distance`` (``t = (0, 0, distance)``, OpenCV
axes) with the pinhole intrinsics of a ``fov_deg`` horizontal field of view over the
``S x S`` image (the data engine's ``--framing fixed``, ring24 distance 2.732 and 30 deg).
The network predicts only ``(azimuth, elevation)`` (PASCAL3D+ convention, radians, no
in-plane rotation), turned into ``R`` by :func:`poseshape.geometry.camera.viewpoint_to_pose`.

The pose-aware grid (eq. 7) is :func:`poseshape.render.voxel.pose_voxels` with ``t = 0``
(no translation) into a ``48^3`` camera-axis cube of side ``48 / 32 = 1.5`` object units.
"""

from __future__ import annotations

import math

import torch

from poseshape.core.errors import ShapeError
from poseshape.geometry.camera import intrinsics_from_fov, viewpoint_to_pose
from poseshape.render.voxel import pose_voxels

__all__ = ["intrinsics", "pose_to_rt", "posed_grid", "scale_intrinsics"]


def pose_to_rt(pose: torch.Tensor, distance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``pose (B, 2)`` = (azimuth, elevation) radians -> ``R (B, 3, 3)``, ``t (B, 3)`` object units."""
    if not isinstance(pose, torch.Tensor) or pose.dim() != 2 or pose.shape[1] != 2:
        raise ShapeError(f"pose: expected shape (B, 2) (azimuth, elevation), got {tuple(getattr(pose, 'shape', ()))}")
    z = torch.zeros_like(pose[:, 0])
    return viewpoint_to_pose(pose[:, 0], pose[:, 1], z, z + float(distance))


def intrinsics(image_size: int, fov_deg: float, batch: int = 1) -> torch.Tensor:
    """``(batch, 3, 3)`` pinhole K (pixels, centres at +0.5) of the training frame."""
    return intrinsics_from_fov(math.radians(fov_deg), image_size).float().expand(batch, 3, 3).clone()


def scale_intrinsics(K: torch.Tensor, factor: float) -> torch.Tensor:
    """K of the same camera over an image resized by ``factor`` (pixel centres at +0.5)."""
    S = torch.tensor([factor, factor, 1.0], dtype=K.dtype, device=K.device)
    return K * S.view(3, 1)


def posed_grid(aligned: torch.Tensor, R: torch.Tensor, out_size: int = 48) -> torch.Tensor:
    """Eq. 7: ``y'_i = Tri(y, R^T l'_i)``, the pose-aware ``(B, 1, P, P, P)`` grid (no translation)."""
    return pose_voxels(aligned, R, None, out_size=out_size)
