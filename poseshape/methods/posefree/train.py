"""The training stages of ``posefree`` (paper 002, three stages).

Modules: ``G`` (:class:`.model.MeshGenerator`), ``D1`` / ``D2`` (:class:`.model.SilhouetteCritic`),
``Rpose`` (:class:`.model.PoseRegressor`) and ``R`` (:class:`.model.Reconstructor`).

1. ``manifold``: WGAN-GP (eqs. 1-2). Real: training silhouettes; fake: ``Proj(G(z), v)``,
   ``z ~ N(0, I)``, ``v ~ U[0, 2 pi)`` at elevation 30 deg. The critic steps every batch, G
   every ``n_critic``-th (:class:`GanOptimizer`).
2. ``pose``: Rpose on ``Proj(G(z), v)`` (G frozen) with the angle loss (eq. 4)
   ``|atan2(sin(v1 - v2), cos(v1 - v2))|``.
3. ``reconstruct``: R with ``L_re`` (soft-IoU of ``Proj(R(i), Rpose(y))`` and ``y``), D2's
   view discrimination (eqs. 6-7, weight ``lambda_dis``; unobserved views ``v != Rpose(y)``)
   and the Laplacian loss (weight ``mu_lap``). D2 and R are updated at every step.

A loss that becomes non-finite or a critic score beyond ``critic_blowup`` stops the run with a
:class:`PoseshapeError` before the optimiser step, so ``last.pt`` (and ``best_*.pt``) keep the
last good weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from poseshape.core.errors import PoseshapeError
from poseshape.engine.checkpoint import unwrap_module
from poseshape.engine.registry import Stage, StageContext
from poseshape.engine.train import derive_seed
from poseshape.losses import reprojection_iou, wgan_gp_penalty
from poseshape.methods.posefree.config import VIEW_SUBSETS, PosefreeConfig
from poseshape.methods.posefree.data import SilhouetteSamples, prepare_renders
from poseshape.methods.posefree.model import (
    MeshGenerator,
    PoseRegressor,
    Reconstructor,
    SilhouetteCritic,
    render,
)
from poseshape.shapes.meshes import laplacian_smoothing_loss

__all__ = [
    "GanOptimizer",
    "azimuth_angle_loss",
    "build",
    "check_config",
    "check_critic",
    "frozen_call",
    "stages",
]

POSE_SOURCES = ("pseudo", "gt", "pseudo_nodis")


def check_config(cfg: PosefreeConfig) -> None:
    """Raise :class:`PoseshapeError` naming the first invalid option."""
    if cfg.pose_source not in POSE_SOURCES:
        raise PoseshapeError(f"posefree: pose_source must be one of {POSE_SOURCES}, got {cfg.pose_source!r}")
    if cfg.discriminator not in ("pid", "pad"):
        raise PoseshapeError(f"posefree: discriminator must be 'pid' or 'pad', got {cfg.discriminator!r}")
    if cfg.decoder not in ("learned", "manifold"):
        raise PoseshapeError(f"posefree: decoder must be 'learned' or 'manifold', got {cfg.decoder!r}")
    if cfg.data.view_subset and cfg.data.view_subset not in VIEW_SUBSETS:
        raise PoseshapeError(f"posefree: data.view_subset must be one of {sorted(VIEW_SUBSETS)} or empty")
    if cfg.data.image_size % 32 or cfg.data.image_size < 32:
        raise PoseshapeError(f"posefree: data.image_size must be a multiple of 32, got {cfg.data.image_size}")
    if cfg.batch_size < 2 or cfg.n_critic < 1:
        raise PoseshapeError("posefree: batch_size >= 2 and n_critic >= 1 are required")


def build(cfg: PosefreeConfig) -> dict[str, nn.Module]:
    """``{"G", "D1", "Rpose", "R", "D2"}`` for ``cfg``."""
    check_config(cfg)
    S = int(cfg.data.image_size)

    def gen():
        return MeshGenerator(
            cfg.latent_dim, tuple(cfg.hidden), cfg.icosphere_level, cfg.sphere_radius, cfg.offset_scale
        )

    return {
        "G": gen(),
        "D1": SilhouetteCritic(S, cfg.critic_channels),
        "Rpose": PoseRegressor(S, cfg.pose_channels, cfg.pose_hidden),
        "R": Reconstructor(gen(), cfg.backbone_width),
        "D2": SilhouetteCritic(S, cfg.critic_channels, view_conditioned=cfg.discriminator == "pad"),
    }


def azimuth_angle_loss(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Eq. 4: ``|atan2(sin(a - b), cos(a - b))|`` radians in ``[0, pi]`` (``a, b (B,)``)."""
    d = a - b
    e = torch.atan2(torch.sin(d), torch.cos(d)).abs()
    return e.mean() if reduction == "mean" else e


