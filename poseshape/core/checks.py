"""Small argument validators shared by every layer.

They raise :class:`poseshape.core.errors.ShapeError` with a message that names the
argument, the expected shape and what was received.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from poseshape.core.errors import PoseshapeError, ShapeError
from poseshape.core.paths import PACKAGE_ROOT


def check_shape(x: torch.Tensor, name: str, shape: Sequence[int | None], batch: bool = True) -> None:
    """Check that ``x`` ends with ``shape`` (``None`` matches any size).

    With ``batch=True`` any number of leading dimensions is allowed, e.g. ``shape=(3, 3)``
    accepts ``(3, 3)``, ``(B, 3, 3)`` and ``(B, N, 3, 3)``. With ``batch=False`` the number
    of dimensions must match exactly.
    """
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    want = "(..., " + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    if not batch:
        want = want.replace("..., ", "")
    nd = len(shape)
    if x.dim() < nd or (not batch and x.dim() != nd):
        raise ShapeError(f"{name}: expected shape {want}, got {tuple(x.shape)}")
    tail = x.shape[x.dim() - nd :]
    for got, exp in zip(tail, shape):
        if exp is not None and got != exp:
            raise ShapeError(f"{name}: expected shape {want}, got {tuple(x.shape)}")


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise :class:`ShapeError` if ``x`` holds NaN or infinity."""
    # One reduction instead of a full-size mask: any NaN / inf makes the sum non-finite, so a
    # finite sum proves every element finite; a non-finite sum (which may also be an overflow
    # of large finite values) is decided by the element-wise test.
    if torch.isfinite(x.detach().sum()):
        return
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ShapeError(f"{name}: contains {bad} non-finite value(s) (NaN or inf)")


def memory_limit_bytes() -> int:
    """The largest working set (bytes) a single command may plan to allocate.

    ``POSESHAPE_MAX_MEMORY_GB`` sets it; otherwise half of the physical memory (16 GiB when
    that cannot be read).
    """
    env = os.environ.get("POSESHAPE_MAX_MEMORY_GB")
    if env:
        try:
            gb = float(env)
        except ValueError:
            raise PoseshapeError(f"POSESHAPE_MAX_MEMORY_GB={env!r}: expected a number of GiB") from None
        if not gb > 0:
            raise PoseshapeError(f"POSESHAPE_MAX_MEMORY_GB={env!r}: must be > 0")
        return int(gb * 2**30)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 16 * 2**30


def check_memory(nbytes: float, what: str, option: str) -> None:
    """Refuse, before allocating, work whose estimated memory ``nbytes`` exceeds
    :func:`memory_limit_bytes`; the message names ``what`` and the ``option`` to lower."""
    limit = memory_limit_bytes()
    if nbytes > limit:
        raise PoseshapeError(
            f"{what} needs about {nbytes / 2**30:.1f} GiB, over the limit of {limit / 2**30:.1f} GiB; "
            f"lower {option} (or raise POSESHAPE_MAX_MEMORY_GB)"
        )


def check_output_location(path: str | os.PathLike, what: str = "output") -> None:
    """Refuse an output path inside the installed ``poseshape`` package (:data:`poseshape.core.paths.PACKAGE_ROOT`).

    User files there would mix with the library and be lost (or break the install) on the next
    upgrade. The shipped models are exported there only by the repository's
    ``scripts/train_default*.sh``, through ``python -m poseshape.engine.checkpoint export``.

    Raises:
        PoseshapeError: naming ``what``, the path and the package folder.
    """
    resolved = Path(path).expanduser().resolve()
    if resolved == PACKAGE_ROOT or PACKAGE_ROOT in resolved.parents:
        raise PoseshapeError(
            f"{what} {path}: is inside the installed poseshape package ({PACKAGE_ROOT}); write outputs somewhere else"
        )
