"""The case domain: open a case, post updates, manage parties, hand off custody, close.

Services only flush; the caller (request or worker loop) owns the transaction. Writers lock the
case row first (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so the sequence
of a case's timeline stays gapless and its hash chain linear under concurrent updates.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from partners.models import Partner
from tracker import announce, trust
from tracker.customer import notify_customer
from tracker.casetypes import CaseTypeDef, case_type
from tracker.chain import GENESIS
from kernel.db import Statement, UTCDateTime
from kernel.durations import format_duration
from tracker.invitations import confirm_invitation, decline_invitation
from kernel.errors import Conflict, Forbidden, NotFound, Unprocessable
from tracker.models import Case, Event, ExternalRef, Handoff, Party
from tracker.principals import Principal
from tracker.refs import new_ref, parse_ref
from tracker.timeline import append_event, event_out, new_event
from tracker.trust import DEFAULT_LIMITS, TrustLimits
from tracker.watchdog import nudge, partner_rules, schedule
from tracker.schemas import (
    AcceptIn,
    CaseIn,
    CaseList,
    CaseOut,
    CloseIn,
    CustomerOut,
    EventIn,
    EventList,
    HandoffIn,
    HandoffList,
    HandoffOut,
    PartyIn,
    PartyOut,
    PartyPatch,
    StatusLinkOut,
    normalize_external,
)

FUTURE_TOLERANCE = dt.timedelta(minutes=5)
MAX_PROMISE = dt.timedelta(days=30)


def _check_status(ctype: CaseTypeDef, status: str) -> None:
    if status not in ctype.statuses:
        known = ", ".join(ctype.statuses)
        raise Unprocessable(f"Unknown status {status!r} for a {ctype.code} case; known statuses: {known}.")


# ---------------------------------------------------------------- loading with authorization


def _not_found(ref: str) -> NotFound:
    # The same answer whether the case does not exist or the caller may not see it.
    return NotFound(f"No case {ref!r}.")


async def load_case(
    *, session: AsyncSession, principal: Principal, ref: str, for_update: bool = False
) -> tuple[Case, Party | None]:
    """The case and the caller's own party on it; 404 unless the caller may see it."""
    parsed = parse_ref(ref)
    if parsed is None or not parsed.valid:
        raise _not_found(ref)
    if principal.is_staff:
        query = select(Case).where(Case.ref == parsed.ref)
        if for_update:
            query = query.with_for_update()
        case = await session.scalar(query)
        if case is None:
            raise _not_found(ref)
        return case, None
    query = (
        select(Case, Party)
        .join(Party, and_(Party.case_id == Case.id, Party.partner_id == principal.partner_id))
        .where(Case.ref == parsed.ref)
    )
    if for_update:
        query = query.with_for_update(of=Case)
    row = (await session.execute(query)).first()
    if row is None:
        raise _not_found(ref)
    return row[0], row[1]


# ---------------------------------------------------------------- watchdog bookkeeping


async def _record_update(
    *, session: AsyncSession, case: Case, party: Party, now: dt.datetime, promised: dt.datetime | None
) -> None:
    """The party spoke: it is on track again, and its next update is due a cadence from now."""
    party.last_update_at = now
    party.promised_by = promised
    if party.state in ("late", "escalated"):
        body = {"partner": party.partner_id, "was": party.state, "overdue_since": announce.stamp(party.overdue_since)}
        append_event(session=session, case=case, type="party.back_on_track", actor="system", visibility="parties",
                     body=body, now=now, partner_id=party.partner_id)
        await announce.webhooks(session=session, case=case, kind="party.back_on_track",
                                partner_ids=[party.partner_id], now=now, data=body)
        _clear_overdue(party)
    schedule(party, now=now, rules=await partner_rules(session, party.partner_id))


def _clear_overdue(party: Party) -> None:
    party.state = "on_track"
    party.overdue_since = None
    party.escalated_at = None
    party.customer_told_at = None


# ---------------------------------------------------------------- output


