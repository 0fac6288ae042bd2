"""Provider faults: the API keeps answering, nothing queued is lost, and everything arrives once.

Each test breaks one provider, through the real client stack against a local double:

    smtp-down        the SMTP server's port is closed (connection refused)
    smtp-451         the SMTP server answers 451 (temporary failure) to every message
    twilio-500       Twilio's API answers 500 to every send
    twilio-refused   Twilio's API port is closed
    twilio-hang      Twilio's API accepts each message on arrival but answers 30 s late; the
                     transport gives up after 1.5 s
    webhook-500      the partner's webhook endpoint answers 500
    webhook-refused  the partner's webhook endpoint refuses connections
    webhook-hang     the partner's endpoint processes each webhook on arrival but answers 30 s late

While the provider is broken, a dispatcher round runs concurrently with signed partner updates:
every update answers 201 within a second (for a hanging provider, while the round is still
blocked on it), the failed rows stay queued with their attempts counted, and the other channels
are delivered in the same rounds. After recovery the FrozenClock moves past the retry delays (no
sleeping for timers) and rounds run until the outbox is empty. Then the deliveries are counted
at the receiving doubles, per Message-ID (SMTP), Message SID (Twilio) and webhook-id (partner):

    lost        queued rows not delivered, or recorded as sent without the double having it: 0
    duplicated  deliveries beyond one per row: 0

A hanging provider is the one honest exception. It accepted a message whose answer the client
stopped waiting for, so the retry delivers it a second time: at-least-once delivery cannot tell
"lost on the way in" from "lost on the way out". The hang tests therefore show that every extra
delivery is accounted for by a row that records more than one attempt, and that nothing else
was duplicated. A partner receives such a retry under the same ``webhook-id`` (Standard
Webhooks), so it can drop it; an SMS cannot be unsent, which is why the Twilio timeout is kept
well above Twilio's normal answer time in production (10 s).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import gc
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from notifications.models import Notification
from notifications.sms import TwilioTransport
from notifications.transports import EmailTransport, WebhookTransport
from partners.models import Partner
from tests.conftest import ADMIN_TOKEN, Database, World
from tests.support.smtp import SMTPSink
from tests.support.twilio_double import TwilioDouble
from tests.support.webhook_receiver import LOCAL_RECEIVERS, WebhookReceiver
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from tracker.worker import Worker

PUBLIC = "http://baton.test"
SENDER = "Baton <baton@baton.test>"
PROVIDER_TIMEOUT = 1.5  # seconds the transports wait for an answer (10 s in production)
HANG = 30.0  # seconds a hanging double holds its answer (released at recovery)
FAST_ENOUGH = 1.0  # seconds: an API answer slower than this during an outage fails the test
FINAL = {"sms": "sent", "email": "sent", "webhook": "delivered"}


@dataclass(frozen=True)
class Fault:
    channel: str
    inject: Callable[[Rig], None]
    recover: Callable[[Rig], None]
    hangs: bool = False


FAULTS = {
    "smtp-down": Fault("email", lambda r: r.smtp.stop(), lambda r: r.smtp.start()),
    "smtp-451": Fault("email", lambda r: r.smtp.fail_with(451), lambda r: r.smtp.recover()),
    "twilio-500": Fault("sms", lambda r: r.twilio.fail_with(500), lambda r: r.twilio.recover()),
    "twilio-refused": Fault("sms", lambda r: r.twilio.stop(), lambda r: r.twilio.start()),
    "twilio-hang": Fault("sms", lambda r: r.twilio.hang(HANG), lambda r: r.twilio.recover(), hangs=True),
    "webhook-500": Fault("webhook", lambda r: r.receiver.fail_with(500), lambda r: r.receiver.recover()),
    "webhook-refused": Fault("webhook", lambda r: r.receiver.refuse(), lambda r: r.receiver.accept()),
    "webhook-hang": Fault("webhook", lambda r: r.receiver.hang(HANG), lambda r: r.receiver.recover(), hangs=True),
}


@pytest.fixture
def clock() -> FrozenClock:
    # Monday 2 November 2026, 10:00 in New York: SMS are not held for the customer's night.
    return FrozenClock(dt.datetime(2026, 11, 2, 15, 0, tzinfo=UTC))


@pytest.fixture
def settings(db: Database, twilio: TwilioDouble, smtp: SMTPSink) -> Settings:
    return Settings(
        database_url=db.url, admin_token=ADMIN_TOKEN, public_base_url=PUBLIC, workers_in_process=False,
        **twilio.settings(), smtp_url=smtp.url, email_from=SENDER,
    )


class Rig:
    """The app's outbox, a worker with short provider timeouts, and the three receiving doubles."""

    def __init__(self, world: World, settings: Settings, twilio: TwilioDouble, smtp: SMTPSink,
                 receiver: WebhookReceiver) -> None:
        self.world, self.twilio, self.smtp, self.receiver = world, twilio, smtp, receiver
        self.sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
        self.worker = Worker(
            sessionmaker=self.sessionmaker, clock=world.clock, settings=settings,
            transports={
                "sms": TwilioTransport(account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                                       sender=twilio.phone_number, status_callback=f"{PUBLIC}/hooks/twilio/status",
                                       api_base=twilio.url, timeout=PROVIDER_TIMEOUT),
                "email": EmailTransport(url=smtp.url, sender=SENDER, timeout=PROVIDER_TIMEOUT),
                "webhook": WebhookTransport(timeout=PROVIDER_TIMEOUT, allow_hosts=LOCAL_RECEIVERS),
            },
        )

    async def rows(self) -> list[Notification]:
        async with self.sessionmaker() as session:
            return list((await session.scalars(select(Notification).order_by(Notification.id))).all())

    async def waiting(self) -> int:
        return sum(1 for row in await self.rows() if row.state in ("pending", "sending"))

    def accepted(self, channel: str) -> int:
        return {"sms": len(self.twilio.messages), "email": len(self.smtp.messages),
                "webhook": len(self.receiver.received)}[channel]


