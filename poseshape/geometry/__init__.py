"""Rotations, SO(3) anchor grids, cameras and the conventions (see ``conventions.py``)."""

from .anchors import (
    TranslationAnchors,
    anchor_distances,
    anchor_stats,
    apply_quaternion_residual,
    covering_radius,
    nearest_anchor,
    quaternion_anchors,
    quaternion_residual,
    random_quaternions,
    super_fibonacci_anchors,
)
from .camera import (
    backproject,
    intrinsics,
    intrinsics_from_fov,
    look_at,
    pixels_to_rays,
    pose_to_viewpoint,
    project_points,
    transform_points,
    viewpoint_to_pose,
    weak_perspective_project,
)
from .conventions import CONVENTIONS_VERSION, source_rotation
from .rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    bounded_axis_angle,
    euler_angles_to_matrix,
    geodesic_distance,
    hat,
    matrix_to_axis_angle,
    matrix_to_euler_angles,
    matrix_to_quaternion,
    matrix_to_rotation_6d,
    quaternion_canonical,
    quaternion_geodesic_distance,
    quaternion_invert,
    quaternion_multiply,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
    so3_exp,
    so3_log,
    vee,
)

__all__ = [n for n in dir() if not n.startswith("_")]
