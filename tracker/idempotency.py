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
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.db import RowPlan, Statement, UTCDateTime, insert_json_sql, is_postgres
from kernel.errors import Conflict, IdempotencyMismatch, Unprocessable
from tracker.models import IdempotencyRecord

MAX_KEY_LENGTH = 255
_LOOKUP = Statement(
    'SELECT request_digest, status_code, response_body FROM idempotency_records WHERE principal = :principal AND "key" = :key'
)
# One row: whether this transaction got the key's lock, and the stored response if any.
_CLAIM_PG = Statement(
    "SELECT pg_try_advisory_xact_lock(:lock) AS locked, r.request_digest, r.status_code, r.response_body "
    'FROM (SELECT 1) AS one LEFT JOIN idempotency_records AS r ON r.principal = :principal AND r."key" = :key'
)
_STORE = Statement(
    'INSERT INTO idempotency_records (principal, "key", request_digest, status_code, response_body, created_at) '
    "VALUES (:principal, :key, :request_digest, :status_code, :response_body, :created_at)",
    created_at=UTCDateTime(),
)
_in_flight: set[tuple[str, str]] = set()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response kept with its effects: one row of ``idempotency_records``."""

    principal: str
    key: str
    request_digest: str
    status_code: int
    response_body: str
    created_at: dt.datetime


_RECORDS = RowPlan(IdempotencyRecord, prefix="", exclude=("id",))
# Many responses in one statement (group commit writes them with its events: tracker.routine).
INSERT_JSON = insert_json_sql(IdempotencyRecord.__table__, param="records")


def records_json(stored: Any) -> str:
    return _RECORDS.records(stored)


async def store_one(session: AsyncSession, response: StoredResponse) -> None:
    await _STORE.rows(session, {"principal": response.principal, "key": response.key,
                                "request_digest": response.request_digest, "status_code": response.status_code,
                                "response_body": response.response_body, "created_at": response.created_at})


async def lookup(session: AsyncSession, principal: str, key: str) -> Claim:
    """The stored response for a key, if any (SQLite: the single writer needs no lock)."""
    row = await _LOOKUP.first(session, {"principal": principal, "key": key})
    return Claim.of(row, locked=True) if row is not None else Claim(True, None, None, None)


def still_in_flight() -> Conflict:
    return Conflict("A request with this Idempotency-Key is still in flight; retry later.")


def different_request() -> IdempotencyMismatch:
    return IdempotencyMismatch("This Idempotency-Key was used with a different request.")


def hold(principal: str, key: str) -> bool:
    """Mark a key in flight in this process; False when a twin already is (answer 409)."""
    token = (principal, key)
    if token in _in_flight:
        return False
    _in_flight.add(token)
    return True


def release(principal: str, key: str) -> None:
    _in_flight.discard((principal, key))


@dataclass(frozen=True, slots=True)
class Claim:
    """A key's idempotency lock (``locked``: this transaction holds it) and its stored response, if any."""

    locked: bool
    request_digest: str | None
    status_code: int | None
    response_body: str | None

    @classmethod
    def of(cls, row: Any, *, locked: bool | None = None) -> Claim:
        return cls(locked=bool(row["locked"]) if locked is None else locked, request_digest=row["request_digest"],
                   status_code=row["status_code"], response_body=row["response_body"])


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    body: bytes


def request_digest(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def valid_key(key: str) -> bool:
    return bool(key) and len(key) <= MAX_KEY_LENGTH and key.isprintable()


def lock_id(principal: str, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{principal}\0{key}".encode()).digest()[:8], "big", signed=True)


class IdempotencyGuard:
    """The rules above for one request. ``claimed`` is the claim admission took earlier in the
    same transaction (``tracker.admission`` takes it with the nonce, in one round trip)."""

    def __init__(
        self, *, session: AsyncSession, principal: str, key: str, digest: str, claimed: Claim | None = None
    ) -> None:
        if not valid_key(key):
            raise Unprocessable(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters.")
        self.session = session
        self.principal = principal
        self.key = key
        self.digest = digest
        self.claimed = claimed
        self._token = (principal, key)

    async def __aenter__(self) -> Replay | None:
        if self._token in _in_flight:
            raise still_in_flight()
        _in_flight.add(self._token)
        try:
            row = await self._claim()
        except BaseException:
            _in_flight.discard(self._token)
            raise
        if row is None:
            return None
        if row.request_digest != self.digest:
            _in_flight.discard(self._token)
            raise different_request()
        assert row.status_code is not None and row.response_body is not None
        return Replay(status_code=row.status_code, body=row.response_body.encode())

    async def _claim(self) -> Claim | None:
        """The claim admission took (``claimed``), else: take the key's lock (PostgreSQL) and read
        a stored response, in one round trip; SQLite's single writer needs no lock.

        The lookup's snapshot can predate the lock by a moment: a twin that commits in between
        is not seen, and this request then fails on the records' unique key at commit, which
        ``Ctx.write`` answers with 409 (nothing of this request is kept).
        """
        claim = self.claimed
        if claim is None and is_postgres(self.session):
            row = await _CLAIM_PG.first(self.session, {"principal": self.principal, "key": self.key,
                                                       "lock": lock_id(self.principal, self.key)})
            assert row is not None  # the statement always answers one row
            claim = Claim.of(row)
        elif claim is None:
            claim = await lookup(self.session, self.principal, self.key)
        if not claim.locked:
            raise still_in_flight()
        return claim if claim.request_digest is not None else None

    async def store(self, *, status_code: int, body: bytes, now: dt.datetime) -> None:
        """Keep the response with the effects, in their transaction."""
        response = StoredResponse(principal=self.principal, key=self.key, request_digest=self.digest,
                                  status_code=status_code, response_body=body.decode(), created_at=now)
        try:
            await store_one(self.session, response)
        except IntegrityError as exc:
            if "idempotency_records" not in str(exc.orig):
                raise
            # A twin committed between this request's lookup and its lock (see _claim).
            raise Conflict("A request with this Idempotency-Key was completed meanwhile; retry to get its response.") from None

    async def __aexit__(self, *exc: object) -> None:
        _in_flight.discard(self._token)
