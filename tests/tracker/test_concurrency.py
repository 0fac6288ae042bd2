"""Concurrent partner updates on one case keep its timeline gapless and its chain linear."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, ALLOWED_HOSTS, World
from tests.tracker.test_group_commit import watch_writes
from kernel.config import Settings
from tracker.verify import verify_case


@pytest.fixture
def settings(pg_db: Any) -> Settings:  # PostgreSQL only: SQLite serializes every writer anyway
    return Settings(database_url=pg_db.url, admin_token=ADMIN_TOKEN, workers_in_process=False, db_pool_size=20,
                    allowed_hosts=ALLOWED_HOSTS)


async def test_fifty_concurrent_signed_updates_leave_a_gapless_sequence_and_intact_chain(world: World) -> None:
    case = await world.open_case(parties=[
        {"partner": "lh", "role": "carrier", "responsible": True},
        {"partner": "swissport-fra", "role": "handler", "responsible": True},
        {"partner": "ua", "role": "owner"},
    ])
    ref = case["ref"]

    async def post(i: int) -> httpx.Response:
        partner = ("lh", "swissport-fra", "ua")[i % 3]
        return await world.as_partner(partner, "POST", f"/v1/cases/{ref}/events",
                                      json_body={"message": f"update {i}", "location": "FRA"}, hmac=i % 2 == 0)

    responses = await asyncio.gather(*(post(i) for i in range(50)))
    assert [r.status_code for r in responses] == [201] * 50, [r.text for r in responses if r.status_code != 201]
    seqs = sorted(r.json()["seq"] for r in responses)
    assert seqs == list(range(2, 52))

    events = (await world.as_admin("GET", f"/v1/cases/{ref}/events?limit=500")).json()["items"]
    assert [e["seq"] for e in events] == list(range(1, 52))
    assert all(e["prev_hash"] == p["hash"] for p, e in zip(events, events[1:]))
    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        result = await verify_case(session=session, ref=ref)
    assert result.ok, result.reason
    assert result.signed == 50



async def test_concurrent_routine_updates_share_transactions_and_keep_every_chain(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit under load: 60 routine updates over three cases, each answered 201 once its
    batch committed, fewer transactions than updates, and every case's timeline gapless and chained."""
    written = watch_writes(monkeypatch)
    parties = [{"partner": "lh", "role": "carrier", "responsible": True},
               {"partner": "swissport-fra", "role": "handler", "responsible": True}, {"partner": "ua", "role": "owner"}]
    refs = [(await world.open_case(parties=parties))["ref"] for _ in range(3)]

    async def post(i: int) -> httpx.Response:
        partner = ("lh", "swissport-fra", "ua")[i % 3]
        return await world.as_partner(partner, "POST", f"/v1/cases/{refs[i % 3]}/events",
                                      json_body={"internal_note": f"scan {i}", "location": "FRA"},
                                      headers={"Idempotency-Key": f"scan-{i}"}, hmac=i % 2 == 0)

    responses = await asyncio.gather(*(post(i) for i in range(60)))
    assert [r.status_code for r in responses] == [201] * 60, [r.text for r in responses if r.status_code != 201]
    assert sum(written) == 60 and len(written) < 60, written
    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    for ref in refs:
        events = (await world.as_admin("GET", f"/v1/cases/{ref}/events?limit=500")).json()["items"]
        assert [e["seq"] for e in events] == list(range(1, 22))
        async with sessionmaker() as session:
            result = await verify_case(session=session, ref=ref)
        assert result.ok and result.signed == 20, result.reason
    replay = await post(7)
    assert replay.status_code == 201 and replay.headers.get("idempotent-replayed") == "true"
    assert replay.json() == responses[7].json()
