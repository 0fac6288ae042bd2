"""The append-only, hash-chained timeline of a case."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tracker.chain import digest, event_hash
from tracker.models import Case, Event


def new_event(
    *,
    case: Case,
    type: str,
    actor: str,
    visibility: str,
    body: dict[str, Any],
    now: dt.datetime,
    occurred_at: dt.datetime | None = None,
    partner_id: str | None = None,
    signature: dict[str, Any] | None = None,
) -> Event:
    """The next event of a case whose row the caller holds locked; the case's chain head moves to it.

    The event is built, not added to a session: ``append_event`` adds it, the routine update
    path (``tracker.updates``) writes it with its own statement.
    """
    seq = case.last_seq + 1
    body_digest = digest(body)
    occurred = occurred_at or now
    hashed = event_hash(
        case_ref=case.ref,
        seq=seq,
        type=type,
        actor=actor,
        partner_id=partner_id,
        visibility=visibility,
        occurred_at=occurred,
        received_at=now,
        body_digest=body_digest,
        signature=signature,
        prev_hash=case.last_hash,
    )
    event = Event(
        case_id=case.id,
        seq=seq,
        type=type,
        actor=actor,
        partner_id=partner_id,
        visibility=visibility,
        occurred_at=occurred,
        received_at=now,
        body=body,
        body_digest=body_digest,
        signature=signature,
        prev_hash=case.last_hash,
        hash=hashed,
    )
    case.last_seq = seq
    case.last_hash = hashed
    case.updated_at = now
    return event


def append_event(
    *,
    session: AsyncSession,
    case: Case,
    type: str,
    actor: str,
    visibility: str,
    body: dict[str, Any],
    now: dt.datetime,
    occurred_at: dt.datetime | None = None,
    partner_id: str | None = None,
    signature: dict[str, Any] | None = None,
) -> Event:
    """Append one event to a case whose row the caller holds locked."""
    event = new_event(case=case, type=type, actor=actor, visibility=visibility, body=body, now=now,
                      occurred_at=occurred_at, partner_id=partner_id, signature=signature)
    session.add(event)
    return event


def event_out(event: Event) -> dict[str, Any]:
    out = dict(event.body)
    out.update(
        seq=event.seq,
        type=event.type,
        actor=event.actor,
        visibility=event.visibility,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        hash=event.hash,
        prev_hash=event.prev_hash,
        signed=event.signature is not None,
        keyid=event.signature.get("keyid") if event.signature else None,
    )
    return out