def frozen_call(module: nn.Module, *args):
    """``module(*args)`` with its parameters detached: gradients reach the inputs only (the
    generator's term of a GAN loss must not move the critic)."""
    m = unwrap_module(module)
    params = {k: v.detach() for k, v in m.named_parameters()}
    return functional_call(m, params, args)


def check_critic(scores: torch.Tensor, cfg: PosefreeConfig, stage: str, step: int) -> None:
    """Stop (before the optimiser step: ``last.pt`` holds the last good weights) on NaN or blow-up."""
    s = scores.detach()
    if not bool(torch.isfinite(s).all()):
        raise PoseshapeError(
            f"posefree {stage} step {step}: the critic's scores are not finite (the WGAN diverged); "
            "training stopped, the last good weights are in last.pt (lower lr or raise lambda_gp)"
        )
    if float(s.abs().max()) > cfg.critic_blowup:
        raise PoseshapeError(
            f"posefree {stage} step {step}: critic score {float(s.abs().max()):.3g} exceeds critic_blowup="
            f"{cfg.critic_blowup:g} (the critic blew up); training stopped, the last good weights are in last.pt"
        )


def _check_loss(loss: torch.Tensor, stage: str, step: int) -> None:
    if not bool(torch.isfinite(loss.detach())):
        raise PoseshapeError(
            f"posefree {stage} step {step}: loss is {float(loss)} (diverged); training stopped, "
            "the last good weights are in last.pt"
        )


