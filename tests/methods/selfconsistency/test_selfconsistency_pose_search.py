"""The azimuth-bin search of ``selfconsistency`` (ours, ``pose_bins > 0``): bin geometry, the
search against a per-bin brute-force loop of eq. 6, the binned pose head (float64 gradcheck),
the per-image reduction of ``L_sc``, and training: the bin logits learn the search's targets."""

from __future__ import annotations

import math

import pytest
import torch

from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.geometry.camera import intrinsics_from_fov
from poseshape.losses.consistency import projection_iou_loss, self_consistency_loss
from poseshape.methods.selfconsistency.config import SelfConsistencyConfig
from poseshape.methods.selfconsistency.frame import pose_to_rt
from poseshape.methods.selfconsistency.model import PoseHead
from poseshape.methods.selfconsistency.pose_search import bin_centers, binned_azimuth, search_bins
from poseshape.methods.selfconsistency.train import build, forward, losses
from poseshape.render.voxel import project_voxels

D64 = torch.float64


def _wrap(a: torch.Tensor) -> torch.Tensor:
    return torch.atan2(torch.sin(a), torch.cos(a))


def _l_shape(n: int = 1) -> torch.Tensor:
    """An asymmetric 16^3 'L' (a bar along +x with a post at its -x end): no azimuth symmetry."""
    v = torch.zeros(n, 1, 16, 16, 16)
    v[:, 0, 6:10, 5:8, 2:14] = 1.0  # bar along x
    v[:, 0, 6:10, 5:13, 2:5] = 1.0  # post up at -x
    v[:, 0, 10:13, 5:8, 2:5] = 1.0  # foot towards +z
    return v


def test_bin_centres_and_binned_azimuth_wrap():
    c = bin_centers(4)
    assert torch.allclose(c, torch.tensor([0.0, math.pi / 2, math.pi, -math.pi / 2]), atol=1e-6)
    a = binned_azimuth(torch.tensor([3, 0]), torch.tensor([0.2, -0.3]), 4)
    assert torch.allclose(a, torch.tensor([-math.pi / 2 + 0.2, -0.3]), atol=1e-6)
    assert float(binned_azimuth(torch.tensor([2]), torch.tensor([0.5]), 4)) == pytest.approx(-math.pi + 0.5, abs=1e-6)
    with pytest.raises(ShapeError):
        bin_centers(1)


def test_per_image_reduction_matches_one_call_per_image():
    g = torch.Generator().manual_seed(1)
    vox = torch.rand(3, 1, 8, 8, 8, generator=g)
    pose = torch.tensor([[0.2, 0.5], [2.0, 0.1], [-1.0, 0.8]])
    R, t = pose_to_rt(pose, 2.732)
    K = intrinsics_from_fov(math.radians(30), 12).float().expand(3, 3, 3)
    mask = (torch.rand(3, 1, 12, 12, generator=g) > 0.5).float()
    per = self_consistency_loss(vox, R, t, K, mask, n_samples=16, reduction="none")
    assert per.shape == (3,)
    for i in range(3):
        one = self_consistency_loss(
            vox[i : i + 1], R[i : i + 1], t[i : i + 1], K[i : i + 1], mask[i : i + 1], n_samples=16
        )
        assert float(per[i]) == pytest.approx(float(one), rel=1e-5)
    assert float(per.mean()) == pytest.approx(float(self_consistency_loss(vox, R, t, K, mask, n_samples=16)), rel=1e-5)
    p = torch.rand(2, 1, 4, 4, generator=g)
    assert projection_iou_loss(p, mask[:2, :, :4, :4], reduction="none").shape == (2,)
    with pytest.raises(ShapeError):
        self_consistency_loss(vox, R, t, K, mask, reduction="sum")


