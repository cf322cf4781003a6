"""Data of ``retrieval``: the CAD collection, stage-I samples and stage-II image renders.

Stage I draws random rotations online (in the training step, :func:`random_rotations`) for
the canonical 32^3 grids of the database models; its dataset only yields model indices.
Stage II uses renders of *every* database model by the data engine (``framing="fixed"``:
one pinhole camera, ``K`` from ``fov_deg``, the object at distance ``distance`` shifted by
up to ``translation_jitter`` in the image plane): train, val and test renders differ only by
their seed, so the test views are held out but the models are the database's, as in the
paper's retrieval among the PASCAL3D+ CAD models.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset

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
) -> dict[str, Path]:
    """Render folders of ``splits`` (given ones are checked and used as they are; the others
    are rendered, resumably, into ``out_dir/data/<split>`` or a temporary folder)."""
    d = cfg.data
    base = Path(out_dir) / "data" if out_dir is not None else Path(tempfile.gettempdir()) / "retrieval_renders"
    views = {"train": d.views, "val": d.val_views, "test": d.test_views}
    given = {"train": d.train, "val": d.val, "test": d.test}
    out: dict[str, Path] = {}
    coll = None
    for k, s in enumerate(("train", "val", "test")):
        if s not in splits:
            continue
        if given[s]:
            if not (Path(given[s]) / "index.json").is_file():
                raise PoseshapeError(f"retrieval: data.{s}={given[s]} is not a rendered data set (no index.json)")
            out[s] = Path(given[s])
            continue
        if views[s] < 1:
            continue
        coll = coll or config_collection(cfg)
        folder = base / s
        render_dataset(coll, folder, synth_config(cfg, views[s], d.seed + k), workers=int(d.workers), progress=False)
        out[s] = folder
    return out


class ImageSamples(Dataset):
    """Stage II samples: ``{"image" (3, S, S), "R" (3, 3), "q" (4,), "t" (3,), "K" (3, 3),
    "model" int64 () (database row), "occluded"/"truncated" bool ()}`` of a render folder.

    ``names``: the database's ``"category/model_id"`` rows; a render of a model missing
    from it raises :class:`PoseshapeError`.
    """

    def __init__(self, root: str | os.PathLike, names: list[str], limit: int | None = None):
        self.ds = ShardDataset(root)
        self.lookup = {n: i for i, n in enumerate(names)}
        missing = sorted({f"{m['category']}/{m['model_id']}" for m in self.ds.meta["models"]} - set(self.lookup))
        if missing:
            raise PoseshapeError(
                f"retrieval: {root} renders models that are not in the database: {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}"
            )
        self.n = len(self.ds) if limit is None else min(len(self.ds), int(limit))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        it = self.ds[i]
        return {
            "image": it["image"],
            "mask": it["mask"],
            "R": it["R"],
            "q": quaternion_canonical(matrix_to_quaternion(it["R"].double())).float(),
            "t": it["t"],
            "K": it["K"],
            "model": torch.tensor(self.lookup[f"{it['category_name']}/{it['model_id']}"], dtype=torch.int64),
        }
