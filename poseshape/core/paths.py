"""Where poseshape finds the shared data sets.

``../shared/data`` (relative to the repository) holds real CAD models and voxel sets that
tests and benchmarks may *read*; it is never copied into the repository. Its location is
taken from the ``POSESHAPE_DATA`` environment variable, defaulting to ``../shared/data``
next to the repository root (or the current directory's ``../shared/data``).
"""

from __future__ import annotations

import os
from pathlib import Path

#: The installed package folder (``poseshape/``); its ``assets/`` hold the shipped models.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
#: The folder above the package: the repository root in a source checkout.
REPO_ROOT = PACKAGE_ROOT.parent

#: Environment variable that names the shared data directory.
DATA_ENV = "POSESHAPE_DATA"


def shared_data_dir() -> Path:
    """Return the shared data directory (it may not exist; check with ``.is_dir()``).

    ``$POSESHAPE_DATA`` when set (and non-empty), else the first existing of
    ``<repo>/../shared/data`` and ``<cwd>/../shared/data``, else ``<repo>/../shared/data``.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    for cand in (REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if cand.is_dir():
            return cand
    return REPO_ROOT.parent / "shared" / "data"


def shared_data_status() -> tuple[Path, str | None]:
    """``(path, reason)``: the shared data directory and, when it is absent, why.

    ``reason`` is ``None`` when the directory exists (tests must then run, never skip);
    otherwise a one-line message naming the path, where it came from and how to set it.
    """
    root = shared_data_dir()
    if root.is_dir():
        return root, None
    origin = f"${DATA_ENV}" if os.environ.get(DATA_ENV) else f"the default (${DATA_ENV} unset)"
    what = "is not a directory" if root.exists() else "does not exist"
    return root, (f"shared data not found: {root} (from {origin}) {what}; set {DATA_ENV} to the shared data directory")
