"""The training stages of ``retrieval`` (paper 004, §3.2-3.4).

Modules: ``embed`` (:class:`.model.VoxelEmbeddingNet`), ``heads`` (:class:`.model.EmbeddingHeads`),
``regressor`` (:class:`.model.ImageRegressor`) and ``bank`` (:class:`.database.ModelBank`, buffers).

1. ``database``: load and voxelise (32^3) every configured CAD model into ``bank`` (one step).
2. ``embedding`` (stage I): each batch takes models' canonical grids, rotates them by random
   rotations drawn online (seeded by the step), re-binarised at 0.5, and trains ``embed`` +
   ``heads``: shape CE over the models (or a triplet loss), anchor CE + Huber on the
   L2-normalised residual of the nearest anchor. Adam 1e-4, ``stage1_epochs`` x
   ``stage1_samples``.
3. ``index``: each model's mean shape embedding over ``index_rotations`` rotations
   (:func:`.database.embed_models`) goes into ``bank`` with the network's fingerprint (one step).
4. ``regression`` (stage II): ``regressor`` on renders; L1 to the stage-I embeddings of the
   true model in the true rotation, the frozen stage-I heads on the image embeddings (shape
   CE, anchor CE + Huber) and translation anchors (CE + Huber on the cell residual).
   Validation: top-1 retrieval (nearest database embedding), median rotation error, Acc@pi/6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from poseshape.core.errors import PoseshapeError
from poseshape.engine.checkpoint import unwrap_module
from poseshape.engine.registry import Stage, StageContext
from poseshape.geometry.anchors import TranslationAnchors, super_fibonacci_anchors
from poseshape.geometry.rotations import quaternion_geodesic_distance
from poseshape.losses import anchor_losses
from poseshape.methods.retrieval.config import RetrievalConfig
from poseshape.methods.retrieval.data import (
    ImageSamples,
    ModelIndices,
    config_collection,
    prepare_renders,
    random_rotations,
)
from poseshape.methods.retrieval.database import (
    ExactIndex,
    ModelBank,
    collection_buffers,
    embed_models,
    network_fingerprint,
)
from poseshape.methods.retrieval.model import (
    BACKBONES,
    EmbeddingHeads,
    ImageRegressor,
    VoxelEmbeddingNet,
    encode_rotation,
    make_anchors,
    rotate_grids,
)

__all__ = ["build", "check_config", "embedding_losses", "regression_losses", "stages", "translation_anchors"]


def check_config(cfg: RetrievalConfig) -> None:
    """Raise :class:`PoseshapeError` naming the first invalid option."""
    if cfg.shape_loss not in ("ce", "triplet"):
        raise PoseshapeError(f"retrieval: shape_loss must be 'ce' or 'triplet', got {cfg.shape_loss!r}")
    if cfg.backbone not in BACKBONES:
        raise PoseshapeError(f"retrieval: backbone must be one of {BACKBONES}, got {cfg.backbone!r}")
    if cfg.voxel_res != 32:
        raise PoseshapeError(f"retrieval: voxel_res must be 32 (VoxNet input), got {cfg.voxel_res}")
    if cfg.embed_dim < 1 or cfg.batch_size < 2 or cfg.stage2_batch_size < 1:
        raise PoseshapeError("retrieval: embed_dim >= 1, batch_size >= 2 and stage2_batch_size >= 1 are required")


def translation_anchors(cfg: RetrievalConfig) -> TranslationAnchors:
    """The translation cells of ``cfg`` (``t_low``, ``t_high``, ``t_counts``)."""
    return TranslationAnchors(tuple(cfg.t_low), tuple(cfg.t_high), tuple(int(c) for c in cfg.t_counts))


def index_rotations(cfg: RetrievalConfig) -> torch.Tensor:
    """The ``index_rotations`` super-Fibonacci rotations ``(R, 4)`` the database entries average over."""
    return super_fibonacci_anchors(int(cfg.index_rotations)).float()


def build(cfg: RetrievalConfig) -> dict[str, nn.Module]:
    """``{"embed", "heads", "regressor", "bank"}`` for ``cfg`` (the model count from the collection)."""
    check_config(cfg)
    num_models = len(config_collection(cfg))
    anchors = make_anchors(cfg.anchor_grid, cfg.anchor_n, cfg.anchor_dedup)
    return {
        "embed": VoxelEmbeddingNet(cfg.embed_dim, cfg.voxnet_channels, cfg.voxel_res, cfg.disentangle),
        "heads": EmbeddingHeads(cfg.embed_dim, num_models, anchors),
        "regressor": ImageRegressor(
            cfg.embed_dim, translation_anchors(cfg), cfg.backbone, cfg.backbone_width, cfg.disentangle
        ),
        "bank": ModelBank(),
    }


def _adam(modules: dict[str, nn.Module], cfg: RetrievalConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for m in modules.values() for p in m.parameters() if p.requires_grad], lr=cfg.lr)


def _no_optimizer(modules, cfg) -> torch.optim.Optimizer:
    # buffer-only stages: a zero-lr SGD over a private dummy keeps the trainer happy
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)


class _Once:
    """One batch (an iterable, so the trainer does not collate it)."""

    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        yield self.batch

    def __len__(self) -> int:
        return 1


# --------------------------------------------------------------------------- 1: database
def _database_data(cfg: RetrievalConfig, ctx: StageContext):
    buffers, _ = collection_buffers(config_collection(cfg), cfg.voxel_res)
    return _Once(buffers), None


def _database_step(models, batch, ctx):
    bank: ModelBank = unwrap_module(models["bank"])
    bank.set(**batch)
    heads = unwrap_module(models["heads"])
    if len(bank) != heads.shape.out_features:
        raise PoseshapeError(
            f"retrieval: {len(bank)} usable models but the shape head has {heads.shape.out_features} classes "
            "(a mesh file failed to load; fix or remove it)"
        )
    return {"loss": torch.zeros((), requires_grad=True), "models": float(len(bank))}


# --------------------------------------------------------------------------- 2: embedding (stage I)
def rotated_grids(bank: ModelBank, model: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Grids ``(B, 1, 32, 32, 32)`` of database models ``model (B,)`` rotated by ``q (B, 4)``,
    re-binarised at 0.5 (binvox-like occupancy)."""
    vox = bank.voxels[model].float()[:, None]
    return (rotate_grids(vox, q.to(vox.dtype)) > 0.5).float()


