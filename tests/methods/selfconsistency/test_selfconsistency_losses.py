"""Paper 001's losses against brute-force loops on tiny inputs, and float64 gradchecks:
the d_i = i/N ray samples (eqs. 1-4), L_proj (eq. 5), L_sc (eq. 6), the IoU loss (eq. 9)
and eq. 12."""

from __future__ import annotations

import math

import pytest
import torch

from poseshape.core.errors import ShapeError
from poseshape.geometry.camera import viewpoint_to_pose
from poseshape.losses.consistency import (
    SelfConsistencyLoss,
    paper_ray_samples,
    projection_iou_loss,
    ray_consistency_loss,
    self_consistency_loss,
)
from poseshape.methods.selfconsistency.frame import pose_to_rt
from poseshape.methods.selfconsistency.losses import total_loss, voxel_iou_loss

D64 = torch.float64


def _trilinear(vox: torch.Tensor, X: list[float]) -> float:
    """Occupancy of ``vox (D, H, W)`` over the unit cube at object point ``X = (x, y, z)``;
    voxel centres at ``(i + 0.5) / n - 0.5``, zero outside (grid_sample zero padding)."""
    D, H, W = vox.shape
    c = [(X[0] + 0.5) * W - 0.5, (X[1] + 0.5) * H - 0.5, (X[2] + 0.5) * D - 0.5]
    f = [math.floor(v) for v in c]
    out = 0.0
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                ix, iy, iz = f[0] + dx, f[1] + dy, f[2] + dz
                if 0 <= ix < W and 0 <= iy < H and 0 <= iz < D:
                    w = (1 - abs(c[0] - ix)) * (1 - abs(c[1] - iy)) * (1 - abs(c[2] - iz))
                    out += w * float(vox[iz, iy, ix])
    return out


def _brute_ray_loss(vox, R, t, K, mask, N, far):
    """Eqs. 1-4 with the paper's samples, one pixel and one sample at a time."""
    H, W = mask.shape
    Kinv = torch.linalg.inv(K)
    loss = torch.zeros(H, W, dtype=D64)
    proj = torch.zeros(H, W, dtype=D64)
    for r in range(H):
        for c in range(W):
            ray = Kinv @ torch.tensor([c + 0.5, r + 0.5, 1.0], dtype=D64)
            xs = []
            for i in range(1, N + 1):
                li = ray * (far * i / N)
                X = R.T @ (li - t)
                xs.append(_trilinear(vox, X.tolist()))
            q, pen = [], 1.0
            for x in xs:
                q.append(x * pen)
                pen *= 1 - x
            m = float(mask[r, c])
            loss[r, c] = m * pen + (1 - m) * sum(q)
            proj[r, c] = 1 - pen
    return loss, proj


@pytest.fixture
def tiny():
    g = torch.Generator().manual_seed(0)
    vox = torch.rand(1, 1, 4, 4, 4, generator=g, dtype=D64)
    R, t = viewpoint_to_pose(torch.tensor([0.7], dtype=D64), torch.tensor([0.4], dtype=D64), 0.0, 1.6)
    K = torch.tensor([[[7.0, 0.0, 3.0], [0.0, 6.5, 2.5], [0.0, 0.0, 1.0]]], dtype=D64)
    mask = (torch.rand(1, 1, 5, 6, generator=g) > 0.5).to(D64)
    return vox, R, t, K, mask


def test_paper_ray_loss_matches_brute_force(tiny):
    vox, R, t, K, mask = tiny
    N = 7
    far = 2.0 * float(t.norm())
    ref, ref_proj = _brute_ray_loss(vox[0, 0], R[0], t[0], K[0], mask[0, 0], N, far)
    got = ray_consistency_loss(vox, R, t, K, mask, n_samples=N, reduction="none")
    assert torch.allclose(got[0, 0], ref, atol=1e-10)
    assert torch.allclose(ray_consistency_loss(vox, R, t, K, mask, n_samples=N), ref.mean(), atol=1e-10)
    # L_sc = (10 L_ray + 0.25 L_proj) / 2 with L_proj = exp(1 - IoU) - 1 of P = 1 - q_pen
    iou = (ref_proj * mask[0, 0]).sum() / (ref_proj + mask[0, 0] - ref_proj * mask[0, 0]).sum()
    sc = 0.5 * (10 * ref.mean() + 0.25 * (torch.exp(1 - iou) - 1))
    assert torch.allclose(self_consistency_loss(vox, R, t, K, mask, n_samples=N), sc, atol=1e-6)
    assert torch.allclose(SelfConsistencyLoss(n_samples=N)(vox, R, t, K, mask), sc, atol=1e-6)
    # an explicit depth unit is used as given
    ref2, _ = _brute_ray_loss(vox[0, 0], R[0], t[0], K[0], mask[0, 0], N, 2.5)
    got2 = ray_consistency_loss(vox, R, t, K, mask, n_samples=N, reduction="none", depth_far=2.5)
    assert torch.allclose(got2[0, 0], ref2, atol=1e-10)


