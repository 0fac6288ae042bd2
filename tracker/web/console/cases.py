"""Finding a case, its page, and the actions on it (note, nudge, parties, handoff, close, status link).

The case page loads the case once (``access.load_case``) and reads the rest by its id: the readers
here take the loaded row instead of a reference that every domain reader would look up again.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from kernel.errors import Forbidden, NotFound, Unprocessable

from kernel.pagination import decode_cursor, encode_cursor
from partners import service as partners
from tracker import access, cases, complaints, delivery, evidence, handoffs, membership, updates
from tracker.delivery import DeliveryRequestOut
from tracker.casetypes import case_type
from tracker.handoffs import handoff_out
from tracker.models import Case, Event, Handoff
from tracker.schemas import CloseIn, EventIn, EventOut, HandoffIn, HandoffOut, PartyIn, PartyPatch
from tracker.timeline import event_out
from tracker.verify import verify_case
from tracker.watchdog import NUDGE_INTERVAL
from tracker.web.console._ctx import StaffCtx, staff, staff_form
from tracker.web.console._pages import blank, console_router
from tracker.web.console._session import CSRF_FIELD, csrf_ok, signed_in
from tracker.web.deps import open_session, runtime
from tracker.web.evidence import file_response
from tracker.web.uploads import receive_upload

SEARCH_PAGE = 25
TIMELINE_PAGE = 500

router = console_router()


def case_url(ref: str) -> str:
    return f"/console/cases/{ref}"


# ---------------------------------------------------------------- search


@router.get("/search", response_class=HTMLResponse)
async def search(
    q: str = Query(default="", max_length=200),
    cursor: str | None = Query(default=None, max_length=200),
    ctx: StaffCtx = Depends(staff),
) -> Response:
    """Cases by reference, external reference (WorldTracer file, bag tag), customer phone or email,
    or title; without a query, the newest cases."""
    found = await cases.list_cases(session=ctx.session, principal=ctx.principal, base_url=ctx.base_url,
                                   text=blank(q), cursor=blank(cursor), limit=SEARCH_PAGE)
    return ctx.page("search.html", {
        "section": "search",
        "q": q.strip(),
        "items": found.items,
        "next_url": ctx.here(cursor=found.next_cursor) if found.next_cursor else None,
        "first_url": ctx.here(cursor=None) if cursor else None,
    })


# ---------------------------------------------------------------- the case page


@router.get("/cases/{ref}", response_class=HTMLResponse)
async def case_page(
    ref: str = Path(max_length=40),
    after: str | None = Query(default=None, max_length=200),
    ctx: StaffCtx = Depends(staff),
) -> Response:
    """The case's whole story: customer, parties, timeline (with verification), what was sent."""
    session = ctx.session
    row, _ = await access.load_case(session=session, principal=ctx.principal, ref=ref)
    ctype = await case_type(session=session, code=row.type)
    parties = (await access.parties_by_case(session, [row.id]))[row.id]
    case = cases.case_out(row, parties, principal=ctx.principal, ctype=ctype, base_url=ctx.base_url)
    events, more_after = await _timeline(ctx, row, after=blank(after))
    sent = await complaints.deliveries(session=session, case_id=row.id, limit=200)
    known = await partners.list_partners(session=session)
    on_case = {p.partner for p in case.parties}
    return ctx.page("case.html", {
        "section": "search",
        "case": case,
        "events": [_event_view(e) for e in events],
        "more_events_url": ctx.here(after=more_after) if more_after else None,
        "handoffs": await _handoffs(ctx, row),
        "verified": await verify_case(session=session, ref=row.ref, case=row),
        "webhooks": [d for d in sent.items if d.channel == "webhook"],
        "messages": [d for d in sent.items if d.channel != "webhook"],
        "names": {p.id: p.name for p in known},
        "addable": [p for p in known if p.id not in on_case],
        "terminal": [(code, ctype.label(code, "en")) for code, s in ctype.statuses.items() if s.get("terminal")],
        "nudge_interval": NUDGE_INTERVAL,
        "attachments": (await evidence.list_attachments(session=session, principal=ctx.principal, ref=row.ref)).items,
        "delivery": await _delivery(ctx, row),
    })


