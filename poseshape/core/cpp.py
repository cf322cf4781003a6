"""``torch.utils.cpp_extension``, imported quietly.

Importing it on a machine with a CUDA toolkit but no CUDA runtime (a CPU laptop with
``/usr/local/cuda``, this project's CI) logs "No CUDA runtime is found, using CUDA_HOME=..."
at warning level, which every poseshape command would then print although nothing is wrong
(our extensions are CPU-only). :func:`cpp_extension` imports the module with that one logger
raised to error level for the duration of the import.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path
from types import ModuleType

__all__ = ["cpp_extension", "load_openmp_extension"]

_LOGGER = "torch.utils.cpp_extension"


def cpp_extension() -> ModuleType:
    """The ``torch.utils.cpp_extension`` module (``load``, ``load_inline``), imported without
    its CUDA-runtime warning."""
    log = logging.getLogger(_LOGGER)
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        return importlib.import_module(_LOGGER)
    finally:
        log.setLevel(old)


def load_openmp_extension(name: str, source: Path, what: str) -> ModuleType | None:
    """Build (or reuse torch's cached build of) the C++ / OpenMP extension ``name`` from
    ``source``; on any failure warn once, naming ``what``, and return ``None`` (the caller then
    uses its pure-PyTorch reference)."""
    try:
        return cpp_extension().load(
            name=name,
            sources=[str(source)],
            extra_cflags=["-O3", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # noqa: BLE001 - any build problem means: use the reference
        warnings.warn(f"poseshape: C++ {what} unavailable, using PyTorch ({str(exc)[:300]})", stacklevel=3)
        return None
