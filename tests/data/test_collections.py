"""Tests for poseshape.data.collections.MeshCollection."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import trimesh

from poseshape.core.errors import FileFormatError, PoseshapeError
from poseshape.data.collections import (
    SHAPENET_SYNSETS,
    MeshCollection,
    canonical_category,
    detect_layout,
    singular,
)
from poseshape.shapes import procedural


def _fits_unit_cube(mesh, atol=1e-5):
    v = mesh.verts.double()
    lo, hi = v.min(0).values, v.max(0).values
    return (
        torch.allclose((lo + hi) / 2, torch.zeros(3, dtype=v.dtype), atol=atol)
        and abs(float((hi - lo).max()) - 1.0) < atol
    )


def _normalise_reference(verts: np.ndarray, R: np.ndarray):
    """Independent normalisation: rotate, centre the box, scale the max side to 1."""
    v = verts @ R.T
    lo, hi = v.min(0), v.max(0)
    c, s = (lo + hi) / 2, (hi - lo).max()
    return (v - c) / s, (c, s)


# ------------------------------------------------------------------------ small helpers


def test_singular_and_aliases():
    assert singular("chairs") == "chair"
    assert singular("tables") == "table"
    assert singular("benches") == "bench"
    assert singular("boxes") == "box"
    assert singular("sofas") == "sofa"
    assert singular("glass") == "glass"
    assert singular("bus") == "bus"
    assert singular("car") == "car"
    assert canonical_category("airplane") == "aeroplane"
    assert canonical_category("02691156") == "aeroplane"
    assert canonical_category("display") == "monitor"
    for sid, name in {
        "02958343": "car",
        "03001627": "chair",
        "04379243": "table",
        "04256520": "sofa",
        "03211117": "monitor",
        "02828884": "bench",
        "02933112": "cabinet",
        "03636649": "lamp",
        "03691459": "speaker",
        "04090263": "rifle",
        "04401088": "telephone",
        "04530566": "watercraft",
    }.items():
        assert SHAPENET_SYNSETS[sid] == name


# ------------------------------------------------------------------------ shared data


def test_pascal3d(shared_data):
    root = shared_data / "pascal3d_cad"
    col = MeshCollection(root)
    assert col.layout == "pascal3d" and detect_layout(root) == "pascal3d"
    assert len(col) == 73 and len(col.categories) == 12
    assert col.counts()["car"] == 5
    i = col.index("car", "01")
    cat, mid, mesh = col[i]
    assert (cat, mid) == ("car", "01") and _fits_unit_cube(mesh)
    # independent reference: trimesh's reader + (x, z, -y) + box normalisation
    raw = trimesh.load(str(root / "CAD" / "car" / "01.off"), process=False)
    R = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    ref, (c, s) = _normalise_reference(np.asarray(raw.vertices), R)
    np.testing.assert_allclose(mesh.verts.double().numpy(), ref, atol=1e-5)
    # keypoints transform exactly like the mesh
    kp = col.keypoints(i)
    raw_kp = json.loads((root / "CAD" / "car" / "01_keypoints.json").read_text())
    for name in ("left_front_light", "right_back_trunk", "left_front_wheel"):
        p = np.array([raw_kp[name][a] for a in "xyz"])
        np.testing.assert_allclose(kp[name].double().numpy(), (R @ p - c) / s, atol=1e-5)
    # in our frame the car's front lights are at +Z and its wheels low
    assert kp["left_front_light"][2] > 0.3 and kp["left_back_trunk"][2] < -0.3
    assert kp["left_front_wheel"][1] < kp["left_front_light"][1]
    assert kp["left_front_light"][0] < 0 < kp["right_front_light"][0]
    # filtering by name
    sub = MeshCollection(root, categories=["chair", "tvmonitor"])
    assert sub.categories == ["chair", "tvmonitor"] and len(sub) == 14


def test_objectnet3d(shared_data):
    root = shared_data / "objectnet3d_cad"
    col = MeshCollection(root, categories=["bench", "cup"])
    assert col.layout == "objectnet3d"
    assert col.counts() == {"bench": 7, "cup": 10}
    cat, mid, mesh = col[0]
    assert (cat, mid) == ("bench", "01") and _fits_unit_cube(mesh)
    # the models are Z-up like PASCAL3D+: after conversion a bench is wider (X) than deep (Z)
    ext = mesh.verts.max(0).values - mesh.verts.min(0).values
    assert ext[0] > ext[2]


def test_folder_of_obj(shared_data):
    root = shared_data / "meshes_obj"
    col = MeshCollection(root)
    assert col.layout == "folder"
    assert col.counts() == {"chair": 30, "table": 12}  # folder names made singular
    assert MeshCollection(root, singularize=False).categories == ["chairs", "tables"]
    m = col.models[0]
    assert m.category == "chair" and m.path.suffix == ".obj" and m.model_id == m.path.stem
    _cat, _mid, mesh = col[0]
    assert _fits_unit_cube(mesh)
    with pytest.raises(PoseshapeError, match="present"):
        MeshCollection(root, categories=["aeroplane"])


def test_meshes_obj_chairs_face_front_in_our_frame(shared_data):
    """``yup_xfront`` puts the chairs' backrests (their highest vertices) at -Z, like PASCAL3D+'s."""
    col = MeshCollection(shared_data / "meshes_obj", categories=["chair"], source="yup_xfront")
    ref = MeshCollection(shared_data / "pascal3d_cad", categories=["chair"])
    for c in (col, ref):
        zs = []
        for k in range(4):
            v = c.mesh(k).verts.double()
            top = v[v[:, 1] > v[:, 1].max() - 0.15]  # the top of the backrest
            zs.append(float(top[:, 2].mean()))
        assert max(zs) < -0.1, zs  # backrest behind the seat: the front faces +Z
    # with the identity frame the backrest sits at -X instead (what the source rotation fixes)
    v = MeshCollection(shared_data / "meshes_obj", categories=["chair"]).mesh(0).verts.double()
    assert float(v[v[:, 1] > v[:, 1].max() - 0.15][:, 0].mean()) < -0.1


def test_concat_keeps_frames_splits_and_refuses_duplicates(shared_data):
    a = MeshCollection(shared_data / "pascal3d_cad", categories=["chair", "car"])
    b = MeshCollection(shared_data / "meshes_obj", categories=["chair"], source="yup_xfront")
    both = MeshCollection.concat(a, b)
    assert both.layout == "mixed" and len(both) == len(a) + len(b)
    assert both.counts() == {"car": a.counts()["car"], "chair": a.counts()["chair"] + 30}
    # each model keeps its own source frame
    i = both.index("chair", "ChairArms1")
    assert torch.allclose(both.mesh(i).verts, b.mesh(b.index("chair", "ChairArms1")).verts)
    # a category from a single part splits as it does alone
    car_alone = {a.models[i].model_id for i in a.split_indices(seed=3)["test"] if a.models[i].category == "car"}
    car_both = {both.models[i].model_id for i in both.split_indices(seed=3)["test"] if both.models[i].category == "car"}
    assert car_alone == car_both
    with pytest.raises(PoseshapeError, match="two collections"):
        MeshCollection.concat(a, a)
    with pytest.raises(PoseshapeError, match="at least one"):
        MeshCollection.concat()
    with pytest.raises(PoseshapeError, match="expected MeshCollection"):
        MeshCollection.concat(a, "meshes_obj")


# ------------------------------------------------------------------------ fake layouts


def _asym_mesh(front_sign: float = 1.0) -> trimesh.Trimesh:
    """A box with a bump on its `front_sign * z` face (marks the front)."""
    body = trimesh.creation.box(extents=[1.0, 0.5, 2.0])
    bump = trimesh.creation.box(extents=[0.2, 0.2, 0.4])
    bump.apply_translation([0, 0, front_sign * 1.1])
    return trimesh.util.concatenate([body, bump])


@pytest.fixture
def fake_shapenet(tmp_path):
    root = tmp_path / "ShapeNetCore"
    # v2: models/model_normalized.obj; ShapeNet's native front is -Z
    for mid in ("aaa", "bbb"):
        d = root / "03001627" / mid / "models"
        d.mkdir(parents=True)
        _asym_mesh(-1.0).export(d / "model_normalized.obj")
    # v1: model.obj
    d = root / "02691156" / "ccc"
    d.mkdir(parents=True)
    _asym_mesh(-1.0).export(d / "model.obj")
    d = root / "09999999" / "ddd"
    d.mkdir(parents=True)
    _asym_mesh(-1.0).export(d / "model.obj")
    (root / "03001627" / "no_mesh_here").mkdir()
    return root


def test_fake_shapenet(fake_shapenet):
    col = MeshCollection(fake_shapenet)
    assert col.layout == "shapenet"
    assert col.counts() == {"09999999": 1, "aeroplane": 1, "chair": 2}
    assert [m.model_id for m in col.models] == ["ccc", "aaa", "bbb", "ddd"]
    for cat, mid, mesh in col:
        assert _fits_unit_cube(mesh)
        v = mesh.verts.double()
        # the bump (native -Z) is now at +Z: the front faces +Z
        assert float(v[:, 2].min()) == pytest.approx(-0.5, abs=1e-6)
        zmax_pts = v[v[:, 2] > v[:, 2].max() - 1e-6]
        assert zmax_pts[:, 0].abs().max() < 0.1  # the bump is narrow
    assert MeshCollection(fake_shapenet, categories=["airplane"]).counts() == {"aeroplane": 1}
    assert MeshCollection(fake_shapenet, categories=["03001627"]).counts() == {"chair": 2}


def test_corrupt_file_is_skipped_and_counted(tmp_path):
    root = tmp_path / "meshes"
    (root / "boxes").mkdir(parents=True)
    _asym_mesh().export(root / "boxes" / "a.obj")
    _asym_mesh().export(root / "boxes" / "c.ply")
    bad = root / "boxes" / "b.off"
    bad.write_text("OFF\n8 12 0\n0 0 0\n1 1\n")  # truncated
    col = MeshCollection(root)
    assert len(col) == 3 and col.categories == ["box"]
    with pytest.warns(UserWarning, match="b.off"):
        got = [(c, m) for c, m, _ in col]
    assert got == [("box", "a"), ("box", "c")]
    assert len(col.skipped) == 1 and col.skipped[0][0] == bad
    assert "skipped 1" in col.summary() and "b.off" in col.summary()
    with pytest.raises(FileFormatError, match="b.off"):
        col[col.index("box", "b")]
    # iterating again does not double-count
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list(col)
    assert len(col.skipped) == 1


def test_empty_or_missing_folder_errors(tmp_path):
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(FileFormatError, match="empty_dir"):
        MeshCollection(empty)
    (empty / "notes").mkdir()
    (empty / "notes" / "readme.txt").write_text("no meshes")
    with pytest.raises(FileFormatError, match="empty_dir"):
        MeshCollection(empty)
    with pytest.raises(FileNotFoundError, match="nope"):
        MeshCollection(tmp_path / "nope")
    with pytest.raises(FileFormatError, match="CAD"):
        (tmp_path / "p3d" / "CAD" / "car").mkdir(parents=True)
        MeshCollection(tmp_path / "p3d", layout="pascal3d")
    with pytest.raises(PoseshapeError, match="layout"):
        MeshCollection(empty, layout="modelnet")


def test_caches(tmp_path):
    root = tmp_path / "m" / "things"
    root.mkdir(parents=True)
    for k in range(3):
        tm = _asym_mesh()
        tm.apply_scale(1 + k)
        tm.export(root / f"t{k}.obj")
    cache = tmp_path / "cache"
    col = MeshCollection(tmp_path / "m", cache_size=2, cache_dir=cache)
    a = col.mesh(0)
    a.verts += 100  # returned meshes are copies; the cache is not changed
    b = col.mesh(0)
    assert col.cache_info["hits"] == 1 and col.cache_info["misses"] == 1
    assert _fits_unit_cube(b)
    for i in range(3):
        col.mesh(i)
    assert col.cache_info["size"] == 2  # LRU bound
    assert len(list(cache.glob("*.npz"))) == 3
    col2 = MeshCollection(tmp_path / "m", cache_dir=cache)
    c = col2.mesh(0)
    assert col2.cache_info["disk_hits"] == 1
    assert torch.equal(c.verts, b.verts) and torch.equal(c.faces, b.faces)
    # a changed file is re-read (the cache key holds size and mtime)
    tm = _asym_mesh()
    tm.apply_scale([3, 1, 1])
    tm.export(root / "t0.obj")
    col3 = MeshCollection(tmp_path / "m", cache_dir=cache)
    d = col3.mesh(0)
    assert col3.cache_info["disk_hits"] == 0 and not torch.equal(d.verts, b.verts)
    assert MeshCollection(tmp_path / "m", dtype=torch.float64).mesh(1).verts.dtype == torch.float64


# ------------------------------------------------------------------------ procedural + splits


def test_procedural_collection():
    col = MeshCollection.procedural(["chair", "airplane"], per_category=3, seed=4)
    assert col.layout == "procedural" and len(col) == 6
    assert col.categories == ["aeroplane", "chair"]
    cat, mid, mesh = col[1]
    ref, params = procedural.generate("chair", 5)
    assert (cat, mid) == ("chair", "chair_0001")
    assert torch.allclose(mesh.verts, ref.verts, atol=1e-6)
    assert col.params(1) == params and col.keypoints(1) is None and col.models[1].path is None
    assert len(list(col)) == 6
    with pytest.raises(PoseshapeError, match="unknown procedural"):
        MeshCollection.procedural(["ufo"])


def test_splits_disjoint_deterministic_and_per_category():
    col = MeshCollection.procedural(["chair", "car", "table"], per_category=20, seed=0)
    parts = col.split_indices((0.8, 0.1, 0.1), seed=3)
    ids = {n: {(col.models[i].category, col.models[i].model_id) for i in ix} for n, ix in parts.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    assert len(ids["train"] | ids["val"] | ids["test"]) == len(col)
    for cat in col.categories:  # the fractions hold within each category
        assert sum(m[0] == cat for m in ids["train"]) == 16
        assert sum(m[0] == cat for m in ids["test"]) == 2
    assert col.split_indices((0.8, 0.1, 0.1), seed=3) == parts
    assert col.split_indices((0.8, 0.1, 0.1), seed=4) != parts
    # a category's split does not depend on the other categories present
    chairs = MeshCollection.procedural(["chair"], per_category=20, seed=0)
    test_chairs = {m.model_id for m in chairs.split("test", seed=3).models}
    assert test_chairs == {mid for c, mid in ids["test"] if c == "chair"}
    sp = col.splits(seed=3)
    assert sum(len(v) for v in sp.values()) == len(col)
    with pytest.raises(PoseshapeError, match="fractions"):
        col.split_indices((0.5, 0.5))


def test_splits_on_pascal3d(shared_data):
    col = MeshCollection(shared_data / "pascal3d_cad")
    a = col.splits((0.6, 0.2, 0.2), seed=0)
    b = MeshCollection(shared_data / "pascal3d_cad").splits((0.6, 0.2, 0.2), seed=0)
    sets = {n: set(v.models) for n, v in a.items()}
    assert sets == {n: set(v.models) for n, v in b.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert sum(len(s) for s in sets.values()) == 73


def test_damaged_disk_cache_entry_is_rebuilt(tmp_path):
    root = tmp_path / "m" / "things"
    root.mkdir(parents=True)
    _asym_mesh().export(root / "t.obj")
    cache = tmp_path / "cache"
    ref = MeshCollection(tmp_path / "m", cache_dir=cache).mesh(0)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(b"not an npz file")
    col = MeshCollection(tmp_path / "m", cache_dir=cache)
    with pytest.warns(UserWarning, match="damaged"):
        again = col.mesh(0)
    assert torch.equal(again.verts, ref.verts) and col.cache_info["disk_hits"] == 0
    assert MeshCollection(tmp_path / "m", cache_dir=cache).mesh(0).verts.shape == ref.verts.shape
