"""The public API: ``poseshape.load(...).reconstruct(...)`` gives what ``poseshape reconstruct`` writes."""

from __future__ import annotations

import json

import helpers_predict as hp
import numpy as np
import pytest
import torch
from PIL import Image

import poseshape
from poseshape.cli.main import main

oracle_checkpoint = hp.oracle_checkpoint  # fixture


@pytest.fixture
def scene_files(tmp_path):
    sc = hp.make_scene()
    ip, mp = tmp_path / "car.png", tmp_path / "car_mask.png"
    Image.fromarray((sc["image"].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(ip)
    Image.fromarray((sc["mask"][0].numpy() * 255).astype(np.uint8)).save(mp)
    return sc, ip, mp


def test_public_names_are_lazy_and_documented():
    assert {"load", "Prediction", "Camera", "Predictor"} <= set(poseshape.__all__)
    assert poseshape.Prediction.__module__ == "poseshape.engine.prediction"
    with pytest.raises(AttributeError):
        poseshape.no_such_name  # noqa: B018


def test_load_and_reconstruct_equals_the_cli(scene_files, oracle_checkpoint, tmp_path, capsys):
    sc, ip, mp = scene_files
    model = poseshape.load(oracle_checkpoint, device="cpu")
    result = model.reconstruct(str(ip), mask=str(mp))
    assert isinstance(result, poseshape.Prediction) and len(result) == 1
    R, t = result.pose
    assert R.shape == (1, 3, 3) and t.shape == (1, 3)
    assert result.camera.image_size == (181, 243) and result.camera.kind == "weak_perspective"
    assert result.mesh.num_faces > 100
    files = result.save(tmp_path / "api")
    assert (
        main(
            [
                "reconstruct",
                str(ip),
                "--mask",
                str(mp),
                "--checkpoint",
                str(oracle_checkpoint),
                "--out",
                str(tmp_path / "cli"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    capsys.readouterr()
    api = json.loads(files["pose"].read_text())
    cli = json.loads((tmp_path / "cli" / "pose.json").read_text())
    for key in ("R", "t", "camera", "mask_iou", "box"):
        assert api[key] == cli[key], key
    assert (tmp_path / "api" / "mesh.obj").read_bytes() == (tmp_path / "cli" / "mesh.obj").read_bytes()


def test_reconstruct_takes_arrays_tensors_pil_and_lists(scene_files, oracle_checkpoint):
    sc, ip, mp = scene_files
    model = poseshape.load(oracle_checkpoint, device="cpu")
    ref = model.reconstruct(str(ip), mask=str(mp))
    arr = np.asarray(Image.open(ip))
    as_np = model.reconstruct(arr, mask=np.asarray(Image.open(mp)) > 127)
    as_pil = model.reconstruct(Image.open(ip), mask=Image.open(mp))
    as_t = model.reconstruct(
        torch.from_numpy(arr).permute(2, 0, 1), mask=torch.from_numpy(np.asarray(Image.open(mp)) > 127)
    )
    for other in (as_np, as_pil, as_t):
        torch.testing.assert_close(other.R, ref.R)
        torch.testing.assert_close(other.camera.K, ref.camera.K)
    both = model.reconstruct([str(ip), arr], mask=[str(mp), np.asarray(Image.open(mp)) > 127])
    assert isinstance(both, list) and len(both) == 2
    torch.testing.assert_close(both[1].R, ref.R)
    refined = model.reconstruct(str(ip), mask=str(mp), refine=True)
    assert refined.extras["record"]["refine"]["iou"] >= refined.extras["record"]["refine"]["iou_before"] - 1e-6


def test_load_errors():
    with pytest.raises(poseshape.PoseshapeError, match="neither a method"):
        poseshape.load("nonexistent_method")
    with pytest.raises(poseshape.PoseshapeError, match="not available|not a device"):
        poseshape.load("reproject", device="cuda:7")
    with pytest.raises(poseshape.PoseshapeError, match="not found"):
        poseshape.load("missing/model.pt")
    with pytest.raises(poseshape.PoseshapeError, match="mask"):
        poseshape.load("reproject", device="cpu").reconstruct(np.ones((8, 8, 3), np.uint8), mask=np.zeros((8, 8)))
