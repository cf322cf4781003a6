"""Data of ``retrieval``: the CAD collection, stage-I samples and stage-II image renders.

Stage I draws random rotations online (in the training step, :func:`random_rotations`) for
the canonical 32^3 grids of the database models; its dataset only yields model indices.
Stage II uses renders of *every* database model by the data engine (``framing="fixed"``:
one pinhole camera, ``K`` from ``fov_deg``, the object at distance ``distance`` shifted by
up to ``translation_jitter`` in the image plane): train, val and test renders differ only by
their seeds (views and appearances), so the test views are held out but the models are the
database's, as in the paper's retrieval among the PASCAL3D+ CAD models.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, Dataset

from poseshape.core.errors import PoseshapeError
from poseshape.data.collections import MeshCollection
from poseshape.data.dataset import ShardDataset
from poseshape.data.synth import PoseConfig, SynthConfig, render_dataset
from poseshape.engine.train import derive_seed
from poseshape.geometry.rotations import matrix_to_quaternion, quaternion_canonical
from poseshape.methods.retrieval.config import RetrievalConfig
from poseshape.methods.retrieval.database import open_collection

__all__ = [
    "ImageSamples",
    "ModelIndices",
    "config_collection",
    "prepare_renders",
    "random_rotations",
    "synth_config",
]


def config_collection(cfg: RetrievalConfig) -> MeshCollection:
    """The configured CAD collection (``cfg.data.meshes``)."""
    d = cfg.data
    return open_collection(d.meshes, d.categories, d.models_per_category, d.procedural_seed)


def random_rotations(n: int, seed: int, *parts, device=None) -> torch.Tensor:
    """``n`` uniform random unit quaternions ``(n, 4)``, ``w >= 0``, from ``derive_seed(seed, *parts)``."""
    g = torch.Generator().manual_seed(derive_seed(seed, "rotations", *parts))
    q = torch.randn(n, 4, generator=g)
    return quaternion_canonical(q / q.norm(dim=-1, keepdim=True)).to(device)


class ModelIndices(Dataset):
    """Stage I: ``n`` samples cycling over ``M`` models (``{"model": int64 ()}``)."""

    def __init__(self, n: int, num_models: int):
        if num_models < 1:
            raise PoseshapeError("retrieval: the database is empty")
        self.n, self.m = int(n), int(num_models)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"model": torch.tensor(i % self.m, dtype=torch.int64)}


def synth_config(
    cfg: RetrievalConfig, views: int, seed: int, realism=None, image_size: int | None = None
) -> SynthConfig:
    """Data-engine settings of the stage-II renders (module docstring)."""
    return SynthConfig(
        image_size=int(image_size or cfg.data.image_size),
        views=int(views),
        voxel_res=0,
        framing="fixed",
        domain=cfg.data.domain,
        seed=int(seed),
        pose=PoseConfig(
            fov_deg=float(cfg.fov_deg),
            distance=tuple(cfg.distance),
            translation_jitter=float(cfg.translation_jitter),
        ),
        realism=realism,
    )


def prepare_renders(
    cfg: RetrievalConfig, out_dir: str | os.PathLike | None, splits=("train", "val", "test")
) -> dict[str, list[Path]]:
    """Render folders of ``splits`` (given ones are checked and used as they are; the others
    are rendered, resumably, into ``out_dir/data/<split>`` or a temporary folder).

    The data engine draws one appearance (colours, material) per model and seed, so the
    training views are rendered as ``data.appearances`` folders of different seeds
    (``seed + 10 + k``; else the network learns each model's colour instead of its shape);
    val and test use the seeds ``seed + 1`` and ``seed + 2`` (unseen appearances too).
    Returns ``{split: [folder, ...]}``.
    """
    d = cfg.data
    base = Path(out_dir) / "data" if out_dir is not None else Path(tempfile.gettempdir()) / "retrieval_renders"
    given = {"train": d.train, "val": d.val, "test": d.test}
    out: dict[str, list[Path]] = {}
    coll = None
    for s in ("train", "val", "test"):
        if s not in splits:
            continue
        if given[s]:
            folders = [Path(p) for p in str(given[s]).split(",") if p]
            for f in folders:
                if not (f / "index.json").is_file():
                    raise PoseshapeError(f"retrieval: data.{s}={f} is not a rendered data set (no index.json)")
            out[s] = folders
            continue
        if s == "train":
            k = max(1, int(d.appearances))
            jobs = [(base / "train" / f"a{i:02d}", -(-d.views // k), d.seed + 10 + i) for i in range(k)]
        else:
            views = d.val_views if s == "val" else d.test_views
            jobs = [(base / s, views, d.seed + (1 if s == "val" else 2))] if views > 0 else []
        coll = coll or config_collection(cfg)
        for folder, views, seed in jobs:
            render_dataset(coll, folder, synth_config(cfg, views, seed), workers=int(d.workers), progress=False)
        if jobs:
            out[s] = [j[0] for j in jobs]
    return out


class ImageSamples(Dataset):
    """Stage II samples: ``{"image" (3, S, S), "mask" (1, S, S), "R" (3, 3), "q" (4,), "t" (3,),
    "K" (3, 3), "model" int64 () (database row)}`` of one render folder or a list of them.

    ``names``: the database's ``"category/model_id"`` rows; a render of a model missing
    from it raises :class:`PoseshapeError`.
    """

    def __init__(self, root, names: list[str], limit: int | None = None):
        roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
        parts = [ShardDataset(r) for r in roots]
        self.ds = parts[0]
        self.cat = ConcatDataset(parts)
        self.lookup = {n: i for i, n in enumerate(names)}
        models = {f"{m['category']}/{m['model_id']}" for p in parts for m in p.meta["models"]}
        missing = sorted(models - set(self.lookup))
        if missing:
            raise PoseshapeError(
                f"retrieval: {root} renders models that are not in the database: {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}"
            )
        self.n = len(self.cat) if limit is None else min(len(self.cat), int(limit))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        it = self.cat[i]
        return {
            "image": it["image"],
            "mask": it["mask"],
            "R": it["R"],
            "q": quaternion_canonical(matrix_to_quaternion(it["R"].double())).float(),
            "t": it["t"],
            "K": it["K"],
            "model": torch.tensor(self.lookup[f"{it['category_name']}/{it['model_id']}"], dtype=torch.int64),
        }
