"""The training stages of ``reproject`` (paper 000, §3.3 and Appendices I.b, II).

p-TL (``generator="vae"``), modules ``encoder``, ``decoder`` (the voxel VAE), ``style`` and
``pose`` (the image regressors):

1. ``vae``: the VAE on aligned (scale-augmented) voxels: reconstruction (L2, or BCE) + KL.
2. ``regress``: the style regressor to the VAE embedding ``mu`` of the true shape, and the
   pose regressor to the true pose, both with Euclidean losses (Adam 3e-4, batch 100).
3. ``finetune``: the generator is frozen; every batch pairs rendered and silhouette-only
   images 1:1; loss = reprojection BCE (eq. 4) of the silhouette-only images + the style and
   pose losses of the rendered ones, weights 1 and 1.

p-3D-VAE-GAN (``generator="vaegan"``), modules ``style`` (the image encoder of the
3D-VAE-GAN, outputs ``mu`` and ``logvar``), ``decoder``, ``discriminator`` and ``pose``:

1. ``vaegan``: image -> shape VAE-GAN, reconstruction measured as the L2 between the
   discriminator's last conv features (instead of voxels), + KL + adversarial terms, RMSProp
   2e-5. The discriminator and generator are updated together from one backward pass: the
   generator's adversarial and feature terms go through the discriminator with its parameters
   detached (``torch.func.functional_call``), and the discriminator's loss sees the fake shape
   detached, so each network receives only its own gradient (simultaneous instead of
   alternating updates; see the issue notes).
2. ``regress``: the pose regressor (as in p-TL).
3. ``finetune``: style encoder and pose regressor; the rendered part of the loss is the
   VAE-GAN loss (feature L2 + KL) plus the pose loss.

``config.shape_frame = "posed"`` trains stage 1 on pose-aware instead of aligned shapes: the
coupled baselines of Table 2 (the VAE V2V and the 3D-VAE-GAN im2V on pose-aware shapes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.engine.checkpoint import unwrap_module
from poseshape.engine.registry import Stage, StageContext
from poseshape.geometry.rotations import bounded_axis_angle, geodesic_distance, rotation_6d_to_matrix
from poseshape.losses import (
    feature_matching_l2,
    gan_d_loss,
    gan_g_loss,
    kl_divergence,
    reprojection_bce,
    voxel_l2,
    weighted_voxel_bce,
)
from poseshape.methods.reproject.config import ReprojectConfig
from poseshape.methods.reproject.data import MixedSamples, RenderedSamples, SilhouetteSamples
from poseshape.methods.reproject.frame import CANONICAL_R, pose_to_rt, posed_voxels, rt_to_pose
from poseshape.methods.reproject.model import (
    Discriminator3D,
    ImageRegressor,
    ShapeDecoder3D,
    ShapeEncoder3D,
)
from poseshape.metrics import average_precision, rotation_error, voxel_iou
from poseshape.render.shading import composite
from poseshape.render.voxel import max_projection, pose_voxels

__all__ = [
    "IMAGE_INPUTS",
    "POSE_REPRS",
    "build",
    "model_images",
    "pose_outputs",
    "pose_regression_loss",
    "reparameterize",
    "regress_pose",
    "regress_rt",
    "stages",
    "style_code",
]

#: Rotation outputs of the pose regressor (:attr:`ReprojectConfig.pose_repr`).
POSE_REPRS = ("twist", "6d")
#: What the image networks see (:attr:`ReprojectConfig.image_input`).
IMAGE_INPUTS = ("rgb", "masked")
#: Grey level of the background a ``"masked"`` model's images are composited on.
MASKED_BACKGROUND = 0.5


# --------------------------------------------------------------------------- model pieces
def build(cfg: ReprojectConfig) -> dict[str, nn.Module]:
    """Create the networks of the configured variant (Appendix I.a)."""
    if cfg.generator not in ("vae", "vaegan"):
        raise PoseshapeError(f"reproject: generator must be 'vae' or 'vaegan', got {cfg.generator!r}")
    if cfg.shape_frame not in ("aligned", "posed"):
        raise PoseshapeError(f"reproject: shape_frame must be 'aligned' or 'posed', got {cfg.shape_frame!r}")
    if cfg.image_input not in IMAGE_INPUTS:
        raise PoseshapeError(f"reproject: image_input must be one of {IMAGE_INPUTS}, got {cfg.image_input!r}")
    models: dict[str, nn.Module] = {
        "decoder": ShapeDecoder3D(latent=cfg.latent, res=cfg.voxel_res, width=cfg.width),
        "pose": ImageRegressor(pose_outputs(cfg), image_size=cfg.image_size, width=cfg.width),
    }
    if cfg.generator == "vae":
        models["encoder"] = ShapeEncoder3D(latent=cfg.latent, res=cfg.voxel_res, width=cfg.width)
        models["style"] = ImageRegressor(cfg.latent, image_size=cfg.image_size, width=cfg.width)
    else:
        models["style"] = ImageRegressor(2 * cfg.latent, image_size=cfg.image_size, width=cfg.width)
        models["discriminator"] = Discriminator3D(res=cfg.voxel_res, width=cfg.width)
    return models


def model_images(images: torch.Tensor, masks: torch.Tensor | None, cfg: ReprojectConfig) -> torch.Tensor:
    """What the image networks see: ``images (B, 3, S, S)`` in [0, 1], composited on grey
    (:data:`MASKED_BACKGROUND`) with ``masks (B, 1, S, S)`` in [0, 1] when
    ``cfg.image_input == "masked"``; the images unchanged for ``"rgb"``.

    Raises:
        PoseshapeError: a ``"masked"`` model without masks, or an unknown ``image_input``.
        ShapeError: masks of another batch or size than the images.
    """
    if cfg.image_input == "rgb":
        return images
    if cfg.image_input != "masked":
        raise PoseshapeError(f"reproject: image_input must be one of {IMAGE_INPUTS}, got {cfg.image_input!r}")
    if masks is None:
        raise PoseshapeError(
            "reproject: this model was trained on masked images (image_input='masked') and needs an "
            "object mask (--mask, or an RGBA image's alpha)"
        )
    want = (images.shape[0], 1, *images.shape[-2:])
    if not isinstance(masks, torch.Tensor) or tuple(masks.shape) != want:
        raise ShapeError(f"masks: expected shape {want} like the images, got {tuple(getattr(masks, 'shape', ()))}")
    return composite(images, masks.to(images.dtype).clamp(0, 1), MASKED_BACKGROUND)


def _images(b: dict[str, torch.Tensor], cfg: ReprojectConfig) -> torch.Tensor:
    """The network input of a data-set batch (its ``image`` and, for masked models, ``image_mask``)."""
    return model_images(b["image"], b.get("image_mask"), cfg)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, training: bool) -> torch.Tensor:
    """``z = mu + exp(logvar / 2) * eps`` while training, ``mu`` otherwise. ``(B, L)``."""
    if not training:
        return mu
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def style_code(
    models: dict[str, nn.Module], images: torch.Tensor, cfg: ReprojectConfig
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Style regressor: ``images (B, 3, S, S)`` -> ``(mu (B, L), logvar (B, L) or None)``."""
    out = models["style"](images)
    if cfg.generator == "vaegan":
        return out[:, : cfg.latent], out[:, cfg.latent :]
    return out, None


