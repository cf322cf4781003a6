"""Where poseshape finds the shared data sets.

``../shared/data`` (relative to the repository) holds real CAD models and voxel sets that
tests and benchmarks may *read*; it is never copied into the repository. Its location is
taken from the ``POSESHAPE_DATA`` environment variable, defaulting to ``../shared/data``
next to the repository root (or the current directory's ``../shared/data``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """Return the shared data directory (it may not exist; check with ``.is_dir()``)."""
    env = os.environ.get("POSESHAPE_DATA")
    if env:
        return Path(env).expanduser()
    for cand in (REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if cand.is_dir():
            return cand
    return REPO_ROOT.parent / "shared" / "data"
