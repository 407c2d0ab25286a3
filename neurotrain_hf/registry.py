"""Name -> factory registries (timm style): ``register_*`` decorators, ``get_*`` and ``list_*`` lookups."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import RegistryError

T = TypeVar("T")


def did_you_mean(name: str, options: list[str] | tuple[str, ...]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry(Generic[T]):
    """A named collection of factories with wildcard listing and helpful errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._prefixes: dict[str, Callable[[str], T]] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``); duplicates are refused."""

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise RegistryError(f"cannot register an unnamed {self.kind}")
            if key in self._entries:
                raise RegistryError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = obj
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` (e.g. a task or loss a test registered for itself); unknown names are ignored."""
        self._entries.pop(name, None)

    def register_prefix(self, prefix: str) -> Callable[[Callable[[str], T]], Callable[[str], T]]:
        """Decorator for a resolver handling every name ``<prefix>/<rest>`` (e.g. ``timm/resnet18``)."""

        def decorator(resolver: Callable[[str], T]) -> Callable[[str], T]:
            if prefix in self._prefixes:
                raise RegistryError(f"{self.kind} prefix {prefix!r} is already registered")
            self._prefixes[prefix] = resolver
            return resolver

        return decorator

    def get(self, name: str) -> T:
        """Look ``name`` up; unknown names raise a one-line error listing the known names."""
        if name in self._entries:
            return self._entries[name]
        prefix, sep, rest = name.partition("/")
        if sep and prefix in self._prefixes:
            return self._prefixes[prefix](rest)
        known = self.list()
        hint = did_you_mean(name, known)
        prefixes = ", ".join(f"{p}/<name>" for p in sorted(self._prefixes))
        extra = f"; or use {prefixes}" if prefixes else ""
        raise RegistryError(f"unknown {self.kind} {name!r}{hint}; known: {', '.join(known)}{extra}")

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style wildcard."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def prefixes(self) -> list[str]:
        return sorted(self._prefixes)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
