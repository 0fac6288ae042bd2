"""Request dependencies: the database session (owner of the transaction) and the caller."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from partners.signatures import KeyCache
from kernel.caches import Caches
from kernel.clock import Clock
from kernel.config import Settings
from kernel.errors import NotFound, Unauthorized
from kernel.rendering import render_json
from kernel.storage import BlobStore, open_store
from tracker.admission import Admission, Verified, admit_partner, keep_nonce, spend
from tracker.groupcommit import GroupCommit
from tracker.web.proxies import client_address
from tracker.idempotency import IdempotencyGuard, request_digest
from tracker.principals import authenticate_staff
from tracker.ratelimit import RateLimits
from tracker.staff_sign_in import IdentityProvider



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
        self.store: BlobStore = open_store(settings)  # attachment files, by digest (kernel.storage)
        self.limits = RateLimits(clock)
        # Staff single sign-on: the provider's discovery document and keys are kept on it, once fetched.
        self.identity_provider = IdentityProvider(settings=settings) if settings.oidc_enabled else None
        # First come, first served for database connections. SQLAlchemy's pool hands a freed
        # connection to whichever coroutine asks next, so under load some requests starve while
        # newcomers overtake them (seconds of tail latency); a semaphore the size of the pool,
        # taken before the session, queues requests in arrival order instead.
        self.gate: AbstractAsyncContextManager[Any] = (
            contextlib.nullcontext() if settings.is_sqlite else asyncio.Semaphore(settings.db_pool_size)
        )
        self.group_commit = GroupCommit(
            sessionmaker=sessionmaker, gate=self.gate, max_batch=settings.group_commit_max,
            lanes=settings.group_commit_lanes,
        ) if settings.group_commit else None


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request. Routes commit explicitly before they answer a write."""
    async with open_session(request) as session:
        yield session


@contextlib.asynccontextmanager
async def open_session(request: Request) -> AsyncIterator[AsyncSession]:
    """``db_session`` for code that opens it itself: rolled back on error, a failed write's nonce kept."""
    rt = runtime(request)
    async with rt.gate, rt.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            admission = getattr(request.state, "admission", None)
            if admission is not None and admission.nonce is not None:
                with contextlib.suppress(Exception):  # the request's own error is the one to answer
                    await keep_nonce(session=session, nonce=admission.nonce)
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

    async def write(
        self, produce: Callable[[], Awaitable[Any]], *, status_code: int = 200, body_sha256: bytes | None = None
    ) -> Response:
        """Run a write under the Idempotency-Key rules, commit it, and answer with its result.

        ``body_sha256``: an upload's body was streamed, not kept (``tracker.web.uploads``); a retry
        is recognized by its digest.
        """
        key = self.request.headers.get("idempotency-key")
        if key is None:
            body = render_json(await produce())
            await self.session.commit()
            return json_response(body, status_code)
        raw = b"sha-256:" + body_sha256 if body_sha256 is not None else await self.request.body()
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
                return json_response(replay.body, replay.status_code, replayed=True)
            body = render_json(await produce())
            await guard.store(status_code=status_code, body=body, now=self.now())
            await self.session.commit()
        return json_response(body, status_code)


def json_response(body: bytes, status_code: int, *, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def unauthenticated() -> Unauthorized:
    return Unauthorized("Sign the request (RFC 9421) as a partner, or send a staff Bearer token.")


def is_signed(request: Request) -> bool:
    return "signature-input" in request.headers or "signature" in request.headers


async def caller(request: Request, session: AsyncSession = Depends(db_session)) -> Ctx:
    """Authenticate the caller: a signed partner request or a staff bearer token."""
    return await authenticate(request, session)


async def authenticate(
    request: Request, session: AsyncSession, *, verified: Verified | None = None, spent: bool = False
) -> Ctx:
    """``caller`` for a session opened by the route; ``verified``: a signature checked already
    (``spent``: its nonce too, by group commit)."""
    rt = runtime(request)
    if verified is None and is_signed(request):
        admission = await admit_partner(request=request, session=session, rt=rt)
    elif verified is not None:
        admission = (Admission(principal=verified.principal) if spent
                     else await spend(request=request, session=session, verified=verified))
    else:
        return Ctx(request=request, session=session, admission=await _staff(request, session, rt), rt=rt)
    request.state.admission = admission  # for db_session, which keeps a failed write's nonce
    return Ctx(request=request, session=session, admission=admission, rt=rt)


async def _staff(request: Request, session: AsyncSession, rt: Runtime) -> Admission:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated()
    principal = await authenticate_staff(session=session, token=token.strip(), admin_token=rt.settings.admin_token)
    return Admission(principal=principal)


@contextlib.contextmanager
def unknown_links_counted(request: Request, *, what: str = "links") -> Iterator[None]:
    """A lookup by a link's token (status, one-tap, invitation): the NotFound it raises counts against
    the client's address (``limits.bad_tokens``, shared by every kind of link), and past the limit the
    address gets 429 instead. A live link is never refused by that count: behind a NAT one address
    is many people, and a guesser there must not lock them out.
    """
    rt = runtime(request)
    try:
        yield
    except NotFound:
        address, now = client_address(request), rt.limits.now()
        rt.limits.bad_tokens.check(address, now, detail=f"Too many unknown {what} from your address.")
        rt.limits.bad_tokens.hit(address, now)
        raise
