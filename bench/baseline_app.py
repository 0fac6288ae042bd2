"""The bare stack: the least any signed update can cost on this machine (see BENCH-NOTES).

A FastAPI endpoint that reads the raw body, checks an HMAC-SHA256 header, then in one
transaction moves one party's due time and inserts one event row, and commits. Nothing else:
SQLAlchemy Core over asyncpg, the same pool size as Baton, served by uvicorn with 2 workers
(uvloop, httptools), on the same PostgreSQL as Baton but in a database of its own::

    BENCH_BARE_DATABASE_URL=postgresql+asyncpg://... BENCH_BARE_SECRET=... \\
        python -m uvicorn bench.baseline_app:app --workers 2 --port 8001 --no-access-log
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os

from fastapi import FastAPI, Request, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bare_parties (id bigint PRIMARY KEY, next_due timestamptz, "
    "last_update_at timestamptz)",
    "CREATE TABLE IF NOT EXISTS bare_events (id bigserial PRIMARY KEY, "
    "party_id bigint NOT NULL REFERENCES bare_parties (id), received_at timestamptz NOT NULL, body jsonb NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_bare_events_party_id ON bare_events (party_id)",
    "CREATE INDEX IF NOT EXISTS ix_bare_parties_next_due ON bare_parties (next_due)",
)
UPDATE = text("UPDATE bare_parties SET next_due = :due, last_update_at = :now WHERE id = :id")
INSERT = text("INSERT INTO bare_events (party_id, received_at, body) VALUES (:id, :now, CAST(:body AS jsonb))")
CADENCE = dt.timedelta(hours=6)

app = FastAPI()
_secret = os.environ.get("BENCH_BARE_SECRET", "").encode()
_engine: AsyncEngine | None = None


def engine() -> AsyncEngine:
    global _engine
    if _engine is None:
        _engine = create_async_engine(os.environ["BENCH_BARE_DATABASE_URL"],
                                      pool_size=int(os.environ.get("BENCH_BARE_POOL_SIZE", "20")), max_overflow=0)
    return _engine


@app.post("/update/{party_id}")
async def update(party_id: int, request: Request) -> Response:
    body = await request.body()
    expected = hmac.new(_secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(request.headers.get("x-signature", ""), expected):
        return Response(status_code=401)
    now = dt.datetime.now(dt.timezone.utc)
    async with engine().begin() as conn:
        await conn.execute(UPDATE, {"due": now + CADENCE, "now": now, "id": party_id})
        await conn.execute(INSERT, {"id": party_id, "now": now, "body": body.decode()})
    return Response(b'{"ok":true}', status_code=201, media_type="application/json")


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b"ok")
