"""``poseshape info`` names every registered method and whether its shipped model is installed."""

from __future__ import annotations

from poseshape.cli.main import main
from poseshape.engine.predictor import default_checkpoint
from poseshape.engine.registry import list_methods


def test_info_lists_methods_and_their_shipped_models(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "poseshape " in out and "device:" in out and "shared data:" in out
    lines = {ln.split()[0]: ln for ln in out.split("methods:")[1].splitlines() if ln.strip()}
    for name in list_methods():
        assert name in lines, out
        expected = "shipped model;" if default_checkpoint(name).is_file() else "no shipped model"
        assert expected in lines[name], lines[name]
    assert "no shipped model" not in lines["reproject"]
