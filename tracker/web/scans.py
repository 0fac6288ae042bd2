"""``POST /v1/scans``: partners' bag scans, in JSON, CSV or IATA Type B bag messages (``tracker.scans``);
``GET /v1/me``: who the caller's credentials say it is (``baton-partner whoami``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from kernel.errors import Forbidden
from partners.models import Partner
from tracker import scans
from tracker.scans import ScansOut
from tracker.web.api import IDEMPOTENCY, PROBLEMS
from tracker.web.deps import Ctx, caller

router = APIRouter(prefix="/v1", responses=PROBLEMS)

BODY = {
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "properties": {"scans": {"type": "array", "items": {
            "type": "object", "required": ["bag_tag", "at", "point"], "properties": {
                "bag_tag": {"type": "string"}, "at": {"type": "string", "format": "date-time"},
                "station": {"type": "string"}, "flight": {"type": "string"}, "note": {"type": "string"},
                "point": {"type": "string", "enum": ["acceptance", "loading", "transfer", "arrival", "delivery",
                                                     "on_hand"]}}}}}}},
        "text/csv": {"schema": {"type": "string", "description": "A header line: bag_tag,at,station,point,flight,note"}},
        "text/plain": {"schema": {"type": "string", "description": "IATA Type B bag messages (BSM, BPM; RP 1745)."}},
    }},
    **IDEMPOTENCY,
}


class MeOut(BaseModel):
    kind: Literal["partner", "staff"]
    partner: str | None = Field(default=None, description="The partner the signing key belongs to.")
    name: str
    role: str | None = Field(default=None, description="Staff: agent, supervisor or admin.")


@router.get("/me", response_model=MeOut, tags=["partners"])
async def who_am_i(ctx: Ctx = Depends(caller)) -> MeOut:
    """Who the credentials say the caller is: a partner (by its signing key) or a staff member."""
    principal = ctx.principal
    if principal.partner_id is not None:
        partner = await ctx.session.get(Partner, principal.partner_id)
        return MeOut(kind="partner", partner=principal.partner_id, name=partner.name if partner else principal.name)
    return MeOut(kind="staff", name=principal.name, role=principal.role)


@router.post("/scans", response_model=ScansOut, openapi_extra=BODY, tags=["scans"])
async def post_scans(request: Request, ctx: Ctx = Depends(caller)) -> Response:
    """Bag scans (signed, a partner's): each that matches an open case's bag tag is a scan event on it and
    counts as the partner's update; unmatched ones wait 30 days for their case; duplicates are one."""
    if ctx.principal.partner_id is None:
        raise Forbidden("Scans come from partners (signed requests).")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    parsed = scans.read(await request.body(), ctype, now=ctx.now())
    return await ctx.write(lambda: scans.receive(session=ctx.session, principal=ctx.principal, parsed=parsed,
                                                 now=ctx.now(), base_url=ctx.base_url))
