"""Delivery to the customer's door: the request, the courier's acceptance, the PIN and the proof.

The delivery's lifecycle lives here and only here (``DeliveryState``)::

    requested ──accept──▶ accepted ──status out_for_delivery──▶ out_for_delivery ──proof──▶ delivered
        ▲                    │                                         │
        └──── changed ───────┘                     status delivery_failed ──▶ failed ──▶ (asked again)

1. The customer (status page), staff or the owner asks: an address and a phone for the driver,
   or ``collect_at`` an airport; a window from the courier's published slots, or any time.
   The courier party (the case's ``courier``) is asked to accept through a handoff with no
   sender (``tracker.handoffs``), so an unaccepted request is flagged by the watchdog exactly like
   an unaccepted handoff, and accepting it makes the courier responsible. It is told by webhook
   (``delivery.requested``) and email.
2. The courier's ``out_for_delivery`` status gives the delivery a 4-digit PIN, sent to the
   customer at once (never held with other news) and shown on their status page.
3. The courier's proof (``POST .../delivery/proof``): the PIN and the bag tag are checked (a wrong
   one is 422 and changes nothing), the photo and signature are kept as attachments, the case
   gets the ``delivered`` status and a ``delivery.completed`` event with the proof's digests.

Who sees what: the address, phone and instructions only staff, the owner and the courier; other
parties see the state and the window; the PIN is never shown to a partner (it proves the courier
met the customer). Erasure (``tracker.erasure``) removes address, phone and instructions.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import Conflict, Forbidden, NotFound, Unprocessable
from kernel.validation import phone_number
from partners.models import Partner
from tracker import announce, handoffs, parties, rights
from tracker.access import load_case, party_of, require_open, signature_of
from tracker.casetypes import case_type
from tracker.customer import notify_customer
from tracker.models import Case, Delivery, Handoff, Party
from tracker.parties import PartyState
from tracker.principals import Principal
from tracker.schemas import Instant
from tracker.timeline import append_event
from tracker.watchdog import partner_rules

COURIER_ROLE = "courier"
SLOT_DAYS = 3  # how many days of a courier's slots are offered
SLOT_LEAD = dt.timedelta(hours=1)  # a slot starting sooner than this is no longer offered
ANY_WINDOW_MAX = dt.timedelta(hours=12)
PIN_TRIES = 5  # wrong PINs a delivery takes before it takes none


class DeliveryState(StrEnum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    FAILED = "failed"


# The case statuses that move a delivery; updates setting them never take the routine path.
# (``delivered`` is terminal: no update sets it, only closing the case or the proof below.)
OUT_STATUS, DELIVERED_STATUS, FAILED_STATUS = "out_for_delivery", "delivered", "delivery_failed"
MOVING_STATUSES = frozenset({OUT_STATUS, FAILED_STATUS})
_CHANGEABLE = (DeliveryState.REQUESTED, DeliveryState.ACCEPTED, DeliveryState.FAILED)


# ---------------------------------------------------------------- bodies


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postcode: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2.")

    @field_validator("country")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class WindowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: Instant
    end: Instant

    @model_validator(mode="after")
    def _ordered(self) -> WindowIn:
        if self.end <= self.start:
            raise ValueError("a window's end must come after its start")
        return self


class DeliveryRequestIn(BaseModel):
    """Where and when: an address (and a phone for the driver), or ``collect_at`` an airport."""

    model_config = ConfigDict(extra="forbid")
    address: AddressIn | None = None
    phone: str | None = Field(default=None, description="For the driver, E.164.")
    window: WindowIn | None = Field(default=None, description="One of the courier's slots; null: any time.")
    instructions: str | None = Field(default=None, max_length=500)
    collect_at: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$", description="IATA airport code.")

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return phone_number(value) if value else None

    @field_validator("collect_at")
    @classmethod
    def _airport(cls, value: str | None) -> str | None:
        return value.upper() if value else None

    @model_validator(mode="after")
    def _where(self) -> DeliveryRequestIn:
        if (self.address is None) == (self.collect_at is None):
            raise ValueError("give either an address or collect_at (an airport code), not both")
        return self


class WindowOut(BaseModel):
    start: dt.datetime
    end: dt.datetime


class DeliveryRequestOut(BaseModel):
    state: DeliveryState
    courier: str
    window: WindowOut | None
    collect_at: str | None
    requested_at: dt.datetime
    accept_by: dt.datetime | None
    accepted_at: dt.datetime | None
    out_at: dt.datetime | None
    delivered_at: dt.datetime | None
    proof: dict[str, Any] | None
    address: AddressIn | None = Field(default=None, description="Staff, the owner and the courier only.")
    phone: str | None = Field(default=None, description="Staff, the owner and the courier only.")
    instructions: str | None = Field(default=None, description="Staff, the owner and the courier only.")


class SlotList(BaseModel):
    items: list[WindowOut]


# ---------------------------------------------------------------- reading


def sees_address(principal: Principal, case: Case, delivery: Delivery) -> bool:
    return principal.is_staff or principal.partner_id in (case.owner_id, delivery.courier_id)


def delivery_out(delivery: Delivery, *, personal: bool, accept_by: dt.datetime | None = None) -> DeliveryRequestOut:
    window = (WindowOut(start=delivery.window_start, end=delivery.window_end)
              if delivery.window_start and delivery.window_end else None)
    return DeliveryRequestOut(
        state=DeliveryState(delivery.state), courier=delivery.courier_id, window=window,
        collect_at=delivery.collect_at, requested_at=delivery.requested_at, accept_by=accept_by,
        accepted_at=delivery.accepted_at, out_at=delivery.out_at, delivered_at=delivery.delivered_at,
        proof=delivery.proof,
        address=AddressIn.model_validate(delivery.address) if personal and delivery.address else None,
        phone=delivery.phone if personal else None,
        instructions=delivery.instructions if personal else None,
    )


async def of_case(session: AsyncSession, case: Case) -> Delivery | None:
    return await session.scalar(select(Delivery).where(Delivery.case_id == case.id))


async def _accept_by(session: AsyncSession, delivery: Delivery) -> dt.datetime | None:
    if delivery.handoff_id is None or delivery.state != DeliveryState.REQUESTED:
        return None
    return await session.scalar(select(Handoff.accept_by).where(Handoff.id == delivery.handoff_id))


async def read_delivery(*, session: AsyncSession, principal: Principal, ref: str) -> DeliveryRequestOut:
    """The case's delivery request; 404 when there is none."""
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    delivery = await of_case(session, case)
    if delivery is None:
        raise NotFound(f"No delivery has been requested on {case.ref}.")
    return delivery_out(delivery, personal=sees_address(principal, case, delivery),
                        accept_by=await _accept_by(session, delivery))


