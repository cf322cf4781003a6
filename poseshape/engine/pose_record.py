"""The one ``pose.json`` schema: written and read here only (``docs/pose_json.md``).

Version ``poseshape.pose/2``. A record holds, for one object in one image:

* ``R`` (3x3) and ``t`` (3): object-to-camera, ``X_cam = R X_obj + t`` (OpenCV camera: x
  right, y down, z forward), object units;
* ``camera``: :meth:`poseshape.geometry.camera.Camera.to_dict` -- ``kind`` (``pinhole`` or
  ``weak_perspective``), ``K`` in the pixels of ``image_size``, the formula in words;
* ``viewpoint`` (PASCAL3D+ azimuth, elevation, theta in radians and degrees), ``axis_angle``;
* ``method``, ``category``, ``model_id``, ``confidence`` and, with a mask, ``mask_iou``;
* for weak perspective also ``weak_perspective: {scale, t2}`` (``u = scale (R X)[:2] + t2``);
* whatever the caller adds (``info``: input files, refinement, warnings).

:func:`read_pose` accepts this schema, the version-1 files of earlier releases (``R`` with an
input-pixel ``weak_perspective`` camera and no ``camera``), and minimal hand-written files
(``R``, ``t``, ``K``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from poseshape.core.errors import FileFormatError, PoseshapeError
from poseshape.geometry.camera import Camera, pose_to_viewpoint
from poseshape.geometry.rotations import so3_log

__all__ = ["SCHEMA", "PoseRecord", "pose_record", "read_pose"]

#: Schema id written into every ``pose.json``.
SCHEMA = "poseshape.pose/2"


def pose_record(R: torch.Tensor, t: torch.Tensor, camera: Camera, **fields: Any) -> dict[str, Any]:
    """A JSON-ready record of one pose ``R (3, 3)``, ``t (3,)`` seen by ``camera`` (a batch of one).

    ``fields`` (e.g. ``method``, ``category``, ``confidence``, ``mask_iou``) are added as they
    are; ``None`` values are kept (they say "unknown").
    """
    R64, t64 = R.detach().cpu().double().reshape(3, 3), t.detach().cpu().double().reshape(3)
    w = so3_log(R64)
    view_t = t64 if camera.is_pinhole and float(t64[2]) > 0 else torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    az, el, th, dist = pose_to_viewpoint(R64, view_t)
    rec: dict[str, Any] = {"schema": SCHEMA}
    rec.update(fields)
    rec.update(
        {
            "R": R64.tolist(),
            "t": t64.tolist(),
            "camera": camera.to_dict(0),
            "axis_angle": w.tolist(),
            "rotation_angle_deg": math.degrees(float(w.norm())),
            "viewpoint": {
                "azimuth": float(az),
                "elevation": float(el),
                "theta": float(th),
                "azimuth_deg": math.degrees(float(az)),
                "elevation_deg": math.degrees(float(el)),
                "theta_deg": math.degrees(float(th)),
                "distance": float(dist) if camera.is_pinhole else None,
                "convention": "PASCAL3D+ (radians and degrees)",
            },
        }
    )
    if not camera.is_pinhole:
        K = camera.K[0].detach().cpu().double()
        s = float(K[0, 0])
        rec["weak_perspective"] = {
            "scale": s,
            "t2": [s * float(t64[0]) + float(K[0, 2]), s * float(t64[1]) + float(K[1, 2])],
            "formula": "input pixel (u, v) = scale * (R X_obj)[:2] + t2",
        }
    return rec


class PoseRecord:
    """A pose read back from a file: ``R (1, 3, 3)``, ``t (1, 3)`` float64, its ``camera`` (or
    ``None`` when the file gives none) and the whole ``record``."""

    __slots__ = ("R", "camera", "record", "t")

    def __init__(self, R, t, camera, record):
        self.R, self.t, self.camera, self.record = R, t, camera, record


def _matrix(rec, key, shape, p):
    try:
        x = torch.tensor(rec[key], dtype=torch.float64)
    except (TypeError, ValueError):
        raise FileFormatError(f"{p}: {key} is not a numeric array") from None
    if tuple(x.shape) != shape:
        raise FileFormatError(f"{p}: {key} must be a {shape} array, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise FileFormatError(f"{p}: {key} contains NaN or inf")
    return x


def read_pose(path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> PoseRecord:
    """Read a ``pose.json`` (this schema, version 1, or ``R``/``t``/``K``).

    Args:
        path: the file.
        image_size: ``(H, W)`` of the image the pose refers to, for files that give no size.

    Raises:
        PoseshapeError: the file does not exist.
        FileFormatError: not JSON, another schema, or missing / malformed fields (named).
    """
    p = Path(path)
    if not p.is_file():
        raise PoseshapeError(f"{p}: pose file not found")
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FileFormatError(f"{p}: not a valid pose JSON file ({e})") from None
    if not isinstance(rec, dict) or "R" not in rec:
        raise FileFormatError(
            f"{p}: a pose file needs 'R' (3x3) and a camera ('camera', 'K' + 't', or "
            "'weak_perspective': {'scale', 't2'})"
        )
    schema = rec.get("schema")
    if schema is not None and schema != SCHEMA:
        raise FileFormatError(f"{p}: pose schema {schema!r} is not {SCHEMA!r} (written by another poseshape?)")
    R = _matrix(rec, "R", (3, 3), p)
    if abs(float(torch.linalg.det(R)) - 1) > 1e-3 or (R @ R.T - torch.eye(3, dtype=R.dtype)).abs().max() > 1e-3:
        raise FileFormatError(f"{p}: R is not a rotation matrix")
    size = rec.get("image_size")
    hw = (int(size["height"]), int(size["width"])) if isinstance(size, dict) else image_size
    if "camera" in rec:
        try:
            cam = Camera.from_dict(rec["camera"])
        except PoseshapeError as e:
            raise FileFormatError(f"{p}: {e}") from None
        t = _matrix(rec, "t", (3,), p)
    elif "K" in rec:
        if "t" not in rec:
            raise FileFormatError(f"{p}: a pinhole pose needs 't' with 'K'")
        K, t = _matrix(rec, "K", (3, 3), p), _matrix(rec, "t", (3,), p)
        cam = Camera(K, hw or (int(2 * K[1, 2]), int(2 * K[0, 2])), "pinhole")
    elif isinstance(rec.get("weak_perspective"), dict):  # version 1 (and this version's extra field)
        wp = rec["weak_perspective"]
        try:
            s = float(wp["scale"])
            t2 = [float(v) for v in wp["t2"]]
        except (KeyError, TypeError, ValueError):
            raise FileFormatError(f"{p}: 'weak_perspective' needs 'scale' and 't2' (2 numbers)") from None
        if not (math.isfinite(s) and s > 0 and len(t2) == 2 and all(map(math.isfinite, t2))):
            raise FileFormatError(f"{p}: 'weak_perspective' scale must be > 0 and t2 finite")
        cam = Camera.weak_perspective(
            torch.tensor([s], dtype=torch.float64), torch.tensor([t2], dtype=torch.float64), hw or (1, 1)
        )
        t = torch.zeros(3, dtype=torch.float64)
    else:
        raise FileFormatError(f"{p}: no camera: give 'camera', 'K' + 't', or 'weak_perspective'")
    return PoseRecord(R[None], t[None], cam, rec)
