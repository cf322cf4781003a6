"""Tests of the engine's predict path (prediction, predictor, inputs, output): Prediction, predictors from checkpoints, input files, crops,
and the files written for a prediction (checked against an independent re-projection).

The real ``reproject`` model is not needed: :class:`OraclePredictor` knows the true shape and
rotation of a rendered procedural car and only registers its scale and translation on the
crop it is given, so every misalignment in the product layer (crop box, uncrop, mesh units,
projection formulas) shows up as a low reprojection IoU.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import helpers_predict as hp
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from poseshape.core.errors import CheckpointError, FileFormatError, PoseshapeError, ShapeError
from poseshape.engine.checkpoint import save_checkpoint
from poseshape.engine.inputs import crop_to_square, read_image, read_mask, uncrop
from poseshape.engine.output import FILE_NAMES, write_prediction
from poseshape.engine.pose_record import read_pose
from poseshape.engine.prediction import Prediction
from poseshape.engine.predictor import Predictor, default_checkpoint, load_predictor
from poseshape.engine.registry import MethodSpec, register_method
from poseshape.geometry.camera import Camera
from poseshape.methods.reproject.predictor import posed_frame_camera
from poseshape.shapes.meshes import Mesh

OracleConfig, OraclePredictor, make_scene, mesh_reprojection_iou, oracle_build = (
    hp.OracleConfig,
    hp.OraclePredictor,
    hp.make_scene,
    hp.mesh_reprojection_iou,
    hp.oracle_build,
)
oracle_checkpoint = hp.oracle_checkpoint  # fixtures


# ============================================================================ Prediction
def _pred(B=1, Q=6, P=8, h=8, E=1.5):
    return Prediction(
        R=torch.eye(3).expand(B, 3, 3).clone(),
        t=torch.zeros(B, 3),
        camera=posed_frame_camera(B, 64, E),
        voxels=torch.rand(B, 1, Q, Q, Q),
        posed_voxels=torch.rand(B, 1, P, P, P),
        silhouette=torch.rand(B, 1, h, h),
        extras={"pose": torch.zeros(B, 5), "style": torch.zeros(B, 200), "frame_extent": E},
    )


def test_prediction_validates_shapes():
    p = _pred(B=2)
    assert len(p) == 2 and p.shape_kinds == ("voxels",) and p.camera.kind == "weak_perspective"
    with pytest.raises(ShapeError, match="Prediction.posed_voxels"):
        p.replace(posed_voxels=p.posed_voxels[:, 0])
    with pytest.raises(ShapeError, match="Prediction.voxels"):
        p.replace(voxels=p.voxels[:1])
    with pytest.raises(ShapeError, match="Prediction.R"):
        p.replace(R=p.R[:, :2])
    with pytest.raises(ShapeError, match="meshes and/or voxels"):
        p.replace(voxels=None)
    with pytest.raises(ShapeError, match="cameras"):
        p.replace(camera=posed_frame_camera(3, 64, 1.5))
    with pytest.raises(ShapeError, match="Prediction.t"):
        p.replace(t=torch.full((2, 3), float("nan")))
    with pytest.raises(ShapeError, match="model_id"):
        p.replace(model_id=["a"])
    with pytest.raises(IndexError):
        p.canonical_mesh(2)


def test_prediction_meshes_are_canonical_and_posed_by_the_pose():
    # A box of voxels x in [2, 5), y in [1, 7), z in [3, 4) of a 10^3 canonical grid over the
    # unit cube: the 0.5 iso-surface of a binary grid lies on the voxel faces.
    Q = 10
    vox = torch.zeros(1, 1, Q, Q, Q)
    vox[0, 0, 3:4, 1:7, 2:5] = 1.0
    R = torch.tensor(Rotation.from_rotvec([0.3, -0.5, 0.2]).as_matrix(), dtype=torch.float32)[None]
    t = torch.tensor([[0.1, -0.2, 3.0]])
    p = Prediction(R=R, t=t, camera=Camera.from_fov(math.radians(40), 64), voxels=vox)
    m = p.canonical_mesh(0)
    lo, hi = m.verts.amin(0), m.verts.amax(0)
    assert torch.allclose(lo, torch.tensor([2.0, 1.0, 3.0]) / Q - 0.5, atol=1e-5)
    assert torch.allclose(hi, torch.tensor([5.0, 7.0, 4.0]) / Q - 0.5, atol=1e-5)
    posed = p.posed_mesh(0)
    assert torch.allclose(posed.verts, m.verts @ R[0].T + t[0], atol=1e-6)
    # a method's own mesh is kept as it is (not re-meshed from voxels)
    tet = Mesh(
        torch.tensor([[0, 0, 0], [0.4, 0, 0], [0, 0.4, 0], [0, 0, 0.4]]),
        torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]),
    )
    q = p.replace(meshes=[tet])
    assert q.shape_kinds == ("mesh", "voxels") and torch.equal(q.canonical_mesh(0).faces, tet.faces)
    assert q.mesh.num_faces == 4
    # the exact silhouette is the camera's projection of the posed mesh (brute force: every
    # pixel centre inside a projected face)
    sil = q.render_silhouette(0)[0]
    uv = q.camera.project(posed_tet := (tet.verts @ R[0].T + t[0])[None])[0]
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    inside = torch.zeros(64, 64, dtype=torch.bool)
    for f in tet.faces:
        a, b, c = uv[f]

        def side(p0, p1):
            return (p1[0] - p0[0]) * (ys - p0[1]) - (p1[1] - p0[1]) * (xs - p0[0])

        s1, s2, s3 = side(a, b), side(b, c), side(c, a)
        inside |= ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))
    assert posed_tet.shape == (1, 4, 3)
    assert (sil.bool() != inside).sum() <= 2 and inside.sum() > 20


def test_prediction_to_and_item():
    p = _pred(B=3).to("cpu")
    assert p.extras["pose"].device.type == "cpu" and p.posed_voxels.device.type == "cpu"
    one = p.item(2)
    assert len(one) == 1 and one.extras["style"].shape == (1, 200) and one.extras["frame_extent"] == 1.5
    assert torch.equal(one.camera.K, p.camera.K[2:3])


def test_predictor_is_abstract():
    with pytest.raises(TypeError):
        Predictor()


# ============================================================================ checkpoints
def test_default_checkpoint_path():
    import poseshape

    p = default_checkpoint("reproject")
    assert p == Path(poseshape.__file__).resolve().parent / "assets" / "reproject.pt"
    with pytest.raises(PoseshapeError, match="method name"):
        default_checkpoint("../evil")


def test_load_predictor_from_checkpoint(oracle_checkpoint):
    pr = load_predictor(oracle_checkpoint, device="cpu")
    assert isinstance(pr, OraclePredictor) and pr.method == "t_oracle" and pr.image_size == 64
    pr = load_predictor(oracle_checkpoint, method="t_oracle", device="cpu")
    assert pr.config == OracleConfig()


def test_load_predictor_refuses_other_method(oracle_checkpoint):
    with pytest.raises(CheckpointError, match=r"for method 't_oracle', expected 'reproject'"):
        load_predictor(oracle_checkpoint, method="reproject", device="cpu")


def test_load_predictor_missing_files(tmp_path, clean_registry):
    with pytest.raises(CheckpointError, match="not found"):
        load_predictor(tmp_path / "nope.pt", device="cpu")
    register_method(
        MethodSpec(
            name="t_nodefault", config_cls=OracleConfig, build=oracle_build, stages=[], predictor=OraclePredictor
        )
    )
    with pytest.raises(CheckpointError) as e:
        load_predictor(method="t_nodefault", device="cpu")
    msg = str(e.value)
    assert "no default model" in msg and "t_nodefault.pt" in msg and "poseshape train t_nodefault" in msg
    with pytest.raises(PoseshapeError, match="give a checkpoint"):
        load_predictor()
    with pytest.raises(PoseshapeError, match=r"unknown method 'nope'; the methods are .*t_nodefault") as e:
        load_predictor(method="nope", device="cpu")
    assert not isinstance(e.value, CheckpointError) and "poseshape train" not in str(e.value)
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_predictor(bad, device="cpu")


def test_load_predictor_method_without_predictor(tmp_path, clean_registry):
    register_method(MethodSpec(name="t_nopred", config_cls=OracleConfig, build=oracle_build, stages=[]))
    ck = save_checkpoint(tmp_path / "x.pt", method="t_nopred", config=OracleConfig(), models=oracle_build(None))
    with pytest.raises(PoseshapeError, match="registers no predictor"):
        load_predictor(ck, device="cpu")


# ============================================================================ input files
def _save(arr, path):
    Image.fromarray(arr).save(path)  # bool -> "1", (H, W, 2) -> "LA", uint16 -> "I;16"
    return path


def test_read_image_rgb_grey_palette_16bit(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    img, alpha = read_image(_save(rgb, tmp_path / "rgb.png"))
    assert img.shape == (3, 13, 17) and img.dtype == torch.float32 and alpha is None
    assert torch.allclose(img, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255, atol=1e-6)

    grey = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    img, alpha = read_image(_save(grey, tmp_path / "grey.png"))
    assert img.shape == (3, 9, 11) and alpha is None
    for c in range(3):
        assert torch.allclose(img[c], torch.from_numpy(grey).float() / 255, atol=1e-6)

    pal = Image.fromarray(rgb).quantize(8)
    pal.save(tmp_path / "pal.png")
    img, _ = read_image(tmp_path / "pal.png")
    want = np.asarray(pal.convert("RGB")).transpose(2, 0, 1) / 255.0
    assert np.allclose(img.numpy(), want, atol=1e-6)

    g16 = rng.integers(0, 65536, (7, 5), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    img, _ = read_image(tmp_path / "g16.png")
    assert np.allclose(img[1].numpy(), g16 / 65535.0, atol=1e-6)

    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    img, _ = read_image(tmp_path / "rgb.jpg")
    want = np.asarray(Image.open(tmp_path / "rgb.jpg").convert("RGB")).transpose(2, 0, 1) / 255.0
    assert img.shape == (3, 13, 17) and np.allclose(img.numpy(), want, atol=1e-6)


def test_read_image_rgba_composites_on_white_and_returns_alpha(tmp_path):
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[2:6, 3:9, 3] = 255  # opaque object
    rgba[6, 3:9, 3] = 100  # < half opaque: outside the mask
    img, alpha = read_image(_save(rgba, tmp_path / "a.png"))
    assert alpha.shape == (1, 10, 12)
    want = np.zeros((10, 12), np.float32)
    want[2:6, 3:9] = 1
    assert np.array_equal(alpha[0].numpy(), want)
    assert torch.allclose(img[:, 0, 0], torch.ones(3))  # transparent -> white
    assert torch.allclose(img[:, 3, 4], torch.tensor([200 / 255, 0, 0]))
    a = 100 / 255
    assert torch.allclose(img[:, 6, 4], torch.tensor([200 / 255 * a + 1 - a, 1 - a, 1 - a]), atol=1e-6)
    # grey + alpha
    la = np.stack([np.full((4, 5), 50, np.uint8), np.full((4, 5), 255, np.uint8)], -1)
    la[0, 0, 1] = 0
    img, alpha = read_image(_save(la, tmp_path / "la.png"))
    assert alpha is not None and alpha[0, 0, 0] == 0 and alpha.sum() == 19
    # fully opaque alpha carries no mask
    rgba[..., 3] = 255
    assert read_image(_save(rgba, tmp_path / "opaque.png"))[1] is None
    rgba[..., 3] = 0
    with pytest.raises(PoseshapeError, match="fully transparent"):
        read_image(_save(rgba, tmp_path / "clear.png"))


def test_read_image_bad_files(tmp_path):
    with pytest.raises(PoseshapeError, match="image file not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("this is not an image")
    with pytest.raises(FileFormatError, match=r"notes\.png: cannot read the image"):
        read_image(tmp_path / "notes.png")
    good = _save(np.zeros((64, 64, 3), np.uint8) + 7, tmp_path / "good.png")
    data = good.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"trunc\.png: corrupt or truncated"):
        read_image(tmp_path / "trunc.png")
    broken = bytearray(data)
    i = data.index(b"IDAT") + 8
    broken[i : i + 8] = b"\x00" * 8
    (tmp_path / "broken.png").write_bytes(bytes(broken))
    with pytest.raises(FileFormatError, match=r"broken\.png: corrupt or truncated"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(PoseshapeError, match="not a file"):
        read_image(tmp_path)


def test_read_mask_modes(tmp_path):
    want = np.zeros((9, 14), bool)
    want[2:7, 4:12] = True
    u8 = want.astype(np.uint8) * 255
    cases = {
        "l.png": u8,
        "labels01.png": want.astype(np.uint8),  # label map with values 0 / 1
        "rgb.png": np.repeat(u8[..., None], 3, -1),
        "bw.png": want,
        "alpha.png": np.concatenate([np.zeros((9, 14, 3), np.uint8), u8[..., None]], -1),
        "m16.png": want.astype(np.uint16) * 65535,
    }
    for name, arr in cases.items():
        _save(arr, tmp_path / name)
        m = read_mask(tmp_path / name, (9, 14))
        assert m.shape == (1, 9, 14) and m.dtype == torch.float32, name
        assert np.array_equal(m[0].numpy().astype(bool), want), name
    idx = want.astype(np.uint8) * 3  # palette indices: 0 background, 3 object, 255 void
    idx[0, :] = 255
    pal = Image.frombytes("P", (14, 9), idx.tobytes())
    pal.putpalette([v for k in range(256) for v in (k, 255 - k, 0)])
    pal.save(tmp_path / "voc.png")
    assert Image.open(tmp_path / "voc.png").mode == "P"
    assert np.array_equal(read_mask(tmp_path / "voc.png")[0].numpy().astype(bool), idx == 3)


def test_read_mask_bad(tmp_path):
    u8 = np.zeros((9, 14), np.uint8)
    _save(u8, tmp_path / "empty.png")
    with pytest.raises(PoseshapeError, match=r"empty\.png: the mask is empty"):
        read_mask(tmp_path / "empty.png", (9, 14))
    u8[1, 1] = 255
    _save(u8, tmp_path / "m.png")
    with pytest.raises(ShapeError, match=r"mask is 14x9 pixels but the image img\.png is 15x9"):
        read_mask(tmp_path / "m.png", (9, 15), image_path="img.png")
    with pytest.raises(PoseshapeError, match="mask file not found"):
        read_mask(tmp_path / "none.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(FileFormatError, match="junk.png"):
        read_mask(tmp_path / "junk.png")


# ============================================================================ crops
def _ramp_image(H, W):
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    return torch.stack([xx / W, yy / H, (xx + yy) % 7 / 7]).float()


def test_crop_with_mask_exact_when_no_resize():
    H, W = 37, 53
    img = _ramp_image(H, W)
    mask = torch.zeros(1, H, W)
    mask[0, 10:30, 28:53] = 1  # 20 x 25 box at the right edge -> side ceil(25 * 1.2) = 30
    crop, cmask, box = crop_to_square(img, mask, size=30, margin=0.1)
    x0, y0, side = box
    assert side == 30 and (x0, y0) == (26, 5)  # centred: (28 + 53) / 2 - 15 = 25.5 -> 26
    assert torch.equal(crop[:, :, : W - x0], img[:, y0 : y0 + 30, x0:W])
    assert torch.all(crop[:, :, W - x0 :] == 1.0)  # outside the image: white
    assert torch.equal(cmask[:, :, : W - x0], mask[:, y0 : y0 + 30, x0:W])
    # round trip: uncrop pastes it back exactly inside the square, 0 elsewhere
    back = uncrop(crop, box, (H, W))
    assert torch.allclose(back[:, y0 : y0 + 30, x0:], img[:, y0 : y0 + 30, x0:], atol=1e-5)
    assert torch.all(back[:, :y0] == 0) and torch.all(back[:, :, :x0] == 0)


@pytest.mark.parametrize("hw", [(37, 50), (50, 37), (33, 33), (1, 9)])
def test_crop_without_mask_pads_whole_image(hw):
    H, W = hw
    img = _ramp_image(H, W)
    crop, cmask, box = crop_to_square(img, None, size=max(H, W))
    x0, y0, side = box
    assert cmask is None and side == max(H, W)
    assert (x0, y0) == ((W - side) // 2, (H - side) // 2)
    assert torch.equal(crop[:, -y0 : -y0 + H, -x0 : -x0 + W], img)
    pad = torch.ones_like(crop, dtype=torch.bool)
    pad[:, -y0 : -y0 + H, -x0 : -x0 + W] = False
    assert torch.all(crop[pad] == 1.0)
    assert torch.allclose(uncrop(crop, box, hw), img, atol=1e-5)


def test_crop_resize_geometry_and_round_trip():
    # An image whose value is the x coordinate of the pixel centre: after crop + resize, crop
    # pixel j must hold x0 + (j + .5) side / S (linear functions survive bilinear resampling).
    H, W = 91, 127
    xx = (torch.arange(W) + 0.5).expand(H, W)
    yy = (torch.arange(H)[:, None] + 0.5).expand(H, W)
    img = torch.stack([xx / W, yy / H, torch.zeros(H, W)])
    mask = torch.zeros(1, H, W)
    mask[0, 20:71, 30:101] = 1
    S = 32
    crop, cmask, (x0, y0, side) = crop_to_square(img, mask, size=S, margin=0.05)
    assert side == math.ceil(71 * 1.1) and cmask.shape == (1, S, S)
    j = torch.arange(S) + 0.5
    inside = slice(2, S - 2)
    assert torch.allclose(crop[0, S // 2, inside] * W, (x0 + j * side / S)[inside], atol=0.05)
    assert torch.allclose(crop[1, inside, S // 2] * H, (y0 + j * side / S)[inside], atol=0.05)
    # uncrop of a crop-space map of the crop's own x coordinate -> the input's x coordinate
    u = ((torch.arange(S) + 0.5) / S).expand(S, S)[None]
    back = uncrop(u, (x0, y0, side), (H, W))[0]
    cols = slice(x0 + 3, x0 + side - 3)
    assert torch.allclose(back[H // 2, cols], (xx[H // 2, cols] - x0) / side, atol=1e-4)
    # the resized mask covers the box region it came from
    assert cmask.sum() > 0.5 * S * S


def test_crop_and_uncrop_bad_inputs():
    img = torch.rand(3, 10, 12)
    with pytest.raises(PoseshapeError, match="empty"):
        crop_to_square(img, torch.zeros(1, 10, 12), 8)
    with pytest.raises(ShapeError, match=r"mask: expected size \(10, 12\)"):
        crop_to_square(img, torch.ones(1, 10, 11), 8)
    with pytest.raises(ShapeError, match="image: expected shape"):
        crop_to_square(torch.rand(10, 12), None, 8)
    with pytest.raises(ShapeError, match="size"):
        crop_to_square(img, None, 0)
    with pytest.raises(ShapeError, match="margin"):
        crop_to_square(img, None, 8, margin=-0.1)
    with pytest.raises(ShapeError, match="box"):
        uncrop(torch.rand(1, 4, 4), (0, 0, 0), (5, 5))
    with pytest.raises(ShapeError, match="x: expected"):
        uncrop(torch.rand(4, 4), (0, 0, 4), (5, 5))


def test_crop_box_outside_image_pads_mask_with_zero():
    img = torch.rand(3, 20, 20)
    mask = torch.zeros(1, 20, 20)
    mask[0, 0:8, 0:6] = 1  # touches the top-left corner
    crop, cmask, (x0, y0, _) = crop_to_square(img, mask, size=side_of(8), margin=0.25)
    assert x0 < 0 and y0 < 0
    assert torch.all(cmask[:, :-y0] == 0) and torch.all(crop[:, :-y0] == 1)


def side_of(n, margin=0.25):
    return math.ceil(n * (1 + 2 * margin))


# ============================================================================ outputs
@pytest.fixture(scope="module")
def scene():
    return make_scene(OracleConfig(), hw=(181, 243), scale=90.0, centre=(130.0, 95.0))


def test_write_prediction_files_line_up_with_the_input(tmp_path, scene):
    import trimesh

    from poseshape.geometry.camera import viewpoint_to_pose

    pr = OraclePredictor(OracleConfig())
    pred = pr.reconstruct(scene["image"], scene["mask"], refine=False)  # the oracle's own camera
    files = write_prediction(pred, 0, tmp_path / "out", method="t_oracle", info={"image": "scene.png"}, views_size=96)
    assert set(files) == set(FILE_NAMES) and all(p.is_file() for p in files.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FILE_NAMES.values())

    pose = json.loads(files["pose"].read_text())
    assert pose["schema"] == "poseshape.pose/2"
    assert pose["method"] == "t_oracle" and pose["image"] == "scene.png"
    box = pred.extras["box"]
    assert pose["box"] == dict(zip(("x0", "y0", "side"), box))
    assert pose["frame_extent"] == pytest.approx(pred.extras["frame_extent"])
    R = np.asarray(pose["R"])
    assert np.allclose(R, pred.R[0].numpy(), atol=1e-6)
    assert np.allclose(Rotation.from_rotvec(pose["axis_angle"]).as_matrix(), R, atol=1e-5)
    vp = pose["viewpoint"]
    Rv, _ = viewpoint_to_pose(vp["azimuth"], vp["elevation"], vp["theta"], 1.0)
    assert np.allclose(Rv.numpy(), R, atol=1e-5)
    assert vp["azimuth_deg"] == pytest.approx(math.degrees(vp["azimuth"]))
    # the recorded input-pixel camera matches the one that rendered the scene (90 px/unit, centre)
    assert pose["camera"]["kind"] == "weak_perspective"
    assert pose["camera"]["image_size"] == {"height": 181, "width": 243}
    wp = pose["weak_perspective"]
    assert wp["scale"] == pytest.approx(90.0, rel=0.05) and pose["camera"]["scale"] == wp["scale"]
    assert np.allclose(wp["t2"], [130.0, 95.0], atol=3.0)
    assert pose["mask_iou"] >= 0.85  # 0.91 here; the issue asks for >= 0.7
    # read back through the one reader: the same R, t and camera
    back = read_pose(files["pose"])
    assert torch.allclose(back.R[0], torch.as_tensor(R), atol=1e-12)
    assert torch.allclose(back.camera.K, pred.camera.K.double(), atol=1e-6)

    # the mesh, re-projected with the contract's formulas, covers the input mask, and it is the
    # silhouette that gave the recorded IoU
    iou = mesh_reprojection_iou(files["obj"], pose, scene["mask"])
    assert iou >= 0.85 and iou == pytest.approx(pose["mask_iou"], abs=0.01)
    obj = trimesh.load(files["obj"], force="mesh", process=False)
    glb = trimesh.load(files["glb"], force="mesh", process=False)  # the node transform applied
    assert len(obj.faces) > 100 and len(glb.faces) == len(obj.faces)
    assert np.allclose(np.sort(glb.vertices, 0), np.sort(obj.vertices, 0), atol=1e-5)
    # the GLB keeps the canonical mesh under a node whose matrix is the pose
    sc = trimesh.load(files["glb"], process=False)
    (geom,) = sc.geometry.values()
    assert np.abs(geom.vertices).max() <= 0.5 + 1e-4  # object frame, unit cube
    T, _ = sc.graph.get(sc.graph.nodes_geometry[0])
    assert np.allclose(T[:3, :3], np.diag([1.0, -1.0, -1.0]) @ R, atol=1e-6)

    with np.load(files["voxels"], allow_pickle=False) as z:
        assert z["posed"].shape == (30, 30, 30) and z["aligned"].shape == (30, 30, 30)
        assert np.allclose(z["posed"], pred.posed_voxels[0, 0].numpy())
        assert float(z["frame_extent"]) == pytest.approx(pred.extras["frame_extent"])
        assert np.array_equal(z["box"], np.asarray(box, float)) and str(z["camera_kind"]) == "weak_perspective"

    ov = np.asarray(Image.open(files["overlay"]).convert("RGB"))
    inp = (scene["image"].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert ov.shape == inp.shape
    assert np.array_equal(ov[:20, :20], inp[:20, :20])  # far from the object: untouched
    ys, xs = np.nonzero(scene["mask"][0].numpy())
    cy, cx = int(ys.mean()), int(xs.mean())
    assert np.abs(ov[cy, cx].astype(int) - inp[cy, cx]).sum() > 30  # tinted where the shape is
    views = np.asarray(Image.open(files["views"]).convert("RGB"))
    assert views.shape == (96, 4 * 96, 3) and (views < 200).any()


def test_write_prediction_whole_image_and_batch_item(tmp_path, scene):
    pr = OraclePredictor(OracleConfig())
    p = pr.reconstruct(scene["image"])  # no mask: the whole image
    two = p.replace(
        R=p.R.repeat(2, 1, 1),
        t=p.t.repeat(2, 1),
        camera=Camera.cat([p.camera, p.camera]),
        voxels=torch.cat([torch.zeros_like(p.voxels), p.voxels]),
        posed_voxels=p.posed_voxels.repeat(2, 1, 1, 1, 1),
        image=p.image * 2,
        mask=p.mask * 2,
        extras={},
    )
    files = write_prediction(two, 1, tmp_path / "o", views_size=64)
    pose = json.loads(files["pose"].read_text())
    assert "mask_iou" not in pose and "warnings" not in pose
    assert mesh_reprojection_iou(files["obj"], pose, scene["mask"]) >= 0.75  # 0.83 here
    # item 0 is empty: files are still valid, with a warning
    files = write_prediction(two, 0, tmp_path / "e", views_size=64)
    pose = json.loads(files["pose"].read_text())
    assert "empty" in pose["warnings"][0]


def test_write_prediction_leaves_nothing_half_written(tmp_path, scene, monkeypatch):
    import os

    pr = OraclePredictor(OracleConfig())
    pred = pr.reconstruct(scene["image"], scene["mask"])
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="space"):
        write_prediction(pred, 0, tmp_path / "new", views_size=64)
    assert not (tmp_path / "new").exists()
    # bad arguments fail before anything is written
    monkeypatch.setattr(os, "replace", real)
    with pytest.raises(ShapeError, match="mask"):
        write_prediction(pred, 0, tmp_path / "bad", mask=torch.ones(1, 5, 5))
    assert not (tmp_path / "bad").exists()


def _gltf_pixels(path, H, W):
    """Project the GLB's mesh through its own camera as a glTF viewer does: -> (N, 2) pixels."""
    import struct

    import trimesh

    b = path.read_bytes()
    n = struct.unpack("<I", b[12:16])[0]
    js = json.loads(b[20 : 20 + n])
    (cam,) = js["cameras"]
    yfov, aspect = cam["perspective"]["yfov"], cam["perspective"]["aspectRatio"]
    sc = trimesh.load(path, process=False)
    cam_node = next(nd for nd in js["nodes"] if "camera" in nd)
    C = np.array(cam_node.get("matrix", np.eye(4).ravel().tolist())).reshape(4, 4).T
    if "translation" in cam_node:
        C = np.eye(4)
        C[:3, 3] = cam_node["translation"]
    geom_node = sc.graph.nodes_geometry[0]
    T, gname = sc.graph.get(geom_node)
    V = np.c_[sc.geometry[gname].vertices, np.ones(len(sc.geometry[gname].vertices))] @ T.T
    Vc = V @ np.linalg.inv(C).T  # camera space: looks along -z, y up
    f_y = (H / 2) / np.tan(yfov / 2)
    f_x = (W / 2) / np.tan(np.arctan(np.tan(yfov / 2) * aspect))
    u = W / 2 + f_x * Vc[:, 0] / -Vc[:, 2]
    v = H / 2 - f_y * Vc[:, 1] / -Vc[:, 2]
    return np.stack([u, v], 1), sc.geometry[gname].vertices


