"""Tests of poseshape.metrics against brute-force loops, sklearn, scipy and analytic shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from poseshape import metrics as M
from poseshape.core.errors import ShapeError


# ----------------------------------------------------------------------------- helpers
def _brute_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = union = 0
    for x, y in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist()):
        inter += x and y
        union += x or y
    return 1.0 if union == 0 else inter / union


def _grid_centres(n: int) -> np.ndarray:
    """(n, n, n, 3) centres (x, y, z) of a unit-cube grid indexed (d, h, w) = (z, y, x)."""
    c = (np.arange(n) + 0.5) / n - 0.5
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return np.stack([x, y, z], -1)


def _shape_occupancy(pts: np.ndarray) -> np.ndarray:
    """An asymmetric object (no rotational symmetry): body + tower + nub, boxes in (x, y, z)."""
    boxes = [
        ((-0.3, -0.1, -0.15), (0.3, 0.1, 0.15)),  # body
        ((0.12, 0.1, -0.15), (0.3, 0.35, 0.0)),  # tower at +x, -z
        ((-0.3, -0.1, 0.15), (-0.12, 0.0, 0.3)),  # nub at -x, +z
    ]
    occ = np.zeros(pts.shape[:-1], dtype=bool)
    for lo, hi in boxes:
        occ |= np.all((pts >= lo) & (pts <= hi), axis=-1)
    return occ


def _voxelize_rotated(R: np.ndarray, n: int = 32) -> torch.Tensor:
    """(1, 1, n, n, n) occupancy of the test object rotated by R (x -> R x), analytic."""
    pts = _grid_centres(n) @ R  # rows: R^T x
    return torch.from_numpy(_shape_occupancy(pts)).float()[None, None]


def _ry(deg: float) -> np.ndarray:
    return Rotation.from_rotvec([0.0, math.radians(deg), 0.0]).as_matrix()


def _asym_points(n: int, seed: int = 0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    pts = g.uniform(-0.5, 0.5, size=(20 * n, 3))
    pts = pts[_shape_occupancy(pts)][:n]
    return torch.from_numpy(pts)


# ----------------------------------------------------------------------------- IoU
def test_voxel_iou_matches_brute_force_both_layouts():
    pred = torch.rand(3, 1, 4, 5, 3)
    gt = torch.rand(3, 4, 5, 3) > 0.6
    got5 = M.voxel_iou(pred, gt[:, None].float())
    got4 = M.voxel_iou(pred[:, 0], gt)
    for b in range(3):
        want = _brute_iou((pred[b, 0] > 0.5).numpy(), gt[b].numpy())
        assert got5[b].item() == pytest.approx(want)
        assert got4[b].item() == pytest.approx(want)
    assert got5.shape == (3,)


def test_voxel_iou_threshold_and_edge_cases():
    z = torch.zeros(1, 1, 2, 2, 2)
    one = torch.zeros(1, 1, 2, 2, 2)
    one[0, 0, 1, 0, 1] = 1.0
    assert M.voxel_iou(z, z).item() == 1.0  # both empty -> 1 by definition
    assert M.voxel_iou(one, z).item() == 0.0
    assert M.voxel_iou(z, one).item() == 0.0
    assert M.voxel_iou(one, one).item() == 1.0
    half = one * 0.5  # 0.5 is not > 0.5
    assert M.voxel_iou(half, one).item() == 0.0
    assert M.voxel_iou(half, one, threshold=0.4).item() == 1.0


def test_mask_iou_matches_brute_force():
    pred = torch.rand(4, 1, 6, 7)
    gt = (torch.rand(4, 1, 6, 7) > 0.5).float()
    gt[3] = 0
    pred[3] = 0.1  # both empty
    got = M.mask_iou(pred, gt)
    for b in range(4):
        want = _brute_iou((pred[b] > 0.5).numpy(), (gt[b] > 0.5).numpy())
        assert got[b].item() == pytest.approx(want)
    assert got[3].item() == 1.0
    assert torch.equal(M.mask_iou(pred[:, 0], gt[:, 0]), got)


@pytest.mark.parametrize(
    "fn,a,b",
    [
        (M.voxel_iou, torch.rand(2, 1, 3, 3, 3), torch.rand(2, 1, 3, 3, 4)),
        (M.voxel_iou, torch.rand(2, 2, 3, 3, 3), torch.rand(2, 2, 3, 3, 3)),
        (M.voxel_iou, torch.rand(3, 3, 3), torch.rand(3, 3, 3)),
        (M.mask_iou, torch.rand(2, 1, 4, 4), torch.rand(3, 1, 4, 4)),
        (M.mask_iou, torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)),
        (M.mask_iou, np.zeros((2, 4, 4)), torch.rand(2, 4, 4)),
    ],
)
def test_iou_bad_shapes(fn, a, b):
    with pytest.raises(ShapeError):
        fn(a, b)


def test_iou_nan_raises():
    a = torch.rand(1, 1, 2, 2, 2)
    a[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ShapeError, match="pred"):
        M.voxel_iou(a, torch.rand(1, 1, 2, 2, 2))
    with pytest.raises(ShapeError, match="gt"):
        M.mask_iou(torch.rand(1, 2, 2), a[:, 0, 0])


# ----------------------------------------------------------------------------- AP
def _brute_ap(s: np.ndarray, y: np.ndarray) -> float:
    """sum_k (R_k - R_{k-1}) P_k over distinct thresholds, in plain loops."""
    thresholds = sorted(set(s.tolist()), reverse=True)
    n_pos = int(y.sum())
    ap, r_prev = 0.0, 0.0
    for t in thresholds:
        tp = sum(1 for si, yi in zip(s, y) if si >= t and yi)
        k = sum(1 for si in s if si >= t)
        r = tp / n_pos
        ap += (r - r_prev) * (tp / k)
        r_prev = r
    return ap


def test_ap_hand_example():
    s = torch.tensor([[0.9, 0.8, 0.7, 0.6]])
    y = torch.tensor([[1, 0, 1, 0]])
    assert M.average_precision(s, y).item() == pytest.approx(0.5 + 0.5 * 2 / 3)
    # all tied: AP = prevalence
    assert M.average_precision(torch.full((1, 4), 0.3), y).item() == pytest.approx(0.5)


@pytest.mark.parametrize("levels", [None, 3, 7])
def test_ap_matches_sklearn_and_brute_force(levels):
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(5, 1, 4, 4, 4, generator=g)
    if levels is not None:  # many ties
        scores = torch.round(scores * (levels - 1)) / (levels - 1)
    labels = (torch.rand(5, 1, 4, 4, 4, generator=g) < 0.3 + 0.4 * scores).float()
    per = M.average_precision(scores, labels, reduction="none")
    assert per.shape == (5,) and per.dtype == torch.float32
    for b in range(5):
        s = scores[b].reshape(-1).numpy().astype(np.float64)
        y = labels[b].reshape(-1).numpy()
        want = sk.average_precision_score(y, s)
        assert per[b].item() == pytest.approx(want, abs=1e-6)
        assert per[b].item() == pytest.approx(_brute_ap(s, y), abs=1e-6)
    assert M.average_precision(scores, labels).item() == pytest.approx(per.mean().item(), abs=1e-6)
    pooled = sk.average_precision_score(labels.reshape(-1).numpy(), scores.reshape(-1).double().numpy())
    assert M.average_precision(scores, labels, reduction="pooled").item() == pytest.approx(pooled, abs=1e-6)


def test_ap_no_positive_sample_is_nan_and_skipped_in_mean():
    scores = torch.rand(2, 10)
    labels = torch.zeros(2, 10, dtype=torch.bool)
    labels[0, :3] = True
    per = M.average_precision(scores, labels, reduction="none")
    assert torch.isnan(per[1]) and not torch.isnan(per[0])
    assert M.average_precision(scores, labels).item() == pytest.approx(per[0].item())


def test_ap_bad_inputs():
    with pytest.raises(ShapeError):
        M.average_precision(torch.rand(2, 5), torch.ones(2, 6))
    with pytest.raises(ShapeError, match="binary"):
        M.average_precision(torch.rand(2, 5), torch.full((2, 5), 0.5))
    s = torch.rand(2, 5)
    s[0, 0] = float("nan")
    with pytest.raises(ShapeError, match="scores"):
        M.average_precision(s, torch.ones(2, 5))
    with pytest.raises(ValueError, match="reduction"):
        M.average_precision(torch.rand(2, 5), torch.ones(2, 5), reduction="sum")


# ----------------------------------------------------------------------------- chamfer / F-score
def _kd_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d, _ = cKDTree(b).query(a)
    return d**2


@pytest.mark.parametrize("chunk", [None, 3])
def test_chamfer_matches_kdtree(chunk):
    p = torch.rand(2, 17, 3, dtype=torch.float64) + 2.0  # off-centre: checks cancellation
    q = torch.rand(2, 11, 3, dtype=torch.float64) + 2.0
    got = M.chamfer_distance(p, q, chunk_size=chunk)
    for b in range(2):
        want = _kd_sq(p[b].numpy(), q[b].numpy()).mean() + _kd_sq(q[b].numpy(), p[b].numpy()).mean()
        assert got[b].item() == pytest.approx(want, rel=1e-10)
    # unbatched input gives a scalar
    assert M.chamfer_distance(p[0], q[0]).shape == ()


def test_chamfer_large_is_exact_in_float32():
    g = torch.Generator().manual_seed(3)
    p = torch.rand(1, 10_000, 3, generator=g) - 0.5
    q = torch.rand(1, 10_000, 3, generator=g) - 0.5
    got = M.chamfer_distance(p, q).item()
    pn, qn = p[0].double().numpy(), q[0].double().numpy()
    want = _kd_sq(pn, qn).mean() + _kd_sq(qn, pn).mean()
    assert got == pytest.approx(want, rel=1e-4)


def test_nearest_kdtree_path_equals_the_brute_force_blocks():
    """Above 2**16 pairs the CPU path queries a k-d tree; values and gradients must equal the
    block-wise brute force (``chunk_size`` given forces it)."""
    g = torch.Generator().manual_seed(5)
    p = (torch.rand(2, 400, 3, generator=g, dtype=torch.float64) + 1.0).requires_grad_(True)
    q = (torch.rand(2, 300, 3, generator=g, dtype=torch.float64) + 1.0).requires_grad_(True)
    assert p.shape[1] * q.shape[1] > M._KDTREE_MIN_PAIRS
    fast = M.nearest_sq_dist(p, q)
    gp_fast, gq_fast = torch.autograd.grad(fast.sum(), (p, q))
    slow = M.nearest_sq_dist(p, q, chunk_size=37)
    gp_slow, gq_slow = torch.autograd.grad(slow.sum(), (p, q))
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    torch.testing.assert_close(gp_fast, gp_slow, rtol=0, atol=1e-12)
    torch.testing.assert_close(gq_fast, gq_slow, rtol=0, atol=1e-12)


def test_chamfer_gradcheck():
    p = torch.rand(2, 6, 3, dtype=torch.float64, requires_grad=True)
    q = torch.rand(2, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: M.chamfer_distance(a, b), (p, q))


def test_fscore_matches_kdtree():
    p = torch.rand(2, 40, 3)
    q = torch.rand(2, 30, 3)
    tau = 0.12
    f, prec, rec = M.fscore(p, q, tau)
    for b in range(2):
        dp = np.sqrt(_kd_sq(p[b].double().numpy(), q[b].double().numpy()))
        dq = np.sqrt(_kd_sq(q[b].double().numpy(), p[b].double().numpy()))
        P, R = (dp < tau).mean(), (dq < tau).mean()
        assert prec[b].item() == pytest.approx(P)
        assert rec[b].item() == pytest.approx(R)
        assert f[b].item() == pytest.approx(0 if P + R == 0 else 2 * P * R / (P + R), abs=1e-6)
    f0, _, _ = M.fscore(p, q + 10.0, tau)
    assert torch.equal(f0, torch.zeros(2))


def test_points_bad_inputs():
    with pytest.raises(ShapeError):
        M.chamfer_distance(torch.rand(2, 5, 2), torch.rand(2, 5, 3))
    with pytest.raises(ShapeError):
        M.chamfer_distance(torch.rand(2, 5, 3), torch.rand(3, 5, 3))
    with pytest.raises(ShapeError):
        M.chamfer_distance(torch.rand(2, 0, 3), torch.rand(2, 5, 3))
    bad = torch.rand(1, 4, 3)
    bad[0, 1, 2] = float("inf")
    with pytest.raises(ShapeError, match="q"):
        M.fscore(torch.rand(1, 4, 3), bad, 0.1)
    with pytest.raises(ValueError, match="tau"):
        M.fscore(torch.rand(1, 4, 3), torch.rand(1, 4, 3), 0.0)


def test_mesh_chamfer_point_tensors_and_meshes():
    p, q = torch.rand(50, 3), torch.rand(40, 3)
    assert M.mesh_chamfer_distance(p, q).item() == pytest.approx(M.chamfer_distance(p, q).item())
    meshes = pytest.importorskip("poseshape.shapes.meshes")
    if not hasattr(meshes, "sample_points"):
        pytest.skip("poseshape.shapes.meshes.sample_points not available yet")
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float32) - 0.25
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    tet = meshes.Mesh(verts, faces)
    assert M.mesh_chamfer_distance(tet, tet, num_points=2048).item() < 2e-3
    far = meshes.Mesh(verts + torch.tensor([1.0, 0.0, 0.0]), faces)
    # shifting by 1 along x: every nearest distance is at least ~0.3 (sets barely overlap)
    assert M.mesh_chamfer_distance(tet, far, num_points=512).item() > 0.2


# ----------------------------------------------------------------------------- pose errors
def test_rotation_error_matches_scipy():
    pytest.importorskip("poseshape.geometry.rotations")
    r1 = Rotation.random(64, random_state=4)
    r2 = Rotation.random(64, random_state=5)
    # include near-identity and near-pi relative rotations
    r2_list = r2.as_matrix()
    r2_list[0] = r1[0].as_matrix()
    r2_list[1] = (r1[1] * Rotation.from_rotvec([0, 0, math.pi - 1e-4])).as_matrix()
    r2_list[2] = (r1[2] * Rotation.from_rotvec([1e-4, 0, 0])).as_matrix()
    r2 = Rotation.from_matrix(r2_list)
    want = np.degrees((r1.inv() * r2).magnitude())
    got = M.rotation_error(torch.from_numpy(r1.as_matrix()), torch.from_numpy(r2.as_matrix()))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    stats = M.rotation_error_stats(torch.from_numpy(r1.as_matrix()), torch.from_numpy(r2.as_matrix()))
    assert stats["med_err_deg"] == pytest.approx(np.median(want), abs=1e-5)
    assert stats["mean_err_deg"] == pytest.approx(want.mean(), abs=1e-5)
    assert stats["acc_pi6"] == pytest.approx((want < 30).mean())
    assert stats["n"] == 64


def test_rotation_error_stats_from_errors():
    err = torch.tensor([10.0, 40.0, 29.99, 30.0, 5.0, 100.0])
    s = M.rotation_error_stats(err)
    assert s["med_err_deg"] == pytest.approx(np.median(err.numpy()))
    assert s["acc_pi6"] == pytest.approx(3 / 6)  # 30.0 itself is not < pi/6
    assert s["mean_err_deg"] == pytest.approx(err.mean().item())
    with pytest.raises(ShapeError):
        M.rotation_error_stats(torch.zeros(2, 2))


def test_rotation_error_bad_inputs():
    with pytest.raises(ShapeError, match="R_pred"):
        M.rotation_error(torch.eye(3)[:2], torch.eye(3)[:2])
    with pytest.raises(ShapeError):
        M.rotation_error(torch.eye(3).expand(2, 3, 3), torch.eye(3).expand(3, 3, 3))
    bad = torch.eye(3).clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ShapeError, match="R_gt"):
        M.rotation_error(torch.eye(3), bad)


def test_translation_error_and_stats():
    t_pred = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    t_gt = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, -2.0]])
    err = M.translation_error(t_pred, t_gt)
    want = [math.hypot(a[0] - b[0], a[1] - b[1]) / 30.0 for a, b in zip(t_pred.tolist(), t_gt.tolist())]
    np.testing.assert_allclose(err.numpy(), want, rtol=1e-6)
    s = M.translation_error_stats(t_pred, t_gt)
    assert s["med_err"] == pytest.approx(np.median(want)) and s["n"] == 3
    assert M.translation_error_stats(err)["mean_err"] == pytest.approx(np.mean(want))
    assert M.translation_error(t_pred, t_gt, frame_size=5.0)[0].item() == pytest.approx(1.0)
    with pytest.raises(ShapeError):
        M.translation_error(torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ShapeError):
        M.translation_error(torch.zeros(3, 2), torch.zeros(2, 2))


# ----------------------------------------------------------------------------- retrieval
def test_topk_retrieval_matches_brute_force():
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(30, 12, generator=g)
    gt = torch.randint(0, 12, (30,), generator=g)
    for k in (1, 3, 12):
        for largest in (True, False):
            hits = []
            for b in range(30):
                order = sorted(range(12), key=lambda j: -scores[b, j].item() if largest else scores[b, j].item())
                hits.append(gt[b].item() in order[:k])
            assert M.topk_retrieval_accuracy(scores, gt, k=k, largest=largest) == pytest.approx(np.mean(hits))


def test_topk_ties_count_against():
    scores = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    acc, hits = M.topk_retrieval_accuracy(scores, torch.tensor([0, 1]), k=1, return_hits=True)
    assert hits.tolist() == [False, True] and acc == 0.5
    assert M.topk_retrieval_accuracy(scores, torch.tensor([0, 1]), k=2) == 1.0


def test_topk_bad_inputs():
    with pytest.raises(ShapeError):
        M.topk_retrieval_accuracy(torch.rand(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ShapeError):
        M.topk_retrieval_accuracy(torch.rand(2, 4), torch.tensor([0, 4]))
    with pytest.raises(ShapeError):
        M.topk_retrieval_accuracy(torch.rand(2, 4), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError):
        M.topk_retrieval_accuracy(torch.rand(2, 4), torch.tensor([0, 1]), k=0)


# ----------------------------------------------------------------------------- voxel rotation + alignment
def test_rotate_voxels_moves_occupancy_like_points():
    # a single occupied voxel at x = +0.25 (w = 6 of 8), y = z ~ 0; R_y(90) sends +x to -z
    n = 8
    v = torch.zeros(1, 1, n, n, n)
    v[0, 0, 4, 4, 6] = 1.0  # (d, h, w) -> centre (x, y, z) = (0.3125, 0.0625, 0.0625)
    R = torch.from_numpy(_ry(90.0)).float()
    out = M.rotate_voxels(v, R, mode="nearest")
    idx = (out[0, 0] > 0.5).nonzero().tolist()
    assert len(idx) == 1
    d, h, w = idx[0]
    centre = np.array([(w + 0.5) / n - 0.5, (h + 0.5) / n - 0.5, (d + 0.5) / n - 0.5])
    np.testing.assert_allclose(centre, _ry(90.0) @ np.array([0.3125, 0.0625, 0.0625]), atol=1e-6)


def test_rotate_voxels_agrees_with_analytic_shape():
    R = Rotation.from_rotvec([0.3, -0.5, 0.2]).as_matrix()
    base = _voxelize_rotated(np.eye(3))
    want = _voxelize_rotated(R)
    got = M.rotate_voxels(base, torch.from_numpy(R).float())
    assert M.voxel_iou(got, want).item() > 0.85
    assert M.voxel_iou(base, want).item() < 0.6


def test_azimuth_search_recovers_35_degrees():
    pytest.importorskip("poseshape.geometry.rotations")
    pred = _voxelize_rotated(np.eye(3))
    gt = _voxelize_rotated(_ry(35.0))  # analytic, not produced by rotate_voxels
    res = M.align_azimuth_voxels(pred.expand(2, -1, -1, -1, -1), gt.expand(2, -1, -1, -1, -1))
    for b in range(2):
        assert abs(math.degrees(res.azimuth[b].item()) - 35.0) <= 5.0
        assert res.score[b].item() > 0.85
    np.testing.assert_allclose(res.rotation[0].numpy(), _ry(math.degrees(res.azimuth[0].item())), atol=1e-5)
    # the unaligned IoU is much worse
    assert M.voxel_iou(pred, gt).item() < res.score[0].item() - 0.2


def test_azimuth_search_points_recovers_35_degrees():
    pytest.importorskip("poseshape.geometry.rotations")
    p = _asym_points(300)[None]
    q = M.rotate_points(p, torch.from_numpy(_ry(35.0)))
    res = M.align_azimuth_points(p, q)
    assert math.degrees(res.azimuth[0].item()) == pytest.approx(35.0, abs=1e-6)
    assert res.score[0].item() < 1e-12


def test_so3_search_recovers_known_anchor():
    pytest.importorskip("poseshape.geometry.rotations")
    cands = torch.from_numpy(Rotation.random(60, random_state=7).as_matrix()).float()
    pred = _voxelize_rotated(np.eye(3))
    gt = torch.cat([M.rotate_voxels(pred, cands[17]), M.rotate_voxels(pred, cands[42])])
    res = M.align_rotation_voxels(pred.expand(2, -1, -1, -1, -1), gt, rotations=cands)
    assert res.anchor_index.tolist() == [17, 42]
    assert torch.allclose(res.score, torch.ones(2))
    # points version, same candidates
    p = _asym_points(200)[None].float()
    q = M.rotate_points(p, cands[33])
    rp = M.align_rotation_points(p, q, rotations=cands)
    assert rp.anchor_index.item() == 33 and rp.score.item() < 1e-10


@pytest.mark.slow
def test_so3_refinement_with_explicit_candidates():
    pytest.importorskip("poseshape.geometry.rotations")
    cands = torch.from_numpy(Rotation.random(200, random_state=11).as_matrix())
    R_true = Rotation.from_rotvec([-0.9, 0.5, 1.3])
    p = _asym_points(200, seed=2)[None]
    q = M.rotate_points(p, torch.from_numpy(R_true.as_matrix()))
    coarse = M.align_rotation_points(p, q, rotations=cands)
    fine = M.align_rotation_points(p, q, rotations=cands, refine=True, refine_iters=40)
    err = lambda R: np.degrees((Rotation.from_matrix(R[0].numpy()).inv() * R_true).magnitude())
    assert err(coarse.rotation) > 5.0  # the grid alone is coarse ...
    assert err(fine.rotation) < 1.0  # ... the pattern search closes the gap
    assert fine.anchor_index.item() == coarse.anchor_index.item()
    # voxels: refinement never lowers the IoU and raises it for an off-grid rotation
    pred = _voxelize_rotated(np.eye(3))
    gt = _voxelize_rotated(R_true.as_matrix())
    vc = M.align_rotation_voxels(pred, gt, rotations=cands.float())
    vf = M.align_rotation_voxels(pred, gt, rotations=cands.float(), refine=True)
    assert vf.score.item() > vc.score.item() and vf.score.item() > 0.8


@pytest.mark.slow
def test_so3_search_default_anchors_and_refinement():
    pytest.importorskip("poseshape.geometry.anchors")
    R_true = Rotation.from_rotvec([0.4, 1.1, -0.7])
    p = _asym_points(200, seed=1)[None]
    q = M.rotate_points(p, torch.from_numpy(R_true.as_matrix()))
    coarse = M.align_rotation_points(p, q, num_anchors=256)
    fine = M.align_rotation_points(p, q, num_anchors=256, refine=True, refine_iters=40)
    err = lambda R: np.degrees((Rotation.from_matrix(R[0].numpy()).inv() * R_true).magnitude())
    assert fine.score.item() <= coarse.score.item()
    assert err(fine.rotation) < 1.0
    assert err(fine.rotation) <= err(coarse.rotation)


def test_alignment_bad_inputs():
    with pytest.raises(ShapeError):
        M.align_azimuth_voxels(torch.rand(1, 1, 4, 4, 4), torch.rand(1, 1, 4, 4, 5))
    with pytest.raises(ShapeError):
        M.align_rotation_voxels(torch.rand(1, 1, 4, 4, 4), torch.rand(1, 1, 4, 4, 4), rotations=torch.rand(5, 3, 4))
    with pytest.raises(ShapeError):
        M.align_azimuth_points(torch.rand(1, 4, 3), torch.rand(2, 4, 3))
    with pytest.raises(ShapeError):
        M.rotate_voxels(torch.rand(2, 1, 4, 4, 4), torch.eye(3).expand(3, 3, 3))


def test_failure_auroc_against_the_pairwise_count():
    from poseshape.metrics import failure_auroc

    rng = np.random.default_rng(0)
    conf = rng.random(40).round(1)  # ties
    failed = rng.random(40) < 0.4
    pairs = [(a, b) for a in conf[failed] for b in conf[~failed]]
    want = np.mean([1.0 if a < b else 0.5 if a == b else 0.0 for a, b in pairs])
    assert abs(failure_auroc(conf, failed) - want) < 1e-12
    assert failure_auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 1.0
    assert failure_auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 0.0
    assert np.isnan(failure_auroc([0.1, 0.2], [True, True]))  # one class only
    assert failure_auroc([np.nan, 0.1, 0.9], [False, True, False]) == 1.0  # NaN left out
    with pytest.raises(ShapeError, match="failure_auroc"):
        failure_auroc([0.1, 0.2], [True])
