"""The dispatcher: claims due outbox rows, sends them, records what happened.

1. Claim: one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`` marks up to
   ``batch`` due rows ``sending``, counts the attempt, and moves their next attempt one lease
   ahead. The claim commits before anything is sent, so a process that dies mid-batch leaves
   rows that become due again when the lease runs out: nothing acknowledged is lost.
2. Send: concurrently, bounded by ``concurrency``, each through its channel's transport.
3. Record: in one transaction, each row conditionally on still being ``sending`` with the same
   attempt count (a row reclaimed after a lease expiry is not overwritten). Transient failures
   move the next attempt forward on the retry schedule with jitter; past the schedule the row
   is dead-lettered. Permanent failures fail at once and may fall back to another channel.
   A webhook's outcome is recorded on its own as soon as it is known, with its partner's
   circuit breaker (below), so that one slow receiver holds back no other partner's outcome.

Lanes: ``channels`` / ``exclude_channels`` restrict what a dispatcher claims. The worker runs
webhooks in a lane of their own, so customer SMS and email never wait behind a partner's server.

Circuit breaker, per partner (``partners.webhook_failures``, ``webhook_paused_until``): every
failed webhook attempt counts, a delivered one resets the count and closes the breaker. From
``BREAKER_THRESHOLD`` consecutive failures on, a failure that finds the partner not paused
pauses its deliveries for a period that doubles with every further ``BREAKER_THRESHOLD``
failures (``breaker_pause``); failures of attempts already in flight do not lengthen a pause.
A paused row is never dropped: when it comes due it is deferred to the end of the pause without
counting an attempt. Other partners' deliveries are not touched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifications.models import Notification
from notifications.transports import Outgoing, Sent, Transport, TransportError
from partners.models import Partner
from kernel.clock import Clock
from kernel.db import Statement, UTCDateTime, is_postgres
from kernel.metrics import DELIVERIES

log = logging.getLogger("baton.dispatcher")

# Standard Webhooks' recommended schedule: about 27.6 hours in all before dead-lettering.
RETRY_SCHEDULE = (
    dt.timedelta(seconds=5),
    dt.timedelta(minutes=5),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=2),
    dt.timedelta(hours=5),
    dt.timedelta(hours=10),
    dt.timedelta(hours=10),
)
LEASE = dt.timedelta(minutes=2)
BREAKER_THRESHOLD = 5
BREAKER_FIRST_PAUSE = dt.timedelta(minutes=1)
BREAKER_LONGEST_PAUSE = dt.timedelta(hours=6)
PAUSED = "receiver paused after repeated failures"


@dataclass(frozen=True, slots=True)
class Defer:
    """Not now (quiet hours, daily cap): try again then, without counting an attempt."""

    until: dt.datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Suppress:
    """Never (opted out, nothing to say): the row ends ``suppressed``."""

    reason: str


Prepared = Outgoing | Defer | Suppress | None


@dataclass(frozen=True, slots=True)
class Outcome:
    row: Notification
    message: Outgoing | None = None
    sent: Sent | None = None
    error: TransportError | None = None
    logged: bool = False
    deferred: Defer | None = None
    suppressed: Suppress | None = None


# Called in the recording transaction after a permanent failure (customer channel fallback).
FailureHook = Callable[[AsyncSession, Notification, TransportError, dt.datetime], Awaitable[None]]
# Renders rows whose content is produced at send time (customer messages with the latest state).
Renderer = Callable[[AsyncSession, Sequence[Notification], dt.datetime], Awaitable[dict[int, Prepared]]]


def retry_delay(attempts: int, *, rng: random.Random | None = None) -> dt.timedelta | None:
    """Delay before the next attempt after ``attempts`` failed ones; None once the schedule is spent."""
    if attempts > len(RETRY_SCHEDULE):
        return None
    base = RETRY_SCHEDULE[attempts - 1]
    # Jitter only lengthens a delay: the schedule's sum (about 27.6 h) is the floor of the retry
    # horizon, which SPEC.md wants to be at least 24 hours (0.8-1.2 could make it 22 h).
    jitter = (rng or random).uniform(1.0, 1.2)
    return base * jitter


def breaker_pause(failures: int) -> dt.timedelta | None:
    """How long a partner's webhooks wait after ``failures`` consecutive failures; None below the threshold."""
    if failures < BREAKER_THRESHOLD:
        return None
    doublings = min((failures - BREAKER_THRESHOLD) // BREAKER_THRESHOLD, 16)
    return min(BREAKER_FIRST_PAUSE * 2 ** doublings, BREAKER_LONGEST_PAUSE)


class Dispatcher:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        transports: dict[str, Transport],
        batch: int = 200,
        concurrency: int = 32,
        on_permanent_failure: FailureHook | None = None,
        renderer: Renderer | None = None,
        lease: dt.timedelta = LEASE,
        channels: Collection[str] | None = None,
        exclude_channels: Collection[str] = (),
    ) -> None:
        self.sessionmaker = sessionmaker
        self.lease = lease
        self.clock = clock
        self.transports = transports
        self.batch = batch
        self.concurrency = concurrency
        self.on_permanent_failure = on_permanent_failure
        self.renderer = renderer
        self.channels = tuple(channels) if channels is not None else None
        self.exclude_channels = tuple(exclude_channels)

    async def run_once(self) -> int:
        """One batch: claim, send, record. Returns how many rows were handled."""
        now = self.clock.now()
        async with self.sessionmaker() as session:
            rows = await self._claim(session, now)
            if not rows:
                await session.commit()
                return 0
            outgoing = await self._prepare(session, rows, now)
            await session.commit()
        gate = asyncio.Semaphore(self.concurrency)

        async def attempt(row: Notification) -> Outcome:
            message = outgoing.get(row.id)
            if isinstance(message, Defer):
                return Outcome(row, deferred=message)
            if isinstance(message, Suppress):
                return Outcome(row, suppressed=message)
            if message is None:
                return Outcome(row, error=TransportError("nothing to send", permanent=True))
            transport = self.transports.get(row.channel)
            if transport is None:
                return Outcome(row, message, logged=True)
            async with gate:
                try:
                    return Outcome(row, message, sent=await transport.send(message))
                except TransportError as exc:
                    return Outcome(row, message, error=exc)
                except Exception as exc:  # a bug in a transport must not lose the row
                    log.exception("transport %s crashed on notification %s", row.channel, row.id)
                    return Outcome(row, message, error=TransportError(f"internal error: {type(exc).__name__}"))

        async def attempt_and_record(row: Notification) -> Outcome | None:
            outcome = await attempt(row)
            if row.channel != "webhook":
                return outcome
            # Written now, not with the batch: the other rows' outcomes must not wait for a slow receiver.
            async with self.sessionmaker() as session:
                if await self._record(session, outcome, self.clock.now()):
                    await self._breaker(session, outcome, self.clock.now())
                await session.commit()
            return None

        outcomes = await asyncio.gather(*(attempt_and_record(row) for row in rows))
        batch = [outcome for outcome in outcomes if outcome is not None]
        if batch:
            async with self.sessionmaker() as session:
                for outcome in batch:
                    await self._record(session, outcome, self.clock.now())
                await session.commit()
        return len(rows)

    async def drain(self, *, max_batches: int = 1000) -> int:
        """Run batches until nothing is due (tests and the benchmark use this)."""
        total = 0
        for _ in range(max_batches):
            handled = await self.run_once()
            total += handled
            if handled == 0:
                break
        return total

    async def _claim(self, session: AsyncSession, now: dt.datetime) -> list[Notification]:
        due = (
            select(Notification.id)
            .where(Notification.state.in_(("pending", "sending")), Notification.next_attempt_at <= now)
            .order_by(Notification.next_attempt_at)
            .limit(self.batch)
        )
        if self.channels is not None:
            due = due.where(Notification.channel.in_(self.channels))
        if self.exclude_channels:
            due = due.where(Notification.channel.not_in(self.exclude_channels))
        if is_postgres(session):
            due = due.with_for_update(skip_locked=True)
        claim = (
            update(Notification)
            .where(Notification.id.in_(due.scalar_subquery()))
            .values(state="sending", attempts=Notification.attempts + 1, next_attempt_at=now + self.lease,
                    updated_at=now)
            .returning(Notification)
            .execution_options(synchronize_session=False)
        )
        return list((await session.scalars(claim)).all())

    async def _prepare(self, session: AsyncSession, rows: list[Notification], now: dt.datetime) -> dict[int, Prepared]:
        prepared: dict[int, Prepared] = {}
        partner_ids = {r.partner_id for r in rows if r.channel == "webhook" and r.partner_id}
        secrets: dict[str, str | None] = {}
        paused: dict[str, dt.datetime] = {}
        if partner_ids:
            result = await session.execute(select(Partner.id, Partner.webhook_secret, Partner.webhook_paused_until)
                                           .where(Partner.id.in_(partner_ids)))
            for pid, secret, paused_until in result.all():
                secrets[pid] = secret
                if paused_until is not None and paused_until > now:
                    paused[pid] = paused_until
        deferred = [r for r in rows if r.body_text is None and r.channel != "webhook"]
        if deferred and self.renderer is not None:
            prepared.update(await self.renderer(session, deferred, now))
        for row in rows:
            if row.id in prepared:
                continue
            if row.channel == "webhook" and row.partner_id in paused:
                prepared[row.id] = Defer(until=paused[row.partner_id], reason=PAUSED)
                continue
            prepared[row.id] = Outgoing(
                id=row.id,
                channel=row.channel,
                kind=row.kind,
                recipient=row.recipient,
                message_id=row.message_id,
                subject=row.subject,
                body_text=row.body_text,
                body_html=row.body_html,
                payload=row.payload,
                secret=secrets.get(row.partner_id or "") if row.channel == "webhook" else None,
                headers=(row.payload or {}).get("headers") if row.channel == "email" else None,
            )
        return prepared

    async def _record(self, session: AsyncSession, outcome: Outcome, now: dt.datetime) -> bool:
        """Write one outcome; False when another run reclaimed the row meanwhile (nothing written)."""
        row = outcome.row
        values: dict[str, object] = {"updated_at": now}
        if outcome.message is not None and row.body_text is None:
            # Rendered at send time: keep what was (or would have been) sent.
            values.update(recipient=outcome.message.recipient, subject=outcome.message.subject,
                          body_text=outcome.message.body_text, body_html=outcome.message.body_html)
        if outcome.deferred is not None:
            values.update(state="pending", next_attempt_at=outcome.deferred.until, attempts=row.attempts - 1,
                          last_error=f"deferred: {outcome.deferred.reason}")
        elif outcome.suppressed is not None:
            values.update(state="suppressed", next_attempt_at=None, last_error=outcome.suppressed.reason)
        elif outcome.logged:
            values.update(state="logged", next_attempt_at=None)
        elif outcome.sent is not None:
            values.update(
                state="delivered" if outcome.sent.delivered else "sent",
                sent_at=now,
                delivered_at=now if outcome.sent.delivered else None,
                provider_id=outcome.sent.provider_id,
                next_attempt_at=None,
                last_error=None,
            )
        else:
            error = outcome.error or TransportError("unknown failure")
            delay = None if error.permanent else retry_delay(row.attempts)
            if delay is None:
                values.update(state="failed" if error.permanent else "dead", next_attempt_at=None)
            else:
                values.update(state="pending", next_attempt_at=now + delay)
            values["last_error"] = str(error)[:1000]
        # Only if this run still holds the claim (same attempt, still sending): see the lease.
        kept = await _outcome_statement(tuple(values)).first(
            session, {**values, "id": row.id, "claimed_attempts": row.attempts})
        if kept is None:
            log.warning("notification %s was reclaimed while being sent; its outcome is kept by the other run", row.id)
            return False
        DELIVERIES.labels(row.channel, str(values.get("state", "unknown"))).inc()
        if outcome.error is not None and outcome.error.permanent and self.on_permanent_failure is not None:
            await self.on_permanent_failure(session, row, outcome.error, now)
        return True

    async def _breaker(self, session: AsyncSession, outcome: Outcome, now: dt.datetime) -> None:
        """Count a partner's webhook attempt in its circuit breaker: a delivery closes it, a failure counts."""
        partner_id = outcome.row.partner_id
        if partner_id is None or outcome.message is None:
            return  # nothing was attempted (deferred, suppressed): the receiver was not tried
        partner = Partner.__table__.c
        if outcome.sent is not None:
            await session.execute(
                update(Partner.__table__)
                .where(partner.id == partner_id,
                       or_(partner.webhook_failures != 0, partner.webhook_paused_until.is_not(None)))
                .values(webhook_failures=0, webhook_paused_until=None))
            return
        if outcome.error is None:
            return
        # One statement counts, so that concurrent failures of one partner all count.
        failures = await session.scalar(
            update(Partner.__table__).where(partner.id == partner_id)
            .values(webhook_failures=partner.webhook_failures + 1).returning(partner.webhook_failures))
        pause = breaker_pause(failures or 0)
        if pause is None:
            return
        opened = await session.scalar(
            update(Partner.__table__)
            .where(partner.id == partner_id,
                   or_(partner.webhook_paused_until.is_(None), partner.webhook_paused_until <= now))
            .values(webhook_paused_until=now + pause).returning(partner.id))
        if opened is not None:
            log.warning("webhooks to partner %s paused for %s after %s consecutive failures", partner_id, pause,
                        failures)