async def _parties_by_case(session: AsyncSession, case_ids: list[int]) -> dict[int, list[Party]]:
    by_case: dict[int, list[Party]] = {cid: [] for cid in case_ids}
    if case_ids:
        rows = await session.scalars(select(Party).where(Party.case_id.in_(case_ids)).order_by(Party.id))
        for party in rows:
            by_case[party.case_id].append(party)
    return by_case


def party_out(party: Party) -> PartyOut:
    return PartyOut(
        partner=party.partner_id,
        role=party.role,
        responsible=party.responsible,
        state=party.state,  # type: ignore[arg-type]
        cadence=dt.timedelta(seconds=party.cadence_seconds),
        last_update_at=party.last_update_at,
        next_update_due=party.next_update_due,
        overdue_since=party.overdue_since,
        reminders_sent=party.reminders_sent,
    )


def status_url(base_url: str, case: Case) -> str:
    return f"{base_url}/s/{case.status_token}"


def case_out(case: Case, parties: list[Party], *, principal: Principal, ctype: CaseTypeDef, base_url: str) -> CaseOut:
    sees_customer = principal.is_staff or principal.partner_id == case.owner_id
    customer = None
    if sees_customer:
        customer = CustomerOut(
            name=case.customer_name,
            phone=case.customer_phone,
            email=case.customer_email,
            locale=case.customer_locale,
            timezone=case.customer_timezone,
            channels=list(case.customer_channels or []),
            sms_opted_out=case.sms_opted_out,
            email_opted_out=case.email_opted_out,
        )
    return CaseOut(
        ref=case.ref,
        type=case.type,
        title=case.title,
        status=case.status,
        status_label=ctype.label(case.status, "en"),
        status_url=status_url(base_url, case) if sees_customer else None,
        owner=case.owner_id,
        parties=[party_out(p) for p in parties],
        customer=customer,
        external_refs=dict(case.external_refs or {}),
        opened_at=case.opened_at,
        closed_at=case.closed_at,
        resolution=case.resolution,
        deadline_at=case.deadline_at,
        satisfaction=case.satisfaction,
        last_seq=case.last_seq,
        last_hash=case.last_hash,
    )


async def read_case(*, session: AsyncSession, principal: Principal, ref: str, base_url: str) -> CaseOut:
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    parties = (await _parties_by_case(session, [case.id]))[case.id]
    ctype = await case_type(session=session, code=case.type)
    return case_out(case, parties, principal=principal, ctype=ctype, base_url=base_url)


# ---------------------------------------------------------------- open


def new_status_token() -> str:
    """192 random bits; the first 8 characters locate the row, the whole is compared in constant time."""
    return secrets.token_urlsafe(24)


