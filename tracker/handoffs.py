"""Custody passing between parties: request a handoff, accept it, list them.

The receiver must accept within the window (the case type's default, or the sender's
``accept_within``); an unaccepted handoff is flagged on the receiver like a late update.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import Conflict, Forbidden, NotFound, Unprocessable
from tracker import announce, parties, trust
from tracker.access import load_case, party_of, require_open, signature_of
from tracker.casetypes import case_type
from tracker.customer import notify_customer
from tracker.invitations import confirm_invitation
from tracker.models import Case, Handoff, Party
from tracker.parties import PartyState
from tracker.principals import Principal
from tracker.schemas import AcceptIn, HandoffIn, HandoffList, HandoffOut
from tracker.timeline import append_event
from tracker.watchdog import partner_rules


def handoff_out(handoff: Handoff) -> HandoffOut:
    return HandoffOut(
        id=handoff.id,
        from_=handoff.from_partner_id,
        to=handoff.to_partner_id,
        state=handoff.state,  # type: ignore[arg-type]
        note=handoff.note,
        requested_at=handoff.requested_at,
        accept_by=handoff.accept_by,
        accepted_at=handoff.accepted_at,
    )


async def request_handoff(
    *, session: AsyncSession, principal: Principal, ref: str, payload: HandoffIn, now: dt.datetime
) -> HandoffOut:
    """Pass custody to another party; it becomes responsible once it accepts."""
    case, own = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    require_open(case)
    if principal.is_staff:
        sender = payload.from_
    else:
        if payload.from_ not in (None, principal.partner_id):
            raise Forbidden("A partner hands off only its own custody.")
        trust.check_may_write(own)
        if own is None or not own.responsible:
            raise Forbidden("Only the responsible party (or staff) may hand off custody.")
        if own.state == PartyState.INVITED:
            await confirm_invitation(session=session, case=case, party=own, principal=principal, now=now)
        sender = principal.partner_id
    if sender is not None:
        known = await session.scalar(select(Party.id).where(Party.case_id == case.id, Party.partner_id == sender))
        if known is None:
            raise Unprocessable(f"{sender!r} (from) is not a party to {case.ref}.")
    receiver = await session.scalar(
        select(Party).where(Party.case_id == case.id, Party.partner_id == payload.to)
    )
    if receiver is None or receiver.state == PartyState.RELEASED:
        raise Unprocessable(f"{payload.to!r} is not a party to {case.ref}; add it as a party first.")
    if payload.to == sender:
        raise Unprocessable("A party cannot hand off to itself.")
    ctype = await case_type(session=session, code=case.type)
    window = payload.accept_within or ctype.handoff_accept_within
    handoff = Handoff(
        case_id=case.id,
        from_partner_id=sender,
        to_partner_id=payload.to,
        state="requested",
        note=payload.note,
        requested_at=now,
        accept_by=now + window,
    )
    session.add(handoff)
    await session.flush()
    append_event(
        session=session,
        case=case,
        type="handoff.requested",
        actor=principal.actor,
        partner_id=principal.partner_id,
        visibility="parties",
        body={"handoff": handoff.id, "from": sender, "to": payload.to, "note": payload.note,
              "accept_by": announce.stamp(handoff.accept_by)},
        now=now,
        signature=signature_of(principal),
    )
    await announce.webhooks(
        session=session, case=case, kind="handoff.requested", partner_ids=[payload.to], now=now,
        data={"handoff": handoff_out(handoff).model_dump(mode="json", by_alias=True)},
    )
    await session.flush()
    return handoff_out(handoff)


async def accept_handoff(
    *, session: AsyncSession, principal: Principal, ref: str, handoff_id: int, payload: AcceptIn, now: dt.datetime
) -> HandoffOut:
    """The receiver takes custody: it becomes responsible and the sender is relieved."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    require_open(case)
    handoff = await session.scalar(select(Handoff).where(Handoff.id == handoff_id, Handoff.case_id == case.id))
    if handoff is None:
        raise NotFound(f"No handoff {handoff_id} on {case.ref}.")
    if not principal.is_staff and principal.partner_id != handoff.to_partner_id:
        raise Forbidden("Only the receiving partner (or staff) may accept a handoff.")
    if handoff.state != "requested":
        raise Conflict(f"Handoff {handoff_id} is already {handoff.state}.")
    receiver = await party_of(session, case, handoff.to_partner_id)
    await complete(session=session, case=case, handoff=handoff, receiver=receiver, principal=principal,
                   note=payload.note, now=now)
    return handoff_out(handoff)


async def complete(
    *, session: AsyncSession, case: Case, handoff: Handoff, receiver: Party, principal: Principal,
    note: str | None, now: dt.datetime,
) -> None:
    """The accepted handoff's effects (the route above, and a scan by the receiver, ``tracker.scans``):
    the receiver takes custody, the sender is relieved, the timeline, the customer and both parties hear."""
    await receive(session=session, case=case, handoff=handoff, receiver=receiver, principal=principal, now=now)
    if handoff.from_partner_id:
        sender = await party_of(session, case, handoff.from_partner_id)
        sender.responsible = False
        parties.back_on_track(sender)
        parties.schedule(sender, now=now, rules=await partner_rules(session, sender.partner_id))
    append_event(
        session=session,
        case=case,
        type="handoff.accepted",
        actor=principal.actor,
        partner_id=principal.partner_id,
        visibility="public",
        body={"handoff": handoff.id, "from": handoff.from_partner_id, "to": handoff.to_partner_id, "note": note},
        now=now,
        signature=signature_of(principal),
    )
    await notify_customer(session=session, case=case, kind="update", now=now, trigger={"holder": handoff.to_partner_id})
    await announce.webhooks(
        session=session, case=case, kind="handoff.accepted",
        partner_ids=[p for p in (handoff.from_partner_id, handoff.to_partner_id) if p], now=now,
        data={"handoff": handoff_out(handoff).model_dump(mode="json", by_alias=True)},
    )
    await session.flush()


async def receive(
    *, session: AsyncSession, case: Case, handoff: Handoff | None, receiver: Party, principal: Principal,
    now: dt.datetime,
) -> None:
    """The receiver takes custody (a handoff, or a delivery request, ``tracker.delivery``): it joins if it
    was invited, becomes responsible and is watched from now, and the handoff is accepted."""
    trust.check_may_write(receiver)
    if receiver.state == PartyState.INVITED:
        await confirm_invitation(session=session, case=case, party=receiver, principal=principal, now=now)
    if handoff is not None and handoff.state == "requested":
        handoff.state = "accepted"
        handoff.accepted_at = now
    receiver.responsible = True
    parties.back_on_track(receiver)
    receiver.last_update_at = now
    parties.schedule(receiver, now=now, rules=await partner_rules(session, receiver.partner_id))


async def list_handoffs(*, session: AsyncSession, principal: Principal, ref: str) -> HandoffList:
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    rows = await session.scalars(select(Handoff).where(Handoff.case_id == case.id).order_by(Handoff.id))
    return HandoffList(items=[handoff_out(h) for h in rows])
