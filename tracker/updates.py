"""The timeline of a case: read it, and post a status update or note (the signed-update path).

A routine update (a partner on track, the customer not told: most traffic) takes
``tracker.routine``'s statements, alone here or batched with others by ``tracker.groupcommit``;
everything else takes the general path below, through the ORM. Either way:

1. Lock the case and read the caller's party.
2. Check the update against the case and the trust rules (``tracker.update_rules``), once for both paths.
3. Write the event (chained), the case's status and head, and the party's next due time.
4. Tell the customer when the update is for them (coalesced by ``tracker.customer``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.pagination import decode_cursor, encode_cursor
from tracker import announce, delivery, parties, routine, trust
from tracker.access import load_case, signature_of
from tracker.casetypes import case_type
from tracker.customer import URGENT_STATUSES, notify_customer
from tracker.invitations import confirm_invitation
from tracker.models import Case, DueMoment, Event, Party
from tracker.parties import PartyState
from tracker.principals import Principal
from tracker.schemas import EventIn, EventList
from tracker.timeline import append_event, event_out
from tracker.update_rules import apply_to_case, checked_update
from tracker.watchdog import partner_rules


async def list_events(
    *, session: AsyncSession, principal: Principal, ref: str, cursor: str | None = None, limit: int = 100
) -> EventList:
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    query = select(Event).where(Event.case_id == case.id).order_by(Event.seq).limit(limit + 1)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(Event.seq > after)
    if not principal.is_staff:
        query = query.where(Event.visibility != "internal")
    events = list((await session.scalars(query)).all())
    more = len(events) > limit
    events = events[:limit]
    return EventList(
        items=[event_out(e) for e in events],  # type: ignore[misc]
        next_cursor=encode_cursor(events[-1].seq) if more else None,
    )


async def post_update(
    *, session: AsyncSession, principal: Principal, ref: str, payload: EventIn, now: dt.datetime,
) -> dict[str, Any]:
    """Post a status update or note; the poster's own party is back on track (and joined, if invited)."""
    if not principal.is_staff:
        routine = await _post_routine_update(session=session, principal=principal, ref=ref, payload=payload, now=now)
        if routine is not None:
            return routine
    return await post_general_update(session=session, principal=principal, ref=ref, payload=payload, now=now)


async def post_general_update(
    *, session: AsyncSession, principal: Principal, ref: str, payload: EventIn, now: dt.datetime,
) -> dict[str, Any]:
    """Any update, through the ORM: what the routine path does, and everything it hands back."""
    case, party = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    ctype = await case_type(session=session, code=case.type)
    update = checked_update(case=case, party=party, ctype=ctype, principal=principal, payload=payload, now=now)
    if update.tells_customer and principal.partner_id is not None:
        await trust.check_customer_message_quota(session=session, partner_id=principal.partner_id, now=now)
    if party is not None and party.state == PartyState.INVITED:
        await confirm_invitation(session=session, case=case, party=party, principal=principal, now=now)
    if payload.status is not None:
        await delivery.on_status(session=session, case=case, principal=principal, status=payload.status, now=now)
    event = append_event(
        session=session,
        case=case,
        type="update",
        actor=principal.actor,
        partner_id=principal.partner_id,
        visibility=update.visibility,
        body=update.body,
        now=now,
        occurred_at=update.occurred_at,
        signature=signature_of(principal),
    )
    apply_to_case(case, payload)
    if update.tells_customer:
        trigger = {"status": case.status, "message": payload.message} if payload.message else {"status": case.status}
        await notify_customer(session=session, case=case, kind="update", now=now, trigger=trigger,
                              urgent=payload.status in URGENT_STATUSES)
    if party is not None and party.state != PartyState.RELEASED:
        await record_update(session=session, case=case, party=party, now=now, promised=update.promised)
    await session.flush()
    return event_out(event)


async def record_update(
    *, session: AsyncSession, case: Case, party: Party, now: dt.datetime, promised: dt.datetime | None
) -> None:
    """The party spoke: it is on track again, and its next update is due a cadence from now."""
    met = parties.due_met(party, now=now)
    if met is not None:
        session.add(DueMoment(partner_id=party.partner_id, case_id=case.id, due_at=met, resolved_at=now, met=True))
    if parties.is_overdue(party):
        body = {"partner": party.partner_id, "was": str(party.state),
                "overdue_since": announce.stamp(party.overdue_since)}
        append_event(session=session, case=case, type="party.back_on_track", actor="system", visibility="parties",
                     body=body, now=now, partner_id=party.partner_id)
        await announce.webhooks(session=session, case=case, kind="party.back_on_track",
                                partner_ids=[party.partner_id], now=now, data=body)
        parties.back_on_track(party)
    parties.spoke(party, now=now, promised=promised, rules=await partner_rules(session, party.partner_id))


async def _post_routine_update(
    *, session: AsyncSession, principal: Principal, ref: str, payload: EventIn, now: dt.datetime
) -> dict[str, Any] | None:
    """Post a routine update (``tracker.routine``); None, having changed nothing, when it is not one."""
    update = routine.RoutineUpdate(principal=principal, ref=ref, payload=payload, now=now)
    locked = await routine.lock(session, [update])
    answer = await routine.apply(session, locked, update)
    if answer is not None:
        await routine.write(session, locked)
    return answer
