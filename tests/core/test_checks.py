"""``poseshape.core.checks``: where outputs may go."""

from __future__ import annotations

from pathlib import Path

import pytest

import poseshape
from poseshape.core.checks import check_output_location
from poseshape.core.errors import PoseshapeError
from poseshape.core.paths import PACKAGE_ROOT as PACKAGE_DIR


def test_package_dir_is_the_imported_package():
    assert PACKAGE_DIR == Path(poseshape.__file__).resolve().parent


def test_inside_the_package_is_refused_also_through_a_symlink(tmp_path):
    for p in (PACKAGE_DIR, PACKAGE_DIR / "assets" / "x", PACKAGE_DIR / "a" / ".." / "b"):
        with pytest.raises(PoseshapeError, match="inside the installed poseshape package"):
            check_output_location(p, "--out")
    link = tmp_path / "link"
    link.symlink_to(PACKAGE_DIR)
    with pytest.raises(PoseshapeError, match=r"--out .*link/out"):
        check_output_location(link / "out", "--out")


def test_beside_the_package_is_allowed(tmp_path):
    check_output_location(tmp_path / "out")
    check_output_location(PACKAGE_DIR.parent / f"{PACKAGE_DIR.name}_demo")  # a sibling sharing the prefix
    check_output_location(PACKAGE_DIR / "..")  # the folder that holds the package