async def courier_of(session: AsyncSession, case: Case) -> Party:
    courier = await session.scalar(
        select(Party).where(Party.case_id == case.id, Party.role == COURIER_ROLE,
                            Party.state.not_in((PartyState.RELEASED,))).order_by(Party.id).limit(1)
    )
    if courier is None:
        raise Conflict(f"{case.ref} has no courier party yet; the owner adds one (role {COURIER_ROLE!r}).")
    return courier


def slots_of(partner: Partner, *, now: dt.datetime, days: int = SLOT_DAYS) -> list[WindowOut]:
    """The courier's published windows for the next ``days`` days, in its time zone, soonest first."""
    zone = ZoneInfo(partner.timezone or "UTC")
    today = now.astimezone(zone).date()
    out: list[WindowOut] = []
    for offset in range(days + 1):
        day = today + dt.timedelta(days=offset)
        for window in sorted(partner.delivery_slots or []):
            start_s, _, end_s = window.partition("-")
            start = dt.datetime.combine(day, dt.time.fromisoformat(start_s), zone).astimezone(dt.UTC)
            end = dt.datetime.combine(day, dt.time.fromisoformat(end_s), zone).astimezone(dt.UTC)
            if start >= now + SLOT_LEAD:
                out.append(WindowOut(start=start, end=end))
    return out


async def slots(*, session: AsyncSession, case: Case, now: dt.datetime) -> SlotList:
    courier = await courier_of(session, case)
    partner = await session.get(Partner, courier.partner_id)
    return SlotList(items=slots_of(partner, now=now) if partner else [])