class GanOptimizer:
    """Two Adams in one: the critic's steps at every call, the generator's every ``n_critic``-th.

    The trainer sees one optimiser (``param_groups``, ``zero_grad``, ``step``, ``state_dict``).
    """

    def __init__(self, gen_params, critic_params, lr: float, betas, n_critic: int):
        self.gen = torch.optim.Adam(list(gen_params), lr=lr, betas=tuple(betas))
        self.critic = torch.optim.Adam(list(critic_params), lr=lr, betas=tuple(betas))
        self.n_critic = int(n_critic)
        self.calls = 0

    @property
    def param_groups(self):
        return self.gen.param_groups + self.critic.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.gen.zero_grad(set_to_none=set_to_none)
        self.critic.zero_grad(set_to_none=set_to_none)

    def generator_turn(self) -> bool:
        """Whether the coming :meth:`step` also moves the generator."""
        return self.calls % self.n_critic == self.n_critic - 1

    def step(self) -> None:
        self.critic.step()
        if self.generator_turn():
            self.gen.step()
        self.calls += 1

    def state_dict(self) -> dict:
        return {"gen": self.gen.state_dict(), "critic": self.critic.state_dict(), "calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.gen.load_state_dict(state["gen"])
        self.critic.load_state_dict(state["critic"])
        self.calls = int(state["calls"])


def _params(m: nn.Module):
    return [p for p in m.parameters() if p.requires_grad]


def _gen(cfg: PosefreeConfig, ctx: StageContext, n: int, tag: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded codes ``(n, L)`` and azimuths ``(n,)`` of step ``ctx.step``."""
    g = torch.Generator().manual_seed(derive_seed(ctx.seed, "posefree", tag, ctx.step))
    z = torch.randn(n, cfg.latent_dim, generator=g)
    v = torch.rand(n, generator=g) * 2 * math.pi
    return z.to(device), v.to(device)


def _proj(cfg: PosefreeConfig, verts: torch.Tensor, faces: torch.Tensor, az: torch.Tensor) -> torch.Tensor:
    return render(
        verts,
        faces,
        az,
        elevation_deg=cfg.elevation_deg,
        distance=cfg.distance,
        fov_deg=cfg.fov_deg,
        image_size=cfg.data.image_size,
        sigma=cfg.sigma,
    )


# --------------------------------------------------------------------------- data
def _train_data(cfg: PosefreeConfig, ctx: StageContext):
    paths = prepare_renders(cfg, ctx.out_dir, splits=("train", "val"))
    train = SilhouetteSamples(paths["train"], cfg, cfg.data.view_subset)
    if len(train) < cfg.batch_size:
        raise PoseshapeError(f"posefree: {len(train)} training images, fewer than batch_size={cfg.batch_size}")
    val = SilhouetteSamples(paths["val"], cfg, limit=96)
    return train, val


# --------------------------------------------------------------------------- 1: manifold
def _manifold_step(models, batch, ctx):
    cfg: PosefreeConfig = ctx.config
    G, D1 = models["G"], models["D1"]
    real = batch["mask"]
    z, v = _gen(cfg, ctx, real.shape[0], "manifold", real.device)
    fake = _proj(cfg, G(z), unwrap_module(G).faces, v)
    d_real, d_fake = D1(real), D1(fake.detach())
    gp = wgan_gp_penalty(D1, real, fake, cfg.lambda_gp)
    loss_d = d_fake.mean() - d_real.mean() + gp
    loss_g = -frozen_call(D1, fake).mean()  # eq. 2 (moves G only; applied on G's turns)
    check_critic(torch.cat([d_real, d_fake]), cfg, "manifold", ctx.step)
    loss = loss_d + loss_g
    _check_loss(loss, "manifold", ctx.step)
    return {
        "loss": loss,
        "d_loss": loss_d.detach(),
        "g_loss": loss_g.detach(),
        "gp": gp.detach(),
        "w_dist": (d_real.mean() - d_fake.mean()).detach(),
    }


def _validate_manifold(models, batches, ctx):
    """Mean best-azimuth silhouette IoU of the val masks to G's samples (a coverage measure)."""
    cfg: PosefreeConfig = ctx.config
    G = unwrap_module(models["G"])
    ious = []
    for b in batches:
        m = b["mask"]
        z = torch.randn(16, cfg.latent_dim, generator=torch.Generator().manual_seed(ctx.seed)).to(m.device)
        verts = G(z)
        az = torch.arange(24, device=m.device, dtype=torch.float32) * (2 * math.pi / 24)
        sil = _proj(cfg, verts.repeat_interleave(24, 0), G.faces, az.repeat(16)) > 0.5
        inter = (sil[None].flatten(2) & (m[:, None].flatten(2) > 0.5)).sum(-1).float()
        union = (sil[None].flatten(2) | (m[:, None].flatten(2) > 0.5)).sum(-1).float().clamp(min=1)
        ious.append((inter / union).amax(1))
        break
    return {"val_manifold_iou": float(torch.cat(ious).mean())} if ious else {}


# --------------------------------------------------------------------------- 2: pose
def _pose_data(cfg: PosefreeConfig, ctx: StageContext):
    return _Count(cfg.pose_iters * cfg.batch_size), None


class _Count(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.tensor(i)


def _pose_step(models, batch, ctx):
    cfg: PosefreeConfig = ctx.config
    G = unwrap_module(models["G"])
    z, v = _gen(cfg, ctx, batch.shape[0], "pose", batch.device)
    with torch.no_grad():
        sil = _proj(cfg, G(z), G.faces, v)
    pred = models["Rpose"](sil)
    loss = azimuth_angle_loss(pred, v)
    _check_loss(loss, "pose", ctx.step)
    return {"loss": loss, "angle_deg": loss.detach().rad2deg()}


def _validate_pose(models, batches, ctx):
    """Median angle error (deg) of Rpose on G's renders, and on the val images up to one global offset."""
    cfg: PosefreeConfig = ctx.config
    G = unwrap_module(models["G"])
    z, v = _gen(cfg, _SeedStep(ctx.seed), 128, "pose-val", next(G.parameters()).device)
    e = azimuth_angle_loss(models["Rpose"](_proj(cfg, G(z), G.faces, v)), v, "none").rad2deg()
    return {"val_synth_med_deg": float(e.median())}


class _SeedStep:
    """The two fields of a :class:`StageContext` that :func:`_gen` reads (fixed validation draws)."""

    def __init__(self, seed: int, step: int = 0):
        self.seed, self.step = seed, step


# --------------------------------------------------------------------------- 3: reconstruct
def _observed_pose(models, batch, cfg: PosefreeConfig) -> torch.Tensor:
    if cfg.pose_source == "gt":
        return batch["azimuth"]
    with torch.no_grad():
        return unwrap_module(models["Rpose"])(batch["mask"])


def _unobserved(cfg: PosefreeConfig, ctx: StageContext, v_obs: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(derive_seed(ctx.seed, "posefree", "unobserved", ctx.step))
    lo = math.radians(cfg.min_unobserved_deg)
    d = lo + torch.rand(v_obs.shape[0], generator=g) * (2 * math.pi - 2 * lo)
    return (v_obs + d.to(v_obs.device)) % (2 * math.pi)


def reconstruct_losses(models, batch, cfg: PosefreeConfig, ctx: StageContext) -> dict[str, torch.Tensor]:
    """Stage-3 terms: ``re`` (soft IoU), ``dis`` (eq. 7), ``lap``, ``d2`` (eq. 6, with GP), ``loss``."""
    R = models["R"]
    faces = unwrap_module(R).decoder.faces
    v_obs = _observed_pose(models, batch, cfg)
    verts = R(batch["image"])
    sil_obs = _proj(cfg, verts, faces, v_obs)
    re = reprojection_iou(sil_obs, batch["mask"])
    lap = laplacian_smoothing_loss(verts, faces)
    out = {"re": re, "lap": lap}
    loss = re + cfg.mu_lap * lap
    if cfg.pose_source == "pseudo":  # the baselines (B/Ls, B/Lu) train with the re-projection loss only
        D2 = models["D2"]
        v_un = _unobserved(cfg, ctx, v_obs)
        sil_un = _proj(cfg, verts, faces, v_un)
        pad = unwrap_module(D2).view_conditioned
        a_real, a_fake = (v_obs, v_un) if pad else ((), ())
        d_real = D2(sil_obs.detach(), *([a_real] if pad else []))
        d_fake = D2(sil_un.detach(), *([a_fake] if pad else []))
        if pad:
            x_real = torch.cat([sil_obs.detach(), v_obs[:, None, None, None].expand_as(sil_obs)], 1)
            x_fake = torch.cat([sil_un.detach(), v_un[:, None, None, None].expand_as(sil_un)], 1)
            gp = wgan_gp_penalty(lambda x: D2(x[:, :1], x[:, 1, 0, 0]), x_real, x_fake, cfg.lambda_gp)
        else:
            gp = wgan_gp_penalty(D2, sil_obs.detach(), sil_un.detach(), cfg.lambda_gp)
        d2 = d_fake.mean() - d_real.mean() + gp
        dis = -frozen_call(D2, sil_un, *([v_un] if pad else [])).mean()
        check_critic(torch.cat([d_real, d_fake]), cfg, "reconstruct", ctx.step)
        loss = loss + cfg.lambda_dis * dis + d2
        out.update(dis=dis, d2=d2)
    out["loss"] = loss
    return out


def _reconstruct_step(models, batch, ctx):
    parts = reconstruct_losses(models, batch, ctx.config, ctx)
    _check_loss(parts["loss"], "reconstruct", ctx.step)
    return {k: (v if k == "loss" else v.detach()) for k, v in parts.items()}


def _validate_reconstruct(models, batches, ctx):
    """Val soft-IoU loss at the pseudo pose and the hard silhouette IoU."""
    cfg: PosefreeConfig = ctx.config
    R = unwrap_module(models["R"])
    vals, hard = [], []
    for b in batches:
        v = _observed_pose(models, b, cfg)
        sil = _proj(cfg, R(b["image"]), R.decoder.faces, v)
        vals.append(reprojection_iou(sil, b["mask"], reduction="none"))
        s, m = sil > 0.5, b["mask"] > 0.5
        hard.append((s & m).flatten(1).sum(1).float() / (s | m).flatten(1).sum(1).clamp(min=1).float())
    if not vals:
        return {}
    return {"val_re": float(torch.cat(vals).mean()), "val_sil_iou": float(torch.cat(hard).mean())}


# --------------------------------------------------------------------------- stages
def _manifold_opt(modules, cfg):
    return GanOptimizer(_params(modules["G"]), _params(modules["D1"]), cfg.lr, cfg.betas, cfg.n_critic)


def _pose_opt(modules, cfg):
    return torch.optim.Adam(_params(modules["Rpose"]), lr=cfg.lr)


def _reconstruct_opt(modules, cfg):
    R = modules["R"]
    gen = _params(unwrap_module(R).encoder) if cfg.decoder == "manifold" else _params(R)
    critic = _params(modules["D2"]) if "D2" in modules else []
    if not critic:  # B/Lu: no D2
        return torch.optim.Adam(gen, lr=cfg.lr)
    return GanOptimizer(gen, critic, cfg.lr, cfg.betas, 1)


def _copy_g_into_r(models, batch, ctx):
    """One step: R's decoder starts as G (``decoder="manifold"`` keeps it; ``"learned"`` trains it)."""
    unwrap_module(models["R"]).decoder.load_state_dict(unwrap_module(models["G"]).state_dict())
    return {"loss": sum(p.sum() * 0 for p in unwrap_module(models["R"]).decoder.parameters() if p.requires_grad)}


class _Once:
    def __iter__(self):
        yield {}

    def __len__(self) -> int:
        return 1


def _no_opt(modules, cfg):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)


def stages(cfg: PosefreeConfig) -> list[Stage]:
    """``manifold``, ``pose``, ``init_decoder`` (manifold decoder only), ``reconstruct``."""
    check_config(cfg)
    out = []
    if cfg.pose_source != "gt":
        out += [
            Stage(
                "manifold",
                train=["G", "D1"],
                optimizer=_manifold_opt,
                data=_train_data,
                step=_manifold_step,
                iterations=cfg.manifold_iters,
                batch_size=cfg.batch_size,
                drop_last=True,
                validate=_validate_manifold,
                val_every=cfg.val_every,
                num_workers=cfg.num_workers,
            ),
            Stage(
                "pose",
                train=["Rpose"],
                optimizer=_pose_opt,
                data=_pose_data,
                step=_pose_step,
                iterations=cfg.pose_iters,
                batch_size=cfg.batch_size,
                validate=_validate_pose,
                val_every=cfg.val_every,
            ),
        ]
    if cfg.decoder == "manifold":
        out.append(
            Stage(
                "init_decoder",
                train=["R"],
                optimizer=_no_opt,
                data=lambda c, ctx: (_Once(), None),
                step=_copy_g_into_r,
                iterations=1,
            )
        )
    trained = ["R", "D2"] if cfg.pose_source == "pseudo" else ["R"]
    out.append(
        Stage(
            "reconstruct",
            train=trained,
            optimizer=_reconstruct_opt,
            data=_train_data,
            step=_reconstruct_step,
            epochs=cfg.recon_epochs,
            batch_size=cfg.batch_size,
            drop_last=True,
            validate=_validate_reconstruct,
            val_every=cfg.val_every,
            best_metric="val_sil_iou",
            best_mode="max",
            num_workers=cfg.num_workers,
        )
    )
    return out
