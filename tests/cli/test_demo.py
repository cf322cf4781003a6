"""`poseshape demo` end to end with the shipped default model (small settings)."""

from __future__ import annotations

import json

import pytest
import trimesh


@pytest.mark.slow
def test_demo_runs_with_the_shipped_model(tmp_path, capsys):
    from poseshape.cli.main import main
    from poseshape.engine.predictor import default_checkpoint

    if not default_checkpoint("reproject").is_file():
        pytest.fail("the shipped default model poseshape/assets/reproject.pt is missing")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--views", "2", "--images", "2", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "2D AP" in text and "all" in text
    res = json.loads((out / "metrics.json").read_text())
    overall = res["reproject"]["overall"]
    assert overall["n"] > 0 and 0 <= overall["ap2d"] <= 1
    assert (out / "recon" / "gallery.png").is_file()
    folders = sorted(p for p in (out / "recon").iterdir() if p.is_dir())
    assert len(folders) == 2
    for f in folders:
        mesh = trimesh.load(f / "mesh.obj", force="mesh")
        assert len(mesh.faces) > 0
        pose = json.loads((f / "pose.json").read_text())
        assert pose["method"] == "reproject"


def test_cross_dataset_headline_is_printed_only_for_the_measured_checkpoint(tmp_path):
    import hashlib

    from poseshape.cli.demo import cross_dataset_headline

    ck = tmp_path / "model.pt"
    ck.write_bytes(b"weights")
    head = {
        "format": "poseshape.cross_dataset/1",
        "date": "2026-12-07",
        "machine": "x86_64 CPU, 2 threads",
        "command": "python bench/cross_dataset.py",
        "checkpoint_sha256": hashlib.sha256(b"weights").hexdigest(),
        "sets": {
            "pascal3d": {"n": 44, "mask_iou": [0.41, 0.7], "rot_mederr": [80.0, 60.0], "acc_pi6": [0.1, 0.2]},
            "samples": {"n": 6, "mask_iou": [0.3, 0.65], "rot_mederr": [float("nan"), 70.0], "acc_pi6": [0, 0]},
        },
    }
    f = tmp_path / "h.json"
    f.write_text(json.dumps(head))
    text = cross_dataset_headline(ck, f)
    assert "PASCAL3D+ CAD (held out)" in text and "IoU 0.41 -> 0.70, 80 -> 60 deg" in text
    assert "R2N2 / NMR" in text and text.splitlines()[-1].rstrip().endswith("IoU 0.30 -> 0.65")
    ck.write_bytes(b"other weights")  # measured on another model: nothing is printed
    assert cross_dataset_headline(ck, f) is None
    f.write_text("{not json")
    assert cross_dataset_headline(ck, f) is None
    assert cross_dataset_headline(ck, tmp_path / "missing.json") is None
