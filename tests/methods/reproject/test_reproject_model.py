"""reproject's networks (paper 000, Appendix I.a) and their ability to learn small sets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from poseshape.core.errors import ShapeError
from poseshape.methods.reproject.config import ReprojectConfig
from poseshape.methods.reproject.model import (
    Discriminator3D,
    ImageRegressor,
    ShapeDecoder3D,
    ShapeEncoder3D,
)


def _layers(m: nn.Module, kind) -> list[tuple]:
    return [(x.kernel_size[0], x.stride[0], x.out_channels) for x in m.modules() if isinstance(x, kind)]


def test_paper_architecture_and_shapes():
    enc, dec = ShapeEncoder3D(), ShapeDecoder3D()
    # conv3D(4, 2, 32), conv3D(4, 2, 64), conv3D(4, 2, 64)
    assert _layers(enc, nn.Conv3d) == [(4, 2, 32), (4, 2, 64), (4, 2, 64)]
    assert enc.fc_mu.out_features == 200 and enc.fc_logvar.out_features == 200
    # fc(8192) -> 4x4x4x128, deconv3D(4, 64, 2), deconv3D(4, 32, 2), deconv3D(4, 1, 2)
    assert dec.fc.out_features == 8192
    assert _layers(dec, nn.ConvTranspose3d) == [(4, 2, 64), (4, 2, 32), (4, 2, 1)]
    reg = ImageRegressor(5)
    assert _layers(reg, nn.Conv2d) == [(11, 4, 64), (5, 2, 128), (5, 2, 256), (5, 2, 512), (3, 1, 200)]
    # batch norm after every conv but the first (regressor) / first and last (VAE)
    assert sum(isinstance(x, nn.BatchNorm2d) for x in reg.modules()) == 4
    assert sum(isinstance(x, nn.BatchNorm3d) for x in enc.modules()) == 2
    assert sum(isinstance(x, nn.BatchNorm3d) for x in dec.modules()) == 3  # fc feature + 2 deconvs
    x = torch.rand(2, 1, 30, 30, 30)
    mu, logvar = enc(x)
    assert mu.shape == logvar.shape == (2, 200)
    out = dec(mu)
    assert out.shape == (2, 1, 30, 30, 30) and 0 <= out.min() and out.max() <= 1
    assert reg(torch.rand(2, 3, 227, 227)).shape == (2, 5)
    assert ImageRegressor(200, image_size=64, width=0.5)(torch.rand(2, 3, 64, 64)).shape == (2, 200)
    logit, feat = Discriminator3D()(x)
    assert logit.shape == (2, 1) and feat.shape == (2, 64, 3, 3, 3)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ShapeError, match=r"voxels: expected shape \(B, 1, 30, 30, 30\)"):
        ShapeEncoder3D()(torch.rand(2, 1, 32, 32, 32))
    with pytest.raises(ShapeError, match="code"):
        ShapeDecoder3D()(torch.rand(2, 100))
    with pytest.raises(ShapeError, match=r"images: expected shape \(B, 3, 64, 64\)"):
        ImageRegressor(5, image_size=64)(torch.rand(2, 3, 60, 64))
    with pytest.raises(ShapeError, match="res must be even"):
        ShapeDecoder3D(res=31)


def _procedural_voxels(n: int, res: int = 30) -> torch.Tensor:
    from poseshape.shapes import procedural
    from poseshape.shapes.voxels import voxelize

    cats = ["car", "chair", "aeroplane", "table"]
    return torch.stack([voxelize(procedural.generate(cats[i % 4], seed=i)[0], res) for i in range(n)])[:, None].float()


@pytest.mark.slow
def test_vae_overfits_16_shapes():
    """The VAE reconstructs 16 training shapes with IoU > 0.9 (issue 5)."""
    from poseshape.losses import kl_divergence, voxel_l2
    from poseshape.methods.reproject.train import reparameterize
    from poseshape.metrics import voxel_iou

    torch.manual_seed(0)
    vox = _procedural_voxels(16)
    enc, dec = ShapeEncoder3D(latent=32, width=0.5), ShapeDecoder3D(latent=32, width=0.5)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
    for _ in range(200):
        mu, logvar = enc(vox)
        loss = voxel_l2(dec(reparameterize(mu, logvar, True)), vox) + 1e-3 * kl_divergence(mu, logvar)
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()
    dec.eval()
    with torch.no_grad():
        iou = voxel_iou(dec(enc(vox)[0]), vox)
    assert iou.min() > 0.8 and iou.mean() > 0.9, iou


@pytest.mark.slow
@pytest.mark.parametrize("pose_repr", ["twist", "6d"])
def test_pose_regressor_overfits_16_images(tmp_path, pose_repr):
    """The pose regressor fits 16 rendered images to a rotation error below 10 degrees (issue 5),
    with the paper's twist output and with our 6-D one."""
    from poseshape.methods.reproject.data import RenderedSamples, render_reproject_data
    from poseshape.methods.reproject.frame import pose_to_rt
    from poseshape.methods.reproject.train import pose_outputs, pose_regression_loss, regress_rt
    from poseshape.metrics import rotation_error

    paths = render_reproject_data(
        "procedural",
        tmp_path,
        categories=("car", "chair"),
        image_size=48,
        views=4,
        models_per_category=10,
        seed=0,
        progress=False,
    )
    cfg = ReprojectConfig(image_size=48, width=0.5, pose_repr=pose_repr)
    ds = RenderedSamples(paths["train"], cfg)
    b = torch.utils.data.default_collate([ds[i] for i in range(16)])
    torch.manual_seed(0)
    models = {"pose": ImageRegressor(pose_outputs(cfg), image_size=48, width=0.5)}
    opt = torch.optim.Adam(models["pose"].parameters(), lr=cfg.lr)
    for _ in range(300):
        loss = pose_regression_loss(models, b["image"], b["pose"], cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    models["pose"].eval()
    with torch.no_grad():
        R_pred = regress_rt(models, b["image"], cfg)[0]
    err = rotation_error(R_pred, pose_to_rt(b["pose"])[0])
    assert err.max() < 10.0, err
