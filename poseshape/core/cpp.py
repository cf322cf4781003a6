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
from types import ModuleType

__all__ = ["cpp_extension"]

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