def embedding_losses(
    emb: dict[str, torch.Tensor],
    head_out: dict[str, torch.Tensor],
    model: torch.Tensor,
    q: torch.Tensor,
    anchors: torch.Tensor,
    cfg: RetrievalConfig,
) -> dict[str, torch.Tensor]:
    """``{"shape", "anchor", "residual"}`` losses of stage I (or of the heads in stage II).

    ``emb``: embeddings ``(B, E)``; ``head_out``: :class:`EmbeddingHeads` output; ``model``
    ``(B,)`` database rows; ``q (B, 4)`` true rotations.
    """
    idx, res = encode_rotation(q.to(anchors.dtype), anchors)
    ce_a, hub = anchor_losses(head_out["anchor_logits"], head_out["residual"], idx, res.to(q.dtype), cfg.huber_delta)
    if cfg.shape_loss == "ce":
        shape = F.cross_entropy(head_out["shape_logits"], model)
    else:  # triplet: positive = another sample of the same model, negative = another model
        z = emb["shape"]
        same = model[:, None] == model[None, :]
        d = torch.cdist(z, z)
        eye = torch.eye(len(model), dtype=torch.bool, device=z.device)
        pos = torch.where(same & ~eye, d, torch.full_like(d, -1)).amax(1)
        neg = torch.where(~same, d, torch.full_like(d, float("inf"))).amin(1)
        ok = (pos >= 0) & torch.isfinite(neg)
        shape = F.relu(pos - neg + cfg.triplet_margin)[ok].mean() if ok.any() else z.sum() * 0
    return {"shape": shape, "anchor": ce_a, "residual": hub}