async def list_slots(*, session: AsyncSession, principal: Principal, ref: str, now: dt.datetime) -> SlotList:
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    return await slots(session=session, case=case, now=now)


# ---------------------------------------------------------------- requesting


async def put_delivery(
    *, session: AsyncSession, principal: Principal, ref: str, payload: DeliveryRequestIn, now: dt.datetime
) -> DeliveryRequestOut:
    """Staff or the owner ask for delivery on the customer's behalf."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    if not principal.is_staff and principal.partner_id != case.owner_id:
        raise Forbidden("Only staff and the owner partner may request a delivery (or the customer, on their page).")
    delivery = await request_delivery(session=session, case=case, payload=payload, actor=principal.actor,
                                      partner_id=principal.partner_id, signature=signature_of(principal), now=now)
    return delivery_out(delivery, personal=True, accept_by=await _accept_by(session, delivery))


async def request_delivery(
    *, session: AsyncSession, case: Case, payload: DeliveryRequestIn, actor: str, now: dt.datetime,
    partner_id: str | None = None, signature: dict[str, Any] | None = None,
) -> Delivery:
    """Record (or change) the request and ask the courier to accept it (steps 1 of the docstring)."""
    require_open(case)
    courier = await courier_of(session, case)
    partner = await session.get(Partner, courier.partner_id)
    if payload.window is not None:
        _check_window(payload.window, partner, now=now)
    delivery = await of_case(session, case)
    if delivery is not None and delivery.state not in _CHANGEABLE:
        raise Conflict(f"The delivery is already {delivery.state}; it can no longer be changed.")
    if delivery is not None and delivery.handoff_id is not None:
        old = await session.get(Handoff, delivery.handoff_id)
        if old is not None and old.state == "requested":
            old.state = "withdrawn"  # replaced by the new request's
    ctype = await case_type(session=session, code=case.type)
    handoff = Handoff(case_id=case.id, from_partner_id=None, to_partner_id=courier.partner_id, state="requested",
                      note="delivery request", requested_at=now, accept_by=now + ctype.handoff_accept_within)
    session.add(handoff)
    await session.flush()
    if delivery is None:
        delivery = Delivery(case_id=case.id)
        session.add(delivery)
    delivery.state = DeliveryState.REQUESTED
    delivery.courier_id = courier.partner_id
    delivery.handoff_id = handoff.id
    delivery.address = payload.address.model_dump() if payload.address else None
    delivery.phone = payload.phone
    delivery.instructions = payload.instructions
    delivery.collect_at = payload.collect_at
    delivery.window_start = payload.window.start if payload.window else None
    delivery.window_end = payload.window.end if payload.window else None
    delivery.requested_by = actor
    delivery.requested_at = now
    delivery.accepted_at = delivery.out_at = delivery.delivered_at = delivery.failed_at = None
    delivery.pin = None
    delivery.proof = None
    delivery.updated_at = now
    window = _window_json(delivery)
    # The event says when and whether it is a collection; never where (the address is not every party's).
    append_event(session=session, case=case, type="delivery.requested", actor=actor, partner_id=partner_id,
                 visibility="parties", now=now, signature=signature,
                 body={"courier": courier.partner_id, "window": window, "collect_at": delivery.collect_at,
                       "handoff": handoff.id, "accept_by": announce.stamp(handoff.accept_by)})
    await announce.webhooks(session=session, case=case, kind="delivery.requested", partner_ids=[courier.partner_id],
                            now=now, data={"delivery": {"window": window, "collect_at": delivery.collect_at,
                                                        "accept_by": announce.stamp(handoff.accept_by)}})
    if partner is not None:
        await announce.partner_email(
            session=session, case=case, kind="delivery.requested", partner=partner, now=now,
            context={"window": _window_words(delivery, partner), "collect_at": delivery.collect_at,
                     "accept_by": _local(handoff.accept_by, partner)},
        )
    await session.flush()
    return delivery


def _check_window(window: WindowIn, partner: Partner | None, *, now: dt.datetime) -> None:
    offered = slots_of(partner, now=now) if partner is not None else []
    if offered:
        if not any(s.start == window.start and s.end == window.end for s in offered):
            raise Unprocessable("Choose one of the courier's delivery slots (GET .../delivery/slots), or any time.")
        return
    if window.start < now or window.end - window.start > ANY_WINDOW_MAX:
        raise Unprocessable("The window must lie in the future and last at most 12 hours.")


def _window_json(delivery: Delivery) -> dict[str, str | None] | None:
    if delivery.window_start is None:
        return None
    return {"start": announce.stamp(delivery.window_start), "end": announce.stamp(delivery.window_end)}


def _local(moment: dt.datetime, partner: Partner) -> str:
    return moment.astimezone(ZoneInfo(partner.timezone or "UTC")).strftime("%a %d %b %H:%M %Z")


def _window_words(delivery: Delivery, partner: Partner) -> str | None:
    if delivery.window_start is None or delivery.window_end is None:
        return None
    zone = ZoneInfo(partner.timezone or "UTC")
    end = delivery.window_end.astimezone(zone).strftime("%H:%M")
    return f"{_local(delivery.window_start, partner)}–{end}"


# ---------------------------------------------------------------- the courier's steps


async def accept_delivery(*, session: AsyncSession, principal: Principal, ref: str, now: dt.datetime) -> DeliveryRequestOut:
    """The courier takes the delivery on: it becomes responsible, and the customer hears the window is confirmed."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    require_open(case)
    delivery = await of_case(session, case)
    if delivery is None:
        raise NotFound(f"No delivery has been requested on {case.ref}.")
    if not principal.is_staff and principal.partner_id != delivery.courier_id:
        raise Forbidden("Only the courier asked to deliver (or staff) may accept the delivery.")
    if delivery.state != DeliveryState.REQUESTED:
        raise Conflict(f"The delivery is already {delivery.state}.")
    courier = await party_of(session, case, delivery.courier_id)
    handoff = await session.get(Handoff, delivery.handoff_id) if delivery.handoff_id else None
    await handoffs.receive(session=session, case=case, handoff=handoff, receiver=courier, principal=principal,
                           now=now)
    delivery.state = DeliveryState.ACCEPTED
    delivery.accepted_at = now
    delivery.updated_at = now
    append_event(session=session, case=case, type="delivery.accepted", actor=principal.actor,
                 partner_id=principal.partner_id, visibility="public", now=now, signature=signature_of(principal),
                 body={"courier": delivery.courier_id, "window": _window_json(delivery),
                       "collect_at": delivery.collect_at})
    await notify_customer(session=session, case=case, kind="delivery_confirmed", now=now,
                          trigger={"holder": delivery.courier_id, **_window_trigger(delivery)})
    await announce.webhooks(session=session, case=case, kind="delivery.accepted",
                            partner_ids=[case.owner_id, delivery.courier_id], now=now,
                            data={"delivery": {"courier": delivery.courier_id, "window": _window_json(delivery)}})
    await session.flush()
    return delivery_out(delivery, personal=True)