@pytest.fixture
async def rig(world: World, settings: Settings, twilio: TwilioDouble, smtp: SMTPSink) -> AsyncIterator[Rig]:
    async with world.client._transport.app.state.runtime.sessionmaker() as session:  # type: ignore[attr-defined]
        lh = await session.get(Partner, "lh")
        assert lh is not None and lh.webhook_secret
        secret = lh.webhook_secret
        with WebhookReceiver(secret) as receiver:
            lh.webhook_url = receiver.url
            await session.commit()
            rig = Rig(world, settings, twilio, smtp, receiver)
            yield rig
            await rig.worker.close()


async def _signed_update(world: World, ref: str, n: int) -> float:
    started = time.perf_counter()
    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events",
                                      json_body={"status": "located", "message": f"Your bag is in Frankfurt ({n})."})
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.text
    return elapsed


async def _queue_work(world: World) -> list[str]:
    """Two cases (customer SMS and email, lh's case.opened webhooks) and a nudge (webhook, ops email)."""
    refs = []
    for phone in ("+14155550100", "+14155550101"):
        customer = {"name": "Ada Lovelace", "phone": phone, "email": f"{phone[1:]}@example.com", "locale": "en",
                    "timezone": "America/New_York"}
        case = await world.open_case(customer=customer)
        refs.append(case["ref"])
    nudge = await world.as_admin("POST", f"/v1/cases/{refs[0]}/parties/lh/nudges", json_body={"note": "Where is it?"})
    assert nudge.status_code == 201, nudge.text
    return refs


async def _provider_blocked(rig: Rig, fault: Fault) -> None:
    """Until the hanging double holds at least one request: the round is now waiting on it."""
    if fault.channel == "sms":
        await asyncio.to_thread(rig.twilio.wait_for, 1, 10.0)
    else:
        await rig.receiver.wait_for_async(1, 10.0)


def _delivered_at_double(rig: Rig, channel: str) -> collections.Counter[str]:
    """How many times each delivery arrived, by the id Baton sent it under."""
    if channel == "sms":
        return collections.Counter(m["sid"] for m in rig.twilio.messages)
    if channel == "email":
        return collections.Counter(str(m["Message-ID"]).strip("<>").partition("@")[0] for m in rig.smtp.messages)
    return collections.Counter(r.webhook_id for r in rig.receiver.received if r.verified)


def _key(row: Notification) -> str:
    # The id each double knows a delivery by: Twilio's SID, else Baton's own message id.
    return (row.provider_id or "") if row.channel == "sms" else row.message_id


