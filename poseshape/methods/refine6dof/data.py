"""Data of ``refine6dof``: the model collection, its clusters, and 6-DoF renders with labels.

Paper 003, §4.1: a model at the origin, a camera at a fixed height ``k`` above the ground at
a random position of a ``q_x x q_y`` grid, pointed at an empty object randomly placed on the
ground within an ``e_x x e_y`` area, "in this way we make the object to appear translated in
the camera image"; the uncropped camera image and the camera pose make one example. The data
engine's ``framing="6dof"`` is exactly this (:mod:`poseshape.data.synth`; its defaults scale
the paper's numbers, k = 1.5 and e = 3 for models of size 6, to our unit-size models: camera
height 0.25 above the lowest point, target area 0.5, horizontal distance 0.9-1.8, 49.1 deg
field of view). Models are split per cluster 0.6 / 0.2 / 0.2 into train / val / test, the
medoids kept out of all splits (:meth:`.clusters.ClusterResult.split`).

:func:`load_collection` opens ``config.data.meshes``; :func:`compute_clusters` clusters it
(memoised, and cached as ``RUN/clusters.json``); :func:`prepare_renders` renders the three
splits into ``RUN/data/`` unless ``data.train`` / ``data.val`` / ``data.test`` name
existing sets; :class:`PoseSamples` reads a rendered set and adds the cluster label.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from poseshape.core.errors import PoseshapeError
from poseshape.core.io import atomic_write
from poseshape.data.collections import MeshCollection
from poseshape.data.dataset import ShardDataset
from poseshape.data.synth import PoseConfig, SynthConfig, render_dataset
from poseshape.methods.refine6dof.clusters import ClusterResult, cluster_models
from poseshape.methods.refine6dof.config import Refine6DofConfig
from poseshape.methods.refine6dof.model import INPUT_CHANNELS

__all__ = [
    "PoseSamples",
    "clusters_key",
    "compute_clusters",
    "load_collection",
    "network_input",
    "prepare_renders",
    "synth_config",
]

_MEMO: dict[str, tuple[ClusterResult, list]] = {}


# =============================================================================== collection
def load_collection(cfg: Refine6DofConfig):
    """The :class:`~poseshape.data.collections.MeshCollection` of ``cfg.data`` (categories kept).

    Raises:
        PoseshapeError: no categories, a missing folder, a folder without those categories.
    """
    d = cfg.data
    cats = list(d.categories)
    if not cats:
        raise PoseshapeError(
            "refine6dof: data.categories is empty; name the categories to train on, e.g. --set 'data.categories=[car]'"
        )
    if str(d.meshes) == "procedural":
        if d.more_meshes:
            raise PoseshapeError("refine6dof: data.more_meshes joins mesh folders; data.meshes must be a folder too")
        return MeshCollection.procedural(
            categories=cats, per_category=int(d.models_per_category), seed=int(d.procedural_seed)
        )
    root = Path(d.meshes).expanduser()
    if not root.is_dir():
        raise PoseshapeError(
            f"refine6dof: data.meshes={d.meshes} is neither 'procedural' nor an existing "
            "folder of meshes (e.g. ../shared/data/pascal3d_cad, see $POSESHAPE_DATA)"
        )
    parts, seen = [], set()
    for k, spec in enumerate([str(d.meshes), *map(str, d.more_meshes)]):
        path, _, source = spec.partition("@") if k else (spec, "", "")
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise PoseshapeError(f"refine6dof: data.more_meshes entry {spec!r}: {folder} is not a folder")
        try:
            coll = MeshCollection(folder, cache_size=0, source=source or None)
        except FileNotFoundError as e:
            raise PoseshapeError(f"refine6dof: {e}") from None
        seen.update(coll.categories)
        keep = [j for j, ref in enumerate(coll.models) if ref.category in cats]
        if keep:  # a folder without any of the categories adds nothing
            parts.append(coll.subset(keep))
    have = {c for p in parts for c in p.categories}
    missing = [c for c in cats if c not in have]
    if missing:
        raise PoseshapeError(
            f"refine6dof: no models of {missing} in data.meshes / data.more_meshes; they have {sorted(seen)}"
        )
    return MeshCollection.concat(*parts) if len(parts) > 1 else parts[0]


def clusters_key(cfg: Refine6DofConfig) -> str:
    """Hash of everything the clusters depend on (mesh source and clustering options)."""
    d = cfg.data
    more = {"more": [str(m) for m in d.more_meshes]} if d.more_meshes else {}  # old keys stay valid
    blob = json.dumps(
        {
            **more,
            "meshes": str(d.meshes),
            "categories": list(d.categories),
            "n": int(d.models_per_category),
            "pseed": int(d.procedural_seed),
            "k": cfg.num_clusters,
            "scope": cfg.cluster_scope,
            "distance": cfg.cluster_distance,
            "method": cfg.cluster_method,
            "limit": cfg.exhaustive_limit,
            "hog": [cfg.hog_size, cfg.hog_render],
            "vox": cfg.voxel_res,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def compute_clusters(cfg: Refine6DofConfig, out_dir: str | os.PathLike | None = None) -> tuple[ClusterResult, Any]:
    """Cluster the configured collection; returns ``(clusters, collection)``.

    Memoised per process by :func:`clusters_key`; with ``out_dir`` the result is also read
    from / written to ``out_dir/clusters.json`` (atomically), so a resumed run reuses it.
    """
    key = clusters_key(cfg)
    path = Path(out_dir) / "clusters.json" if out_dir is not None else None
    if key in _MEMO:
        res, coll = _MEMO[key]
    else:
        coll = load_collection(cfg)
        res = None
        if path is not None and path.is_file():
            try:
                d = json.loads(path.read_text())
                if d.get("key") == key:
                    res = ClusterResult.from_json(json.dumps(d["clusters"]))
            except (OSError, ValueError, KeyError, TypeError):
                res = None
        if res is None:
            meshes, keys, cats = [], [], []
            for i, ref in enumerate(coll.models):
                meshes.append(coll.mesh(i))
                keys.append(f"{ref.category}/{ref.model_id}")
                cats.append(ref.category)
            res = cluster_models(
                meshes,
                keys,
                cats,
                cfg.num_clusters,
                cfg.cluster_distance,
                cfg.cluster_scope,
                cfg.cluster_method,
                cfg.exhaustive_limit,
                cfg.hog_size,
                cfg.hog_render,
                cfg.voxel_res,
            )
        _MEMO[key] = (res, coll)
    if path is not None:
        try:
            current = json.loads(path.read_text()).get("key") if path.is_file() else None
        except (OSError, ValueError):
            current = None
        if current != key:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps({"key": key, "clusters": json.loads(res.to_json())}, indent=1))
    return res, coll


# =============================================================================== renders
def synth_config(cfg: Refine6DofConfig, views: int, image_size: int | None = None):
    """The data-engine settings of paper 003's 6-DoF renders (``framing="6dof"``)."""
    return SynthConfig(
        image_size=int(image_size or cfg.image_size),
        views=int(views),
        voxel_res=0,
        framing="6dof",
        domain=cfg.data.domain,
        seed=int(cfg.data.seed),
        pose=PoseConfig(fov_6dof_deg=float(cfg.fov_deg)),
    )