async def open_case(
    *, session: AsyncSession, principal: Principal, payload: CaseIn, now: dt.datetime, base_url: str,
    limits: TrustLimits = DEFAULT_LIMITS,
) -> CaseOut:
    """Open a case with its customer, parties and external references; parties a partner names are invited."""
    opener = None if principal.is_staff else principal.partner_id
    trust.check_opener(partner_id=opener, owner=payload.owner)
    for spec in payload.parties:
        trust.check_cadence(spec.cadence, limits)
    ctype = await case_type(session=session, code=payload.type)
    status = payload.status or ctype.initial_status
    _check_status(ctype, status)
    listed = [p.partner for p in payload.parties]
    if len(set(listed)) != len(listed):
        raise Unprocessable("A partner appears twice in parties; a partner has one role per case.")
    wanted = {payload.owner, *listed}
    partners = {
        p.id: p for p in (await session.scalars(select(Partner).where(Partner.id.in_(wanted)))).all()
    }
    unknown = sorted(wanted - partners.keys())
    if unknown:
        raise Unprocessable(f"Unknown partner(s): {', '.join(unknown)}.")
    if opener is not None:
        await trust.check_case_quota(session=session, partner_id=opener, now=now, limits=limits)

    ref = await _unused_ref(session, ctype.prefix)
    token = new_status_token()
    customer = payload.customer
    channels = customer.channels or [c for c, v in (("sms", customer.phone), ("email", customer.email)) if v]
    case = Case(
        ref=ref,
        type=ctype.code,
        title=payload.title,
        status=status,
        owner_id=payload.owner,
        customer_name=customer.name,
        customer_phone=customer.phone,
        customer_email=customer.email,
        customer_locale=customer.locale.replace("_", "-"),
        customer_timezone=customer.timezone,
        customer_channels=channels,
        status_token=token,
        status_token_locator=token[:8],
        external_refs=payload.external_refs,
        opened_at=now,
        deadline_at=now + ctype.deadline if ctype.deadline else None,
        last_seq=0,
        last_hash=GENESIS,
        updated_at=now,
    )
    session.add(case)
    await session.flush()
    for kind, value in payload.external_refs.items():
        session.add(ExternalRef(case_id=case.id, kind=kind, value=normalize_external(value)))

    specs = list(payload.parties)
    if payload.owner not in listed:
        specs.insert(0, PartyIn(partner=payload.owner, role="owner"))
    parties = [
        await _new_party(session, case, spec, partners[spec.partner], ctype, now,
                         invited=trust.joins_invited(opener=opener, partner_id=spec.partner))
        for spec in specs
    ]
    session.add_all(parties)
    append_event(
        session=session,
        case=case,
        type="case.opened",
        actor=principal.actor,
        partner_id=principal.partner_id,
        visibility="public",
        body={
            "title": case.title,
            "case_type": case.type,
            "status": status,
            "owner": case.owner_id,
            "parties": [{"partner": p.partner_id, "role": p.role, "responsible": p.responsible, "state": p.state}
                        for p in parties],
            "external_refs": payload.external_refs,
        },
        now=now,
        signature=_signature(principal),
    )
    await notify_customer(session=session, case=case, kind="opened", now=now)
    await announce.webhooks(
        session=session, case=case, kind="case.opened",
        partner_ids=[p.partner_id for p in parties if p.state != "invited"], now=now,
        data={"parties": [{"partner": p.partner_id, "role": p.role, "responsible": p.responsible, "state": p.state}
                          for p in parties]},
    )
    for party in parties:
        if party.state == "invited":
            await _announce_invitation(session=session, case=case, party=party, partner=partners[party.partner_id],
                                       invited_by=principal, now=now)
    await session.flush()
    return case_out(case, parties, principal=principal, ctype=ctype, base_url=base_url)


async def _announce_invitation(
    *, session: AsyncSession, case: Case, party: Party, partner: Partner, invited_by: Principal, now: dt.datetime
) -> None:
    """Tell an invited partner by webhook and email; it is asked nothing until it accepts."""
    data = {"party": {"partner": party.partner_id, "role": party.role, "responsible": party.responsible,
                      "state": party.state}, "invited_by": invited_by.partner_id or invited_by.actor}
    key = f"invited:{party.case_id}:{party.partner_id}:{announce.stamp(now)}"
    await announce.webhook_to(session=session, case=case, kind="party.invited", partner_id=partner.id,
                              url=partner.webhook_url, now=now, data=data, dedupe_key=key)
    await announce.partner_email(
        session=session, case=case, kind="party.invited", partner=partner, now=now, dedupe_key=key,
        context={"invited_by": invited_by.partner_id or "The complaint department", "role": party.role,
                 "responsible": party.responsible, "cadence": format_duration(party.cadence_seconds),
                 "partner_id": partner.id},
    )


def _signature(principal: Principal) -> dict[str, Any] | None:
    return principal.signature if principal.kind == "partner" else None


async def _unused_ref(session: AsyncSession, prefix: str) -> str:
    for _ in range(10):
        ref = new_ref(prefix)
        if await session.scalar(select(Case.id).where(Case.ref == ref)) is None:
            return ref
    raise Conflict("Could not draw an unused case reference; try again.")


async def _new_party(
    session: AsyncSession, case: Case, spec: PartyIn, partner: Partner, ctype: CaseTypeDef, now: dt.datetime,
    *, invited: bool,
) -> Party:
    cadence = spec.cadence or dt.timedelta(seconds=partner.default_cadence_seconds) or ctype.default_cadence
    party = Party(
        case_id=case.id,
        partner_id=spec.partner,
        role=spec.role,
        responsible=spec.responsible,
        cadence_seconds=int(cadence.total_seconds()),
        state="invited" if invited else "on_track",
        joined_at=now,
        reminders_sent=0,
    )
    schedule(party, now=now, rules=await partner_rules(session, spec.partner))
    return party


