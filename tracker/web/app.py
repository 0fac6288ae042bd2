"""The app factory: the one place that wires tracker, partners and notifications together."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine

from tracker.clock import Clock, SystemClock
from tracker.config import Settings, get_settings
from tracker.db import make_engine, make_sessionmaker
from tracker.errors import PayloadTooLarge, UnsupportedMediaType
from tracker.web import api, health, problems
from tracker.web.deps import Runtime
from tracker.worker import run_loop

VERSION = "0.1.0"


def _operation_id(route: APIRoute) -> str:
    # Stable operation ids: the route function's name, never derived from the path.
    return route.name


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, engine: AsyncEngine | None = None
) -> FastAPI:
    settings = settings or get_settings()
    clock = clock or SystemClock()
    owns_engine = engine is None
    engine = engine or make_engine(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        background = None
        if settings.run_workers_in_process:
            # Embedded mode: the watchdog and housekeeping run inside the web process.
            background = asyncio.create_task(
                run_loop(sessionmaker=app.state.runtime.sessionmaker, clock=clock, interval=5.0)
            )
        yield
        if background is not None:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
        if owns_engine:
            await engine.dispose()

    app = FastAPI(
        title="Baton",
        version=VERSION,
        description="Multi-party incident tracker: cases shared between partners, signed updates, a watchdog.",
        generate_unique_id_function=_operation_id,
        lifespan=lifespan,
    )
    app.state.runtime = Runtime(settings=settings, clock=clock, sessionmaker=make_sessionmaker(engine))
    app.state.engine = engine
    problems.install(app)
    app.include_router(health.router)
    app.include_router(api.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app


class BodyLimitMiddleware:
    """Refuse oversized bodies before they are read, and non-JSON bodies on the JSON API."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        try:
            declared = int(length) if length is not None else None
        except ValueError:
            declared = None
        if declared is not None and declared > self.max_bytes:
            await _send_problem(send, PayloadTooLarge(f"The body is over {self.max_bytes // 1024} KiB."))
            return
        has_body = declared is None and "transfer-encoding" in headers or (declared or 0) > 0
        if has_body and scope["path"].startswith("/v1/"):
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json" and not ctype.endswith("+json"):
                await _send_problem(send, UnsupportedMediaType("Send the body as application/json."))
                return
        seen = 0
        limit = self.max_bytes

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"The body is over {limit // 1024} KiB.")
            return message

        await self.app(scope, limited_receive, send)


async def _send_problem(send: Any, error: Any) -> None:
    body = json.dumps(error.problem()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
