"""Measurements that run inside the benchmark process: the watchdog sweep and the dispatcher."""

from __future__ import annotations

import datetime as dt
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench.seed import queue_sms
from tracker.chain import GENESIS
from kernel.clock import FrozenClock
from kernel.config import Settings
from kernel.db import make_engine, make_sessionmaker


# ---------------------------------------------------------------- watchdog


class SweepBench:
    """``Watchdog.sweep()`` at a frozen instant, reset between runs so each does the same work.

    The reset puts the due parties back on track with ``watch_at`` = their (passed) due time and
    removes what the sweep wrote (events, outbox rows), then VACUUMs and CHECKPOINTs so every run
    starts from the same clean state.
    """

    def __init__(self, *, url: str, libpq_dsn: str, now: dt.datetime, due_party_ids: Sequence[int],
                 due_case_ids: Sequence[int], meter: Any = None) -> None:
        self.meter = meter
        self.cpu: dict[str, float] | None = None
        self.url = url
        self.dsn = libpq_dsn
        self.now = now
        self.due_party_ids = list(due_party_ids)
        self.due_case_ids = list(due_case_ids)

    async def _marks(self, conn: asyncpg.Connection) -> tuple[int, int]:
        events = await conn.fetchval("SELECT coalesce(max(id), 0) FROM events")
        notes = await conn.fetchval("SELECT coalesce(max(id), 0) FROM notifications")
        return int(events), int(notes)

    async def _reset(self, conn: asyncpg.Connection, marks: tuple[int, int]) -> None:
        await conn.execute(
            "UPDATE parties SET state = 'on_track', overdue_since = NULL, escalated_at = NULL, reminders_sent = 0, "
            "customer_told_at = NULL, watch_at = next_update_due WHERE id = ANY($1::bigint[])", self.due_party_ids)
        await conn.execute("DELETE FROM events WHERE id > $1", marks[0])
        await conn.execute("DELETE FROM notifications WHERE id > $1", marks[1])
        await conn.execute("UPDATE cases SET last_seq = 0, last_hash = $2 WHERE id = ANY($1::bigint[])",
                           self.due_case_ids, GENESIS)
        for table in ("parties", "cases", "events", "notifications"):
            await conn.execute(f"VACUUM ANALYZE {table}")
        await conn.execute("CHECKPOINT")

    async def run(self, *, reps: int, parties_total: int, profile_to: Path | None = None) -> dict[str, Any]:
        from tracker.watchdog import Watchdog, WatchdogConfig

        conn = await asyncpg.connect(self.dsn)
        settings = Settings(database_url=self.url)
        engine = make_engine(settings)
        try:
            marks = await self._marks(conn)
            counted = int(await conn.fetchval("SELECT count(*) FROM parties"))
            watchdog = Watchdog(sessionmaker=make_sessionmaker(engine, settings=settings), clock=FrozenClock(self.now),
                                config=WatchdogConfig(supervisors_email="complaints@bench.example"))
            await self._reset(conn, marks)
            await watchdog.sweep()  # warm-up: connections, statement caches, partner/case-type caches
            times, results = [], []
            spy = None
            cpu_total: dict[str, float] = {}
            for rep in range(reps):
                await self._reset(conn, marks)
                if profile_to is not None and rep == 0:
                    spy = _spy_on_self(profile_to)
                before = self.meter.snapshot() if self.meter else None
                started = time.perf_counter()
                result = await watchdog.sweep()
                times.append(time.perf_counter() - started)
                if before is not None:
                    cpu = self.meter.delta(before, self.meter.snapshot())
                    for key, value in cpu.items():
                        cpu_total[key] = cpu_total.get(key, 0.0) + value / reps
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(60)
                    spy = None
                results.append({"late": result.late, "escalated": result.escalated, "visited": result.visited})
            self.cpu = {k: round(v, 2) for k, v in cpu_total.items()} or None
            wrote = {
                "events": int(await conn.fetchval("SELECT count(*) FROM events WHERE id > $1", marks[0])),
                "notifications": int(await conn.fetchval("SELECT count(*) FROM notifications WHERE id > $1", marks[1])),
            }
            await self._reset(conn, marks)
        finally:
            await engine.dispose()
            await conn.close()
        return {
            "parties_total": counted,
            "parties_target": parties_total,
            "due": len(self.due_party_ids),
            "seconds": [round(t, 3) for t in times],
            "median_s": round(statistics.median(times), 3),
            "per_party_ms": round(statistics.median(times) * 1000 / max(len(self.due_party_ids), 1), 3),
            "runs": results,
            "last_run_wrote": wrote,
        }


def _spy_on_self(out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy on this very process (the sweep runs here) until SIGINT."""
    from bench.profile import py_spy

    exe = py_spy()
    if exe is None:
        return None
    spy = subprocess.Popen([exe, "record", "--pid", str(os.getpid()), "--rate", "200", "--format", "raw",
                            "--output", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach
    return spy


# ---------------------------------------------------------------- dispatcher


async def dispatcher_rate(*, settings: Settings, libpq_dsn: str, count: int, case_ids: Sequence[int]) -> dict[str, Any]:
    """``count`` pre-rendered customer SMS, sent by ``Dispatcher.drain()`` to the Twilio double.

    The rows are due at a frozen instant a week ahead, which the running ``baton worker`` (on
    the real clock) will not reach, so only the dispatcher measured here sends them. It is built
    as ``baton worker`` builds it (``build_transports``, the customer renderer, the fallback hook).
    """
    from notifications.dispatcher import Dispatcher
    from tracker.customer import CustomerRenderer, on_permanent_failure
    from tracker.worker import build_transports

    at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=7)
    conn = await asyncpg.connect(libpq_dsn)
    engine = make_engine(settings)
    transports = build_transports(settings)
    try:
        mark = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM notifications"))
        await queue_sms(conn, count=count, case_ids=case_ids, at=at)
        await conn.execute("VACUUM ANALYZE notifications")
        dispatcher = Dispatcher(sessionmaker=make_sessionmaker(engine), clock=FrozenClock(at), transports=transports,
                                renderer=CustomerRenderer(settings), on_permanent_failure=on_permanent_failure)
        started = time.perf_counter()
        handled = await dispatcher.drain()
        elapsed = time.perf_counter() - started
        states = {r[0]: r[1] for r in await conn.fetch(
            "SELECT state, count(*) FROM notifications WHERE id > $1 GROUP BY state", mark)}
        sids = int(await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE id > $1 AND provider_id LIKE 'SM%'", mark))
        errors = {r[0]: r[1] for r in await conn.fetch(
            "SELECT last_error, count(*) FROM notifications WHERE id > $1 AND last_error IS NOT NULL GROUP BY 1", mark)}
    finally:
        for transport in transports.values():
            await transport.close()
        await engine.dispose()
        await conn.close()
    sent = states.get("sent", 0) + states.get("delivered", 0)
    return {
        "queued": count,
        "handled": handled,
        "states": states,
        "with_twilio_sid": sids,
        "errors": errors,
        "seconds": round(elapsed, 2),
        "per_second": round(sent / elapsed, 1) if elapsed else None,
        "batch": dispatcher.batch,
        "concurrency": dispatcher.concurrency,
    }
