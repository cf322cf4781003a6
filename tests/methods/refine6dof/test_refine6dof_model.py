"""The encoder of paper 003 (Fig. 2), its pose head (ZYX Euler, signs) and the medoid bank."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from poseshape.core.errors import ShapeError
from poseshape.methods.refine6dof.model import MedoidBank, PoseEncoder, decode_pose
from poseshape.methods.refine6dof.train import pose_mse
from poseshape.metrics import rotation_error
from poseshape.shapes.meshes import icosphere


def _is_rotation(R: torch.Tensor, tol: float = 1e-5) -> bool:
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    return bool(
        torch.allclose(R @ R.transpose(-1, -2), eye, atol=tol)
        and torch.allclose(torch.det(R), torch.ones(R.shape[0], dtype=R.dtype), atol=tol)
    )


@pytest.mark.parametrize("repr_", ["cossin", "cos"])
def test_pose_head_always_gives_a_rotation(repr_):
    g = torch.Generator().manual_seed(1)
    d = 9 if repr_ == "cossin" else 6
    raw = torch.cat([torch.randn(200, d, generator=g) * s for s in (1e-4, 1.0, 1e3)] + [torch.zeros(1, d)], 0).double()
    R, t, _ = decode_pose(raw, repr_)
    assert R.shape == (601, 3, 3) and t.shape == (601, 3)
    assert torch.isfinite(R).all() and _is_rotation(R)
    assert torch.equal(t, raw[:, -3:])


def test_cossin_recovers_signed_zyx_angles_like_scipy():
    g = np.random.default_rng(0)
    ang = g.uniform(-math.pi, math.pi, size=(500, 3))
    ang[:, 1] = g.uniform(-math.pi / 2, math.pi / 2, size=500)  # scipy's canonical middle range
    a = torch.from_numpy(ang)
    scale = torch.from_numpy(g.uniform(0.2, 5.0, size=(500, 3, 1)))  # the pair's norm does not matter
    pairs = torch.stack([torch.cos(a), torch.sin(a)], -1) * scale
    raw = torch.cat([pairs.reshape(500, 6), torch.zeros(500, 3, dtype=torch.float64)], 1)
    R, _, got = decode_pose(raw, "cossin")
    want = torch.from_numpy(Rotation.from_euler("ZYX", ang).as_matrix())
    assert torch.allclose(R, want, atol=1e-10)
    assert torch.allclose(got, a, atol=1e-10)
    # intrinsic ZYX: R = Rz(a) Ry(b) Rx(c), i.e. the x rotation is applied to the object first
    Rz = Rotation.from_euler("z", ang[0, 0]).as_matrix()
    Ry = Rotation.from_euler("y", ang[0, 1]).as_matrix()
    Rx = Rotation.from_euler("x", ang[0, 2]).as_matrix()
    assert np.allclose(R[0].numpy(), Rz @ Ry @ Rx, atol=1e-12)


def test_cosines_alone_lose_the_sign():
    """The paper's literal head maps +a and -a to the same rotation; ours tells them apart."""
    a = torch.tensor([[0.7, -0.4, -2.0]], dtype=torch.float64)
    flipped = -a
    cos_raw = lambda x: torch.cat([torch.atanh(torch.cos(x) / (1 - 1e-6)), torch.zeros(1, 3, dtype=x.dtype)], 1)
    R1, _, _ = decode_pose(cos_raw(a), "cos")
    R2, _, _ = decode_pose(cos_raw(flipped), "cos")
    assert torch.allclose(R1, R2, atol=1e-6)  # same output for different truths
    truth = torch.from_numpy(Rotation.from_euler("ZYX", a[0].numpy()).as_matrix())[None]
    assert float(rotation_error(R1, truth)) > 30.0
    pair = lambda x: torch.cat(
        [torch.stack([torch.cos(x), torch.sin(x)], -1).reshape(1, 6), torch.zeros(1, 3, dtype=x.dtype)], 1
    )
    Rp, _, _ = decode_pose(pair(a), "cossin")
    Rm, _, _ = decode_pose(pair(flipped), "cossin")
    assert float(rotation_error(Rp, truth)) < 1e-4
    assert float(rotation_error(Rm, Rp)) > 30.0


def test_pose_head_is_differentiable_everywhere_on_the_circle():
    a = torch.tensor([[math.pi - 1e-3, 0.0, -math.pi + 1e-3]], dtype=torch.float64)
    raw = torch.cat([torch.stack([torch.cos(a), torch.sin(a)], -1).reshape(1, 6), torch.ones(1, 3, dtype=a.dtype)], 1)
    raw.requires_grad_(True)
    R, _, _ = decode_pose(raw, "cossin")
    R.sum().backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0


