"""Small argument validators shared by every layer.

They raise :class:`poseshape.core.errors.ShapeError` with a message that names the
argument, the expected shape and what was received.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from poseshape.core.errors import ShapeError


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
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ShapeError(f"{name}: contains {bad} non-finite value(s) (NaN or inf)")