# ---------------------------------------------------------------- list


def _encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        value = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        value = -1
    if not 0 <= value < 2**63:
        raise Unprocessable("Invalid cursor; pass next_cursor from the previous page unchanged.")
    return value


async def list_cases(
    *,
    session: AsyncSession,
    principal: Principal,
    base_url: str,
    status: str | None = None,
    partner: str | None = None,
    overdue: bool | None = None,
    text: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> CaseList:
    """Newest first; partners see only cases they are party to."""
    query = select(Case).order_by(Case.id.desc()).limit(limit + 1)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(Case.id < after)
    if not principal.is_staff:
        query = query.where(exists().where(Party.case_id == Case.id, Party.partner_id == principal.partner_id))
    if status:
        query = query.where(Case.status == status)
    if partner:
        query = query.where(exists().where(Party.case_id == Case.id, Party.partner_id == partner))
    if overdue is not None:
        late = exists().where(Party.case_id == Case.id, Party.state.in_(("late", "escalated")))
        query = query.where(late if overdue else ~late)
    if text:
        query = query.where(_text_filter(text, staff=principal.is_staff))
    cases = list((await session.scalars(query)).all())
    more = len(cases) > limit
    cases = cases[:limit]
    parties = await _parties_by_case(session, [c.id for c in cases])
    items = []
    for case in cases:
        ctype = await case_type(session=session, code=case.type)
        items.append(case_out(case, parties[case.id], principal=principal, ctype=ctype, base_url=base_url))
    return CaseList(items=items, next_cursor=_encode_cursor(cases[-1].id) if more else None)


def _text_filter(text: str, *, staff: bool) -> Any:
    text = text.strip()
    parsed = parse_ref(text)
    clauses = [
        Case.id.in_(select(ExternalRef.case_id).where(ExternalRef.value == normalize_external(text))),
        func.lower(Case.title).contains(text.lower(), autoescape=True),
    ]
    if parsed is not None:
        clauses.append(Case.ref == parsed.ref)
    if staff:
        clauses.append(Case.customer_email == text.lower())
        clauses.append(Case.customer_phone == "".join(ch for ch in text if ch.isdigit() or ch == "+"))
    return or_(*clauses)


# ---------------------------------------------------------------- events


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
        next_cursor=_encode_cursor(events[-1].seq) if more else None,
    )


async def post_update(
    *, session: AsyncSession, principal: Principal, ref: str, payload: EventIn, now: dt.datetime,
    limits: TrustLimits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Post a status update or note; the poster's own party is back on track (and joined, if invited)."""
    if not principal.is_staff:
        routine = await _post_routine_update(session=session, principal=principal, ref=ref, payload=payload, now=now)
        if routine is not None:
            return routine
    case, party = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    ctype = await case_type(session=session, code=case.type)
    update = _checked_update(case=case, party=party, ctype=ctype, principal=principal, payload=payload, now=now)
    if update.tells_customer and principal.partner_id is not None:
        await trust.check_customer_message_quota(session=session, partner_id=principal.partner_id, now=now,
                                                 limits=limits)
    if party is not None and party.state == "invited":
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
        signature=_signature(principal),
    )
    if payload.status is not None:
        case.status = payload.status
    if update.tells_customer:
        trigger = {"status": case.status, "message": payload.message} if payload.message else {"status": case.status}
        await notify_customer(session=session, case=case, kind="update", now=now, trigger=trigger)
    if party is not None and party.state != "released":
        await _record_update(session=session, case=case, party=party, now=now, promised=update.promised)
    await session.flush()
    return event_out(event)


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
        _check_status(ctype, payload.status)
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


