"""Caches of rows that change rarely, held by the runtime rather than by modules.

A runtime (the web app's ``Runtime``, a ``baton worker``, a CLI command) makes one ``Caches``
with its sessionmaker, and every session carries it: domain code reaches it with
``kernel.db.caches_of(session)``. So a fresh app starts cold, two apps in one process (tests)
never see each other's entries, and nothing resets a module global by hand.

The kernel knows the caches by name only; what they hold (a partner's rules, a parsed case type)
is the domain's type, and so is how long an entry may be trusted (``max_age`` on each read).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Values by key, each stamped when put; a read names how old a value it accepts."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[str, tuple[float, V]] = {}
        self._monotonic = monotonic

    def get(self, key: str, *, max_age: float) -> V | None:
        """The value put under ``key`` less than ``max_age`` seconds ago, else None."""
        entry = self._entries.get(key)
        if entry is None or self._monotonic() - entry[0] >= max_age:
            return None
        return entry[1]

    def put(self, key: str, value: V) -> V:
        self._entries[key] = (self._monotonic(), value)
        return value

    def clear(self) -> None:
        self._entries.clear()


class Caches:
    """The runtime's caches: ``partner_rules`` by partner id, ``case_types`` by case type code."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.partner_rules: TTLCache[Any] = TTLCache(monotonic=monotonic)
        self.case_types: TTLCache[Any] = TTLCache(monotonic=monotonic)

    def clear(self) -> None:
        """Forget everything, as after an edit made behind the runtime's back (a row changed in SQL)."""
        self.partner_rules.clear()
        self.case_types.clear()
