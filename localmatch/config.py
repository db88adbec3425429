"""Frozen dataclass configs with strict ``from_dict`` and ``replace``.

Every tunable of localmatch lives in one of these; no module keeps a mutable default.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class: subclasses are frozen dataclasses of plain values."""

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any] | None = None) -> C:
        """Build from a dict; an unknown key raises ``ValueError`` listing the valid keys."""
        values = dict(values or {})
        _check_keys(cls, values)
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed; an unknown field raises ``ValueError``."""
        _check_keys(type(self), changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_keys(cls: type, values: dict[str, Any]) -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")


def build_config(config_type: type[C], config: Config | dict | None, overrides: dict[str, Any], owner: str) -> C:
    """A ``config_type`` from an instance, a dict or nothing, with keyword overrides applied.

    ``owner`` names what takes the config (``"sift"``...) in the error for a wrong type.
    """
    if isinstance(config, config_type):
        return config.replace(**overrides) if overrides else config
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"{owner} takes a {config_type.__name__} or a dict, not {type(config).__name__}")
    return config_type.from_dict({**(config or {}), **overrides})