def test_encoder_architecture_and_shapes():
    enc = PoseEncoder(num_classes=3, image_size=128, in_channels=3, width=0.25, fc_hidden=64)
    convs = [m for m in enc.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5)] * 3 + [(3, 3)] * 2
    assert all(c.stride == (2, 2) for c in convs)
    acts = [m for m in enc.features if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 5 and all(a.negative_slope == 0.2 for a in acts)
    for branch in (enc.classifier, enc.pose):
        drops = [m for m in branch if isinstance(m, torch.nn.Dropout)]
        assert len(drops) == 2 and all(d.p == 0.5 for d in drops)
        assert isinstance(branch[-1], torch.nn.Linear)  # the last layer has no activation
    assert enc.feature_dim == convs[-1].out_channels * 4 * 4  # 128 / 2^5 = 4
    out = enc.eval()(torch.rand(2, 3, 128, 128))
    assert out["logits"].shape == (2, 3) and out["P"].shape == (2, 3, 4)
    assert torch.equal(out["P"][:, :, :3], out["R"]) and torch.equal(out["P"][:, :, 3], out["t"])
    assert _is_rotation(out["R"].double(), 1e-4)
    with pytest.raises(ShapeError, match=r"\(B, 3, 128, 128\)"):
        enc(torch.rand(2, 3, 64, 64))
    with pytest.raises(ShapeError, match="expected shape"):
        decode_pose(torch.zeros(2, 6), "cossin")
    with pytest.raises(ShapeError, match="pose_repr"):
        decode_pose(torch.zeros(2, 9), "quat")


def test_pose_mse_is_eq2():
    P = torch.randn(4, 3, 4)
    Q = torch.randn(4, 3, 4)
    assert torch.allclose(pose_mse(P, Q), ((P - Q) ** 2).sum((1, 2)).mean())


def test_encoder_overfits_16_images(trained):
    """Class accuracy 1 and a low rotation error after fitting 16 renders (2 clusters)."""
    models, batch = trained
    enc = models["encoder"]
    with torch.no_grad():
        out = enc(batch["input"])
    assert float((out["logits"].argmax(1) == batch["label"]).float().mean()) == 1.0
    err = rotation_error(out["R"].double(), batch["R"].double())
    assert float(err.median()) < 15.0, err
    t0 = (batch["t"] - batch["t"].mean(0)).norm(dim=-1).median()  # error of predicting the mean
    assert float((out["t"] - batch["t"]).norm(dim=-1).median()) < 0.7 * float(t0)


def test_medoid_bank_roundtrip_weights_only():
    m1, m2 = icosphere(1), icosphere(2)
    vox = torch.zeros(2, 8, 8, 8)
    vox[0, 2:6, 2:6, 2:6] = 1
    bank = MedoidBank()
    assert bank.empty
    with pytest.raises(ShapeError, match="clusters"):
        bank.mesh(0)
    bank.set(**MedoidBank.pack([m1, m2], vox, ["car/a", "car/bé"], [3, 4]))
    buf = io.BytesIO()
    torch.save(bank.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    fresh = MedoidBank()
    fresh.load_state_dict(sd)
    assert len(fresh) == 2 and fresh.name(1) == "car/bé" and fresh.sizes.tolist() == [3, 4]
    assert torch.equal(fresh.mesh(1).verts, m2.verts.float()) and torch.equal(fresh.mesh(0).faces, m1.faces)
    assert torch.equal(fresh.voxel_grid(0), vox[0])
    with pytest.raises(IndexError):
        fresh.mesh(2)


def test_posed_from_pinhole_samples_the_aligned_shape_at_the_weak_perspective_preimage():
    """Reference: each posed voxel centre p, mapped back by X = R^T (p - c) / sigma, sampled with an
    explicit grid_sample (independent of shapes.warp_voxels's affine_grid path)."""
    import torch.nn.functional as F
    from scipy.spatial.transform import Rotation

    from poseshape.geometry.camera import intrinsics_from_fov
    from poseshape.methods.refine6dof.predictor import posed_from_pinhole

    g = torch.Generator().manual_seed(0)
    aligned = torch.rand(2, 1, 6, 6, 6, generator=g, dtype=torch.float64)
    R = torch.tensor(Rotation.from_rotvec([[0.3, 0.5, -0.2], [-1.0, 0.1, 0.4]]).as_matrix())
    t = torch.tensor([[0.1, -0.05, 2.5], [-0.2, 0.1, 3.2]], dtype=torch.float64)
    K = intrinsics_from_fov(torch.tensor(0.8, dtype=torch.float64), 32).expand(2, 3, 3)
    E, P = 1.3, 8
    posed, c, sigma = posed_from_pinhole(aligned, R, t, K, 32, E, 1.0, out_size=P)
    ax = ((torch.arange(P, dtype=torch.float64) + 0.5) / P - 0.5) * E
    gz, gy, gx = torch.meshgrid(ax, ax, ax, indexing="ij")
    p = torch.stack([gx, gy, gz], -1).reshape(1, -1, 3)
    X = ((p - c[:, None]) / sigma[:, None, None]) @ R  # rows: R^T (p - c) / sigma
    want = F.grid_sample(aligned, (2 * X).reshape(2, P, P, P, 3), align_corners=False)
    torch.testing.assert_close(posed, want)
    torch.testing.assert_close(sigma, 1.0 / t[:, 2])
