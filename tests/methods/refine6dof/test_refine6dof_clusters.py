"""Shape clusters and medoids (paper 003, §4.1): brute-force checks, distances, real cars."""

from __future__ import annotations

import functools
import itertools
import operator

import numpy as np
import pytest
import torch

from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.methods.refine6dof.clusters import (
    ClusterResult,
    cluster_models,
    hog_distance_matrix,
    hog_views,
    kmedoids,
    kmedoids_cost,
    medoid,
    voxel_iou_distance_matrix,
)


def _random_metric(n: int, seed: int, blobs: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    pts = g.normal(size=(n, 3))
    if blobs:
        pts += 10.0 * np.eye(3)[np.arange(n) % blobs]
    return np.linalg.norm(pts[:, None] - pts[None], axis=-1)


@pytest.mark.parametrize("seed", range(5))
def test_medoid_matches_brute_force(seed):
    D = _random_metric(9, seed)
    g = np.random.default_rng(100 + seed)
    members = sorted(g.choice(9, size=g.integers(1, 10), replace=False).tolist())
    best, best_mean = None, np.inf
    for i in members:  # brute force: mean distance of i to every *other* member
        others = [j for j in members if j != i]
        mean = sum(D[i, j] for j in others) / len(others) if others else 0.0
        if mean < best_mean - 1e-12:
            best, best_mean = i, mean
    assert medoid(D, members) == best
    assert medoid(D, list(reversed(members))) == best  # order of the members does not matter


def test_medoid_hand_example():
    # 4 items on a line at 0, 1, 2, 10: the mean distances are 13/3, 11/3, 11/3, 27/3 -> tie, lowest index wins
    x = np.array([0.0, 1.0, 2.0, 10.0])
    D = np.abs(x[:, None] - x[None])
    assert medoid(D, [0, 1, 2, 3]) == 1
    assert medoid(D, [0, 2, 3]) == 2  # 12/2, 10/2, 18/2
    assert medoid(D, [3]) == 3


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 3), (2, 3), (3, 4)])
def test_exhaustive_kmedoids_is_the_brute_force_optimum(seed, k):
    D = _random_metric(8, seed)
    labels, meds = kmedoids(D, k, method="exhaustive")
    brute = min(float(D[:, list(c)].min(1).sum()) for c in itertools.combinations(range(8), k))
    assert kmedoids_cost(D, meds) == pytest.approx(brute, abs=1e-9)
    # every item sits in the cluster of its nearest medoid, and every medoid is its cluster's medoid
    assert np.array_equal(labels, np.argmin(D[:, meds], 1))
    for c, m in enumerate(meds):
        assert labels[m] == c
        assert medoid(D, np.nonzero(labels == c)[0]) == m
    assert meds == sorted(meds)  # clusters are ordered by their medoid


@pytest.mark.parametrize("seed", range(3))
def test_pam_finds_the_optimum_on_separated_groups_and_is_deterministic(seed):
    D = _random_metric(30, seed, blobs=3)
    l1, m1 = kmedoids(D, 3, method="pam")
    l2, m2 = kmedoids(D, 3, method="exhaustive")
    assert m1 == m2 and np.array_equal(l1, l2)
    assert np.array_equal(l1, np.arange(30) % 3 if l1[0] == 0 else l1)  # the three blobs
    assert len({tuple(np.nonzero(l1 == c)[0] % 3) for c in range(3)}) == 3
    # permuting the items permutes the result (same partition)
    perm = np.random.default_rng(seed).permutation(30)
    _lp, mp = kmedoids(D[np.ix_(perm, perm)], 3, method="pam")
    assert sorted(perm[mp].tolist()) == sorted(m1)


def test_kmedoids_rejects_bad_input():
    D = _random_metric(4, 0)
    with pytest.raises(ShapeError, match="k"):
        kmedoids(D, 5)
    with pytest.raises(ShapeError, match="square"):
        kmedoids(D[:3], 2)
    bad = D.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ShapeError, match="NaN"):
        kmedoids(bad, 2)
    with pytest.raises(ShapeError, match="method"):
        kmedoids(D, 2, method="kmeans")


def _procedural(cats, n):
    from poseshape.data.collections import MeshCollection

    coll = MeshCollection.procedural(categories=cats, per_category=n, seed=0)
    meshes = [coll.mesh(i) for i in range(len(coll))]
    keys = [f"{r.category}/{r.model_id}" for r in coll.models]
    return meshes, keys, [r.category for r in coll.models]


def test_hog_views_front_and_side():
    meshes, _, _ = _procedural(["car"], 1)
    v = hog_views(meshes[0], 48, "silhouette")
    assert v.shape == (2, 48, 48) and v.max() == 1.0
    # a car is longer (z) than wide (x): its side view is wider than its frontal view
    width = lambda m: np.ptp(np.nonzero(m.any(0))[0])
    assert width(v[1]) > 1.3 * width(v[0])
    shaded = hog_views(meshes[0], 48, "shaded")
    assert shaded.min() >= 0 and shaded.max() <= 1 and len(np.unique(shaded)) > 3


