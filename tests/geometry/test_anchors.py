"""Rotation / translation anchors: counts, covering, nearest anchor, residual round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.geometry import anchors as anc
from poseshape.geometry.rotations import quaternion_to_matrix

F64 = torch.float64


def _shoemake_numpy(n: int) -> np.ndarray:
    """Independent re-statement of paper 004 eq. 1 on linspace(0, 1, n)^3 (loops)."""
    out = []
    for u1 in np.linspace(0, 1, n):
        for u2 in np.linspace(0, 1, n):
            for u3 in np.linspace(0, 1, n):
                out.append(
                    [
                        math.sqrt(1 - u1) * math.sin(2 * math.pi * u2),
                        math.sqrt(1 - u1) * math.cos(2 * math.pi * u2),
                        math.sqrt(u1) * math.sin(2 * math.pi * u3),
                        math.sqrt(u1) * math.cos(2 * math.pi * u3),
                    ]
                )
    return np.array(out)


@pytest.mark.parametrize("n, counts", [(5, (125, 85, 56, 28)), (7, (343, 259, 192, 96)), (9, (729, 585, 464, 232))])
def test_paper_grid_counts(n, counts):
    got = tuple(anc.quaternion_anchors(n, dedup=d).shape[0] for d in ("none", "exact", "quaternion", "rotation"))
    assert got == counts
    # the paper's 259 (n = 7) is the exact-equality count: 5 * 49 + 7 + 7
    if n == 7:
        assert counts[1] == 259


def test_paper_grid_matches_equation_and_is_unit():
    full = anc.quaternion_anchors(7, dedup="none")
    np.testing.assert_allclose(full.numpy(), _shoemake_numpy(7), atol=1e-15)
    torch.testing.assert_close(full.norm(dim=-1), torch.ones(343, dtype=F64))
    rot = anc.quaternion_anchors(7)
    assert (rot[:, 0] >= 0).all()
    # rotation-deduplicated anchors are pairwise distinct rotations
    dots = (rot @ rot.T).abs() - torch.eye(len(rot), dtype=F64) * 2
    assert dots.max() < 1 - 1e-6
    # ... and every grid rotation is one of them
    assert ((full @ rot.T).abs().max(dim=1).values > 1 - 1e-9).all()


def test_kdtree_closest_anchor_search_gives_259():
    """The paper's reading: KD-tree nearest neighbour in R^4 on random quaternions."""
    ckd = pytest.importorskip("scipy.spatial").cKDTree
    grid = anc.quaternion_anchors(7, dedup="none").numpy()
    q = anc.random_quaternions(200_000, seed=0).numpy()
    q[::2] *= -1  # random signs, as a quaternion-valued pose sampler produces
    _, idx = ckd(grid).query(q)
    assert len(np.unique(idx)) == 259


def test_super_fibonacci():
    q = anc.super_fibonacci_anchors(96)
    assert q.shape == (96, 4)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(96, dtype=F64))
    assert (q[:, 0] >= 0).all()
    dots = (q @ q.T).abs() - 2 * torch.eye(96, dtype=F64)
    assert dots.max() < 1 - 1e-3  # no two anchors coincide
    psi = 1.533751168755204288118041
    assert psi**4 == pytest.approx(psi + 4, rel=1e-15)


def test_nearest_anchor_vs_brute_force():
    anchors = anc.super_fibonacci_anchors(50)
    q = anc.random_quaternions(300, seed=5)
    q[::3] *= -1
    idx = anc.nearest_anchor(q.reshape(3, 100, 4), anchors).reshape(-1)
    mats_q = Rotation.from_quat(q.numpy(), scalar_first=True)
    mats_a = Rotation.from_quat(anchors.numpy(), scalar_first=True)
    for i in range(len(q)):
        dist = (mats_a.inv() * mats_q[i]).magnitude()  # scipy geodesic angle
        assert dist[idx[i]] == pytest.approx(dist.min(), abs=1e-9)
    d = anc.anchor_distances(q, anchors)
    ref = [(mats_a[int(idx[i])].inv() * mats_q[i]).magnitude() for i in range(len(q))]
    np.testing.assert_allclose(d.numpy(), ref, atol=1e-7)


def test_covering_radius_and_stats():
    paper = anc.quaternion_anchors(7)  # 96 rotations
    ours = anc.super_fibonacci_anchors(96)
    sp = anc.anchor_stats(paper, n_samples=20_000, seed=1)
    so = anc.anchor_stats(ours, n_samples=20_000, seed=1)
    assert sp["count"] == 96 and so["count"] == 96
    assert so["covering_radius"] < sp["covering_radius"] - math.radians(5)
    assert so["mean_distance"] < sp["mean_distance"]
    # the grid with duplicates (259) covers no better than its 96 distinct rotations
    sp259 = anc.anchor_stats(anc.quaternion_anchors(7, dedup="exact"), 20_000, seed=1)
    assert sp259["covering_radius"] == pytest.approx(sp["covering_radius"], abs=1e-9)
    # ours at fewer anchors still beats the paper grid
    assert anc.covering_radius(anc.super_fibonacci_anchors(80), 20_000, 1) < sp["covering_radius"]
    # volume bound: N balls of radius r must cover SO(3): N * (r - sin r) / pi >= 1
    r = so["covering_radius"]
    assert 96 * (r - math.sin(r)) / math.pi >= 1
    # a single anchor: the max distance approaches pi
    one = anc.anchor_stats(torch.tensor([[1.0, 0, 0, 0]], dtype=F64), 20_000, seed=0)
    assert one["covering_radius"] > math.radians(170)
    assert 0 < one["mean_distance"] < one["covering_radius"]
    # deterministic for a seed
    assert anc.covering_radius(ours, 5000, seed=3) == anc.covering_radius(ours, 5000, seed=3)


