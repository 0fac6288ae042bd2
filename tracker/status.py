"""The customer's side of a case: what the status link shows, and what the customer may say.

Only what a customer may see leaves this module: the first name, the status in plain words,
who holds the item, when the next update is due, an honest notice when a partner is late, the
public timeline (and the customer's own messages), and the resolution. Never internal notes,
partner-only events, contact data or other partners' details.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from partners.models import Partner
from tracker import announce, claims, delivery, evidence, rights
from tracker.delivery import WindowOut
from tracker.rights import CapOut, RightOut
from tracker.casetypes import case_type
from kernel.errors import Conflict, NotFound
from tracker.models import Case, Event, Party
from tracker.parties import PartyState, holds_custody, is_acknowledged, is_overdue
from tracker.timeline import append_event

TOKEN_MIN, TOKEN_MAX = 22, 64
PUBLIC_TYPES = ("case.opened", "update", "handoff.accepted", "case.closed", "case.deadline", "customer.message",
                "customer.confirmation", "delivery.accepted", "delivery.completed", "case.refund_due", "claim.decided",
                "claim.paid")


class Holder(BaseModel):
    name: str
    role: str


class Notice(BaseModel):
    kind: Literal[PartyState.LATE, PartyState.ESCALATED]
    waiting_on: str
    since: dt.datetime
    chased_at: dt.datetime | None
    reason: str | None = Field(default=None, description="The late partner's own reason, while it is acknowledged.")
    until: dt.datetime | None = Field(default=None, description="When it said it will update.")


class TimelineEntry(BaseModel):
    at: dt.datetime
    kind: str
    status: str | None = None
    status_label: str | None = None
    message: str | None = None
    location: str | None = None
    holder: str | None = None
    by_customer: bool = False


class FileOut(BaseModel):
    """A file the customer may see: their own, and the public ones (a delivery photo)."""

    id: int
    kind: str
    content_type: str
    size: int
    thumbnail: bool
    by_customer: bool
    at: dt.datetime


class DeliveryView(BaseModel):
    """The customer's delivery: never the address (the page shows no personal data), the PIN once out."""

    state: str
    window: WindowOut | None
    collect_at: str | None
    courier: str
    pin: str | None = Field(default=None, description="Out for delivery: give it to the driver.")
    delivered_at: dt.datetime | None = None


class ClaimView(BaseModel):
    """A claim as its customer sees it: what was asked, and what was decided."""

    id: int
    kind: str
    state: str
    totals: dict[str, str]
    filed_at: dt.datetime
    answer_due: dt.datetime
    decision_amount: str | None = None
    decision_currency: str | None = None
    reason: str | None = None


class StatusOut(BaseModel):
    ref: str
    case_type: str
    first_name: str | None
    locale: str
    timezone: str
    status: str
    status_label: str
    holder: Holder | None
    next_update_due: dt.datetime | None
    notices: list[Notice]
    timeline: list[TimelineEntry]
    closed: bool
    closed_at: dt.datetime | None
    resolution: str | None
    satisfaction: Literal["satisfied", "dissatisfied"] | None
    can_confirm: bool = Field(description="The case is resolved and the customer has not answered yet.")
    eta: dt.datetime | None = Field(default=None, description="When the item is expected (the latest promise).")
    files: list[FileOut] = Field(default_factory=list)
    delivery: DeliveryView | None = None
    delivery_slots: list[WindowOut] = Field(default_factory=list)
    can_request_delivery: bool = Field(default=False, description="A courier is on the case; the customer may ask.")
    rights: list[RightOut] = Field(default_factory=list, description="What the customer is owed and by when.")
    liability_cap: CapOut | None = None
    claims: list[ClaimView] = Field(default_factory=list)


class CustomerMessageIn(BaseModel):
    message: str = Field(min_length=1, max_length=2000)


class ConfirmationIn(BaseModel):
    satisfied: bool
    comment: str | None = Field(default=None, max_length=2000)


def token_shape_ok(token: str) -> bool:
    return TOKEN_MIN <= len(token) <= TOKEN_MAX and all(c.isalnum() or c in "-_" for c in token)


async def case_for_token(*, session: AsyncSession, token: str, for_update: bool = False) -> Case:
    """The case of a status link. Unknown, malformed and erased ones raise the same NotFound."""
    if not token_shape_ok(token):
        raise NotFound("No such status page.")
    # An erased case's link opens nothing, and says no more than a link that never existed.
    query = select(Case).where(Case.status_token_locator == token[:8], Case.erased_at.is_(None))
    if for_update:
        query = query.with_for_update()
    for case in (await session.scalars(query)).all():
        if hmac.compare_digest(case.status_token.encode(), token.encode()):
            return case
    raise NotFound("No such status page.")


