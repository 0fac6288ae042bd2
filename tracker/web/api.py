"""The ``/v1`` JSON API of SPEC.md."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from partners import service as partners
from partners.schemas import KeyIn, KeyOut, PartnerIn, PartnerList, PartnerOut, PartnerPatch
from notifications.dispatcher import resend
from tracker import access, cases, complaints, handoffs, membership, updates
from tracker.complaints import DeliveryList, DeliveryOut, DisputeList, OverdueList, Scorecard
from kernel.errors import Forbidden, NotFound
from tracker.invitations import InvitationList, list_invitations
from tracker.bundle import EvidenceBundle, build_bundle, render as render_bundle
from tracker.schemas import (
    AcceptIn,
    AckIn,
    CaseIn,
    CaseList,
    CaseOut,
    CloseIn,
    EventIn,
    EventList,
    EventOut,
    HandoffIn,
    HandoffList,
    HandoffOut,
    NudgeIn,
    NudgeOut,
    PartyIn,
    PartyOut,
    PartyPatch,
    Problem,
    StatusLinkOut,
)
from tracker.admission import Verified
from tracker.web.deps import Ctx, caller
from tracker.web.updates import post_event, signed_write

_problem = {"model": Problem, "content": {"application/problem+json": {}}}
PROBLEMS = {400: _problem, 401: _problem, 403: _problem, 404: _problem, 409: _problem, 413: _problem,
            415: _problem, 422: _problem, 429: _problem}
IDEMPOTENCY = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 255},
            "description": "A retry with the same key and body returns the first response.",
        }
    ]
}

router = APIRouter(prefix="/v1", responses=PROBLEMS)


# ---------------------------------------------------------------- partners (admin)


@router.post("/partners", status_code=201, response_model=PartnerOut, openapi_extra=IDEMPOTENCY, tags=["partners"])
async def create_partner(payload: PartnerIn, ctx: Ctx = Depends(caller)) -> Response:
    """Register a partner. A generated webhook secret is returned once."""
    ctx.principal.require_staff("admin")
    return await ctx.write(
        lambda: partners.register_partner(session=ctx.session, payload=payload, now=ctx.now()), status_code=201
    )


@router.get("/partners", response_model=PartnerList, tags=["partners"])
async def list_partners(ctx: Ctx = Depends(caller)) -> PartnerList:
    ctx.principal.require_staff("agent")
    return PartnerList(items=await partners.list_partners(session=ctx.session))


@router.get("/partners/{partner_id}", response_model=PartnerOut, tags=["partners"])
async def get_partner(partner_id: str, ctx: Ctx = Depends(caller)) -> PartnerOut:
    _staff_or_self(ctx, partner_id)
    return await partners.get_partner(session=ctx.session, partner_id=partner_id)


@router.patch("/partners/{partner_id}", response_model=PartnerOut, openapi_extra=IDEMPOTENCY, tags=["partners"])
async def update_partner(partner_id: str, payload: PartnerPatch, ctx: Ctx = Depends(caller)) -> Response:
    """Change a partner's contact roster (ops, duty, account manager) or escalation ladder (admin)."""
    ctx.principal.require_staff("admin")
    return await ctx.write(
        lambda: partners.update_partner(session=ctx.session, partner_id=partner_id, payload=payload),
    )


@router.post(
    "/partners/{partner_id}/keys", status_code=201, response_model=KeyOut, openapi_extra=IDEMPOTENCY, tags=["partners"]
)
async def add_partner_key(partner_id: str, payload: KeyIn, ctx: Ctx = Depends(caller)) -> Response:
    """Add a signing key (rotation: several may be active). An HMAC secret is returned once."""
    ctx.principal.require_staff("admin")
    return await ctx.write(
        lambda: partners.add_key(session=ctx.session, partner_id=partner_id, payload=payload, now=ctx.now()),
        status_code=201,
    )


@router.delete("/partners/{partner_id}/keys/{keyid}", response_model=KeyOut, tags=["partners"])
async def revoke_partner_key(partner_id: str, keyid: str, ctx: Ctx = Depends(caller)) -> Response:
    """Revoke a key; requests signed with it are refused from now on."""
    ctx.principal.require_staff("admin")
    return await ctx.write(
        lambda: partners.revoke_key(session=ctx.session, partner_id=partner_id, keyid=keyid, now=ctx.now())
    )


