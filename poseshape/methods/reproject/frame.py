"""Paper 000's weak-perspective *posed frame*, and the training targets derived from it.

Paper 000 (§3.3) places "a weak-perspective projection camera at a fixed canonical viewpoint":
the pose-aware shape is the aligned shape moved by ``p = (w, tx, ty)`` (exponential twist plus
in-plane translation) into a grid whose max-projection along its depth axis *is* the image
crop's silhouette. Scale is not part of the pose: "an aligned shape under different scales
[is] considered to be different in style", so the aligned shape is the unit-cube shape
scaled by ``sigma``.

Frames (see ``docs/reproject.md``):

* the **posed cube** has side ``E = frame_extent`` object units and the camera's axes
  (x right, y down, z forward); its voxel columns map to the image crop, pixel
  ``(i, j)`` of an ``S x S`` crop <-> posed ``(x, y) = ((j + .5) / S - .5, (i + .5) / S - .5) * E``;
* the **canonical rotation** :data:`CANONICAL_R` is the camera that looks at the object's
  front (object +Z toward the camera) with the object upright (object +Y = image up).
  The regressed twist is the rotation *relative* to it, ``R = exp(w) @ CANONICAL_R``, so
  ``w = 0`` is the frontal upright view. (Without it the frontal view would be a rotation
  by pi, where the twist wraps; see the issue notes.)

From a pinhole sample ``(R, t, K)`` of the data engine (:func:`pinhole_to_posed`) the
weak-perspective approximation at the object's centre gives ``s = fx / t_z`` pixels per
object unit, hence the style scale ``sigma = s * E / S`` and the in-plane translation
``t_p = sigma * (t_x, t_y) + (c - S/2) E / S`` (0 for a centred principal point).
"""

from __future__ import annotations

import torch

from poseshape.core.checks import check_finite, check_shape
from poseshape.core.errors import ShapeError
from poseshape.geometry.rotations import so3_exp, so3_log
from poseshape.render.voxel import max_projection, pose_voxels
from poseshape.shapes.voxels import warp_voxels

__all__ = [
    "CANONICAL_R",
    "aligned_target",
    "pinhole_to_posed",
    "pose_to_rt",
    "posed_silhouette",
    "posed_voxels",
    "rt_to_pose",
    "scale_voxels",
]

#: Object-to-camera rotation of the canonical (frontal, upright) weak-perspective camera.
CANONICAL_R = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


def _canonical(like: torch.Tensor) -> torch.Tensor:
    return CANONICAL_R.to(dtype=like.dtype, device=like.device)


def pose_to_rt(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose vector ``(B, 5)`` = (twist w relative to :data:`CANONICAL_R`, tx, ty) -> ``(R, t)``.

    Returns ``R (B, 3, 3)`` object-to-camera and ``t (B, 3)`` = ``(tx, ty, 0)`` in posed-frame
    object units. Differentiable. ``w`` must already be bounded (see
    :func:`poseshape.geometry.rotations.bounded_axis_angle`).
    """
    check_shape(p, "pose", (5,))
    R = so3_exp(p[..., :3]) @ _canonical(p)
    t = torch.cat([p[..., 3:5], torch.zeros_like(p[..., :1])], -1)
    return R, t


def rt_to_pose(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pose_to_rt`: ``R (B, 3, 3)``, ``t (B, 3)`` (or ``(B, 2)``) -> ``(B, 5)``.

    The twist is ``so3_log(R @ CANONICAL_R^T)`` (angle in [0, pi]).
    """
    check_shape(R, "R", (3, 3))
    if t.shape[-1] not in (2, 3):
        raise ShapeError(f"t: expected shape (..., 2) or (..., 3), got {tuple(t.shape)}")
    w = so3_log(R @ _canonical(R).transpose(-1, -2))
    return torch.cat([w, t[..., :2].to(w.dtype)], -1)


def pinhole_to_posed(
    R: torch.Tensor, t: torch.Tensor, K: torch.Tensor, image_size: int, frame_extent: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weak-perspective posed-frame pose of pinhole samples.

    Args:
        R: ``(B, 3, 3)`` object-to-camera rotation; t: ``(B, 3)``; K: ``(B, 3, 3)`` pixels.
        image_size: side ``S`` of the square image the ``K`` belongs to (pixels).
        frame_extent: ``E``, object units spanned by the image in the posed frame.

    Returns:
        ``pose (B, 5)`` (see :func:`rt_to_pose`) and ``sigma (B,)``, the scale of the aligned
        shape (the style's size factor).
    """
    check_shape(R, "R", (3, 3))
    check_shape(t, "t", (3,))
    check_shape(K, "K", (3, 3))
    for x, n in ((R, "R"), (t, "t"), (K, "K")):
        check_finite(x, n)
    if not (t[..., 2] > 0).all():
        raise ShapeError("t: the object centre must lie in front of the camera (t_z > 0)")
    S = float(image_size)
    sigma = K[..., 0, 0] / t[..., 2] * frame_extent / S
    tx = (K[..., 0, 0] * t[..., 0] / t[..., 2] + K[..., 0, 2] - S / 2) * frame_extent / S
    ty = (K[..., 1, 1] * t[..., 1] / t[..., 2] + K[..., 1, 2] - S / 2) * frame_extent / S
    return rt_to_pose(R, torch.stack([tx, ty], -1)), sigma


def scale_voxels(voxels: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Scale aligned grids about the origin: ``out(x) = in(x / sigma)`` (trilinear).

    ``voxels (B, 1, D, D, D)``, ``sigma (B,)`` or a float -> ``(B, 1, D, D, D)``. Content
    scaled beyond the unit cube is cut off.
    """
    B = voxels.shape[0]
    sigma = torch.as_tensor(sigma, dtype=voxels.dtype, device=voxels.device).expand(B)
    eye = torch.eye(3, dtype=voxels.dtype, device=voxels.device)
    Rs = eye / sigma[:, None, None]
    return warp_voxels(voxels, Rs, torch.zeros(B, 3, dtype=voxels.dtype, device=voxels.device))


def aligned_target(voxels: torch.Tensor, sigma: torch.Tensor, binary: bool = True) -> torch.Tensor:
    """The aligned training target: unit-cube voxels ``(B, 1, D, D, D)`` scaled by ``sigma (B,)``.

    With ``binary`` the trilinear result is thresholded at 0.5 (a {0, 1} grid).
    """
    v = scale_voxels(voxels, sigma)
    return (v > 0.5).to(v.dtype) if binary else v


def posed_voxels(
    aligned: torch.Tensor, pose: torch.Tensor, frame_extent: float, out_size: int | None = None
) -> torch.Tensor:
    """Paper 000's rigid inverse-warp layer (eq. 2, 6): aligned ``(B, 1, Q, Q, Q)`` -> posed grid.

    ``pose (B, 5)``; the result ``(B, 1, P, P, P)`` (``P = out_size``, default ``Q``) spans
    the posed cube of side ``frame_extent``; differentiable in both arguments.
    """
    R, t = pose_to_rt(pose)
    return pose_voxels(
        aligned, R.to(aligned.dtype), t.to(aligned.dtype), out_size=out_size or aligned.shape[-1], extent=frame_extent
    )


def posed_silhouette(
    aligned: torch.Tensor, pose: torch.Tensor, frame_extent: float, out_size: int | None = None
) -> torch.Tensor:
    """Eq. 3: max-projection of the posed grid, ``(B, 1, P, P)`` in [0, 1] over the image crop."""
    return max_projection(posed_voxels(aligned, pose, frame_extent, out_size))
