"""The ``poseshape`` command line: one module per command, wired together in :mod:`.main`."""

from poseshape.cli.main import main

__all__ = ["main"]
