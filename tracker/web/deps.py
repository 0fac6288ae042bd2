"""Request dependencies: the database session (owner of the transaction) and the caller."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from partners import service as partner_service
from partners.signatures import KeyCache, parse_signature_headers, verify_request
from tracker import idempotency
from kernel.caches import Caches
from kernel.clock import Clock
from kernel.config import Settings
from kernel.db import Statement
from kernel.errors import Unauthorized
from tracker.idempotency import IdempotencyGuard, request_digest
from tracker.principals import Principal, authenticate_staff
from tracker.ratelimit import RateLimits
from tracker.trust import TrustLimits

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class Runtime:
    """What the app holds for its whole life: settings, clock, database, caches."""

    def __init__(
        self, *, settings: Settings, clock: Clock, sessionmaker: async_sessionmaker[AsyncSession], caches: Caches
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sessionmaker = sessionmaker
        self.caches = caches  # the ones its sessions carry (kernel.db.caches_of); clear() after editing rows in SQL
        self.keys = KeyCache()
        self.limits = RateLimits(clock)
        self.trust = TrustLimits.from_settings(settings)
        # First come, first served for database connections. SQLAlchemy's pool hands a freed
        # connection to whichever coroutine asks next, so under load some requests starve while
        # newcomers overtake them (seconds of tail latency); a semaphore the size of the pool,
        # taken before the session, queues requests in arrival order instead.
        self.gate: AbstractAsyncContextManager[Any] = (
            contextlib.nullcontext() if settings.is_sqlite else asyncio.Semaphore(settings.db_pool_size)
        )


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request. Routes commit explicitly before they answer a write."""
    rt = runtime(request)
    async with rt.gate, rt.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            await _keep_nonce(request, session)
            raise


async def _keep_nonce(request: Request, session: AsyncSession) -> None:
    # A signed request that failed still spent its nonce: a captured request must not be
    # replayable later, when the state that made it fail may have changed.
    pending = getattr(request.state, "nonce", None)
    if pending is None:
        return
    try:
        await partner_service.consume_nonce(session=session, keyid=pending[0], nonce=pending[1], expires_at=pending[2])
        await session.commit()
    except Exception:
        await session.rollback()


