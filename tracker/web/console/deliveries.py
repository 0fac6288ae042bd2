"""Webhook deliveries, and sending a dead or failed one again (supervisors)."""

from __future__ import annotations

from fastapi import Depends, Form, Path, Query
from fastapi.responses import HTMLResponse, Response

from kernel.errors import NotFound
from notifications.dispatcher import resend
from partners import service as partners
from tracker import complaints
from tracker.web.console._ctx import StaffCtx, staff, staff_form
from tracker.web.console._pages import blank, console_router

PAGE = 50
DELIVERY_STATES = ("pending", "sending", "delivered", "failed", "dead")

router = console_router()


@router.get("/deliveries", response_class=HTMLResponse)
async def deliveries(
    state: str | None = Query(default=None, pattern="^(pending|sending|delivered|failed|dead)?$"),
    partner: str | None = Query(default=None, max_length=64),
    cursor: str | None = Query(default=None, max_length=200),
    ctx: StaffCtx = Depends(staff),
) -> Response:
    """Webhook deliveries, newest first; ``state=dead`` is the dead-letter queue."""
    state, partner = blank(state), blank(partner)
    found = await complaints.deliveries(session=ctx.session, channel="webhook", state=state, partner=partner,
                                        cursor=blank(cursor), limit=PAGE)
    return ctx.page("deliveries.html", {
        "section": "deliveries", "items": found.items, "state": state, "partner": partner, "states": DELIVERY_STATES,
        "partners": await partners.list_partners(session=ctx.session),
        "next_url": ctx.here(cursor=found.next_cursor) if found.next_cursor else None,
        "first_url": ctx.here(cursor=None) if cursor else None,
    })


@router.post("/deliveries/{delivery_id}/resend")
async def resend_delivery(
    delivery_id: int = Path(ge=1, le=2**63 - 1),
    back: str = Form(default="", max_length=2000),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    ctx.principal.require_staff("supervisor")

    async def send_again() -> None:
        if await resend(session=ctx.session, notification_id=delivery_id, now=ctx.now()) is None:
            raise NotFound(f"No dead or failed delivery {delivery_id}.")

    return await ctx.write(send_again, done="resent", then="/console/deliveries?state=dead", back=back)