_DATETIME_COLUMNS = {"updated_at", "next_attempt_at", "sent_at", "delivered_at"}


@functools.cache
def _outcome_statement(columns: tuple[str, ...]) -> Statement:
    """The outcome UPDATE for one set of columns (a handful of shapes), built once and prepared.

    RETURNING rather than rowcount: psycopg's async adapter does not report it reliably.
    """
    sets = ", ".join(f"{column} = :{column}" for column in columns)
    return Statement(
        f"UPDATE notifications SET {sets} WHERE id = :id AND state = 'sending' AND attempts = :claimed_attempts "
        "RETURNING id",
        **{column: UTCDateTime() for column in columns if column in _DATETIME_COLUMNS},
    )


async def resend(*, session: AsyncSession, notification_id: int, now: dt.datetime) -> Notification | None:
    """Put a dead or failed row back in the queue with a fresh retry schedule (staff action).

    A resent webhook is tried now even if its partner's breaker is open: staff asked for it. The
    failure count stays, so if the receiver still fails, the next failure pauses it again.
    """
    result = await session.execute(
        update(Notification)
        .where(Notification.id == notification_id, Notification.state.in_(("dead", "failed")))
        .values(state="pending", attempts=0, next_attempt_at=now, updated_at=now, last_error=None)
        .returning(Notification)
        .execution_options(synchronize_session=False)
    )
    row = result.scalar_one_or_none()
    if row is not None and row.channel == "webhook" and row.partner_id is not None:
        await session.execute(update(Partner.__table__).where(Partner.__table__.c.id == row.partner_id)
                              .values(webhook_paused_until=None))
    return row