async def _delivery(ctx: StaffCtx, case: Case) -> DeliveryRequestOut | None:
    try:
        return await delivery.read_delivery(session=ctx.session, principal=ctx.principal, ref=case.ref)
    except NotFound:
        return None


async def _timeline(ctx: StaffCtx, case: Case, *, after: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the case's events as staff see them (internal notes too), and the cursor of the next."""
    query = select(Event).where(Event.case_id == case.id).order_by(Event.seq).limit(TIMELINE_PAGE + 1)
    start = decode_cursor(after)
    if start is not None:
        query = query.where(Event.seq > start)
    rows = list((await ctx.session.scalars(query)).all())
    shown = rows[:TIMELINE_PAGE]
    more = encode_cursor(shown[-1].seq) if len(rows) > TIMELINE_PAGE else None
    return [EventOut.model_validate(event_out(e)).model_dump() for e in shown], more


async def _handoffs(ctx: StaffCtx, case: Case) -> list[HandoffOut]:
    rows = await ctx.session.scalars(select(Handoff).where(Handoff.case_id == case.id).order_by(Handoff.id))
    return [handoff_out(h) for h in rows]


EVENT_META = ("seq", "type", "actor", "visibility", "occurred_at", "received_at", "hash", "prev_hash", "signed",
              "keyid")


def _event_view(event: dict[str, Any]) -> dict[str, Any]:
    """An event for the timeline: its header, and its posted fields as (name, text) pairs."""
    fields = [(key.replace("_", " "), _plain_text(value)) for key, value in event.items()
              if key not in EVENT_META and value not in (None, "", [], {})]
    # "via" stays among the fields too: the badge says how it came, the field says it on the record.
    return {**{k: event.get(k) for k in EVENT_META}, "via": event.get("via"), "fields": fields}


def _plain_text(value: Any) -> str:
    """A posted value as one line of text: objects as "key: value", lists joined by semicolons."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_plain_text(item) for item in value)
    return str(value)


# ---------------------------------------------------------------- actions


@router.post("/cases/{ref}/notes")
async def add_note(
    ref: str = Path(max_length=40),
    note: str = Form(min_length=1, max_length=8000),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    """An internal note: on the timeline for staff only, never shown to partners or the customer."""
    return await ctx.write(
        lambda: updates.post_update(session=ctx.session, principal=ctx.principal, ref=ref,
                                    payload=EventIn(internal_note=note, visibility="internal"), now=ctx.now()),
        done="noted", then=case_url(ref),
    )


@router.post("/cases/{ref}/parties/{partner_id}/nudge")
async def nudge(
    ref: str = Path(max_length=40),
    partner_id: str = Path(max_length=64),
    note: str = Form(default="", max_length=2000),
    back: str = Form(default="", max_length=2000),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    return await ctx.write(
        lambda: membership.nudge_party(session=ctx.session, principal=ctx.principal, ref=ref, partner_id=partner_id,
                                       note=blank(note), now=ctx.now(), base_url=ctx.base_url),
        done="nudged", then=case_url(ref), back=back,
    )


@router.post("/cases/{ref}/parties")
async def add_party(
    ref: str = Path(max_length=40),
    partner: str = Form(max_length=64),
    role: str = Form(default="party", max_length=40),
    responsible: str | None = Form(default=None, max_length=10),
    cadence: str = Form(default="", max_length=40),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    payload = PartyIn.model_validate({"partner": partner, "role": blank(role) or "party",
                                      "responsible": responsible is not None, "cadence": blank(cadence)})
    return await ctx.write(
        lambda: membership.add_party(session=ctx.session, principal=ctx.principal, ref=ref, payload=payload,
                                     now=ctx.now(), base_url=ctx.base_url),
        done="party-added", then=case_url(ref),
    )


@router.post("/cases/{ref}/parties/{partner_id}/release")
async def release_party(
    ref: str = Path(max_length=40),
    partner_id: str = Path(max_length=64),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    ctx.principal.require_staff("supervisor")
    return await ctx.write(
        lambda: membership.patch_party(session=ctx.session, principal=ctx.principal, ref=ref, partner_id=partner_id,
                                       payload=PartyPatch(released=True), now=ctx.now()),
        done="party-released", then=case_url(ref),
    )


@router.post("/cases/{ref}/handoffs")
async def hand_off(
    ref: str = Path(max_length=40),
    to: str = Form(max_length=64),
    from_: str = Form(default="", alias="from", max_length=64),
    note: str = Form(default="", max_length=2000),
    accept_within: str = Form(default="", max_length=40),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    payload = HandoffIn.model_validate({"to": to, "from": blank(from_), "note": blank(note),
                                        "accept_within": blank(accept_within)})
    return await ctx.write(
        lambda: handoffs.request_handoff(session=ctx.session, principal=ctx.principal, ref=ref, payload=payload,
                                         now=ctx.now()),
        done="handed-off", then=case_url(ref),
    )


@router.post("/cases/{ref}/close")
async def close(
    ref: str = Path(max_length=40),
    resolution: str = Form(min_length=1, max_length=2000),
    status: str = Form(default="", max_length=40),
    message: str = Form(default="", max_length=2000),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    ctx.principal.require_staff("supervisor")
    payload = CloseIn(resolution=resolution, status=blank(status), message=blank(message))
    return await ctx.write(
        lambda: cases.close_case(session=ctx.session, principal=ctx.principal, ref=ref, payload=payload,
                                 now=ctx.now(), base_url=ctx.base_url),
        done="closed", then=case_url(ref),
    )


# ---------------------------------------------------------------- evidence


@router.post("/cases/{ref}/attachments")
async def add_attachment(request: Request, ref: str = Path(max_length=40)) -> Response:
    """A file from staff (a plain file input; the page also takes a drop). Streamed like every upload:
    the session is checked from the cookie first, the CSRF token from the form once it has arrived."""
    rt = runtime(request)
    async with open_session(request) as session:
        signed = await signed_in(request, session)
        await access.load_case(session=session, principal=signed.principal, ref=ref)
    async with receive_upload(request, file_fields=frozenset({"file"}),
                              max_file_bytes=rt.settings.attachment_max_bytes) as upload:
        if not csrf_ok(secret=rt.settings.effective_secret_key(), sid=signed.sid, given=upload.fields.get(CSRF_FIELD)):
            raise Forbidden("The form's security token is missing or wrong; reload the page and try again.")
        file = upload.files.get("file")
        if file is None or file.size == 0:
            raise Unprocessable("Choose a file to attach.")
        kind = (upload.text("kind") or "document").strip()
        visibility = (upload.text("visibility") or "parties").strip()
        if kind not in evidence.KINDS or visibility not in ("public", "parties", "internal"):
            raise Unprocessable("Choose a kind and a visibility from the lists.")
        note = (upload.text("note") or "").strip()[:2000] or None
        kept = await evidence.keep(store=rt.store, path=file.path, original_sha256=file.sha256,
                                   filename=file.filename)
    async with open_session(request) as session:
        ctx = StaffCtx(request=request, session=session, staff=signed, rt=rt)
        return await ctx.write(
            lambda: evidence.attach(session=session, principal=ctx.principal, ref=ref, kept=kept, kind=kind,
                                    visibility=visibility, note=note, now=ctx.now()),
            done="attached", then=case_url(ref) + "#h-evidence",
        )


@router.get("/cases/{ref}/attachments/{attachment_id}")
async def attachment_file(ref: str = Path(max_length=40), attachment_id: int = Path(),
                          ctx: StaffCtx = Depends(staff)) -> Response:
    found = await evidence.find(session=ctx.session, principal=ctx.principal, ref=ref, attachment_id=attachment_id)
    return await file_response(ctx.rt.store, found)


@router.get("/cases/{ref}/attachments/{attachment_id}/thumbnail")
async def attachment_thumbnail(ref: str = Path(max_length=40), attachment_id: int = Path(),
                               ctx: StaffCtx = Depends(staff)) -> Response:
    found = await evidence.find(session=ctx.session, principal=ctx.principal, ref=ref, attachment_id=attachment_id)
    return await file_response(ctx.rt.store, found, thumbnail=True)


@router.post("/cases/{ref}/status-link")
async def rotate_status_link(ref: str = Path(max_length=40), ctx: StaffCtx = Depends(staff_form)) -> Response:
    return await ctx.write(
        lambda: cases.rotate_status_link(session=ctx.session, principal=ctx.principal, ref=ref, now=ctx.now(),
                                         base_url=ctx.base_url),
        done="rotated", then=case_url(ref),
    )