async def status_of(
    *, session: AsyncSession, case: Case, locale: str | None = None, now: dt.datetime | None = None
) -> StatusOut:
    """Everything the customer may see, in their words (status labels in their locale)."""
    ctype = await case_type(session=session, code=case.type)
    tag = locale or case.customer_locale  # labels fall back through the locale registry: de-AT -> de -> en
    lang = (tag or "en").split("-")[0]
    rows = (
        await session.execute(
            select(Party, Partner).join(Partner, Partner.id == Party.partner_id).where(Party.case_id == case.id)
            .order_by(Party.joined_at)
        )
    ).all()
    # The courier's record (its published slots), from the parties already read: a case without a
    # courier party has no delivery to read either (a request needs one), which saves the page two queries.
    courier = next((partner for party, partner in sorted(rows, key=lambda r: r[0].id)
                    if party.role == delivery.COURIER_ROLE and party.state != PartyState.RELEASED), None)
    had_courier = any(party.role == delivery.COURIER_ROLE for party, _ in rows)
    rows = [(party, partner.name) for party, partner in rows]
    names = {party.partner_id: name for party, name in rows}
    responsible = [(party, name) for party, name in rows if holds_custody(party)]
    holder_row = next((r for r in responsible if r[0].role != "owner"), responsible[0] if responsible else None)
    notices = [
        Notice(kind=party.state, waiting_on=name, since=party.overdue_since,  # type: ignore[arg-type]
               chased_at=party.last_reminded_at,
               **({"reason": party.ack_reason, "until": party.acked_until}
                  if now is not None and is_acknowledged(party, now=now) else {}))
        for party, name in rows
        if is_overdue(party) and party.overdue_since is not None and case.closed_at is None
    ]
    # Only what the page shows: the events' signatures (stored signed requests) stay in the database.
    customers = ("customer.message", "customer.confirmation")
    events = (
        await session.execute(
            select(Event.type, Event.visibility, Event.body, Event.occurred_at, Event.received_at)
            .where(Event.case_id == case.id, Event.type.in_(PUBLIC_TYPES),
                   or_(Event.visibility == "public", Event.type.in_(customers)))
            .order_by(Event.seq)
        )
    ).all()
    timeline = [entry for e in events if (entry := _entry(e, ctype.label, tag, names)) is not None]
    files = [FileOut(id=a.id, kind=a.kind, content_type=a.content_type, size=a.size,
                     thumbnail=a.thumbnail_sha256 is not None, by_customer=a.from_customer, at=a.created_at)
             for a in await evidence.for_customer(session, case)]
    wanted = await _delivery_view(session, case, names, courier=courier, had_courier=had_courier, now=now)
    owed = await rights.rights_of(session=session, case=case, now=now, locale=tag) if now is not None else None
    asked = [ClaimView(id=c.id, kind=c.kind, state=c.state, totals=c.totals, filed_at=c.filed_at,
                       answer_due=c.answer_due, decision_amount=c.decided_amount, decision_currency=c.decided_currency,
                       reason=c.reason) for c in await claims.of_case(session, case)]
    return StatusOut(
        ref=case.ref,
        case_type=case.type,
        first_name=(case.customer_name or "").split()[0] if case.customer_name else None,
        locale=lang,
        timezone=case.customer_timezone,
        status=case.status,
        status_label=ctype.label(case.status, tag),
        holder=Holder(name=holder_row[1], role=holder_row[0].role) if holder_row and case.closed_at is None else None,
        next_update_due=holder_row[0].next_update_due if holder_row and case.closed_at is None else None,
        notices=notices,
        timeline=list(reversed(timeline)),
        closed=case.closed_at is not None,
        closed_at=case.closed_at,
        resolution=case.resolution,
        satisfaction=case.satisfaction,  # type: ignore[arg-type]
        can_confirm=case.closed_at is not None and case.satisfaction is None,
        eta=case.eta if case.closed_at is None and not _delivered(wanted["delivery"]) else None,
        files=files,
        **wanted,
        rights=owed.items if owed else [],
        liability_cap=owed.liability_cap if owed else None,
        claims=asked,
    )


def _delivered(view: DeliveryView | None) -> bool:
    return view is not None and view.state == delivery.DeliveryState.DELIVERED


