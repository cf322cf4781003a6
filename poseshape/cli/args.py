"""Argument types shared by the commands: integers with a lower bound and output paths outside
the package, checked by argparse (so a bad value is one ``error:`` line and exit 2, naming the
option)."""

from __future__ import annotations

import argparse

from poseshape.core.checks import check_output_location
from poseshape.core.errors import PoseshapeError

__all__ = ["int_at_least", "output_path"]


def int_at_least(low: int):
    """An argparse ``type=``: an integer ``>= low`` (``int_at_least(1)`` for counts and sizes,
    ``int_at_least(0)`` for worker counts)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def output_path(text: str) -> str:
    """An argparse ``type=`` for ``--out`` / ``--report``: a non-empty path outside the installed
    package (:func:`poseshape.core.checks.check_output_location`)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    try:
        check_output_location(text, "")
    except PoseshapeError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None
    return text