def test_quaternion_residual_round_trip():
    anchors = anc.super_fibonacci_anchors(96)
    q = anc.random_quaternions(500, seed=2)
    q[::2] *= -1
    a = anchors[anc.nearest_anchor(q, anchors)]
    qd = anc.quaternion_residual(q, a)
    assert (qd[:, 0] >= 0).all()
    # residual rotation angle == distance to the anchor
    torch.testing.assert_close(
        2 * torch.acos(qd[:, 0].clamp(max=1)), anc.anchor_distances(q, anchors), atol=1e-6, rtol=0
    )
    back = anc.apply_quaternion_residual(qd, a)
    torch.testing.assert_close(quaternion_to_matrix(back), quaternion_to_matrix(q), atol=1e-12, rtol=0)
    # scaled residuals (raw network outputs) are normalised
    back2 = anc.apply_quaternion_residual(3 * qd, a)
    torch.testing.assert_close(back2, back)
    # eq. 2 against scipy: R(q_d) = R(q_gt) R(q_a)^T
    ref = (
        Rotation.from_quat(q.numpy(), scalar_first=True) * Rotation.from_quat(a.numpy(), scalar_first=True).inv()
    ).as_matrix()
    torch.testing.assert_close(quaternion_to_matrix(qd), torch.tensor(ref), atol=1e-12, rtol=0)


def test_translation_anchors_round_trip():
    low, high = anc.PAPER_TRANSLATION_RANGE
    ta = anc.TranslationAnchors(low, high, (4, 4, 8))
    assert ta.num_anchors == 128
    g = torch.Generator().manual_seed(0)
    lo, hi = torch.tensor(low, dtype=F64), torch.tensor(high, dtype=F64)
    t = lo + (hi - lo) * torch.rand(2, 300, 3, generator=g, dtype=F64)
    idx, res = ta.encode(t)
    assert idx.shape == (2, 300) and res.shape == (2, 300, 3)
    assert ((res >= 0) & (res <= 1)).all()
    torch.testing.assert_close(ta.decode(idx, res), t, atol=1e-12, rtol=0)
    # brute force: the containing cell is the nearest centre (cells are boxes, L_inf scaled)
    centres = ta.centers()
    size = ta.cell_size()
    flat = t.reshape(-1, 3)
    brute = (((flat[:, None] - centres[None]) / size).abs().amax(-1)).argmin(-1)
    assert torch.equal(brute, idx.reshape(-1))
    # centres decode from residual 0.5
    torch.testing.assert_close(ta.decode(torch.arange(128), torch.full((128, 3), 0.5, dtype=F64)), centres)
    # outside the box: boundary cell, residual leaves [0, 1], still a round trip
    out = torch.tensor([[-1.0, 2.0, 20.0]], dtype=F64)
    i, r = ta.encode(out)
    assert (r < 0).any() or (r > 1).any()
    torch.testing.assert_close(ta.decode(i, r), out)


def test_translation_cubes():
    ta = anc.TranslationAnchors.from_cube_size((-0.25, -0.25, 0.5), (1.5, 1.5, 10.0), 0.5)
    assert ta.counts == (4, 4, 19)
    torch.testing.assert_close(ta.cell_size(), torch.full((3,), 0.5, dtype=F64))
    assert ta.high[2] >= 10.0


