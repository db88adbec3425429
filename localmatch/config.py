"""Frozen dataclass configs with strict ``from_dict`` and ``replace``, and checks of their values.

Every tunable of localmatch lives in one of these; no module keeps a mutable default. A config checks
its values when it is made (``__post_init__`` with the helpers below), so a bad option fails at once
with ``ConfigError`` naming it, instead of deep inside OpenCV or, worse, being quietly taken for another
setting (a negative ratio that turned the ratio test off, a negative RANSAC threshold that OpenCV used).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, TypeVar

import numpy as np

from localmatch.errors import ConfigError

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class: subclasses are frozen dataclasses of plain values."""

    #: fields added after configurations of this class were first stored (in a database), with the value that
    #: gives the behaviour those stored configurations were written with (see :meth:`from_stored`)
    STORED_DEFAULTS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any] | None = None) -> C:
        """Build from a dict; an unknown key raises ``ConfigError`` (a ``ValueError``) listing the valid keys."""
        values = dict(values or {})
        _check_keys(cls, values)
        return cls(**values)

    @classmethod
    def from_stored(cls: type[C], values: dict[str, Any]) -> C:
        """Build from a dict written by ``to_dict`` in an earlier version: a field it lacks takes its
        :attr:`STORED_DEFAULTS` value, not the current default, so stored data keeps its meaning."""
        return cls.from_dict({**cls.STORED_DEFAULTS, **values})

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed; an unknown field raises ``ConfigError``."""
        _check_keys(type(self), changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_keys(cls: type, values: dict[str, Any]) -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")


def build_config(config_type: type[C], config: Config | dict | None, overrides: dict[str, Any], owner: str) -> C:
    """A ``config_type`` from an instance, a dict or nothing, with keyword overrides applied.

    ``owner`` names what takes the config (``"sift"``...) in the error for a wrong type.
    """
    if isinstance(config, config_type):
        return config.replace(**overrides) if overrides else config
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"{owner} takes a {config_type.__name__} or a dict, not {type(config).__name__}")
    return config_type.from_dict({**(config or {}), **overrides})


def _bad(config: Config, name: str, rule: str) -> ConfigError:
    return ConfigError(f"{type(config).__name__}.{name} must be {rule}, not {getattr(config, name)!r}")


def require_whole(value: Any, label: str, at_least: int, *, optional: bool = False) -> None:
    """``value`` is an integer (not a bool) >= ``at_least``, or None when ``optional``; ``label`` names it in
    the ``ConfigError``. For arguments that are not config fields (``min_inliers``, ``k``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < at_least:
        raise ConfigError(f"{label} must be a whole number >= {at_least}" + (" or None" if optional else "")
                          + f", not {value!r}")


def check_whole(config: Config, name: str, at_least: int, *, optional: bool = False) -> None:
    """``config.name`` is an integer (not a bool) >= ``at_least``, or None when ``optional``."""
    require_whole(getattr(config, name), f"{type(config).__name__}.{name}", at_least, optional=optional)


def check_number(config: Config, name: str, low: float, high: float = math.inf, *, low_open: bool = False,
                 high_open: bool = False, optional: bool = False) -> None:
    """``config.name`` is a finite real number in the interval from ``low`` to ``high`` (ends included unless
    ``*_open``), or None when ``optional``."""
    value = getattr(config, name)
    if optional and value is None:
        return
    inside = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
              and math.isfinite(value) and (value > low if low_open else value >= low)
              and (value < high if high_open else value <= high))
    if not inside:
        if math.isinf(high):
            rule = f"a number {'>' if low_open else '>='} {low:g}"
        else:
            rule = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise _bad(config, name, rule + (" or None" if optional else ""))


def require_flag(value: Any, label: str) -> None:
    """``value`` is True or False (a string such as ``"false"`` would count as true); for arguments."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{label} must be True or False, not {value!r}")


def check_flag(config: Config, *names: str) -> None:
    """Each ``config.name`` is True or False."""
    for name in names:
        require_flag(getattr(config, name), f"{type(config).__name__}.{name}")


def check_choice(config: Config, name: str, choices: tuple[str, ...]) -> None:
    if getattr(config, name) not in choices:
        raise _bad(config, name, f"one of {', '.join(choices)}")
