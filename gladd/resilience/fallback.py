"""The "serve cache" degradation: the last good value per key, served while a circuit is open.

Entries older than ``max_age`` are never served. The cache holds at most ``max_entries``
keys, evicting the least recently stored, so per-URL keys cannot grow it without bound.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

MAX_ENTRIES = 1024


class _NoCache:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_CACHE"


NO_CACHE: Hashable = _NoCache()
"""A key meaning "do not cache this call" (e.g. a POST through the HTTP transport)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cached:
    """A value served from the cache, and how old it is (seconds)."""

    value: Any
    age: float


class FallbackCache:
    """Last good value per key, with its age."""

    __slots__ = ("_entries", "_now", "max_age", "max_entries")

    def __init__(
        self, *, max_age: float, now: Callable[[], float], max_entries: int = MAX_ENTRIES
    ) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._now = now
        self._entries: dict[Hashable, tuple[Any, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def store(self, key: Hashable, value: Any) -> None:
        if key is NO_CACHE:
            return
        entries = self._entries
        entries.pop(key, None)
        entries[key] = (value, self._now())
        if len(entries) > self.max_entries:
            del entries[next(iter(entries))]

    def age(self, key: Hashable) -> float | None:
        """How old the value for ``key`` is, or None when there is none."""
        entry = self._entries.get(key)
        return None if entry is None else self._now() - entry[1]

    def lookup(self, key: Hashable) -> Cached | Literal["empty", "too_old"]:
        entry = self._entries.get(key)
        if entry is None:
            return "empty"
        age = self._now() - entry[1]
        if age > self.max_age:
            return "too_old"
        return Cached(value=entry[0], age=age)
