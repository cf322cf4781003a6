"""bench/posefree_fig4.py (paper 002, Fig. 4): the offset, error and histogram distance it reports."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_PATH = Path(__file__).resolve().parents[3] / "bench" / "posefree_fig4.py"
_spec = importlib.util.spec_from_file_location("posefree_fig4", _PATH)
fig4_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fig4_mod)

RING = np.repeat(np.arange(24) * (2 * math.pi / 24), 3)  # 24 ring views, 3 images each


def test_shifted_prediction_has_no_error_and_same_distribution(tmp_path):
    pred = np.mod(RING - math.radians(100.0), 2 * math.pi)  # the manifold's front 100 deg off
    s = fig4_mod.fig4(pred, RING, tmp_path / "f.png")
    assert s["med_err_deg"] < 0.6
    assert abs(((s["offset_deg"] - 100.0) + 180) % 360 - 180) <= 1.0
    assert s["tv_distance"] < 1e-9
    assert Image.open(tmp_path / "f.png").size[0] > 100


def test_collapsed_prediction_is_far_from_the_true_distribution(tmp_path):
    s = fig4_mod.fig4(np.full_like(RING, 0.3), RING, tmp_path / "f.png")
    assert abs(s["tv_distance"] - 23 / 24) < 1e-9  # all mass in one of 24 equal bins
    assert s["med_err_deg"] > 60


def test_unknown_row_names_the_rows(tmp_path):
    p = tmp_path / "e.json"
    p.write_text(json.dumps({"a": {"result": {"azimuths": {"pred": [0.0], "gt": [0.0]}}}}))
    with pytest.raises(SystemExit, match="no row 'b'.*rows: a"):
        fig4_mod.main(["--eval", str(p), "--label", "b", "--out", str(tmp_path / "x.png")])
