"""A partner's scorecard matches figures computed by hand from a known history."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from tests.conftest import World
from tracker.models import Case

if TYPE_CHECKING:
    from tests.tracker.watchdog_rig import Rig

H = 3600.0  # seconds in an hour

pytest_plugins = ["tests.tracker.watchdog_rig"]  # the rig fixture


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


class History:
    """Moves the frozen clock to t0 + an offset and acts through the API."""

    def __init__(self, world: World, rig: Rig) -> None:
        self.world = world
        self.rig = rig
        self.t0 = world.clock.now()

    def at(self, hours: float, minutes: int = 0) -> None:
        self.world.clock.set(self.t0 + dt.timedelta(hours=hours, minutes=minutes))

    async def open(self, *parties: dict[str, Any]) -> str:
        return (await self.world.open_case(parties=[*parties]))["ref"]

    async def update(self, partner: str, ref: str) -> None:
        response = await self.world.as_partner(partner, "POST", f"/v1/cases/{ref}/events",
                                               json_body={"status": "tracing"})
        assert response.status_code == 201, response.text

    async def hand_off(self, sender: str, ref: str, to: str) -> int:
        response = await self.world.as_partner(sender, "POST", f"/v1/cases/{ref}/handoffs",
                                               json_body={"to": to, "accept_within": "PT2H"})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    async def accept(self, partner: str, ref: str, handoff: int) -> None:
        response = await self.world.as_partner(partner, "POST", f"/v1/cases/{ref}/handoffs/{handoff}/accept",
                                               json_body={})
        assert response.status_code == 200, response.text

    async def close(self, ref: str, verdict: str) -> None:
        response = await self.world.as_admin("POST", f"/v1/cases/{ref}/close", json_body={"resolution": "Done."})
        assert response.status_code == 200, response.text
        # The customer's verdict, as their confirmation would record it.
        async with self.rig.sessionmaker() as session:
            row = await session.scalar(select(Case).where(Case.ref == ref))
            assert row is not None
            row.satisfaction, row.satisfaction_at = verdict, self.world.clock.now()
            await session.commit()


def carrier(partner: str, cadence: str, *, responsible: bool = True) -> dict[str, Any]:
    return {"partner": partner, "role": "carrier", "responsible": responsible, "cadence": cadence}


OWNER = {"partner": "ua", "role": "owner"}


async def lh_history(world: World, rig: Rig) -> History:
    """Lufthansa on six cases. t0 is Monday 2 November 2026, 09:00 UTC.

        t0-40d  O  opened, lh updates at +1h, closed at +2h      (outside a 30-day window)
        t0      A  opened, lh responsible, cadence PT6H
        +1h     A  lh update                                   first update on A: 1 h
        +1h     B  opened, lh responsible, cadence PT24H
        +2h     B  staff nudge lh
        +2h     C  opened, fastcourier responsible, lh a party (PT24H); fastcourier hands off to lh
        +2h30   C  lh accepts                                  acceptance: 30 min
        +3h     B  lh update                                   first update on B: 2 h
        +3h     D  opened, ua responsible, lh a party (PT24H); ua hands off to lh
        +4h     A  lh update                                   interval on A: 3 h
        +4h30   D  lh accepts                                  acceptance: 1 h 30
        +5h     B  lh update                                   interval on B: 2 h
        +5h     E  opened, lh responsible, cadence PT12H (lh never updates it)
        +6h     C  lh update                                   first update on C: 4 h
        +10h01     sweep: A late (due +10h)
        +16h01     sweep: A escalated (one more cadence)
        +17h    A  lh update: back on track                    interval on A: 13 h
        +19h    C  closed, customer dissatisfied; D closed, customer satisfied
        +20h       sweep: E late (due +17h); the scorecard is read now
    """
    history = History(world, rig)
    t0 = history.t0
    world.clock.set(t0 - dt.timedelta(days=40))
    old = await history.open(carrier("lh", "PT6H"), OWNER)
    world.clock.advance(hours=1)
    await history.update("lh", old)
    world.clock.advance(hours=1)
    await history.close(old, "satisfied")

    history.at(0)
    a = await history.open(carrier("lh", "PT6H"), OWNER)
    history.at(1)
    await history.update("lh", a)
    b = await history.open(carrier("lh", "PT24H"), OWNER)
    history.at(2)
    nudged = await world.as_admin("POST", f"/v1/cases/{b}/parties/lh/nudges", json_body={})
    assert nudged.status_code == 201, nudged.text
    c = await history.open({"partner": "fastcourier", "role": "courier", "responsible": True, "cadence": "PT6H"},
                           carrier("lh", "PT24H", responsible=False), OWNER)
    to_lh_on_c = await history.hand_off("fastcourier", c, "lh")
    history.at(2, 30)
    await history.accept("lh", c, to_lh_on_c)
    history.at(3)
    await history.update("lh", b)
    d = await history.open({"partner": "ua", "role": "owner", "responsible": True, "cadence": "PT6H"},
                           carrier("lh", "PT24H", responsible=False))
    to_lh_on_d = await history.hand_off("ua", d, "lh")
    history.at(4)
    await history.update("lh", a)
    history.at(4, 30)
    await history.accept("lh", d, to_lh_on_d)
    history.at(5)
    await history.update("lh", b)
    await history.open(carrier("lh", "PT12H"), OWNER)  # E
    history.at(6)
    await history.update("lh", c)
    history.at(10, 1)
    assert (await rig.sweep()).late == 1
    history.at(16, 1)
    assert (await rig.sweep()).escalated == 1
    history.at(17)
    await history.update("lh", a)
    history.at(19)
    await history.close(c, "dissatisfied")
    await history.close(d, "satisfied")
    history.at(20)
    assert (await rig.sweep()).late == 1
    return history


async def test_scorecard_figures_match_the_hand_computed_history(world: World, rig: Rig) -> None:
    history = await lh_history(world, rig)
    response = await world.as_admin("GET", "/v1/partners/lh/scorecard?days=30")
    assert response.status_code == 200, response.text
    card = response.json()

    assert (card["partner"], card["name"], card["window_days"]) == ("lh", "Lufthansa", 30)
    now = history.t0 + dt.timedelta(hours=20)
    assert instant(card["until"]) == now and instant(card["since"]) == now - dt.timedelta(days=30)
    # Updates: A at +1h, +4h, +17h; B at +3h, +5h; C at +6h. The old case O is outside the window.
    assert card["updates"] == 6
    # First updates: A 1 h, B 2 h, C 4 h (D and E have none) -> [3600, 7200, 14400].
    # p50 = 7200; p90 at rank 0.9 * (3 - 1) = 1.8: 7200 + 0.8 * (14400 - 7200) = 12960.
    assert card["time_to_first_update"] == {"p50": 2 * H, "p90": 12960.0, "count": 3}
    # Intervals: A 3 h and 13 h, B 2 h -> [10800, 46800, 7200]; median 10800.
    assert card["median_update_interval_seconds"] == 3 * H
    # Due moments: met by the updates on A at +1h (due +6h) and +4h (due +7h), on B at +3h (due
    # +25h) and +5h (due +27h), and on C at +6h (lh responsible since accepting at +2h30, due
    # +26h30); missed: A at +10h and E at +17h (A's update at +17h ended a late episode: no
    # moment met). 5 / 7 = 0.7143, never 100 % beside late episodes.
    assert (card["due_met"], card["due_moments"], card["on_time_rate"]) == (5, 7, 0.7143)
    # Custody: A from t0 (20 h), B from +1h (19 h), E from +5h (15 h), C from accepting at +2h30
    # to closing at +19h (16.5 h), D from +4h30 to +19h (14.5 h): 85 h.
    assert card["custody_hours"] == 85.0
    # Late: A at +10h01 and E at +20h; escalated: A at +16h01; one nudge on B.
    assert (card["late_episodes"], card["escalated_episodes"], card["nudges"]) == (2, 1, 1)
    # Handoffs to lh accepted after 30 min (C) and 90 min (D) -> [1800, 5400].
    # p50 = 1800 + 0.5 * 3600 = 3600; p90 = 1800 + 0.9 * 3600 = 5040.
    assert card["handoff_acceptance"] == {"p50": 3600.0, "p90": 5040.0, "count": 2}
    # E is late now; A is back on track; C and D are closed.
    assert card["currently_overdue"] == 1
    assert card["satisfaction"] == {"satisfied": 1, "dissatisfied": 1}


async def test_scorecard_window_reaches_back_as_many_days_as_asked(world: World, rig: Rig) -> None:
    await lh_history(world, rig)
    card = (await world.as_admin("GET", "/v1/partners/lh/scorecard?days=60")).json()
    # The old case O joins: one more update, first update after 1 h, one more satisfied customer.
    # First updates [3600, 3600, 7200, 14400]: p50 = 3600 + 0.5 * 3600 = 5400.
    assert card["updates"] == 7
    assert card["time_to_first_update"]["count"] == 4 and card["time_to_first_update"]["p50"] == 5400.0
    assert card["satisfaction"] == {"satisfied": 2, "dissatisfied": 1}
    # O's update at +1h met its due moment (+6h): 6 of 8; and O was held for its 2 hours.
    assert (card["due_met"], card["due_moments"], card["on_time_rate"]) == (6, 8, 0.75)
    assert card["custody_hours"] == 87.0


async def test_scorecard_of_a_partner_with_no_history_is_empty_not_an_error(world: World) -> None:
    card = (await world.as_admin("GET", "/v1/partners/swissport-fra/scorecard")).json()
    assert card["window_days"] == 30 and card["updates"] == 0
    assert card["time_to_first_update"] == {"p50": None, "p90": None, "count": 0}
    assert card["median_update_interval_seconds"] is None and card["on_time_rate"] is None
    assert card["handoff_acceptance"]["count"] == 0 and card["currently_overdue"] == 0


async def test_partner_reads_its_own_scorecard_with_a_signed_request(world: World) -> None:
    response = await world.as_partner("lh", "GET", "/v1/partners/lh/scorecard?days=7")
    assert response.status_code == 200, response.text
    assert response.json()["partner"] == "lh"


async def test_partner_cannot_read_another_partners_scorecard(world: World) -> None:
    response = await world.as_partner("lh", "GET", "/v1/partners/ua/scorecard")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_scorecard_of_an_unknown_partner_is_not_found(world: World) -> None:
    assert (await world.as_admin("GET", "/v1/partners/nobody/scorecard")).status_code == 404


@pytest.mark.parametrize("days", ["0", "367", "-1", "thirty"])
async def test_scorecard_window_out_of_range_is_unprocessable(world: World, days: str) -> None:
    response = await world.as_admin("GET", f"/v1/partners/lh/scorecard?days={days}")
    assert response.status_code == 422
