"""A ``torch.utils.data.Dataset`` over the shards written by :mod:`poseshape.data.synth`.

Random access maps a sample index to ``(shard, offset)`` through ``index.json`` (no shard
is opened to build the index) and keeps the last few loaded shards in a small LRU cache
(per process, so it works with ``DataLoader(num_workers > 0)``: each worker fills its own
cache; shards are small, so shuffled access costs one shard decode per cache miss). Only the shard files named in ``index.json`` are ever opened, never a hidden
``.tmp`` file; a shard of another ``CONVENTIONS_VERSION`` is refused and a corrupt one
raises :class:`poseshape.core.errors.FileFormatError` naming it.

Each item is a dict of tensors in the project conventions:

==================  =================  ==============================================
key                 dtype              shape / meaning
==================  =================  ==============================================
``image``           float32            ``(3, H, W)`` in [0, 1]
``mask``            float32            ``(1, H, W)`` in {0, 1}
``R``, ``t``, ``K``  float32           ``(3, 3)``, ``(3,)``, ``(3, 3)`` (K in pixels)
``viewpoint``       float32            ``(4,)`` azimuth, elevation, theta (rad), distance
``voxels``          float32            ``(1, D, D, D)`` aligned occupancy (if stored)
``posed_voxels``    float32            ``(1, P, P, P)`` (if stored)
``depth``           float32            ``(1, H, W)`` (if stored; 0 off the object)
``category``        int64              ``()`` index into :attr:`ShardDataset.categories`
``category_name``   str                category name
``model_id``        str                model id
``model_index``     int64              ``()`` index into ``index.json["models"]``
``index``           int64              ``()`` global sample index
``rendered``        bool               always ``True`` (synthetic data)
==================  =================  ==============================================
"""

from __future__ import annotations

import bisect
import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from poseshape.core.errors import FileFormatError
from poseshape.data.synth import FORMAT_VERSION, read_shard, unpack_voxels
from poseshape.geometry.conventions import CONVENTIONS_VERSION

__all__ = ["Augment", "ShardDataset", "read_index"]


def read_index(root: str | Path) -> dict[str, Any]:
    """Read and validate ``root/index.json``.

    Raises:
        FileFormatError: missing or corrupt index, another format or conventions version.
    """
    root = Path(root)
    path = root / "index.json"
    if not root.is_dir():
        raise FileFormatError(f"{root}: data set folder does not exist")
    if not path.is_file():
        raise FileFormatError(f"{path}: missing index (is {root} a folder written by `poseshape data render`?)")
    try:
        idx = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: corrupt index ({exc})") from exc
    for k in ("format_version", "conventions_version", "shards", "num_samples", "categories", "models"):
        if k not in idx:
            raise FileFormatError(f"{path}: not a poseshape shard index (missing {k!r})")
    if idx["format_version"] != FORMAT_VERSION:
        raise FileFormatError(f"{path}: format version {idx['format_version']}, this code reads {FORMAT_VERSION}")
    if idx["conventions_version"] != CONVENTIONS_VERSION:
        raise FileFormatError(
            f"{path}: written under conventions version {idx['conventions_version']}, this code uses "
            f"{CONVENTIONS_VERSION}; re-render the data set"
        )
    return idx


