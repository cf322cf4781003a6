"""The "world" training mix of issue 19: procedural shapes plus the CAD models of the shared data.

A model trained on the procedural generator alone does not generalise to CAD models or photos
(``bench/RESULTS.md``: rotation MedErr ~75 deg on PASCAL3D+ CAD renders). :func:`world_collection`
joins, in one :class:`~poseshape.data.collections.MeshCollection`:

* the procedural shapes of ``procedural_categories`` (``per_category`` models each);
* the PASCAL3D+ CAD models (12 categories, ``<data>/pascal3d_cad``);
* the ObjectNet3D CAD models (``<data>/objectnet3d_cad``) of every category **except**
  :func:`held_out_categories` (every fourth category in sorted order), which no world-trained
  model ever sees: they are the "categories never trained on" of the cross-dataset table.

Splits stay model-level (:meth:`MeshCollection.split_indices`), so the held-out *models* of the
seen categories come from the same call with ``split="test"``. Nothing is copied: the meshes are
read from the data folder (``$POSESHAPE_DATA``, default ``../shared/data``) when rendered.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from poseshape.core.errors import PoseshapeError
from poseshape.core.paths import shared_data_dir
from poseshape.data.collections import MeshCollection

__all__ = [
    "HELD_OUT_EVERY",
    "WORLD_SPLIT",
    "held_out_categories",
    "objectnet3d_categories",
    "world_collection",
]

#: Every ``HELD_OUT_EVERY``-th ObjectNet3D category (sorted, starting at index ``HELD_OUT_EVERY - 1``)
#: is never trained on.
HELD_OUT_EVERY = 4
#: Model-level (train, val, test) fractions of every category of the mix: small CAD categories
#: (5 PASCAL3D+ cars, 2 ObjectNet3D rackets) keep a test model.
WORLD_SPLIT = (0.6, 0.15, 0.25)


def _root(data: str | os.PathLike | None) -> Path:
    root = Path(data) if data is not None else shared_data_dir()
    if not root.is_dir():
        raise PoseshapeError(f"shared data folder {root} not found: set POSESHAPE_DATA or pass data=")
    return root


def objectnet3d_categories(data: str | os.PathLike | None = None) -> list[str]:
    """The ObjectNet3D categories present under ``<data>/objectnet3d_cad/CAD``, sorted."""
    cad = _root(data) / "objectnet3d_cad" / "CAD"
    if not cad.is_dir():
        raise PoseshapeError(f"{cad} not found: the world mix needs the ObjectNet3D CAD models")
    return sorted(p.name for p in cad.iterdir() if p.is_dir() and any(p.glob("*.ply")))


def held_out_categories(data: str | os.PathLike | None = None) -> list[str]:
    """The ObjectNet3D categories a world-trained model never sees (every fourth, sorted)."""
    cats = objectnet3d_categories(data)
    return [c for i, c in enumerate(cats) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]


def world_collection(
    data: str | os.PathLike | None = None,
    procedural_categories: Sequence[str] = ("aeroplane", "car", "chair"),
    per_category: int = 100,
    held_out: bool = False,
    cache_size: int = 0,
) -> MeshCollection:
    """The world mix (module docstring) as one collection.

    Args:
        data: the shared data folder (default ``$POSESHAPE_DATA`` / ``../shared/data``).
        procedural_categories: procedural categories to include (``()``: none).
        per_category: procedural models per category.
        held_out: ``True`` gives only the ObjectNet3D models of :func:`held_out_categories`
            (for evaluation), ``False`` the training mix without them.
        cache_size: in-memory mesh cache of the collection (0 when rendering with workers).

    Raises:
        PoseshapeError: the data folder or one of its CAD collections is missing.
    """
    root = _root(data)
    hold = held_out_categories(root)
    onet = MeshCollection(root / "objectnet3d_cad", layout="objectnet3d", cache_size=cache_size)
    seen = [c for c in onet.categories if c not in hold]
    if held_out:
        return onet.filter(hold)
    onet = onet.filter(seen)
    parts = [MeshCollection(root / "pascal3d_cad", layout="pascal3d", cache_size=cache_size), onet]
    if procedural_categories:
        parts.insert(0, MeshCollection.procedural(procedural_categories, per_category, cache_size=cache_size))
    return MeshCollection.concat(*parts)
