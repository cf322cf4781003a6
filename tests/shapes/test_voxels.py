"""Tests for poseshape.shapes.voxels: voxelize, binvox IO, packed npz readers, rigid warp."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from poseshape.core.errors import FileFormatError, ShapeError
from poseshape.shapes.meshes import Mesh, icosphere, load_mesh
from poseshape.shapes.voxels import (
    load_voxel_npz,
    read_binvox,
    voxel_centers,
    voxelize,
    warp_voxels,
    write_binvox,
)


def box_mesh(lo, hi) -> Mesh:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    tm = trimesh.creation.box(extents=hi - lo)
    tm.apply_translation((hi + lo) / 2)
    return Mesh(torch.as_tensor(tm.vertices), torch.as_tensor(tm.faces))


# --------------------------------------------------------------------------- voxelize


def test_voxel_centers_convention():
    c = voxel_centers((2, 4, 8))
    assert c.shape == (2, 4, 8, 3)
    assert torch.allclose(c[0, 0, 0], torch.tensor([-0.5 + 1 / 16, -0.5 + 1 / 8, -0.25]))
    assert torch.allclose(c[1, 3, 7], torch.tensor([0.5 - 1 / 16, 0.5 - 1 / 8, 0.25]))


def test_voxelize_box_exact_and_axis_order():
    # box spanning x in [-0.5, 0], y in [-0.25, 0.25], z in [0, 0.5]: exact at R = 8
    R = 8
    m = box_mesh((-0.5, -0.25, 0.0), (0.0, 0.25, 0.5))
    v = voxelize(m, R, surface=False)
    c = voxel_centers(R)
    inside = (c[..., 0] < 0) & (c[..., 1].abs() < 0.25) & (c[..., 2] > 0)
    assert torch.equal(v.bool(), inside)
    assert v.shape == (R, R, R) and v.dtype == m.verts.dtype


def winding_number(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Generalised winding number (Van Oosterom-Strackee solid angles), brute force."""
    a = tri[None, :, 0] - points[:, None]
    b = tri[None, :, 1] - points[:, None]
    c = tri[None, :, 2] - points[:, None]
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
    den = la * lb * lc + np.einsum("pfi,pfi->pf", a, b) * lc + np.einsum("pfi,pfi->pf", b, c) * la
    den += np.einsum("pfi,pfi->pf", c, a) * lb
    return (2 * np.arctan2(det, den)).sum(1) / (4 * np.pi)


def test_voxelize_sphere_volume_and_brute_force():
    s = icosphere(2, radius=0.4, dtype=torch.float64)
    R = 14
    v = voxelize(s, R, surface=False).bool()
    # brute force: voxel centre inside the polyhedron by its winding number
    c = voxel_centers(R).reshape(-1, 3).double().numpy()
    ref = torch.from_numpy(winding_number(c, s.verts.numpy()[s.faces.numpy()]) > 0.5).reshape(R, R, R)
    assert torch.equal(v, ref)
    s3 = icosphere(3, radius=0.4)
    tm = trimesh.Trimesh(s3.verts.numpy(), s3.faces.numpy(), process=False)
    vol = voxelize(s3, 40, surface=False).double().mean().item()
    assert vol == pytest.approx(tm.volume, rel=0.03)
    # surface voxels only add voxels, and keep everything the surface touches
    vs = voxelize(s, R).bool()
    assert (vs | v).equal(vs) and vs.sum() > v.sum()


def test_voxelize_open_and_double_sided_meshes():
    R = 16
    closed = box_mesh((-0.3, -0.3, -0.3), (0.3, 0.3, 0.3))
    ref = voxelize(closed, R, surface=False)
    # remove the top two triangles (a hole): majority vote keeps the interior
    f = closed.faces
    top = (closed.verts[f][:, :, 1] > 0.29).all(1)
    holed = Mesh(closed.verts, f[~top])
    v = voxelize(holed, R, surface=False)
    assert (v != ref).sum() <= 0.02 * ref.sum()
    # double-sided (every face duplicated with the opposite winding) still fills
    ds = Mesh(closed.verts, torch.cat([f, f.flip(1)]))
    assert torch.equal(voxelize(ds, R, surface=False), ref)