def _window_trigger(delivery: Delivery) -> dict[str, Any]:
    if delivery.window_start is None:
        return {}
    return {"window_start": delivery.window_start.isoformat(), "window_end": delivery.window_end.isoformat()}


async def on_status(*, session: AsyncSession, case: Case, principal: Principal, status: str, now: dt.datetime) -> None:
    """A status update that moves the delivery (called by the general update path before it writes).

    ``out_for_delivery`` gives the customer their PIN; ``delivery_failed`` lets them ask again.
    """
    if status not in MOVING_STATUSES:
        return
    delivery = await of_case(session, case)
    if delivery is None:
        return
    if status == OUT_STATUS and delivery.state in (DeliveryState.REQUESTED, DeliveryState.ACCEPTED):
        if not principal.is_staff and principal.partner_id != delivery.courier_id:
            raise Forbidden("Only the courier taking the delivery may set it out for delivery.")
        delivery.state = DeliveryState.OUT_FOR_DELIVERY
        delivery.out_at = now
        delivery.pin = f"{secrets.randbelow(10_000):04d}"
        delivery.pin_failures = 0
        delivery.updated_at = now
        await notify_customer(session=session, case=case, kind="out_for_delivery", now=now, urgent=True,
                              trigger={"holder": delivery.courier_id, **_window_trigger(delivery)})
    elif status == FAILED_STATUS and delivery.state == DeliveryState.OUT_FOR_DELIVERY:
        delivery.state = DeliveryState.FAILED
        delivery.failed_at = now
        delivery.pin = None
        delivery.updated_at = now


