"""The complaint department's views: the overdue queue, partner scorecards, deliveries."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict

from pydantic import BaseModel, Field
from sqlalchemy import and_, case as sql_case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.models import Notification
from partners.models import Partner
from tracker.errors import NotFound, Unprocessable
from tracker.models import Case, Event, Handoff, Party


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


class OverdueList(BaseModel):
    items: list[OverdueItem]
    next_cursor: str | None


async def overdue(
    *,
    session: AsyncSession,
    partner: str | None = None,
    state: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> OverdueList:
    """Late and escalated parties of open cases: escalated first, then most overdue first."""
    query = (
        select(Party, Case.ref, Case.title, Partner.name)
        .join(Case, Case.id == Party.case_id)
        .join(Partner, Partner.id == Party.partner_id)
        .where(Party.state.in_(("late", "escalated")), Case.closed_at.is_(None))
        .order_by(sql_case((Party.state == "escalated", 0), else_=1), Party.overdue_since, Party.id)
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
        )
        for party, ref, title, name in rows[:limit]
    ]
    return OverdueList(items=items, next_cursor=str(offset + limit) if len(rows) > limit else None)


# ------------------------------------------------------------------ scorecards


class Percentiles(BaseModel):
    p50: float | None = Field(description="Seconds.")
    p90: float | None = Field(description="Seconds.")
    count: int


class Scorecard(BaseModel):
    partner: str
    name: str
    window_days: int
    since: dt.datetime
    until: dt.datetime
    updates: int
    time_to_first_update: Percentiles
    median_update_interval_seconds: float | None
    on_time_rate: float | None = Field(description="Share of updates that arrived before they were due.")
    late_episodes: int
    escalated_episodes: int
    nudges: int
    handoff_acceptance: Percentiles
    currently_overdue: int
    satisfaction: dict[str, int] = Field(description="Closed cases the partner was party to, by customer verdict.")


def _percentiles(values: list[float]) -> Percentiles:
    if not values:
        return Percentiles(p50=None, p90=None, count=0)
    ordered = sorted(values)
    return Percentiles(p50=_quantile(ordered, 0.5), p90=_quantile(ordered, 0.9), count=len(ordered))


def _quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (the "exclusive" method's usual textbook cousin)."""
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def scorecard(*, session: AsyncSession, partner_id: str, days: int, now: dt.datetime) -> Scorecard:
    """Responsiveness over the last ``days`` days, computed from the timeline itself.

    1. Time to first update: for each party that joined in the window, from joining to its first
       update on that case.
    2. Update interval: between consecutive updates of the partner on the same case.
    3. On-time rate: updates that did not end a late or escalated episode, over all updates.
    4. Episodes: ``party.late`` and ``party.escalated`` events; nudges: ``party.nudged``.
    5. Handoff acceptance: from request to acceptance, for handoffs to the partner.
    """
    if not 1 <= days <= 366:
        raise Unprocessable("days must be between 1 and 366.")
    partner = await session.get(Partner, partner_id)
    if partner is None:
        raise NotFound(f"No partner {partner_id!r}.")
    since = now - dt.timedelta(days=days)
    kinds = ("update", "party.late", "party.escalated", "party.back_on_track", "party.nudged")
    rows = (
        await session.execute(
            select(Event.case_id, Event.type, Event.received_at)
            .where(Event.partner_id == partner_id, Event.type.in_(kinds), Event.received_at >= since)
            .order_by(Event.case_id, Event.received_at)
        )
    ).all()
    counts: dict[str, int] = defaultdict(int)
    updates_by_case: dict[int, list[dt.datetime]] = defaultdict(list)
    for case_id, kind, at in rows:
        counts[kind] += 1
        if kind == "update":
            updates_by_case[case_id].append(at)
    intervals = [
        (b - a).total_seconds() for stamps in updates_by_case.values() for a, b in zip(stamps, stamps[1:])
    ]

    joined = (
        await session.execute(
            select(Party.case_id, Party.joined_at).where(Party.partner_id == partner_id, Party.joined_at >= since)
        )
    ).all()
    first_updates = dict(
        (
            await session.execute(
                select(Event.case_id, func.min(Event.received_at))
                .where(Event.partner_id == partner_id, Event.type == "update",
                       Event.case_id.in_([case_id for case_id, _ in joined] or [-1]))
                .group_by(Event.case_id)
            )
        ).all()
    )
    to_first = [
        (first_updates[case_id] - joined_at).total_seconds()
        for case_id, joined_at in joined
        if case_id in first_updates
    ]

    handoffs = (
        await session.execute(
            select(Handoff.requested_at, Handoff.accepted_at).where(
                Handoff.to_partner_id == partner_id, Handoff.accepted_at.is_not(None), Handoff.requested_at >= since
            )
        )
    ).all()
    acceptance = [(accepted - requested).total_seconds() for requested, accepted in handoffs]

    overdue_now = await session.scalar(
        select(func.count())
        .select_from(Party)
        .join(Case, Case.id == Party.case_id)
        .where(Party.partner_id == partner_id, Party.state.in_(("late", "escalated")), Case.closed_at.is_(None))
    )
    verdicts = (
        await session.execute(
            select(Case.satisfaction, func.count())
            .join(Party, and_(Party.case_id == Case.id, Party.partner_id == partner_id))
            .where(Case.satisfaction.is_not(None), Case.satisfaction_at >= since)
            .group_by(Case.satisfaction)
        )
    ).all()
    updates = counts["update"]
    return Scorecard(
        partner=partner_id,
        name=partner.name,
        window_days=days,
        since=since,
        until=now,
        updates=updates,
        time_to_first_update=_percentiles(to_first),
        median_update_interval_seconds=statistics.median(intervals) if intervals else None,
        on_time_rate=round(1 - counts["party.back_on_track"] / updates, 4) if updates else None,
        late_episodes=counts["party.late"],
        escalated_episodes=counts["party.escalated"],
        nudges=counts["party.nudged"],
        handoff_acceptance=_percentiles(acceptance),
        currently_overdue=overdue_now or 0,
        satisfaction={verdict: n for verdict, n in verdicts},
    )


