"""The training stages of ``refine6dof`` (paper 003, §3.1 and §4).

Modules: ``encoder`` (:class:`.model.PoseEncoder`) and ``medoids`` (:class:`.model.MedoidBank`,
buffers only).

1. ``clusters``: cluster the configured models (HOG or voxel-IoU distance, k-medoids) and
   store each cluster's medoid (mesh, voxels, name) in ``medoids``, so that every checkpoint
   from here on carries them. One step, no weights change (its "loss" is a constant); the
   clustering is also written to ``RUN/clusters.json`` with the distance matrices.
2. ``encoder``: the two-branch encoder on the 6-DoF renders of the train split, loss
   ``w_pose * MSE(P) + w_class * CE`` (eqs. 2 and 3): ``MSE(P) = 1/N sum_i |P_i - P_i^gt|^2``
   over the 12 entries of ``P = [R | s t]`` with ``s = translation_scale`` (6: the paper's
   model size, see the config); Adam (lr 1e-5, batch 64) with L2 weight decay on
   the convolution weights only ("L2 weight decay over feature extraction"), dropout 0.5.
   Validation (val split): class accuracy, MVE (median geodesic rotation error, degrees),
   Acc_pi/6, median translation error (object units); ``best_encoder.pt`` keeps the lowest MVE.

The online refinement (§4.2) is test-time, not a training stage: :mod:`.online`, used by the
predictor when it is given masks and by ``bench/refine6dof_eval.py``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from poseshape.core.errors import PoseshapeError
from poseshape.engine.checkpoint import unwrap_module
from poseshape.engine.registry import Stage, StageContext
from poseshape.methods.refine6dof.config import Refine6DofConfig, num_classes
from poseshape.methods.refine6dof.data import PoseSamples, compute_clusters, prepare_renders
from poseshape.methods.refine6dof.model import INPUT_CHANNELS, POSE_REPRS, MedoidBank, PoseEncoder
from poseshape.metrics import rotation_error
from poseshape.shapes.voxels import voxelize

__all__ = ["build", "check_config", "pose_mse", "stages"]


def check_config(cfg: Refine6DofConfig) -> None:
    """Raise :class:`PoseshapeError` naming the first invalid option."""
    if cfg.input not in INPUT_CHANNELS:
        raise PoseshapeError(f"refine6dof: input must be one of {sorted(INPUT_CHANNELS)}, got {cfg.input!r}")
    if cfg.pose_repr not in POSE_REPRS:
        raise PoseshapeError(f"refine6dof: pose_repr must be one of {POSE_REPRS}, got {cfg.pose_repr!r}")
    if cfg.cluster_scope not in ("category", "all"):
        raise PoseshapeError(f"refine6dof: cluster_scope must be 'category' or 'all', got {cfg.cluster_scope!r}")
    if cfg.cluster_distance not in ("hog", "voxel_iou"):
        raise PoseshapeError(f"refine6dof: cluster_distance must be 'hog' or 'voxel_iou', got {cfg.cluster_distance!r}")
    if cfg.online_render not in ("edge", "softras"):
        raise PoseshapeError(f"refine6dof: online_render must be 'edge' or 'softras', got {cfg.online_render!r}")
    if cfg.online_loss not in ("iou", "mse", "bce"):
        raise PoseshapeError(f"refine6dof: online_loss must be 'iou', 'mse' or 'bce', got {cfg.online_loss!r}")
    if cfg.num_clusters < 1:
        raise PoseshapeError(f"refine6dof: num_clusters must be >= 1, got {cfg.num_clusters}")
    if not cfg.data.categories:
        raise PoseshapeError(
            "refine6dof: data.categories is empty; name the categories, e.g. --set 'data.categories=[car]'"
        )
    if cfg.image_size < 32:
        raise PoseshapeError(f"refine6dof: image_size must be >= 32, got {cfg.image_size}")


def build(cfg: Refine6DofConfig) -> dict[str, nn.Module]:
    """``{"encoder": PoseEncoder, "medoids": MedoidBank}`` for ``cfg``."""
    check_config(cfg)
    enc = PoseEncoder(
        num_classes(cfg),
        image_size=cfg.image_size,
        in_channels=INPUT_CHANNELS[cfg.input],
        width=cfg.width,
        fc_hidden=cfg.fc_hidden,
        dropout=cfg.dropout,
        slope=cfg.leaky_slope,
        pose_repr=cfg.pose_repr,
        depth_init=cfg.depth_init,
    )
    return {"encoder": enc, "medoids": MedoidBank()}


def pose_mse(P: torch.Tensor, P_gt: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``1/N sum_i |P_i - P_i^gt|^2`` for ``(N, 3, 4)`` pose matrices (squared object units)."""
    if P.shape != P_gt.shape or P.shape[-2:] != (3, 4):
        raise PoseshapeError(f"pose_mse: expected two (N, 3, 4) tensors, got {tuple(P.shape)} and {tuple(P_gt.shape)}")
    return ((P - P_gt) ** 2).flatten(1).sum(1).mean()


# --------------------------------------------------------------------------- stage 1: clusters
class _ClusterBatches:
    """One batch: the medoid buffers (an iterable, so the trainer does not collate it)."""

    def __init__(self, buffers: dict[str, torch.Tensor]):
        self.buffers = buffers

    def __iter__(self):
        yield dict(self.buffers)

    def __len__(self) -> int:
        return 1


