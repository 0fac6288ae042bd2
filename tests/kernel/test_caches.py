"""The runtime's caches and settings ride on its sessions, never on a module."""

from __future__ import annotations

import pytest

from kernel.caches import Caches, TTLCache
from kernel.config import Settings
from kernel.db import caches_of, make_engine, make_sessionmaker, settings_of


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_served_until_it_is_as_old_as_the_reader_allows() -> None:
    ticks = Ticks()
    cache: TTLCache[str] = TTLCache(monotonic=ticks)
    assert cache.put("lh", "rules") == "rules"
    ticks.now += 29.9
    assert cache.get("lh", max_age=30.0) == "rules"
    ticks.now += 0.1
    assert cache.get("lh", max_age=30.0) is None
    assert cache.get("ua", max_age=30.0) is None


def test_clear_forgets_partner_rules_and_case_types() -> None:
    caches = Caches()
    caches.partner_rules.put("lh", "rules")
    caches.case_types.put("baggage", "definition")
    caches.clear()
    assert caches.partner_rules.get("lh", max_age=60) is None and caches.case_types.get("baggage", max_age=60) is None


async def test_sessions_carry_their_runtimes_settings_and_caches_and_no_other() -> None:
    engine = make_engine(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    try:
        settings, caches = Settings(coalesce_seconds=7), Caches()
        ours = make_sessionmaker(engine, settings=settings, caches=caches, info={"extra": 1})
        theirs = make_sessionmaker(engine)
        async with ours() as first, ours() as second, theirs() as other:
            assert settings_of(first) is settings and settings_of(second) is settings
            assert caches_of(first) is caches and caches_of(second) is caches and first.info["extra"] == 1
            assert caches_of(other) is not caches  # every sessionmaker has caches of its own
            with pytest.raises(LookupError, match="settings="):
                settings_of(other)
    finally:
        await engine.dispose()
