"""Tests of the real-data loaders (poseshape/data/real.py) on fixtures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from poseshape.core.errors import FileFormatError
from poseshape.data import real

# ----------------------------------------------------------------------------- 3D-R2N2


def _obj_verts(path: Path) -> torch.Tensor:
    return torch.tensor(
        [[float(x) for x in ln.split()[1:4]] for ln in path.read_text().splitlines() if ln.startswith("v ")],
        dtype=torch.float64,
    )


def _fraction_inside(Xcam: torch.Tensor, K: torch.Tensor, mask: torch.Tensor) -> float:
    uv = Xcam @ K.T
    u, v = (uv[:, 0] / uv[:, 2]).floor().long(), (uv[:, 1] / uv[:, 2]).floor().long()
    H, W = mask.shape
    ok = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (Xcam[:, 2] > 0)
    hit = torch.zeros_like(ok)
    hit[ok] = mask[v[ok], u[ok]] > 0.5
    return hit.double().mean().item()


def test_r2n2_metadata_masks_and_cameras(shared_data):
    folder = shared_data / "samples" / "r2n2_renderings"
    rows = real.parse_r2n2_metadata(folder / "cameras.txt")
    assert rows.shape == (3, 5)
    np.testing.assert_allclose(rows[0], [250.481028534, 29.4597137908, 0, 0.652313097662, 25])
    ds = real.R2N2Renderings(folder)
    assert len(ds) == 3 and [p.name for p in ds.images] == ["plane1.png", "plane2.png", "plane3.png"]
    for i, it in enumerate(ds):
        alpha = np.asarray(Image.open(folder / f"plane{i + 1}.png"))[..., 3]
        np.testing.assert_array_equal(it["mask"][0].numpy(), (alpha > 0).astype(np.float32))
        assert it["image"].shape == (3, 137, 137) and {"R", "t", "K", "mask", "image"} <= it["has"]
        assert "voxels" not in it and "voxels" not in it["has"]  # no binvox in the fixture
        R = it["R"].double()
        torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
        assert math.isclose(float(it["t"][2]), rows[i, 3], rel_tol=1e-6)
        assert math.isclose(float(it["K"][0, 0]), 137 * 35 / 32, rel_tol=1e-6)
        assert math.isclose(float(it["viewpoint"][1]), math.radians(rows[i, 1]), abs_tol=1e-5)


def test_r2n2_poses_transport_the_prediction_between_views(shared_data):
    """predict.obj (Pixel2Mesh++'s output, in view 1's OpenGL camera frame) carried into the
    other views with our relative poses must land inside their alpha masks."""
    folder = shared_data / "samples" / "r2n2_renderings"
    ds = real.R2N2Renderings(folder)
    X1 = _obj_verts(folder / "predict.obj") * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)  # GL -> CV
    s0 = ds[0]
    Xobj = (X1 - s0["t"].double()) @ s0["R"].double()
    for k in range(3):
        s = ds[k]
        Xk = Xobj @ s["R"].double().T + s["t"].double()
        assert _fraction_inside(Xk, s["K"].double(), s["mask"][0]) > 0.99
    # a wrong convention (azimuth sign flipped) does not pass
    rows = ds.cameras
    bad = []
    for k in (1, 2):
        R0, t0, _ = real.r2n2_camera(-rows[0, 0], rows[0, 1], 0, rows[0, 3], 137)
        Rk, tk, K = real.r2n2_camera(-rows[k, 0], rows[k, 1], 0, rows[k, 3], 137)
        Xk = ((X1 - t0) @ R0) @ Rk.T + tk
        bad.append(_fraction_inside(Xk, K, ds[k]["mask"][0]))
    assert max(bad) < 0.8, bad


def test_r2n2_bad_files(tmp_path):
    (tmp_path / "rendering_metadata.txt").write_text("1 2 3 4\n")
    with pytest.raises(FileFormatError, match="rendering_metadata.txt:1: expected 5 numbers"):
        real.R2N2Renderings(tmp_path)
    (tmp_path / "rendering_metadata.txt").write_text("1 2 0 0.7 25\n3 4 0 0.7 25\n")
    Image.new("RGBA", (8, 8)).save(tmp_path / "00.png")
    with pytest.raises(FileFormatError, match="2 camera rows but 1 images"):
        real.R2N2Renderings(tmp_path)
    (tmp_path / "rendering_metadata.txt").write_text("1 2 0 0.7 25\n")
    (tmp_path / "00.png").write_bytes(b"not a png")
    with pytest.raises(FileFormatError, match="00.png"):
        real.R2N2Renderings(tmp_path)[0]
    with pytest.raises(FileFormatError, match="does not exist"):
        real.R2N2Renderings(tmp_path / "nope")


def test_nmr_images(shared_data):
    folder = shared_data / "samples" / "nmr_64"
    ds = real.NMRImages(folder, "*_in.png")
    assert len(ds) == 3
    it = ds[0]
    assert it["image"].shape == (3, 64, 64) and it["mask"].shape == (1, 64, 64)
    assert it["has"] == frozenset({"image", "mask"}) and "R" not in it
    alpha = np.asarray(Image.open(ds.files[0]))[..., 3]
    np.testing.assert_array_equal(it["mask"][0].numpy() > 0.5, alpha > 0)
    with pytest.raises(FileFormatError, match="alpha"):
        real.NMRImages(folder, "*_out.png")[0]  # RGB renders have no alpha


# ----------------------------------------------------------------------------- PASCAL3D+


def _matlab_project(x3d: np.ndarray, vp: dict) -> np.ndarray:
    """PASCAL3D+'s project_3d.m, transcribed (1-based MATLAB pixel coordinates)."""
    a, e, theta = (math.radians(vp[k]) for k in ("azimuth", "elevation", "theta"))
    d, f, M = vp["distance"], vp["focal"], vp["viewport"]
    C = np.array([d * math.cos(e) * math.sin(a), -d * math.cos(e) * math.cos(a), d * math.sin(e)])
    a, e = -a, -(math.pi / 2 - e)
    Rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, math.cos(e), -math.sin(e)], [0, math.sin(e), math.cos(e)]])
    R = Rx @ Rz
    P = np.array([[M * f, 0, 0], [0, M * f, 0], [0, 0, -1]]) @ np.hstack([R, -R @ C[:, None]])
    x = P @ np.vstack([x3d.T, np.ones(len(x3d))])
    x = x[:2] / x[2]
    R2 = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    x = (R2 @ x).T
    x[:, 1] = -x[:, 1]
    return x + np.array([vp["px"], vp["py"]])


