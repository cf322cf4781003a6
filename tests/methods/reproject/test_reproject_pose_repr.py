"""The pose regressor's rotation outputs: the paper's twist and the continuous 6-D output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch import nn

from poseshape.core.errors import PoseshapeError
from poseshape.methods.reproject.config import ReprojectConfig
from poseshape.methods.reproject.frame import CANONICAL_R, pose_to_rt
from poseshape.methods.reproject.train import (
    build,
    pose_outputs,
    regress_pose,
    regress_rt,
    rt_pose_loss,
)


class Fixed(nn.Module):
    """A stand-in regressor that returns given raw outputs, whatever the image."""

    def __init__(self, raw: torch.Tensor):
        super().__init__()
        self.raw = nn.Parameter(raw.clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.raw[: images.shape[0]]


def _images(b: int) -> torch.Tensor:
    return torch.rand(b, 3, 32, 32)


def test_outputs_per_repr_and_bad_repr():
    assert pose_outputs(ReprojectConfig()) == 5
    assert pose_outputs(ReprojectConfig(pose_repr="6d")) == 8
    with pytest.raises(PoseshapeError, match="pose_repr"):
        build(ReprojectConfig(pose_repr="quat", image_size=64, width=0.25))
    with pytest.raises(PoseshapeError, match="pose_repr"):
        regress_rt({"pose": Fixed(torch.zeros(1, 8))}, _images(1), ReprojectConfig(pose_repr="quat"))


def test_6d_zero_outputs_give_the_canonical_view():
    cfg = ReprojectConfig(pose_repr="6d")
    R, t = regress_rt({"pose": Fixed(torch.zeros(3, 8))}, _images(3), cfg)
    torch.testing.assert_close(R, CANONICAL_R.expand(3, 3, 3))
    torch.testing.assert_close(t, torch.zeros(3, 3))


def test_6d_rotation_and_pose_vector_agree_with_numpy():
    """Raw 6-D outputs v -> R = M(v + e) CANONICAL_R (M: Gram-Schmidt of the two columns,
    recomputed with numpy); the reported pose vector maps back to the same R."""
    torch.manual_seed(0)
    raw = torch.randn(6, 8, dtype=torch.float64)
    cfg = ReprojectConfig(pose_repr="6d")
    models = {"pose": Fixed(raw)}
    R, t = regress_rt(models, _images(6), cfg)
    a = (raw[:, :6] + torch.tensor([1.0, 0, 0, 0, 1, 0], dtype=torch.float64)).numpy()
    for i in range(6):
        b1 = a[i, :3] / np.linalg.norm(a[i, :3])
        u2 = a[i, 3:] - (b1 @ a[i, 3:]) * b1
        b2 = u2 / np.linalg.norm(u2)
        rel = np.stack([b1, b2, np.cross(b1, b2)], -1)
        assert abs(Rotation.from_matrix(rel).as_matrix() - rel).max() < 1e-9  # a proper rotation
        want = torch.tensor(rel) @ CANONICAL_R.double()
        torch.testing.assert_close(R[i].detach(), want, atol=1e-9, rtol=0)
    torch.testing.assert_close(t[:, :2].detach(), raw[:, 6:8])
    torch.testing.assert_close(t[:, 2].detach(), torch.zeros(6, dtype=torch.float64))
    p = regress_pose(models, _images(6), cfg)
    assert p.shape == (6, 5)
    torch.testing.assert_close(pose_to_rt(p)[0].detach(), R.detach(), atol=1e-7, rtol=0)


def test_twist_rt_matches_the_pose_vector():
    torch.manual_seed(1)
    cfg = ReprojectConfig()
    models = {"pose": Fixed(torch.randn(4, 5) * 3)}
    R, t = regress_rt(models, _images(4), cfg)
    p = regress_pose(models, _images(4), cfg)
    assert float(p[:, :3].detach().norm(dim=-1).max()) < math.pi
    R2, t2 = pose_to_rt(p)
    torch.testing.assert_close(R, R2)
    torch.testing.assert_close(t, t2)


@pytest.mark.parametrize("loss", ["l2", "geodesic"])
def test_rt_pose_loss_is_the_rotation_angle_term(loss):
    """Frobenius |R - R_gt|^2 = 4 (1 - cos angle); geodesic = angle^2 (angle from scipy)."""
    rng = Rotation.random(5, random_state=3)
    Rg = torch.tensor(rng.as_matrix(), dtype=torch.float64)
    delta = Rotation.random(5, random_state=4)
    R = torch.tensor((delta * rng).as_matrix(), dtype=torch.float64)
    ang = torch.tensor(delta.magnitude(), dtype=torch.float64)
    from poseshape.methods.reproject.frame import rt_to_pose

    gt = rt_to_pose(Rg, torch.zeros(5, 2, dtype=torch.float64))
    t = torch.zeros(5, 3, dtype=torch.float64)
    t[:, 0] = 0.1
    got = rt_pose_loss(R, t, gt, ReprojectConfig(pose_loss=loss))
    rot = 4 * (1 - torch.cos(ang)) if loss == "l2" else ang**2
    torch.testing.assert_close(got, rot.mean() + 0.01)
    with pytest.raises(PoseshapeError, match="pose_loss"):
        rt_pose_loss(R, t, gt, ReprojectConfig(pose_loss="l1"))


def test_6d_loss_has_finite_gradients_for_a_back_view():
    """A view from behind (|w| = pi, where the twist wraps) gives the 6-D head a finite, non-zero
    gradient pointing toward it."""
    cfg = ReprojectConfig(pose_repr="6d")
    models = {"pose": Fixed(torch.zeros(1, 8, dtype=torch.float64) + 0.01)}
    gt = torch.tensor([[0.0, math.pi, 0.0, 0.0, 0.0]], dtype=torch.float64)
    loss = rt_pose_loss(*regress_rt(models, _images(1), cfg), gt, cfg)
    loss.backward()
    g = models["pose"].raw.grad
    assert torch.isfinite(g).all() and float(g.abs().sum()) > 0
