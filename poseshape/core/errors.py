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