@pytest.mark.parametrize("kind", ["pinhole", "weak_perspective"])
def test_glb_camera_shows_the_input_view(tmp_path, kind):
    tet = Mesh(
        torch.tensor([[0, 0, 0], [0.4, 0, 0], [0, 0.4, 0], [0, 0, 0.4]]) - 0.1,
        torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]),
    )
    R = torch.tensor(Rotation.from_rotvec([0.3, -0.5, 0.2]).as_matrix(), dtype=torch.float32)[None]
    H, W = 60, 80
    if kind == "pinhole":
        cam = Camera.pinhole(torch.tensor([[70.0, 0, W / 2], [0, 70.0, H / 2], [0, 0, 1]]), (H, W))
        t = torch.tensor([[0.1, -0.05, 2.5]])
        tol = 1e-3
    else:
        cam = Camera.weak_perspective(torch.tensor([90.0]), torch.tensor([[33.0, 28.0]]), (H, W))
        t = torch.tensor([[0.05, 0.02, 0.0]])
        tol = 0.05 * 90 * 0.6  # the stand-in perspective camera: within 5 % of the object's size
    pred = Prediction(R=R, t=t, camera=cam, meshes=[tet])
    files = write_prediction(pred, 0, tmp_path / "o", views_size=32)
    uv, verts = _gltf_pixels(files["glb"], H, W)
    want = cam.project_object(torch.as_tensor(verts, dtype=torch.float32)[None], R, t)[0].numpy()
    assert np.abs(uv - want).max() < tol