# ------------------------------------------------------------------ deliveries


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


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


def delivery_out(row: Notification, ref: str | None, *, with_content: bool = False) -> DeliveryOut:
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
        body_text=row.body_text if with_content else None,
    )


def _mask(recipient: str, channel: str) -> str:
    """Phone numbers are shown with only their last digits: enough to recognise, not to misuse."""
    if channel == "sms" and len(recipient) > 4:
        return "•" * (len(recipient) - 4) + recipient[-4:]
    return recipient


async def deliveries(
    *,
    session: AsyncSession,
    channel: str | None = None,
    state: str | None = None,
    partner: str | None = None,
    case_id: int | None = None,
    before: int | None = None,
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
    if before is not None:
        query = query.where(Notification.id < before)
    rows = (await session.execute(query)).all()
    items = [delivery_out(row, ref, with_content=with_content) for row, ref in rows[:limit]]
    return DeliveryList(items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None)



# ------------------------------------------------------------------ disputes


class DisputeItem(BaseModel):
    case: str
    title: str
    owner: str
    closed_at: dt.datetime | None
    resolution: str | None
    answered_at: dt.datetime
    comment: str | None


class DisputeList(BaseModel):
    items: list[DisputeItem]
    next_cursor: str | None


async def disputes(*, session: AsyncSession, offset: int = 0, limit: int = 50) -> DisputeList:
    """Customers who said the resolution did not satisfy them: back in front of the complaint department."""
    rows = (
        await session.scalars(
            select(Case).where(Case.satisfaction == "dissatisfied").order_by(Case.satisfaction_at.desc(), Case.id)
            .offset(offset).limit(limit + 1)
        )
    ).all()
    items = [
        DisputeItem(case=c.ref, title=c.title, owner=c.owner_id, closed_at=c.closed_at, resolution=c.resolution,
                    answered_at=c.satisfaction_at or c.updated_at, comment=c.satisfaction_comment)
        for c in rows[:limit]
    ]
    return DisputeList(items=items, next_cursor=str(offset + limit) if len(rows) > limit else None)