def _embedding_step(models, batch, ctx):
    cfg: RetrievalConfig = ctx.config
    bank: ModelBank = unwrap_module(models["bank"])
    model = batch["model"]
    if cfg.shape_loss == "triplet":  # two rotations of every model in the batch
        model = torch.cat([model, model])
    q = random_rotations(len(model), ctx.seed, "stage1", ctx.step, device=model.device)
    grids = rotated_grids(bank, model, q)
    emb = models["embed"](grids)
    heads = models["heads"]
    out = heads(emb["shape"], emb["pose"])
    parts = embedding_losses(emb, out, model, q, unwrap_module(heads).anchors, cfg)
    loss = cfg.w_shape * parts["shape"] + cfg.w_anchor * parts["anchor"] + cfg.w_residual * parts["residual"]
    with torch.no_grad():
        acc = (out["shape_logits"].argmax(1) == model).float().mean()
        err = quaternion_geodesic_distance(unwrap_module(heads).rotation(out), q).rad2deg().median()
    return {"loss": loss, **{k: v.detach() for k, v in parts.items()}, "acc": acc, "rot_med_deg": err}


def _validate_embedding(models, batches, ctx):
    bank: ModelBank = unwrap_module(models["bank"])
    heads = unwrap_module(models["heads"])
    M = len(bank)
    model = torch.arange(M, device=bank.voxels.device).repeat(max(1, 256 // M))
    q = random_rotations(len(model), ctx.seed, "stage1-val", device=model.device)
    emb = models["embed"](rotated_grids(bank, model, q))
    out = heads(emb["shape"], emb["pose"])
    _, nn_idx = ExactIndex(embed_models(models["embed"], bank.voxels, index_rotations(ctx.config))).search(
        emb["shape"], 1
    )
    err = quaternion_geodesic_distance(heads.rotation(out), q).rad2deg()
    return {
        "val_cls_acc": float((out["shape_logits"].argmax(1) == model).float().mean()),
        "val_top1": float((nn_idx[:, 0] == model).float().mean()),
        "val_rot_med_deg": float(err.median()),
        "val_acc_pi6": float((err < 30).float().mean()),
    }


# --------------------------------------------------------------------------- 3: index
def _index_step(models, batch, ctx):
    bank: ModelBank = unwrap_module(models["bank"])
    embed = unwrap_module(models["embed"])
    z = embed_models(embed, bank.voxels, index_rotations(ctx.config))
    bank.set_embeddings(z, network_fingerprint(embed))
    return {"loss": torch.zeros((), requires_grad=True), "indexed": float(len(bank))}


# --------------------------------------------------------------------------- 4: regression (stage II)
def _regression_data(cfg: RetrievalConfig, ctx: StageContext, bank_names):
    paths = prepare_renders(cfg, ctx.out_dir, splits=("train", "val"))
    names = bank_names()
    train = ImageSamples(paths["train"], names)
    val = ImageSamples(paths["val"], names) if paths.get("val") else None
    return train, val


def regression_losses(models, batch, cfg: RetrievalConfig) -> tuple[dict[str, torch.Tensor], dict]:
    """Stage II losses ``{"embed_l1", "shape", "anchor", "residual", "t_cls", "t_res"}`` and the outputs."""
    bank: ModelBank = unwrap_module(models["bank"])
    heads = unwrap_module(models["heads"])
    with torch.no_grad():
        target = models["embed"](rotated_grids(bank, batch["model"], batch["q"]))
    out = models["regressor"](batch["image"])
    l1 = F.l1_loss(out["shape"], target["shape"]) + (F.l1_loss(out["pose"], target["pose"]) if cfg.disentangle else 0.0)
    head_out = models["heads"](out["shape"], out["pose"])
    parts = embedding_losses(out, head_out, batch["model"], batch["q"], heads.anchors, cfg)
    ta = unwrap_module(models["regressor"]).t_anchors
    t_idx, t_res = ta.encode(batch["t"].float())
    t_ce, t_hub = anchor_losses(out["t_logits"], out["t_residual"], t_idx, t_res, cfg.huber_delta)
    return {"embed_l1": l1, **parts, "t_cls": t_ce, "t_res": t_hub}, {"out": out, "heads": head_out}


def _regression_step(models, batch, ctx):
    cfg: RetrievalConfig = ctx.config
    parts, _ = regression_losses(models, batch, cfg)
    loss = (
        cfg.w_embed * parts["embed_l1"]
        + cfg.w_shape * parts["shape"]
        + cfg.w_anchor * parts["anchor"]
        + cfg.w_residual * parts["residual"]
        + cfg.w_translation * (parts["t_cls"] + parts["t_res"])
    )
    return {"loss": loss, **{k: v.detach() for k, v in parts.items()}}


def _validate_regression(models, batches, ctx):
    bank: ModelBank = unwrap_module(models["bank"])
    heads = unwrap_module(models["heads"])
    reg = unwrap_module(models["regressor"])
    index = ExactIndex(bank.embeddings)
    hit, err, terr = [], [], []
    for b in batches:
        out = models["regressor"](b["image"])
        _, i = index.search(out["shape"], 1)
        hit.append((i[:, 0] == b["model"]).float())
        q = heads.rotation(heads(out["shape"], out["pose"]))
        err.append(quaternion_geodesic_distance(q, b["q"].to(q.dtype)).rad2deg())
        terr.append((reg.translation(out) - b["t"]).norm(dim=-1))
    if not hit:
        return {}
    e = torch.cat(err)
    return {
        "val_top1": float(torch.cat(hit).mean()),
        "val_rot_med_deg": float(e.median()),
        "val_acc_pi6": float((e < 30).float().mean()),
        "val_t_err": float(torch.cat(terr).median()),
    }


def stages(cfg: RetrievalConfig) -> list[Stage]:
    """``database``, ``embedding`` (stage I), ``index``, ``regression`` (stage II)."""
    check_config(cfg)
    num_models = len(config_collection(cfg))

    def embedding_data(c, ctx):
        return ModelIndices(c.stage1_samples, num_models), _Once({})  # validation draws its own grids

    def index_data(c, ctx):
        return _Once({}), None

    def regression_data(c, ctx):
        # the database stage refuses a collection with broken files, so the bank's rows are
        # the collection's models in order
        return _regression_data(c, ctx, lambda: [f"{m.category}/{m.model_id}" for m in config_collection(c).models])

    common = {"num_workers": cfg.num_workers}
    return [
        Stage(
            "database", train=["bank"], optimizer=_no_optimizer, data=_database_data, step=_database_step, iterations=1
        ),
        Stage(
            "embedding",
            train=["embed", "heads"],
            optimizer=_adam,
            data=embedding_data,
            step=_embedding_step,
            epochs=cfg.stage1_epochs,
            batch_size=cfg.batch_size,
            validate=_validate_embedding,
            val_every=cfg.val_every,
            **common,
        ),
        Stage("index", train=["bank"], optimizer=_no_optimizer, data=index_data, step=_index_step, iterations=1),
        Stage(
            "regression",
            train=["regressor"],
            optimizer=_adam,
            data=regression_data,
            step=_regression_step,
            epochs=cfg.stage2_epochs,
            batch_size=cfg.stage2_batch_size,
            validate=_validate_regression,
            val_every=cfg.val_every,
            best_metric="val_rot_med_deg",
            best_mode="min",
            **common,
        ),
    ]