async def _break_then_recover(world: World, rig: Rig, fault: Fault) -> list[float]:
    """Queue work on a broken provider, serve signed updates meanwhile, recover, drain. The API latencies."""
    fault.inject(rig)
    refs = await _queue_work(world)

    # A dispatcher round runs into the broken provider while partners keep posting signed updates.
    gc.collect()
    gc.disable()  # a collection pause of the test process is not the app's latency
    try:
        round_task = asyncio.create_task(rig.worker.run_round())
        if fault.hangs:
            await _provider_blocked(rig, fault)
        latencies, while_blocked = [], 0
        for n in range(4):
            latencies.append(await _signed_update(world, refs[n % 2], n))
            while_blocked += not round_task.done()
        await round_task
    finally:
        gc.enable()

    assert max(latencies) < FAST_ENOUGH, f"API answers during the outage took {latencies}"
    if fault.hangs:
        assert while_blocked >= 1, "updates were answered while the round waited on the hanging provider"
    rows = await rig.rows()
    broken = [r for r in rows if r.channel == fault.channel]
    assert broken, f"the scenario queued nothing on {fault.channel}"
    assert all(r.state == "pending" and r.last_error for r in broken if r.attempts), \
        "a failed delivery stays queued, with its attempt and error recorded"
    assert not [r for r in rows if r.state in ("dead", "failed")], "nothing is given up during a short outage"
    for other in {"sms", "email", "webhook"} - {fault.channel}:
        due = [r for r in rows if r.channel == other and r.attempts]
        assert due and all(r.state == FINAL[other] for r in due), f"{other} must not wait for {fault.channel}"
    if not fault.hangs:
        assert rig.accepted(fault.channel) == 0
        world.clock.advance(minutes=1)  # past the first retry delay (5 s): the outage goes on
        await rig.worker.run_round()
        assert all(r.state == "pending" for r in await rig.rows() if r.channel == fault.channel and r.attempts)

    fault.recover(rig)
    for _ in range(15):  # retry delays: 5 s, 5 min, 30 min (±20 %): the clock moves, nobody sleeps
        world.clock.advance(minutes=10)
        await rig.worker.run_round()
        if await rig.waiting() == 0:
            break
    rows = await rig.rows()
    assert await rig.waiting() == 0, "the outbox drained after recovery"
    assert {r.state for r in rows} <= set(FINAL.values()), {(r.id, r.channel, r.state, r.last_error) for r in rows}
    return latencies


def _count(rig: Rig, rows: list[Notification], channel: str) -> tuple[list[str], int, set[str]]:
    """(rows the double never got, deliveries beyond one per row, deliveries no row accounts for)."""
    mine = [r for r in rows if r.channel == channel]
    arrived = _delivered_at_double(rig, channel)
    lost = [f"{channel} row {r.id} ({r.kind})" for r in mine if arrived[_key(r)] == 0]
    return lost, sum(arrived.values()) - len(mine), set(arrived) - {_key(r) for r in mine}


def _report(name: str, rows: list[Notification], latencies: list[float], duplicates: int) -> None:
    print(f"fault {name}: {len(rows)} notifications, {sum(r.attempts - 1 for r in rows)} failed attempts, "
          f"lost 0, duplicated {duplicates}, slowest API answer during the outage {max(latencies):.3f} s")


OUTAGES = [name for name, fault in FAULTS.items() if not fault.hangs]
HANGS = [name for name, fault in FAULTS.items() if fault.hangs]


@pytest.mark.parametrize("name", OUTAGES)
async def test_while_a_provider_is_down_the_api_answers_and_afterwards_every_notification_arrives_exactly_once(
    world: World, rig: Rig, name: str
) -> None:
    latencies = await _break_then_recover(world, rig, FAULTS[name])

    rows = await rig.rows()
    for channel in ("sms", "email", "webhook"):
        lost, extra, unknown = _count(rig, rows, channel)
        assert not lost, f"lost: {lost}"
        assert extra == 0 and not unknown, f"{channel}: {extra} duplicated deliveries, unaccounted: {unknown}"
    assert rig.twilio.duplicates() == {} and rig.receiver.duplicates() == {}
    _report(name, rows, latencies, 0)


@pytest.mark.parametrize("name", HANGS)
async def test_a_hanging_provider_blocks_no_request_and_duplicates_only_the_deliveries_it_timed_out_on(
    world: World, rig: Rig, name: str
) -> None:
    fault = FAULTS[name]
    latencies = await _break_then_recover(world, rig, fault)

    rows = await rig.rows()
    duplicated = 0
    for channel in ("sms", "email", "webhook"):
        lost, extra, unknown = _count(rig, rows, channel)
        assert not lost, f"lost: {lost}"
        if channel != fault.channel:
            assert extra == 0 and not unknown, f"{channel}: {extra} duplicated deliveries, unaccounted: {unknown}"
            continue
        # The double accepted what the client gave up on: each extra delivery is a recorded retry.
        retried = sum(r.attempts - 1 for r in rows if r.channel == channel)
        assert 1 <= extra <= retried, f"{extra} extra {channel} deliveries for {retried} recorded retries"
        duplicated = extra
        if channel == "webhook":
            assert not unknown, "a retried webhook keeps its webhook-id, so the partner can drop the copy"
            assert set(rig.receiver.duplicates()) <= {r.message_id for r in rows if r.attempts > 1}
    _report(name, rows, latencies, duplicated)