# The routine update: a partner whose party is on track posts, and the customer is not told.
# Most traffic is this; it takes two statements of its own (lock and read; write event, case and
# party) instead of the ORM's unit of work. Anything else (the customer is told, a late or
# released party, staff) takes the general path above, with the same checks (_checked_update).
_READ_CASE_AND_PARTY = (
    "SELECT c.id, c.ref, c.type, c.status, c.owner_id, c.closed_at, c.last_seq, c.last_hash, "
    "p.id AS party_id, p.state AS party_state, p.responsible, p.cadence_seconds "
    "FROM cases AS c JOIN parties AS p ON p.case_id = c.id AND p.partner_id = :partner WHERE c.ref = :ref"
)
_LOCK_CASE_AND_PARTY = Statement(
    _READ_CASE_AND_PARTY,  # SQLite: the transaction's BEGIN IMMEDIATE is the lock
    pg=f"{_READ_CASE_AND_PARTY} FOR UPDATE OF c",
    closed_at=UTCDateTime(),
    responsible=Boolean(),
)
_INSERT_EVENT = (
    "INSERT INTO events (case_id, seq, type, actor, partner_id, visibility, occurred_at, received_at, body, "
    "body_digest, signature, prev_hash, hash) VALUES (:case_id, :seq, :type, :actor, :partner_id, :visibility, "
    ":occurred_at, :received_at, :body, :body_digest, :signature, :prev_hash, :hash)"
)
_UPDATE_CASE = (
    "UPDATE cases SET status = :status, last_seq = :seq, last_hash = :hash, updated_at = :received_at "
    "WHERE id = :case_id"
)
_UPDATE_PARTY = (
    "UPDATE parties SET last_update_at = :received_at, promised_by = :promised_by, "
    "next_update_due = :next_update_due, watch_at = :watch_at WHERE id = :party_id"
)
_WRITE_ROUTINE_UPDATE = Statement(
    (_INSERT_EVENT, _UPDATE_CASE, _UPDATE_PARTY),
    pg=f"WITH event AS ({_INSERT_EVENT}), kase AS ({_UPDATE_CASE}) {_UPDATE_PARTY}",
    occurred_at=UTCDateTime(),
    received_at=UTCDateTime(),
    promised_by=UTCDateTime(),
    next_update_due=UTCDateTime(),
    watch_at=UTCDateTime(),
)


async def _post_routine_update(
    *, session: AsyncSession, principal: Principal, ref: str, payload: EventIn, now: dt.datetime
) -> dict[str, Any] | None:
    """Post a routine update (see above); None, having changed nothing, when it is not one."""
    parsed = parse_ref(ref)
    if parsed is None or not parsed.valid:
        raise _not_found(ref)
    row = await _LOCK_CASE_AND_PARTY.first(session, {"ref": parsed.ref, "partner": principal.partner_id})
    if row is None:
        raise _not_found(ref)
    # Detached objects: the same rules run on them, and nothing is flushed from them.
    case = Case(id=row["id"], ref=row["ref"], type=row["type"], status=row["status"], owner_id=row["owner_id"],
                closed_at=row["closed_at"], last_seq=row["last_seq"], last_hash=row["last_hash"])
    party = Party(id=row["party_id"], partner_id=principal.partner_id, state=row["party_state"],
                  responsible=bool(row["responsible"]), cadence_seconds=row["cadence_seconds"])
    ctype = await case_type(session=session, code=case.type)
    update = _checked_update(case=case, party=party, ctype=ctype, principal=principal, payload=payload, now=now)
    if update.tells_customer or row["party_state"] != "on_track":
        return None
    party.promised_by = update.promised
    schedule(party, now=now, rules=await partner_rules(session, principal.partner_id or ""))
    event = new_event(case=case, type="update", actor=principal.actor, partner_id=principal.partner_id,
                      visibility=update.visibility, body=update.body, now=now, occurred_at=update.occurred_at,
                      signature=_signature(principal))
    await _WRITE_ROUTINE_UPDATE.rows(session, {
        "case_id": case.id, "seq": event.seq, "type": event.type, "actor": event.actor,
        "partner_id": event.partner_id, "visibility": event.visibility, "occurred_at": event.occurred_at,
        "received_at": now, "body": _json_text(event.body), "body_digest": event.body_digest,
        "signature": _json_text(event.signature) if event.signature is not None else None,
        "prev_hash": event.prev_hash, "hash": event.hash, "status": payload.status or case.status,
        "party_id": party.id, "promised_by": party.promised_by, "next_update_due": party.next_update_due,
        "watch_at": party.watch_at,
    })
    return event_out(event)


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _default_visibility(ctype: CaseTypeDef, payload: EventIn) -> str:
    if payload.message:
        return "public"
    if payload.status and ctype.statuses[payload.status].get("notify"):
        return "public"
    return "parties"