def test_bad_inputs():
    with pytest.raises(ShapeError, match="q"):
        anc.nearest_anchor(torch.zeros(5, 3), anc.super_fibonacci_anchors(4))
    with pytest.raises(ShapeError, match="anchors"):
        anc.nearest_anchor(torch.zeros(5, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ShapeError, match="q_gt"):
        anc.quaternion_residual(torch.full((4,), float("nan")), torch.zeros(4))
    with pytest.raises(PoseshapeError, match="dedup"):
        anc.quaternion_anchors(7, dedup="fuzzy")
    with pytest.raises(PoseshapeError, match="n"):
        anc.quaternion_anchors(0)
    ta = anc.TranslationAnchors((0, 0, 0), (1, 1, 1), (2, 2, 2))
    with pytest.raises(ShapeError, match="t"):
        ta.encode(torch.zeros(2))
    with pytest.raises(ShapeError, match="index"):
        ta.decode(torch.tensor([8]), torch.zeros(1, 3))
    with pytest.raises(PoseshapeError, match="high"):
        anc.TranslationAnchors((0, 0, 0), (1, 0, 1), (2, 2, 2))


def test_covering_radius_figures_of_both_grids():
    """The figures recorded in bench/results_frag/anchors.md (200k samples there; 20k here,
    a slightly smaller Monte-Carlo lower bound): paper grid n=7 ~63.9 deg (259 exact / 96
    rotations), super-Fibonacci 96 ~50.9 deg and 259 ~37.1 deg."""
    paper = anc.anchor_stats(anc.quaternion_anchors(7, dedup="exact"), 20_000, seed=2)
    sf96 = anc.anchor_stats(anc.super_fibonacci_anchors(96), 20_000, seed=2)
    sf259 = anc.anchor_stats(anc.super_fibonacci_anchors(259), 20_000, seed=2)
    assert paper["count"] == 259 and sf96["count"] == 96 and sf259["count"] == 259
    assert 62.0 < math.degrees(paper["covering_radius"]) < 66.5
    assert 47.0 < math.degrees(sf96["covering_radius"]) < 53.0
    assert 33.0 < math.degrees(sf259["covering_radius"]) < 39.0
    # no grid can beat the volume bound N * (r - sin r) / pi >= 1 (Haar volume of a ball)
    for s, n in ((paper, 96), (sf96, 96), (sf259, 259)):
        r = s["covering_radius"]
        assert n * (r - math.sin(r)) / math.pi >= 1


@pytest.mark.parametrize("nside", [1, 2, 4])
def test_healpix_centers_rings_and_equal_area(nside):
    theta, phi = anc.healpix_centers(nside)
    assert len(theta) == 12 * nside**2
    z = np.cos(theta)
    # ring structure of Gorski et al. 2005: 4i pixels per cap ring, 4 nside per belt ring
    rings = {}
    for zi in np.round(z, 12):
        rings[zi] = rings.get(zi, 0) + 1
    assert len(rings) == 4 * nside - 1
    expect = sorted([4 * min(i, nside, 4 * nside - i) for i in range(1, 4 * nside)])
    assert sorted(rings.values()) == expect
    if nside == 1:  # the 12 base pixels: z = 2/3, 0, -2/3, four each
        np.testing.assert_allclose(sorted(set(np.round(z, 12))), [-2 / 3, 0.0, 2 / 3], atol=1e-12)
    # equal area: random points assigned to their nearest centre fill the cells evenly
    rng = np.random.default_rng(0)
    p = rng.normal(size=(60_000, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    c = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), z], 1)
    counts = np.bincount((p @ c.T).argmax(1), minlength=len(c))
    assert counts.min() > 0.6 * counts.mean() and counts.max() < 1.4 * counts.mean()
    # symmetric about the equator and the z axis: the centres sum to 0
    np.testing.assert_allclose(c.sum(0), 0.0, atol=1e-9)


def test_hopf_grid_counts_distinct_and_covers_better_than_paper_grid():
    h0, h1 = anc.hopf_anchors(0), anc.hopf_anchors(1)
    assert h0.shape == (72, 4) and h1.shape == (576, 4)
    for h in (h0, h1):
        torch.testing.assert_close(h.norm(dim=-1), torch.ones(len(h), dtype=F64))
        assert (h[:, 0] >= 0).all()
        dots = (h @ h.T).abs() - 2 * torch.eye(len(h), dtype=F64)
        assert dots.max() < 1 - 1e-3  # distinct rotations
    # Haar-uniform design: the rotation matrices average to 0 (a random set would not exactly)
    mats = quaternion_to_matrix(h1)
    assert mats.mean(0).abs().max() < 1e-9
    # covering: 72 Hopf anchors beat the paper's 96 distinct rotations; level 1 (576) beats
    # the paper's n = 9 grid (585 tuples / 232 rotations)
    s0 = anc.anchor_stats(h0, 20_000, seed=1)
    s1 = anc.anchor_stats(h1, 20_000, seed=1)
    p7 = anc.anchor_stats(anc.quaternion_anchors(7), 20_000, seed=1)
    p9 = anc.anchor_stats(anc.quaternion_anchors(9), 20_000, seed=1)
    assert s0["covering_radius"] < p7["covering_radius"] - math.radians(5)
    assert s1["covering_radius"] < p9["covering_radius"] - math.radians(15)
    with pytest.raises(PoseshapeError, match="level"):
        anc.hopf_anchors(-1)
    with pytest.raises(PoseshapeError, match="nside"):
        anc.healpix_centers(0)


def test_single_anchor_grid_for_the_1_cubed_ablation():
    for dedup in ("rotation", "quaternion", "exact", "none"):
        a = anc.quaternion_anchors(1, dedup=dedup)
        torch.testing.assert_close(a, torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64))
    q = anc.random_quaternions(50, seed=3)
    a = anc.quaternion_anchors(1)
    assert bool((anc.nearest_anchor(q, a) == 0).all())
    back = anc.apply_quaternion_residual(anc.quaternion_residual(q, a[0]), a[0])
    assert float((back * q).sum(-1).abs().min()) > 1 - 1e-12
