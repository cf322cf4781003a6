"""Bad integer options are one ``error:`` line naming the option, exit 2, and nothing written."""

from __future__ import annotations

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
