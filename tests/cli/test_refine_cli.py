"""``poseshape refine`` end to end: files in, refined pose and pictures out, clean failures."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from poseshape.cli.main import main
from poseshape.cli.refine import FILE_NAMES, load_pose_json
from poseshape.core.errors import FileFormatError
from poseshape.engine.refine import hard_silhouettes
from poseshape.geometry.camera import viewpoint_to_pose
from poseshape.geometry.rotations import geodesic_distance
from poseshape.shapes.meshes import save_mesh
from poseshape.shapes.procedural import generate

DEG = math.pi / 180
AZ, EL = 60.0, 20.0  # true viewpoint, degrees


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A procedural car's mask (weak perspective, 150 x 110) and its mesh / voxel files."""
    d = tmp_path_factory.mktemp("refine_in")
    mesh, _ = generate("car", 2)
    save_mesh(mesh, d / "car.obj")
    R, _ = viewpoint_to_pose(torch.tensor([AZ * DEG]), torch.tensor([EL * DEG]), torch.zeros(1), torch.ones(1))
    R = R.double()
    t = torch.tensor([[82.0, 50.0, 0.0]], dtype=torch.float64)
    s = 70.0
    m = hard_silhouettes(mesh.verts.double()[None], mesh.faces, R, t, None, torch.tensor([s]), (110, 150))[0, 0]
    Image.fromarray((m.numpy() * 255).astype(np.uint8)).save(d / "mask.png")
    img = np.full((110, 150, 3), 230, np.uint8)
    img[m.numpy() > 0] = (40, 90, 160)
    Image.fromarray(img).save(d / "photo.png")
    # a reconstruct-style pose.json: the true rotation turned by 25 deg in azimuth, scale 10 % off
    R0, _ = viewpoint_to_pose(torch.tensor([(AZ + 25) * DEG]), torch.tensor([EL * DEG]), torch.zeros(1), torch.ones(1))
    (d / "pose.json").write_text(
        json.dumps({"R": R0[0].tolist(), "weak_perspective": {"scale": s * 1.1, "t2": [86.0, 47.0]}})
    )
    from poseshape.shapes.voxels import voxelize

    vox = voxelize(mesh.to(torch.float64), 32).float().numpy()
    np.savez(d / "posed_voxels.npz", aligned=vox, posed=vox)
    return {"dir": d, "R": R, "t": t, "s": s, "mask": m}


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_refine_from_pose_json_writes_every_file(tmp_path, scene, capsys):
    d = scene["dir"]
    out = tmp_path / "out"
    rc, so, se = _run(
        [
            "refine",
            "--mask",
            str(d / "mask.png"),
            "--mesh",
            str(d / "car.obj"),
            "--pose",
            str(d / "pose.json"),
            "--image",
            str(d / "photo.png"),
            "--starts",
            "4",
            "--set",
            "keep=3",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert rc == 0, se
    assert sorted(p.name for p in out.iterdir()) == sorted(FILE_NAMES.values())
    rec = json.loads((out / "pose.json").read_text())
    assert rec["iou"] > 0.9 and rec["iou"] > rec["iou_before"] + 0.1
    assert sum(v is None for v in rec["start_iou"]) == 1  # --set keep=3: 3 of the 4 starts finish
    err = float(geodesic_distance(torch.tensor(rec["R"], dtype=torch.float64)[None], scene["R"])[0]) / DEG
    assert err < 4, err
    assert rec["weak_perspective"]["scale"] == pytest.approx(scene["s"], rel=0.05)
    assert np.allclose(rec["weak_perspective"]["t2"], scene["t"][0, :2].numpy(), atol=3)
    assert "IoU" in se and str(out / "pose.json") in so
    csv = (out / "loss.csv").read_text().splitlines()
    assert csv[0].startswith("step,loss_chosen,loss_start0") and len(csv) == 1 + 30
    gif = Image.open(out / "refine.gif")
    assert gif.n_frames == 31
    ov = np.asarray(Image.open(out / "overlay.png").convert("RGB"))
    assert ov.shape == (110, 150, 3)
    # the written pose is a valid starting pose, and its silhouette reproduces the mask
    again = load_pose_json(out / "pose.json")
    assert again["scale"] == pytest.approx(rec["weak_perspective"]["scale"])
    mesh, _ = generate("car", 2)
    sil = hard_silhouettes(
        mesh.verts.double()[None],
        mesh.faces,
        again["R"][None],
        again["t"][None],
        None,
        torch.tensor([again["scale"]]),
        (110, 150),
    )[0, 0]
    inter, union = float((sil * scene["mask"]).sum()), float(((sil + scene["mask"]) > 0).sum())
    assert inter / union > 0.9


def test_refine_voxels_and_viewpoint_start(tmp_path, scene, capsys):
    d = scene["dir"]
    out = tmp_path / "vox"
    rc, _, se = _run(
        [
            "refine",
            "--mask",
            str(d / "mask.png"),
            "--voxels",
            str(d / "posed_voxels.npz"),
            "--azimuth",
            str(AZ - 20),
            "--elevation",
            str(EL),
            "--steps",
            "20",
            "--starts",
            "3",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert rc == 0, se
    rec = json.loads((out / "pose.json").read_text())
    assert rec["iou"] > 0.85
    assert float(geodesic_distance(torch.tensor(rec["R"], dtype=torch.float64)[None], scene["R"])[0]) < 6 * DEG
    assert len((out / "loss.csv").read_text().splitlines()) == 21


def test_refine_pinhole_start(tmp_path, scene, capsys):
    d = scene["dir"]
    out = tmp_path / "pin"
    rc, _, se = _run(
        [
            "refine",
            "--mask",
            str(d / "mask.png"),
            "--mesh",
            str(d / "car.obj"),
            "--azimuth",
            str(AZ + 10),
            "--elevation",
            str(EL),
            "--focal",
            "180",
            "--distance",
            "2.5",
            "--steps",
            "20",
            "--starts",
            "2",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert rc == 0, se
    rec = json.loads((out / "pose.json").read_text())
    assert rec["camera"]["kind"] == "pinhole" and rec["schema"] == "poseshape.pose/2" and rec["iou"] > 0.8
    # the one reader reads it back: the same pose and camera
    from poseshape.engine.pose_record import read_pose

    back = read_pose(out / "pose.json")
    assert np.allclose(back.R[0].numpy(), rec["R"]) and np.allclose(back.t[0].numpy(), rec["t"])
    assert np.allclose(back.camera.K[0].numpy(), rec["camera"]["K"]) and back.camera.is_pinhole


def _bad(d, tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "norot.json").write_text(
        json.dumps({"R": [[2, 0, 0], [0, 1, 0], [0, 0, 1]], "weak_perspective": {"scale": 1, "t2": [0, 0]}})
    )
    (tmp_path / "nocam.json").write_text(json.dumps({"R": np.eye(3).tolist()}))
    (tmp_path / "nan.json").write_text(
        '{"R": [[NaN, 0, 0], [0, 1, 0], [0, 0, 1]], "weak_perspective": {"scale": 1, "t2": [0, 0]}}'
    )
    Image.fromarray(np.zeros((110, 150), np.uint8)).save(tmp_path / "empty.png")
    (tmp_path / "v.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "nogrid.npz", other=np.zeros(3))
    (tmp_path / "afile").write_text("x")
    m, mesh, pose = str(d / "mask.png"), str(d / "car.obj"), str(d / "pose.json")
    return {
        "missing mask": (
            ["--mask", str(tmp_path / "no.png"), "--mesh", mesh, "--pose", pose],
            r"no\.png: mask file not found",
        ),
        "missing mesh": (
            ["--mask", m, "--mesh", str(tmp_path / "no.obj"), "--pose", pose],
            r"no\.obj: no such mesh file",
        ),
        "missing pose": (
            ["--mask", m, "--mesh", mesh, "--pose", str(tmp_path / "no.json")],
            r"no\.json: pose file not found",
        ),
        "corrupt pose": (
            ["--mask", m, "--mesh", mesh, "--pose", str(tmp_path / "bad.json")],
            r"bad\.json: not a valid pose JSON",
        ),
        "not rotation": (["--mask", m, "--mesh", mesh, "--pose", str(tmp_path / "norot.json")], r"R is not a rotation"),
        "no camera": (["--mask", m, "--mesh", mesh, "--pose", str(tmp_path / "nocam.json")], r"no camera"),
        "nan pose": (["--mask", m, "--mesh", mesh, "--pose", str(tmp_path / "nan.json")], r"R contains NaN"),
        "no start": (["--mask", m, "--mesh", mesh], r"no starting pose"),
        "both starts": (["--mask", m, "--mesh", mesh, "--pose", pose, "--azimuth", "3"], r"either --pose or --azimuth"),
        "empty mask": (["--mask", str(tmp_path / "empty.png"), "--mesh", mesh, "--pose", pose], r"the mask is empty"),
        "bad voxels": (
            ["--mask", m, "--voxels", str(tmp_path / "v.npz"), "--pose", pose],
            r"v\.npz: cannot read the voxel file",
        ),
        "no grid": (["--mask", m, "--voxels", str(tmp_path / "nogrid.npz"), "--pose", pose], r"no 'aligned'"),
        "bad steps": (["--mask", m, "--mesh", mesh, "--pose", pose, "--steps", "0"], r"RefineConfig\.steps"),
        "bad set": (
            ["--mask", m, "--mesh", mesh, "--pose", pose, "--set", "select_margn=0"],
            r"unknown config key 'select_margn' for RefineConfig",
        ),
        "bad set value": (
            ["--mask", m, "--mesh", mesh, "--pose", pose, "--set", "select_margin=-1"],
            r"RefineConfig\.select_margin",
        ),
        "cannot cover": (
            ["--mask", m, "--mesh", mesh, "--azimuth", "0", "--focal", "5"],
            r"cannot cover the mask|outside",
        ),
        "out is a file": (
            ["--mask", m, "--mesh", mesh, "--pose", pose, "--out-override", str(tmp_path / "afile")],
            r"exists and is not a folder",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing mask",
        "missing mesh",
        "missing pose",
        "corrupt pose",
        "not rotation",
        "no camera",
        "nan pose",
        "no start",
        "both starts",
        "empty mask",
        "bad voxels",
        "no grid",
        "bad steps",
        "bad set",
        "bad set value",
        "cannot cover",
        "out is a file",
    ],
)
def test_refine_bad_inputs_exit_2_and_write_nothing(case, tmp_path, scene, capsys):
    args, pattern = _bad(scene["dir"], tmp_path)[case]
    out = tmp_path / "out"
    if "--out-override" in args:
        k = args.index("--out-override")
        out = tmp_path / args[k + 1].split("/")[-1]
        args = args[:k]
    rc, _, se = _run(["refine", *args, "--out", str(out)], capsys)
    assert rc == 2, se
    assert se.startswith("poseshape refine: error: ")
    assert re.search(pattern, se), se
    if case != "out is a file":
        assert not out.exists()


def test_load_pose_json_pinhole(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"R": np.eye(3).tolist(), "t": [0, 0, 3], "K": [[100, 0, 50], [0, 100, 50], [0, 0, 1]]}))
    rec = load_pose_json(p)
    assert rec["scale"] is None and rec["K"].shape == (3, 3) and rec["t"].tolist() == [0, 0, 3]
    p.write_text(json.dumps({"R": np.eye(3).tolist(), "K": np.eye(3).tolist()}))
    with pytest.raises(FileFormatError, match="needs 't'"):
        load_pose_json(p)


@pytest.mark.parametrize("kind", ["pinhole", "weak_perspective"])
def test_refine_reads_the_pose_json_reconstruct_writes(tmp_path, kind):
    """``poseshape refine --pose`` takes either camera kind from a ``pose.json`` written by the engine."""
    from poseshape.cli.refine import load_pose_json
    from poseshape.engine.output import write_prediction
    from poseshape.engine.prediction import Prediction
    from poseshape.geometry.camera import Camera
    from poseshape.shapes.meshes import Mesh

    tet = Mesh(
        torch.tensor([[0, 0, 0], [0.4, 0, 0], [0, 0.4, 0], [0, 0, 0.4]]) - 0.1,
        torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]),
    )
    R = torch.eye(3)[None]
    if kind == "pinhole":
        cam, t = (
            Camera.pinhole(torch.tensor([[70.0, 0, 40], [0, 70.0, 30], [0, 0, 1]]), (60, 80)),
            torch.tensor([[0.1, 0, 2.5]]),
        )
    else:
        cam, t = (
            Camera.weak_perspective(torch.tensor([90.0]), torch.tensor([[33.0, 28.0]]), (60, 80)),
            torch.tensor([[0.1, 0.2, 0.0]]),
        )
    files = write_prediction(Prediction(R=R, t=t, camera=cam, meshes=[tet]), 0, tmp_path / "o", views_size=32)
    rec = load_pose_json(files["pose"])
    X = torch.tensor([[0.3, -0.2, 0.1]], dtype=torch.float64)
    want = cam.to(dtype=torch.float64).project_object(X[None], R.double(), t.double())[0]
    if kind == "pinhole":
        Xc = X @ rec["R"].T + rec["t"]
        got = (Xc @ rec["K"].T)[:, :2] / Xc[:, 2:]
    else:
        got = rec["scale"] * (X @ rec["R"].T)[:, :2] + rec["t"][:2]
    torch.testing.assert_close(got, want)


def test_refine_records_doubtful_shape_files_as_warnings(tmp_path, scene, capsys):
    """Absurd voxel values (1e30) and a cut OBJ are refined with a warning on stderr and in pose.json;
    NaN voxels are refused before anything is written."""
    d = scene["dir"]
    base = ["refine", "--mask", str(d / "mask.png"), "--azimuth", str(AZ), "--elevation", str(EL), "--steps", "5",
            "--starts", "2"]  # fmt: skip
    vox = np.load(d / "posed_voxels.npz")["aligned"] * 1e30
    np.savez(tmp_path / "huge.npz", aligned=vox)
    rc, _, se = _run(base + ["--voxels", str(tmp_path / "huge.npz"), "--out", str(tmp_path / "a")], capsys)
    assert rc == 0, se
    assert "warning:" in se and "outside the occupancy range" in se, se
    rec = json.loads((tmp_path / "a" / "pose.json").read_text())
    assert len(rec["warnings"]) == 1 and "1e+30" in rec["warnings"][0]
    assert rec["iou"] > 0.5  # clipped to [0, 1] it is the same shape
    text = (d / "car.obj").read_text()
    cut = text[: text.rindex("\nf ") + 6]  # the last face line cut after 'f ' and three characters
    (tmp_path / "cut.obj").write_text(cut)
    rc, _, se = _run(base + ["--mesh", str(tmp_path / "cut.obj"), "--out", str(tmp_path / "b")], capsys)
    assert rc == 0 and "looks truncated" in se, se
    assert "looks truncated" in json.loads((tmp_path / "b" / "pose.json").read_text())["warnings"][0]
    clean = json.loads((tmp_path / "a" / "pose.json").read_text())  # unchanged
    vox[0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", aligned=vox)
    rc, _, se = _run(base + ["--voxels", str(tmp_path / "nan.npz"), "--out", str(tmp_path / "a")], capsys)
    assert rc == 2 and "NaN or inf" in se and "nan.npz" in se, se
    assert json.loads((tmp_path / "a" / "pose.json").read_text()) == clean
