"""``Idempotency-Key`` for every POST.

1. The first request with a key runs and its response is stored in the same transaction as its
   effects, so a response is replayed only if the effects were committed.
2. A retry with the same key and the same request gets the stored response, byte for byte.
3. The same key with another request (method, path or body) is ``422``.
4. A twin that arrives while the first is still running is ``409``: within a process an
   in-memory set sees it, across PostgreSQL processes a transaction-scoped advisory lock does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tracker.errors import Conflict, IdempotencyMismatch, Unprocessable
from tracker.models import IdempotencyRecord

MAX_KEY_LENGTH = 255
_in_flight: set[tuple[str, str]] = set()


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    body: bytes


def request_digest(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class IdempotencyGuard:
    def __init__(self, *, session: AsyncSession, principal: str, key: str, digest: str) -> None:
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise Unprocessable(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters.")
        self.session = session
        self.principal = principal
        self.key = key
        self.digest = digest
        self._token = (principal, key)

    async def __aenter__(self) -> Replay | None:
        if self._token in _in_flight:
            raise Conflict("A request with this Idempotency-Key is still in flight; retry later.")
        _in_flight.add(self._token)
        try:
            if self.session.bind is not None and self.session.bind.dialect.name == "postgresql":
                lock_id = int.from_bytes(hashlib.sha256(f"{self.principal}\0{self.key}".encode()).digest()[:8], "big", signed=True)
                got = await self.session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": lock_id})
                if not got:
                    raise Conflict("A request with this Idempotency-Key is still in flight; retry later.")
            record = await self.session.scalar(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.principal == self.principal, IdempotencyRecord.key == self.key
                )
            )
        except BaseException:
            _in_flight.discard(self._token)
            raise
        if record is None:
            return None
        if record.request_digest != self.digest:
            _in_flight.discard(self._token)
            raise IdempotencyMismatch("This Idempotency-Key was used with a different request.")
        return Replay(status_code=record.status_code, body=record.response_body.encode())

    def store(self, *, status_code: int, body: bytes, now: dt.datetime) -> None:
        self.session.add(
            IdempotencyRecord(
                principal=self.principal,
                key=self.key,
                request_digest=self.digest,
                status_code=status_code,
                response_body=body.decode(),
                created_at=now,
            )
        )

    async def __aexit__(self, *exc: object) -> None:
        _in_flight.discard(self._token)
