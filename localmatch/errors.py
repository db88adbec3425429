"""The exception types localmatch raises on purpose.

Every error a user can cause (a bad image, an unknown name) is one of these, so callers can
catch them without catching programming errors.
"""

from __future__ import annotations


class LocalmatchError(Exception):
    """Base class of every error localmatch raises deliberately."""


class ImageError(LocalmatchError, ValueError):
    """An image could not be used: missing, unreadable, corrupt, truncated, too large, not an image.

    Attributes:
        source: what the caller passed, as text (a path, ``"<bytes>"`` or ``"<array>"``).
        reason: why it was refused, in words.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class UnknownNameError(LocalmatchError, ValueError):
    """A feature, matcher, geometry or backend name that is not registered."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.valid = valid
        super().__init__(f"unknown {kind} {name!r}; valid names: {', '.join(valid)}")


class ConfigError(LocalmatchError, ValueError):
    """Options that do not fit: an unknown option, or features that the chosen matcher cannot take."""


class DatabaseError(LocalmatchError):
    """A database folder that cannot be used as asked (missing, wrong version, locked, damaged...)."""


class GroundTruthError(LocalmatchError, ValueError):
    """A ground-truth file that cannot be read: missing, not JSON or ``.mat``, or not in the documented layout."""
