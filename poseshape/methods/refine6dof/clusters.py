"""Shape clusters and their medoids (paper 003, §4.1 "Selecting the representative 3D model").

The paper groups the car models into three clusters (sedan, SUV, cargo) and, "following
Tatarchenko et al. [38]", picks each cluster's representative by "extracting and comparing
the HOG descriptors from two standard rendered views of each CAD model (i.e. frontal and
side)": the *medoid*, "the model with the least average distance from all the others".

Here:

* distances (``(N, N)`` symmetric, zero diagonal, float64):
  :func:`hog_distance_matrix` -- L2 between the concatenated HOG descriptors
  (``skimage.feature.hog``: 9 orientations, 8x8-pixel cells, 2x2-cell blocks, L2-Hys) of a
  frontal and a side rendering (exact raster, :func:`poseshape.render.mesh_hard.rasterize`,
  orthographic, the unit cube filling ``hog_size`` pixels with a margin; Lambert-shaded
  grey or the silhouette); :func:`voxel_iou_distance_matrix` -- ``1 - IoU`` of the solid
  voxelisations (:func:`poseshape.shapes.voxels.voxelize`);
* clustering: k-medoids on the precomputed matrix (:func:`kmedoids`): the exhaustive
  optimum over all ``C(N, k)`` medoid sets when there are few, else PAM (BUILD + SWAP,
  Kaufman & Rousseeuw), both deterministic (ties go to the lowest index);
* medoid of a cluster (:func:`medoid`): the member with the least mean distance to the other
  members (the paper's definition), recomputed after clustering;
* cluster order: by category, then by medoid key, so labels do not depend on the input order.
"""

from __future__ import annotations

import itertools
import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.geometry.camera import viewpoint_to_pose
from poseshape.render.mesh_hard import rasterize
from poseshape.shapes.meshes import Mesh, face_normals
from poseshape.shapes.voxels import voxelize

__all__ = [
    "ClusterResult",
    "cluster_models",
    "hog_descriptor",
    "hog_distance_matrix",
    "hog_views",
    "kmedoids",
    "kmedoids_cost",
    "medoid",
    "voxel_iou_distance_matrix",
]


# =============================================================================== distances
def hog_views(mesh: Mesh, size: int = 64, mode: str = "shaded", margin: float = 0.1) -> np.ndarray:
    """The frontal and side renderings of a unit-cube mesh: ``(2, size, size)`` float in [0, 1].

    Frontal: camera on the +Z side (the object's front) looking at -Z; side: camera on the +X
    side (PASCAL3D+ azimuth 90 deg); both orthographic (weak perspective) with the unit cube
    spanning ``size / (1 + 2 margin)`` pixels, +Y up on screen. ``mode="shaded"``: grey
    ``0.2 + 0.8 |n . l|`` with the light along the view direction (background 0);
    ``"silhouette"``: the mask.
    """
    if mode not in ("shaded", "silhouette"):
        raise ShapeError(f"hog render mode: expected 'shaded' or 'silhouette', got {mode!r}")
    if size < 16:
        raise ShapeError(f"hog size: expected >= 16 pixels, got {size}")
    verts = mesh.verts.detach().double().cpu()
    R, _ = viewpoint_to_pose(
        torch.tensor([0.0, math.pi / 2], dtype=torch.float64),
        torch.zeros(2, dtype=torch.float64),
        torch.zeros(2, dtype=torch.float64),
        torch.full((2,), 3.0, dtype=torch.float64),
    )
    t = torch.tensor([[size / 2, size / 2, 3.0]] * 2, dtype=torch.float64)
    scale = size / (1.0 + 2.0 * margin)
    fr = rasterize(verts, mesh.faces.cpu(), R, t, None, size, scale=scale)
    mask = fr.mask[:, 0]
    if mode == "silhouette" or mesh.num_faces == 0:
        return mask.float().numpy()
    n_obj = face_normals(verts, mesh.faces.cpu())  # (F, 3)
    fi = fr.face_idx.clamp_min(0)
    n_cam = torch.einsum("bij,bhwj->bhwi", R, n_obj[fi])
    grey = (0.2 + 0.8 * n_cam[..., 2].abs()) * mask
    return grey.float().numpy()