def _staff_or_self(ctx: Ctx, partner_id: str) -> None:
    if ctx.principal.is_staff:
        return
    if ctx.principal.partner_id != partner_id:
        raise Forbidden("A partner may only read its own record.")


# ---------------------------------------------------------------- cases


@router.post("/cases", status_code=201, response_model=CaseOut, openapi_extra=IDEMPOTENCY, tags=["cases"])
async def create_case(payload: CaseIn, ctx: Ctx = Depends(caller)) -> Response:
    """Open a case with its customer, parties and external references; answers with its status link."""
    if ctx.principal.is_staff:
        ctx.principal.require_staff("agent")
    return await ctx.write(
        lambda: cases.open_case(
            session=ctx.session, principal=ctx.principal, payload=payload, now=ctx.now(), base_url=ctx.base_url,
        ),
        status_code=201,
    )


@router.get("/cases", response_model=CaseList, tags=["cases"])
async def list_cases(
    ctx: Ctx = Depends(caller),
    status: str | None = Query(default=None, max_length=40),
    partner: str | None = Query(default=None, max_length=64),
    overdue: bool | None = None,
    text: str | None = Query(default=None, max_length=200, description="Reference, external reference, title, or (staff) customer phone or email."),
    cursor: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=50, ge=1, le=200),
) -> CaseList:
    return await cases.list_cases(
        session=ctx.session,
        principal=ctx.principal,
        base_url=ctx.base_url,
        status=status,
        partner=partner,
        overdue=overdue,
        text=text,
        cursor=cursor,
        limit=limit,
    )


@router.get("/cases/{ref}", response_model=CaseOut, tags=["cases"])
async def get_case(ref: str, ctx: Ctx = Depends(caller)) -> CaseOut:
    return await cases.read_case(session=ctx.session, principal=ctx.principal, ref=ref, base_url=ctx.base_url)


@router.get("/cases/{ref}/events", response_model=EventList, tags=["events"])
async def list_case_events(
    ref: str,
    ctx: Ctx = Depends(caller),
    cursor: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=100, ge=1, le=500),
) -> EventList:
    """The timeline, oldest first. Partners never see internal events."""
    return await updates.list_events(session=ctx.session, principal=ctx.principal, ref=ref, cursor=cursor, limit=limit)


@router.get("/cases/{ref}/bundle", response_model=EvidenceBundle, tags=["cases"])
async def get_case_bundle(ref: str, ctx: Ctx = Depends(caller)) -> Response:
    """The case's evidence bundle (staff, the owner partner): one file `baton verify --bundle` checks offline."""
    bundle = await build_bundle(session=ctx.session, principal=ctx.principal, ref=ref, now=ctx.now())
    disposition = f'attachment; filename="{bundle.case.ref}.baton-bundle.json"'
    return Response(render_bundle(bundle), media_type="application/json",
                    headers={"Content-Disposition": disposition, "Cache-Control": "no-store"})


@router.post(
    "/cases/{ref}/events", status_code=201, response_model=EventOut, openapi_extra=IDEMPOTENCY, tags=["events"]
)
async def post_case_event(
    ref: str, payload: EventIn, request: Request, verified: Verified | None = Depends(signed_write)
) -> Response:
    """Post a status update or note. A partner's update puts its party back on track."""
    return await post_event(request=request, ref=ref, payload=payload, verified=verified)


@router.post(
    "/cases/{ref}/parties", status_code=201, response_model=PartyOut, openapi_extra=IDEMPOTENCY, tags=["parties"]
)
async def add_case_party(ref: str, payload: PartyIn, ctx: Ctx = Depends(caller)) -> Response:
    return await ctx.write(
        lambda: membership.add_party(
            session=ctx.session, principal=ctx.principal, ref=ref, payload=payload, now=ctx.now(), base_url=ctx.base_url,
        ),
        status_code=201,
    )


@router.patch("/cases/{ref}/parties/{partner_id}", response_model=PartyOut, tags=["parties"])
async def update_case_party(ref: str, partner_id: str, payload: PartyPatch, ctx: Ctx = Depends(caller)) -> Response:
    """Change a party's role, cadence or responsibility, or release it."""
    return await ctx.write(
        lambda: membership.patch_party(
            session=ctx.session, principal=ctx.principal, ref=ref, partner_id=partner_id, payload=payload, now=ctx.now(),
        )
    )


