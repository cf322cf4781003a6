"""Scene composition (paper 003, Fig. 7): medoids placed in the camera frame, one GLB / OBJ."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.geometry.rotations import euler_angles_to_matrix
from poseshape.methods.refine6dof.scene import SceneObject, compose_scene, export_scene
from poseshape.shapes.meshes import Mesh, icosphere


def _objects():
    box = trimesh.creation.box(extents=(1.0, 0.5, 2.0))
    a = Mesh(torch.tensor(box.vertices, dtype=torch.float32), torch.tensor(box.faces))
    b = icosphere(1)
    Ra = euler_angles_to_matrix(torch.tensor([0.3, -1.1, math.pi]), "ZYX")
    Rb = euler_angles_to_matrix(torch.tensor([0.0, 0.5, math.pi]), "ZYX")
    return [
        SceneObject(a, Ra, torch.tensor([-0.4, 0.1, 2.0]), "car/01"),
        SceneObject(b, Rb, torch.tensor([0.6, 0.2, 3.5]), "car/04"),
    ]


@pytest.mark.parametrize("ext", ["glb", "obj"])
def test_export_scene_places_every_object(tmp_path, ext):
    objs = _objects()
    path = export_scene(objs, tmp_path / f"scene.{ext}")
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))
    loaded = trimesh.load(path, force="scene", process=False)
    geoms = list(loaded.dump())
    if ext == "glb":
        assert len(geoms) == 2  # one node per object
    else:
        text = path.read_text()
        assert text.count("\no ") + text.startswith("o ") == 2 or text.count("\ng ") == 2  # one group each
    allv = np.concatenate([np.asarray(g.vertices) for g in geoms])
    assert len(allv) == sum(o.mesh.num_verts for o in objs)
    flip = np.diag([1.0, -1.0, -1.0]) if ext == "glb" else np.eye(3)
    for o in objs:
        want = (o.mesh.verts.double() @ o.R.double().T + o.t.double()).numpy() @ flip.T
        d = np.linalg.norm(want[:, None] - allv[None], axis=-1).min(1)
        assert d.max() < 1e-5  # every vertex, placed by X_cam = R X + t (and the axis flip), is in the file
    # and nothing is left at the object-frame origin: the unplaced vertices are not in the file
    raw = objs[1].mesh.verts.double().numpy()
    assert np.linalg.norm(raw[:, None] - allv[None], axis=-1).min(1).max() > 0.5


def test_compose_scene_rejects_bad_input(tmp_path):
    objs = _objects()
    with pytest.raises(PoseshapeError, match="no objects"):
        compose_scene([])
    bad = SceneObject(objs[0].mesh, torch.eye(3) * 2, torch.zeros(3))
    with pytest.raises(ShapeError, match="rotation"):
        compose_scene([bad])
    with pytest.raises(ShapeError, match=r"R \(3, 3\)"):
        compose_scene([SceneObject(objs[0].mesh, torch.eye(3), torch.zeros(2))])
    with pytest.raises(PoseshapeError, match=".glb or .obj"):
        export_scene(objs, tmp_path / "scene.ply")
    with pytest.raises(PoseshapeError, match="does not exist"):
        export_scene(objs, tmp_path / "missing" / "scene.glb")
