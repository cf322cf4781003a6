"""Collections of CAD models: ``(category, model_id, Mesh)`` in the object frame.

:class:`MeshCollection` lists the models of a folder (cheap directory scan) and loads each
mesh lazily on access, converting it into poseshape's object frame (+Y up, front +Z,
bounding box centred, largest side 1; see :mod:`poseshape.geometry.conventions`).  Loaded
meshes are kept in an in-memory LRU cache and, with ``cache_dir=``, in an on-disk cache of
normalised meshes (one ``.npz`` per model, keyed by the file's path, size and mtime).

Layouts (auto-detected, or forced with ``layout=``):

``"pascal3d"``
    PASCAL3D+ release: ``[root/]CAD/<cat>/<NN>.off`` (Z up, front -Y: source
    ``"pascal3d"``).  ``<NN>_keypoints.json`` next to the ``.off`` (``{name: {x, y, z}}``)
    comes along through :meth:`MeshCollection.keypoints`, transformed exactly like the mesh.
``"objectnet3d"``
    ObjectNet3D: ``[root/]CAD/<cat>/<NN>.ply`` (source ``"objectnet3d"``).
``"shapenet"``
    ShapeNetCore v2 ``<synset>/<model>/models/model_normalized.obj`` or v1
    ``<synset>/<model>/model.obj`` (source ``"shapenet"``).  Synset ids become names through
    :data:`SHAPENET_SYNSETS` (unknown ids stay as they are).
``"folder"``
    Any folder of ``.obj`` / ``.off`` / ``.ply`` files.  The category is the first folder
    below ``root`` (the root's own name for files directly in it), made singular by
    :func:`singular` (``chairs -> chair``, ``benches -> bench``; pass ``singularize=False``
    to keep folder names); the model id is the rest of the relative path without the
    extension.  Source ``"identity"`` unless ``source=`` says otherwise.
``"procedural"``
    The project's parametric shapes (:mod:`poseshape.shapes.procedural`), built from
    ``(category, seed)``: :meth:`MeshCollection.procedural`.

Category names may be given by alias when filtering (``airplane``/``aeroplane``,
``display``/``monitor``, a ShapeNet synset id, ...; see :func:`canonical_category`).

Bad input: a file that fails to parse is reported by path (a ``UserWarning``), recorded in
:attr:`MeshCollection.skipped` and skipped by iteration, which goes on; indexing it raises
:class:`~poseshape.core.errors.FileFormatError`.  A folder without mesh files raises
:class:`~poseshape.core.errors.FileFormatError` naming the folder.

Splits are by model (never by image): :meth:`MeshCollection.split` assigns each model of
each category to train/val/test by a seeded permutation of the category's sorted model ids,
so the same seed and fractions always give the same, disjoint splits.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from poseshape.core.errors import FileFormatError, PoseshapeError
from poseshape.core.io import atomic_save
from poseshape.shapes.meshes import Mesh, MeshTransform, apply_transform, load_mesh
from poseshape.shapes.procedural import CATEGORIES, generate

__all__ = [
    "LAYOUTS",
    "MESH_EXTENSIONS",
    "SHAPENET_SYNSETS",
    "MeshCollection",
    "ModelRef",
    "canonical_category",
    "detect_layout",
    "singular",
]

#: File extensions a folder collection picks up.
MESH_EXTENSIONS = (".obj", ".off", ".ply")
#: Layout names accepted by ``MeshCollection(layout=...)``.
LAYOUTS = ("auto", "pascal3d", "objectnet3d", "shapenet", "folder", "procedural")
#: Bumped when the on-disk cache format or the normalisation changes.
_CACHE_VERSION = 1

#: ShapeNetCore synset id -> poseshape category name (the 55 ShapeNetCore classes; the 13
#: common 3D-R2N2 classes are aeroplane, bench, cabinet, car, chair, monitor, lamp,
#: speaker, rifle, sofa, table, telephone, watercraft).
SHAPENET_SYNSETS: dict[str, str] = {
    "02691156": "aeroplane",
    "02747177": "trash_bin",
    "02773838": "bag",
    "02801938": "basket",
    "02808440": "bathtub",
    "02818832": "bed",
    "02828884": "bench",
    "02843684": "birdhouse",
    "02871439": "bookshelf",
    "02876657": "bottle",
    "02880940": "bowl",
    "02924116": "bus",
    "02933112": "cabinet",
    "02942699": "camera",
    "02946921": "can",
    "02954340": "cap",
    "02958343": "car",
    "02992529": "cellphone",
    "03001627": "chair",
    "03046257": "clock",
    "03085013": "keyboard",
    "03207941": "dishwasher",
    "03211117": "monitor",
    "03261776": "earphone",
    "03325088": "faucet",
    "03337140": "file_cabinet",
    "03467517": "guitar",
    "03513137": "helmet",
    "03593526": "jar",
    "03624134": "knife",
    "03636649": "lamp",
    "03642806": "laptop",
    "03691459": "speaker",
    "03710193": "mailbox",
    "03759954": "microphone",
    "03761084": "microwave",
    "03790512": "motorbike",
    "03797390": "mug",
    "03928116": "piano",
    "03938244": "pillow",
    "03948459": "pistol",
    "03991062": "pot",
    "04004475": "printer",
    "04074963": "remote",
    "04090263": "rifle",
    "04099429": "rocket",
    "04225987": "skateboard",
    "04256520": "sofa",
    "04330267": "stove",
    "04379243": "table",
    "04401088": "telephone",
    "04460130": "tower",
    "04468005": "train",
    "04530566": "watercraft",
    "04554684": "washer",
}

#: Alternative names accepted when filtering by category.
_ALIASES: dict[str, str] = {
    "airplane": "aeroplane",
    "plane": "aeroplane",
    "display": "monitor",
    "tv": "monitor",
    "loudspeaker": "speaker",
    "vessel": "watercraft",
    "phone": "telephone",
    "couch": "sofa",
}


def singular(name: str) -> str:
    """Singular form of a folder name used as a category: ``chairs -> chair``,
    ``benches -> bench``, ``boxes -> box``, ``sofas -> sofa``; names ending in ``ss``
    (``glass``) or shorter than 4 characters stay as they are."""
    n = name.strip()
    low = n.lower()
    if len(n) < 4 or low.endswith("ss") or not low.endswith("s"):
        return n
    if low.endswith(("ches", "shes", "sses", "xes")):
        return n[:-2]
    if low.endswith("ies") and len(n) > 4:
        return n[:-3] + "y"
    return n[:-1]


def canonical_category(name: str) -> str:
    """Map an alias or ShapeNet synset id to poseshape's category name (lower case)."""
    low = str(name).strip().lower()
    if low in SHAPENET_SYNSETS:
        return SHAPENET_SYNSETS[low]
    return _ALIASES.get(low, low)


