"""Bad integer options are one ``error:`` line naming the option, exit 2, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from poseshape.cli.main import main


@pytest.mark.parametrize(
    "argv, option",
    [
        (["data", "render", "--meshes", "procedural", "--workers", "-1"], "--workers"),
        (["data", "render", "--meshes", "procedural", "--size", "0"], "--size"),
        (["data", "render", "--meshes", "procedural", "--views", "0"], "--views"),
        (["data", "render", "--meshes", "procedural", "--views", "two"], "--views"),
        (["eval", "reproject", "--batch-size", "0"], "--batch-size"),
        (["eval", "reproject", "--limit", "-3"], "--limit"),
    ],
)
def test_bad_integer_options(argv, option, tmp_path, capsys):
    out = tmp_path / "out"
    extra = ["--out", str(out)] if argv[0] == "data" else []
    with pytest.raises(SystemExit) as e:
        main(argv + extra)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err, err
    assert not out.exists()


def test_os_errors_and_unknown_devices_are_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for argv in (
        ["data", "render", "--meshes", "procedural", "--out", str(afile), "--views", "1",
         "--models-per-category", "1", "--categories", "car", "--quiet"],
        ["train", "retrieval", "--out", str(afile), "--set", "preset=quick", "--device", "cpu"],
    ):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert str(afile) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert afile.read_text() == "keep me"
    for dev in ("bogus", "cuda:7", "mps"):
        rc = main(["train", "retrieval", "--out", str(tmp_path / "r"), "--set", "preset=quick", "--device", dev])
        err = capsys.readouterr().err
        assert rc == 2 and dev in err and "cpu" in err, err
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["reconstruct", "img.png", "--out", "{pkg}/out"],
        ["refine", "--mask", "m.png", "--mesh", "a.obj", "--azimuth", "0", "--out", "{pkg}/assets/r"],
        ["scene", "img.png", "--mask", "m.png", "--out", "{pkg}/scene.glb"],
        ["train", "reproject", "--out", "{pkg}/runs/rp"],
        ["data", "render", "--meshes", "procedural", "--out", "{pkg}"],
        ["eval", "reproject", "--report", "{pkg}/r.html"],
        ["eval", "reproject", "--out", "{pkg}/e"],
        ["demo", "--out", "{pkg}/../poseshape/demo"],
        ["retrieval", "index", "--out", "{pkg}/cad.db"],
    ],
)
def test_outputs_inside_the_installed_package_are_refused(argv, capsys):
    import poseshape

    pkg = Path(poseshape.__file__).resolve().parent
    before = sorted(p.name for p in pkg.iterdir())
    with pytest.raises(SystemExit) as e:
        main([a.format(pkg=pkg) for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "inside the installed poseshape package" in err and "Traceback" not in err, err
    assert sorted(p.name for p in pkg.iterdir()) == before