class Augment:
    """On-the-fly augmentation: colour jitter and crop jitter (``K`` updated accordingly).

    Args:
        brightness, contrast, saturation: max relative changes (0 disables).
        crop_shift: max shift of the crop window, as a fraction of the image side.
        crop_scale: max relative change of the crop window's side.
        seed: base seed; the item's randomness is ``default_rng([seed, epoch, index])`` so
            augmentation is reproducible (set :attr:`epoch` per epoch).

    The crop jitter resamples the image (bilinear), mask and depth (nearest) through an
    axis-aligned similarity ``u' = a u + b`` and sets ``K' = diag(a, a, 1) K + b``, so the
    pose still explains the mask exactly (up to resampling).
    """

    def __init__(
        self,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        crop_shift: float = 0.05,
        crop_scale: float = 0.1,
        seed: int = 0,
    ):
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.crop_shift, self.crop_scale, self.seed = crop_shift, crop_scale, seed
        self.epoch = 0

    def __call__(self, item: dict[str, Any], index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        img = item["image"]
        b, c, s = rng.uniform(-1, 1, size=3)
        img = img * (1 + self.brightness * b)
        mean = img.mean()
        img = (img - mean) * (1 + self.contrast * c) + mean
        gray = img.mean(0, keepdim=True)
        img = ((img - gray) * (1 + self.saturation * s) + gray).clamp(0, 1)
        item["image"] = img
        if self.crop_shift > 0 or self.crop_scale > 0:
            H, W = img.shape[-2:]
            dx, dy, ds = rng.uniform(-1, 1, size=3)
            a = 1.0 / (1 + self.crop_scale * ds)  # zoom factor (> 1 zooms in)
            # output pixel u' maps to input u = (u' - b) / a; choose the window's centre shift
            cx = W / 2 + self.crop_shift * dx * W
            cy = H / 2 + self.crop_shift * dy * H
            bx, by = W / 2 - a * cx, H / 2 - a * cy
            ys = (torch.arange(H, dtype=torch.float32) + 0.5 - by) / a
            xs = (torch.arange(W, dtype=torch.float32) + 0.5 - bx) / a
            gy, gx = torch.meshgrid(ys / H * 2 - 1, xs / W * 2 - 1, indexing="ij")
            grid = torch.stack([gx, gy], -1)[None]

            def warp(x, mode):
                return torch.nn.functional.grid_sample(
                    x[None], grid, mode=mode, padding_mode="zeros", align_corners=False
                )[0]

            item["image"] = warp(item["image"], "bilinear")
            item["mask"] = warp(item["mask"], "nearest")
            if "depth" in item:
                item["depth"] = warp(item["depth"], "nearest")
            A = torch.tensor([[a, 0.0, bx], [0.0, a, by], [0.0, 0.0, 1.0]], dtype=item["K"].dtype)
            item["K"] = A @ item["K"]
        return item


class ShardDataset(Dataset):
    """Samples of a rendered data set (see the module docstring for the item layout).

    Args:
        root: folder with ``index.json`` and the shards.
        split: keep only samples of this split (``None``: all).
        categories: keep only these categories (names).
        augment: an :class:`Augment` (or any callable ``(item, index) -> item``).
        cache_shards: number of decoded shards kept per process (LRU).
        allow_incomplete: use an interrupted data set's finished shards instead of raising.
        keys: subset of item keys to return (default: all available).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        categories: Sequence[str] | None = None,
        augment=None,
        cache_shards: int = 4,
        allow_incomplete: bool = False,
        keys: Sequence[str] | None = None,
    ):
        self.root = Path(root)
        self.meta = read_index(self.root)
        self.categories: list[str] = list(self.meta["categories"])
        self.augment = augment
        self.cache_shards = max(1, int(cache_shards))
        self.keys = set(keys) if keys is not None else None
        shards = self.meta["shards"]
        if not self.meta.get("complete", False):
            present = [s for s in shards if (self.root / s["file"]).is_file()]
            if not allow_incomplete:
                raise FileFormatError(
                    f"{self.root / 'index.json'}: the data set is incomplete ({len(present)} of {len(shards)} "
                    "shards); rerun `poseshape data render` with the same arguments to finish it, or pass "
                    "allow_incomplete=True"
                )
            shards = present
        self._shards = shards
        self._starts = [s["first"] for s in shards]
        wanted_cats = set(categories) if categories is not None else None
        if wanted_cats is not None:
            unknown = wanted_cats - set(self.categories)
            if unknown:
                raise FileFormatError(f"{self.root}: unknown categories {sorted(unknown)}; it has {self.categories}")
        ranges = []
        for m in self.meta["models"]:
            if split is not None and m["split"] != split:
                continue
            if wanted_cats is not None and m["category"] not in wanted_cats:
                continue
            ranges.append(np.arange(m["first"], m["first"] + m["views"]))
        idx = np.concatenate(ranges) if ranges else np.zeros(0, np.int64)
        available = np.zeros(self.meta["num_samples"], bool)
        for s in shards:
            available[s["first"] : s["first"] + s["count"]] = True
        self.indices = idx[available[idx]] if len(idx) else idx
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # do not ship decoded shards to DataLoader workers
        return state

    def _shard(self, k: int) -> dict[str, np.ndarray]:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        info = self._shards[k]
        data = read_shard(self.root / info["file"])
        if len(data["sample_index"]) != info["count"] or int(data["sample_index"][0]) != info["first"]:
            raise FileFormatError(f"{self.root / info['file']}: does not hold the samples index.json lists")
        self._cache[k] = data
        while len(self._cache) > self.cache_shards:
            self._cache.popitem(last=False)
        return data

    def locate(self, i: int) -> tuple[int, int]:
        """``(shard position, offset)`` of dataset item ``i``."""
        g = int(self.indices[i])
        k = bisect.bisect_right(self._starts, g) - 1
        return k, g - self._shards[k]["first"]

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        i = i % len(self)
        k, o = self.locate(i)
        d = self._shard(k)
        item: dict[str, Any] = {
            "image": torch.from_numpy(d["images"][o]).permute(2, 0, 1).float() / 255.0,
            "mask": torch.from_numpy(d["masks"][o].astype(np.float32))[None],
            "R": torch.from_numpy(d["R"][o].copy()),
            "t": torch.from_numpy(d["t"][o].copy()),
            "K": torch.from_numpy(d["K"][o].copy()),
            "viewpoint": torch.from_numpy(d["viewpoint"][o].copy()),
            "category": torch.tensor(int(d["category_index"][o]), dtype=torch.int64),
            "category_name": str(d["category"][o]),
            "model_id": str(d["model_id"][o]),
            "model_index": torch.tensor(int(d["model_index"][o]), dtype=torch.int64),
            "index": torch.tensor(int(d["sample_index"][o]), dtype=torch.int64),
            "rendered": True,
        }
        vr = self.meta.get("voxel_res") or 0
        if vr and "voxels" in d:
            item["voxels"] = torch.from_numpy(unpack_voxels(d["voxels"][o], vr).astype(np.float32))[None]
        pr = self.meta.get("posed_voxel_res")
        if pr and "posed_voxels" in d:
            item["posed_voxels"] = torch.from_numpy(unpack_voxels(d["posed_voxels"][o], pr).astype(np.float32))[None]
        if "depth" in d:
            item["depth"] = torch.from_numpy(d["depth"][o].astype(np.float32))[None]
        if self.augment is not None:
            item = self.augment(item, int(self.indices[i]))
        if self.keys is not None:
            item = {k: v for k, v in item.items() if k in self.keys}
        return item
