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

from partners.signatures import KeyCache
from kernel.caches import Caches
from kernel.clock import Clock
from kernel.config import Settings
from kernel.errors import Unauthorized
from tracker.admission import Admission, admit_partner, keep_nonce
from tracker.idempotency import IdempotencyGuard, request_digest
from tracker.principals import authenticate_staff
from tracker.ratelimit import RateLimits



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
            await keep_nonce(session=session, admission=getattr(request.state, "admission", None))
            raise


def base_url(request: Request, settings: Settings) -> str:
    return settings.public_base_url or str(request.base_url).rstrip("/")


class Ctx:
    """The caller of one request, with its session, clock and helpers to answer."""

    def __init__(self, *, request: Request, session: AsyncSession, admission: Admission, rt: Runtime) -> None:
        self.request = request
        self.session = session
        self.admission = admission
        self.principal = admission.principal
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
            claimed=self.admission.claim,  # taken by admission for this principal and this header
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
        admission = await admit_partner(request=request, session=session, rt=rt)
        request.state.admission = admission  # for db_session, which keeps a failed write's nonce
        return Ctx(request=request, session=session, admission=admission, rt=rt)
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Sign the request (RFC 9421) as a partner, or send a staff Bearer token.")
    principal = await authenticate_staff(session=session, token=token.strip(), admin_token=rt.settings.admin_token)
    return Ctx(request=request, session=session, admission=Admission(principal=principal), rt=rt)
