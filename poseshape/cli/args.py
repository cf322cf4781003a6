"""Argument types shared by the commands: integers with a lower bound, checked by argparse
(so a bad value is one ``error:`` line and exit 2, naming the option)."""

from __future__ import annotations

import argparse

__all__ = ["int_at_least"]


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
