"""POSESHAPE_DATA discovery: skipped with a clear reason when absent, never when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from poseshape import paths

pytest_plugins = ["pytester"]


def test_env_var_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv("POSESHAPE_DATA", str(tmp_path))
    assert paths.shared_data_dir() == tmp_path
    root, reason = paths.shared_data_status()
    assert root == tmp_path and reason is None


def test_absent_directory_gives_reason(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("POSESHAPE_DATA", str(missing))
    root, reason = paths.shared_data_status()
    assert root == missing
    assert reason is not None and str(missing) in reason and "POSESHAPE_DATA" in reason
    # a file is not a data directory either
    f = tmp_path / "file"
    f.write_text("x")
    monkeypatch.setenv("POSESHAPE_DATA", str(f))
    assert "not a directory" in paths.shared_data_status()[1]


def test_default_is_shared_data_next_to_repo(monkeypatch):
    monkeypatch.delenv("POSESHAPE_DATA", raising=False)
    got = paths.shared_data_dir()
    default = paths.REPO_ROOT.parent / "shared" / "data"
    assert got == default or got == Path.cwd().parent / "shared" / "data"
    if not default.is_dir():
        assert "POSESHAPE_DATA unset" in (paths.shared_data_status()[1] or "POSESHAPE_DATA unset")


def test_fixture_skips_with_reason_when_absent(pytester, monkeypatch):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_uses_data="def test_a(shared_data):\n    assert shared_data.is_dir()\n")
    missing = pytester.path / "no_data_here"
    monkeypatch.setenv("POSESHAPE_DATA", str(missing))
    res = pytester.runpytest_inprocess("-rs", "-p", "no:cacheprovider")
    res.assert_outcomes(skipped=1)
    res.stdout.fnmatch_lines([f"*shared data not found: {missing}*POSESHAPE_DATA*"])
    # present (even if empty): the test runs and is never skipped
    present = pytester.path / "data"
    present.mkdir()
    monkeypatch.setenv("POSESHAPE_DATA", str(present))
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_never_skipped_when_present(request):
    """With the data present (as in CI), the fixture yields it instead of skipping."""
    root, reason = paths.shared_data_status()
    if reason is not None:
        pytest.skip(reason)
    assert request.getfixturevalue("shared_data") == root
