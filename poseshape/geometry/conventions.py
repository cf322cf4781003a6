"""poseshape's conventions, stated in code.

Everything in the package follows these; loaders convert each data source into them.
``docs/conventions.md`` is the prose version (with a worked viewpoint example).

Object frame
    Right-handed, +Y up, the object's front faces +Z, centred at the origin and scaled so
    that the largest bounding-box side is 1 (the shape fits in [-0.5, 0.5]^3).

Camera
    OpenCV: x right, y down, z forward (the camera looks along +z). A point maps as
    ``X_cam = R @ X_obj + t`` (column vectors); ``pose = (R (..., 3, 3), t (..., 3))`` is
    object-to-camera. Intrinsics ``K (..., 3, 3)`` are in pixels, and pixel centres sit at
    +0.5 (pixel (i, j) covers [j, j+1) x [i, i+1) and its centre is (j + 0.5, i + 0.5)).
    Weak perspective is ``u = s * (R X)[:2] + t2`` in pixels.

Viewpoint
    (azimuth, elevation, theta, distance), radians, following PASCAL3D+: see
    :func:`poseshape.geometry.camera.viewpoint_to_pose`.

Images
    ``(B, C, H, W)`` float in [0, 1]; masks are ``(B, 1, H, W)``.

Voxels
    ``(B, 1, D, H, W)`` occupancy in [0, 1] spanning the unit cube [-0.5, 0.5]^3; index
    ``(d, h, w)`` maps to ``(z, y, x)``: voxel ``(d, h, w)`` has its centre at
    ``x = (w + 0.5) / W - 0.5``, ``y = (h + 0.5) / H - 0.5``, ``z = (d + 0.5) / D - 0.5``.
    ``grid_sample`` is called with ``align_corners=False``, whose normalised coordinate
    ``(gx, gy, gz)`` in [-1, 1] equals ``2 * (x, y, z)``.

Quaternions
    Real first, ``(w, x, y, z)``. Angles are radians in code and degrees in reports.
"""

from __future__ import annotations

import numpy as np

#: Bumped whenever a convention above changes; stored in checkpoints and data shards.
CONVENTIONS_VERSION = 1

#: Up axis of the object frame.
UP_AXIS = np.array([0.0, 1.0, 0.0])
#: Direction the object's front faces in the object frame.
FRONT_AXIS = np.array([0.0, 0.0, 1.0])
#: Half side of the cube the normalised shape fits in.
UNIT_CUBE_HALF = 0.5

#: Rotation taking each source's native coordinates into the object frame
#: (``ours = SOURCE_TO_OBJECT[src] @ native``). All are proper rotations (det = +1).
SOURCE_TO_OBJECT: dict[str, np.ndarray] = {
    # PASCAL3D+ CAD (and the ObjectNet3D models): Z up, front toward -Y.
    # ours = (x, z, -y)
    "pascal3d": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    "objectnet3d": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    # ShapeNetCore v1/v2 (model_normalized.obj): Y up, front toward -Z.  ours = (-x, y, -z)
    "shapenet": np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]),
    # Y up with the front toward +X (the meshes_obj chairs of ../shared/data: their backrests
    # sit at -X).  ours = (-z, y, x)
    "yup_xfront": np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
    # Meshes already in our frame (project-made procedural shapes, user folders by default).
    "identity": np.eye(3),
}

#: How each real data source's voxel files index space (see shapes/voxels.py readers).
#: binvox stores (x, z, y)-major with y up in its own header convention; the readers
#: return grids in our (d, h, w) = (z, y, x) order.
VOXEL_INDEX_ORDER = "dhw=zyx"


def source_rotation(source: str) -> np.ndarray:
    """Return the 3x3 rotation from ``source``'s native frame into the object frame.

    Raises ``ValueError`` naming the known sources when ``source`` is unknown.
    """
    try:
        return SOURCE_TO_OBJECT[source].copy()
    except KeyError:
        raise ValueError(f"unknown data source {source!r}; known: {sorted(SOURCE_TO_OBJECT)}") from None
