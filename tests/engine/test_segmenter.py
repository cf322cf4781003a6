"""The learned mask segmenter (poseshape.engine.segmenter): network, checkpoints, inference, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poseshape.core.errors import CheckpointError, PoseshapeError, ShapeError
from poseshape.data.collections import MeshCollection
from poseshape.data.synth import SynthConfig, render_dataset
from poseshape.engine import segmenter as seg
from poseshape.engine.segmenter import (
    SegmenterConfig,
    SegmenterNet,
    learned_mask,
    load_segmenter,
    save_segmenter,
    segment_probability,
    segmentation_loss,
    train_segmenter,
)

TINY = SegmenterConfig(image_size=32, width=8, depth=2)


def test_net_shapes_and_bad_input():
    net = SegmenterNet(TINY).eval()
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 1, 32, 32)
    with pytest.raises(ShapeError, match=r"\(B, 3, S, S\)"):
        net(torch.rand(2, 1, 32, 32))
    with pytest.raises(ShapeError, match="multiple of 2 \\*\\* depth"):
        SegmenterConfig(image_size=30, depth=2)
    with pytest.raises(ShapeError, match="width"):
        SegmenterConfig(width=0)


def test_loss_against_hand_computation():
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    p = torch.sigmoid(logits).flatten()
    t = target.flatten()
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    assert torch.allclose(segmentation_loss(logits, target), bce + dice, atol=1e-6)
    with pytest.raises(ShapeError):
        segmentation_loss(logits, target[..., :1])


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    net = SegmenterNet(TINY).eval()
    path = save_segmenter(tmp_path / "s.pt", net, {"note": "x"})
    back = load_segmenter(path)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(back(x), net(x))
    assert not (tmp_path / "s.pt.tmp").exists()
    with pytest.raises(CheckpointError, match="no segmenter checkpoint"):
        load_segmenter(tmp_path / "missing.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_segmenter(tmp_path / "corrupt.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a poseshape segmenter"):
        load_segmenter(tmp_path / "other.pt")
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["head.bias"] = torch.tensor([float("nan")])
    torch.save(blob, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_segmenter(tmp_path / "nan.pt")
    blob["config"] = {"image_size": 32, "width": 4, "depth": 2}  # weights of width 8
    torch.save(blob, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_segmenter(tmp_path / "mismatch.pt")


def test_probability_keeps_the_image_size_and_checks_input():
    net = SegmenterNet(TINY).eval()
    img = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    p = segment_probability(img, net)
    assert p.shape == (40, 56) and p.dtype == np.float32 and 0 <= p.min() <= p.max() <= 1
    assert np.allclose(segment_probability(img.astype(np.float32) / 255, net), p, atol=1e-5)
    with pytest.raises(ShapeError, match=r"\(H, W, 3\)"):
        segment_probability(img[..., 0], net)
    bad = img.astype(np.float32) / 255
    bad[0, 0, 0] = np.nan
    with pytest.raises(ShapeError, match="NaN"):
        segment_probability(bad, net)
    with pytest.raises(ShapeError, match="too small"):
        segment_probability(img[:4, :4], net)


def test_learned_mask_that_finds_nothing_says_how_to_give_one():
    net = SegmenterNet(TINY).eval()
    with torch.no_grad():
        net.head.bias.fill_(-100.0)
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(PoseshapeError, match="--mask"):
        learned_mask(img, net)
    with pytest.raises(ShapeError, match="threshold"):
        learned_mask(img, net, threshold=1.5)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """16 natural-domain renders of two procedural cars at 32 px."""
    root = tmp_path_factory.mktemp("seg_shards")
    coll = MeshCollection.procedural(("car",), 2)
    cfg = SynthConfig(image_size=32, views=8, voxel_res=0, domain="natural", seed=3)
    render_dataset(coll, root, cfg, progress=False)
    return root


def test_overfits_16_renders(shards, tmp_path):
    out = train_segmenter([shards], tmp_path / "run", val=[shards], config=TINY, steps=250, batch_size=16,
                          lr=3e-3, val_every=250, progress=False)  # fmt: skip
    blob = torch.load(out, weights_only=True)
    assert blob["meta"]["train_samples"] == 16
    assert blob["meta"]["val_iou"] > 0.85  # its own training images
    x, y = seg._batches([shards], 32)
    assert seg._mean_iou(load_segmenter(out), x, y) == pytest.approx(blob["meta"]["val_iou"], abs=1e-6)


def test_a_stopped_run_resumes_where_it_stopped(shards, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = seg.segmentation_loss

    def failing(logits, target):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return real(logits, target)

    monkeypatch.setattr(seg, "segmentation_loss", failing)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_segmenter([shards], run, config=TINY, steps=20, batch_size=4, checkpoint_every=10, progress=False)
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 10
    assert not (run / "segmenter.pt").exists()
    monkeypatch.setattr(seg, "segmentation_loss", real)
    train_segmenter([shards], run, config=TINY, steps=20, batch_size=4, checkpoint_every=10, progress=False)
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 20
    assert (run / "segmenter.pt").is_file()
    with pytest.raises(CheckpointError, match="another config or step count"):
        train_segmenter([shards], run, config=TINY, steps=30, batch_size=4, progress=False)


def test_training_refuses_empty_input(tmp_path):
    with pytest.raises(ShapeError, match="steps"):
        train_segmenter([], tmp_path / "r", steps=0)


def test_auto_mask_source_follows_the_asset_and_the_switch(monkeypatch):
    from poseshape.engine import reconstruct as rc

    monkeypatch.delenv("POSESHAPE_AUTO_MASK", raising=False)
    monkeypatch.setattr(rc, "segmenter_available", lambda: True)
    assert rc.auto_mask_source() == "segmenter-auto"
    monkeypatch.setenv("POSESHAPE_AUTO_MASK", "grabcut")
    assert rc.auto_mask_source() == "grabcut-auto"
    monkeypatch.delenv("POSESHAPE_AUTO_MASK")
    monkeypatch.setattr(rc, "segmenter_available", lambda: False)
    assert rc.auto_mask_source() == "grabcut-auto"


def test_learned_mask_with_grabcut_snaps_to_the_edges(monkeypatch):
    """A prior that is only roughly right (a blurred, shifted disc) comes out on the object's edges."""
    from poseshape.engine import segmenter as s

    rng = np.random.default_rng(0)
    img = (rng.random((96, 96, 3)) * 60 + 180).astype(np.uint8)
    yy, xx = np.mgrid[:96, :96]
    obj = (xx - 48) ** 2 + (yy - 48) ** 2 < 25**2
    img[obj] = [30, 70, 160]
    rough = np.clip(1.0 - np.sqrt((xx - 54.0) ** 2 + (yy - 50.0) ** 2) / 36.0, 0, 1).astype(np.float32) * 1.4
    monkeypatch.setattr(s, "segment_probability", lambda image, net=None: np.clip(rough, 0, 1))

    def iou(m):
        return float((m & obj).sum()) / float((m | obj).sum())

    plain = learned_mask(img, SegmenterNet(TINY))
    snapped = learned_mask(img, SegmenterNet(TINY), grabcut=True)
    assert iou(plain) < 0.85 < 0.95 < iou(snapped)