# ---------------------------------------------------------------- parties


def _require_owner_or_staff(principal: Principal, case: Case) -> None:
    if not principal.is_staff and principal.partner_id != case.owner_id:
        raise Forbidden("Only staff and the owner partner may change the case's parties.")


async def add_party(
    *, session: AsyncSession, principal: Principal, ref: str, payload: PartyIn, now: dt.datetime, base_url: str,
    limits: TrustLimits = DEFAULT_LIMITS,
) -> PartyOut:
    """Add a party: confirmed at once when staff add it, invited when a partner names another."""
    trust.check_cadence(payload.cadence, limits)
    case, own = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    _require_owner_or_staff(principal, case)
    _require_open(case)
    trust.check_may_write(own)
    partner = await session.get(Partner, payload.partner)
    if partner is None:
        raise Unprocessable(f"Unknown partner {payload.partner!r}.")
    taken = await session.scalar(
        select(Party.id).where(Party.case_id == case.id, Party.partner_id == payload.partner)
    )
    if taken is not None:
        raise Conflict(f"{payload.partner} is already a party to {case.ref}; PATCH it instead.")
    ctype = await case_type(session=session, code=case.type)
    invited = trust.joins_invited(opener=principal.partner_id, partner_id=payload.partner)
    party = await _new_party(session, case, payload, partner, ctype, now, invited=invited)
    session.add(party)
    append_event(
        session=session,
        case=case,
        type="party.added",
        actor=principal.actor,
        partner_id=principal.partner_id,
        visibility="parties",
        body={"partner": party.partner_id, "role": party.role, "responsible": party.responsible,
              "cadence_seconds": party.cadence_seconds, "state": party.state},
        now=now,
        signature=_signature(principal),
    )
    if invited:
        await _announce_invitation(session=session, case=case, party=party, partner=partner, invited_by=principal,
                                   now=now)
    else:
        await announce.webhooks(
            session=session, case=case, kind="party.added", partner_ids=[party.partner_id], now=now,
            data={"party": {"partner": party.partner_id, "role": party.role, "responsible": party.responsible,
                            "next_update_due": announce.stamp(party.next_update_due)}},
        )
    await session.flush()
    return party_out(party)


async def _party_of(session: AsyncSession, case: Case, partner_id: str) -> Party:
    party = await session.scalar(select(Party).where(Party.case_id == case.id, Party.partner_id == partner_id))
    if party is None:
        raise NotFound(f"{partner_id!r} is not a party to {case.ref}.")
    return party