@router.post(
    "/cases/{ref}/parties/{partner_id}/accept", response_model=PartyOut, openapi_extra=IDEMPOTENCY, tags=["parties"]
)
async def accept_case_invitation(ref: str, partner_id: str, payload: AcceptIn, ctx: Ctx = Depends(caller)) -> Response:
    """The invited partner joins the case; from now on it is watched if responsible."""
    return await ctx.write(
        lambda: membership.answer_invitation(session=ctx.session, principal=ctx.principal, ref=ref,
                                             partner_id=partner_id, accept=True, payload=payload, now=ctx.now())
    )


@router.post(
    "/cases/{ref}/parties/{partner_id}/decline", response_model=PartyOut, openapi_extra=IDEMPOTENCY, tags=["parties"]
)
async def decline_case_invitation(ref: str, partner_id: str, payload: AcceptIn, ctx: Ctx = Depends(caller)) -> Response:
    """The invited partner refuses the case; it is released and writes nothing more on it."""
    return await ctx.write(
        lambda: membership.answer_invitation(session=ctx.session, principal=ctx.principal, ref=ref,
                                             partner_id=partner_id, accept=False, payload=payload, now=ctx.now())
    )


@router.get("/invitations", response_model=InvitationList, tags=["parties"])
async def list_party_invitations(ctx: Ctx = Depends(caller)) -> InvitationList:
    """Parties invited by another partner that have neither accepted nor declined, oldest first (staff)."""
    ctx.principal.require_staff("agent")
    return await list_invitations(session=ctx.session)


@router.get("/cases/{ref}/handoffs", response_model=HandoffList, tags=["handoffs"])
async def list_case_handoffs(ref: str, ctx: Ctx = Depends(caller)) -> HandoffList:
    return await handoffs.list_handoffs(session=ctx.session, principal=ctx.principal, ref=ref)


@router.post(
    "/cases/{ref}/handoffs", status_code=201, response_model=HandoffOut, openapi_extra=IDEMPOTENCY, tags=["handoffs"]
)
async def request_case_handoff(ref: str, payload: HandoffIn, ctx: Ctx = Depends(caller)) -> Response:
    """Pass custody to another party, which must accept within the window."""
    return await ctx.write(
        lambda: handoffs.request_handoff(session=ctx.session, principal=ctx.principal, ref=ref, payload=payload, now=ctx.now()),
        status_code=201,
    )


@router.post(
    "/cases/{ref}/handoffs/{handoff_id}/accept", response_model=HandoffOut, openapi_extra=IDEMPOTENCY, tags=["handoffs"]
)
async def accept_case_handoff(
    ref: str, payload: AcceptIn, handoff_id: int = Path(ge=1, le=2**63 - 1), ctx: Ctx = Depends(caller)
) -> Response:
    return await ctx.write(
        lambda: handoffs.accept_handoff(
            session=ctx.session, principal=ctx.principal, ref=ref, handoff_id=handoff_id, payload=payload, now=ctx.now()
        )
    )


@router.post("/cases/{ref}/close", response_model=CaseOut, openapi_extra=IDEMPOTENCY, tags=["cases"])
async def close_case(ref: str, payload: CloseIn, ctx: Ctx = Depends(caller)) -> Response:
    """Close with a resolution; the customer is asked to confirm."""
    return await ctx.write(
        lambda: cases.close_case(
            session=ctx.session, principal=ctx.principal, ref=ref, payload=payload, now=ctx.now(), base_url=ctx.base_url
        )
    )


@router.post("/cases/{ref}/status-link", response_model=StatusLinkOut, openapi_extra=IDEMPOTENCY, tags=["cases"])
async def rotate_case_status_link(ref: str, ctx: Ctx = Depends(caller)) -> Response:
    """Issue a new status link (staff); the old one stops working."""
    return await ctx.write(
        lambda: cases.rotate_status_link(
            session=ctx.session, principal=ctx.principal, ref=ref, now=ctx.now(), base_url=ctx.base_url
        )
    )


# ---------------------------------------------------------------- the complaint department


@router.post(
    "/cases/{ref}/parties/{partner_id}/nudges", status_code=201, response_model=NudgeOut,
    openapi_extra=IDEMPOTENCY, tags=["complaints"],
)
async def nudge_case_party(ref: str, partner_id: str, payload: NudgeIn, ctx: Ctx = Depends(caller)) -> Response:
    """Chase a partner now: webhook and email to its ops contact; at most once an hour per party."""
    return await ctx.write(
        lambda: membership.nudge_party(session=ctx.session, principal=ctx.principal, ref=ref, partner_id=partner_id,
                                  note=payload.note, now=ctx.now(), base_url=ctx.base_url),
        status_code=201,
    )


