"""Tests for poseshape.shapes.meshes: batches, icosphere, Laplacian, sampling, IO, normalisation."""

from __future__ import annotations

import functools
import json
import warnings

import numpy as np
import pytest
import torch
import trimesh

from poseshape.core.errors import FileFormatError, PoseshapeWarning, ShapeError
from poseshape.shapes.meshes import (
    Mesh,
    Meshes,
    apply_transform,
    edges,
    face_areas,
    face_normals,
    icosphere,
    laplacian,
    laplacian_smoothing_loss,
    load_mesh,
    normalize_mesh,
    sample_points,
    save_mesh,
    uniform_laplacian,
    vertex_normals,
)


def unit_cube() -> Mesh:
    tm = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    return Mesh(torch.as_tensor(tm.vertices, dtype=torch.float64), torch.as_tensor(tm.faces))


def tetra() -> Mesh:
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    f = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return Mesh(v, f)


# --------------------------------------------------------------------------- Mesh / Meshes


def test_mesh_validation_kept():
    with pytest.raises(ShapeError):
        Mesh(torch.zeros(3, 2), torch.zeros(1, 3))
    with pytest.raises(ShapeError):
        Mesh(torch.zeros(3, 3), torch.tensor([[0, 1, 3]]))
    with pytest.raises(ShapeError):
        Mesh(torch.full((3, 3), float("nan")), torch.tensor([[0, 1, 2]]))


def test_meshes_packed_padded_list():
    a, b = tetra(), icosphere(0, dtype=torch.float64)
    ms = Meshes.from_list([a, b])
    assert len(ms) == 2
    assert ms.verts_packed.shape == (16, 3) and ms.faces_packed.shape == (24, 3)
    assert ms.verts_offsets.tolist() == [0, 4] and ms.faces_offsets.tolist() == [0, 4]
    assert torch.equal(ms.faces_packed[4:], b.faces + 4)
    assert ms.verts_to_mesh.tolist() == [0] * 4 + [1] * 12
    assert ms.faces_to_mesh.tolist() == [0] * 4 + [1] * 20
    vp, fp = ms.verts_padded(), ms.faces_padded()
    assert vp.shape == (2, 12, 3) and fp.shape == (2, 20, 3)
    assert torch.equal(vp[0, :4], a.verts) and (vp[0, 4:] == 0).all()
    assert (fp[0, 4:] == -1).all() and torch.equal(fp[1], b.faces)
    assert ms.verts_mask().sum() == 16 and ms.faces_mask().sum() == 24
    back = ms.to_list()
    assert torch.equal(back[1].verts, b.verts)
    # packed faces index packed vertices exactly like the per-mesh ones
    assert torch.equal(ms.verts_packed[ms.faces_packed[4:]], b.verts[b.faces])
    ms2 = ms.update_packed(ms.verts_packed * 2)
    assert torch.equal(ms2[0].verts, a.verts * 2)


def test_meshes_gradient_flows():
    v = tetra().verts.clone().requires_grad_(True)
    ms = Meshes([Mesh(v, tetra().faces), icosphere(0, dtype=torch.float64)])
    ms.verts_packed.sum().backward()
    assert torch.equal(v.grad, torch.ones_like(v))


# --------------------------------------------------------------------------- icosphere


@pytest.mark.parametrize("level,nv,nf", [(0, 12, 20), (1, 42, 80), (3, 642, 1280)])
def test_icosphere_counts_and_orientation(level, nv, nf):
    m = icosphere(level, radius=0.5)
    assert m.num_verts == nv and m.num_faces == nf
    assert torch.allclose(m.verts.norm(dim=1), torch.full((nv,), 0.5), atol=1e-6)
    tm = trimesh.Trimesh(m.verts.numpy(), m.faces.numpy(), process=False)
    assert tm.is_watertight and tm.volume > 0
    # outward: face normal points away from the centre
    n = face_normals(m.verts, m.faces)
    c = m.verts[m.faces].mean(1)
    assert ((n * c).sum(-1) > 0).all()