def _pascal_fixture(root: Path) -> dict:
    from scipy.io import savemat

    vp = {
        "azimuth_coarse": 30.0,
        "azimuth": 33.5,
        "elevation_coarse": 10.0,
        "elevation": 12.25,
        "distance": 5.5,
        "focal": 1.0,
        "px": 250.0,
        "py": 180.0,
        "theta": 7.0,
        "error": 0.0,
        "interval_azimuth": 0.0,
        "interval_elevation": 0.0,
        "num_anchor": 10.0,
        "viewport": 3000.0,
    }
    dt = [
        (n, "O")
        for n in (
            "class",
            "view",
            "bbox",
            "bndbox",
            "orglabel",
            "difficult",
            "truncated",
            "occluded",
            "viewpoint",
            "cad_index",
            "anchors",
        )
    ]
    objs = np.zeros((1, 3), dtype=dt)
    rows = [
        ("car", [48.0, 20.0, 400.0, 300.0], vp, 1, 0, 1),
        ("person", [1.0, 1.0, 10.0, 10.0], np.zeros((0, 0)), np.zeros((0, 0)), 0, 0),  # no viewpoint
        ("car", [5.0, 6.0, 60.0, 70.0], {**vp, "distance": 0.0}, 2, 1, 0),
    ]  # coarse only
    for k, (cls, bbox, v, cad, tr, occ) in enumerate(rows):
        objs[0, k] = (cls, "Frontal", np.array(bbox), {}, cls, 0, tr, occ, v, cad, {})
    record = {
        "filename": "2008_000027.jpg",
        "folder": "VOC2012",
        "source": {},
        "size": {"width": 486.0, "height": 500.0, "depth": 3.0},
        "segmented": 0,
        "imgname": "",
        "imgsize": np.array([486.0, 500.0, 3.0]),
        "database": "",
        "objects": objs,
    }
    ann = root / "Annotations" / "car_pascal"
    ann.mkdir(parents=True)
    savemat(ann / "2008_000027.mat", {"record": record})
    img = root / "Images" / "car_pascal"
    img.mkdir(parents=True)
    Image.new("RGB", (486, 500), (10, 20, 30)).save(img / "2008_000027.jpg")
    return vp


