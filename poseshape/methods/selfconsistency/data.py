"""Data of ``selfconsistency``: rendered (image, mask, voxels) samples of the fixed-camera frame.

Training reads the image ``(3, 64, 64)``, the GT mask (resized by area to ``mask_res`` and
binarised at half coverage, ``(1, 48, 48)``), the aligned GT voxels ``(1, 32, 32, 32)`` and
the known intrinsics ``K`` (rescaled to the mask); the pose is loaded only for validation
and evaluation (paper 001 never uses the GT pose for training). Render a set with::

    poseshape data render --meshes procedural --out data/sc_train --pose ring24 \\
        --framing fixed --size 64 --voxels 32 --split train
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from poseshape.core.errors import PoseshapeError
from poseshape.data.dataset import ShardDataset
from poseshape.geometry.camera import pose_to_viewpoint
from poseshape.methods.selfconsistency.config import SelfConsistencyConfig
from poseshape.methods.selfconsistency.frame import scale_intrinsics

__all__ = ["SelfConsistencySamples", "resize_image", "resize_mask"]


def resize_image(img: torch.Tensor, size: int) -> torch.Tensor:
    """``(..., 3, H, W)`` -> ``(..., 3, size, size)`` (bilinear, antialiased, clamped)."""
    if img.shape[-2:] == (size, size):
        return img
    x = img if img.dim() == 4 else img[None]
    out = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return out if img.dim() == 4 else out[0]


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """``(..., 1, H, W)`` {0, 1} -> ``(..., 1, size, size)`` {0, 1}: area coverage >= 0.5."""
    x = mask.float() if mask.dim() == 4 else mask.float()[None]
    out = (F.interpolate(x, size=(size, size), mode="area") >= 0.5).float()
    return out if mask.dim() == 4 else out[0]


class SelfConsistencySamples(Dataset):
    """Item: ``image (3, S, S)``, ``mask (1, M, M)`` {0, 1}, ``voxels (1, Q, Q, Q)`` {0, 1},
    ``K (3, 3)`` for the ``M x M`` mask, ``pose (2,)`` true (azimuth, elevation) radians (only
    for metrics), ``category ()``.

    Raises:
        PoseshapeError: no / not a rendered set, no voxels, or a camera that is not the
            fixed frame of ``config`` (distance, no in-plane rotation).
    """

    def __init__(self, root: str | Path, config: SelfConsistencyConfig, limit: int | None = None, what: str = "train"):
        root = str(root)
        if not root:
            raise PoseshapeError(
                f"selfconsistency: no {what} data set given; render one with `poseshape data render "
                "--pose ring24 --framing fixed --voxels 32` and pass --set data.{what}=FOLDER"
            )
        if not (Path(root) / "index.json").is_file():
            raise PoseshapeError(f"selfconsistency: data.{what}={root} is not a rendered data set (no index.json)")
        self.ds = ShardDataset(root)
        self.cfg = config
        self.categories = self.ds.categories
        self.n = len(self.ds) if limit is None else min(len(self.ds), int(limit))
        if self.n == 0:
            raise PoseshapeError(f"selfconsistency: data set {root} is empty")
        if not self.ds.meta.get("voxel_res"):
            raise PoseshapeError(f"selfconsistency: {root} has no voxels; render it with --voxels {config.voxel_res}")
        it = self.ds[0]
        if abs(float(it["t"].norm()) - config.distance) > 1e-3 or abs(float(it["t"][:2].abs().max())) > 1e-4:
            raise PoseshapeError(
                f"selfconsistency: {root} does not use the fixed camera of this method (t = (0, 0, "
                f"{config.distance}), got {it['t'].tolist()}); render with --framing fixed --pose ring24 "
                "or set distance"
            )

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.ds[i]
        cfg = self.cfg
        S_data = it["image"].shape[-1]
        vox = it["voxels"][None]
        Q = cfg.voxel_res
        if vox.shape[-1] != Q:
            vox = (F.interpolate(vox, size=(Q, Q, Q), mode="trilinear", align_corners=False) > 0.5).float()
        az, el, _, _ = pose_to_viewpoint(it["R"].double(), it["t"].double())
        az = math.remainder(float(az), 2 * math.pi)
        return {
            "image": resize_image(it["image"], cfg.image_size),
            "mask": resize_mask(it["mask"], cfg.mask_res),
            "voxels": vox[0],
            "K": scale_intrinsics(it["K"].float(), cfg.mask_res / S_data),
            "pose": torch.tensor([az, float(el)], dtype=torch.float32),
            "R": it["R"].float(),
            "category": it["category"],
        }
