"""A small name -> factory registry (models, datasets, optimisers, schedulers, losses, ...).

Registries replace if/elif chains: a new component is one function plus a decorator, and every
listing, CLI choice and parametrised test sees it at once. Duplicate names are refused so that two
files cannot silently shadow each other.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from cnnlab.errors import CnnlabError, did_you_mean

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """Maps names to factories. ``kind`` is used in error messages ("model", "dataset", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, F] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: ``@MODELS.register()`` uses the function name; ``register("x")`` sets one."""

        def deco(fn: F) -> F:
            key = name or fn.__name__
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = fn
            return fn

        return deco

    def get(self, name: str) -> F:
        """Return the factory for ``name`` or raise a CnnlabError that suggests close names."""
        try:
            return self._items[name]
        except KeyError:
            hint = did_you_mean(name, self._items)
            raise CnnlabError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._items))}.") from None

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)