def test_paper_samples_are_depths_i_over_n():
    """A voxel grid that is 1 only in one depth slab is hit at the sample whose depth is inside."""
    occ = paper_ray_samples(
        torch.ones(1, 1, 2, 2, 2, dtype=D64),
        torch.eye(3, dtype=D64)[None],
        torch.tensor([[0.0, 0.0, 2.0]], dtype=D64),
        torch.tensor([[[4.0, 0, 1.0], [0, 4.0, 1.0], [0, 0, 1.0]]], dtype=D64),
        (2, 2),
        n_samples=8,
    )
    # depths 0.5, 1.0, ..., 4.0; the cube spans z in [1.5, 2.5] -> samples 3 (2.0) and 4 (2.5, border)
    centre = occ[0, 0]
    assert centre.shape == (8,)
    assert float(centre[3]) == pytest.approx(1.0) and float(centre[:2].abs().max()) == 0.0
    assert float(centre[5:].abs().max()) == 0.0


def test_paper_and_sphere_agree_on_a_binary_silhouette(tiny):
    _, R, t, K, mask = tiny
    vox = torch.zeros(1, 1, 8, 8, 8, dtype=D64)
    vox[..., 2:6, 2:6, 2:6] = 1.0
    a = self_consistency_loss(vox, R, t, K, mask, n_samples=64)
    b = self_consistency_loss(vox, R, t, K, mask, n_samples=64, sampling="sphere")
    assert abs(float(a) - float(b)) < 0.15 * max(float(a), float(b))
    with pytest.raises(ShapeError, match="sampling"):
        ray_consistency_loss(vox, R, t, K, mask, sampling="chord")


def test_paper_ray_loss_gradcheck_voxels_and_pose(tiny):
    vox, _, _, K, mask = tiny
    pose = torch.tensor([[0.7, 0.4]], dtype=D64, requires_grad=True)
    v = vox.clone().requires_grad_(True)

    def f(v, pose):
        R, t = pose_to_rt(pose, 1.6)
        return self_consistency_loss(v, R, t, K, mask, n_samples=5)

    assert torch.autograd.gradcheck(f, (v, pose), eps=1e-6, atol=1e-5)


def test_voxel_iou_loss_matches_loop_and_gradcheck():
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 1, 3, 3, 3, generator=g, dtype=D64)
    yh = (torch.rand(2, 1, 3, 3, 3, generator=g) > 0.5).to(D64)
    for literal in (False, True):
        vals = []
        for b in range(2):
            i = u = 0.0
            for a, c in zip(y[b].flatten().tolist(), yh[b].flatten().tolist()):
                i += a * c
                u += a + c + (a * c if literal else -a * c)
            vals.append(math.exp(1 - i / (u + 1e-6)) - 1)
        assert float(voxel_iou_loss(y, yh, literal=literal)) == pytest.approx(sum(vals) / 2, abs=1e-12)
    assert float(voxel_iou_loss(yh, yh)) == pytest.approx(0.0, abs=1e-5)
    assert torch.autograd.gradcheck(lambda p: voxel_iou_loss(p, yh), (y.clone().requires_grad_(True),))
    with pytest.raises(ShapeError):
        voxel_iou_loss(y, yh[:1])


def test_projection_loss_is_eq5_and_total_is_eq12():
    p = torch.tensor([[[[0.2, 0.9], [0.5, 0.0]]]], dtype=D64)
    m = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]], dtype=D64)
    i = 0.9 + 0.5
    u = (0.2 + 0.9 + 0.5) + 2 - i
    assert float(projection_iou_loss(p, m)) == pytest.approx(math.exp(1 - i / (u + 1e-6)) - 1, abs=1e-9)
    t = [torch.tensor(v, dtype=D64) for v in (0.3, 0.5, 0.7, 0.2, 11.0)]
    assert float(total_loss(*t, lambda_kl=0.02)) == pytest.approx((0.3 + 0.5 + 0.7) / 2 + 0.2 + 0.02 * 11)
