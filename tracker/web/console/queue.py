"""The overdue queue (``/console/``): the complaint department's home page."""

from __future__ import annotations

from fastapi import Depends, Query
from fastapi.responses import HTMLResponse, Response

from partners import service as partners
from tracker import claims, complaints
from tracker.invitations import list_invitations
from tracker.parties import OVERDUE
from tracker.watchdog import NUDGE_INTERVAL
from tracker.web.console._ctx import StaffCtx, staff
from tracker.web.console._pages import blank, console_router, offset

PAGE = 50
QUEUE_REFRESH_SECONDS = 30
OVERDUE_STATE = f"^({'|'.join(OVERDUE)})?$"  # the queue filters on late or escalated, or neither

router = console_router()


@router.get("/", response_class=HTMLResponse)
async def queue(
    partner: str | None = Query(default=None, max_length=64),
    state: str | None = Query(default=None, pattern=OVERDUE_STATE),
    cursor: str | None = Query(default=None, max_length=200),
    refresh: str | None = Query(default=None, pattern="^(on|off)$"),
    ctx: StaffCtx = Depends(staff),
) -> Response:
    """Late and escalated parties, escalated first then most overdue; the page reloads every 30 s
    unless the user turned that off (``refresh=off``, kept by the filters and the pager)."""
    partner, state = blank(partner), blank(state)
    start = offset(blank(cursor))
    items = await complaints.overdue(session=ctx.session, partner=partner, state=state, cursor=blank(cursor),
                                     limit=PAGE)
    return ctx.page("queue.html", {
        "section": "queue",
        "items": items.items,
        "partners": await partners.list_partners(session=ctx.session),
        "partner": partner,
        "state": state,
        "offset": start,
        "next_url": ctx.here(cursor=items.next_cursor) if items.next_cursor else None,
        "first_url": ctx.here(cursor=None) if start else None,
        "nudge_interval": NUDGE_INTERVAL,
        "refresh": 0 if refresh == "off" else QUEUE_REFRESH_SECONDS,
        "refresh_toggle_url": ctx.here(refresh=None if refresh == "off" else "off"),
        "invitations": (await list_invitations(session=ctx.session, limit=PAGE)).items,
        "claims": (await claims.overdue_claims(session=ctx.session, principal=ctx.principal, overdue=True,
                                               limit=PAGE)).items,
    })
