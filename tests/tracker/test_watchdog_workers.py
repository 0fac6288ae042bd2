"""Two `baton worker` processes sweep the same 10,000 due parties on PostgreSQL: each flagged once.

The parties are seeded with bulk inserts, already due by the real wall clock (the worker
processes use the system clock), so one sweep makes each of them late, and none escalates yet.
To keep the run short, the partners of one party in ten have a webhook URL (a real receiver)
and an ops email (a real SMTP server); the others are flagged without being told.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import os
import random
import secrets
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

import tracker.watchdog as watchdog_module
from notifications.models import Notification
from partners.models import Partner
from partners.service import new_webhook_secret
from tests.conftest import Database
from tests.support import _http
from tests.support.smtp import SMTPSink
from tests.support.webhook_receiver import LOCAL_RECEIVERS, WebhookReceiver
from tracker.chain import GENESIS
from kernel.clock import UTC, SystemClock
from kernel.config import Settings
from kernel.db import make_engine, make_sessionmaker
from tracker.models import Case, Event, Handoff, Party
from tracker.refs import new_ref
from tracker.verify import verify_case
from tracker.watchdog import Watchdog, WatchdogConfig

PARTIES = 10_000
PARTNERS = 20
TOLD = 2  # partners 00 and 01 have a webhook URL and an ops email: a tenth of the parties
CADENCE = dt.timedelta(hours=6)
REPO = Path(__file__).resolve().parents[2]


def partner_id(n: int) -> str:
    return f"partner-{n:02d}"


async def seed(engine: AsyncEngine, *, parties: int, now: dt.datetime, webhook_url: str | None = None,
               secret: str | None = None) -> list[str]:
    """``parties`` open baggage cases, each with one responsible party due an hour ago (by ``now``).

    The party of the n-th case (refs[n]) belongs to partner n % PARTNERS.
    """
    due = now - dt.timedelta(hours=1)
    refs: list[str] = []
    while len(refs) < parties:
        refs = list(dict.fromkeys([*refs, *(new_ref("BAG") for _ in range(parties - len(refs)))]))
    async with engine.begin() as conn:
        await conn.execute(insert(Partner), [
            {"id": partner_id(n), "name": f"Partner {n:02d}", "kind": "airline",
             "ops_email": f"ops@{partner_id(n)}.example" if n < TOLD else None,
             "webhook_url": webhook_url if n < TOLD else None, "webhook_secret": secret,
             "default_cadence_seconds": int(CADENCE.total_seconds()), "timezone": "UTC", "created_at": now}
            for n in range(PARTNERS)
        ])
        cases = []
        for n, ref in enumerate(refs):
            token = secrets.token_urlsafe(24)
            cases.append({
                "ref": ref, "type": "baggage", "title": f"Delayed bag {n}", "status": "reported",
                "owner_id": partner_id(n % PARTNERS), "customer_name": "Ada Lovelace", "customer_locale": "en",
                "customer_timezone": "UTC", "customer_channels": [], "sms_opted_out": False,
                "email_opted_out": False, "status_token": token, "status_token_locator": token[:8],
                "external_refs": {}, "opened_at": due - CADENCE, "last_seq": 0, "last_hash": GENESIS,
                "updated_at": due - CADENCE,
            })
        ids = (await conn.execute(insert(Case).returning(Case.id, sort_by_parameter_order=True), cases)).scalars().all()
        await conn.execute(insert(Party), [
            {"case_id": case_id, "partner_id": partner_id(n % PARTNERS), "role": "carrier", "responsible": True,
             "cadence_seconds": int(CADENCE.total_seconds()), "state": "on_track", "joined_at": due - CADENCE,
             "next_update_due": due, "watch_at": due, "reminders_sent": 0}
            for n, case_id in enumerate(ids)
        ])
    return refs


async def run_workers(database_url: str, smtp_url: str, count: int = 2) -> None:
    """``count`` concurrent ``baton worker --once`` processes; each must exit cleanly."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BATON_")}
    env.update(BATON_DATABASE_URL=database_url, BATON_SMTP_URL=smtp_url, BATON_LOG_LEVEL="WARNING",
               BATON_WEBHOOK_ALLOW_HOSTS=LOCAL_RECEIVERS)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tracker.cli", "worker", "--once", cwd=REPO, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(count)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in processes))
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr.decode()[-3000:]