def test_pascal3d_record_parsing_and_pose(tmp_path):
    vp = _pascal_fixture(tmp_path)
    rec = real.read_pascal3d_record(tmp_path / "Annotations" / "car_pascal" / "2008_000027.mat")
    assert rec["filename"] == "2008_000027.jpg" and len(rec["objects"]) == 3
    assert rec["objects"][1]["viewpoint"] is None and rec["objects"][0]["cad_index"] == 1
    ds = real.Pascal3D(tmp_path)
    assert len(ds) == 2  # the person has no viewpoint and is not a car
    it = ds[0]
    assert it["image"].shape == (3, 500, 486) and it["category_name"] == "car" and it["model_id"] == "01"
    torch.testing.assert_close(it["bbox"], torch.tensor([47.0, 19.0, 400.0, 300.0]))
    assert "t" not in it and "t_native" in it and "mask" not in it["has"] and it["occluded"]
    # our pose and K reproduce PASCAL3D+'s own projection of native (Z-up) points
    from poseshape.geometry.conventions import source_rotation

    pts = np.random.default_rng(0).uniform(-1, 1, size=(20, 3))
    ref = _matlab_project(pts, vp) - 0.5  # MATLAB 1-based pixel centres -> ours (+0.5 from 0)
    q = torch.from_numpy(pts @ source_rotation("pascal3d").T)
    X = q @ it["R"].double().T + it["t_native"].double()
    uv = X @ it["K"].double().T
    np.testing.assert_allclose((uv[:, :2] / uv[:, 2:]).numpy(), ref, atol=1e-3)
    coarse = ds[1]
    assert "R" not in coarse and "viewpoint" not in coarse and coarse["viewpoint_angles"].shape == (3,)


def test_pascal3d_pose_in_the_normalised_cad_frame(tmp_path, shared_data):
    from poseshape.shapes.meshes import load_mesh

    vp = _pascal_fixture(tmp_path)
    it = real.Pascal3D(tmp_path, cad_root=shared_data / "pascal3d_cad", load_images=False)[0]
    assert "t" in it and "image" not in it
    native = load_mesh(shared_data / "pascal3d_cad" / "CAD" / "car" / "01.off")
    normed = load_mesh(shared_data / "pascal3d_cad" / "CAD" / "car" / "01.off", source="pascal3d", normalize=True)
    ref = _matlab_project(native.verts.double().numpy()[::50], vp) - 0.5
    X = normed.verts.double()[::50] @ it["R"].double().T + it["t"].double()
    uv = X @ it["K"].double().T
    np.testing.assert_allclose((uv[:, :2] / uv[:, 2:]).numpy(), ref, atol=1e-2)


def test_pascal3d_bad_files(tmp_path):
    with pytest.raises(FileFormatError, match="Annotations"):
        real.Pascal3D(tmp_path)
    bad = tmp_path / "x.mat"
    bad.write_bytes(b"MATLAB garbage")
    with pytest.raises(FileFormatError, match="x.mat"):
        real.read_pascal3d_record(bad)
    from scipy.io import savemat

    savemat(tmp_path / "y.mat", {"foo": 1})
    with pytest.raises(FileFormatError, match="no 'record'"):
        real.read_pascal3d_record(tmp_path / "y.mat")


# ----------------------------------------------------------------------------- Pix3D


def _pix3d_fixture(root: Path, rot=None) -> dict:
    (root / "img" / "chair").mkdir(parents=True)
    (root / "mask" / "chair").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 100, 50)).save(root / "img" / "chair" / "0001.png")
    m = np.zeros((30, 40), np.uint8)
    m[5:20, 10:30] = 255
    Image.fromarray(m).save(root / "mask" / "chair" / "0001.png")
    c, s = math.cos(0.3), math.sin(0.3)
    e = {
        "img": "img/chair/0001.png",
        "mask": "mask/chair/0001.png",
        "model": "model/chair/IKEA_X/model.obj",
        "category": "chair",
        "img_size": [40, 30],
        "focal_length": 35.0,
        "bbox": [10, 5, 30, 20],
        "rot_mat": rot if rot is not None else [[c, 0, s], [0, 1, 0], [-s, 0, c]],
        "trans_mat": [0.1, -0.2, 1.5],
        "truncated": False,
        "occluded": True,
        "slightly_occluded": False,
        "inplane_rotation": 0.0,
        "cam_position": [0, 0, 0],
        "voxel": "model/chair/IKEA_X/voxel.mat",
    }
    (root / "pix3d.json").write_text(json.dumps([e]))
    return e


def test_pix3d(tmp_path):
    e = _pix3d_fixture(tmp_path)
    ds = real.Pix3D(tmp_path)
    it = ds[0]
    assert it["image"].shape == (3, 30, 40) and it["mask"].sum() == 15 * 20
    f = 35.0 * 40 / 32
    torch.testing.assert_close(it["K"], torch.tensor([[f, 0, 20.0], [0, f, 15.0], [0, 0, 1.0]]))
    flip = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(it["R"].numpy(), flip @ np.array(e["rot_mat"]), atol=1e-6)
    np.testing.assert_allclose(it["t"].numpy(), flip @ np.array(e["trans_mat"]), atol=1e-6)
    assert it["frame"] == "native" and it["occluded"] and it["model_id"] == e["model"]
    assert len(real.Pix3D(tmp_path, categories=["sofa"])) == 0