class WrongPin(Unprocessable):
    """A PIN that is not the customer's: refused, and counted (the caller commits the count)."""


def check_proof(delivery: Delivery, case: Case, *, pin: str | None, bag_tag: str | None) -> None:
    """A wrong PIN or a tag that is not the case's is refused (422).

    A PIN has 10,000 values: after ``PIN_TRIES`` wrong ones it is no longer taken on this delivery
    (409); the courier still proves with the photo, the signature and the tag, which record that no
    PIN was given. Every wrong PIN counts, so the caller keeps ``pin_failures`` even as it refuses.
    """
    if delivery.state != DeliveryState.OUT_FOR_DELIVERY:
        raise Conflict(f"The delivery is {delivery.state}; proof is taken once it is out for delivery.")
    if pin is not None:
        if delivery.pin_failures >= PIN_TRIES:
            raise Conflict(f"{PIN_TRIES} wrong PINs: the PIN is no longer taken for this delivery; prove it "
                           "with the photo and the tag.")
        expected = (delivery.pin or "").encode()
        if not expected or not hmac.compare_digest(pin.strip().encode(), expected):
            delivery.pin_failures += 1
            raise WrongPin("The PIN does not match the one the customer was given.")
    if bag_tag is not None:
        tags = {v.strip().upper() for k, v in (case.external_refs or {}).items() if k.startswith("bag_tag") and v}
        if bag_tag.strip().upper() not in tags:
            raise Unprocessable("The bag tag is not this case's.")


async def complete(
    *, session: AsyncSession, case: Case, delivery: Delivery, principal: Principal, pin: str | None,
    bag_tag: str | None, attachments: list[dict[str, Any]], now: dt.datetime,
) -> dict[str, Any]:
    """Step 3: the checked proof recorded; the case is delivered and the customer told."""
    ctype = await case_type(session=session, code=case.type)
    delivery.state = DeliveryState.DELIVERED
    delivery.delivered_at = now
    delivery.updated_at = now
    case.delivered_at = case.delivered_at or now
    # The item is with the customer: nobody holds it any more, so the watch ends for every party
    # (a carrier still late on it is not chased for a bag already delivered). The owner closes.
    relieved = []
    for party in (await session.scalars(select(Party).where(Party.case_id == case.id).order_by(Party.id))).all():
        if party.responsible and party.state != PartyState.RELEASED:
            relieved.append(party.partner_id)
            party.responsible = False
            parties.back_on_track(party)
            parties.schedule(party, now=now, rules=await partner_rules(session, party.partner_id))
    delivery.proof = {"pin": pin is not None, "bag_tag": bag_tag.strip().upper() if bag_tag else None,
                      "attachments": attachments}
    event = append_event(session=session, case=case, type="delivery.completed", actor=principal.actor,
                         partner_id=principal.partner_id, visibility="public", now=now,
                         signature=signature_of(principal),
                         body={"courier": delivery.courier_id, **delivery.proof, "relieved": relieved})
    if DELIVERED_STATUS in ctype.statuses:
        case.status = DELIVERED_STATUS
    await rights.refresh(session=session, case=case, now=now)  # the complaint deadlines count from now
    photo = next((a["id"] for a in attachments if a.get("role") == "photo"), None)
    await notify_customer(session=session, case=case, kind="delivered", now=now, urgent=True,
                          trigger={"holder": delivery.courier_id, "photo": photo})
    await announce.webhooks(session=session, case=case, kind="delivery.completed",
                            partner_ids=[case.owner_id, delivery.courier_id], now=now,
                            data={"delivery": {"courier": delivery.courier_id, "proof": delivery.proof}})
    await session.flush()
    return {"seq": event.seq, "hash": event.hash, "state": delivery.state, "attachments": attachments}


def erase(delivery: Delivery) -> None:
    """The customer's address, phone and instructions go with them (``tracker.erasure``)."""
    delivery.address = None
    delivery.phone = None
    delivery.instructions = None
    delivery.pin = None