@pytest.mark.parametrize("distance", ["hog", "voxel_iou"])
def test_clusters_separate_categories(distance):
    meshes, keys, cats = _procedural(["car", "sofa"], 4)
    res = cluster_models(meshes, keys, cats, k=2, distance=distance, scope="all", hog_size=48, voxel_res=24)
    groups = {tuple(sorted(c for c, lab in zip(cats, res.labels) if lab == g)) for g in range(2)}
    assert groups == {("car",) * 4, ("sofa",) * 4}
    assert res.cluster_categories == ["*", "*"]
    for c, m in enumerate(res.medoids):
        assert res.labels[m] == c
    D = np.asarray(res.distances["*"]["matrix"])
    assert np.allclose(D, D.T) and np.allclose(np.diag(D), 0)
    if distance == "hog":
        assert np.allclose(D, hog_distance_matrix(meshes, 48, "shaded"), atol=1e-5)
    again = cluster_models(meshes, keys, cats, k=2, distance=distance, scope="all", hog_size=48, voxel_res=24)
    assert again.labels == res.labels and again.medoids == res.medoids


def test_voxel_iou_distance():
    a = torch.zeros(3, 4, 4, 4)
    a[0, :2] = 1
    a[1, :1] = 1
    a[2, 2:] = 1
    D = voxel_iou_distance_matrix(a)
    assert D[0, 1] == pytest.approx(0.5) and D[0, 2] == pytest.approx(1.0) and D[1, 1] == 0


def test_per_category_clusters_and_split():
    meshes, keys, cats = _procedural(["car", "chair"], 5)
    res = cluster_models(meshes, keys, cats, k=2, distance="voxel_iou", scope="category", voxel_res=16)
    assert res.cluster_categories == ["car", "car", "chair", "chair"]
    assert all(cats[i] == res.cluster_categories[res.labels[i]] for i in range(len(keys)))
    parts = res.split((0.6, 0.2, 0.2), seed=0)
    flat = functools.reduce(operator.iadd, parts.values(), [])
    assert len(flat) == len(set(flat)) == len(keys) - 4 and not set(flat) & set(res.medoids)
    with_meds = res.split((0.6, 0.2, 0.2), seed=0, medoids_in_splits=True)
    assert len(functools.reduce(operator.iadd, with_meds.values(), [])) == len(keys)
    back = ClusterResult.from_json(res.to_json())
    assert back.labels == res.labels and back.label_of("car", keys[0].split("/")[1]) == res.labels[0]
    with pytest.raises(PoseshapeError, match="not among"):
        res.label_of("car", "nope")
    with pytest.raises(PoseshapeError, match="fewer than num_clusters"):
        cluster_models(meshes[:3], keys[:3], cats[:3], k=4, distance="voxel_iou", voxel_res=8)


def test_pascal3d_cars_cluster(shared_data):
    """The paper's setting on the real CAD cars of ../shared/data: 3 clusters by HOG."""
    from poseshape.data.collections import MeshCollection

    coll = MeshCollection(shared_data / "pascal3d_cad", categories=["car"], cache_size=0)
    meshes = [coll.mesh(i) for i in range(len(coll))]
    keys = [f"{r.category}/{r.model_id}" for r in coll.models]
    res = cluster_models(meshes, keys, ["car"] * len(keys), k=3, distance="hog", hog_size=64)
    assert sorted(set(res.labels)) == [0, 1, 2] and len(res.medoids) == 3
    D = np.asarray(res.distances["car"]["matrix"])
    brute = min(float(D[:, list(c)].min(1).sum()) for c in itertools.combinations(range(len(keys)), 3))
    assert kmedoids_cost(D, [keys.index(res.keys[m]) for m in res.medoids]) == pytest.approx(brute, abs=1e-6)


def test_more_meshes_joins_mesh_folders(shared_data, tmp_path):
    """data.more_meshes: PASCAL3D+ chairs + the meshes_obj chairs (Y up, front +X) in one collection."""
    from poseshape.engine.registry import get_method
    from poseshape.methods.refine6dof.data import load_collection

    spec = get_method("refine6dof")
    base = [f"data.meshes={shared_data / 'pascal3d_cad'}", "data.categories=[chair]"]
    one = load_collection(spec.make_config(None, base))
    more = load_collection(
        spec.make_config(None, [*base, f"data.more_meshes=[{shared_data / 'meshes_obj'}@yup_xfront]"])
    )
    assert len(more) == len(one) + 30 and more.categories == ["chair"]
    ids = {r.model_id for r in more.models}
    assert {r.model_id for r in one.models} < ids and "ChairArms1" in ids
    # a meshes_obj chair is upright and faces +Z in the object frame, as the PASCAL3D+ ones
    k = [i for i, r in enumerate(more.models) if r.model_id == "ChairArms1"][0]
    v = more.mesh(k).verts
    assert float(v[:, 1].max() - v[:, 1].min()) > 0.6  # tall along +Y
    bad = [*base, f"data.more_meshes=[{tmp_path / 'nope'}]"]
    with pytest.raises(PoseshapeError, match="more_meshes entry .*nope.* is not a folder"):
        load_collection(spec.make_config(None, bad))
    with pytest.raises(PoseshapeError, match=r"no models of \['zebra'\].*they have \[.*'car'.*'chair'"):
        load_collection(
            spec.make_config(None, [f"data.meshes={shared_data / 'pascal3d_cad'}", "data.categories=[zebra]"])
        )
    with pytest.raises(PoseshapeError, match="data.meshes must be a folder too"):
        load_collection(spec.make_config(None, ["data.more_meshes=[x]"]))