async def patch_party(
    *, session: AsyncSession, principal: Principal, ref: str, partner_id: str, payload: PartyPatch, now: dt.datetime,
    limits: TrustLimits = DEFAULT_LIMITS,
) -> PartyOut:
    """Change a party's role, cadence or responsibility, or release it (or bring it back)."""
    trust.check_cadence(payload.cadence, limits)
    case, own = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    _require_owner_or_staff(principal, case)
    _require_open(case)
    trust.check_may_write(own)
    party = await _party_of(session, case, partner_id)
    changes = payload.model_dump(mode="json", exclude_none=True)
    if not changes:
        raise Unprocessable("Nothing to change: give role, responsible, cadence or released.")
    watch_off = trust.takes_watch_off(party, responsible=payload.responsible, cadence=payload.cadence)
    if (payload.released or watch_off) and principal.is_staff:
        # Taking the watch off an overdue party is a release by another name.
        principal.require_staff("supervisor")
    if payload.role is not None:
        party.role = payload.role
    if payload.cadence is not None:
        party.cadence_seconds = int(payload.cadence.total_seconds())
    if payload.released:
        party.released_at = now
        party.responsible = False
        _clear_overdue(party)
        party.state = "released"
    elif payload.released is False and party.state == "released":
        # Staff bring a party back; a partner can only invite it back (it may have declined).
        party.released_at = None
        party.state = "on_track" if principal.is_staff else "invited"
    if payload.responsible is not None:
        if payload.responsible and party.state == "released":
            raise Conflict(f"{partner_id} was released; send released=false to bring it back.")
        party.responsible = payload.responsible
        if not party.responsible and party.state in ("late", "escalated"):
            _clear_overdue(party)
    if party.state in ("on_track", "released"):
        # A new cadence or responsibility counts from now (a released party is no longer watched);
        # a late party keeps its overdue clock.
        schedule(party, now=now, rules=await partner_rules(session, party.partner_id))
    append_event(
        session=session,
        case=case,
        type="party.released" if payload.released else "party.updated",
        actor=principal.actor,
        partner_id=principal.partner_id,
        visibility="parties",
        body={"partner": partner_id, **changes},
        now=now,
        signature=_signature(principal),
    )
    await session.flush()
    return party_out(party)


