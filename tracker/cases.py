"""A case's life: open it, read and list it, close it, rotate its status link.

Services only flush; the caller (request or worker loop) owns the transaction. Parties live in
``tracker.membership``, updates in ``tracker.updates``, custody in ``tracker.handoffs``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import Conflict, Forbidden, Unprocessable
from kernel.pagination import decode_cursor, encode_cursor
from partners.models import Partner
from tracker import announce, rights, scans, trust
from tracker.access import check_status, load_case, parties_by_case, require_open, signature_of
from tracker.casetypes import CaseTypeDef, case_type
from tracker.chain import GENESIS
from tracker.customer import notify_customer
from tracker.membership import announce_invitation, new_party, party_out
from tracker.models import Case, ExternalRef, Party
from tracker.parties import OVERDUE, PartyState, back_on_track
from tracker.principals import Principal
from tracker.refs import new_ref, parse_ref
from tracker.schemas import CaseIn, CaseList, CaseOut, CloseIn, CustomerOut, PartyIn, StatusLinkOut, normalize_external
from tracker.timeline import append_event


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
            whatsapp_opted_out=bool(case.whatsapp_opted_out),
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
        eta=case.eta,
        eta_first=case.eta_first,
        delivered_at=case.delivered_at,
        itinerary=case.itinerary,
        last_seq=case.last_seq,
        last_hash=case.last_hash,
    )


async def read_case(*, session: AsyncSession, principal: Principal, ref: str, base_url: str) -> CaseOut:
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    parties = (await parties_by_case(session, [case.id]))[case.id]
    ctype = await case_type(session=session, code=case.type)
    return case_out(case, parties, principal=principal, ctype=ctype, base_url=base_url)


def new_status_token() -> str:
    """192 random bits; the first 8 characters locate the row, the whole is compared in constant time."""
    return secrets.token_urlsafe(24)


async def open_case(
    *, session: AsyncSession, principal: Principal, payload: CaseIn, now: dt.datetime, base_url: str,
) -> CaseOut:
    """Open a case with its customer, parties and external references; parties a partner names are invited."""
    opener = None if principal.is_staff else principal.partner_id
    trust.check_opener(partner_id=opener, owner=payload.owner)
    for spec in payload.parties:
        trust.check_cadence(spec.cadence, session=session)
    ctype = await case_type(session=session, code=payload.type)
    status = payload.status or ctype.initial_status
    check_status(ctype, status)
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
        await trust.check_case_quota(session=session, partner_id=opener, now=now)

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
        itinerary=payload.itinerary.model_dump(mode="json") if payload.itinerary else None,
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
        await new_party(session, case, spec, partners[spec.partner], ctype, now,
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
            **({"itinerary": case.itinerary} if case.itinerary else {}),
        },
        now=now,
        signature=signature_of(principal),
    )
    await rights.refresh(session=session, case=case, now=now)
    await session.flush()
    await scans.match_waiting(session=session, case=case, now=now, base_url=base_url)  # the bag may have been scanned already
    await notify_customer(session=session, case=case, kind="opened", now=now)
    await announce.webhooks(
        session=session, case=case, kind="case.opened",
        partner_ids=[p.partner_id for p in parties if p.state != PartyState.INVITED], now=now,
        data={"parties": [{"partner": p.partner_id, "role": p.role, "responsible": p.responsible, "state": p.state}
                          for p in parties]},
    )
    for party in parties:
        if party.state == PartyState.INVITED:
            await announce_invitation(session=session, case=case, party=party, partner=partners[party.partner_id],
                                       invited_by=principal, now=now, base_url=base_url)
    await session.flush()
    return case_out(case, parties, principal=principal, ctype=ctype, base_url=base_url)


async def _unused_ref(session: AsyncSession, prefix: str) -> str:
    for _ in range(10):
        ref = new_ref(prefix)
        if await session.scalar(select(Case.id).where(Case.ref == ref)) is None:
            return ref
    raise Conflict("Could not draw an unused case reference; try again.")


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
        late = exists().where(Party.case_id == Case.id, Party.state.in_(OVERDUE))
        query = query.where(late if overdue else ~late)
    if text:
        query = query.where(_text_filter(text, staff=principal.is_staff))
    cases = list((await session.scalars(query)).all())
    more = len(cases) > limit
    cases = cases[:limit]
    parties = await parties_by_case(session, [c.id for c in cases])
    items = []
    for case in cases:
        ctype = await case_type(session=session, code=case.type)
        items.append(case_out(case, parties[case.id], principal=principal, ctype=ctype, base_url=base_url))
    return CaseList(items=items, next_cursor=encode_cursor(cases[-1].id) if more else None)


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


async def close_case(
    *, session: AsyncSession, principal: Principal, ref: str, payload: CloseIn, now: dt.datetime, base_url: str
) -> CaseOut:
    """Close with a resolution; nobody is watched any more and the customer is asked to confirm."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    if not principal.is_staff and principal.partner_id != case.owner_id:
        raise Forbidden("Only the owner partner (or staff) may close the case.")
    if principal.is_staff:
        principal.require_staff("supervisor")
    require_open(case)
    ctype = await case_type(session=session, code=case.type)
    status = payload.status or "closed"
    check_status(ctype, status)
    if not ctype.statuses[status].get("terminal"):
        raise Unprocessable(f"{status!r} is not a terminal status of a {ctype.code} case.")
    case.status = status
    case.closed_at = now
    if status == "delivered" and case.delivered_at is None:
        case.delivered_at = now  # the rights that count from delivery start now
        await rights.refresh(session=session, case=case, now=now)
    case.resolution = payload.resolution
    parties = (await parties_by_case(session, [case.id]))[case.id]
    for party in parties:
        party.watch_at = party.next_update_due = None
        back_on_track(party)
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
        signature=signature_of(principal),
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
