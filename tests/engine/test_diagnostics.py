"""Warnings about doubtful inputs and results (issue 14): each fires when it should, and only then."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers_predict import OracleConfig, OraclePredictor, make_scene
from scipy.spatial.transform import Rotation

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
    # after refinement the pose terms replace the silhouette IoU
    r = dg.confidence_terms(0.95, 0.5, 0.1, agreement=0.8, uniqueness=0.5)
    assert r["confidence"] == pytest.approx(0.2) and r["mask_iou"] == 0.95 and r["pose_agreement"] == 0.8
    assert dg.confidence_terms(0.95, None, agreement=0.9)["confidence"] == pytest.approx(0.9)


def _rot(rotvec):
    return torch.from_numpy(Rotation.from_rotvec(rotvec).as_matrix())


def test_pose_agreement_is_half_one_plus_cos_of_scipys_angle():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = Rotation.random(random_state=rng), Rotation.random(random_state=rng)
        angle = (a.inv() * b).magnitude()
        got = dg.pose_agreement(torch.from_numpy(a.as_matrix()).float(), torch.from_numpy(b.as_matrix()))
        assert got == pytest.approx((1 + np.cos(angle)) / 2, abs=1e-6)
    eye = torch.eye(3)
    assert dg.pose_agreement(eye, eye) == pytest.approx(1.0)
    assert dg.pose_agreement(eye, _rot([0, np.pi, 0])) == pytest.approx(0.0, abs=1e-9)


def test_basin_uniqueness_brute_force():
    eye, flip, quarter = torch.eye(3, dtype=torch.float64), _rot([0, np.pi, 0]), _rot([0, np.pi / 2, 0])
    nan = torch.full((3, 3), float("nan"), dtype=torch.float64)

    def u(rots, ious, chosen=0, gap=0.05):
        return dg.basin_uniqueness(torch.stack(rots), torch.tensor(ious, dtype=torch.float64), chosen, gap)

    assert u([eye], [0.9]) == 1.0  # no other survivor
    assert u([eye, nan, nan], [0.9, float("nan"), float("nan")]) == 1.0  # pruned starts do not count
    assert u([eye, eye.clone()], [0.9, 0.9]) == pytest.approx(1.0)  # one basin
    assert u([eye, flip], [0.9, 0.9]) == pytest.approx(0.0, abs=1e-9)  # a coin toss
    assert u([eye, flip], [0.9, 0.95]) == pytest.approx(0.0, abs=1e-9)  # a better rival counts fully
    assert u([eye, flip], [0.9, 0.85]) == pytest.approx(1.0)  # one gap worse: not a rival
    assert u([eye, flip], [0.9, 0.875]) == pytest.approx(0.5)  # half a gap: half the weight
    # the strongest rival decides: quarter turn at equal IoU -> (1 - cos 90)/2 = 0.5
    assert u([eye, quarter, flip], [0.9, 0.9, 0.8]) == pytest.approx(0.5)
    assert u([flip, eye], [0.8, 0.9], chosen=0) == pytest.approx(0.0, abs=1e-9)


def test_reconstruct_refines_by_default_and_warns():
    scene = make_scene(OracleConfig(), hw=(121, 162), scale=60.0, centre=(87.0, 63.0))
    pr = OraclePredictor(OracleConfig())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = reconstruct(pr, scene["image"], scene["mask"])
    assert p.extras["record"]["refined"] is True and "refine" in p.extras["record"]
    terms = p.extras["record"]["confidence_terms"]
    assert float(p.confidence[0]) == pytest.approx(terms["pose_agreement"] * terms["basin_uniqueness"])
    assert terms["pose_agreement"] > 0.99  # the oracle's rotation is the true one: refinement keeps it
    assert terms["mask_iou"] == pytest.approx(p.extras["record"]["refine"]["iou"])
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


def test_full_noisy_soft_masks_and_tiny_images():
    full = dg.mask_warnings(torch.ones(1, 50, 50))
    assert len(full) == 1 and "covers 100.0% of the image" in full[0]
    almost = torch.ones(1, 50, 50)
    almost[0, 25, 25] = 0  # an alpha channel with one transparent pixel
    assert "marks the background too" in dg.mask_warnings(almost)[0]
    g = torch.Generator().manual_seed(0)
    speckle = (torch.rand(1, 100, 100, generator=g) > 0.8).float()
    speckle[:, :3], speckle[:, -3:], speckle[..., :3], speckle[..., -3:] = 0, 0, 0, 0  # not cut
    noisy = dg.mask_warnings(speckle)
    assert len(noisy) == 1 and "noisy" in noisy[0] and "separate pieces" in noisy[0], noisy
    # an object with a few specks of dust is not noisy (largest piece > 90 %)
    dusty = _mask()
    for k in range(12):
        dusty[0, 5 + 7 * k, 90] = 1
    assert dg.mask_warnings(dusty) == []
    # soft masks: grey levels vs black/white with anti-aliased edges
    hard = _mask()[0].numpy()
    assert dg.soft_mask_warning(hard) is None
    aa = hard.copy()
    aa[29, 30:70] = 0.5  # one grey edge row
    assert dg.soft_mask_warning(aa) is None
    assert "not black and white" in dg.soft_mask_warning(hard * 0.55)
    assert dg.soft_mask_warning(torch.zeros(8, 8).numpy()) is None
    assert dg.image_warnings(torch.zeros(3, 31, 200))[0].startswith("the image is tiny (200x31 pixels)")
    assert dg.image_warnings(torch.zeros(3, 32, 32)) == []


def test_doubtful_inputs_are_recorded_through_reconstruct(tmp_path):
    import numpy as np
    from PIL import Image

    from poseshape.core.errors import FileFormatError
    from poseshape.engine.reconstruct import load_input

    scene = make_scene(OracleConfig(), hw=(121, 162), scale=60.0, centre=(87.0, 63.0))
    pr = OraclePredictor(OracleConfig())
    m = scene["mask"][0].numpy() > 0.5
    Image.fromarray((m * 140).astype(np.uint8)).save(tmp_path / "grey.png")  # a mid-grey object
    rgb = (scene["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img.png")
    item = load_input(tmp_path / "img.png", tmp_path / "grey.png")
    assert len(item.notes) == 1 and "not black and white" in item.notes[0]
    with pytest.warns(PoseshapeWarning, match="not black and white"):
        p = reconstruct(pr, tmp_path / "img.png", tmp_path / "grey.png", refine=False)
    assert any("not black and white" in w for w in p.extras["warnings"])
    # the same for an array mask with soft values
    assert "not black and white" in load_input(scene["image"], torch.from_numpy(m * 0.6)).notes[0]
    # a float TIFF with inf / NaN is refused, naming the file
    f = np.full((40, 40), 0.5, np.float32)
    f[3, 3], f[5, 5] = np.inf, np.nan
    Image.fromarray(f, mode="F").save(tmp_path / "bad.tif")
    with pytest.raises(FileFormatError, match=r"bad\.tif: 2 image pixel\(s\) are NaN or inf"):
        load_input(tmp_path / "bad.tif")
    Image.fromarray(f, mode="F").save(tmp_path / "badmask.tif")
    with pytest.raises(FileFormatError, match=r"badmask\.tif: 2 mask pixel"):
        load_input(np.zeros((40, 40, 3), np.float32), tmp_path / "badmask.tif")
