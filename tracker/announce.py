"""How the case domain tells partners and the complaint department: outbox rows, same transaction.

Webhooks go to every named partner that has a webhook URL; emails to a partner's ops contact or
to the supervisors' address. Nothing here sends: the dispatcher does, later, from the outbox.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.outbox import enqueue
from notifications.rendering import render_partner_email
from partners.models import Partner
from tracker.models import Case

WEBHOOK_KINDS = (
    "case.opened",
    "party.added",
    "party.invited",
    "party.joined",
    "party.declined",
    "handoff.requested",
    "handoff.accepted",
    "party.late",
    "party.escalated",
    "party.back_on_track",
    "party.nudged",
    "party.chased",
    "party.acknowledged",
    "customer.message",
    "case.closed",
    "case.deadline",
    "customer.erased",
)


def case_summary(case: Case) -> dict[str, Any]:
    return {"ref": case.ref, "type": case.type, "title": case.title, "status": case.status, "owner": case.owner_id}


def stamp(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


async def webhooks(
    *,
    session: AsyncSession,
    case: Case,
    kind: str,
    partner_ids: Iterable[str],
    now: dt.datetime,
    data: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> int:
    """Queue a Standard Webhooks message ``{"type", "timestamp", "data": {"case": ...}}`` per partner."""
    wanted = sorted(set(partner_ids))
    if not wanted:
        return 0
    rows = await session.execute(
        select(Partner.id, Partner.webhook_url).where(Partner.id.in_(wanted), Partner.webhook_url.is_not(None))
    )
    queued = 0
    for partner_id, url in rows.all():
        queued += await webhook_to(session=session, case=case, kind=kind, partner_id=partner_id, url=url, now=now,
                                   data=data, dedupe_key=dedupe_key)
    return queued


async def webhook_to(
    *,
    session: AsyncSession,
    case: Case,
    kind: str,
    partner_id: str,
    url: str | None,
    now: dt.datetime,
    data: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """One partner's webhook, when the caller already holds its URL (the sweep does, per batch)."""
    if not url:
        return False
    payload = {"type": kind, "timestamp": stamp(now), "data": {"case": case_summary(case), **(data or {})}}
    return await enqueue(
        session=session,
        channel="webhook",
        audience="partner",
        kind=kind,
        recipient=url,
        now=now,
        case_id=case.id,
        partner_id=partner_id,
        payload=payload,
        dedupe_key=f"{dedupe_key}:{partner_id}" if dedupe_key else None,
    )


async def partner_email(
    *,
    session: AsyncSession,
    case: Case,
    kind: str,
    partner: Partner,
    now: dt.datetime,
    context: dict[str, Any],
    dedupe_key: str | None = None,
    template: str | None = None,
    address: str | None = None,
) -> bool:
    """An email to one of the partner's contacts (its ops desk unless ``address``; ``template`` if not ``kind``)."""
    recipient = address or partner.ops_email
    if not recipient:
        return False
    subject, text, html = render_partner_email(template or kind,
                                               {"case": case, "partner_name": partner.name, **context})
    return await enqueue(
        session=session, channel="email", audience="partner", kind=kind, recipient=recipient, now=now,
        case_id=case.id, partner_id=partner.id, subject=subject, body_text=text, body_html=html,
        dedupe_key=f"{dedupe_key}:email" if dedupe_key else None,
    )


async def partner_sms(
    *,
    session: AsyncSession,
    case: Case,
    kind: str,
    partner: Partner,
    now: dt.datetime,
    text: str,
    dedupe_key: str | None = None,
    address: str | None = None,
) -> bool:
    """A text to the partner's ops phone (or ``address``): how a partner without IT hears it is chased."""
    recipient = address or partner.ops_phone
    if not recipient:
        return False
    return await enqueue(
        session=session, channel="sms", audience="partner", kind=kind, recipient=recipient, now=now,
        case_id=case.id, partner_id=partner.id, body_text=text,
        dedupe_key=f"{dedupe_key}:sms" if dedupe_key else None,
    )


async def supervisors_email(
    *,
    session: AsyncSession,
    case: Case,
    kind: str,
    address: str | None,
    partner: Partner,
    now: dt.datetime,
    context: dict[str, Any],
    dedupe_key: str | None = None,
    template: str | None = None,
) -> bool:
    """An email to the complaint department (or another address on Baton's side, such as an account manager)."""
    if not address:
        return False
    subject, text, html = render_partner_email(template or kind,
                                               {"case": case, "partner_name": partner.name, **context})
    return await enqueue(
        session=session, channel="email", audience="supervisors", kind=kind, recipient=address, now=now,
        case_id=case.id, partner_id=partner.id, subject=subject, body_text=text, body_html=html,
        dedupe_key=f"{dedupe_key}:supervisors" if dedupe_key else None,
    )
