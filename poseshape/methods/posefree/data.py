"""Data of ``posefree``: single-view renders of the NMR camera (24 azimuths, elevation 30 deg).

Training reads only the image ``(3, S, S)`` and its silhouette ``(1, S, S)``; the true azimuth
(``pose``) is read for the B/Ls baseline, the metrics and Fig. 4, and the aligned voxels /
surface points for evaluation. The renders come from the data engine::

    poseshape data render --meshes procedural --pose ring24 --framing fixed --size 64 --voxels 32

Procedural training models use ``data.procedural_seed``, held-out test models
``procedural_seed + 1`` (other shapes); a mesh folder is split by model (the engine's split).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset

from poseshape.core.errors import PoseshapeError
from poseshape.data.dataset import ShardDataset
from poseshape.data.synth import PoseConfig, SynthConfig, render_dataset
from poseshape.geometry.camera import pose_to_viewpoint
from poseshape.methods.posefree.config import VIEW_SUBSETS, PosefreeConfig
from poseshape.methods.retrieval.database import open_collection

__all__ = ["SilhouetteSamples", "prepare_renders", "synth_config"]


def synth_config(cfg: PosefreeConfig, seed: int) -> SynthConfig:
    """The NMR-like ``ring24`` setting of the data engine for ``cfg``."""
    return SynthConfig(
        image_size=int(cfg.data.image_size),
        views=24,
        voxel_res=32,
        framing="fixed",
        seed=int(seed),
        pose=PoseConfig(
            distribution="ring24",
            ring_views=24,
            ring_elevation_deg=float(cfg.elevation_deg),
            ring_distance=float(cfg.distance),
            fov_deg=float(cfg.fov_deg),
        ),
    )


def prepare_renders(cfg: PosefreeConfig, out_dir, splits=("train", "test")) -> dict[str, Path]:
    """``{split: folder}`` of ``"train"``, ``"val"``, ``"test"``: the given ``data.train`` /
    ``data.test`` or renders into ``out_dir/data`` (procedural: val and test are other models,
    ``procedural_seed + 2`` / ``+ 1``, ``test_models`` per category)."""
    offsets = {"train": 0, "test": 1, "val": 2}
    d = cfg.data
    base = Path(out_dir) / "data" if out_dir is not None else Path(tempfile.gettempdir()) / "posefree_renders"
    out: dict[str, Path] = {}
    for s in splits:
        given = {"train": d.train, "test": d.test}.get(s, "")
        if given:
            if not (Path(given) / "index.json").is_file():
                raise PoseshapeError(f"posefree: data.{s}={given} is not a rendered data set (no index.json)")
            out[s] = Path(given)
            continue
        folder = base / s
        if d.meshes == "procedural":
            n = d.models_per_category if s == "train" else d.test_models
            coll = open_collection("procedural", d.categories, n, d.procedural_seed + offsets[s])
            cfg_s = synth_config(cfg, d.seed + offsets[s])
            render_dataset(coll, folder, cfg_s, progress=False, workers=int(d.workers))
        else:
            coll = open_collection(d.meshes, d.categories)
            render_dataset(coll, folder, synth_config(cfg, d.seed), split=s, progress=False, workers=int(d.workers))
        out[s] = folder
    return out


class SilhouetteSamples(Dataset):
    """Items ``{"image" (3, S, S), "mask" (1, S, S) float {0, 1}, "azimuth" () radians in [0, 2 pi),
    "view" () int64 ring index, "voxels" (1, 32, 32, 32)}`` of a ``ring24`` render folder.

    ``view_subset``: keep only these ring views (Fig. 5; a name of :data:`VIEW_SUBSETS`).

    Raises:
        PoseshapeError: not a rendered set, an empty one, an unknown subset, a set whose
            camera is not the method's (elevation / distance).
    """

    def __init__(self, root: str | os.PathLike, cfg: PosefreeConfig, view_subset: str = "", limit: int | None = None):
        if not (Path(root) / "index.json").is_file():
            raise PoseshapeError(f"posefree: {root} is not a rendered data set (no index.json)")
        self.ds = ShardDataset(root)
        if len(self.ds) == 0:
            raise PoseshapeError(f"posefree: data set {root} is empty")
        if view_subset and view_subset not in VIEW_SUBSETS:
            raise PoseshapeError(f"posefree: view_subset must be one of {sorted(VIEW_SUBSETS)}, got {view_subset!r}")
        self.size = int(cfg.data.image_size)
        az, el, _, dist = pose_to_viewpoint(self.ds[0]["R"].double(), self.ds[0]["t"].double())
        if abs(math.degrees(float(el)) - cfg.elevation_deg) > 0.5 or abs(float(dist) - cfg.distance) > 1e-3:
            raise PoseshapeError(
                f"posefree: {root} is not seen from elevation {cfg.elevation_deg} deg at distance {cfg.distance} "
                f"(got {math.degrees(float(el)):.1f} deg, {float(dist):.3f}); render with --pose ring24 --framing fixed"
            )
        keep = set(VIEW_SUBSETS[view_subset]) if view_subset else None
        idx = []
        for i in range(len(self.ds)):
            if keep is None or self._view(i) in keep:
                idx.append(i)
            if limit is not None and len(idx) >= limit:
                break
        self.index = idx

    def _view(self, i: int) -> int:
        a = self._azimuth(self.ds[i])
        return int(round(a / (2 * math.pi / 24))) % 24

    @staticmethod
    def _azimuth(it) -> float:
        az, _, _, _ = pose_to_viewpoint(it["R"].double(), it["t"].double())
        return float(az) % (2 * math.pi)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        it = self.ds[self.index[i]]
        if it["image"].shape[-1] != self.size:
            raise PoseshapeError(f"posefree: renders are {it['image'].shape[-1]} px, the config wants {self.size}")
        a = self._azimuth(it)
        out = {
            "image": it["image"].float(),
            "mask": it["mask"].float(),
            "azimuth": torch.tensor(a, dtype=torch.float32),
            "view": torch.tensor(int(round(a / (2 * math.pi / 24))) % 24, dtype=torch.int64),
        }
        if "voxels" in it:
            out["voxels"] = it["voxels"].float()[None] if it["voxels"].dim() == 3 else it["voxels"].float()
        return out