def hog_descriptor(mesh: Mesh, size: int = 64, mode: str = "shaded") -> np.ndarray:
    """Concatenated HOG of :func:`hog_views` (frontal, side): ``(D,)`` float64."""
    from skimage.feature import hog

    views = hog_views(mesh, size, mode)
    return np.concatenate(
        [
            hog(
                v,
                orientations=9,
                pixels_per_cell=(8, 8),
                cells_per_block=(2, 2),
                block_norm="L2-Hys",
                feature_vector=True,
            )
            for v in views
        ]
    ).astype(np.float64)


def _pairwise_l2(x: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    d = np.sqrt(d2)
    np.fill_diagonal(d, 0.0)
    return (d + d.T) / 2


def hog_distance_matrix(meshes: Sequence[Mesh], size: int = 64, mode: str = "shaded") -> np.ndarray:
    """Paper 003's shape distance: ``(N, N)`` L2 between HOG descriptors of two views."""
    if not meshes:
        raise ShapeError("hog_distance_matrix: no meshes")
    return _pairwise_l2(np.stack([hog_descriptor(m, size, mode) for m in meshes]))


def voxel_iou_distance_matrix(voxels: torch.Tensor) -> np.ndarray:
    """``1 - IoU`` between solid voxel grids ``(N, Q, Q, Q)`` (occupancy > 0.5): ``(N, N)``."""
    if not isinstance(voxels, torch.Tensor) or voxels.dim() != 4 or voxels.shape[0] == 0:
        raise ShapeError(
            f"voxels: expected a non-empty (N, Q, Q, Q) tensor, got "
            f"{tuple(voxels.shape) if isinstance(voxels, torch.Tensor) else type(voxels).__name__}"
        )
    occ = (voxels > 0.5).reshape(voxels.shape[0], -1).double()
    inter = occ @ occ.T
    cnt = occ.sum(1)
    union = cnt[:, None] + cnt[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    d = (1.0 - iou).numpy()
    np.fill_diagonal(d, 0.0)
    return d


# =============================================================================== k-medoids
def _check_matrix(D: np.ndarray) -> np.ndarray:
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or D.shape[0] == 0:
        raise ShapeError(f"distance matrix: expected a non-empty square (N, N) array, got shape {D.shape}")
    if not np.isfinite(D).all():
        raise ShapeError("distance matrix: contains NaN or infinite values")
    if (D < 0).any():
        raise ShapeError("distance matrix: contains negative distances")
    return D


def medoid(D: np.ndarray, members: Sequence[int]) -> int:
    """The member of ``members`` with the least mean distance to the *other* members.

    Ties go to the lowest index; a single member is its own medoid.
    """
    D = _check_matrix(D)
    idx = sorted(int(i) for i in members)
    if not idx:
        raise ShapeError("medoid: empty cluster")
    if len(idx) == 1:
        return idx[0]
    sub = D[np.ix_(idx, idx)]
    mean = sub.sum(1) / (len(idx) - 1)
    return idx[int(np.argmin(mean))]  # argmin returns the first (lowest index) minimum


def _assign(D: np.ndarray, medoids: Sequence[int]) -> np.ndarray:
    """Index (into ``medoids``) of the nearest medoid of every point; ties -> first medoid."""
    return np.argmin(D[:, list(medoids)], axis=1)


def kmedoids_cost(D: np.ndarray, medoids: Sequence[int]) -> float:
    """Sum over points of the distance to their nearest medoid."""
    D = _check_matrix(D)
    return float(D[:, list(medoids)].min(1).sum())


def _pam(D: np.ndarray, k: int, max_iter: int = 100) -> list[int]:
    n = D.shape[0]
    # BUILD: the most central point, then greedily the point that lowers the cost the most.
    med = [int(np.argmin(D.sum(1)))]
    near = D[:, med[0]].copy()
    while len(med) < k:
        gains = np.array([np.maximum(near - D[:, c], 0).sum() if c not in med else -np.inf for c in range(n)])
        c = int(np.argmax(gains))
        med.append(c)
        near = np.minimum(near, D[:, c])
    # SWAP: the best (medoid, non-medoid) exchange while it lowers the cost.
    cost = kmedoids_cost(D, med)
    for _ in range(max_iter):
        best, best_cost = None, cost - 1e-12 * max(1.0, cost)
        for i in range(k):
            for o in range(n):
                if o in med:
                    continue
                trial = med[:i] + [o] + med[i + 1 :]
                c = kmedoids_cost(D, trial)
                if c < best_cost:
                    best, best_cost = trial, c
        if best is None:
            break
        med, cost = best, best_cost
    return med


def kmedoids(
    D: np.ndarray, k: int, method: str = "auto", exhaustive_limit: int = 20000
) -> tuple[np.ndarray, list[int]]:
    """Cluster ``N`` items given their distances into ``k`` groups around medoids.

    Args:
        D: ``(N, N)`` symmetric non-negative distances.
        k: number of clusters, ``1 <= k <= N``.
        method: ``"exhaustive"`` (the global optimum of the k-medoids cost over all
            ``C(N, k)`` medoid sets; the first in lexicographic order on ties), ``"pam"``
            (BUILD + SWAP local search) or ``"auto"`` (exhaustive when ``C(N, k) <=
            exhaustive_limit``).

    Returns:
        ``(labels (N,) int64 in [0, k), medoids)`` where ``medoids[c]`` is the index of
        cluster ``c``'s medoid per :func:`medoid` (least mean distance to the other members),
        clusters ordered by their medoid's index. Deterministic.
    """
    D = _check_matrix(D)
    n = D.shape[0]
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= n):
        raise ShapeError(f"kmedoids: need 1 <= k <= N = {n}, got k = {k!r}")
    if method not in ("auto", "pam", "exhaustive"):
        raise ShapeError(f"kmedoids: method must be 'auto', 'pam' or 'exhaustive', got {method!r}")
    if method == "auto":
        method = "exhaustive" if math.comb(n, k) <= exhaustive_limit else "pam"
    if method == "exhaustive":
        best, best_cost = None, math.inf
        for comb in itertools.combinations(range(n), k):
            c = float(D[:, comb].min(1).sum())
            if c < best_cost - 1e-12 * max(1.0, abs(c)):
                best, best_cost = list(comb), c
        med = best
    else:
        med = _pam(D, int(k))
    lab = _assign(D, med)
    # the paper's medoid of each resulting cluster (a cluster always holds its own medoid)
    meds = [medoid(D, np.nonzero(lab == c)[0]) for c in range(len(med))]
    order = np.argsort(meds, kind="stable")
    remap = np.empty(len(order), np.int64)
    remap[order] = np.arange(len(order))
    return remap[lab].astype(np.int64), [int(meds[i]) for i in order]


# =============================================================================== result
@dataclass
class ClusterResult:
    """Clusters of a model collection.

    Attributes:
        keys: ``"category/model_id"`` of the ``N`` clustered models (collection order).
        labels: ``(N,)`` global cluster index of each model.
        medoids: ``(C,)`` index (into ``keys``) of each cluster's medoid.
        cluster_categories: category of each cluster (``"*"`` for ``scope="all"``).
        distance, scope, method: how they were made; ``distances`` the per-group
            ``(n, n)`` matrices (lists) keyed by group (category or ``"*"``), for reports.
    """

    keys: list[str]
    labels: list[int]
    medoids: list[int]
    cluster_categories: list[str]
    distance: str = "hog"
    scope: str = "category"
    method: str = "auto"
    distances: dict[str, Any] = field(default_factory=dict)

    @property
    def num_clusters(self) -> int:
        return len(self.medoids)

    def sizes(self) -> list[int]:
        return [int(sum(1 for lab in self.labels if lab == c)) for c in range(self.num_clusters)]

    def label_of(self, category: str, model_id: str) -> int:
        """Cluster of model ``category/model_id``.

        Raises:
            PoseshapeError: the model was not clustered (another mesh source?).
        """
        key = f"{category}/{model_id}"
        try:
            return self.labels[self._index()[key]]
        except KeyError:
            raise PoseshapeError(
                f"model {key} is not among the {len(self.keys)} clustered models; render "
                "the data from the same mesh source (data.meshes) and categories"
            ) from None

    def _index(self) -> dict[str, int]:
        idx = getattr(self, "_idx", None)
        if idx is None:
            idx = {k: i for i, k in enumerate(self.keys)}
            object.__setattr__(self, "_idx", idx)
        return idx

    def split(
        self,
        fractions: Sequence[float] = (0.6, 0.2, 0.2),
        seed: int = 0,
        medoids_in_splits: bool = False,
        names: Sequence[str] = ("train", "val", "test"),
    ) -> dict[str, list[int]]:
        """Model-level split per cluster (paper: 0.6-0.2-0.2 of each cluster).

        Within each cluster the members (without the medoid unless ``medoids_in_splits``)
        are sorted by key, permuted by ``default_rng([seed, crc32(medoid key)])`` and cut at
        the rounded cumulative fractions. Returns ``{name: sorted indices into keys}``.
        """
        fr = np.asarray(fractions, np.float64)
        if fr.shape != (len(names),) or (fr < 0).any() or fr.sum() <= 0:
            raise PoseshapeError(
                f"split fractions: expected {len(names)} non-negative numbers with a "
                f"positive sum, got {list(fractions)}"
            )
        cum = np.cumsum(fr / fr.sum())
        out: dict[str, list[int]] = {n: [] for n in names}
        meds = set(self.medoids)
        for c in range(self.num_clusters):
            members = sorted(
                (i for i, lab in enumerate(self.labels) if lab == c and (medoids_in_splits or i not in meds)),
                key=lambda i: self.keys[i],
            )
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(self.keys[self.medoids[c]].encode())])
            perm = [members[j] for j in rng.permutation(len(members))]
            bounds = [0] + [round(x * len(members)) for x in cum]
            bounds[-1] = len(members)
            for k, n in enumerate(names):
                out[n].extend(perm[bounds[k] : bounds[k + 1]])
        return {n: sorted(v) for n, v in out.items()}

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ClusterResult:
        d = json.loads(text)
        return cls(
            **{
                k: d[k]
                for k in ("keys", "labels", "medoids", "cluster_categories", "distance", "scope", "method", "distances")
                if k in d
            }
        )