# --------------------------------------------------------------------------- geometry


def test_face_areas_normals_against_trimesh():
    m = icosphere(2, dtype=torch.float64)
    m = Mesh(m.verts * torch.tensor([1.0, 0.7, 1.3], dtype=torch.float64), m.faces)
    tm = trimesh.Trimesh(m.verts.numpy(), m.faces.numpy(), process=False)
    assert np.allclose(face_areas(m.verts, m.faces).numpy(), tm.area_faces)
    assert np.allclose(face_normals(m.verts, m.faces).numpy(), tm.face_normals)
    vn = vertex_normals(m.verts, m.faces)
    assert torch.allclose(vn.norm(dim=-1), torch.ones(m.num_verts, dtype=torch.float64))
    # area-weighted: equals the brute-force sum of incident (area * normal)
    brute = torch.zeros_like(m.verts)
    cross = face_normals(m.verts, m.faces, unit=False)
    for fi, f in enumerate(m.faces.tolist()):
        for k in f:
            brute[k] += cross[fi]
    assert torch.allclose(vn, brute / brute.norm(dim=-1, keepdim=True))
    # batched
    vb = torch.stack([m.verts, 2 * m.verts])
    assert torch.allclose(face_areas(vb, m.faces)[1], 4 * face_areas(m.verts, m.faces))


def test_edges():
    e = edges(tetra().faces)
    assert e.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    assert len(edges(icosphere(3).faces)) == 1920  # V - E + F = 2


def test_laplacian_matches_sparse_and_bruteforce():
    m = icosphere(1, dtype=torch.float64)
    v = m.verts + 0.01 * torch.randn_like(m.verts)
    L = uniform_laplacian(m.faces, m.num_verts, dtype=torch.float64)
    lap = laplacian(v, m.faces)
    assert torch.allclose(torch.sparse.mm(L, v), lap)
    nbrs = [set() for _ in range(m.num_verts)]
    for a, b, c in m.faces.tolist():
        nbrs[a] |= {b, c}
        nbrs[b] |= {a, c}
        nbrs[c] |= {a, b}
    brute = torch.stack([v[i] - v[sorted(nbrs[i])].mean(0) for i in range(m.num_verts)])
    assert torch.allclose(lap, brute)


def test_laplacian_loss_values_and_grad():
    m = icosphere(1, dtype=torch.float64)
    # a planar regular grid point in the middle has zero Laplacian; a translation changes nothing
    v = torch.stack([m.verts, m.verts + 1.0, 2 * m.verts])
    per = laplacian_smoothing_loss(v, m.faces, reduction="none")
    assert per.shape == (3,)
    assert torch.allclose(per[0], per[1]) and torch.allclose(per[2], 4 * per[0])
    assert torch.allclose(laplacian_smoothing_loss(v, m.faces), per.mean())
    assert torch.allclose(laplacian_smoothing_loss(v, m.faces, "sum"), per.sum())
    assert torch.allclose(per[0], laplacian(m.verts, m.faces).pow(2).sum())
    x = (m.verts[None] + 0.01 * torch.randn(1, m.num_verts, 3, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: laplacian_smoothing_loss(x, m.faces), (x,))
    with pytest.raises(ShapeError):
        laplacian_smoothing_loss(v, m.faces, reduction="avg")


# --------------------------------------------------------------------------- sampling


def test_sample_points_on_surface_and_area_weighted():
    cube = unit_cube()
    # make one side of the box 3x longer so the faces have different areas
    cube = Mesh(cube.verts * torch.tensor([3.0, 1.0, 1.0], dtype=torch.float64), cube.faces)
    n = 60000
    pts, nrm = sample_points(cube, n, seed=0, return_normals=True)
    assert pts.shape == (n, 3) and nrm.shape == (n, 3)
    half = torch.tensor([1.5, 0.5, 0.5], dtype=torch.float64)
    on_face = (pts.abs() - half).abs() < 1e-9
    assert on_face.any(1).all()
    assert (pts.abs() <= half + 1e-9).all()
    # fraction of samples on each of the 6 sides ~ its area (x sides: 1, y/z sides: 3 each of 14)
    axis = on_face.double().argmax(1)
    frac = torch.bincount(axis, minlength=3).double() / n
    expect = torch.tensor([2 / 14, 6 / 14, 6 / 14], dtype=torch.float64)
    assert torch.allclose(frac, expect, atol=0.01)
    # normals agree with the side each point lies on
    assert torch.allclose(nrm[torch.arange(n), axis].abs(), torch.ones(n, dtype=torch.float64))
    # within one triangle, points are uniform: mean of barycentric samples = centroid
    tri = Mesh(torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0]], dtype=torch.float64), torch.tensor([[0, 1, 2]]))
    p = sample_points(tri, 40000, seed=1)
    assert torch.allclose(p.mean(0), torch.tensor([1 / 3, 2 / 3, 0.0], dtype=torch.float64), atol=0.01)
    # deterministic for a seed and differentiable in the vertices
    assert torch.equal(sample_points(cube, 10, seed=3), sample_points(cube, 10, seed=3))
    v = tri.verts.clone().requires_grad_(True)
    sample_points(Mesh(v, tri.faces), 5, seed=0).sum().backward()
    assert torch.allclose(v.grad.sum(0), torch.full((3,), 5.0, dtype=torch.float64))


