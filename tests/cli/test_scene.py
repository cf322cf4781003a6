"""``poseshape scene`` (paper 003, Fig. 7): one photo, several masks -> one GLB / OBJ of posed medoids.

The checkpoint is ``helpers_predict.refine6dof_run`` (a real refine6dof run trained in seconds);
the photo is two of its 6-DoF renders composited into one image, one mask per object.
"""

from __future__ import annotations

import json
import re

import helpers_predict as hp
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from poseshape.cli.main import main

refine6dof_run, oracle_checkpoint = hp.refine6dof_run, hp.oracle_checkpoint  # fixtures

_GLTF = np.diag([1.0, -1.0, -1.0])  # camera (OpenCV) axes -> glTF axes, as scene.py documents


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


@pytest.fixture
def photo(tmp_path, refine6dof_run):
    """Two renders composited into one 40 x 32 photo (white margin on the right), their masks as files."""
    images, masks = hp.refine6dof_renders(refine6dof_run)
    m = masks.flatten(1)
    # the pair whose second object hides the least of the first one (both stay large)
    best = max(
        ((a, b) for a in range(len(m)) for b in range(len(m)) if a != b),
        key=lambda ab: min(float((m[ab[0]] * (1 - m[ab[1]])).sum()), float(m[ab[1]].sum())),
    )
    a, b = best
    img = torch.ones(3, 32, 40)
    img[:, :, :32] = images[a] * (1 - masks[b]) + images[b] * masks[b]
    ma, mb = torch.zeros(32, 40), torch.zeros(32, 40)
    ma[:, :32] = masks[a][0] * (1 - masks[b][0])
    mb[:, :32] = masks[b][0]
    assert ma.sum() >= 20 and mb.sum() >= 20
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_u8(img)).save(d / "street.png")
    for name, mm in (("car_a.png", ma), ("car_b.png", mb)):
        Image.fromarray((mm.numpy() > 0.5).astype(np.uint8) * 255).save(d / name)
    labels = (ma.numpy() > 0.5) * 3 + (mb.numpy() > 0.5) * 7  # disjoint: a -> 3, b -> 7
    Image.fromarray(labels.astype(np.uint8)).save(d / "labels.png")
    return {
        "dir": d,
        "image": d / "street.png",
        "masks": [d / "car_a.png", d / "car_b.png"],
        "labels": d / "labels.png",
    }


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _nodes(path) -> dict[str, np.ndarray]:
    """``{geometry name: (V, 3) vertices}`` of a scene file."""
    sc = trimesh.load(path, force="scene", process=False)
    return {name: np.asarray(g.vertices, np.float64) for name, g in sc.geometry.items()}


def _placed_medoids(ckpt, objects, flip) -> list[np.ndarray]:
    """Each JSON object's medoid (from the checkpoint's bank) moved by its R, t_cam, then ``flip``."""
    from poseshape.engine.predictor import load_predictor

    bank = load_predictor(ckpt, device="cpu").bank
    out = []
    for o in objects:
        assert bank.name(o["class_index"]) == o["class"]
        V = bank.mesh(o["class_index"]).verts.double().numpy()
        out.append((V @ np.asarray(o["R"]).T + np.asarray(o["t_cam"])) @ flip.T)
    return out


