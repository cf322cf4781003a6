"""Paper 003 §4.2: online fine-tuning of the encoder on the silhouette misalignment."""

from __future__ import annotations

import pytest
import torch

from poseshape.core.errors import ShapeError
from poseshape.methods.refine6dof.online import hard_silhouettes, online_refine, render_medoids
from poseshape.metrics import mask_iou


def test_online_refinement_lowers_the_silhouette_loss_with_the_papers_settings(trained):
    """30 steps, batch 20, Adam lr 1e-6, eq. 5 renderer: the loss of the 16 images goes down."""
    torch.set_num_threads(1)
    models, b = trained
    enc, bank = models["encoder"], models["medoids"]
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    r = online_refine(enc, bank, b["input"], b["mask"], b["K"], steps=30, batch=20, lr=1e-6, render="edge", loss="iou")
    assert r.losses.shape == (31, 16)
    assert float(r.losses[-1].mean()) < float(r.losses[0].mean())
    assert (r.losses[-1] <= r.losses[0] + 1e-6).float().mean() >= 0.75
    # the caller's encoder is untouched and R0/t0 are its prediction
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in before.items())
    with torch.no_grad():
        out = enc(b["input"])
    assert torch.allclose(r.R0, out["R"]) and torch.allclose(r.t0, out["t"])
    assert torch.equal(r.labels, out["logits"].argmax(1))


def test_online_refinement_improves_the_hard_mask_iou(trained):
    """A larger step (lr 1e-5, SoftRas form) gives a clear gain of the exact-raster mask IoU."""
    torch.set_num_threads(1)
    models, b = trained
    enc, bank = models["encoder"], models["medoids"]
    r = online_refine(enc, bank, b["input"], b["mask"], b["K"], steps=30, batch=20, lr=1e-5, render="softras")
    h0 = hard_silhouettes(bank, r.labels, r.R0, r.t0, b["K"], 64)
    h1 = hard_silhouettes(bank, r.labels, r.R, r.t, b["K"], 64)
    iou0 = float(mask_iou(h0, b["mask"]).mean())
    iou1 = float(mask_iou(h1, b["mask"]).mean())
    assert iou1 > iou0 + 0.01, (iou0, iou1)


def test_each_chunk_starts_from_the_original_weights(trained):
    torch.set_num_threads(1)
    models, b = trained
    enc, bank = models["encoder"], models["medoids"]
    x, m, K = b["input"][:4], b["mask"][:4], b["K"][:4]
    together = online_refine(enc, bank, x, m, K, steps=5, batch=20, lr=1e-4)
    split = online_refine(enc, bank, x, m, K, steps=5, batch=2, lr=1e-4)
    again = online_refine(enc, bank, x[2:], m[2:], K[2:], steps=5, batch=2, lr=1e-4)
    assert torch.allclose(split.R[2:], again.R, atol=1e-6)  # chunk 2 is independent of chunk 1
    assert not torch.allclose(together.R, split.R, atol=1e-7)  # batch composition matters (shared weights)
    none = online_refine(enc, bank, x, m, K, steps=0)
    assert torch.equal(none.R, none.R0) and none.losses.shape == (1, 4)


def test_render_medoids_groups_by_cluster(trained):
    models, b = trained
    bank = models["medoids"]
    lab = torch.tensor([1, 0, 1, 0])
    sil = render_medoids(bank, lab, b["R"][:4], b["t"][:4], b["K"][:4], 64)
    for i in range(4):
        one = render_medoids(bank, lab[i : i + 1], b["R"][i : i + 1], b["t"][i : i + 1], b["K"][i : i + 1], 64)
        assert torch.allclose(sil[i], one[0], atol=1e-6)


def test_online_refinement_bad_input(trained):
    models, b = trained
    enc, bank = models["encoder"], models["medoids"]
    empty = b["mask"][:2].clone()
    empty[1] = 0
    with pytest.raises(ShapeError, match="empty mask"):
        online_refine(enc, bank, b["input"][:2], empty, b["K"][:2], steps=1)
    with pytest.raises(ShapeError, match="masks"):
        online_refine(enc, bank, b["input"][:2], b["mask"][:3], b["K"][:2], steps=1)
    nan = b["input"][:2].clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ShapeError):
        online_refine(enc, bank, nan, b["mask"][:2], b["K"][:2], steps=1)
    with pytest.raises(ShapeError, match="online_loss"):
        online_refine(enc, bank, b["input"][:2], b["mask"][:2], b["K"][:2], steps=1, loss="l1")
