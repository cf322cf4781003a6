"""The public names of issue 2 are importable from the three public modules and behave as named.

Other code and outside checks call exactly these; renaming or dropping one breaks them.
"""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch

PUBLIC = {
    "poseshape.geometry": [
        "axis_angle_to_matrix",
        "matrix_to_axis_angle",
        "quaternion_to_matrix",
        "matrix_to_quaternion",
        "euler_angles_to_matrix",
        "matrix_to_euler_angles",
        "rotation_6d_to_matrix",
        "matrix_to_rotation_6d",
        "so3_exp",
        "so3_log",
        "geodesic_distance",
        "quaternion_anchors",
        "viewpoint_to_pose",
        "pose_to_viewpoint",
    ],
    "poseshape.shapes": [
        "icosphere",
        "load_mesh",
        "save_mesh",
        "voxelize",
        "read_binvox",
        "write_binvox",
        "voxels_to_mesh",
    ],
    "poseshape.metrics": [
        "voxel_iou",
        "average_precision",
        "mask_iou",
        "chamfer_distance",
        "rotation_error_stats",
    ],
}


@pytest.mark.parametrize("module, name", [(m, n) for m, names in PUBLIC.items() for n in names])
def test_public_name_importable(module, name):
    mod = importlib.import_module(module)
    obj = getattr(mod, name, None)
    assert obj is not None, f"{module}.{name} is missing"
    assert callable(obj)
    if hasattr(mod, "__all__"):
        assert name in mod.__all__, f"{name} not in {module}.__all__"


def test_public_signatures_and_return_types(tmp_path):
    from poseshape.geometry import (
        euler_angles_to_matrix,
        matrix_to_euler_angles,
        quaternion_anchors,
        viewpoint_to_pose,
    )
    from poseshape.metrics import rotation_error_stats
    from poseshape.shapes import icosphere, load_mesh, save_mesh

    assert list(inspect.signature(euler_angles_to_matrix).parameters)[:2] == ["angles", "convention"]
    a = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    assert torch.allclose(matrix_to_euler_angles(euler_angles_to_matrix(a, "ZYX"), "ZYX"), a)
    assert quaternion_anchors(7).shape[-1] == 4
    R, t = viewpoint_to_pose(0.0, 0.0, 0.0, 2.0)
    assert R.shape == (3, 3) and t.shape == (3,)
    m = icosphere(3)
    assert (m.verts.shape, m.faces.shape, m.faces.dtype) == ((642, 3), (1280, 3), torch.int64)
    save_mesh(m, tmp_path / "s.obj")
    back = load_mesh(tmp_path / "s.obj")
    assert hasattr(back, "verts") and hasattr(back, "faces") and back.faces.shape == (1280, 3)
    stats = rotation_error_stats(torch.tensor([10.0, 40.0]))
    assert {"med_err_deg", "acc_pi6"} <= set(stats)


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_entries_resolve(module):
    mod = importlib.import_module(module)
    missing = [n for n in getattr(mod, "__all__", []) if not hasattr(mod, n)]
    assert not missing, f"{module}.__all__ lists undefined names {missing}"