def cluster_models(
    meshes: Sequence[Mesh],
    keys: Sequence[str],
    categories: Sequence[str],
    k: int,
    distance: str = "hog",
    scope: str = "category",
    method: str = "auto",
    exhaustive_limit: int = 20000,
    hog_size: int = 64,
    hog_render: str = "shaded",
    voxel_res: int = 32,
    voxels: torch.Tensor | None = None,
) -> ClusterResult:
    """Cluster models into ``k`` groups per category (``scope="category"``) or in all.

    Args:
        meshes: ``N`` meshes in the object frame (unit cube); keys: their
            ``"category/model_id"``; categories: their category names.
        k: clusters per group.
        distance: ``"hog"`` or ``"voxel_iou"``.
        voxels: optional precomputed ``(N, Q, Q, Q)`` grids for ``"voxel_iou"``.

    Raises:
        PoseshapeError: a group has fewer than ``k`` models, unknown options.
    """
    N = len(meshes)
    if not (N == len(keys) == len(categories)) or N == 0:
        raise PoseshapeError(
            f"cluster_models: {N} meshes, {len(keys)} keys and {len(categories)} categories must agree and be non-empty"
        )
    if distance not in ("hog", "voxel_iou"):
        raise PoseshapeError(f"cluster_distance: expected 'hog' or 'voxel_iou', got {distance!r}")
    if scope not in ("category", "all"):
        raise PoseshapeError(f"cluster_scope: expected 'category' or 'all', got {scope!r}")
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(categories):
        groups.setdefault(c if scope == "category" else "*", []).append(i)
    if distance == "voxel_iou" and voxels is None:
        voxels = torch.stack([voxelize(m, voxel_res) for m in meshes])
    labels = np.full(N, -1, np.int64)
    medoids: list[int] = []
    cats: list[str] = []
    dists: dict[str, Any] = {}
    for g in sorted(groups):
        idx = groups[g]
        if len(idx) < k:
            raise PoseshapeError(
                f"category {g!r} has {len(idx)} models, fewer than num_clusters={k}; lower num_clusters or add models"
            )
        if distance == "hog":
            D = hog_distance_matrix([meshes[i] for i in idx], hog_size, hog_render)
        else:
            D = voxel_iou_distance_matrix(voxels[idx])
        lab, med = kmedoids(D, k, method, exhaustive_limit)
        # order the group's clusters by their medoid's key
        order = sorted(range(k), key=lambda c: keys[idx[med[c]]])
        for new, c in enumerate(order):
            for j in np.nonzero(lab == c)[0]:
                labels[idx[j]] = len(medoids) + new
        medoids += [idx[med[c]] for c in order]
        cats += [g] * k
        dists[g] = {"keys": [keys[i] for i in idx], "matrix": np.round(D, 6).tolist()}
    return ClusterResult(
        keys=list(keys),
        labels=labels.tolist(),
        medoids=medoids,
        cluster_categories=cats,
        distance=distance,
        scope=scope,
        method=method,
        distances=dists,
    )
