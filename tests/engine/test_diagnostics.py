"""Warnings about doubtful inputs and results (issue 14): each fires when it should, and only then."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers_predict import OracleConfig, OraclePredictor, make_scene

from poseshape.core.errors import PoseshapeWarning, ShapeError
from poseshape.engine import diagnostics as dg
from poseshape.engine.reconstruct import reconstruct


def _mask(h=100, w=100, box=(30, 30, 70, 70)):
    m = torch.zeros(1, h, w)
    x0, y0, x1, y1 = box
    m[:, y0:y1, x0:x1] = 1
    return m


def test_a_good_mask_gives_no_warning():
    assert dg.mask_warnings(_mask()) == []


def test_missing_inverted_tiny_and_cut_masks():
    assert "no mask" in dg.mask_warnings(None)[0]
    assert "not refined" in dg.mask_warnings(None)[0] and "not refined" not in dg.mask_warnings(None, False)[0]
    inv = dg.mask_warnings(1 - _mask())
    assert len(inv) == 1 and "inverted" in inv[0] and "invert the mask" in inv[0]
    tiny = dg.mask_warnings(_mask(box=(50, 50, 56, 57)))  # 42 px of 10,000 = 0.42 %
    assert len(tiny) == 1 and "tiny" in tiny[0]
    assert dg.mask_warnings(_mask(box=(50, 50, 58, 57))) == []  # 56 px = 0.56 %: not tiny
    cut = dg.mask_warnings(_mask(box=(0, 30, 40, 100)))
    assert len(cut) == 1 and "cut by the image border (bottom, left)" in cut[0]
    # a single foreground pixel touching the border is not a cut object
    m = _mask()
    m[0, 0, 50] = 1
    assert dg.mask_warnings(m) == []
    with pytest.raises(ShapeError, match="mask"):
        dg.mask_warnings(torch.full((1, 8, 8), float("nan")))


def test_result_warnings_and_confidence():
    assert dg.result_warnings(0.9, True) == []
    low = dg.result_warnings(0.5, True)
    assert len(low) == 1 and "IoU 0.50" in low[0] and "--refine-starts" in low[0]
    assert "drop --no-refine" in dg.result_warnings(0.5, False)[0]
    unc = dg.result_warnings(0.9, True, "chair", 0.3)
    assert len(unc) == 1 and "uncertain category" in unc[0]
    new = dg.result_warnings(0.9, True, expected_category="mug", trained_categories=["car", "chair"])
    assert len(new) == 1 and "'mug' was not in the model's training set (car, chair)" in new[0]
    assert dg.result_warnings(0.9, True, expected_category="car", trained_categories=["car"]) == []
    c = dg.confidence_terms(0.8, 0.5, 0.1)
    assert c["confidence"] == pytest.approx(0.4) and c["hypothesis_margin"] == 0.1
    assert dg.confidence_terms(0.8, None)["confidence"] == pytest.approx(0.8)
    assert dg.confidence_terms(None, None)["confidence"] is None


def test_reconstruct_refines_by_default_and_warns():
    scene = make_scene(OracleConfig(), hw=(121, 162), scale=60.0, centre=(87.0, 63.0))
    pr = OraclePredictor(OracleConfig())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = reconstruct(pr, scene["image"], scene["mask"])
    assert p.extras["record"]["refined"] is True and "refine" in p.extras["record"]
    assert float(p.confidence[0]) == pytest.approx(p.extras["record"]["refine"]["iou"])
    assert not [w for w in caught if issubclass(w.category, PoseshapeWarning)]
    # no mask: no refinement (by default), and a warning naming the fix
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = reconstruct(pr, scene["image"])
    msgs = [str(w.message) for w in caught if issubclass(w.category, PoseshapeWarning)]
    assert p.extras["record"]["refined"] is False and any("no mask" in m and "--mask" in m for m in msgs)
    assert p.extras["warnings"] == [m.split(": ", 1)[1] for m in msgs]
    # an inverted mask is named before anything is predicted (the oracle then fails on it)
    with pytest.warns(PoseshapeWarning, match="inverted"), pytest.raises(AssertionError):
        reconstruct(pr, scene["image"], 1 - scene["mask"].float(), refine=False)
    # a category the model was not trained on (when the predictor says what it was trained on)
    pr.categories = ("car", "chair")
    with pytest.warns(PoseshapeWarning, match="'mug' was not in the model's training set"):
        p = reconstruct(pr, scene["image"], scene["mask"], refine=False, category="mug")
    assert any("mug" in w for w in p.extras["warnings"])
