"""Deliveries: what Baton sent, or will send, to whom, and whether it arrived.

For staff who must answer "was the partner (or the customer) told?": the outbox rows of one case
with their content (``GET /v1/cases/{ref}/notifications``, the console's case page), and the
webhook deliveries across partners, whose ``dead`` ones are the dead-letter queue a supervisor
re-sends from (``/v1/webhook-deliveries``, the console's webhook screen). Sending and re-sending
belong to ``notifications.dispatcher``; this module only reads rows and shows them.
"""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.models import Notification
from tracker.models import Case
from kernel.pagination import Page, decode_cursor, encode_cursor


class DeliveryOut(BaseModel):
    id: int
    case: str | None
    channel: str
    audience: str
    partner: str | None
    kind: str
    recipient: str
    state: str
    attempts: int
    next_attempt_at: dt.datetime | None
    last_error: str | None
    message_id: str
    provider_id: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    subject: str | None = None
    body_text: str | None = None


class DeliveryList(Page[DeliveryOut]):
    """One page; pass ``next_cursor`` back as ``cursor`` for the next."""


def delivery_out(row: Notification, ref: str | None, *, with_content: bool = False) -> DeliveryOut:
    """One outbox row as staff see it: the recipient masked, the content only when asked for."""
    return DeliveryOut(
        id=row.id,
        case=ref,
        channel=row.channel,
        audience=row.audience,
        partner=row.partner_id,
        kind=row.kind,
        recipient=_mask(row.recipient, row.channel),
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        message_id=row.message_id,
        provider_id=row.provider_id,
        created_at=row.created_at,
        sent_at=row.sent_at,
        delivered_at=row.delivered_at,
        subject=row.subject if with_content else None,
        body_text=_without_links(row.body_text) if with_content else None,
    )


# A partner's one-tap link lets whoever holds it speak as that partner: staff read the message
# that carried it, never the link itself.
_ONE_TAP = re.compile(r"/p/[A-Za-z0-9_-]{20,}")


def _without_links(text: str | None) -> str | None:
    return _ONE_TAP.sub("/p/(one-tap link, shown only to its partner)", text) if text else text


def _mask(recipient: str, channel: str) -> str:
    """Phone numbers are shown with only their last digits: enough to recognise, not to misuse."""
    if channel in ("sms", "whatsapp") and len(recipient) > 4:
        return "•" * (len(recipient) - 4) + recipient[-4:]
    return recipient


async def deliveries(
    *,
    session: AsyncSession,
    channel: str | None = None,
    state: str | None = None,
    partner: str | None = None,
    case_id: int | None = None,
    cursor: str | None = None,
    limit: int = 50,
    with_content: bool = False,
) -> DeliveryList:
    """Outbox rows, newest first (``state=dead`` lists the dead-lettered webhooks)."""
    query = (
        select(Notification, Case.ref)
        .outerjoin(Case, Case.id == Notification.case_id)
        .order_by(Notification.id.desc())
        .limit(limit + 1)
    )
    for column, value in ((Notification.channel, channel), (Notification.state, state),
                          (Notification.partner_id, partner), (Notification.case_id, case_id)):
        if value is not None:
            query = query.where(column == value)
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(Notification.id < before)
    rows = (await session.execute(query)).all()
    items = [delivery_out(row, ref, with_content=with_content) for row, ref in rows[:limit]]
    return DeliveryList(items=items, next_cursor=encode_cursor(items[-1].id) if len(rows) > limit else None)