def target_uri(request: Request, settings: Settings) -> str:
    """The URI the partner signed: rebuilt from BATON_PUBLIC_BASE_URL when Baton sits behind a proxy."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    path = raw_path.decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    base = settings.public_base_url
    if not base:
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        base = f"{request.url.scheme}://{host}"
    return f"{base}{path}" + (f"?{query}" if query else "")


def base_url(request: Request, settings: Settings) -> str:
    return settings.public_base_url or str(request.base_url).rstrip("/")


class Ctx:
    """The caller of one request, with its session, clock and helpers to answer."""

    def __init__(self, *, request: Request, session: AsyncSession, principal: Principal, rt: Runtime) -> None:
        self.request = request
        self.session = session
        self.principal = principal
        self.rt = rt

    def now(self) -> dt.datetime:
        return self.rt.clock.now()

    @property
    def base_url(self) -> str:
        return base_url(self.request, self.rt.settings)

    async def write(self, produce: Callable[[], Awaitable[Any]], *, status_code: int = 200) -> Response:
        """Run a write under the Idempotency-Key rules, commit it, and answer with its result."""
        key = self.request.headers.get("idempotency-key")
        if key is None:
            body = _render(await produce())
            await self.session.commit()
            return _json(body, status_code)
        raw = await self.request.body()
        guard = IdempotencyGuard(
            session=self.session,
            principal=self.principal.idempotency_scope,
            key=key,
            digest=request_digest(self.request.method, self.request.url.path, raw),
            claimed=getattr(self.request.state, "idempotency_claim", None),  # same principal, same header
        )
        async with guard as replay:
            if replay is not None:
                await self.session.commit()  # keeps the nonce of this (new) signed request
                return _json(replay.body, replay.status_code, replayed=True)
            body = _render(await produce())
            await guard.store(status_code=status_code, body=body, now=self.now())
            await self.session.commit()
        return _json(body, status_code)


def _render(result: Any) -> bytes:
    if isinstance(result, BaseModel):
        return result.model_dump_json(by_alias=True).encode()
    return json.dumps(_plain(result), separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return value


def _json(body: bytes, status_code: int, *, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


async def caller(request: Request, session: AsyncSession = Depends(db_session)) -> Ctx:
    """Authenticate the caller: a signed partner request or a staff bearer token."""
    rt = runtime(request)
    headers = request.headers
    if "signature-input" in headers or "signature" in headers:
        principal = await _partner(request, session, rt)
    else:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Sign the request (RFC 9421) as a partner, or send a staff Bearer token.")
        principal = await authenticate_staff(session=session, token=token.strip(), admin_token=rt.settings.admin_token)
    return Ctx(request=request, session=session, principal=principal, rt=rt)


async def _partner(request: Request, session: AsyncSession, rt: Runtime) -> Principal:
    headers = request.headers
    signed = parse_signature_headers(headers)
    limit, at = rt.limits.partner_requests, rt.limits.now()
    limit.check(signed.keyid, at, detail=f"Too many requests for key {signed.keyid}; slow down.")
    body = await request.body()
    material = rt.keys.material(signed.keyid)
    if material is None:
        material = await partner_service.key_material(session=session, keyid=signed.keyid)
        if material is None:
            raise Unauthorized(f"Unknown or revoked key id {signed.keyid!r}.")
        rt.keys.remember(material)
    now = rt.clock.now()
    verified = verify_request(
        method=request.method,
        target_uri=target_uri(request, rt.settings),
        headers=headers,
        body=body,
        signed=signed,
        material=material,
        now=now.timestamp(),
        max_skew=rt.settings.signature_max_skew_seconds,
        max_future=rt.settings.signature_max_future_seconds,
        keys=rt.keys,
    )
    # Counted once the signature verifies: key ids are public, and requests that merely claim one
    # must not use up (and so lock out) the real partner's quota.
    limit.hit(signed.keyid, at)
    principal = Principal(
        kind="partner",
        name=material.partner_id,
        partner_id=material.partner_id,
        signature=verified.record(body) if request.method not in SAFE_METHODS else None,
    )
    expires = now + dt.timedelta(seconds=2 * rt.settings.signature_max_skew_seconds)
    nonce = {"keyid": signed.keyid, "nonce": signed.nonce, "expires_at": expires}
    key = headers.get("idempotency-key")
    if request.method not in SAFE_METHODS and key is not None and idempotency.valid_key(key) and _postgres(session):
        scope = principal.idempotency_scope
        row = await _ADMIT_PG.first(session, {**nonce, "principal": scope, "key": key,
                                               "lock": idempotency.lock_id(scope, key)})
        assert row is not None  # the statement always answers one row
        fresh = bool(row["fresh"])
        request.state.idempotency_claim = row
    else:
        fresh = await partner_service.consume_nonce(session=session, **nonce)
    if not fresh:
        if not await partner_service.key_is_active(session=session, keyid=signed.keyid):
            raise Unauthorized(f"Unknown or revoked key id {signed.keyid!r}.")
        raise Unauthorized("This nonce was already used with this key (replayed request).")
    if request.method in SAFE_METHODS:
        await session.commit()
    else:
        request.state.nonce = (signed.keyid, signed.nonce, expires)
    return principal


# A signed write with an Idempotency-Key on PostgreSQL is admitted in one round trip: its nonce
# is spent (while the key is active) and the key's idempotency lock and stored response are
# taken, for Ctx.write to use.
_ADMIT_PG = Statement(
    f"WITH nonce AS ({partner_service.CONSUME_NONCE_PG}) "
    f"SELECT EXISTS (SELECT 1 FROM nonce) AS fresh, claim.* FROM ({idempotency.CLAIM_PG}) AS claim"
)


def _postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"