def test_search_matches_brute_force_and_finds_the_true_bin():
    bins, S, dist = 12, 24, 2.732
    vox = _l_shape(3)
    true_bins = torch.tensor([0, 5, 9])
    el = torch.full((3,), math.radians(30))
    R, t = pose_to_rt(torch.stack([bin_centers(bins)[true_bins] + 0.05, el], 1), dist)
    K = intrinsics_from_fov(math.radians(30), S).float().expand(3, 3, 3)
    mask = (project_voxels(vox, R, t, K, image_size=S) > 0.5).float()
    idx, el_idx, table = search_bins(vox, el, K, mask, bins, dist, res=S, n_samples=32)
    assert table.shape == (3, 1, bins) and el_idx.tolist() == [0, 0, 0]
    table = table[:, 0]
    assert idx.tolist() == true_bins.tolist()
    # brute force: one eq. 6 call per (image, bin)
    for i in range(3):
        for k in range(bins):
            Rk, tk = pose_to_rt(torch.stack([bin_centers(bins)[k : k + 1], el[:1]], 1), dist)
            ref = self_consistency_loss(vox[i : i + 1], Rk, tk, K[:1], mask[i : i + 1], n_samples=32)
            assert float(table[i, k]) == pytest.approx(float(ref), rel=1e-4, abs=1e-6)
    # a coarser search (the mask pooled to half size) still finds them
    assert search_bins(vox, el, K, mask, bins, dist, res=S // 2, n_samples=24)[0].tolist() == true_bins.tolist()


def test_search_over_elevation_candidates_picks_the_true_one():
    bins, S, dist = 12, 24, 2.732
    vox = _l_shape(2)
    true_el = torch.tensor([math.radians(40), math.radians(10)])
    R, t = pose_to_rt(torch.stack([bin_centers(bins)[torch.tensor([2, 7])], true_el], 1), dist)
    K = intrinsics_from_fov(math.radians(30), S).float().expand(2, 3, 3)
    mask = (project_voxels(vox, R, t, K, image_size=S) > 0.5).float()
    step = math.radians(15)
    guess = torch.tensor([math.radians(25), math.radians(25)])  # true: +step for 0, -step for 1
    cands = torch.stack([guess - step, guess, guess + step], 1)
    b, e, table = search_bins(vox, cands, K, mask, bins, dist, res=S, n_samples=32)
    assert table.shape == (2, 3, bins)
    assert b.tolist() == [2, 7] and e.tolist() == [2, 0]


def test_binned_head_outputs_and_gradcheck():
    head = PoseHead(5, elevation_max=1.2, bins=8).double()
    z = torch.randn(4, 5, dtype=D64)
    p = head.parts(z)
    assert p["logits"].shape == (4, 8) and p["residual"].shape == (4, 8) and p["elevation"].shape == (4,)
    assert float(p["residual"].detach().abs().max()) < math.pi / 8
    out = head(z)
    k = p["logits"].argmax(1)
    want = _wrap(bin_centers(8, z)[k] + p["residual"][torch.arange(4), k])
    assert torch.allclose(out[:, 0], want) and torch.allclose(out[:, 1], p["elevation"])
    assert torch.autograd.gradcheck(lambda x: tuple(head.parts(x).values()), (z.requires_grad_(True),))
    with pytest.raises(ShapeError):
        PoseHead(5, bins=1)
    with pytest.raises(ShapeError):
        PoseHead(5).parts(z)
    with pytest.raises(PoseshapeError):
        build(SelfConsistencyConfig(width=0.25, pose_bins=1))


def test_bin_logits_learn_the_search_targets_on_16_samples():
    """16 images of one asymmetric shape at 16 azimuths: training with pose_bins must learn
    to classify their azimuth bins (no GT pose is used, only the GT voxels and masks)."""
    torch.manual_seed(0)
    n, bins = 16, 8
    cfg = SelfConsistencyConfig(width=0.25, n_samples=32, pose_bins=bins, search_res=24, search_samples=24)
    small = _l_shape(1)
    vox = (
        torch.nn.functional.interpolate(small, size=(32, 32, 32), mode="nearest").expand(n, 1, 32, 32, 32).contiguous()
    )
    az = _wrap(torch.arange(n) * (2 * math.pi / n) + 0.1)
    el = torch.full((n,), math.radians(30))
    R, t = pose_to_rt(torch.stack([az, el], 1), cfg.distance)
    K = intrinsics_from_fov(math.radians(cfg.fov_deg), 48).float().expand(n, 3, 3)
    mask = (project_voxels(vox, R, t, K, image_size=48) > 0.5).float()
    images = torch.nn.functional.interpolate(mask, size=(64, 64), mode="bilinear").expand(n, 3, 64, 64).contiguous()
    batch = {"image": images, "mask": mask, "voxels": vox, "K": K}
    models = build(cfg)
    opt = torch.optim.Adam([p for m in models.values() for p in m.parameters()], lr=1e-3)
    for _ in range(120):
        parts = losses(forward(models, images, sample=True), batch, cfg)
        assert "bin" in parts
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
    with torch.no_grad():
        out = forward(models, images)
        target, _, _ = search_bins(
            vox, out["pose_parts"]["elevation"], K, mask, bins, cfg.distance, res=24, n_samples=24
        )
    acc = float((out["pose_parts"]["logits"].argmax(1) == target).float().mean())
    assert acc >= 0.8
    err = _wrap(out["pose"][:, 0] - az).abs()
    assert float(err.median()) < math.radians(25)


def test_predictor_of_a_binned_head_returns_its_top_bins_as_hypotheses():
    from poseshape.methods.selfconsistency.predictor import SelfConsistencyPredictor

    torch.manual_seed(0)
    cfg = SelfConsistencyConfig(width=0.25, n_samples=16, pose_bins=8)
    models = build(cfg)
    pred = SelfConsistencyPredictor(cfg, models).predict(torch.rand(2, 3, 64, 64))
    H = pred.hypotheses
    assert H.shape == (2, 4, 3, 3)
    assert torch.allclose(H[:, 0], pred.R.float(), atol=1e-5)
    with torch.no_grad():
        parts = models["pose_head"].parts(models["encoder"](torch.zeros(1, 3, 64, 64))[2])
    assert parts["logits"].shape == (1, 8)
    # the four hypotheses are four different azimuth bins (at least 45 - 2 * 22.5 deg apart)
    for b in range(2):
        fwd = H[b, :, 2, :]  # the camera z axis in object coordinates, per hypothesis
        az = torch.atan2(fwd[:, 0], fwd[:, 2])
        assert len({round(float(a), 3) for a in az}) == 4


def test_the_default_refinement_is_local():
    """The method refines locally (bench/refine_policy.py): few starts near the prediction, no
    jumps to the other bins."""
    from poseshape.methods.selfconsistency.predictor import SelfConsistencyPredictor

    cfg = SelfConsistencyPredictor.refine_config(None)
    assert cfg.starts == 4 and cfg.perturb_deg == 15.0 and cfg.use_hypotheses is False
    assert cfg.rotation_weight == 4.0 and cfg.rotation == "axis_angle"  # the prior applies
