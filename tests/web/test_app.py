"""``poseshape.web.app``: the demo's handler on real shipped models, without a browser, and
``poseshape serve``'s argument checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from poseshape.cli.main import main
from poseshape.core.errors import PoseshapeError
from poseshape.engine.reconstruct import auto_mask_source
from poseshape.web.app import MASK_SOURCES, PredictorCache, parse_box, run_reconstruction, shipped_methods

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def cache():
    return PredictorCache("cpu")


def test_shipped_methods_and_parse_box():
    assert "reproject" in shipped_methods()
    assert parse_box("") is None and parse_box(None) is None
    assert parse_box("1, 2 3,4") == (1.0, 2.0, 3.0, 4.0)
    for bad in ("1 2 3", "a b c d", "1 2 3 nan"):
        with pytest.raises(PoseshapeError, match="four numbers"):
            parse_box(bad)


@pytest.mark.parametrize("source", ["uploaded mask", "photo alpha", "box + GrabCut", "auto"])
def test_each_mask_source_gives_the_files_and_a_summary(source, photo, cache, tmp_path):
    d, m = photo
    img = d / ("photo_rgba.png" if source == "photo alpha" else "photo.png")
    mask = d / "mask.png" if source in ("uploaded mask", "auto") else None
    box = "25 30 135 95" if source == "box + GrabCut" else ""
    r = run_reconstruction(img, mask, source, box, "reproject", True, tmp_path, cache)
    for key in ("glb", "obj", "pose", "overlay", "views"):
        assert r["files"][key].is_file() and r["files"][key].parent == r["folder"]
    pose = json.loads(r["files"]["pose"].read_text())
    assert pose["refined"] is True and pose["mask_source"] in ("file", "alpha")
    assert "confidence" in r["summary"] and "azimuth" in r["summary"]
    assert Image.open(r["files"]["overlay"]).size == (160, 120)
    if source == "box + GrabCut":
        got = np.asarray(Image.open(r["mask"])) > 127
        assert float((got & m).sum()) / float((got | m).sum()) > 0.8


def test_no_mask_warns_in_the_summary(photo, cache, tmp_path):
    d, m = photo
    r = run_reconstruction(d / "photo_rgba.png", None, "none", "", "selfconsistency", True, tmp_path, cache)
    assert r["pose"]["refined"] is False and "no mask" in r["summary"] and "Warnings" in r["summary"]
    # the shipped reproject model sees the object on grey (image_input="masked"): it needs a
    # mask, and makes one automatically when it gets none (the learned segmenter, GrabCut without it)
    r = run_reconstruction(d / "photo_rgba.png", None, "none", "", "reproject", True, tmp_path, cache)
    assert r["pose"]["mask_source"] == auto_mask_source() and r["pose"]["refined"] is True
    assert "made one automatically" in r["summary"]
    got = np.asarray(Image.open(r["files"]["mask"]).convert("L")) > 127
    assert float((got & m).sum()) / float((got | m).sum()) > 0.8


def test_bad_requests_are_clear_errors(photo, cache, tmp_path):
    d, _ = photo
    cases = [
        ((None, None, "auto", "", "reproject"), "upload a photo"),
        ((d / "photo.png", None, "uploaded mask", "", "reproject"), "upload a mask"),
        ((d / "photo.png", None, "box + GrabCut", "", "reproject"), "click two corners"),
        ((d / "photo.png", None, "box + GrabCut", "1 2 3", "reproject"), "four numbers"),
        ((d / "photo.png", None, "sideways", "", "reproject"), "mask source"),
        ((d / "photo.png", None, "auto", "", "nope"), "unknown method"),
    ]
    for args, err in cases:
        with pytest.raises(PoseshapeError, match=err):
            run_reconstruction(*args, True, tmp_path, cache)
    assert set(MASK_SOURCES) >= {"auto", "none"}


def test_serve_arguments_are_checked(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--port", "0"])
    assert e.value.code == 2
    assert main(["serve", "--port", "70000"]) == 2
    assert "1..65535" in capsys.readouterr().err
    assert main(["serve", "--device", "cuda:7"]) == 2
    assert "cuda:7" in capsys.readouterr().err
