"""What reproject's image networks see: the image as it is, or composited on grey with its mask."""

from __future__ import annotations

import pytest
import torch

import poseshape.engine.reconstruct as rc
from poseshape.core.errors import PoseshapeError, PoseshapeWarning, ShapeError
from poseshape.methods.reproject.config import ReprojectConfig
from poseshape.methods.reproject.predictor import ReprojectPredictor
from poseshape.methods.reproject.train import MASKED_BACKGROUND, build, model_images

SMALL = dict(image_size=32, width=0.25, latent=16)


def test_rgb_input_is_the_image_itself():
    x = torch.rand(2, 3, 8, 8)
    assert model_images(x, None, ReprojectConfig()) is x
    assert model_images(x, torch.zeros(2, 1, 8, 8), ReprojectConfig()) is x


def test_masked_input_composites_on_grey():
    x = torch.rand(2, 3, 8, 8)
    m = torch.zeros(2, 1, 8, 8)
    m[:, :, 2:5, 3:6] = 1.0
    m[1, 0, 0, 0] = 0.25  # a soft edge pixel blends linearly
    out = model_images(x, m, ReprojectConfig(image_input="masked"))
    inside = m.expand_as(x) == 1
    torch.testing.assert_close(out[inside], x[inside])
    outside = m.expand_as(x) == 0
    assert torch.all(out[outside] == MASKED_BACKGROUND)
    torch.testing.assert_close(out[1, :, 0, 0], 0.25 * x[1, :, 0, 0] + 0.75 * MASKED_BACKGROUND)


def test_masked_input_errors_name_the_problem():
    cfg = ReprojectConfig(image_input="masked")
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(PoseshapeError, match="needs an object mask"):
        model_images(x, None, cfg)
    with pytest.raises(ShapeError, match="masks"):
        model_images(x, torch.ones(1, 1, 8, 8), cfg)
    with pytest.raises(ShapeError, match="masks"):
        model_images(x, torch.ones(2, 1, 4, 4), cfg)
    with pytest.raises(PoseshapeError, match="image_input"):
        model_images(x, None, ReprojectConfig(image_input="depth"))
    with pytest.raises(PoseshapeError, match="image_input"):
        build(ReprojectConfig(image_input="depth", **SMALL))


def _predictor(**kw) -> ReprojectPredictor:
    torch.manual_seed(0)
    cfg = ReprojectConfig(**SMALL, **kw)
    return ReprojectPredictor(cfg, build(cfg))


def test_masked_predictor_needs_and_uses_the_mask():
    pred = _predictor(image_input="masked", pose_repr="6d")
    assert pred.capabilities.needs_mask and pred.capabilities.uses_mask
    assert not ReprojectPredictor.capabilities.needs_mask  # the class default is untouched
    assert not _predictor().capabilities.needs_mask
    img = torch.rand(1, 3, 48, 48)
    mask = torch.zeros(1, 1, 48, 48)
    mask[..., 10:40, 12:36] = 1
    with pytest.raises(PoseshapeError, match="needs an object mask"):
        pred.predict(img)
    a = pred.predict(img, mask)  # masks of the input's size are resized with the image
    # the background does not matter any more, the object's pixels do
    noisy = img.clone()
    noisy[..., :5, :] = torch.rand(1, 3, 5, 48)
    b = pred.predict(noisy, mask)
    torch.testing.assert_close(a.R, b.R)
    torch.testing.assert_close(a.voxels, b.voxels)
    torch.testing.assert_close(a.extras["style"], b.extras["style"])
    inside = img.clone()
    inside[..., 20:30, 20:30] = 1 - inside[..., 20:30, 20:30]
    c = pred.predict(inside, mask)
    assert (c.extras["style"] - a.extras["style"]).abs().max() > 1e-4  # the object's pixels count


@pytest.mark.parametrize("how", ["segmenter", "grabcut"])
def test_masked_model_without_a_mask_makes_the_automatic_one(how, monkeypatch):
    pytest.importorskip("cv2")
    if how == "grabcut":
        monkeypatch.setenv("POSESHAPE_AUTO_MASK", "grabcut")
    else:
        monkeypatch.delenv("POSESHAPE_AUTO_MASK", raising=False)
        if not rc.segmenter_available():
            pytest.skip("the segmenter's weights are not installed")
    pred = _predictor(image_input="masked")
    img = torch.full((3, 40, 40), 0.9)
    img[:, 12:30, 10:28] = torch.tensor([0.7, 0.2, 0.1])[:, None, None]
    with pytest.warns(PoseshapeWarning, match="needs one: made one automatically"):
        out = pred.reconstruct(img, refine=False)
    rec = out.extras["record"]
    assert rec["mask_source"] == f"{how}-auto" and out.R.shape == (1, 3, 3)
    made = out.mask[0][0] >= 0.5
    assert made[12:30, 10:28].all() and made.sum() == 18 * 18  # the object exactly

    # an automatic mask that finds nothing is an error that says how to give a mask
    def nothing(*a, **k):
        raise PoseshapeError("the automatic mask found no object; give a mask")

    monkeypatch.setattr(rc, "auto_mask" if how == "grabcut" else "learned_mask", nothing)
    with pytest.raises(PoseshapeError, match="needs an object mask and the automatic mask"):
        pred.reconstruct(img, refine=False)
    mask = torch.zeros(1, 40, 40, dtype=torch.bool)
    mask[:, 12:30, 10:28] = True
    with pytest.warns(PoseshapeWarning, match="low confidence"):  # an untrained network
        out = pred.reconstruct(torch.rand(3, 40, 40), mask, refine=False)
    assert out.R.shape == (1, 3, 3) and out.extras["record"]["mask_source"] == "array"
