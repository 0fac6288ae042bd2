"""Webhook delivery survives a failing partner: retried with backoff, once per webhook-id, dead-lettered.

Retry delays are scheduled from the injected clock, so the tests move the clock to each row's
``next_attempt_at`` instead of waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import types
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, update

import notifications.dispatcher as dispatcher_module
from notifications.dispatcher import RETRY_SCHEDULE, Dispatcher
from notifications.models import Notification
from notifications.outbox import enqueue
from notifications.transports import Sent, WebhookTransport
from partners.models import Partner
from partners.service import new_webhook_secret
from tests.conftest import Database, World
from tests.support.webhook_receiver import LOCAL_RECEIVERS, WebhookReceiver
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from kernel.db import make_engine, make_sessionmaker
from tracker.principals import create_staff_token

if TYPE_CHECKING:
    from tests.tracker.watchdog_rig import Rig

pytest_plugins = ["tests.tracker.watchdog_rig"]  # the rig and smtp fixtures


async def webhook_rows(rig: Rig) -> list[Notification]:
    return await rig.notifications(channel="webhook", partner_id="lh")


async def retry_all(rig: Rig) -> None:
    """Move the clock to when the last pending webhook is due again, and run the dispatcher."""
    pending = [r.next_attempt_at for r in await webhook_rows(rig) if r.state == "pending"]
    assert pending, "nothing is waiting for a retry"
    rig.world.clock.set(max(pending))
    await rig.dispatcher.drain()


async def test_failing_receiver_gets_every_event_exactly_once_after_it_recovers(world: World, rig: Rig) -> None:
    async with rig.receiver_for("lh") as lh:
        refs = [(await world.open_case(title=f"Delayed bag {n}"))["ref"] for n in range(3)]
        nudged = await world.as_admin("POST", f"/v1/cases/{refs[0]}/parties/lh/nudges", json_body={})
        assert nudged.status_code == 201
        rows = await webhook_rows(rig)
        assert sorted(r.kind for r in rows) == ["case.opened"] * 3 + ["party.nudged"]

        lh.fail_with(500)
        await rig.dispatcher.drain()  # attempt 1: 500
        failed_at = world.clock.now()
        rows = await webhook_rows(rig)
        assert {(r.state, r.attempts, r.last_error) for r in rows} == {("pending", 1, "http 500")}
        first_retry = min(r.next_attempt_at for r in rows)
        assert first_retry > failed_at

        world.clock.set(first_retry - dt.timedelta(seconds=1))  # backing off: nothing is retried early
        await rig.dispatcher.drain()
        assert len(lh.attempts) == 4

        await retry_all(rig)  # attempt 2: 500 again
        assert len(lh.attempts) == 8
        lh.refuse()
        await retry_all(rig)  # attempt 3: connection refused
        rows = await webhook_rows(rig)
        assert {(r.state, r.attempts) for r in rows} == {("pending", 3)}
        assert {r.last_error for r in rows} == {"connection refused"}  # the class, not the socket error

        lh.recover()
        await retry_all(rig)  # attempt 4: delivered
        rows = await webhook_rows(rig)
        assert {(r.state, r.attempts) for r in rows} == {("delivered", 4)}
        assert lh.duplicates() == {}
        assert sorted(r.webhook_id for r in lh.received) == sorted(r.message_id for r in rows)
        assert all(r.verified for r in lh.received)
        # Every attempt of one event carried the same webhook-id: 2 answered with 500, 1 accepted.
        assert set(Counter(a.webhook_id for a in lh.attempts).values()) == {3}


async def test_retry_delays_grow_until_the_delivery_is_dead_lettered(world: World, rig: Rig) -> None:
    async with rig.receiver_for("lh") as lh:
        await world.open_case()
        lh.fail_with(500)
        delays = []
        while True:
            await rig.dispatcher.drain()
            [row] = await webhook_rows(rig)
            if row.state != "pending":
                break
            delays.append(row.next_attempt_at - world.clock.now())
            world.clock.set(row.next_attempt_at)
        assert row.state == "dead" and row.next_attempt_at is None
        assert row.attempts == len(RETRY_SCHEDULE) + 1 == len(lh.attempts)
        # Backoff: each wait longer than the last, up to the schedule's closing pair of ~10 h waits.
        assert len(delays) == len(RETRY_SCHEDULE)
        assert all(a < b for a, b in itertools.pairwise(delays[:6])), delays
        assert min(delays[-2:]) >= dt.timedelta(hours=8)


async def test_delivery_is_retried_for_at_least_24_hours_even_with_the_shortest_jitter(
    world: World, rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every random draw at its lowest: the horizon must still cover the 24 hours SPEC.md promises.
    monkeypatch.setattr(dispatcher_module, "random", types.SimpleNamespace(uniform=lambda low, high: low))
    async with rig.receiver_for("lh") as lh:
        await world.open_case()
        lh.fail_with(500)
        first_attempt = world.clock.now()
        while True:
            await rig.dispatcher.drain()
            [row] = await webhook_rows(rig)
            if row.state != "pending":
                break
            world.clock.set(row.next_attempt_at)
        assert row.state == "dead"
        assert world.clock.now() - first_attempt >= dt.timedelta(hours=24)


async def _agent_headers(world: World, rig: Rig) -> dict[str, str]:
    async with rig.sessionmaker() as session:
        token = await create_staff_token(session=session, name="agent-alice", role="agent", now=world.clock.now())
        await session.commit()
    return {"Authorization": f"Bearer {token}"}


async def test_dead_letter_is_listed_and_a_supervisor_can_resend_it(world: World, rig: Rig) -> None:
    async with rig.receiver_for("lh") as lh:
        ref = (await world.open_case())["ref"]
        lh.fail_with(500)
        while True:
            await rig.dispatcher.drain()
            [row] = await webhook_rows(rig)
            if row.state != "pending":
                break
            world.clock.set(row.next_attempt_at)
        assert row.state == "dead"

        agent = await _agent_headers(world, rig)
        listed = await world.client.get("/v1/webhook-deliveries?state=dead", headers=agent)
        assert listed.status_code == 200, listed.text
        [item] = listed.json()["items"]
        assert (item["id"], item["case"], item["partner"], item["kind"]) == (row.id, ref, "lh", "case.opened")
        assert (item["state"], item["attempts"], item["last_error"]) == ("dead", 8, "http 500")
        assert item["message_id"] == row.message_id
        delivered = await world.client.get("/v1/webhook-deliveries?state=delivered", headers=agent)
        assert delivered.json()["items"] == []

        forbidden = await world.client.post(f"/v1/webhook-deliveries/{row.id}/resend", headers=agent)
        assert forbidden.status_code == 403
        assert (await webhook_rows(rig))[0].state == "dead"

        lh.recover()
        resent = await world.as_admin("POST", f"/v1/webhook-deliveries/{row.id}/resend")
        assert resent.status_code == 200, resent.text
        assert (resent.json()["state"], resent.json()["attempts"]) == ("pending", 0)
        await rig.dispatcher.drain()
        [row] = await webhook_rows(rig)
        assert (row.state, row.attempts) == ("delivered", 1)
        [hook] = lh.received
        assert hook.verified and hook.webhook_id == row.message_id
        again = await world.as_admin("POST", f"/v1/webhook-deliveries/{row.id}/resend")
        assert again.status_code == 404  # only dead or failed deliveries are resent
        assert (await world.as_admin("GET", "/v1/webhook-deliveries?state=dead")).json()["items"] == []


async def test_hanging_receiver_is_retried_with_the_same_webhook_id_not_lost(world: World, rig: Rig) -> None:
    impatient = Dispatcher(sessionmaker=rig.sessionmaker, clock=world.clock,
                           transports={"webhook": WebhookTransport(timeout=0.3, allow_hosts=LOCAL_RECEIVERS)})
    async with rig.receiver_for("lh") as lh:
        await world.open_case()
        lh.hang(10)
        await impatient.drain()
        [row] = await webhook_rows(rig)
        assert (row.state, row.attempts) == ("pending", 1)
        assert row.last_error == "timeout"
        assert len(lh.received) == 1  # it arrived; only the answer was late

        lh.recover()
        world.clock.set(row.next_attempt_at)
        await impatient.drain()
        [row] = await webhook_rows(rig)
        assert (row.state, row.attempts) == ("delivered", 2)
        # The retry repeats the webhook-id, so the receiver can tell it already has this event.
        assert lh.duplicates() == {row.message_id: 2}
        assert all(r.verified for r in lh.received)
    await impatient.transports["webhook"].close()


async def test_an_outcome_arriving_after_another_run_reclaimed_the_row_is_not_written(world: World, rig: Rig) -> None:
    """A send that outlived its lease: the run that reclaimed the row owns its outcome."""

    class ReclaimedMeanwhile:
        async def send(self, message: Any) -> Sent:
            async with rig.sessionmaker() as other_run:  # claims the row again, as after the lease
                await other_run.execute(update(Notification).where(Notification.id == message.id)
                                        .values(attempts=Notification.attempts + 1))
                await other_run.commit()
            return Sent(provider_id="late-answer")

        async def close(self) -> None:
            pass

    await world.open_case()
    late = Dispatcher(sessionmaker=rig.sessionmaker, clock=world.clock, transports={"webhook": ReclaimedMeanwhile()})

    await late.run_once()

    [row] = await webhook_rows(rig)
    assert (row.state, row.attempts, row.provider_id, row.sent_at) == ("sending", 2, None, None)


@pytest.mark.postgres
async def test_two_dispatchers_on_postgresql_send_each_row_once(pg_db: Database) -> None:
    clock = FrozenClock(dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    engines = [make_engine(Settings(database_url=pg_db.url)) for _ in range(2)]
    secret = new_webhook_secret()
    rows = 300
    with WebhookReceiver(secret) as receiver:
        try:
            async with make_sessionmaker(engines[0])() as session:
                session.add(Partner(id="lh", name="Lufthansa", webhook_url=receiver.url, webhook_secret=secret,
                                    created_at=clock.now()))
                await session.flush()
                for n in range(rows):
                    await enqueue(session=session, channel="webhook", audience="partner", kind="party.late",
                                  recipient=receiver.url, now=clock.now(), partner_id="lh",
                                  payload={"type": "party.late", "data": {"n": n}})
                await session.commit()
            transports = [WebhookTransport(allow_hosts=LOCAL_RECEIVERS) for _ in engines]
            dispatchers = [Dispatcher(sessionmaker=make_sessionmaker(engine), clock=clock,
                                      transports={"webhook": transport}, batch=25,
                                      concurrency=2)  # the receiver's listen backlog is 5
                           for engine, transport in zip(engines, transports)]
            handled = [0, 0]
            while True:
                counts: list[Any] = await asyncio.gather(*(d.run_once() for d in dispatchers))
                handled = [total + n for total, n in zip(handled, counts)]
                if not any(counts):
                    break
            for transport in transports:
                await transport.close()

            assert sum(handled) == rows and min(handled) > 0  # both took their share
            assert len(receiver.received) == rows and receiver.duplicates() == {}
            assert sorted(r.payload["data"]["n"] for r in receiver.received) == list(range(rows))
            async with make_sessionmaker(engines[0])() as session:
                states = Counter((await session.execute(select(Notification.state, Notification.attempts))).all())
            assert states == {("delivered", 1): rows}
        finally:
            for engine in engines:
                await engine.dispose()
