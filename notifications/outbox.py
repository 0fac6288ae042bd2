"""Writing to the outbox. Domain code calls ``enqueue`` inside its own transaction."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kernel import metrics
from notifications.models import CHANNELS, Notification


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


async def enqueue(
    *,
    session: AsyncSession,
    channel: str,
    audience: str,
    kind: str,
    recipient: str,
    now: dt.datetime,
    case_id: int | None = None,
    partner_id: str | None = None,
    subject: str | None = None,
    body_text: str | None = None,
    body_html: str | None = None,
    payload: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    not_before: dt.datetime | None = None,
) -> bool:
    """Queue one message; False when ``dedupe_key`` was already used (nothing is queued twice)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    values = dict(
        case_id=case_id,
        channel=channel,
        audience=audience,
        partner_id=partner_id,
        kind=kind,
        recipient=recipient,
        subject=subject,
        body_text=body_text,
        body_html=body_html,
        payload=payload,
        message_id=new_message_id(),
        dedupe_key=dedupe_key,
        state="pending",
        attempts=0,
        next_attempt_at=not_before or now,
        created_at=now,
        updated_at=now,
    )
    if dedupe_key is None:
        await session.execute(insert(Notification).values(**values))
        return True
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(Notification).values(**values)
    # RETURNING, not rowcount: psycopg's async adapter reports -1 for INSERT ... ON CONFLICT.
    result = await session.execute(
        stmt.on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(Notification.id)
    )
    return result.first() is not None


async def refresh_gauges(*, session: AsyncSession, now: dt.datetime) -> None:
    """Outbox depth and the age of the oldest waiting row, per channel, for /metrics."""
    rows = (
        await session.execute(
            select(Notification.channel, func.count(), func.min(Notification.created_at))
            .where(Notification.state.in_(("pending", "sending")))
            .group_by(Notification.channel)
        )
    ).all()
    seen = {channel: (count, oldest) for channel, count, oldest in rows}
    for channel in CHANNELS:
        count, oldest = seen.get(channel, (0, None))
        metrics.OUTBOX_DEPTH.labels(channel).set(count)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.timezone.utc)
        metrics.OUTBOX_AGE.labels(channel).set((now - oldest).total_seconds() if oldest else 0)
