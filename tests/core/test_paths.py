"""POSESHAPE_DATA discovery: skipped with a clear reason when absent, never when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from poseshape.core import paths

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


def test_default_is_shared_data_next_to_repo(monkeypatch, tmp_path):
    monkeypatch.delenv("POSESHAPE_DATA", raising=False)
    repo, work = tmp_path / "a" / "repo", tmp_path / "b" / "work"
    repo.mkdir(parents=True)
    work.mkdir(parents=True)
    monkeypatch.setattr(paths, "REPO_ROOT", repo)
    monkeypatch.chdir(work)
    beside_repo, beside_cwd = tmp_path / "a" / "shared" / "data", tmp_path / "b" / "shared" / "data"
    # neither exists: the one next to the repository, with the reason naming the unset variable
    assert paths.shared_data_dir() == beside_repo
    root, reason = paths.shared_data_status()
    assert root == beside_repo and "POSESHAPE_DATA unset" in reason and "does not exist" in reason
    # only the one next to the working directory exists: that one
    beside_cwd.mkdir(parents=True)
    assert paths.shared_data_dir() == beside_cwd
    # both exist: the repository's wins
    beside_repo.mkdir(parents=True)
    assert paths.shared_data_dir() == beside_repo
    assert paths.shared_data_status() == (beside_repo, None)


def test_repo_root_is_the_checkout():
    assert (paths.PACKAGE_ROOT / "__init__.py").is_file()
    assert paths.REPO_ROOT == paths.PACKAGE_ROOT.parent


def test_fixture_skips_with_reason_when_absent(pytester, monkeypatch):
    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
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
