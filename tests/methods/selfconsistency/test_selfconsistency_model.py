"""Networks of paper 001: shapes, the voxel-tube depth layout, float64 gradchecks of the new
differentiable parts (pose head, pose -> R, eq. 7), bad input, and a 16-sample overfit of
the whole eq. 12 objective."""

from __future__ import annotations

import math

import pytest
import torch

from poseshape.core.errors import ShapeError
from poseshape.geometry.camera import intrinsics_from_fov, viewpoint_to_pose
from poseshape.methods.selfconsistency.config import SelfConsistencyConfig
from poseshape.methods.selfconsistency.frame import pose_to_rt, posed_grid
from poseshape.methods.selfconsistency.model import ImageEncoder, MaskDecoder, PoseHead, VoxelTubeDecoder
from poseshape.methods.selfconsistency.train import build, forward, losses
from poseshape.metrics import mask_iou, voxel_iou
from poseshape.render.voxel import project_voxels
from poseshape.shapes.voxels import warp_voxels

D64 = torch.float64


def test_shapes_of_the_paper_networks():
    cfg = SelfConsistencyConfig(width=0.25)
    models = build(cfg)
    out = forward(models, torch.rand(2, 3, 64, 64), sample=True)
    assert out["mu"].shape == out["logvar"].shape == (2, 512)
    assert out["z_p"].shape == (2, 16) and out["pose"].shape == (2, 2)
    assert out["voxels"].shape == (2, 1, 32, 32, 32) and out["mask"].shape == (2, 1, 48, 48)
    assert float(out["voxels"].min()) > 0 and float(out["voxels"].max()) < 1
    assert float(out["pose"][:, 1].abs().max()) <= math.pi / 2
    R, _ = pose_to_rt(out["pose"], cfg.distance)
    assert posed_grid(out["voxels"], R).shape == (2, 1, 48, 48, 48)
    with pytest.raises(ShapeError, match="64, 64"):
        models["encoder"](torch.rand(1, 3, 32, 32))
    with pytest.raises(ShapeError, match="skips"):
        models["mask_decoder"](out["mu"], out["z_p"], None)
    with pytest.raises(ShapeError):
        ImageEncoder(image_size=60)
    with pytest.raises(ShapeError):
        VoxelTubeDecoder(res=30)
    no_skip = MaskDecoder(use_skips=False, width=0.25)
    assert no_skip(out["mu"], out["z_p"]).shape == (2, 1, 48, 48)


def test_voxel_tube_channels_are_depth_slices():
    dec = VoxelTubeDecoder(shape_code=8, res=8, width=0.125).eval()
    with torch.no_grad():
        dec.out.weight.zero_()
        dec.out.bias.fill_(-20.0)
        dec.out.bias[3] = 20.0  # channel 3 -> depth slice d = 3 occupied
        v = dec(torch.randn(1, 8))
    assert v.shape == (1, 1, 8, 8, 8)
    assert float(v[0, 0, 3].min()) > 0.99 and float(v[0, 0, torch.arange(8) != 3].max()) < 1e-6


def test_pose_head_is_atan2_and_tanh_and_gradchecks():
    head = PoseHead(4, elevation_max=1.0).double()
    z = torch.randn(3, 4, dtype=D64)
    o = head.fc(z)
    p = head(z)
    assert torch.allclose(p[:, 0], torch.atan2(o[:, 1], o[:, 0]))
    assert torch.allclose(p[:, 1], torch.tanh(o[:, 2]))
    assert torch.autograd.gradcheck(head, (z.requires_grad_(True),))


def test_pose_to_rt_and_eq7_gradcheck():
    pose = torch.tensor([[0.3, 0.5], [-2.0, -0.2]], dtype=D64)
    R, t = pose_to_rt(pose, 2.732)
    R2, t2 = viewpoint_to_pose(pose[:, 0], pose[:, 1], torch.zeros(2, dtype=D64), torch.full((2,), 2.732, dtype=D64))
    assert torch.allclose(R, R2) and torch.allclose(t, t2)
    g = torch.Generator().manual_seed(0)
    vox = torch.rand(1, 1, 3, 3, 3, generator=g, dtype=D64).requires_grad_(True)

    def f(v, p):
        return posed_grid(v, pose_to_rt(p, 2.732)[0], out_size=4)

    assert torch.autograd.gradcheck(f, (vox, pose[:1].clone().requires_grad_(True)))
    # eq. 7: posed voxel l' holds y(R^T l'), the grid keeping the 32^3 pitch (side 1.5)
    v = torch.rand(1, 1, 4, 4, 4, generator=g, dtype=D64)
    ref = warp_voxels(v, 1.5 * R[:1], torch.zeros(1, 3, dtype=D64), out_size=(6, 6, 6))
    assert torch.allclose(posed_grid(v, R[:1], 6), ref)
    with pytest.raises(ShapeError):
        pose_to_rt(torch.zeros(2, 3), 2.0)


def test_overfit_16_samples():
    torch.manual_seed(0)
    cfg = SelfConsistencyConfig(width=0.25, n_samples=32)
    g = torch.Generator().manual_seed(0)
    n = 16
    vox = torch.zeros(n, 1, 32, 32, 32)
    for i in range(n):
        a, b, c = (int(v) for v in torch.randint(3, 14, (3,), generator=g))
        vox[i, 0, 16 - a : 16 + a, 16 - b : 16 + b, 16 - c : 16 + c] = 1.0
    pose = torch.stack([torch.rand(n, generator=g) * 2 * math.pi - math.pi, torch.full((n,), math.radians(30))], -1)
    R, t = pose_to_rt(pose, cfg.distance)
    K = intrinsics_from_fov(math.radians(cfg.fov_deg), 48).float().expand(n, 3, 3)
    mask = (project_voxels(vox, R, t, K, image_size=48) > 0.5).float()
    images = torch.nn.functional.interpolate(mask, size=(64, 64), mode="bilinear").expand(n, 3, 64, 64)
    images = (images * vox.flatten(1).mean(1).view(n, 1, 1, 1) * 4).clamp(0, 1).contiguous()
    batch = {"image": images, "mask": mask, "voxels": vox, "K": K}
    models = build(cfg)
    params = [p for m in models.values() for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    first = None
    for _ in range(150):
        parts = losses(forward(models, images, sample=True), batch, cfg)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        first = first if first is not None else float(parts["loss"])
    # memorisation is judged with the batch statistics the networks were fit with (train-mode batch
    # norm, no sampling noise); eval-mode running averages after 150 steps are not yet settled
    with torch.no_grad():
        out = forward(models, images)
        final = losses(out, batch, cfg)
    assert float(final["loss"]) < 0.5 * first
    assert float(voxel_iou(out["voxels"], vox).mean()) > 0.6
    assert float(mask_iou(out["mask"], mask).mean()) > 0.8
