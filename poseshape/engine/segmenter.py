"""A learned object mask for images that come without one (ours; issue 19).

GrabCut seeded by the whole frame (:func:`poseshape.engine.grabcut.auto_mask`) finds the object on
plain backgrounds but not in clutter (mean IoU 0.50-0.78 on the natural-like renders,
bench/RESULTS.md "Without a mask"). This module adds a small U-Net, trained by
``scripts/train_segmenter.sh`` on the data engine's natural-like renders (textures, lights,
cluttered backgrounds, blur, off-centre and truncated objects, occluders) of the world mix's
*training* models (:mod:`poseshape.data.world`: procedural shapes plus ``../shared/data`` CAD),
and shipped as ``poseshape/assets/segmenter.pt`` (project-made weights, no data).

Data flow: ``(H, W, 3)`` RGB -> resized to ``(3, S, S)`` in [0, 1] -> :class:`SegmenterNet` ->
``(1, S, S)`` object probability -> resized back -> ``(H, W)`` probability (:func:`segment_probability`)
-> threshold, the pieces of at least a tenth of the largest one (:func:`learned_mask`).

The checkpoint is a plain ``torch.save`` dict (``format``, ``version``, ``config``, ``state_dict``,
``meta``) read with ``weights_only=True`` and validated before use; :func:`train_segmenter` writes it
atomically and resumes from its own ``last.pt``.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from poseshape.core.errors import CheckpointError, PoseshapeError, ShapeError
from poseshape.data.dataset import ShardDataset
from poseshape.engine.grabcut import _largest_parts, _rgb_uint8, grabcut_from_prior

__all__ = [
    "SEGMENTER_ASSET",
    "SegmenterConfig",
    "SegmenterNet",
    "learned_mask",
    "load_segmenter",
    "save_segmenter",
    "segment_probability",
    "segmenter_available",
    "train_segmenter",
]

#: The shipped weights (``scripts/train_segmenter.sh``).
SEGMENTER_ASSET = Path(__file__).resolve().parents[1] / "assets" / "segmenter.pt"
_FORMAT = "poseshape-segmenter"
_VERSION = 1


@dataclass(frozen=True)
class SegmenterConfig:
    """The network's shape (stored in the checkpoint).

    Attributes:
        image_size: ``S``, the side the image is resized to (a multiple of ``2 ** depth``).
        width: channels of the first level (doubled at each of the ``depth`` levels).
        depth: down-sampling levels of the U-Net.
    """

    image_size: int = 64
    width: int = 16
    depth: int = 3

    def __post_init__(self) -> None:
        for name in ("image_size", "width", "depth"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ShapeError(f"SegmenterConfig.{name}: expected an int >= 1, got {v!r}")
        if self.image_size % (2**self.depth):
            raise ShapeError(
                f"SegmenterConfig.image_size: {self.image_size} is not a multiple of 2 ** depth = {2**self.depth}"
            )


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SegmenterNet(nn.Module):
    """U-Net (Ronneberger et al. 2015, small): ``(B, 3, S, S)`` RGB in [0, 1] -> ``(B, 1, S, S)`` logits.

    Encoder: ``depth`` levels of two 3x3 conv + BN + ReLU, then 2x2 max-pooling; a bottleneck
    block; decoder: bilinear up-sampling, concatenation with the skip, two 3x3 convs; a 1x1
    conv to one logit per pixel. The input is normalised by fixed per-channel statistics
    (mean 0.5, std 0.25) inside the network.
    """

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SegmenterConfig()
        ch = [cfg.width * 2**i for i in range(cfg.depth + 1)]
        self.down = nn.ModuleList([_block(3 if i == 0 else ch[i - 1], ch[i]) for i in range(cfg.depth)])
        self.mid = _block(ch[cfg.depth - 1], ch[cfg.depth])
        self.up = nn.ModuleList([_block(ch[i + 1] + ch[i], ch[i]) for i in reversed(range(cfg.depth))])
        self.head = nn.Conv2d(ch[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ShapeError(f"SegmenterNet: expected (B, 3, S, S) images, got {tuple(x.shape)}")
        h = (x - 0.5) / 0.25
        skips = []
        for blk in self.down:
            h = blk(h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = self.mid(h)
        for blk, skip in zip(self.up, reversed(skips)):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = blk(torch.cat([h, skip], 1))
        return self.head(h)


# ------------------------------------------------------------------------------ checkpoints
def save_segmenter(path: str | os.PathLike, net: SegmenterNet, meta: dict | None = None, **extra) -> Path:
    """Write ``net`` (and ``extra`` tensors/numbers, e.g. optimiser state) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": _FORMAT,
        "version": _VERSION,
        "config": asdict(net.config),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "meta": dict(meta or {}),
        **extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: no segmenter checkpoint there (train one with scripts/train_segmenter.sh)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, unsafe pickle
        raise CheckpointError(f"{path}: not a readable segmenter checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: not a poseshape segmenter checkpoint (format {_FORMAT!r} expected)")
    if blob.get("version") != _VERSION:
        raise CheckpointError(f"{path}: segmenter checkpoint version {blob.get('version')!r}, expected {_VERSION}")
    return blob


