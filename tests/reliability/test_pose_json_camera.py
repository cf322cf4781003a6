"""Every method's ``pose.json`` camera reproduces the written silhouette (issue 20): the written
``mesh.obj`` projected with the documented formula (docs/pose_json.md: weak perspective
``u = fx x + cx``, pinhole ``u = fx x / z + cx``, of ``X_cam = diag(1, -1, -1) V``) has the IoU
with the input mask that ``pose.json`` reports as ``mask_iou`` (itself measured on the
prediction's own silhouette)."""

from __future__ import annotations

import json

import helpers_predict as hp
import numpy as np
import pytest
from PIL import Image

from poseshape.cli.main import main
from poseshape.engine.registry import list_methods


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cam_in")
    scene = hp.make_scene(hp.OracleConfig(), hw=(157, 211), scale=70.0, centre=(110.0, 80.0))
    img = (scene["image"].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(img).save(d / "car.png")
    Image.fromarray((scene["mask"][0].numpy() > 0.5).astype(np.uint8) * 255).save(d / "car_mask.png")
    return d, scene["mask"]


@pytest.mark.parametrize("method", ["posefree", "refine6dof", "reproject", "retrieval", "selfconsistency"])
def test_pose_json_camera_reproduces_the_written_silhouette(method, files, tmp_path, capsys):
    d, mask = files
    assert method in list_methods()
    out = tmp_path / method
    argv = ["reconstruct", str(d / "car.png"), "--mask", str(d / "car_mask.png"), "--method", method,
            "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    pose = json.loads((out / "pose.json").read_text())
    assert pose["method"] == method and 0.0 <= pose["mask_iou"] <= 1.0
    iou = hp.mesh_reprojection_iou(out / "mesh.obj", pose, mask)
    assert abs(iou - pose["mask_iou"]) < 0.03, (method, pose["camera"]["kind"], iou, pose["mask_iou"])
