"""The reproject posed frame: pose vectors, pinhole -> weak perspective, style scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation

from poseshape.core.errors import ShapeError
from poseshape.methods.reproject.config import default_frame_extent
from poseshape.methods.reproject.frame import (
    CANONICAL_R,
    aligned_target,
    pinhole_to_posed,
    pose_to_rt,
    posed_silhouette,
    rt_to_pose,
    scale_voxels,
)
from poseshape.metrics import mask_iou


def test_pose_round_trip_against_scipy():
    rng = np.random.default_rng(0)
    rv = rng.normal(size=(32, 3))
    rv *= (rng.uniform(0, np.pi - 1e-3, 32) / np.linalg.norm(rv, axis=1))[:, None]
    txy = rng.normal(size=(32, 2)) * 0.1
    p = torch.tensor(np.concatenate([rv, txy], 1))
    R, t = pose_to_rt(p)
    ref = Rotation.from_rotvec(rv).as_matrix() @ CANONICAL_R.double().numpy()
    np.testing.assert_allclose(R.numpy(), ref, atol=1e-10)
    assert torch.all(t[:, 2] == 0)
    torch.testing.assert_close(rt_to_pose(R, t), p, atol=1e-8, rtol=0)


def test_canonical_view_is_identity_twist():
    from poseshape.geometry.camera import viewpoint_to_pose

    R, t = viewpoint_to_pose(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([3.0]))
    p = rt_to_pose(R, t)
    assert p[0, :3].norm() < 1e-6  # frontal upright camera = zero twist


def test_pinhole_to_posed_hand_example():
    # object 3 units in front, fx = 100 px, S = 64, principal point at the centre + 8 px shift
    S, E = 64, 2.0
    R = torch.eye(3)[None] @ CANONICAL_R[None]
    t = torch.tensor([[0.3, -0.15, 3.0]])
    K = torch.tensor([[[100.0, 0, 32 + 8], [0, 100.0, 32], [0, 0, 1]]])
    p, sigma = pinhole_to_posed(R, t, K, S, E)
    s = 100.0 / 3.0  # px per unit
    assert sigma.item() == pytest.approx(s * E / S)
    assert p[0, 3].item() == pytest.approx((s * 0.3 + 8) * E / S)
    assert p[0, 4].item() == pytest.approx(s * -0.15 * E / S)
    with pytest.raises(ShapeError, match="in front"):
        pinhole_to_posed(R, -t, K, S, E)


def test_scale_voxels_box():
    v = torch.zeros(1, 1, 30, 30, 30)
    v[..., 10:20, 10:20, 10:20] = 1  # a cube of side 1/3
    big = (scale_voxels(v, torch.tensor([1.5])) > 0.5).float()
    assert big.sum().item() == pytest.approx(15**3, rel=0.05)


def test_posed_silhouette_matches_rendered_mask():
    """GT voxels posed by the pinhole->weak-perspective pose reproject onto the rendered mask."""
    from poseshape.data.synth import load_models, render_views
    from poseshape.methods.reproject.data import reproject_synth_config

    cfg = reproject_synth_config(image_size=64, views=6, voxel_res=30)
    models, _ = load_models("procedural", categories=["car"], models_per_category=2)
    out = render_views(models[0], 0, list(range(6)), cfg, category_index=0)
    R, t, K = (torch.as_tensor(out[k]).double() for k in ("R", "t", "K"))
    E = default_frame_extent()
    pose, sigma = pinhole_to_posed(R, t, K, 64, E)
    assert torch.all((sigma > 0.7) & (sigma <= 1.0 + 1e-6))
    from poseshape.data.synth import unpack_voxels

    vox = torch.as_tensor(np.stack([unpack_voxels(v, 30) for v in out["voxels"]])).float()[:, None]
    sil = posed_silhouette(aligned_target(vox, sigma.float()), pose.float(), E)
    masks = torch.as_tensor(out["masks"]).float()[:, None]
    iou = mask_iou(sil, F.interpolate(masks, size=30, mode="area"))
    assert iou.mean() > 0.7, iou
    # a wrong pose (mirrored x translation and rotated) does much worse
    bad = pose.clone().float()
    bad[:, :3] += torch.tensor([0.0, 1.0, 0.0])
    iou_bad = mask_iou(
        posed_silhouette(aligned_target(vox, sigma.float()), bad, E), F.interpolate(masks, size=30, mode="area")
    )
    assert iou_bad.mean() < iou.mean() - 0.1
