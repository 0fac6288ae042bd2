"""A party exactly at its due time: the watchdog's boundary, pinned on both sides.

SPEC: "Past due → late". The watchdog (``tracker/watchdog.py``) selects parties with
``watch_at <= now`` and flags an on-track party unless ``next_update_due > now``: a party whose
due moment *is* now has had its whole cadence and is late. One microsecond before, it is not.
The escalation step has the same rule (``watch_at <= now``).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from tests.conftest import World
from kernel.clock import UTC

if TYPE_CHECKING:
    from tests.tracker.watchdog_rig import Rig

pytest_plugins = ["tests.tracker.watchdog_rig"]  # the rig fixture

OPENED = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DUE = OPENED + dt.timedelta(hours=6)  # lh's cadence is PT6H, the default calendar never sleeps
ESCALATES = DUE + dt.timedelta(hours=6)  # default threshold: one more cadence


def _at(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


async def test_party_is_late_exactly_at_its_due_time_and_not_a_microsecond_before(world: World, rig: Rig) -> None:
    assert world.clock.now() == OPENED
    ref = (await world.open_case())["ref"]
    lh = await rig.party(ref, "lh")
    assert lh["state"] == "on_track" and _at(lh["next_update_due"]) == DUE

    for before in (dt.timedelta(seconds=1), dt.timedelta(microseconds=1)):
        world.clock.set(DUE - before)
        result = await rig.sweep()
        assert result.late == 0, f"flagged {before} before its due time"
        assert (await rig.party(ref, "lh"))["state"] == "on_track"
    assert await rig.events(ref, "party.late") == []

    world.clock.set(DUE)
    result = await rig.sweep()
    assert result.late == 1
    lh = await rig.party(ref, "lh")
    assert lh["state"] == "late" and _at(lh["overdue_since"]) == DUE
    assert len(await rig.events(ref, "party.late")) == 1


async def test_late_party_escalates_exactly_at_the_threshold_and_not_a_microsecond_before(
    world: World, rig: Rig
) -> None:
    ref = (await world.open_case())["ref"]
    world.clock.set(DUE)
    assert (await rig.sweep()).late == 1

    world.clock.set(ESCALATES - dt.timedelta(microseconds=1))
    result = await rig.sweep()
    assert result.escalated == 0
    assert (await rig.party(ref, "lh"))["state"] == "late"

    world.clock.set(ESCALATES)
    result = await rig.sweep()
    assert result.escalated == 1
    assert (await rig.party(ref, "lh"))["state"] == "escalated"


async def test_promised_update_is_due_exactly_at_the_promise(world: World, rig: Rig) -> None:
    ref = (await world.open_case())["ref"]
    promise = OPENED + dt.timedelta(hours=2, minutes=30)
    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events",
                                      json_body={"message": "Checking the FRA carousel",
                                                 "next_update_by": promise.isoformat()})
    assert response.status_code == 201, response.text
    assert _at((await rig.party(ref, "lh"))["next_update_due"]) == promise

    world.clock.set(promise - dt.timedelta(microseconds=1))
    assert (await rig.sweep()).late == 0
    world.clock.set(promise)
    assert (await rig.sweep()).late == 1
    lh = await rig.party(ref, "lh")
    assert lh["state"] == "late" and _at(lh["overdue_since"]) == promise