def prepare_renders(
    cfg: Refine6DofConfig,
    out_dir: str | os.PathLike | None,
    progress: bool = False,
    splits: tuple[str, ...] = ("train", "val", "test"),
) -> tuple[ClusterResult, dict[str, Path | None]]:
    """Clusters and the ``train`` / ``val`` / ``test`` render folders.

    Folders given in ``cfg.data`` are used as they are (checked); the others are rendered
    from the split of :meth:`ClusterResult.split` into ``out_dir/data/<split>`` (or a
    temporary folder when ``out_dir`` is None), resuming finished shards. A split without
    models gives ``None`` (``train`` may not be empty). Only the ``splits`` named are
    returned (and rendered), e.g. ``("test",)`` for an evaluation.

    Raises:
        PoseshapeError: a given folder is not a rendered set, or the train split is empty.
    """
    clusters, coll = compute_clusters(cfg, out_dir)
    bad = [s for s in splits if s not in ("train", "val", "test")]
    if bad or not splits:
        raise PoseshapeError(f"refine6dof: splits must be some of ('train', 'val', 'test'), got {splits!r}")
    given = {
        s: p for s, p in (("train", cfg.data.train), ("val", cfg.data.val), ("test", cfg.data.test)) if s in splits
    }
    paths: dict[str, Path | None] = {}
    todo = [s for s, p in given.items() if not p]
    parts = clusters.split(cfg.split_fractions, cfg.split_seed, cfg.medoids_in_splits) if todo else {}
    base = (
        Path(out_dir) / "data"
        if out_dir is not None
        else Path(tempfile.gettempdir()) / f"refine6dof_{clusters_key(cfg)}"
    )
    for s, p in given.items():
        if p:
            if not (Path(p) / "index.json").is_file():
                raise PoseshapeError(
                    f"refine6dof: data.{s}={p} is not a rendered data set (no index.json); "
                    "render one with `poseshape data render --framing 6dof` or leave "
                    f"data.{s} empty to let the method render it"
                )
            paths[s] = Path(p)
            continue
        idx = parts[s]
        if not idx:
            if s == "train":
                raise PoseshapeError(
                    f"refine6dof: no training models left after clustering ({len(clusters.keys)} "
                    f"models, {clusters.num_clusters} medoids kept out); add models "
                    "(data.models_per_category) or set medoids_in_splits=true"
                )
            paths[s] = None
            continue
        coll_idx = [coll.index(*clusters.keys[i].split("/", 1)) for i in idx]
        views = cfg.data.test_views if (s == "test" and cfg.data.test_views) else cfg.data.views
        size = int(cfg.data.test_image_size or cfg.image_size) if s == "test" else int(cfg.image_size)
        folder = base / (s if size == int(cfg.image_size) else f"{s}_{size}px")
        render_dataset(
            coll.subset(coll_idx),
            folder,
            synth_config(cfg, views, size),
            workers=int(cfg.data.workers),
            split_fractions=(1.0, 0.0, 0.0),
            progress=progress,
        )
        paths[s] = folder
    return clusters, paths


