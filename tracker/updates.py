"""The timeline of a case: read it, and post a status update or note (the signed-update path).

1. Lock the case and read the caller's party (one statement on the routine path).
2. Check the update against the case and the trust rules (``_checked_update``), once for both paths.
3. Write the event (chained), the case's status and head, and the party's next due time.
4. Tell the customer when the update is for them (coalesced by ``tracker.customer``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.db import RowPlan, Statement, column_types, insert_sql, select_list, update_sql
from kernel.errors import Conflict, Forbidden, Unprocessable
from kernel.pagination import decode_cursor, encode_cursor
from tracker import announce, parties, trust
from tracker.access import check_status, load_case, not_found, signature_of
from tracker.casetypes import CaseTypeDef, case_type
from tracker.customer import notify_customer
from tracker.invitations import confirm_invitation
from tracker.models import Case, Event, Party
from tracker.parties import PartyState
from tracker.principals import Principal
from tracker.refs import parse_ref
from tracker.schemas import EventIn, EventList
from tracker.timeline import append_event, event_out, new_event
from tracker.watchdog import partner_rules


FUTURE_TOLERANCE = dt.timedelta(minutes=5)


MAX_PROMISE = dt.timedelta(days=30)


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
    update = _checked_update(case=case, party=party, ctype=ctype, principal=principal, payload=payload, now=now)
    if update.tells_customer and principal.partner_id is not None:
        await trust.check_customer_message_quota(session=session, partner_id=principal.partner_id, now=now)
    if party is not None and party.state == PartyState.INVITED:
        await confirm_invitation(session=session, case=case, party=party, principal=principal, now=now)
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
    if payload.status is not None:
        case.status = payload.status
    if update.tells_customer:
        trigger = {"status": case.status, "message": payload.message} if payload.message else {"status": case.status}
        await notify_customer(session=session, case=case, kind="update", now=now, trigger=trigger)
    if party is not None and party.state != PartyState.RELEASED:
        await record_update(session=session, case=case, party=party, now=now, promised=update.promised)
    await session.flush()
    return event_out(event)


async def record_update(
    *, session: AsyncSession, case: Case, party: Party, now: dt.datetime, promised: dt.datetime | None
) -> None:
    """The party spoke: it is on track again, and its next update is due a cadence from now."""
    if parties.is_overdue(party):
        body = {"partner": party.partner_id, "was": str(party.state),
                "overdue_since": announce.stamp(party.overdue_since)}
        append_event(session=session, case=case, type="party.back_on_track", actor="system", visibility="parties",
                     body=body, now=now, partner_id=party.partner_id)
        await announce.webhooks(session=session, case=case, kind="party.back_on_track",
                                partner_ids=[party.partner_id], now=now, data=body)
        parties.back_on_track(party)
    parties.spoke(party, now=now, promised=promised, rules=await partner_rules(session, party.partner_id))


@dataclass(frozen=True, slots=True)
class _Update:
    body: dict[str, Any]
    visibility: str
    occurred_at: dt.datetime
    promised: dt.datetime | None
    tells_customer: bool


def _checked_update(
    *, case: Case, party: Party | None, ctype: CaseTypeDef, principal: Principal, payload: EventIn, now: dt.datetime
) -> _Update:
    """Refuse an update the case cannot take; what it will write, and whether the customer hears of it."""
    if case.closed_at is not None:
        raise Conflict(f"Case {case.ref} is closed; updates are no longer accepted.")
    trust.check_may_write(party)
    if payload.status is not None:
        check_status(ctype, payload.status)
        trust.check_status_change(case=case, party=party, status=payload.status, ctype=ctype,
                                  staff=principal.is_staff)
    if payload.visibility == "internal" and not principal.is_staff:
        raise Forbidden("Only staff may post internal events.")
    occurred = payload.occurred_at or now
    if occurred > now + FUTURE_TOLERANCE:
        raise Unprocessable("occurred_at is in the future.")
    promised = payload.next_update_by
    if promised is not None and not (now < promised <= now + MAX_PROMISE):
        raise Unprocessable("next_update_by must be in the future and within 30 days.")
    visibility = payload.visibility or _default_visibility(ctype, payload)
    changed = payload.status is not None and payload.status != case.status
    status = payload.status or case.status
    tells = visibility == "public" and bool(payload.message or (changed and ctype.statuses[status].get("notify")))
    body = payload.model_dump(mode="json", exclude_none=True, exclude={"visibility", "occurred_at"})
    return _Update(body=body, visibility=visibility, occurred_at=occurred, promised=promised, tells_customer=tells)


def _default_visibility(ctype: CaseTypeDef, payload: EventIn) -> str:
    if payload.message:
        return "public"
    if payload.status and ctype.statuses[payload.status].get("notify"):
        return "public"
    return "parties"


# The routine update: a partner whose party is on track posts, and the customer is not told.
# Most traffic is this; it takes two statements of its own (lock and read the case and party
# rows whole; write event, case and party) instead of the ORM's unit of work. Both statements
# are built from the table definitions (kernel.db), and the rules run on fully loaded rows.
# Anything else (the customer is told, a late, invited or released party, staff) takes the
# general path above, with the same checks (_checked_update) and the same party rule
# (parties.spoke). tests/tracker/test_write_path.py proves both paths store the same rows.
_CASE, _PARTY, _EVENT = Case.__table__, Party.__table__, Event.__table__
# What a routine update changes, besides inserting its event.
CASE_CHANGES = ("status", "last_seq", "last_hash", "updated_at")
PARTY_CHANGES = ("last_update_at", "promised_by", "next_update_due", "watch_at")

_READ = (f"SELECT {select_list(_CASE, alias='c', prefix='c_')}, {select_list(_PARTY, alias='p', prefix='p_')} "
         "FROM cases AS c JOIN parties AS p ON p.case_id = c.id AND p.partner_id = :partner WHERE c.ref = :ref")
_LOCK_CASE_AND_PARTY = Statement(
    _READ,  # SQLite: the transaction's BEGIN IMMEDIATE is the lock
    pg=f"{_READ} FOR UPDATE OF c",
    **column_types(_CASE, prefix="c_", result=True), **column_types(_PARTY, prefix="p_", result=True),
)
_INSERT_EVENT = insert_sql(_EVENT, prefix="e_")
_UPDATE_CASE = update_sql(_CASE, CASE_CHANGES, prefix="c_")
_UPDATE_PARTY = update_sql(_PARTY, PARTY_CHANGES, prefix="p_")
_WRITE_ROUTINE_UPDATE = Statement(
    (_INSERT_EVENT, _UPDATE_CASE, _UPDATE_PARTY),
    pg=f"WITH event AS ({_INSERT_EVENT}), kase AS ({_UPDATE_CASE}) {_UPDATE_PARTY}",
    **column_types(_EVENT, prefix="e_"),
    **column_types(_CASE, prefix="c_", columns=CASE_CHANGES),
    **column_types(_PARTY, prefix="p_", columns=PARTY_CHANGES),
)
_READ_CASE, _READ_PARTY = RowPlan(Case, prefix="c_"), RowPlan(Party, prefix="p_")
_WRITE_EVENT = RowPlan(Event, prefix="e_", exclude=("id",))
_WRITE_CASE = RowPlan(Case, prefix="c_", columns=(*CASE_CHANGES, "id"))
_WRITE_PARTY = RowPlan(Party, prefix="p_", columns=(*PARTY_CHANGES, "id"))


async def _post_routine_update(
    *, session: AsyncSession, principal: Principal, ref: str, payload: EventIn, now: dt.datetime
) -> dict[str, Any] | None:
    """Post a routine update (see above); None, having changed nothing, when it is not one."""
    parsed = parse_ref(ref)
    if parsed is None or not parsed.valid:
        raise not_found(ref)
    row = await _LOCK_CASE_AND_PARTY.first(session, {"ref": parsed.ref, "partner": principal.partner_id})
    if row is None:
        raise not_found(ref)
    # Detached objects with every column loaded: the same rules run on them, nothing is flushed from them.
    case, party = _READ_CASE.load(row), _READ_PARTY.load(row)
    ctype = await case_type(session=session, code=case.type)
    update = _checked_update(case=case, party=party, ctype=ctype, principal=principal, payload=payload, now=now)
    if update.tells_customer or party.state != PartyState.ON_TRACK:
        return None
    event = new_event(case=case, type="update", actor=principal.actor, partner_id=principal.partner_id,
                      visibility=update.visibility, body=update.body, now=now, occurred_at=update.occurred_at,
                      signature=signature_of(principal))
    if payload.status is not None:
        case.status = payload.status
    parties.spoke(party, now=now, promised=update.promised, rules=await partner_rules(session, party.partner_id))
    await _WRITE_ROUTINE_UPDATE.rows(session, {
        **_WRITE_EVENT.values(event), **_WRITE_CASE.values(case), **_WRITE_PARTY.values(party),
    })
    return event_out(event)
