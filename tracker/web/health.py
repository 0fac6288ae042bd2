"""Liveness and readiness for operations."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from notifications import outbox
from kernel import metrics
from tracker.migrate import current_revision, head_revision

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """The database answers and its schema is at the migrations' head."""
    runtime = request.app.state.runtime
    try:
        async with runtime.sessionmaker() as session:
            await session.execute(text("SELECT 1"))
            current = await session.run_sync(lambda s: current_revision(s.connection()))
    except Exception as exc:  # any database failure means "not ready", never a 500
        return JSONResponse({"status": "unavailable", "detail": f"database: {type(exc).__name__}"}, status_code=503)
    head = head_revision()
    if current != head:
        return JSONResponse(
            {"status": "unavailable", "detail": f"migrations at {current}, head is {head}"}, status_code=503
        )
    return JSONResponse({"status": "ready", "revision": current})


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus metrics: request latency by route, updates by outcome, watchdog, outbox depth and age."""
    runtime = request.app.state.runtime
    async with runtime.sessionmaker() as session:
        await outbox.refresh_gauges(session=session, now=runtime.clock.now())
        body = metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