def test_voxelize_thin_sheet_kept_by_surface_voxels():
    sheet = Mesh(
        torch.tensor([[-0.4, 0.013, -0.4], [0.4, 0.013, -0.4], [0.4, 0.013, 0.4], [-0.4, 0.013, 0.4]]),
        torch.tensor([[0, 2, 1], [0, 3, 2]]),
    )
    v = voxelize(sheet, 16)
    h = math.floor((0.013 + 0.5) * 16)
    assert v[:, h].sum() > 0.8 * 13 * 13 and v.sum() == v[:, h].sum()


# --------------------------------------------------------------------------- binvox


def test_binvox_round_trip(tmp_path):
    g = torch.rand(12, 12, 12) > 0.6
    write_binvox(g, tmp_path / "a.binvox", translate=(-0.5, -0.5, -0.5), scale=1.0)
    back, hdr = read_binvox(tmp_path / "a.binvox")
    assert torch.equal(back, g)
    assert hdr.dims == (12, 12, 12) and hdr.translate == (-0.5, -0.5, -0.5) and hdr.scale == 1.0
    # long runs (> 255) are split
    big = torch.zeros(16, 16, 16, dtype=torch.bool)
    big[:, :8] = True
    write_binvox(big, tmp_path / "b.binvox")
    assert torch.equal(read_binvox(tmp_path / "b.binvox")[0], big)


def test_binvox_axis_order_matches_spec(tmp_path):
    """binvox index = x * R*R + z * R + y; our grid is [z, y, x]."""
    R = 4
    x, y, z = 1, 2, 3
    flat = np.zeros(R**3, dtype=np.uint8)
    flat[x * R * R + z * R + y] = 1
    runs = []
    for val in flat:
        if runs and runs[-1][0] == val and runs[-1][1] < 255:
            runs[-1][1] += 1
        else:
            runs.append([int(val), 1])
    body = bytes(b for r in runs for b in r)
    (tmp_path / "one.binvox").write_bytes(b"#binvox 1\ndim 4 4 4\ntranslate 0 0 0\nscale 1\ndata\n" + body)
    g, _ = read_binvox(tmp_path / "one.binvox")
    assert g.sum() == 1 and g[z, y, x]