# =============================================================================== samples
def network_input(image: torch.Tensor, mask: torch.Tensor | None, kind: str) -> torch.Tensor:
    """The encoder input for ``kind`` (``rgb`` / ``mask`` / ``rgbm``) from ``(..., 3, S, S)``
    images and ``(..., 1, S, S)`` masks."""
    if kind not in INPUT_CHANNELS:
        raise PoseshapeError(f"refine6dof: input must be one of {sorted(INPUT_CHANNELS)}, got {kind!r}")
    if kind == "rgb":
        return image
    if mask is None:
        raise PoseshapeError(f"refine6dof: input={kind!r} needs the object mask")
    return mask if kind == "mask" else torch.cat([image, mask], -3)


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if mode == "area":
        return F.interpolate(x[None], size=(size, size), mode="area")[0]
    return F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(
        0, 1
    )


class PoseSamples(Dataset):
    """A rendered 6-DoF set with the cluster labels.

    Item: ``input (C_in, S, S)`` (the encoder input, ``S = config.image_size``), ``image
    (3, S, S)`` in [0, 1], ``mask (1, S, S)`` in [0, 1] (area-resized coverage), ``R (3, 3)``
    object-to-camera, ``t (3,)`` object units, ``P (3, 4)``, ``K (3, 3)`` pixels of the
    ``S x S`` image (scaled when the set was rendered at another size), ``label ()`` int64
    cluster, ``category ()`` int64 index into the set's categories; with ``full_size=True``
    (evaluation) also ``mask_full (1, H, H)`` and ``K_full (3, 3)``: the mask and intrinsics at
    the set's own size ``H`` (the same tensors when ``H = S``).

    Raises:
        PoseshapeError: not a rendered set, empty, not square, or a model that was not clustered.
    """

    def __init__(
        self,
        root: str | Path,
        config: Refine6DofConfig,
        clusters: ClusterResult,
        limit: int | None = None,
        what: str = "train",
        full_size: bool = False,
    ):
        self.full_size = bool(full_size)
        if not (Path(root) / "index.json").is_file():
            raise PoseshapeError(f"refine6dof: data.{what}={root} is not a rendered data set (no index.json)")
        meta = ShardDataset(root, cache_shards=1).meta
        # Keep every decoded shard in memory when the set is small enough (< ~2 GB of decoded
        # arrays): random batches touch most shards, and an LRU of 4 re-decodes them per batch.
        per_shard = int(meta.get("samples_per_shard", 64)) * int(meta.get("image_size", 128)) ** 2 * 4
        self.ds = ShardDataset(root, cache_shards=max(4, min(len(meta["shards"]), int(2e9 // max(per_shard, 1)))))
        self.cfg = config
        n = len(self.ds)
        if n == 0:
            raise PoseshapeError(f"refine6dof: data set {root} is empty")
        self.n = n if limit is None else min(n, int(limit))
        if limit is not None and self.n < n:  # spread a limited subset over all models
            step = n / self.n
            self.index = [int(i * step) for i in range(self.n)]
        else:
            self.index = list(range(n))
        self.labels = {}
        for m in self.ds.meta["models"]:
            self.labels[(m["category"], str(m["model_id"]))] = clusters.label_of(m["category"], str(m["model_id"]))
        framing = self.ds.meta.get("config", {}).get("framing")
        if framing not in (None, "6dof"):
            raise PoseshapeError(
                f"refine6dof: {root} was rendered with framing={framing!r}; paper 003 needs "
                "framing='6dof' (uncropped, translated objects)"
            )

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.ds[self.index[i]]
        S = int(self.cfg.image_size)
        img, mask, K = it["image"], it["mask"], it["K"].clone()
        mask_full, K_full = mask, it["K"]
        H, W = img.shape[-2:]
        if H != W:
            raise PoseshapeError(f"refine6dof: expected square renders, got {W}x{H}")
        if H != S:
            K[:2] = K[:2] * (S / H)
            img, mask = _resize(img, S, "bilinear"), _resize(mask, S, "area")
        R, t = it["R"], it["t"]
        item = {
            "input": network_input(img, mask, self.cfg.input),
            "image": img,
            "mask": mask,
            "R": R,
            "t": t,
            "P": torch.cat([R, t[:, None]], -1),
            "K": K,
            "label": torch.tensor(self.labels[(it["category_name"], it["model_id"])], dtype=torch.int64),
            "category": it["category"],
        }
        if self.full_size:
            item.update(mask_full=mask_full, K_full=K_full)
        return item
