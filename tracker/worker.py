"""Background work, in ``baton worker`` processes or inside the web process (embedded mode).

Each round: the watchdog sweeps what is due, the dispatcher drains the outbox, and housekeeping
forgets expired nonces and idempotency records. Webhooks go in a lane of their own (their own
dispatcher, and in ``run_forever`` their own loop): a partner's slow receiver delays only that
partner's webhooks, never a customer's SMS or email, another round of the watchdog, or housekeeping.
Every job is safe to run in several processes at once: claims are ``FOR UPDATE SKIP LOCKED`` or conditional updates, deletes only delete.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifications.dispatcher import Dispatcher
from notifications.sms import TwilioTransport
from notifications.transports import EmailTransport, Transport, WebhookTransport
from partners.service import purge_nonces
from kernel.clock import Clock
from kernel.config import Settings
from tracker.customer import CustomerRenderer, on_permanent_failure
from kernel.db import make_engine, make_sessionmaker
from kernel.metrics import WATCHDOG
from tracker.models import IdempotencyRecord
from tracker.scans import purge_unmatched
from tracker.sms_inbound import purge_inbound_messages
from tracker.watchdog import Watchdog, WatchdogConfig

log = logging.getLogger("baton.worker")
IDEMPOTENCY_RETENTION = dt.timedelta(hours=48)


def build_transports(settings: Settings) -> dict[str, Transport]:
    """The senders this configuration allows; a channel without one is stored as ``logged``."""
    transports: dict[str, Transport] = {"webhook": WebhookTransport(
        timeout=settings.webhook_deadline_seconds, allow_hosts=settings.webhook_allow_hosts,
        max_answer_bytes=settings.webhook_max_answer_bytes,
    )}
    if settings.smtp_url:
        transports["email"] = EmailTransport(url=settings.smtp_url, sender=settings.email_from)
    if settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from:
        transports["sms"] = TwilioTransport(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            sender=settings.twilio_from,
            status_callback=f"{settings.callback_base_url()}/hooks/twilio/status",
            api_base=settings.twilio_api_base,
        )
    if settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_whatsapp_from:
        sender = settings.twilio_whatsapp_from
        transports["whatsapp"] = TwilioTransport(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            sender=sender if sender.startswith(("whatsapp:", "MG")) else f"whatsapp:{sender}",
            status_callback=f"{settings.callback_base_url()}/hooks/twilio/status",
            api_base=settings.twilio_api_base,
        )
    return transports


async def housekeeping(session: AsyncSession, now: dt.datetime) -> int:
    """Forget spent nonces, idempotency records past their use (clients retry within hours), old MessageSids
    and scans no case has claimed in 30 days."""
    purged = await purge_nonces(session=session, now=now) + await purge_inbound_messages(session=session, now=now)
    purged += await purge_unmatched(session=session, now=now)
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - IDEMPOTENCY_RETENTION)
    )
    return purged + (result.rowcount or 0)


@dataclass
class RoundResult:
    flagged: int
    sent: int
    purged: int


class Worker:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        settings: Settings,
        transports: dict[str, Transport] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock
        config = WatchdogConfig(supervisors_email=settings.supervisors_email,
                                public_base_url=settings.callback_base_url())
        self.watchdog = Watchdog(sessionmaker=sessionmaker, clock=clock, config=config)
        self.transports = transports if transports is not None else build_transports(settings)
        lease = dt.timedelta(seconds=settings.dispatch_lease_seconds)
        self.dispatcher = Dispatcher(
            sessionmaker=sessionmaker,
            clock=clock,
            transports=self.transports,
            renderer=CustomerRenderer(settings),
            on_permanent_failure=on_permanent_failure,
            lease=lease,
            exclude_channels=("webhook",),
        )
        # Webhooks: their own claims, concurrency and deadline (the transport's); see the module doc.
        self.webhooks = Dispatcher(
            sessionmaker=sessionmaker,
            clock=clock,
            transports=self.transports,
            concurrency=settings.webhook_concurrency,
            batch=4 * settings.webhook_concurrency,  # a batch outlives no lease: few rows per deadline
            lease=lease,
            channels=("webhook",),
        )

    async def run_round(self) -> RoundResult:
        """One round of everything: the webhook lane beside the rest, never in front of it."""
        main, webhooks = await asyncio.gather(self._main_round(), self._webhook_round())
        return RoundResult(flagged=main.flagged, sent=main.sent + webhooks.sent, purged=main.purged)

    async def _main_round(self) -> RoundResult:
        sweep = await self.watchdog.sweep()
        for kind, count in sweep.counts().items():
            if count:
                WATCHDOG.labels(kind).inc(count)
        sent = await self.dispatcher.drain(max_batches=50)
        async with self.sessionmaker() as session:
            purged = await housekeeping(session, self.clock.now())
            await session.commit()
        return RoundResult(flagged=sweep.total(), sent=sent, purged=purged)

    async def run_forever(self, *, interval: float) -> None:
        """Rounds until cancelled, the webhook lane in a loop of its own. A failing round is logged
        and retried; it never ends a loop."""
        lanes = [asyncio.create_task(self._loop("worker round", self._main_round, interval)),
                 asyncio.create_task(self._loop("webhook round", self._webhook_round, interval))]
        try:
            await asyncio.gather(*lanes)
        finally:
            for lane in lanes:
                lane.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)

    async def _webhook_round(self) -> RoundResult:
        return RoundResult(flagged=0, sent=await self.webhooks.drain(max_batches=50), purged=0)

    async def _loop(self, name: str, round_: Callable[[], Awaitable[RoundResult]], interval: float) -> None:
        while True:
            try:
                done = await round_()
                if done.flagged or done.sent:
                    log.info("%s: %s flagged, %s sent", name, done.flagged, done.sent)
            except Exception:
                log.exception("%s failed; retrying next round", name)
            await asyncio.sleep(interval)

    async def close(self) -> None:
        for transport in self.transports.values():
            await transport.close()


async def run_worker(*, settings: Settings, clock: Clock, once: bool = False, interval: float = 2.0) -> None:
    """``baton worker``: its own engine; one round, or rounds every ``interval`` seconds."""
    engine = make_engine(settings)
    worker = Worker(sessionmaker=make_sessionmaker(engine, settings=settings), clock=clock, settings=settings)
    try:
        if once:
            await worker.run_round()
        else:
            await worker.run_forever(interval=interval)
    finally:
        await worker.close()
        await engine.dispose()
