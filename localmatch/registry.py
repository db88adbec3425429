"""A name -> object registry that fails with the list of valid names."""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

from localmatch.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (extractors, matchers, estimators) of one kind.

    >>> r = Registry[int]("answer"); r.add("x", 42); r.get("x")
    42
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}  # name -> module that adds it when imported

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def add_lazy(self, name: str, module: str) -> None:
        """Register ``name`` as added by ``module``, imported on the name's first :meth:`get`: the torch
        models' modules import torch (about 1 s), which a SIFT-only process never needs."""
        if name in self._items or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._lazy[name] = module

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda item: self.add(name, item)

    def get(self, name: str) -> T:
        if name not in self._items and name in self._lazy:
            importlib.import_module(self._lazy[name])
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._items.keys() | self._lazy.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
