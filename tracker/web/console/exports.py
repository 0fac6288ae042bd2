"""Exports: a form that names a dataset, a format, UTC days and a partner, and the download it starts.

The download is the API's export (``tracker.web.exports.stream_export``) behind the console's
session cookie, which the API does not read (its path is ``/console``). It is a GET: it changes
nothing, so it needs no CSRF token, and the browser saves it as the file the API would name.
"""

from __future__ import annotations

import datetime as dt

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from kernel.errors import Unprocessable
from partners import service as partners
from tracker import complaints
from tracker.web.console._ctx import StaffCtx, staff
from tracker.web.console._pages import blank, console_router
from tracker.web.console._session import Staff, signed_in
from tracker.web.deps import open_session, runtime
from tracker.web.exports import stream_export

router = console_router()


@router.get("/exports", response_class=HTMLResponse)
async def exports_page(ctx: StaffCtx = Depends(staff)) -> Response:
    """The export form, with each dataset's columns."""
    ctx.principal.require_staff("agent")
    return ctx.page("exports.html", {
        "section": "exports", "formats": tuple(complaints.EXPORT_FORMATS),
        "columns": {name: complaints.export_columns(name) for name in complaints.EXPORT_DATASETS},
        "partners": await partners.list_partners(session=ctx.session),
    })


async def signed_in_staff(request: Request) -> Staff:
    """The signed-in staff member, checked before the form's values (sign in first, then 422).

    Not ``Depends(staff)``: its session would stay open (and hold a connection) for the whole download.
    """
    async with open_session(request) as session:
        signed = await signed_in(request, session)
        signed.principal.require_staff("agent")
        return signed


@router.get("/exports/download")
async def download_export(
    request: Request,
    dataset: str = Query(default="cases", max_length=40),
    format: str = Query(default="csv", max_length=10),
    from_: str | None = Query(default=None, alias="from", max_length=40),
    to: str | None = Query(default=None, max_length=40),
    partner: str | None = Query(default=None, max_length=64),
    _: Staff = Depends(signed_in_staff),
) -> Response:
    """The export the form describes, streamed; ``from`` and ``to`` are UTC days, both included."""
    async with open_session(request) as session:
        export = await complaints.prepare_export(
            session=session, dataset=dataset, format=format, since=_day(from_, field="from"),
            until=_day(to, field="to", after=True), partner=blank(partner), now=runtime(request).clock.now())
    return stream_export(request, export)


def _day(value: str | None, *, field: str, after: bool = False) -> str | None:
    """A form's date as the instant it starts (``after``: the next day's start, so the day is included)."""
    if not blank(value):
        return None
    try:
        day = dt.date.fromisoformat((value or "").strip())
    except ValueError:
        raise Unprocessable(f"{field}: a date such as 2026-11-01.") from None
    if after:
        if day == dt.date.max:
            raise Unprocessable(f"{field}: a date such as 2026-11-01.")
        day += dt.timedelta(days=1)
    return f"{day.isoformat()}T00:00:00Z"