class ModelRef(NamedTuple):
    """One model of a collection: ``(category, model_id, path)``; ``path`` is ``None`` for
    procedural shapes."""

    category: str
    model_id: str
    path: Path | None


@dataclass(frozen=True)
class _Entry:
    category: str
    model_id: str
    path: Path | None
    source: str  # "pascal3d", "objectnet3d", "shapenet", "identity" or "procedural"
    keypoints_path: Path | None = None
    seed: int | None = None  # procedural only


# ---------------------------------------------------------------------------- scanning


def _cad_dir(root: Path) -> Path:
    return root / "CAD" if (root / "CAD").is_dir() else root


def _is_synset_dir(p: Path) -> bool:
    return p.is_dir() and re.fullmatch(r"\d{8}", p.name) is not None


def detect_layout(root: str | os.PathLike) -> str:
    """Guess the layout of ``root``: ``"pascal3d"``, ``"objectnet3d"``, ``"shapenet"`` or
    ``"folder"`` (see the module docstring).  Raises ``FileNotFoundError`` when ``root`` is
    not a directory."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"mesh collection folder {root} does not exist")
    if any(_is_synset_dir(c) for c in root.iterdir()):
        return "shapenet"
    cad = root / "CAD" if (root / "CAD").is_dir() else (root if root.name == "CAD" else None)
    if cad is not None:
        exts = {f.suffix.lower() for d in cad.iterdir() if d.is_dir() for f in d.iterdir()}
        if ".off" in exts:
            return "pascal3d"
        if ".ply" in exts:
            return "objectnet3d"
    return "folder"


def _scan_cad(root: Path, ext: str, source: str) -> list[_Entry]:
    cad = _cad_dir(root)
    out = []
    for cat_dir in sorted(p for p in cad.iterdir() if p.is_dir()):
        for f in sorted(cat_dir.iterdir()):
            if f.is_file() and f.suffix.lower() == ext:
                kp = f.with_name(f.stem + "_keypoints.json")
                out.append(_Entry(cat_dir.name, f.stem, f, source, kp if kp.is_file() else None))
    return out


def _scan_shapenet(root: Path) -> list[_Entry]:
    out = []
    for syn in sorted(p for p in root.iterdir() if _is_synset_dir(p)):
        cat = SHAPENET_SYNSETS.get(syn.name, syn.name)
        for model in sorted(p for p in syn.iterdir() if p.is_dir()):
            for rel in ("models/model_normalized.obj", "model.obj"):
                if (model / rel).is_file():
                    out.append(_Entry(cat, model.name, model / rel, "shapenet"))
                    break
    return out


def _scan_folder(root: Path, source: str, singularize: bool) -> list[_Entry]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            f = Path(dirpath) / fn
            if f.suffix.lower() not in MESH_EXTENSIONS:
                continue
            rel = f.relative_to(root).with_suffix("")
            if len(rel.parts) > 1:
                cat, mid = rel.parts[0], "/".join(rel.parts[1:])
            else:
                cat, mid = root.resolve().name, rel.parts[0]
            out.append(_Entry(singular(cat) if singularize else cat, mid, f, source))
    return out


# ---------------------------------------------------------------------------- loading


class _Store:
    """Loads normalised meshes, with an in-memory LRU and an optional on-disk .npz cache.
    Shared by a collection and the subsets / splits made from it."""

    def __init__(self, cache_size: int, cache_dir: Path | None, dtype: torch.dtype | None):
        self.cache_size = int(cache_size)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.dtype = dtype
        self.lru: OrderedDict[tuple, tuple[Mesh, MeshTransform | None]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0

    def _key(self, e: _Entry) -> tuple:
        return (e.category, e.model_id, str(e.path), e.source, e.seed)

    def _disk_path(self, e: _Entry) -> Path | None:
        if self.cache_dir is None or e.path is None:
            return None
        st = e.path.stat()
        tag = f"{e.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{e.source}|{_CACHE_VERSION}"
        digest = hashlib.sha1(tag.encode()).hexdigest()[:16]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{e.category}_{e.model_id}")[:80]
        return self.cache_dir / f"{safe}_{digest}.npz"

    def _load_uncached(self, e: _Entry) -> tuple[Mesh, MeshTransform | None]:
        if e.source == "procedural":
            mesh, _ = generate(e.category, int(e.seed), dtype=torch.float64)
            return mesh, None
        disk = self._disk_path(e)
        if disk is not None and disk.is_file():
            try:
                with np.load(disk) as z:
                    tr = MeshTransform(
                        torch.from_numpy(z["rotation"]),
                        torch.from_numpy(z["center"]),
                        float(z["scale"]),
                    )
                    self.disk_hits += 1
                    return Mesh(torch.from_numpy(z["verts"]), torch.from_numpy(z["faces"])), tr
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                warnings.warn(f"rebuilding damaged mesh cache entry {disk}: {exc}", stacklevel=3)
        mesh, tr = load_mesh(e.path, source=e.source, normalize=True, return_transform=True, dtype=torch.float64)
        if disk is not None:
            disk.parent.mkdir(parents=True, exist_ok=True)
            atomic_save(
                disk,
                lambda fh: np.savez(
                    fh,
                    verts=mesh.verts.numpy(),
                    faces=mesh.faces.numpy(),
                    rotation=tr.rotation.numpy(),
                    center=tr.center.numpy(),
                    scale=np.float64(tr.scale),
                ),
            )
        return mesh, tr

    def get(self, e: _Entry) -> tuple[Mesh, MeshTransform | None]:
        """``(mesh, transform)``: the normalised float64 mesh (shared; callers copy)."""
        key = self._key(e)
        if key in self.lru:
            self.hits += 1
            self.lru.move_to_end(key)
            return self.lru[key]
        self.misses += 1
        item = self._load_uncached(e)
        if self.cache_size > 0:
            self.lru[key] = item
            while len(self.lru) > self.cache_size:
                self.lru.popitem(last=False)
        return item


# ---------------------------------------------------------------------------- collection


class MeshCollection:
    """A lazily loaded collection of models, yielding ``(category, model_id, Mesh)``.

    Args:
        root: the folder (see the module docstring for the layouts).
        layout: ``"auto"`` (default: :func:`detect_layout`) or one of :data:`LAYOUTS`.
        categories: keep only these categories (names, aliases or synset ids); ``None``
            keeps all.  A requested category that is absent raises, listing those present.
        source: override the native frame of the files (``"pascal3d"``, ``"objectnet3d"``,
            ``"shapenet"``, ``"identity"``); by default it follows the layout.
        cache_size: how many normalised meshes the in-memory LRU keeps (0 disables it).
        cache_dir: folder of an on-disk cache of normalised meshes (``.npz``); ``None``
            disables it.  Entries are keyed by file path, size, mtime and source.
        singularize: for ``"folder"`` layouts, make folder names singular (``chairs`` ->
            ``chair``).
        dtype: vertex dtype of the returned meshes (default: torch's default dtype).

    Each mesh is in the object frame: +Y up, front +Z, bounding box centred, largest side 1,
    ``verts (V, 3)`` and ``faces (F, 3)`` int64.  Meshes are returned as fresh copies.

    Attributes:
        root: the folder (``None`` for procedural collections).
        layout: the resolved layout name.
        skipped: ``[(path, reason), ...]`` of files that failed to parse during iteration.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        layout: str = "auto",
        categories: Sequence[str] | None = None,
        source: str | None = None,
        cache_size: int = 256,
        cache_dir: str | os.PathLike | None = None,
        singularize: bool = True,
        dtype: torch.dtype | None = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise PoseshapeError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
        if layout == "procedural":
            raise PoseshapeError("use MeshCollection.procedural(...) for procedural collections")
        if root is None:
            raise PoseshapeError("MeshCollection: root folder is required (or use .procedural())")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"mesh collection folder {root} does not exist")
        if layout == "auto":
            layout = detect_layout(root)
        if layout == "pascal3d":
            entries = _scan_cad(root, ".off", source or "pascal3d")
        elif layout == "objectnet3d":
            entries = _scan_cad(root, ".ply", source or "objectnet3d")
        elif layout == "shapenet":
            entries = _scan_shapenet(root)
            if source:
                entries = [_Entry(e.category, e.model_id, e.path, source) for e in entries]
        else:
            entries = _scan_folder(root, source or "identity", singularize)
        if not entries:
            raise FileFormatError(f"no mesh files found in {root} (layout {layout!r}; expected {_LAYOUT_HINT[layout]})")
        self._init(
            root,
            layout,
            _filter(entries, categories, root),
            _Store(cache_size, cache_dir, dtype),
            [],
        )

    # -- construction helpers --------------------------------------------------------

    def _init(self, root, layout, entries, store, skipped) -> None:
        self.root: Path | None = root
        self.layout: str = layout
        self._entries: list[_Entry] = list(entries)
        self._store: _Store = store
        self.skipped: list[tuple[Path, str]] = skipped

    def _view(self, entries: list[_Entry]) -> MeshCollection:
        new = object.__new__(MeshCollection)
        new._init(self.root, self.layout, entries, self._store, self.skipped)
        return new

    @classmethod
    def procedural(
        cls,
        categories: Sequence[str] | None = None,
        per_category: int = 10,
        seed: int = 0,
        cache_size: int = 256,
        dtype: torch.dtype | None = None,
    ) -> MeshCollection:
        """A collection of ``per_category`` procedural shapes per category.

        Model ``k`` of category ``c`` is ``generate(c, seed + k)`` with model id
        ``f"{c}_{k:04d}"`` (see :class:`poseshape.shapes.procedural.ProceduralShapes`).
        ``categories=None`` uses all of :data:`poseshape.shapes.procedural.CATEGORIES`.
        The in-memory LRU applies; there is no disk cache (building is milliseconds).
        """
        cats = list(CATEGORIES) if categories is None else [canonical_category(c) for c in categories]
        unknown = [c for c in cats if c not in CATEGORIES]
        if unknown:
            raise PoseshapeError(f"unknown procedural categories {unknown}; known: {list(CATEGORIES)}")
        if int(per_category) < 1:
            raise PoseshapeError(f"per_category must be >= 1, got {per_category}")
        entries = [
            _Entry(c, f"{c}_{k:04d}", None, "procedural", None, int(seed) + k)
            for c in cats
            for k in range(int(per_category))
        ]
        new = object.__new__(cls)
        new._init(None, "procedural", entries, _Store(cache_size, None, dtype), [])
        return new

    @classmethod
    def concat(cls, *collections: MeshCollection) -> MeshCollection:
        """One collection holding the models of several (e.g. PASCAL3D+ CAD + a folder of OBJ).

        Each model keeps its own file, native frame and category; the result's ``layout`` is
        ``"mixed"`` when the parts differ and ``root`` is the first part's. Model-level splits
        (:meth:`split_indices`) depend only on each category's model ids, so a category's split
        is the same whichever collections it is concatenated with when it only comes from one.

        Raises:
            PoseshapeError: no collection given, a non-collection argument, or the same
                ``(category, model_id)`` in two parts (rename one folder's files).
        """
        if not collections:
            raise PoseshapeError("MeshCollection.concat: give at least one collection")
        for c in collections:
            if not isinstance(c, MeshCollection):
                raise PoseshapeError(f"MeshCollection.concat: expected MeshCollection, got {type(c).__name__}")
        entries: list[_Entry] = []
        seen: dict[tuple[str, str], Any] = {}
        for c in collections:
            for e in c._entries:
                key = (e.category, str(e.model_id))
                if key in seen:
                    raise PoseshapeError(
                        f"MeshCollection.concat: model {key[1]!r} of category {key[0]!r} is in two "
                        f"collections ({seen[key]} and {e.path}); model ids must be unique per category"
                    )
                seen[key] = e.path
                entries.append(e)
        first = collections[0]
        layouts = {c.layout for c in collections}
        new = object.__new__(cls)
        new._init(
            first.root,
            first.layout if len(layouts) == 1 else "mixed",
            entries,
            first._store,
            [s for c in collections for s in c.skipped],
        )
        return new

    # -- listing ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def models(self) -> list[ModelRef]:
        """``[(category, model_id, path), ...]`` in collection order (no loading)."""
        return [ModelRef(e.category, e.model_id, e.path) for e in self._entries]

    @property
    def categories(self) -> list[str]:
        """Sorted category names present."""
        return sorted({e.category for e in self._entries})

    def counts(self) -> dict[str, int]:
        """Number of models per category."""
        out: dict[str, int] = {}
        for e in self._entries:
            out[e.category] = out.get(e.category, 0) + 1
        return dict(sorted(out.items()))

    def index(self, category: str, model_id: str) -> int:
        """Position of ``(category, model_id)``; ``KeyError`` when absent."""
        for i, e in enumerate(self._entries):
            if e.category == category and e.model_id == model_id:
                return i
        raise KeyError(f"no model {category}/{model_id} in this collection")

    # -- loading ---------------------------------------------------------------------

    def _entry(self, index: int) -> _Entry:
        n = len(self._entries)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a collection of {n} models")
        return self._entries[int(index)]

    def _mesh(self, e: _Entry) -> Mesh:
        mesh, _ = self._store.get(e)
        dtype = self._store.dtype or torch.get_default_dtype()
        return Mesh(mesh.verts.to(dtype, copy=True), mesh.faces.clone())

    def mesh(self, index: int) -> Mesh:
        """The normalised mesh of model ``index`` (raises ``FileFormatError`` if corrupt)."""
        return self._mesh(self._entry(index))

    def __getitem__(self, index: int) -> tuple[str, str, Mesh]:
        """``(category, model_id, Mesh)`` of model ``index``; a corrupt file raises
        :class:`~poseshape.core.errors.FileFormatError` naming it."""
        e = self._entry(index)
        return e.category, e.model_id, self._mesh(e)

    def __iter__(self) -> Iterator[tuple[str, str, Mesh]]:
        """Yield ``(category, model_id, Mesh)``; files that fail to parse are warned about,
        recorded in :attr:`skipped` and skipped."""
        for e in self._entries:
            try:
                mesh = self._mesh(e)
            except FileFormatError as exc:
                if not any(p == e.path for p, _ in self.skipped):
                    self.skipped.append((e.path, str(exc)))
                warnings.warn(f"skipping unreadable mesh {e.path}: {exc}", stacklevel=2)
                continue
            yield e.category, e.model_id, mesh

    def keypoints(self, index: int) -> dict[str, torch.Tensor] | None:
        """Named 3-D keypoints of model ``index`` in the same normalised object frame as its
        mesh (``{name: (3,) tensor}``), or ``None`` when the model has none (only the
        PASCAL3D+ layout ships them, as ``<NN>_keypoints.json``)."""
        e = self._entry(index)
        if e.keypoints_path is None:
            return None
        try:
            raw = json.loads(e.keypoints_path.read_text())
            names = sorted(raw)
            pts = np.array([[float(raw[k][a]) for a in "xyz"] for k in names], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FileFormatError(
                f"{e.keypoints_path}: cannot parse keypoints ({type(exc).__name__}: {exc}); "
                "expected {name: {x, y, z}}"
            ) from None
        _, tr = self._store.get(e)
        dtype = self._store.dtype or torch.get_default_dtype()
        out = apply_transform(torch.from_numpy(pts).reshape(-1, 3), tr).to(dtype)
        return {k: out[i] for i, k in enumerate(names)}

    def params(self, index: int) -> dict | None:
        """The generator parameters of procedural model ``index`` (``None`` for files)."""
        e = self._entry(index)
        if e.source != "procedural":
            return None
        return generate(e.category, int(e.seed))[1]

    # -- subsets and splits ----------------------------------------------------------

    def filter(self, categories: Sequence[str]) -> MeshCollection:
        """The models of ``categories`` (names, aliases or synset ids); shares the caches."""
        return self._view(_filter(self._entries, categories, self.root))

    def subset(self, indices: Sequence[int]) -> MeshCollection:
        """The models at ``indices``, in that order; shares the caches."""
        return self._view([self._entry(int(i)) for i in indices])

    def split_indices(
        self,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        names: Sequence[str] = ("train", "val", "test"),
    ) -> dict[str, list[int]]:
        """Split the models (not images) into named parts, per category.

        Within each category the model ids are sorted, permuted by
        ``numpy.random.default_rng([seed, crc32(category)])`` and cut at the rounded
        cumulative ``fractions`` (normalised to sum 1), so every category is split in the
        same proportions, each model lands in exactly one part, and the result depends only
        on ``(seed, fractions, the category's model ids)``, not on the other categories or
        the listing order.

        Returns:
            ``{name: [indices into this collection, ascending]}``.
        """
        fr = np.asarray(fractions, dtype=np.float64)
        if fr.ndim != 1 or len(fr) != len(names) or (fr < 0).any() or fr.sum() <= 0:
            raise PoseshapeError(
                f"fractions must be {len(names)} non-negative numbers with a positive sum "
                f"(one per name in {list(names)}), got {list(fractions)}"
            )
        cum = np.cumsum(fr / fr.sum())
        by_cat: dict[str, list[int]] = {}
        for i, e in enumerate(self._entries):
            by_cat.setdefault(e.category, []).append(i)
        out: dict[str, list[int]] = {n: [] for n in names}
        for cat, idx in by_cat.items():
            idx = sorted(idx, key=lambda i: self._entries[i].model_id)
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(cat.encode())])
            perm = [idx[j] for j in rng.permutation(len(idx))]
            bounds = [0] + [round(c * len(idx)) for c in cum]
            bounds[-1] = len(idx)
            for k, n in enumerate(names):
                out[n].extend(perm[bounds[k] : bounds[k + 1]])
        return {n: sorted(v) for n, v in out.items()}

    def split(
        self,
        name: str,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        names: Sequence[str] = ("train", "val", "test"),
    ) -> MeshCollection:
        """The ``name`` part of :meth:`split_indices` as a collection (shares the caches)."""
        parts = self.split_indices(fractions, seed, names)
        if name not in parts:
            raise PoseshapeError(f"split name must be one of {list(names)}, got {name!r}")
        return self.subset(parts[name])

    def splits(
        self,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        names: Sequence[str] = ("train", "val", "test"),
    ) -> dict[str, MeshCollection]:
        """All parts of :meth:`split_indices` as collections."""
        return {n: self.subset(ix) for n, ix in self.split_indices(fractions, seed, names).items()}

    # -- reporting -------------------------------------------------------------------

    @property
    def cache_info(self) -> dict[str, int]:
        """In-memory hits / misses, on-disk hits and the number of meshes held."""
        s = self._store
        return {"hits": s.hits, "misses": s.misses, "disk_hits": s.disk_hits, "size": len(s.lru)}

    def summary(self) -> str:
        """One line: layout, root, model and category counts, and skipped files."""
        where = f" at {self.root}" if self.root is not None else ""
        txt = f"{self.layout} collection{where}: {len(self)} models in {len(self.categories)} categories"
        if self.skipped:
            txt += f"; skipped {len(self.skipped)} unreadable file(s): " + ", ".join(str(p) for p, _ in self.skipped)
        return txt

    def __repr__(self) -> str:
        return f"MeshCollection({self.summary()})"


_LAYOUT_HINT = {
    "pascal3d": "CAD/<category>/<NN>.off",
    "objectnet3d": "CAD/<category>/<NN>.ply",
    "shapenet": "<synset>/<model>/models/model_normalized.obj or <synset>/<model>/model.obj",
    "folder": "files ending in " + ", ".join(MESH_EXTENSIONS) + " (category = sub-folder)",
}


def _filter(entries: list[_Entry], categories: Sequence[str] | None, root) -> list[_Entry]:
    if categories is None:
        return list(entries)
    if isinstance(categories, str):
        categories = [categories]
    present = {e.category for e in entries}
    by_canon: dict[str, str] = {}
    for c in present:
        by_canon.setdefault(canonical_category(c), c)
        by_canon.setdefault(c.lower(), c)
    wanted, missing = set(), []
    for c in categories:
        hit = by_canon.get(str(c).lower()) or by_canon.get(canonical_category(c))
        if hit is None:
            missing.append(c)
        else:
            wanted.add(hit)
    if missing:
        where = f" in {root}" if root is not None else ""
        raise PoseshapeError(f"categories {missing} not found{where}; present: {sorted(present)}")
    return [e for e in entries if e.category in wanted]
