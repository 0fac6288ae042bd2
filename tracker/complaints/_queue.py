"""The overdue queue: which partners are keeping customers waiting right now, worst first.

For the complaint department's agents (``GET /v1/overdue`` and the console's queue): every late or
escalated party of an open case, escalated first, then the longest overdue first, so the top of
the list is always the next partner to chase. Sandbox cases (``tracker.onboarding``) are left out.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field
from sqlalchemy import case as sql_case, select
from sqlalchemy.ext.asyncio import AsyncSession

from partners.models import Partner
from kernel.pagination import Page, decode_cursor, encode_cursor
from tracker.models import Case, Party
from tracker.parties import OVERDUE, PartyState


class OverdueItem(BaseModel):
    case: str
    title: str
    partner: str
    partner_name: str
    role: str
    state: str
    overdue_since: dt.datetime
    escalated_at: dt.datetime | None
    reminders_sent: int
    last_update_at: dt.datetime | None
    last_nudged_at: dt.datetime | None
    customer_told: bool = Field(description="The customer was told we are waiting on this partner.")
    ladder_level: int = Field(default=0, description="Levels of its escalation ladder fired so far.")
    acked_until: dt.datetime | None = Field(default=None, description="Acknowledged: its ladder waits until then.")
    ack_reason: str | None = None


class OverdueList(Page[OverdueItem]):
    """One page; pass ``next_cursor`` back as ``cursor`` for the next."""


async def overdue(
    *,
    session: AsyncSession,
    partner: str | None = None,
    state: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> OverdueList:
    """Late and escalated parties of open cases: escalated first, then most overdue first."""
    offset = decode_cursor(cursor) or 0
    query = (
        select(Party, Case.ref, Case.title, Partner.name)
        .join(Case, Case.id == Party.case_id)
        .join(Partner, Partner.id == Party.partner_id)
        .where(Party.state.in_(OVERDUE), Case.closed_at.is_(None), Case.sandbox.is_(False))
        .order_by(sql_case((Party.state == PartyState.ESCALATED, 0), else_=1), Party.overdue_since, Party.id)
        .offset(offset)
        .limit(limit + 1)
    )
    if partner:
        query = query.where(Party.partner_id == partner)
    if state:
        query = query.where(Party.state == state)
    rows = (await session.execute(query)).all()
    items = [
        OverdueItem(
            case=ref,
            title=title,
            partner=party.partner_id,
            partner_name=name,
            role=party.role,
            state=party.state,
            overdue_since=party.overdue_since or party.watch_at,
            escalated_at=party.escalated_at,
            reminders_sent=party.reminders_sent,
            last_update_at=party.last_update_at,
            last_nudged_at=party.last_nudged_at,
            customer_told=party.customer_told_at is not None,
            ladder_level=party.ladder_level,
            acked_until=party.acked_until,
            ack_reason=party.ack_reason,
        )
        for party, ref, title, name in rows[:limit]
    ]
    return OverdueList(items=items, next_cursor=encode_cursor(offset + limit) if len(rows) > limit else None)