# --------------------------------------------------------------------------- IO


@pytest.mark.parametrize("ext", ["obj", "off", "ply"])
def test_save_load_round_trip(tmp_path, ext):
    m = icosphere(2, dtype=torch.float64)
    path = tmp_path / f"sphere.{ext}"
    save_mesh(m, path)
    back = load_mesh(path, dtype=torch.float64)
    assert back.num_faces == m.num_faces and back.num_verts == m.num_verts
    assert torch.allclose(back.verts, m.verts, atol=1e-6)
    assert torch.equal(back.faces, m.faces)
    assert not list(tmp_path.glob("*.tmp"))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileFormatError, match="nope.obj"):
        load_mesh(tmp_path / "nope.obj")
    (tmp_path / "x.stl").write_text("solid")
    with pytest.raises(FileFormatError, match="x.stl"):
        load_mesh(tmp_path / "x.stl")
    full = {}
    tm = trimesh.creation.box()
    for ext in ("off", "ply", "obj"):
        data = tm.export(file_type=ext)
        full[ext] = data.encode() if isinstance(data, str) else data
    cases = {
        "trunc.off": full["off"][: len(full["off"]) * 2 // 3],
        "garbage.off": b"OFF\nthis is not a mesh\n",
        "noheader.off": b"3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n",
        "trunc.ply": full["ply"][: len(full["ply"]) - 20],
        "garbage.ply": b"\x00\x01garbage",
        "garbage.obj": b"hello world\nthis is not an obj\n",
        "nofaces.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\n",
        "badindex.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n",
        "empty.off": b"",
        "nofaces.off": b"OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FileFormatError, match=name.replace(".", r"\.")):
            load_mesh(tmp_path / name)


def test_load_multipart_obj_is_concatenated(tmp_path):
    text = "o a\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\no b\nv 0 0 1\nv 1 0 1\nv 0 1 1\nf 4 5 6\n"
    (tmp_path / "two.obj").write_text(text)
    m = load_mesh(tmp_path / "two.obj")
    assert m.num_faces == 2 and m.num_verts == 6


def test_normalize_mesh_and_transform():
    m = tetra()
    m = Mesh(m.verts * torch.tensor([2.0, 1.0, 4.0], dtype=torch.float64) + 3.0, m.faces)
    out, tr = normalize_mesh(m, "pascal3d", return_transform=True)
    lo, hi = out.verts.min(0).values, out.verts.max(0).values
    assert torch.allclose((hi - lo).max(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(lo + hi, torch.zeros(3, dtype=torch.float64))
    # pascal3d: ours = (x, z, -y) -> the native z extent (4) becomes our y extent
    assert torch.allclose(hi - lo, torch.tensor([0.5, 1.0, 0.25], dtype=torch.float64))
    assert torch.allclose(apply_transform(m.verts, tr), out.verts)
    assert torch.allclose(apply_transform(out.verts, tr, inverse=True), m.verts)
    with pytest.raises(ShapeError, match="unknown data source"):
        normalize_mesh(m, "nope")


# --------------------------------------------------------------------------- real CAD


@functools.cache
def _load_pascal(path):
    return load_mesh(path, source="pascal3d", normalize=True, return_transform=True, dtype=torch.float64)


def _keypoints(path):
    kp = json.loads(path.read_text())
    return {k: torch.tensor([v["x"], v["y"], v["z"]], dtype=torch.float64) for k, v in kp.items()}


@pytest.mark.slow
def test_pascal3d_cad_all_load_normalized(shared_data):
    files = sorted((shared_data / "pascal3d_cad" / "CAD").glob("*/*.off"))
    assert len(files) == 73
    for f in files:
        m, _ = _load_pascal(f)
        assert m.num_faces > 0 and torch.isfinite(m.verts).all()
        used = m.verts[m.faces.unique()]  # some files carry unused stray vertices
        lo, hi = used.min(0).values, used.max(0).values
        assert (lo >= -0.5 - 1e-9).all() and (hi <= 0.5 + 1e-9).all(), f
        assert abs(float((hi - lo).max()) - 1.0) < 1e-9, f


def test_pascal3d_up_and_front_from_keypoints(shared_data):
    root = shared_data / "pascal3d_cad" / "CAD"
    for f in sorted((root / "car").glob("*.off")):
        _, tr = _load_pascal(f)
        kp = {k: apply_transform(p, tr) for k, p in _keypoints(f.with_name(f.stem + "_keypoints.json")).items()}
        wheels = torch.stack([p for k, p in kp.items() if "wheel" in k])
        windows = torch.stack([p for k, p in kp.items() if "window" in k or "windshield" in k])
        assert wheels[:, 1].max() < windows[:, 1].min(), f  # wheels below the windows: +Y up
        lights = torch.stack([p for k, p in kp.items() if "front_light" in k])
        trunk = torch.stack([p for k, p in kp.items() if "back_trunk" in k])
        assert lights[:, 2].min() > 0.15 and trunk[:, 2].max() < -0.15, f  # front toward +Z
    for f in sorted((root / "chair").glob("*.off")):
        _, tr = _load_pascal(f)
        kp = {k: apply_transform(p, tr) for k, p in _keypoints(f.with_name(f.stem + "_keypoints.json")).items()}
        back = torch.stack([p for k, p in kp.items() if k.startswith("back_upper")])
        seat = torch.stack([p for k, p in kp.items() if k.startswith("seat")])
        assert back[:, 1].min() > seat[:, 1].max(), f  # back above the seat
        assert back[:, 2].max() < 0, f  # chair back at -Z: front +Z
        front_seat = torch.stack([p for k, p in kp.items() if k.startswith("seat_lower")])
        assert front_seat[:, 2].min() > 0, f
        legs = [p for k, p in kp.items() if k.startswith("leg_lower")]
        if legs:
            assert torch.stack(legs)[:, 1].max() < seat[:, 1].min(), f


#: Per PASCAL3D+ category, keypoint groups that must sit higher (+Y) than others after the
#: conversion to our frame: (upper predicate, lower predicate). Checked on the group means.
_UP_RULES = {
    "aeroplane": [(lambda k: k == "rudder_upper", lambda k: k == "rudder_lower")],
    "bicycle": [(lambda k: k.startswith("seat") or k == "head_center" or k.endswith("handle"), lambda k: "pedal" in k)],
    "boat": [(lambda k: k == "head", lambda k: k == "head_down")],
    "bottle": [(lambda k: k.startswith("mouth"), lambda k: k.startswith("bottom"))],
    "bus": [(lambda k: k.endswith("upper") or "windshield" in k, lambda k: k.endswith("lower") or "wheel" in k)],
    "car": [(lambda k: "window" in k or "windshield" in k, lambda k: "wheel" in k)],
    # issue 2: seat keypoints above the leg keypoints (and the back above the seat)
    "chair": [
        (lambda k: k.startswith("seat"), lambda k: k.startswith("leg_lower") or k == "foot_center"),
        (lambda k: k.startswith("back_upper"), lambda k: k.startswith("seat")),
    ],
    "diningtable": [(lambda k: k.startswith("top"), lambda k: k.startswith("leg_lower"))],
    "motorbike": [(lambda k: "seat" in k or "handle" in k, lambda k: "wheel" in k)],
    "sofa": [(lambda k: k.startswith(("top_", "seat_top")), lambda k: "bottom" in k)],
    "train": [(lambda k: k.endswith("_top"), lambda k: k.endswith("_bottom"))],
    "tvmonitor": [(lambda k: "_top_" in k, lambda k: "_bottom_" in k)],
}


def test_pascal3d_cad_all_up_axis_from_keypoints(shared_data):
    """Every one of the 73 models: its keypoints say +Y is up after loading (native Z up).

    A model lacking the lower group of a rule (chair 10 has no leg keypoints, table 06 only
    its top) uses the rules it has; a table top must then lie in the top 20% of the box.
    """
    files = sorted((shared_data / "pascal3d_cad" / "CAD").glob("*/*.off"))
    assert len(files) == 73
    checked = 0
    for f in files:
        m, tr = _load_pascal(f)
        kp = {k: apply_transform(p, tr) for k, p in _keypoints(f.with_name(f.stem + "_keypoints.json")).items()}
        applied = 0
        for upper, lower in _UP_RULES[f.parent.name]:
            hi = [p[1] for k, p in kp.items() if upper(k)]
            lo = [p[1] for k, p in kp.items() if lower(k)]
            if hi and lo:
                gap = float(torch.stack(hi).mean() - torch.stack(lo).mean())
                assert gap > 0.04, (f, gap)  # observed >= 0.057 over all models
                applied += 1
        if f.parent.name == "diningtable":
            used = m.verts[m.faces.unique()]
            top = torch.stack([p[1] for k, p in kp.items() if k.startswith("top")]).mean()
            frac = float((top - used[:, 1].min()) / (used[:, 1].max() - used[:, 1].min()))
            assert frac > 0.8, (f, frac)
            applied += 1
        assert applied >= 1, f
        checked += 1
    assert checked == 73


def test_multipart_obj_scene_keeps_every_face(shared_data):
    """samples/trimesh/chair_model.obj has 20 'o' parts in 3 materials (trimesh loads a
    Scene): load_mesh concatenates them all, with the file's vertex positions."""
    import numpy as np

    path = shared_data / "samples" / "trimesh" / "chair_model.obj"
    lines = path.read_text().splitlines()
    n_faces = sum(1 for ln in lines if ln.startswith("f "))
    v = np.array([[float(x) for x in ln.split()[1:4]] for ln in lines if ln.startswith("v ")])
    assert sum(1 for ln in lines if ln.startswith("o ")) > 1
    m = load_mesh(path, dtype=torch.float64)
    assert m.num_faces == n_faces
    used = m.verts[m.faces.unique()].numpy()
    np.testing.assert_allclose(used.min(0), v.min(0), atol=1e-9)
    np.testing.assert_allclose(used.max(0), v.max(0), atol=1e-9)
    # every loaded vertex is one of the file's vertices
    from scipy.spatial import cKDTree

    assert cKDTree(v).query(m.verts.numpy())[0].max() < 1e-9
    tm = trimesh.load(str(path), process=False, force="mesh")
    assert m.num_faces == len(tm.faces)
    assert np.isclose(float(face_areas(m.verts, m.faces).sum()), tm.area)


def test_off_ply_bad_input_messages_say_what_was_expected(tmp_path):
    tm = trimesh.creation.box()
    off = tm.export(file_type="off")
    off = off.encode() if isinstance(off, str) else off
    (tmp_path / "t.off").write_bytes(off[: len(off) // 2])
    with pytest.raises(ValueError, match=r"t\.off.*truncated.*vertices"):
        load_mesh(tmp_path / "t.off")
    (tmp_path / "h.off").write_bytes(b"OFF\nabc def 0\n")
    with pytest.raises(ValueError, match=r"h\.off.*header"):
        load_mesh(tmp_path / "h.off")
    (tmp_path / "nan.obj").write_bytes(b"v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match=r"nan\.obj.*(NaN|nan|parse)"):
        load_mesh(tmp_path / "nan.obj")
    ply = tm.export(file_type="ply")
    (tmp_path / "t.ply").write_bytes(ply[: len(ply) // 2])
    with pytest.raises(ValueError, match=r"t\.ply"):
        load_mesh(tmp_path / "t.ply")
    with pytest.raises(ValueError, match=r"Mesh\.verts.*\(\*, 3\)"):
        Mesh(torch.zeros(4, 2), torch.zeros(1, 3, dtype=torch.int64))


def test_objectnet3d_sample_loads(shared_data):
    files = sorted((shared_data / "objectnet3d_cad" / "CAD").glob("*/*.ply"))
    assert len(files) > 100
    for f in files[:: max(1, len(files) // 20)]:
        m = load_mesh(f, source="objectnet3d", normalize=True, dtype=torch.float64)
        assert m.num_faces > 0 and torch.isfinite(m.verts).all()
        used = m.verts[m.faces.unique()]
        side = used.max(0).values - used.min(0).values
        assert abs(float(side.max()) - 1.0) < 1e-9 and (used.abs() <= 0.5 + 1e-9).all(), f


def test_objectnet3d_up_axis(shared_data):
    """Tall objects stand along +Y after conversion (native Z up)."""
    root = shared_data / "objectnet3d_cad" / "CAD"
    for cat in ("refrigerator", "vending_machine"):
        for f in sorted((root / cat).glob("*.ply"))[:4]:
            m = load_mesh(f, source="objectnet3d", normalize=True)
            used = m.verts[m.faces.unique()]
            side = used.max(0).values - used.min(0).values
            assert int(side.argmax()) == 1, (f, side)


def test_latin1_obj_comments_are_read(tmp_path):
    text = trimesh.creation.box().export(file_type="obj")
    (tmp_path / "latin.obj").write_bytes("# modèle créé à Genève\n".encode("latin-1") + text.encode())
    (tmp_path / "utf8.obj").write_bytes("# modèle\n".encode("utf-8") + text.encode())
    a, b = load_mesh(tmp_path / "latin.obj"), load_mesh(tmp_path / "utf8.obj")
    assert a.num_faces == b.num_faces == 12
    torch.testing.assert_close(a.verts, b.verts)


def test_truncated_mesh_files_warn_with_what_was_read(tmp_path):
    sphere = trimesh.creation.icosphere(2)  # 320 faces
    text = sphere.export(file_type="obj")
    (tmp_path / "full.obj").write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete file: no warning
        assert load_mesh(tmp_path / "full.obj").num_faces == 320
    last = text.rstrip("\n").rindex("\n")
    for cut, why in ((text[: last + 4], "f with < 3 refs"), (text.rstrip("\n")[:-2] + "//", "a cut v//vn reference")):
        (tmp_path / "cut.obj").write_text(cut)
        with pytest.warns(PoseshapeWarning, match=r"cut\.obj: the OBJ file looks truncated"):
            m = load_mesh(tmp_path / "cut.obj")
        assert m.num_faces in (319, 320), why  # trimesh keeps "1//" as vertex 1
    ply = sphere.export(file_type="ply", encoding="ascii")
    ply = ply if isinstance(ply, bytes) else ply.encode()
    (tmp_path / "cut.ply").write_bytes(ply[: int(len(ply) * 0.97)])
    with pytest.warns(PoseshapeWarning, match=r"declares 320 faces, (\d+) were read"):
        assert 0 < load_mesh(tmp_path / "cut.ply").num_faces < 320