@router.post(
    "/cases/{ref}/parties/{partner_id}/ack", response_model=PartyOut, openapi_extra=IDEMPOTENCY, tags=["complaints"],
)
async def acknowledge_case_party(ref: str, partner_id: str, payload: AckIn, ctx: Ctx = Depends(caller)) -> Response:
    """A late party says why and until when (at most 24 hours): its escalation ladder waits; it stays late."""
    return await ctx.write(
        lambda: membership.acknowledge_party(session=ctx.session, principal=ctx.principal, ref=ref,
                                             partner_id=partner_id, payload=payload, now=ctx.now()),
    )


@router.get("/overdue", response_model=OverdueList, tags=["complaints"])
async def list_overdue(
    ctx: Ctx = Depends(caller),
    partner: str | None = Query(default=None, max_length=64),
    state: str | None = Query(default=None, pattern="^(late|escalated)$"),
    cursor: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=50, ge=1, le=200),
) -> OverdueList:
    """Late and escalated parties across all open cases: escalated first, then most overdue first."""
    ctx.principal.require_staff("agent")
    return await complaints.overdue(session=ctx.session, partner=partner, state=state,
                                    cursor=cursor, limit=limit)


@router.get("/disputes", response_model=DisputeList, tags=["complaints"])
async def list_disputes(
    ctx: Ctx = Depends(caller),
    cursor: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=50, ge=1, le=200),
) -> DisputeList:
    """Resolved cases whose customer is not satisfied, newest answer first."""
    ctx.principal.require_staff("agent")
    return await complaints.disputes(session=ctx.session, cursor=cursor, limit=limit)


@router.get("/partners/{partner_id}/scorecard", response_model=Scorecard, tags=["complaints"])
async def get_partner_scorecard(
    partner_id: str, ctx: Ctx = Depends(caller), days: int = Query(default=30, ge=1, le=366)
) -> Scorecard:
    """Responsiveness over a window: first update, intervals, on-time rate, episodes, handoffs."""
    _staff_or_self(ctx, partner_id)
    return await complaints.scorecard(session=ctx.session, partner_id=partner_id, days=days, now=ctx.now())


@router.get("/webhook-deliveries", response_model=DeliveryList, tags=["complaints"])
async def list_webhook_deliveries(
    ctx: Ctx = Depends(caller),
    state: str | None = Query(default=None, pattern="^(pending|sending|delivered|failed|dead)$"),
    partner: str | None = Query(default=None, max_length=64),
    cursor: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=50, ge=1, le=200),
) -> DeliveryList:
    """Webhook deliveries, newest first; ``state=dead`` is the dead-letter queue."""
    ctx.principal.require_staff("agent")
    return await complaints.deliveries(session=ctx.session, channel="webhook", state=state, partner=partner,
                                       cursor=cursor, limit=limit)


@router.post("/webhook-deliveries/{delivery_id}/resend", response_model=DeliveryOut, tags=["complaints"])
async def resend_webhook_delivery(
    ctx: Ctx = Depends(caller), delivery_id: int = Path(ge=1, le=2**63 - 1)
) -> Response:
    """Queue a dead-lettered (or failed) delivery again, with a fresh retry schedule."""
    ctx.principal.require_staff("supervisor")

    async def produce() -> DeliveryOut:
        row = await resend(session=ctx.session, notification_id=delivery_id, now=ctx.now())
        if row is None:
            raise NotFound(f"No dead or failed delivery {delivery_id}.")
        return complaints.delivery_out(row, None)

    return await ctx.write(produce)


@router.get("/cases/{ref}/notifications", response_model=DeliveryList, tags=["complaints"])
async def list_case_notifications(
    ref: str, ctx: Ctx = Depends(caller), limit: int = Query(default=100, ge=1, le=500)
) -> DeliveryList:
    """Everything Baton sent (or will send) about a case: webhooks, emails, SMS, with delivery state."""
    case, _ = await access.load_case(session=ctx.session, principal=ctx.principal, ref=ref)
    ctx.principal.require_staff("agent")
    return await complaints.deliveries(session=ctx.session, case_id=case.id, limit=limit, with_content=True)