def pose_outputs(cfg: ReprojectConfig) -> int:
    """Outputs of the pose regressor: 3 (twist) or 6 (6-D rotation), plus ``tx, ty``."""
    if cfg.pose_repr not in POSE_REPRS:
        raise PoseshapeError(f"reproject: pose_repr must be one of {POSE_REPRS}, got {cfg.pose_repr!r}")
    return 5 if cfg.pose_repr == "twist" else 8


def _twist(raw: torch.Tensor, twist_gain: float) -> torch.Tensor:
    """Raw twist outputs ``(B, 5)`` -> pose vector ``(B, 5)`` with ``|w| < pi`` (see regress_rt)."""
    return torch.cat([bounded_axis_angle(raw[:, :3] * twist_gain), raw[:, 3:5]], -1)


#: Added to the raw 6-D outputs, so that an untrained regressor (outputs ~0) starts at the
#: canonical (frontal, upright) view instead of the degenerate zero 6-D vector.
_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def regress_rt(
    models: dict[str, nn.Module], images: torch.Tensor, cfg: ReprojectConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose regressor: images ``(B, 3, S, S)`` in [0, 1] -> ``R (B, 3, 3)``, ``t (B, 3)``.

    ``R`` is object-to-camera, ``t = (tx, ty, 0)`` in posed-frame object units
    (:func:`.frame.pose_to_rt`). Differentiable. Two rotation outputs
    (:attr:`ReprojectConfig.pose_repr`):

    * ``"twist"`` (paper 000): ``R = exp(w) CANONICAL_R`` with ``w = pi tanh(g |v|) v / |v|``
      of the raw outputs ``v`` ("the tanh function [limits] the norm of w"; the paper does not
      give the scale). ``g = twist_gain``; the default ``1 / pi`` makes ``w ~ v`` near 0. With
      ``g = 1`` the map has gain pi at 0 and a raw output that overshoots saturates the tanh,
      where its gradient vanishes: overfitting 16 images, ``bench/twist_bound.py`` leaves 2 of
      them ~101 deg off with ``g = 1`` and none above 90 deg with ``1 / pi`` (bench/RESULTS.md).
      The twist of a view from behind has ``|w|`` near pi, where ``w`` jumps to ``-w``: the
      target is discontinuous in the image, which a network fits only by memorising.
    * ``"6d"`` (ours): ``R = M(v + e) CANONICAL_R`` with ``M`` Zhou et al.'s Gram-Schmidt map
      (:func:`~poseshape.geometry.rotations.rotation_6d_to_matrix`), continuous over all of
      SO(3), and ``e`` the identity's 6-D vector, so zero outputs give the canonical view.
    """
    raw = models["pose"](images)
    if cfg.pose_repr == "twist":
        return pose_to_rt(_twist(raw, cfg.twist_gain))
    if cfg.pose_repr != "6d":
        pose_outputs(cfg)  # raises the clear error
    rel = rotation_6d_to_matrix(raw[:, :6] + raw.new_tensor(_IDENTITY_6D))
    R = rel @ CANONICAL_R.to(raw)
    t = torch.cat([raw[:, 6:8], torch.zeros_like(raw[:, :1])], -1)
    return R, t


def regress_pose(models: dict[str, nn.Module], images: torch.Tensor, cfg: ReprojectConfig) -> torch.Tensor:
    """Pose regressor as paper 000's pose vector ``p = (w, tx, ty)``, ``(B, 5)`` (see regress_rt).

    With ``pose_repr="twist"`` this is the network's bounded output itself (differentiable);
    with ``"6d"`` it is :func:`.frame.rt_to_pose` of :func:`regress_rt` (``|w|`` in [0, pi]),
    meant for reporting: train through :func:`regress_rt`.
    """
    if cfg.pose_repr == "twist":
        return _twist(models["pose"](images), cfg.twist_gain)
    return rt_to_pose(*regress_rt(models, images, cfg))


def pose_loss(pred: torch.Tensor, gt: torch.Tensor, cfg: ReprojectConfig) -> torch.Tensor:
    """Paper 000: Euclidean loss on ``p = (w, tx, ty)``; or (ours) geodesic angle + L2 translation.

    ``pred``, ``gt``: pose vectors ``(B, 5)``. For ``pose_repr="6d"`` see :func:`rt_pose_loss`.
    """
    if cfg.pose_loss == "l2":
        return ((pred - gt) ** 2).sum(-1).mean()
    if cfg.pose_loss == "geodesic":
        Rp, _ = pose_to_rt(pred)
        Rg, _ = pose_to_rt(gt)
        ang = geodesic_distance(Rp, Rg)
        return (ang**2).mean() + ((pred[:, 3:] - gt[:, 3:]) ** 2).sum(-1).mean()
    raise PoseshapeError(f"reproject: pose_loss must be 'l2' or 'geodesic', got {cfg.pose_loss!r}")


def rt_pose_loss(R: torch.Tensor, t: torch.Tensor, gt: torch.Tensor, cfg: ReprojectConfig) -> torch.Tensor:
    """Pose loss of the 6-D regressor: ``R (B, 3, 3)``, ``t (B, 3)`` against pose vectors ``gt (B, 5)``.

    ``pose_loss="l2"``: ``|R - R_gt|_F^2 + |t - t_gt|^2`` (Zhou et al.'s loss on the matrix;
    equal to ``4 (1 - cos angle)`` for the rotation, smooth everywhere); ``"geodesic"``: the
    squared angle instead of the Frobenius term.
    """
    Rg, tg = pose_to_rt(gt)
    trans = ((t - tg) ** 2).sum(-1).mean()
    if cfg.pose_loss == "l2":
        return ((R - Rg) ** 2).sum((-1, -2)).mean() + trans
    if cfg.pose_loss == "geodesic":
        return (geodesic_distance(R, Rg) ** 2).mean() + trans
    raise PoseshapeError(f"reproject: pose_loss must be 'l2' or 'geodesic', got {cfg.pose_loss!r}")


def pose_regression_loss(
    models: dict[str, nn.Module], images: torch.Tensor, gt: torch.Tensor, cfg: ReprojectConfig
) -> torch.Tensor:
    """The pose regressor's loss on network inputs ``images (B, 3, S, S)`` against pose vectors
    ``gt (B, 5)``: :func:`pose_loss` of the twist output, or :func:`rt_pose_loss` of the 6-D one."""
    if cfg.pose_repr == "twist":
        return pose_loss(regress_pose(models, images, cfg), gt, cfg)
    return rt_pose_loss(*regress_rt(models, images, cfg), gt, cfg)


def _posed_rt(aligned: torch.Tensor, R: torch.Tensor, t: torch.Tensor, cfg: ReprojectConfig) -> torch.Tensor:
    """Eq. 2 and 6 with ``(R, t)``: aligned ``(B, 1, Q, Q, Q)`` -> posed grid ``(B, 1, Q, Q, Q)``."""
    dt = aligned.dtype
    return pose_voxels(aligned, R.to(dt), t.to(dt), out_size=aligned.shape[-1], extent=cfg.frame_extent)


def _recon_loss(pred: torch.Tensor, target: torch.Tensor, cfg: ReprojectConfig) -> torch.Tensor:
    if cfg.recon_loss == "l2":
        return voxel_l2(pred, target)
    if cfg.recon_loss == "bce":
        return weighted_voxel_bce(pred, target, pos_weight=1.0)
    raise PoseshapeError(f"reproject: recon_loss must be 'l2' or 'bce', got {cfg.recon_loss!r}")


def _shape_target(batch: dict[str, torch.Tensor], cfg: ReprojectConfig) -> torch.Tensor:
    """The stage-1 target: the aligned shape, or (Table 2 baselines) the pose-aware one."""
    if cfg.shape_frame == "posed":
        return (posed_voxels(batch["aligned"], batch["pose"], cfg.frame_extent) > 0.5).float()
    return batch["aligned"]


def _frozen_disc_features(disc: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the discriminator without letting gradients reach its parameters."""
    d = unwrap_module(disc)
    params = {k: v.detach() for k, v in d.named_parameters()}
    buffers = dict(d.named_buffers())
    return functional_call(d, {**params, **buffers}, (x,))


# --------------------------------------------------------------------------- data
def _rendered(cfg: ReprojectConfig, ctx: StageContext):
    train = RenderedSamples(cfg.data.train, cfg, what="train")
    val = RenderedSamples(cfg.data.val, cfg, limit=cfg.val_samples, what="val") if cfg.data.val else None
    return train, val


def _mixed(cfg: ReprojectConfig, ctx: StageContext):
    train, val = _rendered(cfg, ctx)
    natural = SilhouetteSamples(cfg.data.natural, cfg)
    return MixedSamples(train, natural, seed=ctx.seed), val


# --------------------------------------------------------------------------- steps
def _vae_step(models, batch, ctx):
    cfg: ReprojectConfig = ctx.config
    target = _shape_target(batch, cfg)
    mu, logvar = models["encoder"](target)
    recon = models["decoder"](reparameterize(mu, logvar, True))
    rec = _recon_loss(recon, target, cfg)
    kl = kl_divergence(mu, logvar)
    return {"loss": rec + cfg.kl_weight * kl, "recon": rec.detach(), "kl": kl.detach()}


def _vaegan_step(models, batch, ctx):
    cfg: ReprojectConfig = ctx.config
    target = _shape_target(batch, cfg)
    mu, logvar = style_code(models, _images(batch, cfg), cfg)
    fake = models["decoder"](reparameterize(mu, logvar, True))
    disc = models["discriminator"]
    logit_real, feat_real = disc(target)
    logit_fake_d, _ = disc(fake.detach())
    d_loss = gan_d_loss(logit_real, logit_fake_d)
    logit_fake_g, feat_fake = _frozen_disc_features(disc, fake)
    feat = feature_matching_l2(feat_real.detach(), feat_fake)
    kl = kl_divergence(mu, logvar)
    g_adv = gan_g_loss(logit_fake_g)
    loss = d_loss + feat + cfg.kl_weight * kl + cfg.gan_weight * g_adv
    return {"loss": loss, "d_loss": d_loss.detach(), "feat": feat.detach(), "kl": kl.detach(), "g_adv": g_adv.detach()}


def _rendered_losses(models, b, cfg) -> dict[str, torch.Tensor]:
    """Style + pose losses of rendered samples (stage 2 and the rendered half of stage 3)."""
    out = {}
    images = _images(b, cfg)
    mu, logvar = style_code(models, images, cfg)
    if cfg.generator == "vae":
        with torch.no_grad():
            mu_gt, _ = models["encoder"](b["aligned"])
        out["style"] = ((mu - mu_gt) ** 2).sum(-1).mean()
    elif "discriminator" in models and logvar is not None and _trains(models["style"]):
        recon = models["decoder"](mu)
        with torch.no_grad():
            _, feat_real = models["discriminator"](b["aligned"])
        _, feat_fake = models["discriminator"](recon)
        out["style"] = feature_matching_l2(feat_real, feat_fake) + cfg.kl_weight * kl_divergence(mu, logvar)
    out["pose"] = pose_regression_loss(models, images, b["pose"], cfg)
    return out


def _trains(module: nn.Module) -> bool:
    """Whether ``module`` is being trained in this stage (its parameters need grads)."""
    return any(p.requires_grad for p in module.parameters())


def _regress_step(models, batch, ctx):
    cfg: ReprojectConfig = ctx.config
    parts = _rendered_losses(models, batch, cfg)
    loss = sum(parts.values())
    return {"loss": loss, **{k: v.detach() for k, v in parts.items()}}


def _finetune_step(models, batch, ctx):
    cfg: ReprojectConfig = ctx.config
    parts = _rendered_losses(models, batch["rendered"], cfg)
    nat = batch["natural"]
    nat_images = _images(nat, cfg)
    mu, _ = style_code(models, nat_images, cfg)
    aligned = models["decoder"](mu)
    sil = max_projection(_posed_rt(aligned, *regress_rt(models, nat_images, cfg), cfg))
    rp = reprojection_bce(sil, nat["mask"])
    rendered = sum(parts.values())
    loss = cfg.w_reproject * rp + cfg.w_rendered * rendered
    return {"loss": loss, "reproject": rp.detach(), **{k: v.detach() for k, v in parts.items()}}


# --------------------------------------------------------------------------- validation
def _validate_shapes(models, batches, ctx):
    cfg: ReprojectConfig = ctx.config
    ious, aps = [], []
    for b in batches:
        target = _shape_target(b, cfg)
        if cfg.generator == "vae":
            mu, _ = models["encoder"](target)
        else:
            mu, _ = style_code(models, _images(b, cfg), cfg)
        rec = models["decoder"](mu)
        ious.append(voxel_iou(rec, target))
        aps.append(average_precision(rec, target > 0.5, reduction="none"))
    return {"val_iou": float(torch.cat(ious).mean()), "val_ap": float(torch.cat(aps).nanmean())}


def _validate_predictions(models, batches, ctx):
    cfg: ReprojectConfig = ctx.config
    rot, ap3, ap2 = [], [], []
    for b in batches:
        images = _images(b, cfg)
        mu, _ = style_code(models, images, cfg)
        aligned = models["decoder"](mu)
        R, t = regress_rt(models, images, cfg)
        rot.append(rotation_error(R, pose_to_rt(b["pose"])[0]))
        posed = _posed_rt(aligned, R, t, cfg)
        gt_posed = _posed_rt(b["aligned"], *pose_to_rt(b["pose"]), cfg) > 0.5
        ap3.append(average_precision(posed, gt_posed, reduction="none"))
        sil = posed.amax(dim=2)
        ap2.append(average_precision(sil, b["mask"] > 0.5, reduction="none"))
    r = torch.cat(rot)
    return {
        "val_rot_mederr": float(r.median()),
        "val_acc_pi6": float((r < 30).float().mean()),
        "val_ap3d": float(torch.cat(ap3).nanmean()),
        "val_ap2d": float(torch.cat(ap2).nanmean()),
    }


# --------------------------------------------------------------------------- optimisers
def _adam(lr_attr: str):
    def make(modules: dict[str, nn.Module], cfg: ReprojectConfig) -> torch.optim.Optimizer:
        params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=getattr(cfg, lr_attr))

    return make