def test_scene_glb_places_each_medoid_by_its_predicted_pose(tmp_path, photo, refine6dof_run, monkeypatch, capsys):
    from poseshape.cli.reconstruct import predictor_square
    from poseshape.engine.inputs import read_image, read_mask
    from poseshape.engine.predictor import load_predictor
    from poseshape.methods.refine6dof.predictor import Refine6DofPredictor

    calls, original = [], Refine6DofPredictor.predict

    def spy(self, images, masks=None):
        calls.append((images.clone(), masks.clone()))
        return original(self, images, masks)

    monkeypatch.setattr(Refine6DofPredictor, "predict", spy)
    ck = refine6dof_run / "last.pt"
    out = tmp_path / "out" / "scene.glb"  # the folder is created
    rc, so, se = _run(
        [
            "scene",
            str(photo["image"]),
            "--mask",
            *map(str, photo["masks"]),
            "--checkpoint",
            str(ck),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        capsys,
    )  # --isolate is the default
    assert rc == 0, se
    assert "warning" not in se
    js = out.with_suffix(".json")
    over = out.with_name("scene_overlay.png")
    assert so.split() == [str(out), str(over), str(js)]
    rec = json.loads(js.read_text())
    assert rec["overlay"] == over.name
    # the overlay: the photo's size, each object's outline in its own colour, the masks' outlines
    from PIL import Image

    from poseshape.cli.scene import OBJECT_COLORS
    from poseshape.viz import MASK_COLOR

    ov = np.asarray(Image.open(over).convert("RGB"))
    photo_img = np.asarray(Image.open(photo["image"]).convert("RGB"))
    assert ov.shape == photo_img.shape
    for c in (*OBJECT_COLORS[:2], MASK_COLOR):
        assert (ov == np.asarray(c, np.uint8)).all(-1).sum() >= 4, c
    objs = rec["objects"]
    assert [o["mask"] for o in objs] == [str(p) for p in photo["masks"]]
    assert rec["box"] == {"x0": 0, "y0": -4, "side": 40} and rec["input_size"] == 32
    assert rec["isolate"] is True and rec["encoder_input"] == "rgb"
    for o in objs:
        assert o["online"] is True and o["online_loss"]["steps"] == 2
        assert 0 < o["class_prob"] <= 1 and 0 <= o["mask_iou"] <= 1
        assert np.allclose(np.asarray(o["R"]) @ np.asarray(o["R"]).T, np.eye(3), atol=1e-5)
    # the file: one node per object, each the medoid placed by X_cam = R X + t_cam, in glTF axes
    nodes = _nodes(out)
    assert len(nodes) == 2
    for i, want in enumerate(_placed_medoids(ck, objs, _GLTF)):
        ((name, got),) = [(n, v) for n, v in nodes.items() if n.startswith(f"object_{i}_")]
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-5, name
    # one batched call on the whole frame padded to a square, white outside each object's mask
    # (--isolate), with that object's mask
    ((images, masks),) = calls
    pr = load_predictor(ck, device="cpu")
    image, _ = read_image(photo["image"])
    ms = [read_mask(p) for p in photo["masks"]]
    sq = [predictor_square(pr, image * m + (1 - m), m, "m") for m in ms]
    assert all(s[2] == (0, -4, 40) for s in sq)
    assert torch.equal(images, torch.stack([s[0] for s in sq])) and torch.equal(masks, torch.stack([s[1] for s in sq]))
    far = torch.nn.functional.max_pool2d(masks, 5, 1, 2) < 0.5  # (2, 1, S, S): 2+ pixels off each mask
    assert bool((images[0][:, far[0, 0]] > 1 - 1e-5).all()) and bool((images[1][:, far[1, 0]] > 1 - 1e-5).all())
    assert (images[0] - images[1]).abs().max() > 0.2
    # and the poses written are that prediction's
    pred = original(pr, images, masks)
    for i, o in enumerate(objs):
        assert np.allclose(o["R"], pred.R[i].double().numpy(), atol=1e-6)
        assert np.allclose(o["t_cam"], pred.t[i].double().numpy(), atol=1e-6)


def test_scene_from_a_label_image_to_obj_without_online(tmp_path, photo, refine6dof_run, capsys):
    ck = refine6dof_run / "last.pt"
    out = tmp_path / "scene.obj"
    rc, _, se = _run(
        [
            "scene",
            str(photo["image"]),
            "--labels",
            str(photo["labels"]),
            "--checkpoint",
            str(ck),
            "--out",
            str(out),
            "--no-online",
            "--no-isolate",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert rc == 0, se
    assert "warning: this encoder's input is the RGB image alone" in se
    objs = json.loads(out.with_suffix(".json").read_text())["objects"]
    # with --no-isolate an rgb encoder sees one image for both objects: the same pose (the
    # documented limitation the warning names)
    assert np.allclose(objs[0]["R"], objs[1]["R"]) and np.allclose(objs[0]["t_cam"], objs[1]["t_cam"])
    assert [(o["mask"], o["label_value"], o["online"]) for o in objs] == [
        (str(photo["labels"]), 3, False),
        (str(photo["labels"]), 7, False),
    ]
    assert "online_loss" not in objs[0] and "label_color" not in objs[0]
    allv = np.concatenate(list(_nodes(out).values()))
    for want in _placed_medoids(ck, objs, np.eye(3)):  # OBJ: the camera frame itself
        assert np.linalg.norm(want[:, None] - allv[None], axis=-1).min(1).max() < 1e-5


def _bad(photo, tmp_path, ckpt, other):
    d = photo["dir"]
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(d / "empty.png")
    Image.fromarray(np.full((20, 30), 255, np.uint8)).save(d / "small.png")
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(d / "empty_labels.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 40), dtype=np.uint8)).save(d / "noise.png")
    img, (ma, mb) = str(photo["image"]), map(str, photo["masks"])
    ck = ["--checkpoint", str(ckpt)]
    return {
        "empty mask": ([img, "--mask", ma, str(d / "empty.png"), *ck], r"empty\.png: the mask is empty"),
        "mask size": (
            [img, "--mask", str(d / "small.png"), mb, *ck],
            r"small\.png: the mask is 30x20 pixels but the image .*street\.png is 40x32",
        ),
        "missing mask": ([img, "--mask", ma, str(d / "nope.png"), *ck], r"nope\.png: mask file not found"),
        "missing image": ([str(d / "nope.png"), "--mask", ma, *ck], r"nope\.png: image file not found"),
        "no objects": ([img, *ck], r"either as --mask .* or as --labels .*not neither"),
        "both": ([img, "--mask", ma, "--labels", str(photo["labels"]), *ck], r"not both"),
        "empty labels": (
            [img, "--labels", str(d / "empty_labels.png"), *ck],
            r"empty_labels\.png: the label image is empty",
        ),
        "noisy labels": ([img, "--labels", str(d / "noise.png"), *ck], r"noise\.png: \d+ distinct non-zero values"),
        "bad extension": (
            [img, "--mask", ma, *ck, "--out-as", "scene.ply"],
            r"scene\.ply: the scene file must end in \.glb or \.obj",
        ),
        "missing checkpoint": (
            [img, "--mask", ma, "--checkpoint", str(tmp_path / "none.pt")],
            r"none\.pt: checkpoint file not found",
        ),
        "other method": (
            [img, "--mask", ma, "--checkpoint", str(other)],
            r"checkpoint is for method 't_oracle', expected 'refine6dof'",
        ),
        "method flag": (
            [img, "--mask", ma, *ck, "--method", "reproject"],
            r"--method reproject: `poseshape scene` composes refine6dof",
        ),
        "no default": (
            [img, "--mask", ma, "--method", "refine6dof"],
            r"no default model for method 'refine6dof'.*poseshape train",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty mask",
        "mask size",
        "missing mask",
        "missing image",
        "no objects",
        "both",
        "empty labels",
        "noisy labels",
        "bad extension",
        "missing checkpoint",
        "other method",
        "method flag",
        "no default",
    ],
)
def test_scene_bad_inputs_fail_cleanly(case, tmp_path, photo, refine6dof_run, oracle_checkpoint, capsys, monkeypatch):
    from poseshape.engine import predictor as predict

    if case == "no default":  # as on an install without the shipped model
        monkeypatch.setattr(predict, "default_checkpoint", lambda method: tmp_path / "assets" / f"{method}.pt")
    args, pattern = _bad(photo, tmp_path, refine6dof_run / "last.pt", oracle_checkpoint)[case]
    out = tmp_path / "new" / "scene.glb"
    if "--out-as" in args:
        out = tmp_path / "new" / args[-1]
        args = args[:-2]
    rc, so, se = _run(["scene", *args, "--out", str(out), "--device", "cpu"], capsys)
    assert rc == 2, se
    assert se.startswith("poseshape scene: error: ")
    assert re.search(pattern, se, re.DOTALL), se
    assert not (tmp_path / "new").exists() and so == ""  # nothing (half-)written


def test_read_label_masks_modes(tmp_path):
    from poseshape.cli.scene import read_label_masks
    from poseshape.core.errors import PoseshapeError, ShapeError

    lab = np.zeros((6, 8), np.uint8)
    lab[1:3, 1:3], lab[3:5, 4:7], lab[0, :] = 5, 2, 255
    pal = Image.fromarray(lab, mode="L").convert("P")
    pal.putpalette([0, 0, 0] * 256)
    pal.save(tmp_path / "voc.png")  # palette: index 255 is VOC's void border -> background
    got = read_label_masks(tmp_path / "voc.png", (6, 8))
    assert [(v, c) for v, c, _ in got] == [(2, None), (5, None)]
    assert torch.equal(got[1][2][0], torch.from_numpy(lab == 5).float())
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[1:3, 1:3] = (255, 0, 0)
    rgb[4, 4] = (0, 128, 255)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    got = read_label_masks(tmp_path / "rgb.png")
    assert [(v, c, int(m.sum())) for v, c, m in got] == [(0x0080FF, "#0080ff", 1), (0xFF0000, "#ff0000", 4)]
    Image.fromarray(np.dstack([rgb, np.full((6, 8), 128, np.uint8)])).save(tmp_path / "rgba.png")
    with pytest.raises(PoseshapeError, match="transparency"):
        read_label_masks(tmp_path / "rgba.png")
    with pytest.raises(ShapeError, match="label image is 8x6 pixels"):
        read_label_masks(tmp_path / "rgb.png", (6, 9))