def test_pix3d_validation(tmp_path):
    _pix3d_fixture(tmp_path, rot=[[2, 0, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(FileFormatError, match="not a rotation"):
        real.Pix3D(tmp_path)
    (tmp_path / "pix3d.json").write_text(json.dumps([{"img": "a"}]))
    with pytest.raises(FileFormatError, match="lacks"):
        real.Pix3D(tmp_path)
    (tmp_path / "pix3d.json").write_text("{broken")
    with pytest.raises(FileFormatError, match="pix3d.json"):
        real.Pix3D(tmp_path)


# ----------------------------------------------------------------------------- COCO


def test_polygon_rasterisation_by_hand():
    # square with corners at pixel boundaries 1 and 4 covers pixel centres 1.5, 2.5, 3.5
    m = real.polygons_to_mask([[1, 1, 4, 1, 4, 4, 1, 4]], 6, 7)
    want = np.zeros((6, 7), bool)
    want[1:4, 1:4] = True
    np.testing.assert_array_equal(m, want)
    # a right triangle: centres strictly inside x + y < 6 (the hypotenuse is an exit edge)
    m = real.polygons_to_mask([[0, 0, 6, 0, 0, 6]], 6, 6)
    ii, jj = np.mgrid[0:6, 0:6]
    np.testing.assert_array_equal(m, (ii + 0.5) + (jj + 0.5) < 6)
    # two polygons (OR) and a concave one (even-odd): a U shape
    u = real.polygons_to_mask([[0, 0, 3, 0, 3, 3, 2, 3, 2, 1, 1, 1, 1, 3, 0, 3]], 3, 3)
    np.testing.assert_array_equal(u, np.array([[1, 1, 1], [1, 0, 1], [1, 0, 1]], bool))
    with pytest.raises(ValueError):
        real.polygons_to_mask([[0, 0, 1]], 3, 3)


def test_rle_decoding_by_hand():
    # 3x2 image, column-major runs: 1 background, 2 foreground, 3 background
    m = real.rle_decode({"size": [3, 2], "counts": [1, 2, 3]})
    np.testing.assert_array_equal(m, np.array([[0, 0], [1, 0], [1, 0]], bool))
    with pytest.raises(ValueError, match="sum"):
        real.rle_decode({"size": [3, 2], "counts": [1, 2]})


def test_rle_against_pycocotools():
    mask_util = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = rng.uniform(size=(17, 23)) < 0.3
        m[3:9, 4:15] = True
        enc = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        np.testing.assert_array_equal(real.rle_decode(enc), m)
        np.testing.assert_array_equal(real.rle_decode({"size": enc["size"], "counts": enc["counts"].decode()}), m)
    poly = [[2.3, 1.7, 15.2, 3.1, 12.8, 14.6, 4.1, 11.0]]
    ref = mask_util.decode(mask_util.merge(mask_util.frPyObjects(poly, 17, 23))).astype(bool)
    ours = real.polygons_to_mask(poly, 17, 23)
    assert (ours & ref).sum() / (ours | ref).sum() > 0.9


def test_coco_masks(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (7, 6)).save(tmp_path / "imgs" / "a.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 6, "width": 7}],
        "categories": [{"id": 3, "name": "car"}, {"id": 5, "name": "chair"}],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 3,
                "segmentation": [[1, 1, 4, 1, 4, 4, 1, 4]],
                "area": 9,
                "bbox": [1, 1, 3, 3],
                "iscrowd": 0,
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 5,
                "segmentation": {"size": [6, 7], "counts": [6, 3, 33]},
                "area": 3,
                "bbox": [1, 0, 1, 3],
                "iscrowd": 1,
            },
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = real.CocoMasks(tmp_path / "ann.json", tmp_path / "imgs")
    assert len(ds) == 1  # crowd dropped
    it = ds[0]
    assert it["mask"].sum() == 9 and it["category_name"] == "car" and it["image"].shape == (3, 6, 7)
    torch.testing.assert_close(it["bbox"], torch.tensor([1.0, 1.0, 4.0, 4.0]))
    crowd = real.CocoMasks(tmp_path / "ann.json", include_crowd=True, categories=["chair"])[0]
    assert crowd["mask"][0, 0:3, 1].sum() == 3 and crowd["mask"].sum() == 3 and "image" not in crowd
    data["annotations"][0]["segmentation"] = {"size": [6, 7], "counts": [1, 2]}
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(FileFormatError, match="annotation 10"):
        real.CocoMasks(tmp_path / "bad.json")[0]