def _net_from(blob: dict, path: Path) -> SegmenterNet:
    try:
        net = SegmenterNet(SegmenterConfig(**blob["config"]))
        net.load_state_dict(blob["state_dict"])
    except (TypeError, KeyError, RuntimeError, ShapeError) as e:
        raise CheckpointError(f"{path}: the segmenter weights do not fit its config ({e})") from None
    for k, v in net.state_dict().items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{path}: non-finite values in {k}")
    return net.eval()


def load_segmenter(path: str | os.PathLike | None = None) -> SegmenterNet:
    """The segmenter at ``path`` (default: the shipped :data:`SEGMENTER_ASSET`), in eval mode, on CPU.

    Raises:
        CheckpointError: the file is missing, corrupt, of another format or version, or its
            weights do not match its config.
    """
    p = Path(path) if path is not None else SEGMENTER_ASSET
    return _cached(str(p.resolve()), p.stat().st_mtime_ns if p.is_file() else -1)


@functools.lru_cache(maxsize=4)
def _cached(path: str, _mtime: int) -> SegmenterNet:
    p = Path(path)
    return _net_from(_read(p), p)


def segmenter_available() -> bool:
    """Whether the shipped segmenter exists (``--mask auto`` then uses it)."""
    return SEGMENTER_ASSET.is_file()


# ------------------------------------------------------------------------------ inference
@torch.no_grad()
def segment_probability(image, net: SegmenterNet | None = None) -> np.ndarray:
    """The object probability of every pixel.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, or float in [0, 1].
        net: a :class:`SegmenterNet` (default: :func:`load_segmenter`'s shipped one).

    Returns:
        ``(H, W)`` float32 in [0, 1].
    """
    a = _rgb_uint8(image).astype(np.float32) / 255.0
    H, W = a.shape[:2]
    if min(H, W) < 8:
        raise ShapeError(f"image: {W}x{H} is too small to find an object in")
    net = net or load_segmenter()
    S = net.config.image_size
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(S, S), mode="area" if min(H, W) >= S else "bilinear")
    p = torch.sigmoid(net(x))
    p = F.interpolate(p, size=(H, W), mode="bilinear", align_corners=False)
    return p[0, 0].clamp(0, 1).numpy()


def learned_mask(
    image, net: SegmenterNet | None = None, threshold: float = 0.5, grabcut: bool = False, max_side: int = 256
) -> np.ndarray:
    """The object's mask by the segmenter: ``segment_probability > threshold``, keeping the pieces
    of at least a tenth of the largest one; with ``grabcut``, the probability seeds GrabCut
    (:func:`poseshape.engine.grabcut.grabcut_from_prior`, at most ``max_side`` pixels a side),
    which moves the outline to the image's edges (its classes have their own fixed thresholds;
    ``threshold`` only decides whether the segmenter found anything).

    Returns:
        ``(H, W)`` bool, True on the object.

    Raises:
        ShapeError: a bad image or threshold; PoseshapeError: no pixel is on the object.
    """
    if not 0.0 < threshold < 1.0:
        raise ShapeError(f"threshold: expected a number in (0, 1), got {threshold}")
    prob = segment_probability(image, net)
    m = prob > threshold
    if grabcut and m.any():
        import cv2

        a = _rgb_uint8(image)
        H, W = a.shape[:2]
        f = min(1.0, max_side / max(H, W))
        if f < 1.0:
            size = (max(8, round(W * f)), max(8, round(H * f)))
            small = grabcut_from_prior(cv2.resize(a, size, interpolation=cv2.INTER_AREA), cv2.resize(prob, size))
            m = cv2.resize(small.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)
        else:
            m = grabcut_from_prior(a, prob)
    if not m.any():
        raise PoseshapeError(
            "the automatic mask (the learned segmenter) found no object; give a mask (--mask M), "
            "or a box around the object (--mask box:x0,y0,x1,y1)"
        )
    return _largest_parts(m)


