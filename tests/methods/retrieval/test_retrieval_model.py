"""retrieval: anchor encode/decode, voxel rotation, networks, exact index, 16-model overfit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.geometry.anchors import (
    TranslationAnchors,
    anchor_distances,
    quaternion_anchors,
    random_quaternions,
    super_fibonacci_anchors,
)
from poseshape.geometry.rotations import quaternion_to_matrix
from poseshape.methods.retrieval.database import ExactIndex, collection_buffers, embed_models, open_collection
from poseshape.methods.retrieval.model import (
    EmbeddingHeads,
    ImageRegressor,
    VoxelEmbeddingNet,
    decode_rotation,
    decode_rotation_topk,
    encode_rotation,
    make_anchors,
    rotate_grids,
)
from poseshape.shapes.voxels import voxel_centers


def _same_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1).abs()


@pytest.mark.parametrize("anchors", [quaternion_anchors(7), super_fibonacci_anchors(96)])
def test_anchor_label_and_residual_decode_exactly_on_anchors(anchors):
    idx, res = encode_rotation(anchors, anchors)
    assert torch.equal(idx, torch.arange(len(anchors)))
    torch.testing.assert_close(res, torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand_as(res))
    logits = F.one_hot(idx, len(anchors)).double()
    back = decode_rotation(logits, res, anchors)
    assert float((_same_rotation(back, anchors) - 1).abs().max()) < 1e-12


def test_anchor_decode_off_anchors_within_tolerance_and_quantisation_bound():
    anchors = quaternion_anchors(7, dedup="exact")  # the paper's 259
    q = random_quaternions(2000, seed=1)
    idx, res = encode_rotation(q, anchors)
    # the label is the nearest anchor by geodesic distance (eq. 3), brute force
    d = 2 * torch.acos((q @ anchors.T).abs().clamp(max=1))
    assert torch.equal(d[torch.arange(len(q)), idx], d.min(1).values)
    logits = F.one_hot(idx, len(anchors)).double()
    # per-anchor residual layout (B, A, 4): only the chosen anchor's residual is used
    per_anchor = torch.randn(len(q), len(anchors), 4, dtype=torch.float64)
    per_anchor[torch.arange(len(q)), idx] = res
    back = decode_rotation(logits, per_anchor, anchors)
    assert float((1 - _same_rotation(back, q)).max()) < 1e-12
    # without the residual, the error is the anchor distance (<= covering radius, > 0)
    ident = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand(len(q), 4)
    coarse = decode_rotation(logits, ident, anchors)
    err = 2 * torch.acos(_same_rotation(coarse, q).clamp(max=1))
    torch.testing.assert_close(err, anchor_distances(q, anchors))
    assert float(err.max()) < math.radians(75) and float(err.median()) > math.radians(5)  # paper grid: ~62 deg
    # a noisy residual decodes within its own error
    noisy = F.normalize(res + 1e-3 * torch.randn_like(res), dim=-1)
    back = decode_rotation(logits, noisy, anchors)
    assert float(2 * torch.acos(_same_rotation(back, q).clamp(max=1)).max()) < 0.01


def test_topk_decode_is_each_of_the_best_anchors_with_its_residual():
    anchors = super_fibonacci_anchors(40)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 40, generator=g, dtype=torch.float64)
    res = F.normalize(torch.randn(6, 40, 4, generator=g, dtype=torch.float64), dim=-1)
    top = decode_rotation_topk(logits, res, anchors, 4)
    assert top.shape == (6, 4, 4)
    order = logits.argsort(1, descending=True)
    for b in range(6):  # brute force: the k-th best anchor, decoded alone
        for k in range(4):
            a = int(order[b, k])
            one = F.one_hot(torch.tensor([a]), 40).double()
            want = decode_rotation(one, res[b : b + 1], anchors)
            assert float(1 - _same_rotation(top[b, k], want[0])) < 1e-12
    torch.testing.assert_close(top[:, 0], decode_rotation(logits, res, anchors))
    # one shared residual (B, 4); k above the anchor count is capped
    shared = decode_rotation_topk(logits, res[:, 0], anchors, 99)
    assert shared.shape == (6, 40, 4)


def test_make_anchors_grids_and_counts():
    assert make_anchors("paper", 7).shape == (259, 4)
    assert make_anchors("superfib", 7).shape == (259, 4)
    assert make_anchors("paper", 1).shape == (1, 4)
    assert make_anchors("superfib", 4, "rotation").shape == quaternion_anchors(4).shape
    with pytest.raises(PoseshapeError, match="anchor_grid"):
        make_anchors("hopf", 7)


def _brute_rotate_nearest(vox: np.ndarray, R: np.ndarray) -> np.ndarray:
    """out(x) = in(R^T x) at every voxel centre, nearest voxel, zero outside (a plain loop)."""
    D = vox.shape[0]
    out = np.zeros_like(vox)
    centers = voxel_centers(D, dtype=torch.float64).numpy()
    for d in range(D):
        for h in range(D):
            for w in range(D):
                p = R.T @ centers[d, h, w]
                ix, iy, iz = (int(math.floor((c + 0.5) * D)) for c in p)
                if 0 <= ix < D and 0 <= iy < D and 0 <= iz < D:
                    out[d, h, w] = vox[iz, iy, ix]
    return out


def test_rotated_voxel_augmentation_matches_brute_force_rotation():
    g = torch.Generator().manual_seed(0)
    D = 12
    vox = (torch.rand(2, 1, D, D, D, generator=g) > 0.6).double()
    q = random_quaternions(2, seed=4)
    out = rotate_grids(vox, q, mode="nearest")
    for b in range(2):
        ref = _brute_rotate_nearest(vox[b, 0].numpy(), quaternion_to_matrix(q[b]).numpy())
        mismatch = np.mean(out[b, 0].numpy() != ref)
        assert mismatch < 0.005, mismatch  # only rounding ties at cell borders may differ
    # a quarter turn about +y permutes voxels exactly, also with trilinear sampling
    qy = torch.tensor([[math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0]], dtype=torch.float64)
    out = rotate_grids(vox[:1], qy)
    ref = _brute_rotate_nearest(vox[0, 0].numpy(), quaternion_to_matrix(qy[0]).numpy())
    np.testing.assert_allclose(out[0, 0].numpy(), ref, atol=1e-9)
    with pytest.raises(ShapeError):
        rotate_grids(vox, q[:1])


def test_networks_shapes_and_l2_normalised_residuals():
    net = VoxelEmbeddingNet(64, channels=8)
    emb = net(torch.rand(3, 1, 32, 32, 32))
    assert emb["shape"].shape == (3, 64) and emb["pose"].shape == (3, 64)
    shared = VoxelEmbeddingNet(64, channels=8, disentangle=False)(torch.rand(3, 1, 32, 32, 32))
    assert shared["shape"] is shared["pose"]
    heads = EmbeddingHeads(64, 5, make_anchors("paper", 4))
    out = heads(emb["shape"], emb["pose"])
    A = heads.num_anchors
    assert out["shape_logits"].shape == (3, 5) and out["anchor_logits"].shape == (3, A)
    torch.testing.assert_close(out["residual"].norm(dim=-1), torch.ones(3, A))
    q = heads.rotation(out)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(3))
    ta = TranslationAnchors((-0.2, -0.2, 1.9), (0.2, 0.2, 3.1), (2, 2, 3))
    reg = ImageRegressor(64, ta, "resnet18", 8)
    o = reg(torch.rand(2, 3, 64, 64))
    assert o["t_logits"].shape == (2, 12) and o["t_residual"].shape == (2, 12, 3)
    assert reg.translation(o).shape == (2, 3)
    with pytest.raises(ShapeError):
        net(torch.rand(3, 1, 16, 16, 16))
    with pytest.raises(PoseshapeError, match="backbone"):
        ImageRegressor(64, ta, "vgg")


def test_residual_head_gradcheck_float64():
    heads = EmbeddingHeads(6, 3, make_anchors("paper", 2, "rotation")).double()
    x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: heads(z, z)["residual"], (x,))


def test_exact_index_matches_brute_force_search():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 16, generator=g)
    x[7] = x[3]  # an exact tie
    q = torch.randn(37, 16, generator=g)
    q[0] = x[3]
    index = ExactIndex(x, chunk=96)
    d, i = index.search(q, 5)
    ref = torch.cdist(q.double(), x.double())
    rd, ri = ref.topk(5, largest=False)
    torch.testing.assert_close(d.double(), rd, atol=1e-4, rtol=1e-4)
    assert torch.equal(i[1:], ri[1:])
    assert set(i[0, :2].tolist()) == {3, 7} and float(d[0, 1]) < 1e-3
    with pytest.raises(PoseshapeError, match="empty"):
        ExactIndex(torch.zeros(0, 16))
    with pytest.raises(ShapeError):
        index.search(torch.zeros(2, 8))


def test_16_model_overfit_retrieves_every_model():
    """Stage I on 16 procedural models: every rotated model retrieves itself in the database."""
    torch.manual_seed(0)
    coll = open_collection("procedural", ["car", "chair", "sofa", "aeroplane"], 4, 0)
    buffers, skipped = collection_buffers(coll)
    assert not skipped and buffers["voxels"].shape == (16, 32, 32, 32)
    vox = buffers["voxels"].float()[:, None]
    anchors = make_anchors("paper", 3, "rotation")
    net, heads = VoxelEmbeddingNet(64, channels=8), EmbeddingHeads(64, 16, anchors)
    opt = torch.optim.Adam([*net.parameters(), *heads.parameters()], lr=3e-3)
    q = torch.cat([torch.tensor([[1.0, 0, 0, 0]]), random_quaternions(3, seed=5).float()])  # 4 poses
    model = torch.arange(16).repeat(4)
    qs = q.repeat_interleave(16, 0)
    grids = (rotate_grids(vox.repeat(4, 1, 1, 1, 1), qs) > 0.5).float()
    for _ in range(100):
        emb = net(grids)
        out = heads(emb["shape"], emb["pose"])
        loss = F.cross_entropy(out["shape_logits"], model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        db = ExactIndex(embed_models(net, buffers["voxels"], q))
        _, idx = db.search(net(grids)["shape"], 1)
    assert torch.equal(idx[:, 0], model), (idx[:, 0] == model).float().mean()
