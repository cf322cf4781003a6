"""Training of ``selfconsistency`` (paper 001, eq. 12): one joint stage on the engine Trainer.

Modules: ``encoder`` (E), ``pose_head`` (FC z_p -> azimuth, elevation), ``voxel_decoder``
(D_v) and ``mask_decoder`` (D_m). Every step, for a batch of images ``x`` with GT masks
``m`` (48^2) and GT voxels ``yhat`` (32^3)::

    mu_s, logvar_s, z_p = E(x);  z_s = mu_s + exp(logvar_s / 2) eps        (CVAE)
    y = D_v(z_s);  m_pred = D_m(mu_s, z_p);  (az, el) = FC(z_p) -> R, fixed t, known K
    L_3drecon = weighted BCE(y, yhat; lambda_p = 3)       (eq. 8)
    L_IoU = exp(1 - IoU(y, yhat)) - 1                     (eq. 9)
    L_m = BCE(m_pred, m)                                  (eq. 11)
    L_sc = (10 L_ray(yhat, R, m) + 0.25 L_proj) / 2      (eq. 6, N = 64, on the GT voxels)
    L_KL = KL(N(mu_s, exp(logvar_s)) || N(0, I))         (eq. 10)
    L_E = (L_m + (L_3drecon + L_IoU)) / 2 + L_sc + 0.02 L_KL      (eq. 12), Adam 2e-4

With ``pose_bins = K > 0`` (ours, :mod:`.pose_search`) the head also gives K azimuth-bin
logits: the bin whose centre gives the GT voxels the lowest L_sc is their cross-entropy
target (``+ lambda_bin CE``), and L_sc above is taken at that bin's centre plus the head's
residual, so eq. 6 refines the azimuth inside the bin.  With ``search_elevation_step_deg``
the search also tries the head's elevation +- that step and the elevation is regressed to
the best of the three.

The GT pose is never used for training; validation reports it (rotation / elevation error).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from poseshape.core.errors import PoseshapeError
from poseshape.engine.registry import Stage, StageContext
from poseshape.losses import kl_divergence, weighted_voxel_bce
from poseshape.losses.consistency import RAY_SAMPLINGS, self_consistency_loss
from poseshape.methods.selfconsistency.config import SelfConsistencyConfig
from poseshape.methods.selfconsistency.data import SelfConsistencySamples
from poseshape.methods.selfconsistency.frame import pose_to_rt
from poseshape.methods.selfconsistency.losses import total_loss, voxel_iou_loss
from poseshape.methods.selfconsistency.model import ImageEncoder, MaskDecoder, PoseHead, VoxelTubeDecoder
from poseshape.methods.selfconsistency.pose_search import binned_azimuth, search_bins
from poseshape.metrics import mask_iou, rotation_error, voxel_iou

__all__ = ["build", "forward", "losses", "stages"]


def build(cfg: SelfConsistencyConfig) -> dict[str, nn.Module]:
    """The four networks of Fig. 1 (see :mod:`.model`)."""
    if cfg.ray_sampling not in RAY_SAMPLINGS:
        raise PoseshapeError(f"selfconsistency: ray_sampling must be one of {RAY_SAMPLINGS}, got {cfg.ray_sampling!r}")
    if cfg.pose_bins < 0 or cfg.pose_bins == 1:
        raise PoseshapeError(f"selfconsistency: pose_bins must be 0 (paper) or >= 2, got {cfg.pose_bins}")
    if cfg.search_res < 4 or cfg.search_samples < 2:
        raise PoseshapeError(
            f"selfconsistency: search_res >= 4 and search_samples >= 2 needed, got {cfg.search_res}, {cfg.search_samples}"
        )
    enc = ImageEncoder(cfg.image_size, cfg.shape_code, cfg.pose_code, cfg.width)
    return {
        "encoder": enc,
        "pose_head": PoseHead(cfg.pose_code, cfg.elevation_max, cfg.pose_bins),
        "voxel_decoder": VoxelTubeDecoder(cfg.shape_code, cfg.voxel_res, cfg.width),
        "mask_decoder": MaskDecoder(
            cfg.shape_code, cfg.pose_code, cfg.mask_res, enc.skip_channels, cfg.width, use_skips=cfg.mask_skips
        ),
    }


def forward(models: dict[str, nn.Module], images: torch.Tensor, sample: bool = False) -> dict[str, torch.Tensor]:
    """Run E, the pose head and both decoders on ``images (B, 3, S, S)``.

    Returns ``mu, logvar (B, 512)``, ``z_p (B, 16)``, ``pose (B, 2)`` (azimuth, elevation,
    radians), ``voxels (B, 1, 32, 32, 32)`` (decoded from a CVAE sample when ``sample``,
    else from ``mu``) and ``mask (B, 1, 48, 48)`` probabilities; with a binned pose head
    also ``pose_parts`` (:meth:`.model.PoseHead.parts`).
    """
    mu, logvar, z_p, skips = models["encoder"](images)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
    head = models["pose_head"]
    if getattr(head, "bins", 0):  # one pass of the head gives the pose and the training pieces
        pose_parts = head.parts(z_p)
        extra, pose = {"pose_parts": pose_parts}, head.pose_from_parts(pose_parts)
    else:
        extra, pose = {}, head(z_p)
    return {
        **extra,
        "mu": mu,
        "logvar": logvar,
        "z_p": z_p,
        "pose": pose,
        "voxels": models["voxel_decoder"](z),
        "mask": models["mask_decoder"](mu, z_p, skips),
    }


def losses(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg: SelfConsistencyConfig) -> dict:
    """The terms of eq. 12 and their total ``loss`` (see the module docstring)."""
    gt = batch["voxels"]
    m = batch["mask"]
    pose, cls = out["pose"], None
    if cfg.pose_bins:
        parts = out["pose_parts"]
        el = parts["elevation"].detach()
        step = math.radians(cfg.search_elevation_step_deg)
        cands = torch.stack([el - step, el, el + step], 1) if step > 0 else el[:, None]
        target, el_index, _ = search_bins(
            gt,
            cands,
            batch["K"],
            m,
            cfg.pose_bins,
            cfg.distance,
            res=cfg.search_res,
            n_samples=cfg.search_samples,
            lambda_ray=cfg.lambda_ray,
            lambda_proj=cfg.lambda_proj,
            sampling=cfg.ray_sampling,
        )
        az = binned_azimuth(target, parts["residual"].gather(1, target[:, None])[:, 0], cfg.pose_bins)
        pose = torch.stack([az, parts["elevation"]], -1)
        cls = F.cross_entropy(parts["logits"], target)
        if step > 0:
            el_target = cands.gather(1, el_index[:, None])[:, 0]
            cls = cls + F.smooth_l1_loss(parts["elevation"], el_target, beta=step)
    R, t = pose_to_rt(pose, cfg.distance)
    recon = weighted_voxel_bce(out["voxels"], gt, pos_weight=cfg.lambda_p)
    iou = voxel_iou_loss(out["voxels"], gt, literal=cfg.literal_iou)
    lm = F.binary_cross_entropy(out["mask"].clamp(1e-6, 1 - 1e-6), m)
    sc = self_consistency_loss(
        gt,
        R,
        t,
        batch["K"],
        m,
        n_samples=cfg.n_samples,
        lambda_ray=cfg.lambda_ray,
        lambda_proj=cfg.lambda_proj,
        sampling=cfg.ray_sampling,
    )
    kl = kl_divergence(out["mu"], out["logvar"])
    loss = total_loss(lm, recon, iou, sc, kl, cfg.lambda_kl)
    terms = {"recon": recon, "iou": iou, "mask": lm, "sc": sc, "kl": kl}
    if cls is not None:
        loss = loss + cfg.lambda_bin * cls
        terms["bin"] = cls
    return {"loss": loss, **terms}


def _data(cfg: SelfConsistencyConfig, ctx: StageContext):
    train = SelfConsistencySamples(cfg.data.train, cfg, what="train")
    val = SelfConsistencySamples(cfg.data.val, cfg, limit=cfg.val_samples, what="val") if cfg.data.val else None
    return train, val


def _step(models, batch, ctx):
    cfg: SelfConsistencyConfig = ctx.config
    parts = losses(forward(models, batch["image"], sample=True), batch, cfg)
    return {k: (v if k == "loss" else v.detach()) for k, v in parts.items()}


def _validate(models, batches, ctx):
    cfg: SelfConsistencyConfig = ctx.config
    rot, el, viou, miou = [], [], [], []
    for b in batches:
        out = forward(models, b["image"])
        R, _ = pose_to_rt(out["pose"], cfg.distance)
        rot.append(rotation_error(R, b["R"].to(R)))
        el.append((out["pose"][:, 1] - b["pose"][:, 1]).abs().rad2deg())
        viou.append(voxel_iou(out["voxels"], b["voxels"]))
        miou.append(mask_iou(out["mask"], b["mask"]))
    r = torch.cat(rot)
    return {
        "val_rot_mean": float(r.mean()),
        "val_rot_median": float(r.median()),
        "val_elev_mean": float(torch.cat(el).mean()),
        "val_voxel_iou": float(torch.cat(viou).mean()),
        "val_mask_iou": float(torch.cat(miou).mean()),
    }


def _adam(modules: dict[str, nn.Module], cfg: SelfConsistencyConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for m in modules.values() for p in m.parameters() if p.requires_grad], lr=cfg.lr)


def stages(cfg: SelfConsistencyConfig) -> list[Stage]:
    """One joint stage over E, the pose head, D_v and D_m (the paper trains them together)."""
    return [
        Stage(
            "joint",
            train=["encoder", "pose_head", "voxel_decoder", "mask_decoder"],
            optimizer=_adam,
            data=_data,
            step=_step,
            iterations=cfg.iterations,
            batch_size=cfg.batch_size,
            drop_last=True,
            num_workers=cfg.num_workers,
            validate=_validate,
            val_every=cfg.val_every,
            best_metric="val_voxel_iou",
            best_mode="max",
            grad_clip=cfg.grad_clip,
        )
    ]