def test_binvox_corrupt_files(tmp_path):
    g = torch.rand(8, 8, 8) > 0.5
    write_binvox(g, tmp_path / "ok.binvox")
    data = (tmp_path / "ok.binvox").read_bytes()
    cases = {
        "trunc.binvox": data[:-6],
        "magic.binvox": b"#notbinvox\n" + data,
        "header.binvox": b"#binvox 1\ndim 8 8\n",
        "noncubic.binvox": data.replace(b"dim 8 8 8", b"dim 8 8 4"),
        "values.binvox": data[: data.index(b"data\n") + 5] + bytes([7, 255, 7, 255, 0, 2]),
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(FileFormatError, match=name.replace(".", r"\.")):
            read_binvox(tmp_path / name)
    with pytest.raises(FileFormatError, match="missing"):
        read_binvox(tmp_path / "missing.binvox")


def test_chair_voxelize_matches_shipped_binvox(shared_data):
    """Issue 2: IoU >= 0.85 after aligning the mesh to the binvox cube (its header's
    translate / scale). Measured 0.915 (bench/anchors.py, bench/results_frag/anchors.md)."""
    d = shared_data / "samples" / "trimesh"
    ref, hdr = read_binvox(d / "chair_model.binvox")
    mesh = load_mesh(d / "chair_model.obj", dtype=torch.float64)
    # place the mesh in the binvox cube: model -> [0, 1]^3 via translate/scale -> unit cube
    t = torch.tensor(hdr.translate, dtype=torch.float64)
    unit = Mesh((mesh.verts - t) / hdr.scale - 0.5, mesh.faces)
    v = voxelize(unit, hdr.dims[0]).bool()
    iou = (v & ref).sum().item() / (v | ref).sum().item()
    assert iou >= 0.85, iou


# --------------------------------------------------------------------------- npz sets


def _centre_of_mass(g):
    c = voxel_centers(tuple(g.shape[-3:])).double()
    w = g.double()
    return (w[..., None] * c).sum((-4, -3, -2)) / w.sum((-3, -2, -1))[..., None]


def _chair_checks(g):
    """Seat/legs: the lower half has less mass than the upper; the back is at -Z."""
    _N, R = g.shape[0], g.shape[-1]
    lower = g[:, :, : R // 4].double().sum((1, 2, 3))  # h = y index: bottom quarter (legs)
    middle = g[:, :, R // 4 : R // 2].double().sum((1, 2, 3))
    assert (lower < middle).double().mean() > 0.7
    # the top quarter (chair back) sits behind the centre: z < 0
    top = g.clone()
    top[:, :, : 3 * R // 4] = False
    keep = top.flatten(1).any(1)
    z_top = _centre_of_mass(top[keep])[:, 2]
    assert (z_top < 0).double().mean() > 0.8
    # left-right symmetric-ish: x centre near 0
    assert _centre_of_mass(g)[:, 0].abs().mean() < 0.05


def test_modelnet_chair_npz_layout(shared_data):
    g = load_voxel_npz(shared_data / "voxels" / "modelnet10_chair_32.npz", indices=slice(0, 60))
    assert g.shape == (60, 32, 32, 32) and g.dtype == torch.bool
    _chair_checks(g)
    full = load_voxel_npz(shared_data / "voxels" / "modelnet10_chair_32.npz")
    assert full.shape == (889, 32, 32, 32)
    assert torch.equal(full[:60], g)


def test_3dshapenets_chair_npz_layout(shared_data):
    path = shared_data / "voxels" / "3dshapenets_chair_30.npz"
    g = load_voxel_npz(path, split="test")
    assert g.shape == (100, 12, 30, 30, 30)
    _chair_checks(g[:, 0])
    g0 = load_voxel_npz(path, split="train", rotation=0, indices=slice(0, 40))
    assert g0.shape == (40, 30, 30, 30)
    _chair_checks(g0)
    # the 12 rotations turn about our up axis: the y profile is the same for all
    y = _centre_of_mass(g[:20])[..., 1]  # (N, 12)
    assert (y - y[:, :1]).abs().max() < 0.02
    # rotation 3 (90 deg) is rotation 0 turned a quarter about the h (= y) axis
    g0, g3 = g[:, 0], g[:, 3]
    ious = []
    for k in (1, -1):
        r = torch.rot90(g0, k, dims=(1, 3))
        ious.append(((r & g3).sum() / (r | g3).sum()).item())
    assert max(ious) > 0.9, ious
    with pytest.raises(FileFormatError, match="split"):
        load_voxel_npz(path)
    with pytest.raises(FileFormatError, match="rotation"):
        load_voxel_npz(path, split="test", rotation=12)


def test_modelnet_monitor_npz(shared_data):
    g = load_voxel_npz(shared_data / "voxels" / "modelnet10_monitor_32.npz", indices=slice(0, 20))
    assert g.shape == (20, 32, 32, 32) and g.any()


def test_npz_validation(tmp_path):
    np.savez(tmp_path / "bad.npz", stuff=np.zeros(3))
    with pytest.raises(FileFormatError, match="bad.npz"):
        load_voxel_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "shape.npz", voxels=np.zeros((2, 8, 8, 2), np.uint8), shape=np.array([2, 8, 8]))
    with pytest.raises(FileFormatError, match="inconsistent"):
        load_voxel_npz(tmp_path / "shape.npz")
    with pytest.raises(FileFormatError, match="no such"):
        load_voxel_npz(tmp_path / "nope.npz")
    # a well-formed tiny file with the ModelNet layout: stored (x, y, z) z-up -> ours (z, y, x)
    native = np.zeros((1, 8, 8, 8), bool)
    native[0, 6, 1, 2] = True  # x=6, y=1 (front side), z=2
    np.savez(tmp_path / "ok.npz", voxels=np.packbits(native, axis=-1), shape=np.array([1, 8, 8]))
    g = load_voxel_npz(tmp_path / "ok.npz")
    # ours: x = 6, y = z_native = 2, z = -y_native -> index 7 - 1 = 6
    assert g[0, 6, 2, 6] and g.sum() == 1


# --------------------------------------------------------------------------- warp


def test_warp_identity():
    g = torch.rand(2, 1, 6, 7, 8, dtype=torch.float64)
    out = warp_voxels(g, torch.eye(3, dtype=torch.float64).expand(2, 3, 3), torch.zeros(2, 3, dtype=torch.float64))
    assert torch.allclose(out, g, atol=1e-12)


def test_warp_rot90_about_y_matches_torch_rot90():
    g = torch.rand(1, 1, 8, 8, 8, dtype=torch.float64)
    R = torch.tensor(Rotation.from_euler("y", 90, degrees=True).as_matrix())[None]
    out = warp_voxels(g, R, torch.zeros(1, 3, dtype=torch.float64))
    # out(x, y, z) = in(R^T p) = in(-z, y, x): out[d, h, w] = in[w, h, N-1-d]
    assert torch.allclose(out, torch.rot90(g, 1, dims=(2, 4)), atol=1e-9)
    # a mesh rotated the same way voxelizes to the warped grid
    box = box_mesh((0.1, -0.2, -0.4), (0.4, 0.3, 0.0))
    v = voxelize(box, 10, surface=False).double()[None, None]
    vr = voxelize(Mesh(box.verts @ R[0].T, box.faces), 10, surface=False).double()[None, None]
    assert torch.equal(warp_voxels(v, R, torch.zeros(1, 3, dtype=torch.float64)).round(), vr)


def test_warp_translation_by_whole_voxels_and_composition():
    g = torch.zeros(1, 1, 8, 8, 8, dtype=torch.float64)
    g[0, 0, 2:4, 3:5, 1:3] = 1.0
    t = torch.tensor([[2 / 8, -1 / 8, 1 / 8]], dtype=torch.float64)  # (x, y, z)
    out = warp_voxels(g, torch.eye(3, dtype=torch.float64)[None], t)
    assert torch.allclose(out, torch.roll(g, shifts=(1, -1, 2), dims=(2, 3, 4)), atol=1e-12)
    # composition: warp(warp(g, R1, t1), R2, t2) == warp(g, R2 R1, R2 t1 + t2) on a smooth field
    c = voxel_centers(24).double()
    smooth = torch.exp(-((c - torch.tensor([0.05, -0.02, 0.03], dtype=torch.float64)) ** 2).sum(-1) / 0.05)[None, None]
    R1 = torch.tensor(Rotation.from_rotvec([0.2, 0.5, -0.1]).as_matrix())[None]
    R2 = torch.tensor(Rotation.from_rotvec([-0.3, 0.1, 0.4]).as_matrix())[None]
    t1 = torch.tensor([[0.02, -0.03, 0.01]], dtype=torch.float64)
    t2 = torch.tensor([[-0.01, 0.02, 0.03]], dtype=torch.float64)
    two = warp_voxels(warp_voxels(smooth, R1, t1), R2, t2)
    one = warp_voxels(smooth, R2 @ R1, (R2 @ t1[..., None])[..., 0] + t2)
    assert (two - one).abs().max() < 0.03
    # and both match the analytic moved field
    moved_centre = (
        (R2 @ R1 @ torch.tensor([0.05, -0.02, 0.03], dtype=torch.float64)[:, None])[0, :, 0]
        + (R2 @ t1[..., None])[0, :, 0]
        + t2[0]
    )
    ref = torch.exp(-((c - moved_centre) ** 2).sum(-1) / 0.05)[None, None]
    assert (one - ref).abs().max() < 0.03


def test_warp_out_size_grad_and_errors():
    g = torch.rand(1, 2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    R = torch.tensor(Rotation.from_rotvec([0.1, 0.2, 0.3]).as_matrix())[None].requires_grad_(True)
    t = torch.tensor([[0.01, 0.02, -0.03]], dtype=torch.float64, requires_grad=True)
    out = warp_voxels(g, R, t, out_size=(3, 5, 6))
    assert out.shape == (1, 2, 3, 5, 6)
    out.sum().backward()
    assert g.grad is not None and R.grad is not None and t.grad is not None
    with pytest.raises(ShapeError, match="grid"):
        warp_voxels(torch.zeros(4, 4, 4), R, t)
    with pytest.raises(ShapeError, match="R"):
        warp_voxels(g, torch.eye(3)[None].expand(2, 3, 3), t)


def _trilinear_zero_pad(vol: np.ndarray, d: float, h: float, w: float) -> float:
    """Trilinear sample of ``vol (D, H, W)`` at continuous index (d, h, w), zero outside."""
    D, H, W = vol.shape
    d0, h0, w0 = math.floor(d), math.floor(h), math.floor(w)
    out = 0.0
    for dd in (0, 1):
        for hh in (0, 1):
            for ww in (0, 1):
                i, j, k = d0 + dd, h0 + hh, w0 + ww
                if 0 <= i < D and 0 <= j < H and 0 <= k < W:
                    wt = (
                        ((d - d0) if dd else (1 - (d - d0)))
                        * ((h - h0) if hh else (1 - (h - h0)))
                        * ((w - w0) if ww else (1 - (w - w0)))
                    )
                    out += wt * vol[i, j, k]
    return out


def test_warp_matches_brute_force_trilinear_inverse_sampling():
    """out(x) = in(R^T (x - t)), trilinear, on a non-cubic grid, against plain loops."""
    g = torch.Generator().manual_seed(4)
    vol = torch.rand(1, 1, 5, 6, 7, generator=g, dtype=torch.float64)
    R = torch.tensor(Rotation.from_rotvec([0.4, -0.7, 0.25]).as_matrix())[None]
    t = torch.tensor([[0.07, -0.05, 0.11]], dtype=torch.float64)
    out = warp_voxels(vol, R, t)[0, 0].numpy()
    v = vol[0, 0].numpy()
    Rn, tn = R[0].numpy(), t[0].numpy()
    D, H, W = v.shape
    ref = np.zeros_like(out)
    for d in range(D):
        for h in range(H):
            for w in range(W):
                x = np.array([(w + 0.5) / W - 0.5, (h + 0.5) / H - 0.5, (d + 0.5) / D - 0.5])
                p = Rn.T @ (x - tn)
                ref[d, h, w] = _trilinear_zero_pad(
                    v, (p[2] + 0.5) * D - 0.5, (p[1] + 0.5) * H - 0.5, (p[0] + 0.5) * W - 0.5
                )
    np.testing.assert_allclose(out, ref, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda R_, t_: warp_voxels(vol, R_, t_), (R.clone().requires_grad_(True), t.clone().requires_grad_(True))
    )


def test_binvox_reads_what_the_binvox_spec_writes_and_header_errors(tmp_path):
    """A file written by hand per the binvox spec (y fastest, then z, then x) reads back in our
    (z, y, x) layout, and header problems name the file and what was expected."""
    R = 3
    native = np.zeros((R, R, R), dtype=np.uint8)  # native[x, z, y]
    native[2, 0, 1] = 1  # x=2, z=0, y=1
    native[0, 2, 2] = 1  # x=0, z=2, y=2
    body = bytes(b for val in native.reshape(-1) for b in (int(val), 1))
    (tmp_path / "s.binvox").write_bytes(b"#binvox 1\ndim 3 3 3\ntranslate 0.5 -1 2\nscale 4\ndata\n" + body)
    g, hdr = read_binvox(tmp_path / "s.binvox")
    assert g.sum() == 2 and g[0, 1, 2] and g[2, 2, 0]
    assert hdr.translate == (0.5, -1.0, 2.0) and hdr.scale == 4.0
    # round trip keeps the header
    write_binvox(g, tmp_path / "r.binvox", translate=hdr.translate, scale=hdr.scale)
    g2, hdr2 = read_binvox(tmp_path / "r.binvox")
    assert torch.equal(g2, g) and hdr2 == hdr
    (tmp_path / "nodim.binvox").write_bytes(b"#binvox 1\ntranslate 0 0 0\nscale 1\ndata\n\x00\x1b")
    with pytest.raises(ValueError, match=r"nodim\.binvox.*dim"):
        read_binvox(tmp_path / "nodim.binvox")
    (tmp_path / "odd.binvox").write_bytes(b"#binvox 1\ndim 3 3 3\ndata\n\x00")
    with pytest.raises(ValueError, match=r"odd\.binvox.*run-length"):
        read_binvox(tmp_path / "odd.binvox")
    with pytest.raises(ShapeError, match="grid.*cubic"):
        write_binvox(torch.zeros(2, 3, 3), tmp_path / "x.binvox")
