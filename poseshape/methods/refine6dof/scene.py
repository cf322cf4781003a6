"""Scene composition (paper 003, Fig. 4 and Fig. 7).

"Since all predicted poses lie in the same reference system, different views of the scene can
be produced by means of any rendering engine" -- each object's medoid is moved into the one
camera frame by its own predicted pose, ``X_cam = R X_obj + t``, and the objects are written
together as one mesh file that any viewer opens.

Frames of the written files (as :func:`poseshape.engine.output.write_prediction`):

* ``.obj``: the camera frame (OpenCV: x right, y down, z forward), object units;
* ``.glb``: glTF axes, ``(x, -y, -z)`` of the camera frame (+Y up, the viewer looking down
  -Z from the camera's position), so a viewer shows the scene upright as the photo saw it.

Each object is a separate node / group named ``object_<i>`` (with its medoid name when given).
Files are written to a temporary name and renamed (atomic).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from poseshape.core.checks import check_finite
from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.shapes.meshes import Mesh
from poseshape.viz import write_bytes_atomic

__all__ = ["SceneObject", "compose_scene", "export_scene", "scene_from_prediction"]

_CAM_TO_GLTF = np.diag([1.0, -1.0, -1.0])


@dataclass
class SceneObject:
    """One object of a scene: its mesh (object frame) and pose (``X_cam = R X + t``).

    Attributes:
        mesh: the medoid (or any) mesh, ``verts (V, 3)`` object units.
        R: ``(3, 3)`` object-to-camera rotation; t: ``(3,)`` translation, object units.
        name: node name (e.g. the medoid's ``"category/model_id"``).
    """

    mesh: Mesh
    R: torch.Tensor
    t: torch.Tensor
    name: str = ""


def _placed(obj: SceneObject, i: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj.mesh, Mesh):
        raise ShapeError(f"object {i}: mesh must be a poseshape Mesh, got {type(obj.mesh).__name__}")
    R = torch.as_tensor(obj.R, dtype=torch.float64).detach().cpu()
    t = torch.as_tensor(obj.t, dtype=torch.float64).detach().cpu()
    if R.shape != (3, 3) or t.shape != (3,):
        raise ShapeError(f"object {i}: expected R (3, 3) and t (3,), got {tuple(R.shape)} and {tuple(t.shape)}")
    check_finite(R, f"object {i} R")
    check_finite(t, f"object {i} t")
    if abs(float(torch.det(R)) - 1.0) > 1e-3 or not torch.allclose(R @ R.T, torch.eye(3, dtype=R.dtype), atol=1e-3):
        raise ShapeError(f"object {i}: R is not a rotation matrix (det {float(torch.det(R)):.4f})")
    v = obj.mesh.verts.detach().double().cpu() @ R.T + t
    return v.numpy(), obj.mesh.faces.cpu().numpy()


def compose_scene(objects: Sequence[SceneObject], frame: str = "camera"):
    """A :class:`trimesh.Scene` with every object placed in the camera frame.

    Args:
        objects: the objects (at least one).
        frame: ``"camera"`` (OpenCV axes) or ``"gltf"`` (``(x, -y, -z)`` of them).

    Returns:
        ``trimesh.Scene`` with one geometry per object, named ``object_<i>[_<name>]``.
    """
    import trimesh

    if frame not in ("camera", "gltf"):
        raise ShapeError(f"frame: expected 'camera' or 'gltf', got {frame!r}")
    if not objects:
        raise PoseshapeError("compose_scene: no objects to place")
    scene = trimesh.Scene()
    for i, obj in enumerate(objects):
        v, f = _placed(obj, i)
        if frame == "gltf":
            v = v @ _CAM_TO_GLTF.T
        name = f"object_{i}" + (f"_{obj.name.replace('/', '_')}" if obj.name else "")
        scene.add_geometry(trimesh.Trimesh(v, f, process=False), node_name=name, geom_name=name)
    return scene


def export_scene(objects: Sequence[SceneObject], path: str | os.PathLike) -> Path:
    """Write the composed scene to ``path`` (``.glb`` in glTF axes, ``.obj`` in camera axes), atomically.

    Returns:
        The path written.

    Raises:
        PoseshapeError: unsupported extension, no objects, or the folder does not exist.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in (".glb", ".obj"):
        raise PoseshapeError(f"{p}: scene files must end in .glb or .obj")
    if not p.parent.is_dir():
        raise PoseshapeError(f"{p}: folder {p.parent} does not exist")
    scene = compose_scene(objects, frame="gltf" if ext == ".glb" else "camera")
    data = scene.export(file_type=ext[1:])
    if isinstance(data, str):
        data = data.encode()
    return write_bytes_atomic(p, data)


def scene_from_prediction(pred, indices: Sequence[int] | None = None) -> list[SceneObject]:
    """The objects of a :class:`~poseshape.engine.prediction.Prediction` with meshes and a
    pinhole camera (one per item; ``refine6dof``'s medoids).

    Each item is one object of the same image (e.g. the crops of several masks of one photo,
    each predicted on the full frame with its own mask); uses ``Prediction.meshes``, ``R``,
    ``t`` and ``model_id``.
    """
    if pred.meshes is None or not pred.camera.is_pinhole:
        raise PoseshapeError(
            "scene_from_prediction: the prediction has no meshes or no pinhole camera (it is "
            "not a refine6dof prediction)"
        )
    idx = range(len(pred)) if indices is None else [pred._check_index(i) for i in indices]
    names = pred.model_id or [""] * len(pred)
    return [SceneObject(pred.meshes[i], pred.R[i], pred.t[i], names[i] or "") for i in idx]
