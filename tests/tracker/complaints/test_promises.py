"""Scorecards count promises kept: a party's own ``next_update_by`` and ``eta``, against a
hand-computed story with the clock moved."""

from __future__ import annotations

import datetime as dt

from tests.conftest import World
from tests.tracker.test_delivery import _token, out_for_delivery, proof


async def _card(world: World, partner: str) -> dict:
    response = await world.as_admin("GET", f"/v1/partners/{partner}/scorecard?days=7")
    assert response.status_code == 200, response.text
    return response.json()


async def test_next_update_promises_are_kept_broken_or_pending(world: World) -> None:
    case = await world.open_case()
    path = f"/v1/cases/{case['ref']}/events"
    t0 = world.clock.now()

    async def update(**fields: str) -> None:
        response = await world.as_partner("lh", "POST", path, json_body={"internal_note": "searching", **fields})
        assert response.status_code == 201, response.text

    await update(next_update_by=(t0 + dt.timedelta(hours=2)).isoformat())   # kept: the next update is 1 h later
    world.clock.advance(dt.timedelta(hours=1))
    await update(next_update_by=(t0 + dt.timedelta(hours=3)).isoformat())   # broken: next update at t0 + 4 h
    world.clock.advance(dt.timedelta(hours=3))
    await update(next_update_by=(t0 + dt.timedelta(hours=10)).isoformat(),  # pending at t0 + 4 h
                 eta=(t0 + dt.timedelta(days=1)).isoformat())               # pending: not delivered, not due
    card = await _card(world, "lh")
    assert card["next_update_promises"] == {"made": 3, "kept": 1, "broken": 1, "pending": 1, "kept_rate": 0.5}
    assert card["eta_promises"] == {"made": 1, "kept": 0, "broken": 0, "pending": 1, "kept_rate": None}
    world.clock.advance(dt.timedelta(days=1))  # both remaining promises pass, nothing happened
    card = await _card(world, "lh")
    assert card["next_update_promises"]["broken"] == 2 and card["next_update_promises"]["pending"] == 0
    assert card["eta_promises"] == {"made": 1, "kept": 0, "broken": 1, "pending": 0, "kept_rate": 0.0}


async def test_an_eta_is_kept_when_the_proof_of_delivery_comes_before_it(world: World) -> None:
    case = await out_for_delivery(world)  # FastCourier said eta 18:45 UTC at 17:30 UTC
    pin = (await world.client.get(f"/v1/status/{_token(case)}")).json()["delivery"]["pin"]
    assert (await proof(world, case["ref"], pin=pin)).status_code == 201
    card = await _card(world, "fastcourier")
    assert card["eta_promises"] == {"made": 1, "kept": 1, "broken": 0, "pending": 0, "kept_rate": 1.0}