# ------------------------------------------------------------------------------ training
def _batches(folders: Sequence[str | os.PathLike], size: int):
    """All ``(image (N, 3, S, S), mask (N, 1, S, S))`` of the shard folders, resized to ``size``.

    The target is the *visible* object: the data engine's masks are amodal, so the pixels its
    ``occlusion`` map marks as hidden by an occluder are taken out."""
    imgs, masks = [], []
    for f in folders:
        ds = ShardDataset(f, keys=("image", "mask", "occlusion"))  # occlusion: only where rendered
        for i in range(len(ds)):
            it = ds[i]
            imgs.append(it["image"].float())
            m = it["mask"].float() > 0.5
            if "occlusion" in it:
                m = m & ~it["occlusion"].bool().reshape(m.shape)
            masks.append(m.float())
    if not imgs:
        raise PoseshapeError(f"train_segmenter: no samples in {list(map(str, folders))}")
    x = torch.stack(imgs)
    y = torch.stack(masks)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        y = (F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False) > 0.5).float()
    return x, y


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice (``1 - 2|p t| / (|p| + |t|)`` per image), both means over the batch.

    Args:
        logits: ``(B, 1, S, S)``; target: ``(B, 1, S, S)`` in {0, 1}.
    """
    if logits.shape != target.shape:
        raise ShapeError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


def _augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flips and per-image brightness / contrast jitter (the renders already vary
    textures, lights, backgrounds, blur and framing)."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    y = torch.where(flip[:, None, None, None], y.flip(-1), y)
    gain = 0.75 + 0.5 * torch.rand(x.shape[0], 1, 1, 1, generator=gen)
    bias = 0.1 * (torch.rand(x.shape[0], 1, 1, 1, generator=gen) - 0.5)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * gain + mean + bias).clamp(0, 1), y


def train_segmenter(
    train: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    val: Sequence[str | os.PathLike] = (),
    config: SegmenterConfig | None = None,
    steps: int = 3000,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    val_every: int = 500,
    checkpoint_every: int = 250,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Train :class:`SegmenterNet` on shard folders rendered by the data engine.

    Adam at ``lr`` with a cosine decay to ``lr / 20``, :func:`segmentation_loss`, random flips and
    brightness / contrast jitter. Writes ``out/last.pt`` every ``checkpoint_every`` steps (with the
    optimiser state and the step: a stopped run continues where it stopped when called again
    with ``resume=True``), ``out/log.csv`` (step, loss, val IoU) and finally ``out/segmenter.pt``
    (weights only, what ``poseshape/assets/segmenter.pt`` is a copy of).

    Args:
        train, val: shard folders (``image`` ``(3, H, W)`` and ``mask`` ``(1, H, W)``).
        out: run folder.

    Returns:
        The path of ``out/segmenter.pt``.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or SegmenterConfig()
    if steps < 1 or batch_size < 1:
        raise ShapeError(f"train_segmenter: steps and batch_size must be >= 1, got {steps}, {batch_size}")
    torch.manual_seed(seed)
    net = SegmenterNet(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    start = 0
    last = out / "last.pt"
    if resume and last.is_file():
        blob = _read(last)
        if blob["config"] != asdict(cfg) or blob.get("meta", {}).get("steps") != steps:
            raise CheckpointError(f"{last}: a run with another config or step count; use another out folder")
        net = _net_from(blob, last).train()
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        opt.load_state_dict(blob["optimizer"])
        start = int(blob["step"])
    x, y = _batches(train, cfg.image_size)
    xv, yv = _batches(val, cfg.image_size) if val else (None, None)
    gen = torch.Generator().manual_seed(seed * 1000003 + start)
    meta = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "train_samples": int(x.shape[0])}
    log = out / "log.csv"
    if start == 0 or not log.is_file():
        log.write_text("step,loss,val_iou,seconds\n")
    t0 = time.perf_counter()
    net.train()
    it = range(start, steps)
    bar = tqdm(it, desc="segmenter", unit="step", disable=not progress)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
        xb, yb = _augment(x[idx], y[idx], gen)
        loss = segmentation_loss(net(xb), yb)
        if not torch.isfinite(loss):
            raise PoseshapeError(f"train_segmenter: the loss became {float(loss)} at step {step + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss = float(loss.detach())
        done = step + 1
        val_iou = float("nan")
        if xv is not None and (done % val_every == 0 or done == steps):
            val_iou = _mean_iou(net, xv, yv)
            net.train()
            bar.set_postfix(loss=f"{loss:.3f}", val_iou=f"{val_iou:.3f}")
        if done % 50 == 0 or done == steps or not math.isnan(val_iou):
            with log.open("a") as fh:
                fh.write(f"{done},{loss:.5f},{val_iou:.4f},{time.perf_counter() - t0:.1f}\n")
        if done % checkpoint_every == 0 or done == steps:
            save_segmenter(last, net, meta, optimizer=opt.state_dict(), step=done)
    net.eval()
    final = {**meta, "val_iou": _mean_iou(net, xv, yv) if xv is not None else None}
    return save_segmenter(out / "segmenter.pt", net, final)


@torch.no_grad()
def _mean_iou(net: SegmenterNet, x: torch.Tensor, y: torch.Tensor, chunk: int = 64) -> float:
    net.eval()
    ious = []
    for i in range(0, x.shape[0], chunk):
        p = net(x[i : i + chunk]) > 0
        t = y[i : i + chunk] > 0.5
        inter = (p & t).flatten(1).sum(1).float()
        union = (p | t).flatten(1).sum(1).float()
        ious.append(torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)))
    return float(torch.cat(ious).mean())


def _main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m poseshape.engine.segmenter", description="train the mask segmenter on rendered shards"
    )
    ap.add_argument("--train", nargs="+", required=True, help="shard folders to learn from")
    ap.add_argument("--val", nargs="*", default=[], help="shard folders to validate on")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--image-size", type=int, default=SegmenterConfig.image_size)
    ap.add_argument("--width", type=int, default=SegmenterConfig.width)
    ap.add_argument("--depth", type=int, default=SegmenterConfig.depth)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    path = train_segmenter(
        a.train,
        a.out,
        val=a.val,
        config=SegmenterConfig(a.image_size, a.width, a.depth),
        steps=a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        resume=not a.no_resume,
        progress=not a.no_progress,
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
