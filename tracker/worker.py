"""Background work, in ``baton worker`` processes or inside the web process (embedded mode).

Each round runs every job once, each in its own short transaction. Jobs are safe to run in
several processes at once: they only delete or conditionally update what is due.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from partners.service import purge_nonces
from tracker.clock import Clock
from tracker.config import Settings
from tracker.db import make_engine, make_sessionmaker
from tracker.models import IdempotencyRecord

log = logging.getLogger("baton.worker")
IDEMPOTENCY_RETENTION = dt.timedelta(hours=48)

Job = Callable[[AsyncSession, dt.datetime], Awaitable[int]]


async def purge_idempotency_records(session: AsyncSession, now: dt.datetime) -> int:
    """Forget responses older than the retention: clients retry within hours, not days."""
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - IDEMPOTENCY_RETENTION)
    )
    return result.rowcount or 0


async def _purge_nonces(session: AsyncSession, now: dt.datetime) -> int:
    return await purge_nonces(session=session, now=now)


JOBS: dict[str, Job] = {
    "nonces": _purge_nonces,
    "idempotency": purge_idempotency_records,
}


async def run_round(*, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock) -> dict[str, int]:
    done: dict[str, int] = {}
    for name, job in JOBS.items():
        async with sessionmaker() as session:
            done[name] = await job(session, clock.now())
            await session.commit()
    return done


async def run_loop(
    *, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock, interval: float, once: bool = False
) -> None:
    """Run rounds until cancelled. A failing round is logged and retried; it never ends the loop."""
    while True:
        try:
            done = await run_round(sessionmaker=sessionmaker, clock=clock)
            if any(done.values()):
                log.info("worker round: %s", done)
        except Exception:
            log.exception("worker round failed; retrying next round")
        if once:
            return
        await asyncio.sleep(interval)


async def run_worker(*, settings: Settings, clock: Clock, once: bool = False, interval: float = 5.0) -> None:
    """``baton worker``: its own engine, rounds every ``interval`` seconds."""
    engine = make_engine(settings)
    try:
        await run_loop(sessionmaker=make_sessionmaker(engine), clock=clock, interval=interval, once=once)
    finally:
        await engine.dispose()