async def unsent(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(
            select(func.count()).select_from(Notification).where(Notification.state.in_(("pending", "sending")))
        )


@pytest.mark.slow
@pytest.mark.postgres
async def test_two_workers_flag_each_of_10000_due_parties_once_and_send_each_reminder_once(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two workers open up to 64 connections at once; the double's default listen backlog is 5.
    monkeypatch.setattr(_http.Server, "request_queue_size", 1024)
    secret = new_webhook_secret()
    engine = make_engine(Settings(database_url=pg_db.url))
    with WebhookReceiver(secret) as receiver, SMTPSink() as sink:
        try:
            refs = await seed(engine, parties=PARTIES, now=dt.datetime.now(UTC), webhook_url=receiver.url,
                              secret=secret)
            told = {ref for n, ref in enumerate(refs) if n % PARTNERS < TOLD}
            started = time.monotonic()
            rounds = 0
            while True:  # a round sweeps everything but sends at most 50 batches of 200 per worker
                await run_workers(pg_db.url, sink.url)
                rounds += 1
                if await unsent(engine) == 0:
                    break
                assert rounds < 4, "the outbox is not draining"
            print(f"\n{PARTIES} parties: {rounds} round(s) of two workers in {time.monotonic() - started:.1f} s")

            async with engine.connect() as conn:
                late_events = Counter((await conn.execute(
                    select(Event.case_id).where(Event.type == "party.late"))).scalars().all())
                parties = Counter((await conn.execute(select(Party.state, Party.reminders_sent))).all())
                notes = (await conn.execute(
                    select(Notification.channel, Notification.kind, Notification.state, Case.ref,
                           Notification.message_id).join(Case, Case.id == Notification.case_id))).all()
            assert len(late_events) == PARTIES and max(late_events.values()) == 1
            assert parties == {("late", 1): PARTIES}
            assert Counter((n.channel, n.kind, n.state) for n in notes) == {
                ("webhook", "party.late", "delivered"): len(told),
                ("email", "party.late", "sent"): len(told),
            }
            for channel in ("webhook", "email"):
                assert {n.ref for n in notes if n.channel == channel} == told

            assert len(receiver.received) == len(told) and receiver.duplicates() == {}
            assert all(r.verified for r in receiver.received)
            assert {r.webhook_id for r in receiver.received} == {n.message_id for n in notes if n.channel == "webhook"}
            assert {r.payload["data"]["case"]["ref"] for r in receiver.received} == told
            emails = sink.messages
            assert len(emails) == len(told) and len({m["Message-ID"] for m in emails}) == len(told)
            assert {ref for m in emails for ref in refs_in(m["Subject"])} == told

            async with make_sessionmaker(engine)() as session:
                for ref in random.sample(refs, 200):
                    result = await verify_case(session=session, ref=ref)
                    assert result.ok and result.events == 1, result
        finally:
            await engine.dispose()


def refs_in(subject: str) -> list[str]:
    return [word.strip("():,") for word in subject.split() if word.startswith("BAG-")]


# ---------------------------------------------------------------- the race, made to happen

_slowed = contextvars.ContextVar("slowed", default=None)


@pytest.mark.postgres
@pytest.mark.parametrize("due", [Party, Handoff], ids=["party", "handoff"])
async def test_worker_whose_batch_straddles_another_workers_commit_flags_nothing_twice(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch, due: type
) -> None:
    """Worker B takes its snapshot, worker A flags the row and commits, then B locks the row.

    Two real workers hit that interleaving now and then: the window is the few milliseconds
    between a batch query's snapshot and its row locks. A sleep put there in B's query only (a
    constant filter, which PostgreSQL evaluates once, before reading any row) makes it happen
    every time.
    """
    original = watchdog_module.skip_locked

    def locked(session: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        query = original(session, query, *args, **kwargs)
        if _slowed.get() is query.column_descriptions[0]["entity"]:
            query = query.where(func.pg_sleep(1).is_not(None))
        return query

    monkeypatch.setattr(watchdog_module, "skip_locked", locked)
    engine = make_engine(Settings(database_url=pg_db.url))
    try:
        now = dt.datetime.now(UTC)
        [ref] = await seed(engine, parties=1, now=now)
        async with engine.begin() as conn:
            case_id = await conn.scalar(select(Case.id).where(Case.ref == ref))
            if due is Handoff:  # the carrier is not due; its handoff to a courier is unaccepted past its window
                await conn.execute(update(Party).values(next_update_due=now + CADENCE, watch_at=now + CADENCE))
                await conn.execute(insert(Party).values(
                    case_id=case_id, partner_id=partner_id(1), role="courier", responsible=False,
                    cadence_seconds=3 * 3600, state="on_track", joined_at=now - CADENCE, reminders_sent=0))
                # (a cadence of 3 h: its escalation, one cadence after accept_by, is not due yet)
                await conn.execute(insert(Handoff).values(
                    case_id=case_id, from_partner_id=partner_id(0), to_partner_id=partner_id(1),
                    state="requested", requested_at=now - dt.timedelta(hours=3),
                    accept_by=now - dt.timedelta(hours=1)))

        def watchdog() -> Watchdog:
            return Watchdog(sessionmaker=make_sessionmaker(engine, settings=Settings(database_url=pg_db.url)),
                            clock=SystemClock(), config=WatchdogConfig())

        token = _slowed.set(due)
        b = asyncio.create_task(watchdog().sweep())  # the task keeps the context it was created in
        _slowed.reset(token)
        await asyncio.sleep(0.3)
        a = await watchdog().sweep()
        assert not b.done(), "B's query was not slowed down: the test proves nothing"
        b_result = await b

        assert a.total() == 1 and b_result.total() == 0
        async with engine.connect() as conn:
            kinds = Counter((await conn.execute(select(Event.type).where(Event.case_id == case_id))).scalars().all())
        assert kinds == ({"party.late": 1} if due is Party else {"handoff.overdue": 1, "party.late": 1})
    finally:
        await engine.dispose()
