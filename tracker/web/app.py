"""The app factory: the one place that wires tracker, partners and notifications together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy.ext.asyncio import AsyncEngine

from kernel import logs, metrics
from kernel.caches import Caches
from kernel.clock import Clock, SystemClock
from kernel.config import Settings, get_settings
from kernel.db import make_engine, make_sessionmaker
from kernel.errors import BadRequest, MalformedJSON, PayloadTooLarge, UnsupportedMediaType
from tracker.web import (api, claims, console, evidence, scans, health, hooks, links, problems, proxies, status_pages,
                        uploads)
from tracker.web import onboarding
from tracker.web import exports
from tracker.web.problems import send_problem
from tracker.web.deps import Runtime
from tracker.worker import Worker

VERSION = "0.1.0"
access = logging.getLogger("baton.access")


def _operation_id(route: APIRoute) -> str:
    # Stable operation ids: the route function's name, never derived from the path.
    return route.name


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, engine: AsyncEngine | None = None
) -> FastAPI:
    settings = settings or get_settings()
    if not logging.getLogger().handlers:  # a fresh worker process (uvicorn --workers) logs the same way
        logs.configure(settings.log_level, log_format=settings.log_format)
    clock = clock or SystemClock()
    owns_engine = engine is None
    engine = engine or make_engine(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        background = worker = None
        if settings.run_workers_in_process:
            # Embedded mode: the watchdog, the dispatcher and housekeeping run inside the web process.
            worker = Worker(sessionmaker=app.state.runtime.sessionmaker, clock=clock, settings=settings)
            background = asyncio.create_task(worker.run_forever(interval=2.0))
        yield
        if app.state.runtime.group_commit is not None:
            await app.state.runtime.group_commit.close()  # open batches commit and answer
        if background is not None and worker is not None:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
            await worker.close()
        await app.state.runtime.store.close()
        if owns_engine:
            await engine.dispose()

    app = FastAPI(
        title="Baton",
        version=VERSION,
        description="Multi-party incident tracker: cases shared between partners, signed updates, a watchdog.",
        generate_unique_id_function=_operation_id,
        lifespan=lifespan,
    )
    # Settings and caches travel with the sessions (kernel.db): domain code reads them from the
    # session it is given.
    caches = Caches()
    sessions = make_sessionmaker(engine, settings=settings, caches=caches)
    app.state.runtime = Runtime(settings=settings, clock=clock, sessionmaker=sessions, caches=caches)
    app.state.engine = engine
    problems.install(app)
    app.include_router(health.router)
    app.include_router(api.router)
    app.include_router(evidence.router)
    app.include_router(claims.router)
    app.include_router(scans.router)
    app.include_router(hooks.router)
    app.include_router(status_pages.router)
    app.include_router(links.router)
    app.include_router(onboarding.router)
    app.include_router(exports.router)
    app.include_router(console.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       upload_bytes=uploads.upload_limit(settings.attachment_max_bytes),
                       scans_bytes=settings.scans_max_bytes)
    app.add_middleware(proxies.HostAllowlistMiddleware, settings=settings)  # outside the body limit: refused unread
    app.add_middleware(SecurityHeadersMiddleware, https=(settings.public_base_url or "").startswith("https://"))
    app.add_middleware(ObservabilityMiddleware)
    return app


UPLOAD_PATHS = re.compile(r"^/(v1/cases/[^/]+/(attachments|delivery/proof)|s/[^/]+/(attachments|claims)"
                          r"|console/cases/[^/]+/attachments)$")


class BodyLimitMiddleware:
    """Read request bodies whole (they are small) before the app sees them, whatever the method.

    1. A declared Content-Length over the limit is refused before anything is read.
    2. The JSON API takes only JSON bodies (415 otherwise).
    3. The body is read up to the limit (413 past it, chunked or not), then replayed to the app.
       This runs before authentication, so a GET with fake signature headers and a huge body
       costs Baton no more than the limit.
    4. NUL characters, in the body or the URL, are refused: PostgreSQL cannot store them, and no
       legitimate text contains them.
    ``POST /v1/scans`` reads up to ``BATON_SCANS_MAX_BYTES`` (a batch of 10,000), and may be CSV or
    IATA bag messages (``text/plain``) as well as JSON.
    The upload routes (``UPLOAD_PATHS``: attachments, delivery proof) are the exception: a declared
    length over their own limit is refused here, and their bodies stream through unread to
    ``tracker.web.uploads``, which limits, hashes and parses them as they arrive.
    5. A JSON object that repeats a key is refused (400): parsers disagree on which value wins,
       so a signed body could be read one way by Baton and another way by a partner.
    """

    def __init__(self, app: Any, *, max_bytes: int, upload_bytes: int, scans_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes
        self.scans_bytes = scans_bytes
        self.too_large = PayloadTooLarge(f"The body is over {max_bytes // 1024} KiB.")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b""):
            await send_problem(send, BadRequest("NUL characters are not allowed in URLs."))
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        max_bytes, too_large = self.max_bytes, self.too_large
        length = headers.get("content-length")
        declared = int(length) if length and length.isdigit() else None
        if scope["method"] == "POST" and UPLOAD_PATHS.match(scope["path"]):
            if declared is not None and declared > self.upload_bytes:
                await send_problem(send, PayloadTooLarge(f"The body is over {self.upload_bytes // (1024 * 1024)} MiB."))
                return
            await self.app(scope, receive, send)
            return
        scans_route = scope["method"] == "POST" and scope["path"] == "/v1/scans"
        if scans_route:  # a batch of scans has a limit of its own, and may be CSV or IATA bag messages
            max_bytes = self.scans_bytes
            too_large = PayloadTooLarge(f"The body is over {max_bytes // 1024} KiB.")
        if declared is not None and declared > max_bytes:
            await send_problem(send, too_large)
            return
        has_body = (declared or 0) > 0 or (declared is None and "transfer-encoding" in headers)
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        plain_scans = scans_route and ctype in ("text/csv", "text/plain")
        if has_body and scope["path"].startswith("/v1/") and not plain_scans:
            if ctype != "application/json" and not ctype.endswith("+json"):
                await send_problem(send, UnsupportedMediaType("Send the body as application/json."))
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                await send_problem(send, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        form = headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        if b"\\u0000" in body or b"\x00" in body or (form and b"%00" in body):
            await send_problem(send, BadRequest("NUL characters are not allowed in the body."))
            return
        if body and (ctype in ("", "application/json") or ctype.endswith("+json")):  # what FastAPI parses as JSON
            repeated = _repeated_key(body)
            if repeated is not None:
                name = f" {repeated!r}" if len(repeated) <= 64 else ""
                await send_problem(send, MalformedJSON(f"A JSON object in the body repeats the key{name}."))
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


HTML_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
     b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class SecurityHeadersMiddleware:
    """Every HTML response gets a strict CSP, no referrer, no framing, no caching; status links are noindex."""

    def __init__(self, app: Any, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html"):
                    present = {k.lower() for k, _ in headers}
                    headers += [(k, v) for k, v in HTML_HEADERS if k not in present]
                    if path.startswith("/s/"):
                        headers.append((b"x-robots-tag", b"noindex, nofollow"))
                if self.https:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ObservabilityMiddleware:
    """A request id for every request (echoed as X-Request-ID), latency by route template, one access line."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = logs.new_request_id(incoming)
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or ("static" if scope["path"].startswith("/static/") else "unmatched")
            metrics.REQUEST_SECONDS.labels(scope["method"], template, str(status)).observe(elapsed)
            if template == "/v1/cases/{ref}/events" and scope["method"] == "POST":
                metrics.record_update(status)
            access.info("request", extra={"method": scope["method"], "route": template, "status": status,
                                          "ms": round(elapsed * 1000, 2)})
            logs.request_id.reset(token)


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen.add(key)


def _repeated_key(body: bytes) -> str | None:
    """The first key repeated within one JSON object of ``body``; None when none is (or it is not JSON)."""
    try:
        json.loads(body, object_pairs_hook=_unique_pairs)
    except _RepeatedKey as repeated:
        return repeated.key
    except (ValueError, RecursionError):
        return None  # malformed JSON: the route's own parsing answers it
    return None
