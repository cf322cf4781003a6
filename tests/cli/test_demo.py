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
