"""Disputes: which customers said the resolution of their case did not satisfy them.

For the complaint department's agents (``GET /v1/disputes``): the resolved cases whose customer
answered "dissatisfied" on the status page, newest answer first, so that each comes back in front
of a person instead of staying closed. A sandbox case's "customer" is the partner practising
(``tracker.onboarding``): those answers are left out.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tracker.models import Case
from kernel.pagination import Page, decode_cursor, encode_cursor


class DisputeItem(BaseModel):
    case: str
    title: str
    owner: str
    closed_at: dt.datetime | None
    resolution: str | None
    answered_at: dt.datetime
    comment: str | None


class DisputeList(Page[DisputeItem]):
    """One page; pass ``next_cursor`` back as ``cursor`` for the next."""


async def disputes(*, session: AsyncSession, cursor: str | None = None, limit: int = 50) -> DisputeList:
    """Customers who said the resolution did not satisfy them: back in front of the complaint department."""
    offset = decode_cursor(cursor) or 0
    rows = (
        await session.scalars(
            select(Case).where(Case.satisfaction == "dissatisfied", Case.sandbox.is_(False))
            .order_by(Case.satisfaction_at.desc(), Case.id)
            .offset(offset).limit(limit + 1)
        )
    ).all()
    items = [
        DisputeItem(case=c.ref, title=c.title, owner=c.owner_id, closed_at=c.closed_at, resolution=c.resolution,
                    answered_at=c.satisfaction_at or c.updated_at, comment=c.satisfaction_comment)
        for c in rows[:limit]
    ]
    return DisputeList(items=items, next_cursor=encode_cursor(offset + limit) if len(rows) > limit else None)
