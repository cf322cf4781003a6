"""Hostile inputs to the CLI (issue 20): each case ends in its class of outcome.

``"usage"`` (exit 2 and one ``error:`` line naming the problem, no traceback, nothing
written) or ``"partial"`` (exit 1: the bad item named and skipped, the others written).
Run them all with ``python -m pytest -q tests/reliability``.
"""

from __future__ import annotations

import fcntl

import numpy as np
import pytest
from PIL import Image

from poseshape.cli.main import main


def _one_error_line(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if "error" in ln]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], err


def _run(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse
        return int(e.code)


RENDER = ["data", "render", "--meshes", "procedural", "--views", "1", "--models-per-category", "1",
          "--categories", "car", "--quiet"]  # fmt: skip
TRAIN = ["train", "retrieval", "--set", "preset=quick", "--device", "cpu"]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (TRAIN + ["--set", "lr=nan"], "lr"),
        (TRAIN + ["--set", "lr=-1"], "lr"),
        (TRAIN + ["--set", "batch_size=0"], "batch_size"),
        (["train", "retrieval", "--set", "preset=quick", "--device", "bogus"], "bogus"),
        (["train", "retrieval", "--set", "preset=quick", "--device", "cuda:7"], "cuda:7"),
        (["train", "retrieval", "--set", "preset=quick", "--device", "mps"], "mps"),
        (RENDER + ["--workers", "-1"], "--workers"),
        (RENDER + ["--size", "0"], "--size"),
        (RENDER + ["--size", "20000"], "--size"),
    ],
)
def test_bad_settings_are_exit_2_naming_the_key(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    rc = _run(argv + ["--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    _one_error_line(err, needle)
    assert not out.exists() or not any(p.name != ".lock" for p in out.iterdir())


def test_out_is_an_existing_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for argv in (RENDER, TRAIN):
        assert _run(argv + ["--out", str(afile)]) == 2
        _one_error_line(capsys.readouterr().err, str(afile))
        assert afile.read_text() == "keep me"


def test_out_below_a_file_is_enotdir(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert _run(RENDER + ["--out", str(afile / "sub")]) == 2
    _one_error_line(capsys.readouterr().err, str(afile))


def test_disk_full_is_one_line(tmp_path, capsys, monkeypatch):
    import errno
    import os

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out"))

    monkeypatch.setattr("poseshape.cli.data.render_dataset", full)
    assert _run(RENDER + ["--out", str(tmp_path / "out")]) == 2
    _one_error_line(capsys.readouterr().err, "No space left")


def test_second_trainer_on_a_locked_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "a+") as fh:  # another trainer holds the folder
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        rc = _run(TRAIN + ["--out", str(run)])
    err = capsys.readouterr().err
    assert rc == 2, err
    _one_error_line(err, "another training run")
    assert not (run / "last.pt").exists()


def test_refine_render_size_over_the_memory_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("POSESHAPE_MAX_MEMORY_GB", "4")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    mesh = tmp_path / "cube.obj"
    v = [(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]
    f = [(1, 2, 4), (1, 4, 3), (5, 7, 8), (5, 8, 6), (1, 5, 6), (1, 6, 2),
         (3, 4, 8), (3, 8, 7), (1, 3, 7), (1, 7, 5), (2, 6, 8), (2, 8, 4)]  # fmt: skip
    mesh.write_text("".join(f"v {a} {b} {c}\n" for a, b, c in v) + "".join(f"f {a} {b} {c}\n" for a, b, c in f))
    out = tmp_path / "out"
    rc = _run(["refine", "--mask", str(tmp_path / "m.png"), "--mesh", str(mesh), "--render-size", "8192",
               "--azimuth", "30", "--elevation", "20", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2, err
    _one_error_line(err, "--render-size", "GiB")
    assert not out.exists()