def _rmsprop(modules: dict[str, nn.Module], cfg: ReprojectConfig) -> torch.optim.Optimizer:
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    return torch.optim.RMSprop(params, lr=cfg.gan_lr)


def stages(cfg: ReprojectConfig) -> list[Stage]:
    """The three stages of the configured variant (see the module docstring)."""
    common: dict[str, Any] = dict(
        batch_size=cfg.batch_size,
        drop_last=True,
        num_workers=cfg.num_workers,
        val_every=cfg.val_every,
        grad_clip=cfg.grad_clip,
    )
    if cfg.generator == "vae":
        first = Stage(
            "vae",
            train=["encoder", "decoder"],
            optimizer=_adam("lr"),
            data=_rendered,
            step=_vae_step,
            iterations=cfg.vae_iters,
            validate=_validate_shapes,
            best_metric=None,
            **common,
        )
        style_mods = ["style", "pose"]
    else:
        first = Stage(
            "vaegan",
            train=["style", "decoder", "discriminator"],
            optimizer=_rmsprop,
            data=_rendered,
            step=_vaegan_step,
            iterations=cfg.vae_iters,
            validate=_validate_shapes,
            **common,
        )
        style_mods = ["pose"]
    pair_common = dict(common, batch_size=max(1, cfg.batch_size // 2))  # 1:1 rendered : natural
    # early stopping of the regress stage on the validation rotation error (ReprojectConfig.restore_best)
    early: dict[str, Any] = (
        dict(best_metric="val_rot_mederr", best_mode="min", restore_best=True) if cfg.restore_best else {}
    )
    return [
        first,
        Stage(
            "regress",
            train=style_mods,
            optimizer=_adam("lr"),
            data=_rendered,
            step=_regress_step,
            iterations=cfg.regress_iters,
            validate=_validate_predictions,
            **early,
            **common,
        ),
        Stage(
            "finetune",
            train=["style", "pose"],
            optimizer=_adam("finetune_lr"),
            data=_mixed,
            step=_finetune_step,
            iterations=cfg.finetune_iters,
            validate=_validate_predictions,
            **pair_common,
        ),
    ]
