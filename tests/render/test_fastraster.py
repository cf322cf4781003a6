"""The data engine's compiled hard rasteriser must equal poseshape.render.mesh_hard bit for bit."""

from __future__ import annotations

import math

import pytest
import torch

from poseshape.geometry.camera import viewpoint_to_pose
from poseshape.render import fastraster as fr
from poseshape.render import mesh_hard
from poseshape.shapes.procedural import generate

pytestmark = pytest.mark.skipif(not fr.available(), reason="C++ rasteriser could not be built here")

FIELDS = ("face_idx", "depth", "bary", "mask")


def _assert_identical(a, b, what=""):
    for k in FIELDS:
        x, y = getattr(a, k), getattr(b, k)
        assert x.shape == y.shape and x.dtype == y.dtype, (what, k, x.shape, y.shape, x.dtype, y.dtype)
        # torch.equal treats +inf == +inf (background depth); bit-exact otherwise
        assert torch.equal(x, y), f"{what}: {k} differs at {int((x != y).sum())} entries"


def _poses(n, seed, dist=(1.6, 3.0)):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    e = (torch.rand(n, generator=g, dtype=torch.float64) - 0.3) * 1.5
    th = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * 0.6
    d = dist[0] + (dist[1] - dist[0]) * torch.rand(n, generator=g, dtype=torch.float64)
    return viewpoint_to_pose(a, e, th, d)


def _K(f, c, dtype=torch.float32):
    return torch.tensor([[f, 0, c], [0, f, c], [0, 0, 1.0]], dtype=dtype)


@pytest.mark.parametrize("category", ["chair", "car", "aeroplane"])
@pytest.mark.parametrize("size", [32, 64])
def test_procedural_meshes_pinhole(category, size):
    mesh, _ = generate(category, 3)
    v, f = mesh.verts.float(), mesh.faces
    R, t = _poses(6, hash(category) % 1000)
    K = _K(size * 1.6, size / 2)
    _assert_identical(
        mesh_hard.rasterize(v, f, R.float(), t.float(), K, size),
        fr.rasterize(v, f, R.float(), t.float(), K, size),
        category,
    )


def test_pascal3d_cad_and_batched_intrinsics(shared_data):
    from poseshape.data.collections import MeshCollection

    col = MeshCollection(shared_data / "pascal3d_cad", categories=["car", "chair", "bicycle"])
    for i in (0, len(col) // 2, len(col) - 1):
        cat, mid, mesh = col[i]
        R, t = _poses(4, i)
        K = torch.stack([_K(90.0 + 10 * b, 32.0 + b) for b in range(4)])
        v = mesh.verts.float()
        _assert_identical(
            mesh_hard.rasterize(v, mesh.faces, R.float(), t.float(), K, (48, 64)),
            fr.rasterize(v, mesh.faces, R.float(), t.float(), K, (48, 64)),
            f"{cat}/{mid}",
        )


def test_pixel_aligned_edges_ties_degenerate_and_culled_faces():
    # a unit square split along its diagonal, corners on pixel centres (inclusive edges), a
    # coplanar duplicate (depth tie -> smallest index), a zero-area face, a face behind the
    # camera (dropped) and a face partly off-screen
    verts = torch.tensor(
        [
            [-0.5, -0.5, 0.0],
            [0.5, -0.5, 0.0],
            [0.5, 0.5, 0.0],
            [-0.5, 0.5, 0.0],  # square
            [0.0, 0.0, 0.0],
            [0.25, 0.25, 0.0],
            [0.5, 0.5, 0.0],  # collinear: zero area
            [0.0, 0.0, -5.0],
            [1.0, 0.0, -5.0],
            [0.0, 1.0, -5.0],  # behind the camera
            [0.2, -2.0, 0.3],
            [3.0, 0.1, 0.3],
            [0.1, 0.4, 0.3],  # partly outside the image
        ],
        dtype=torch.float32,
    )
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [2, 3, 0], [4, 5, 6], [7, 8, 9], [10, 11, 12]])
    R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))[None]
    t = torch.tensor([[0.0, 0.0, 2.0]])
    K = _K(16.0, 8.0)  # corners project to u, v = 8.5 -+ 4: pixel centres 4.5 and 12.5
    K[0, 2] = K[1, 2] = 8.5
    for size in (17, 9):
        a = mesh_hard.rasterize(verts, faces, R, t, K, size)
        b = fr.rasterize(verts, faces, R, t, K, size)
        _assert_identical(a, b, f"size {size}")
    assert (a.face_idx == 3).sum() == 0 and (a.face_idx == 4).sum() == 0  # degenerate, behind
    # weak perspective and float64
    v64 = verts.double()
    a = mesh_hard.rasterize(v64, faces, R.double(), t.double(), scale=8.0, image_size=16)
    b = fr.rasterize(v64, faces, R.double(), t.double(), scale=8.0, image_size=16)
    _assert_identical(a, b, "weak perspective float64")
    assert b.depth.dtype == torch.float64 and b.mask.sum() > 0


def test_empty_mesh_and_fallback(monkeypatch):
    v = torch.zeros(0, 3)
    f = torch.zeros(0, 3, dtype=torch.int64)
    R, t = torch.eye(3)[None], torch.tensor([[0.0, 0.0, 2.0]])
    empty = fr.rasterize(v, f, R, t, _K(10.0, 4.0), 8)
    assert (empty.face_idx == -1).all() and torch.isinf(empty.depth).all() and not empty.mask.any()
    _assert_identical(mesh_hard.rasterize(v, f, R, t, _K(10.0, 4.0), 8), empty)
    mesh, _ = generate("sofa", 0)
    Rb, tb = _poses(2, 0)
    args = (mesh.verts.float(), mesh.faces, Rb.float(), tb.float(), _K(40.0, 16.0), 32)
    cpp = fr.rasterize(*args)  # the C++ kernel (when it builds)
    # POSESHAPE_NO_CPP=1: the PyTorch reference is called instead, and gives the C++ result
    calls = []
    real = mesh_hard.rasterize

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(mesh_hard, "rasterize", spy)
    monkeypatch.setenv("POSESHAPE_NO_CPP", "1")
    assert not fr.available()
    ref = fr.rasterize(*args)
    assert calls == [1]
    assert ref.mask.sum() > 50
    _assert_identical(ref, cpp)
