"""``poseshape.engine.grabcut``: a box (or the whole frame) -> the object's mask."""

from __future__ import annotations

import numpy as np
import pytest

from poseshape.core.errors import PoseshapeError, ShapeError

cv2 = pytest.importorskip("cv2")
from poseshape.engine.grabcut import (  # noqa: E402
    auto_mask,
    box_from_points,
    grabcut_from_prior,
    grabcut_mask,
    parse_box_spec,
)


def _scene(seed=0):
    rng = np.random.default_rng(seed)
    img = (rng.random((120, 160, 3)) * 60 + 180).astype(np.uint8)  # light textured background
    yy, xx = np.mgrid[:120, :160]
    obj = ((xx - 80) / 40) ** 2 + ((yy - 60) / 30) ** 2 < 1
    img[obj] = (rng.random((int(obj.sum()), 3)) * 40 + [20, 60, 150]).astype(np.uint8)
    return img, obj


def _iou(a, b):
    return float((a & b).sum()) / float((a | b).sum())


def test_grabcut_finds_the_object_in_its_box():
    img, obj = _scene()
    m = grabcut_mask(img, (30, 20, 130, 100))
    assert m.shape == obj.shape and m.dtype == bool
    assert _iou(m, obj) > 0.9
    assert not m[:, :30].any() and not m[:20].any()  # nothing outside the box
    # float input in [0, 1] gives the same mask; corners in any order
    assert _iou(grabcut_mask(img / 255.0, (130, 100, 30, 20)), m) > 0.98


def test_box_from_points_clips_and_orders():
    assert box_from_points((130.4, 100, 30, 20.6), (120, 160)) == (30, 20, 131, 100)
    assert box_from_points((-10, -5, 500, 50), (120, 160)) == (0, 0, 160, 50)


@pytest.mark.parametrize(
    "box, err",
    [
        ((10, 10, 10, 50), "no area"),
        ((200, 200, 300, 300), "no area"),
        ((1, 2, 3), "four numbers"),
        (("a", 1, 2, 3), "four numbers"),
        ((0, 0, float("nan"), 5), "finite"),
        ((0, 0, 160, 120), "whole image"),
    ],
)
def test_bad_boxes_are_clear_errors(box, err):
    img, _ = _scene()
    with pytest.raises(ShapeError, match=err):
        grabcut_mask(img, box)


def test_bad_images_and_no_object():
    with pytest.raises(ShapeError, match=r"expected shape \(H, W, 3\)"):
        grabcut_mask(np.zeros((10, 10)), (1, 1, 5, 5))
    with pytest.raises(ShapeError, match="NaN"):
        grabcut_mask(np.full((10, 10, 3), np.nan), (1, 1, 5, 5))
    flat = np.full((60, 60, 3), 128, np.uint8)  # nothing to separate
    try:
        m = grabcut_mask(flat, (10, 10, 50, 50))
    except PoseshapeError as exc:
        assert "no object" in str(exc)
    else:
        assert m.dtype == bool  # GrabCut may keep the box's uniform inside: still a valid mask


def test_auto_mask_finds_the_one_object_without_a_box():
    img, obj = _scene()
    m = auto_mask(img)
    assert m.shape == obj.shape and m.dtype == bool
    assert _iou(m, obj) > 0.9
    # a large photo is segmented at a reduced size and scaled back: the same object
    big = np.kron(img, np.ones((4, 4, 1), np.uint8))  # 480 x 640
    mb = auto_mask(big)
    assert mb.shape == (480, 640) and _iou(mb, np.kron(obj, np.ones((4, 4), bool))) > 0.9
    # a speck of the object's colour in the background is dropped (pieces < 1/10 of the largest)
    specked = img.copy()
    specked[5:8, 150:153] = img[obj][0]
    assert not auto_mask(specked, inset=0.02)[5:8, 150:153].any()


def test_auto_mask_bad_input():
    img, _ = _scene()
    with pytest.raises(ShapeError, match="inset"):
        auto_mask(img, inset=0.0)
    with pytest.raises(ShapeError, match="max_side"):
        auto_mask(img, max_side=4)
    with pytest.raises(ShapeError, match="too small"):
        auto_mask(img[:5, :5])
    with pytest.raises(ShapeError, match=r"\(H, W, 3\)"):
        auto_mask(img[..., 0])
    with pytest.raises(ShapeError, match="NaN"):
        auto_mask(np.full((20, 20, 3), np.nan))


@pytest.mark.parametrize("spec, want", [("box:1,2,30,40", (1, 2, 30, 40)), ("box: 1.5 2 30, 40", (1.5, 2, 30, 40))])
def test_parse_box_spec(spec, want):
    assert parse_box_spec(spec) == want


@pytest.mark.parametrize("spec", ["box:1,2,3", "box:a,b,c,d", "1,2,3,4", "box:"])
def test_parse_box_spec_errors(spec):
    with pytest.raises(ShapeError, match="box:x0,y0,x1,y1"):
        parse_box_spec(spec)


def test_grabcut_from_a_prior_moves_a_wrong_outline_to_the_edges():
    img, obj = _scene()
    yy, xx = np.mgrid[:120, :160]
    # a prior that is too large and shifted: an ellipse 1.3x the object's, 8 px to the right
    prior_fg = ((xx - 88) / 52) ** 2 + ((yy - 60) / 39) ** 2 < 1
    prob = np.where(prior_fg, 0.7, 0.05).astype(np.float32)
    prob[obj & prior_fg & (((xx - 80) / 20) ** 2 + ((yy - 60) / 15) ** 2 < 1)] = 0.97  # a sure core
    m = grabcut_from_prior(img, prob)
    assert m.shape == obj.shape and m.dtype == bool
    assert _iou(prior_fg, obj) < 0.7 < 0.9 < _iou(m, obj)


def test_grabcut_from_prior_degenerate_and_bad_input():
    img, _ = _scene()
    every = np.ones(img.shape[:2], np.float32)
    assert grabcut_from_prior(img, every).all()  # no background to learn: the prior itself
    assert not grabcut_from_prior(img, np.zeros_like(every)).any()
    with pytest.raises(ShapeError, match="prob: expected shape"):
        grabcut_from_prior(img, every[:10])
    bad = every.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ShapeError, match="NaN"):
        grabcut_from_prior(img, bad)
    with pytest.raises(ShapeError, match="sure"):
        grabcut_from_prior(img, every, sure=0.4)
