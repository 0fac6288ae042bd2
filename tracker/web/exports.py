"""``GET /v1/exports/{dataset}.{format}``: the complaint department's data as a streamed download.

Staff only (agent and up). The caller, then everything asked (``tracker.complaints.prepare_export``),
is checked in sessions the route opens and closes itself before the answer starts: a bad filter is
a 422 problem, never a download cut short. The body is then read batch by batch, each batch in a
short session of its own (``stream_export``), so a slow client holds no connection and no transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import complaints
from tracker.principals import Principal
from tracker.web.api import PROBLEMS
from tracker.web.deps import authenticate, open_session, runtime

router = APIRouter(prefix="/v1", responses=PROBLEMS)

_INSTANT = "An RFC 3339 instant with its offset, e.g. 2026-11-01T00:00:00Z (write '+' as %2B)."
_DOWNLOAD = {
    200: {
        "description": "The dataset: CSV with a header row, or one JSON object per line. No personal data.",
        "content": {media.split(";")[0]: {"schema": {"type": "string"}} for media in complaints.EXPORT_FORMATS.values()},
        "headers": {"Content-Disposition": {"schema": {"type": "string"},
                                            "description": 'attachment; filename="baton-<dataset>-<from>-<to>.<ext>"'}},
    }
}


async def staff_caller(request: Request) -> Principal:
    """The caller, who must be staff (agent and up), checked before the parameters (401, 403, then 422).

    In a session of its own, closed at once: ``Depends(caller)``'s session (and its place in the
    connection queue) would last as long as the download.
    """
    async with open_session(request) as session:
        ctx = await authenticate(request, session)
        ctx.principal.require_staff("agent")
        return ctx.principal


@router.get("/exports/{dataset}.{format}", tags=["complaints"], response_class=StreamingResponse, responses=_DOWNLOAD)
async def export_dataset(
    request: Request,
    # Documented as enums, checked by the route: an unknown dataset or format is a 404, as a path is.
    dataset: str = Path(json_schema_extra={"enum": list(complaints.EXPORT_DATASETS)}),
    format: str = Path(json_schema_extra={"enum": list(complaints.EXPORT_FORMATS)}),
    from_: str | None = Query(default=None, alias="from", max_length=64, description=_INSTANT + " Inclusive."),
    to: str | None = Query(default=None, max_length=64, description=_INSTANT + " Exclusive."),
    partner: str | None = Query(default=None, max_length=64),
    _: Principal = Depends(staff_caller),
) -> StreamingResponse:
    """Stream cases, events, parties, notifications or scorecards as CSV or NDJSON (staff); no sandbox cases."""
    async with open_session(request) as session:
        export = await complaints.prepare_export(session=session, dataset=dataset, format=format, since=from_,
                                                 until=to, partner=partner, now=runtime(request).clock.now())
    return stream_export(request, export)


def stream_export(request: Request, export: complaints.Export) -> StreamingResponse:
    """A checked export as a download; each batch waits its turn for a connection like any request."""
    rt = runtime(request)

    @contextlib.asynccontextmanager
    async def sessions() -> AsyncIterator[AsyncSession]:
        async with rt.gate, rt.sessionmaker() as session:
            yield session

    return StreamingResponse(
        complaints.export_stream(sessions=sessions, export=export),
        media_type=export.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
