"""Losses against brute-force formulas, torch references and finite differences."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from poseshape.core.errors import ShapeError
from poseshape.losses import (
    anchor_losses,
    angle_loss,
    feature_matching_l2,
    gan_d_loss,
    gan_g_loss,
    kl_divergence,
    reprojection_bce,
    reprojection_iou,
    voxel_l2,
    weighted_voxel_bce,
    wgan_gp_penalty,
)


def test_reprojection_bce_is_eq4_per_pixel_loop():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(2, 1, 3, 4, generator=g, dtype=torch.float64)
    m = (torch.rand(2, 1, 3, 4, generator=g) > 0.5).double()
    want = []
    for b in range(2):
        acc = 0.0
        for i in range(3):
            for j in range(4):
                acc += -(m[b, 0, i, j] * math.log(s[b, 0, i, j]) + (1 - m[b, 0, i, j]) * math.log(1 - s[b, 0, i, j]))
        want.append(acc / 12)
    torch.testing.assert_close(reprojection_bce(s, m, reduction="none"), torch.tensor(want, dtype=torch.float64))
    torch.testing.assert_close(reprojection_bce(s, m), F.binary_cross_entropy(s, m))


def test_reprojection_bce_is_finite_at_saturation_and_checks_shapes():
    s = torch.tensor([0.0, 1.0, 1.0, 0.0]).view(1, 1, 2, 2).requires_grad_(True)
    m = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    loss = reprojection_bce(s, m)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    with pytest.raises(ShapeError, match="same shape"):
        reprojection_bce(s, m[..., :1])
    with pytest.raises(ShapeError, match="silhouette"):
        reprojection_bce(torch.rand(1, 2, 2, 2), torch.rand(1, 2, 2, 2))


def test_reprojection_iou():
    s = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    m = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    assert reprojection_iou(s, m).item() == pytest.approx(1 - 1 / 3, abs=1e-5)
    assert reprojection_iou(m, m).item() == pytest.approx(0, abs=1e-6)
    z = torch.zeros(1, 1, 2, 2)
    assert reprojection_iou(z, z).item() == pytest.approx(0, abs=1e-6)


def test_voxel_losses_and_kl_against_formulas():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(3, 1, 2, 2, 2, generator=g)
    t = (torch.rand(3, 1, 2, 2, 2, generator=g) > 0.5).float()
    torch.testing.assert_close(voxel_l2(p, t), ((p - t) ** 2).sum() / 3)
    torch.testing.assert_close(weighted_voxel_bce(p, t), F.binary_cross_entropy(p, t))
    w = torch.where(t > 0, 3.0, 1.0)
    torch.testing.assert_close(weighted_voxel_bce(p, t, pos_weight=3.0), F.binary_cross_entropy(p, t, weight=w))
    mu, logvar = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    # KL of diagonal Gaussians against torch.distributions
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1).mean()
    torch.testing.assert_close(kl_divergence(mu, logvar), ref)
    f1, f2 = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    torch.testing.assert_close(feature_matching_l2(f1, f2), ((f1 - f2) ** 2).sum() / 2)
    with pytest.raises(ShapeError, match="reduction"):
        voxel_l2(p, t, reduction="avg")


def test_gan_losses():
    lr, lf = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    want_d = -(torch.log(torch.sigmoid(lr)).mean() + torch.log(1 - torch.sigmoid(lf)).mean())
    torch.testing.assert_close(gan_d_loss(lr, lf), want_d)
    torch.testing.assert_close(gan_g_loss(lf), -torch.log(torch.sigmoid(lf)).mean())


def test_wgan_gp_penalty_of_a_linear_critic():
    """critic(x) = <a, x> has gradient a everywhere: penalty = w (|a| - 1)^2."""
    a = torch.tensor([3.0, 4.0])
    real, fake = torch.randn(5, 2), torch.randn(5, 2)
    pen = wgan_gp_penalty(lambda x: x @ a, real, fake, weight=10.0)
    assert pen.item() == pytest.approx(10.0 * (5.0 - 1.0) ** 2, rel=1e-5)


def test_anchor_losses_pick_the_true_anchor_residual():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    idx = torch.tensor([0, 2])
    res = torch.zeros(2, 3, 4)
    res[0, 0] = 0.5
    res[1, 2] = 3.0  # beyond the Huber delta: linear part
    gt = torch.zeros(2, 4)
    ce, hub = anchor_losses(logits, res, idx, gt, huber_delta=1.0)
    torch.testing.assert_close(ce, F.cross_entropy(logits, idx))
    want = (4 * 0.5 * 0.5**2 + 4 * (3.0 - 0.5)) / 2
    assert hub.item() == pytest.approx(want)
    with pytest.raises(ShapeError):
        anchor_losses(logits, res, idx[:1], gt)


def test_angle_loss_matches_scipy_and_has_finite_gradient_at_zero():
    r1 = Rotation.random(8, random_state=0)
    r2 = Rotation.random(8, random_state=1)
    R1 = torch.tensor(r1.as_matrix())
    R2 = torch.tensor(r2.as_matrix())
    want = (r1.inv() * r2).magnitude()
    torch.testing.assert_close(angle_loss(R1, R2, reduction="none"), torch.tensor(want), atol=1e-5, rtol=0)
    R = torch.eye(3, dtype=torch.float64)[None].requires_grad_(True)
    angle_loss(R, torch.eye(3, dtype=torch.float64)[None]).backward()
    assert torch.isfinite(R.grad).all()
