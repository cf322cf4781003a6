"""Project error classes.

Every error a user can trigger names the offending argument or file and says what
was expected. They subclass ``ValueError`` so that ``except ValueError`` keeps working.
"""

from __future__ import annotations


class PoseshapeError(ValueError):
    """Base class of poseshape's user-facing errors."""


class ShapeError(PoseshapeError):
    """A tensor argument has the wrong shape, dtype or values (e.g. NaN)."""


class FileFormatError(PoseshapeError):
    """A file could not be parsed: corrupt, truncated or of the wrong format."""


class CheckpointError(PoseshapeError):
    """A checkpoint is missing, corrupt, or belongs to another method / version."""


class FileWriteError(PoseshapeError, OSError):
    """A file could not be written: its folder is missing, is not a folder or is not writable,
    the disk is full, ... (see :mod:`poseshape.core.io`).

    Also an ``OSError`` (with the original ``errno`` / ``filename``), so that code catching
    ``OSError`` around a write keeps working.
    """

    def __str__(self) -> str:  # the message, not OSError's "[Errno n] strerror: filename"
        return str(self.args[0]) if len(self.args) == 1 else OSError.__str__(self)


class TrainingInterrupted(PoseshapeError):
    """Training stopped on SIGINT / SIGTERM after writing a resumable ``last.pt``; ``signal``
    is the signal number (the CLI exits with ``128 + signal``)."""

    def __init__(self, message: str, signal: int):
        super().__init__(message)
        self.signal = int(signal)


class PoseshapeWarning(UserWarning):
    """A doubtful input or result (no / inverted / tiny / cut mask, low confidence, an untrained
    category); the message names the fix. Also recorded in ``pose.json["warnings"]``."""