def medoid_buffers(cfg: Refine6DofConfig, out_dir=None) -> dict[str, torch.Tensor]:
    """Cluster the configured models and pack the medoids for :meth:`MedoidBank.set`."""
    clusters, coll = compute_clusters(cfg, out_dir)
    meshes, names = [], []
    for i in clusters.medoids:
        cat, mid = clusters.keys[i].split("/", 1)
        meshes.append(coll.mesh(coll.index(cat, mid)))
        names.append(clusters.keys[i])
    vox = torch.stack([voxelize(m, cfg.voxel_res) for m in meshes])
    return MedoidBank.pack(meshes, vox, names, clusters.sizes())


def _cluster_data(cfg: Refine6DofConfig, ctx: StageContext):
    return _ClusterBatches(medoid_buffers(cfg, ctx.out_dir)), None


def _cluster_step(models, batch, ctx):
    bank = unwrap_module(models["medoids"])
    bank.set(**{k: v for k, v in batch.items()})
    expected = num_classes(ctx.config)
    if len(bank) != expected:
        raise PoseshapeError(
            f"refine6dof: clustering gave {len(bank)} clusters but the class branch has "
            f"{expected} outputs (num_clusters x categories)"
        )
    return {
        "loss": torch.zeros((), requires_grad=True),
        "clusters": float(len(bank)),
        "mean_size": float(bank.sizes.float().mean()),
    }


def _no_optimizer(modules: dict[str, nn.Module], cfg: Refine6DofConfig) -> torch.optim.Optimizer:
    # The clusters stage trains nothing; a zero-lr SGD over a private dummy keeps the trainer happy.
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)


# --------------------------------------------------------------------------- stage 2: encoder
def _encoder_data(cfg: Refine6DofConfig, ctx: StageContext):
    clusters, paths = prepare_renders(cfg, ctx.out_dir, progress=False)
    train = PoseSamples(paths["train"], cfg, clusters, what="train")
    val = PoseSamples(paths["val"], cfg, clusters, limit=cfg.val_samples, what="val") if paths.get("val") else None
    return train, val


def encoder_losses(
    out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], cfg: Refine6DofConfig
) -> dict[str, torch.Tensor]:
    """``{"pose": eq. 2, "class": eq. 3}`` of an encoder output and a batch."""
    s = torch.tensor([1.0, 1.0, 1.0, float(cfg.translation_scale)], dtype=out["P"].dtype, device=out["P"].device)
    return {
        "pose": pose_mse(out["P"] * s, batch["P"].to(s.dtype) * s),
        "class": F.cross_entropy(out["logits"], batch["label"]),
    }


def _encoder_step(models, batch, ctx):
    cfg: Refine6DofConfig = ctx.config
    out = models["encoder"](batch["input"])
    parts = encoder_losses(out, batch, cfg)
    loss = cfg.w_pose * parts["pose"] + cfg.w_class * parts["class"]
    with torch.no_grad():
        acc = (out["logits"].argmax(1) == batch["label"]).float().mean()
    return {"loss": loss, "pose": parts["pose"].detach(), "class": parts["class"].detach(), "acc": acc}


def _validate_encoder(models, batches, ctx):
    acc, rot, terr = [], [], []
    for b in batches:
        out = models["encoder"](b["input"])
        acc.append((out["logits"].argmax(1) == b["label"]).float())
        rot.append(rotation_error(out["R"].double(), b["R"].double()))
        terr.append((out["t"] - b["t"]).norm(dim=-1))
    if not acc:
        return {}
    r = torch.cat(rot)
    return {
        "val_acc": float(torch.cat(acc).mean()),
        "val_mve": float(r.median()),
        "val_acc_pi6": float((r < 30).float().mean()),
        "val_t_err": float(torch.cat(terr).median()),
    }


def _adam(modules: dict[str, nn.Module], cfg: Refine6DofConfig) -> torch.optim.Optimizer:
    enc = modules["encoder"]
    feat = {id(p) for p in unwrap_module(enc).feature_parameters()}
    decay = [p for p in enc.parameters() if p.requires_grad and id(p) in feat]
    rest = [p for p in enc.parameters() if p.requires_grad and id(p) not in feat]
    return torch.optim.Adam(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=cfg.lr
    )


def stages(cfg: Refine6DofConfig) -> list[Stage]:
    """``clusters`` then ``encoder`` (see the module docstring)."""
    check_config(cfg)
    common: dict[str, Any] = {"num_workers": cfg.num_workers}
    return [
        Stage(
            "clusters", train=["medoids"], optimizer=_no_optimizer, data=_cluster_data, step=_cluster_step, iterations=1
        ),
        Stage(
            "encoder",
            train=["encoder"],
            optimizer=_adam,
            data=_encoder_data,
            step=_encoder_step,
            iterations=cfg.encoder_iters,
            batch_size=cfg.batch_size,
            drop_last=False,
            validate=_validate_encoder,
            val_every=cfg.val_every,
            best_metric="val_mve",
            best_mode="min",
            grad_clip=cfg.grad_clip,
            **common,
        ),
    ]