async def _delivery_view(session: AsyncSession, case: Case, names: dict[str, str], *, courier: Partner | None,
                         had_courier: bool, now: dt.datetime | None) -> dict[str, Any]:
    """The delivery part of the page: the request's progress, and the slots while it can still be (re)chosen."""
    current = await delivery.of_case(session, case) if had_courier else None
    view = None
    if current is not None:
        window = (WindowOut(start=current.window_start, end=current.window_end)
                  if current.window_start and current.window_end else None)
        view = DeliveryView(state=current.state, window=window, collect_at=current.collect_at,
                            courier=names.get(current.courier_id, current.courier_id),
                            pin=current.pin if current.state == delivery.DeliveryState.OUT_FOR_DELIVERY else None,
                            delivered_at=current.delivered_at)
    changeable = current is None or current.state in (delivery.DeliveryState.REQUESTED, delivery.DeliveryState.FAILED)
    if case.closed_at is not None or not changeable or now is None or courier is None:
        return {"delivery": view, "delivery_slots": [], "can_request_delivery": False}
    return {"delivery": view, "delivery_slots": delivery.slots_of(courier, now=now), "can_request_delivery": True}


def _entry(event: Any, label: Any, lang: str | None, names: dict[str, str]) -> TimelineEntry | None:
    body = event.body or {}
    if event.type == "customer.message":
        return TimelineEntry(at=event.received_at, kind="customer.message", message=body.get("message"),
                             by_customer=True)
    if event.type == "customer.confirmation":
        return TimelineEntry(at=event.received_at, kind="customer.confirmation", message=body.get("comment"),
                             by_customer=True, status=body.get("satisfaction"))
    if event.visibility != "public":
        return None
    if event.type == "claim.decided":
        return TimelineEntry(at=event.received_at, kind=event.type, status=body.get("decision"),
                             message=body.get("reason"))
    if event.type in ("claim.paid", "case.refund_due"):
        return TimelineEntry(at=event.received_at, kind=event.type)
    if event.type in ("delivery.accepted", "delivery.completed"):
        return TimelineEntry(at=event.received_at, kind=event.type, holder=names.get(body.get("courier", "")))
    status = body.get("status")
    holder = names.get(body["to"]) if event.type == "handoff.accepted" and body.get("to") else None
    return TimelineEntry(
        at=event.occurred_at,
        kind=event.type,
        status=status,
        status_label=label(status, lang) if status else None,
        message=body.get("message"),  # never internal_note
        location=body.get("location"),
        holder=holder,
    )


async def customer_message(*, session: AsyncSession, token: str, text: str, now: dt.datetime, via: str) -> Event:
    """The customer writes to the case: a ``customer.message`` event the parties see; the owner gets a webhook."""
    case = await case_for_token(session=session, token=token, for_update=True)
    return await post_customer_message(session=session, case=case, text=text, now=now, via=via)


async def post_customer_message(*, session: AsyncSession, case: Case, text: str, now: dt.datetime, via: str) -> Event:
    text = text.strip()
    if not text:
        raise Conflict("The message is empty.")
    event = append_event(session=session, case=case, type="customer.message", actor="customer",
                         visibility="parties", body={"message": text[:2000], "via": via}, now=now)
    await announce.webhooks(session=session, case=case, kind="customer.message", partner_ids=[case.owner_id],
                            now=now, data={"message": text[:2000], "via": via, "seq": event.seq})
    await session.flush()
    return event


async def confirm(
    *, session: AsyncSession, token: str, satisfied: bool, comment: str | None, now: dt.datetime
) -> Case:
    """Satisfied or not: kept apart from closure. A dissatisfied customer is a dispute for the complaint department."""
    case = await case_for_token(session=session, token=token, for_update=True)
    if case.closed_at is None:
        raise Conflict("The case is not resolved yet; you can confirm once it is.")
    if case.satisfaction is not None:
        raise Conflict("You have already answered; thank you.")
    verdict = "satisfied" if satisfied else "dissatisfied"
    case.satisfaction = verdict
    case.satisfaction_comment = (comment or "").strip()[:2000] or None
    case.satisfaction_at = now
    body: dict[str, Any] = {"satisfaction": verdict}
    if case.satisfaction_comment:
        body["comment"] = case.satisfaction_comment
    append_event(session=session, case=case, type="customer.confirmation", actor="customer", visibility="parties",
                 body=body, now=now)
    if not satisfied:
        await announce.webhooks(session=session, case=case, kind="case.disputed", partner_ids=[case.owner_id],
                                now=now, data=body)
    await session.flush()
    return case


async def unsubscribe_email(*, session: AsyncSession, token: str, now: dt.datetime) -> Case:
    case = await case_for_token(session=session, token=token, for_update=True)
    if not case.email_opted_out:
        case.email_opted_out = True
        append_event(session=session, case=case, type="customer.unsubscribed", actor="customer",
                     visibility="internal", body={"channel": "email"}, now=now)
    await session.flush()
    return case
