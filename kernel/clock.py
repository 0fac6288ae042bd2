"""Injected time. Everything that waits for time (watchdog, deadlines, signature skew) asks a clock."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

UTC = dt.timezone.utc


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)


class FrozenClock:
    """A clock that tests move by hand."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def now(self) -> dt.datetime:
        return self._now

    def set(self, when: dt.datetime) -> None:
        self._now = when

    def advance(self, delta: dt.timedelta | None = None, **kwargs: float) -> dt.datetime:
        self._now += delta if delta is not None else dt.timedelta(**kwargs)
        return self._now


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything Baton stores is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
