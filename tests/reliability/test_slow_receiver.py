"""One partner cannot slow the others (SPEC.md, "Trust between organizations").

A partner's webhook receiver that answers one byte every two seconds, meaning to go on for two
minutes, used to hold up every customer SMS, every other webhook and the watchdog for as long as
it trickled; a 64 MiB answer was read whole into the worker. Here the real worker runs its real
loops against real sockets:

- the trickling receiver is cut at the delivery deadline (``BATON_WEBHOOK_DEADLINE_SECONDS``,
  3 s in this test), while another customer's SMS, queued as the trickle runs, reaches the
  Twilio double within a couple of seconds of wall time and the watchdog keeps sweeping;
- against a 64 MiB answer the delivery reads a few KiB and hangs up: the server manages to send
  a small fraction of it, and the worker's Python memory grows by far less than 5 MB.

The FrozenClock stays still: the deadline and the trickle are wall time, as a receiver's are.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from notifications.models import Notification
from partners.models import Partner
from tests.conftest import ADMIN_TOKEN, Database, World
from tests.support.raw_receivers import RawServer, huge, trickle
from tests.support.twilio_double import TwilioDouble
from tests.support.webhook_receiver import LOCAL_RECEIVERS
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from tracker.worker import Worker

PUBLIC = "http://baton.test"
DEADLINE = 3.0  # seconds one webhook delivery may take in this test (10 s by default)
TRICKLE = 2.0  # seconds between the slow receiver's bytes
SOON = 2.0  # seconds of wall time within which the other customer's SMS must be at Twilio
HUGE = 64 * 1024 * 1024


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime(2026, 11, 2, 15, 0, tzinfo=UTC))  # 10:00 in New York: SMS go out


@pytest.fixture
def settings(db: Database, twilio: TwilioDouble) -> Settings:
    return Settings(
        database_url=db.url, admin_token=ADMIN_TOKEN, public_base_url=PUBLIC, workers_in_process=False,
        **twilio.settings(), webhook_allow_hosts=LOCAL_RECEIVERS, webhook_deadline_seconds=DEADLINE,
    )


def sessionmaker_of(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


async def point_webhooks_at(world: World, url: str) -> None:
    async with sessionmaker_of(world)() as session:
        await session.execute(update(Partner).where(Partner.id == "lh").values(webhook_url=url))
        await session.commit()


async def lh_webhooks(world: World) -> list[Notification]:
    async with sessionmaker_of(world)() as session:
        return list((await session.scalars(select(Notification).where(
            Notification.channel == "webhook", Notification.partner_id == "lh").order_by(Notification.id))).all())


async def until(check: Callable[[], Any], *, timeout: float, what: str) -> float:
    """Poll ``check`` (an observation, not a timer) until truthy; the wall time it took."""
    started = time.monotonic()
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)


def customer(phone: str) -> dict[str, str]:
    return {"name": "Grace Hopper", "phone": phone, "email": f"{phone[1:]}@example.com", "locale": "en",
            "timezone": "America/New_York"}


async def test_a_trickling_receiver_delays_no_customer_sms_and_is_cut_at_its_deadline(
    world: World, worker: Worker, twilio: TwilioDouble
) -> None:
    sweeps = 0
    sweep = worker.watchdog.sweep

    async def counted_sweep() -> Any:
        nonlocal sweeps
        sweeps += 1
        return await sweep()

    worker.watchdog.sweep = counted_sweep  # type: ignore[method-assign]
    with RawServer(trickle(every=TRICKLE, total=120.0)) as slow:
        await point_webhooks_at(world, slow.url())
        running = asyncio.create_task(worker.run_forever(interval=0.1))
        try:
            await world.open_case(customer=customer("+14155550100"))  # lh's case.opened goes to the trickle
            await until(lambda: slow.connections, timeout=5.0, what="the webhook reaching the slow receiver")
            trickling = slow.connections[0]
            sweeps_before = sweeps

            # Another customer's case opens while the receiver trickles: their SMS must not wait.
            await world.open_case(customer=customer("+14155550199"))
            took = await until(lambda: any(m["to"] == "+14155550199" for m in twilio.messages), timeout=10.0,
                               what="the other customer's SMS at Twilio")
            assert took < SOON, f"the SMS waited {took:.1f} s behind a slow webhook"
            assert trickling.closed_by_peer_at is None, "the webhook was still trickling when the SMS went out"
            await until(lambda: sweeps >= sweeps_before + 2, timeout=SOON, what="two more watchdog sweeps")
            assert trickling.closed_by_peer_at is None, "the watchdog swept while the webhook still trickled"

            # The delivery is cut at its deadline and recorded as a timeout, to be retried later.
            await until(lambda: trickling.closed_by_peer_at, timeout=DEADLINE + 5, what="Baton hanging up")
            held = trickling.closed_by_peer_at - trickling.opened_at  # type: ignore[operator]
            assert DEADLINE - 0.5 < held < DEADLINE + TRICKLE + 0.5, f"the connection was held {held:.1f} s"
            assert trickling.sent <= DEADLINE / TRICKLE + 2  # a couple of bytes, not two minutes' worth

            async def first_recorded() -> bool:
                rows = await lh_webhooks(world)
                return bool(rows) and rows[0].state == "pending" and rows[0].attempts == 1
            await until(first_recorded, timeout=5.0, what="the cut delivery recorded")
            first = (await lh_webhooks(world))[0]
            assert (first.last_error, first.next_attempt_at is not None) == ("timeout", True)
            print(f"\nslow receiver: other customer's SMS at Twilio after {took:.2f} s; webhook cut after "
                  f"{held:.2f} s having taken {trickling.sent} byte(s); {sweeps} watchdog sweeps")
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


async def test_a_huge_answer_is_read_a_few_kib_deep_and_hung_up_on(world: World, worker: Worker) -> None:
    with RawServer(huge(HUGE)) as big:
        await point_webhooks_at(world, big.url())
        await world.open_case()
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            await worker.webhooks.drain()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        [conn] = big.connections
        await until(lambda: conn.closed_by_peer_at, timeout=5.0, what="the server noticing Baton hung up")

    [row] = await lh_webhooks(world)
    assert (row.state, row.attempts) == ("delivered", 1)  # a 2xx is a delivery; the body is not needed
    assert peak - before < 5 * 1024 * 1024, f"the delivery grew Python's memory by {(peak - before) / 2**20:.1f} MiB"
    # What the server could push before the hang-up: socket buffers' worth, a small part of 64 MiB.
    assert conn.sent < 4 * 1024 * 1024, f"{conn.sent} bytes of the answer were taken"
    print(f"\nhuge answer: {conn.sent} of {HUGE} bytes sent before the hang-up; Python memory peak "
          f"+{(peak - before) / 1024:.0f} KiB")