async def answer_invitation(
    *, session: AsyncSession, principal: Principal, ref: str, partner_id: str, accept: bool, payload: AcceptIn,
    now: dt.datetime,
) -> PartyOut:
    """The invited partner (or staff for it) accepts or declines being a party to the case."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    if not principal.is_staff and principal.partner_id != partner_id:
        raise Forbidden("A partner answers only its own invitation.")
    _require_open(case)
    party = await _party_of(session, case, partner_id)
    answer = confirm_invitation if accept else decline_invitation
    await answer(session=session, case=case, party=party, principal=principal, now=now, note=payload.note)
    await session.flush()
    return party_out(party)


def _require_open(case: Case) -> None:
    if case.closed_at is not None:
        raise Conflict(f"Case {case.ref} is closed.")


# ---------------------------------------------------------------- handoffs


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
    _require_open(case)
    if principal.is_staff:
        sender = payload.from_
    else:
        if payload.from_ not in (None, principal.partner_id):
            raise Forbidden("A partner hands off only its own custody.")
        trust.check_may_write(own)
        if own is None or not own.responsible:
            raise Forbidden("Only the responsible party (or staff) may hand off custody.")
        if own.state == "invited":
            await confirm_invitation(session=session, case=case, party=own, principal=principal, now=now)
        sender = principal.partner_id
    if sender is not None:
        known = await session.scalar(select(Party.id).where(Party.case_id == case.id, Party.partner_id == sender))
        if known is None:
            raise Unprocessable(f"{sender!r} (from) is not a party to {case.ref}.")
    receiver = await session.scalar(
        select(Party).where(Party.case_id == case.id, Party.partner_id == payload.to)
    )
    if receiver is None or receiver.state == "released":
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
        signature=_signature(principal),
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
    _require_open(case)
    handoff = await session.scalar(select(Handoff).where(Handoff.id == handoff_id, Handoff.case_id == case.id))
    if handoff is None:
        raise NotFound(f"No handoff {handoff_id} on {case.ref}.")
    if not principal.is_staff and principal.partner_id != handoff.to_partner_id:
        raise Forbidden("Only the receiving partner (or staff) may accept a handoff.")
    if handoff.state != "requested":
        raise Conflict(f"Handoff {handoff_id} is already {handoff.state}.")
    receiver = await _party_of(session, case, handoff.to_partner_id)
    trust.check_may_write(receiver)
    if receiver.state == "invited":
        await confirm_invitation(session=session, case=case, party=receiver, principal=principal, now=now)
    handoff.state = "accepted"
    handoff.accepted_at = now
    receiver.responsible = True
    if receiver.state in ("late", "escalated"):
        _clear_overdue(receiver)
    receiver.last_update_at = now
    schedule(receiver, now=now, rules=await partner_rules(session, receiver.partner_id))
    if handoff.from_partner_id:
        sender = await _party_of(session, case, handoff.from_partner_id)
        sender.responsible = False
        if sender.state in ("late", "escalated"):
            _clear_overdue(sender)
        schedule(sender, now=now, rules=await partner_rules(session, sender.partner_id))
    append_event(
        session=session,
        case=case,
        type="handoff.accepted",
        actor=principal.actor,
        partner_id=principal.partner_id,
        visibility="public",
        body={"handoff": handoff.id, "from": handoff.from_partner_id, "to": handoff.to_partner_id,
              "note": payload.note},
        now=now,
        signature=_signature(principal),
    )
    await notify_customer(session=session, case=case, kind="update", now=now, trigger={"holder": handoff.to_partner_id})
    await announce.webhooks(
        session=session, case=case, kind="handoff.accepted",
        partner_ids=[p for p in (handoff.from_partner_id, handoff.to_partner_id) if p], now=now,
        data={"handoff": handoff_out(handoff).model_dump(mode="json", by_alias=True)},
    )
    await session.flush()
    return handoff_out(handoff)


async def list_handoffs(*, session: AsyncSession, principal: Principal, ref: str) -> HandoffList:
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    rows = await session.scalars(select(Handoff).where(Handoff.case_id == case.id).order_by(Handoff.id))
    return HandoffList(items=[handoff_out(h) for h in rows])


# ---------------------------------------------------------------- close and status link


async def close_case(
    *, session: AsyncSession, principal: Principal, ref: str, payload: CloseIn, now: dt.datetime, base_url: str
) -> CaseOut:
    """Close with a resolution; nobody is watched any more and the customer is asked to confirm."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    if not principal.is_staff and principal.partner_id != case.owner_id:
        raise Forbidden("Only the owner partner (or staff) may close the case.")
    if principal.is_staff:
        principal.require_staff("supervisor")
    _require_open(case)
    ctype = await case_type(session=session, code=case.type)
    status = payload.status or "closed"
    _check_status(ctype, status)
    if not ctype.statuses[status].get("terminal"):
        raise Unprocessable(f"{status!r} is not a terminal status of a {ctype.code} case.")
    case.status = status
    case.closed_at = now
    case.resolution = payload.resolution
    parties = (await _parties_by_case(session, [case.id]))[case.id]
    for party in parties:
        party.watch_at = party.next_update_due = None
        if party.state in ("late", "escalated"):
            _clear_overdue(party)
    body: dict[str, Any] = {"status": status, "resolution": payload.resolution}
    if payload.message:
        body["message"] = payload.message
    append_event(
        session=session,
        case=case,
        type="case.closed",
        actor=principal.actor,
        partner_id=principal.partner_id,
        visibility="public",
        body=body,
        now=now,
        signature=_signature(principal),
    )
    await notify_customer(session=session, case=case, kind="resolution", now=now,
                          trigger={"message": payload.message} if payload.message else None)
    await announce.webhooks(session=session, case=case, kind="case.closed",
                            partner_ids=[p.partner_id for p in parties], now=now, data=body)
    await session.flush()
    return case_out(case, parties, principal=principal, ctype=ctype, base_url=base_url)


async def rotate_status_link(
    *, session: AsyncSession, principal: Principal, ref: str, now: dt.datetime, base_url: str
) -> StatusLinkOut:
    """Issue a new status link; the old one stops working at once."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    principal.require_staff("agent")
    token = new_status_token()
    case.status_token = token
    case.status_token_locator = token[:8]
    append_event(
        session=session, case=case, type="status_link.rotated", actor=principal.actor,
        visibility="internal", body={}, now=now,
    )
    await session.flush()
    return StatusLinkOut(ref=case.ref, status_url=status_url(base_url, case))


async def nudge_party(
    *, session: AsyncSession, principal: Principal, ref: str, partner_id: str, note: str | None, now: dt.datetime
) -> dict[str, Any]:
    """Staff chase a partner now (webhook + email), at most once an hour per party."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    principal.require_staff("agent")
    party = await _party_of(session, case, partner_id)
    result = await nudge(session=session, case=case, party=party, actor=principal.actor, note=note, now=now)
    await session.flush()
    return result
