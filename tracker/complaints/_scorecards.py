"""Scorecards: how responsive each partner has been, measured from the timeline itself.

For the complaint department comparing partners (the console's league of every partner, and one
partner's page with its charts) and for a partner reading its own record
(``GET /v1/partners/{id}/scorecard``): time to first update, update intervals, on-time rate,
late and escalated episodes, nudges, handoff acceptance and customer verdicts over a window of
days. ``activity`` cuts the same events into buckets over time for the charts.

Sandbox cases (``tracker.onboarding``: a new partner's practice case) count nowhere: every query
keeps to cases with ``Case.sandbox`` false.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Sequence

from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.clock import as_utc
from kernel.errors import NotFound, Unprocessable
from partners.models import Partner
from tracker.models import Case, Delivery, DueMoment, Event, Handoff, Party
from tracker.parties import OVERDUE


class Percentiles(BaseModel):
    p50: float | None = Field(description="Seconds.")
    p90: float | None = Field(description="Seconds.")
    count: int


class Promises(BaseModel):
    """Promises a partner made in the window (``next_update_by`` or ``eta`` on its updates) and how they went."""

    made: int
    kept: int
    broken: int
    pending: int = Field(description="Not due yet, and not kept yet.")
    kept_rate: float | None = Field(description="kept / (kept + broken); null when none is settled.")


class Scorecard(BaseModel):
    partner: str
    name: str
    window_days: int
    since: dt.datetime
    until: dt.datetime
    updates: int
    time_to_first_update: Percentiles
    median_update_interval_seconds: float | None
    on_time_rate: float | None = Field(
        description="Due moments met / due moments: each time an update was due from the partner, settled in the "
                    "window, met when the update came by then, missed when the watchdog found it late (an "
                    "unaccepted handoff included). Never 100 % beside a late episode.")
    due_moments: int = 0
    due_met: int = 0
    custody_hours: float = Field(
        default=0.0, description="Hours in the window the partner held items: from joining responsible or accepting "
                                 "a handoff, to handing on, release, delivery or the case's end.")
    late_episodes: int
    escalated_episodes: int
    nudges: int
    handoff_acceptance: Percentiles
    currently_overdue: int
    satisfaction: dict[str, int] = Field(description="Closed cases the partner was party to, by customer verdict.")
    next_update_promises: Promises = Field(
        description="An update's next_update_by is kept when the partner updates the case again by then.")
    eta_promises: Promises = Field(
        description="An update's eta is kept when the item reaches the customer by then (proof of delivery, or "
                    "the case closed as delivered).")


class ActivityBucket(BaseModel):
    start: dt.datetime
    end: dt.datetime
    updates: int
    late_episodes: int
    escalated_episodes: int
    nudges: int
    median_update_interval_seconds: float | None


class IntervalBin(BaseModel):
    label: str
    upto_seconds: float | None = Field(description="Upper bound (exclusive); null for the open last bin.")
    count: int


class Activity(BaseModel):
    partner: str
    bucket_days: int
    buckets: list[ActivityBucket]
    update_intervals: list[IntervalBin]


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
    """Responsiveness of one partner over the last ``days`` days (see ``scorecards``)."""
    cards = await scorecards(session=session, partner_ids=[partner_id], days=days, now=now)
    if not cards:
        raise NotFound(f"No partner {partner_id!r}.")
    return cards[0]


async def scorecards(
    *, session: AsyncSession, partner_ids: Sequence[str] | None, days: int, now: dt.datetime
) -> list[Scorecard]:
    """Responsiveness over the last ``days`` days, computed from the timeline itself, for several
    partners at once (``None``: every partner) in a fixed number of queries, ordered by partner id.

    1. Time to first update: for each party that joined in the window, from joining to its first
       update on that case.
    2. Update interval: between consecutive updates of the partner on the same case.
    3. On-time rate: due moments met over due moments settled in the window (``due_moments``:
       written when a party updates before its due time, and when the watchdog finds it late).
    4. Episodes: ``party.late`` and ``party.escalated`` events; nudges: ``party.nudged``.
    5. Handoff acceptance: from request to acceptance, for handoffs to the partner.
    6. Promises: each ``next_update_by`` and ``eta`` the partner's updates made in the window,
       settled as kept, broken (its time passed first) or pending (``_promises``).
    """
    if not 1 <= days <= 366:
        raise Unprocessable("days must be between 1 and 366.")
    since = now - dt.timedelta(days=days)
    query = select(Partner.id, Partner.name).order_by(Partner.id)
    if partner_ids is not None:
        query = query.where(Partner.id.in_(list(partner_ids) or [""]))
    names = dict((await session.execute(query)).all())
    if not names:
        return []
    ids = list(names)

    counts: dict[str, dict[str, int]] = {pid: defaultdict(int) for pid in ids}
    intervals: dict[str, list[float]] = {pid: [] for pid in ids}
    updates_at: dict[tuple[str, int], list[dt.datetime]] = defaultdict(list)  # (partner, case) -> times, in order
    for pid, events in (await _partner_events(session, ids, since, now)).items():
        for case_id, kind, at in events:
            counts[pid][kind] += 1
            if kind == "update":
                updates_at[(pid, case_id)].append(as_utc(at))
        intervals[pid] = [seconds for _, seconds in _update_intervals(events)]

    # Parties that joined in the window, with their first update on that case, in one query. A
    # partner updates a case only once it is a party, so its first update is in the window too,
    # and the indexed (partner, type, time) range finds them all.
    first_update = (
        select(Event.case_id, Event.partner_id, func.min(Event.received_at).label("at"))
        .where(Event.partner_id.in_(ids), Event.type == "update", Event.received_at >= since, Event.received_at <= now)
        .group_by(Event.case_id, Event.partner_id)
        .subquery()
    )
    to_first: dict[str, list[float]] = defaultdict(list)
    joined = await session.execute(
        select(Party.partner_id, Party.joined_at, first_update.c.at)
        .join(first_update, (first_update.c.case_id == Party.case_id) & (first_update.c.partner_id == Party.partner_id))
        .join(Case, Case.id == Party.case_id)
        .where(Party.partner_id.in_(ids), Party.joined_at >= since, Party.joined_at <= now,
               Case.sandbox.is_(False))
    )
    for pid, joined_at, first in joined.all():
        to_first[pid].append((as_utc(first) - joined_at).total_seconds())

    acceptance: dict[str, list[float]] = defaultdict(list)
    handoffs = await session.execute(
        select(Handoff.to_partner_id, Handoff.requested_at, Handoff.accepted_at)
        .join(Case, Case.id == Handoff.case_id)
        .where(Handoff.to_partner_id.in_(ids), Handoff.accepted_at.is_not(None), Handoff.requested_at >= since,
               Handoff.accepted_at <= now,
               Case.sandbox.is_(False))
    )
    for pid, requested, accepted in handoffs.all():
        if accepted is not None:
            acceptance[pid].append((accepted - requested).total_seconds())

    overdue_now = dict(
        (
            await session.execute(
                select(Party.partner_id, func.count())
                .join(Case, Case.id == Party.case_id)
                .where(Party.partner_id.in_(ids), Party.state.in_(OVERDUE), Case.closed_at.is_(None),
                       Case.sandbox.is_(False))
                .group_by(Party.partner_id)
            )
        ).all()
    )
    verdicts: dict[str, dict[str, int]] = defaultdict(dict)
    rows = await session.execute(
        select(Party.partner_id, Case.satisfaction, func.count())
        .join(Party, Party.case_id == Case.id)
        .where(Party.partner_id.in_(ids), Case.satisfaction.is_not(None), Case.satisfaction_at >= since,
               Case.satisfaction_at <= now,
               Case.sandbox.is_(False))
        .group_by(Party.partner_id, Case.satisfaction)
    )
    for pid, verdict, n in rows.all():
        if verdict is not None:
            verdicts[pid][verdict] = n

    promises = await _promises(session, ids, since, now, updates_at)
    due: dict[str, dict[bool, int]] = defaultdict(lambda: {True: 0, False: 0})
    for pid, met, n in (await session.execute(
        select(DueMoment.partner_id, DueMoment.met, func.count())
        .join(Case, Case.id == DueMoment.case_id)
        .where(DueMoment.partner_id.in_(ids), DueMoment.resolved_at >= since,
               DueMoment.resolved_at <= now, Case.sandbox.is_(False))
        .group_by(DueMoment.partner_id, DueMoment.met)
    )).all():
        due[pid][bool(met)] = n
    custody = await _custody_hours(session, ids, since, now)

    cards = []
    for pid in ids:
        updates = counts[pid]["update"]
        cards.append(
            Scorecard(
                partner=pid,
                name=names[pid],
                window_days=days,
                since=since,
                until=now,
                updates=updates,
                time_to_first_update=_percentiles(to_first[pid]),
                median_update_interval_seconds=statistics.median(intervals[pid]) if intervals[pid] else None,
                on_time_rate=_rate(due[pid][True], due[pid][True] + due[pid][False]),
                due_moments=due[pid][True] + due[pid][False],
                due_met=due[pid][True],
                custody_hours=custody.get(pid, 0.0),
                late_episodes=counts[pid]["party.late"],
                escalated_episodes=counts[pid]["party.escalated"],
                nudges=counts[pid]["party.nudged"],
                handoff_acceptance=_percentiles(acceptance[pid]),
                currently_overdue=overdue_now.get(pid, 0),
                satisfaction=verdicts[pid],
                next_update_promises=promises[pid]["next_update_by"],
                eta_promises=promises[pid]["eta"],
            )
        )
    return cards


async def _promises(
    session: AsyncSession, partner_ids: list[str], since: dt.datetime, now: dt.datetime,
    updates_at: dict[tuple[str, int], list[dt.datetime]],
) -> dict[str, dict[str, Promises]]:
    """Step 6: every promise made in the window, settled against what happened next.

    ``next_update_by`` T is kept by the partner's next update on the same case at or before T;
    ``eta`` E is kept when the item reached the customer at or before E: the proof of delivery
    (``deliveries.delivered_at``) or the case closed with the ``delivered`` status. A promise whose
    time has not come and that is not kept yet is pending; one whose time passed, broken.
    """
    # Only the updates that promised something are read whole; every update's time is already in
    # ``updates_at`` (the scorecard's one pass over the partner's events).
    rows = (await session.execute(
        select(Event.partner_id, Event.case_id, Event.received_at, Event.body)
        .join(Case, Case.id == Event.case_id)
        .where(Event.partner_id.in_(partner_ids), Event.type == "update", Event.received_at >= since,
               Event.received_at <= now,
               Case.sandbox.is_(False),
               or_(Event.body["next_update_by"].as_string().is_not(None),
                   Event.body["eta"].as_string().is_not(None)))
        .order_by(Event.partner_id, Event.case_id, Event.received_at)
    )).all()
    case_ids = {case_id for _, case_id, _, _ in rows}
    arrived: dict[int, dt.datetime] = {}
    if case_ids:
        for case_id, at in (await session.execute(
            select(Delivery.case_id, Delivery.delivered_at)
            .where(Delivery.case_id.in_(case_ids), Delivery.delivered_at.is_not(None))
        )).all():
            arrived[case_id] = as_utc(at)
        for case_id, at in (await session.execute(
            select(Case.id, Case.closed_at)
            .where(Case.id.in_(case_ids), Case.status == "delivered", Case.closed_at.is_not(None))
        )).all():
            arrived[case_id] = min(arrived.get(case_id, as_utc(at)), as_utc(at))
    tally = {pid: {"next_update_by": [0, 0, 0], "eta": [0, 0, 0]} for pid in partner_ids}  # kept, broken, pending
    for pid, case_id, at, body in rows:
        for field in ("next_update_by", "eta"):
            raw = (body or {}).get(field)
            if not isinstance(raw, str):
                continue
            try:
                due = as_utc(dt.datetime.fromisoformat(raw.replace("Z", "+00:00")))
            except ValueError:
                continue
            if field == "next_update_by":
                later = [t for t in updates_at[(pid, case_id)] if as_utc(at) < t]
                kept = bool(later) and later[0] <= due
            else:
                kept = case_id in arrived and arrived[case_id] <= due
            index = 0 if kept else (1 if due <= now else 2)
            tally[pid][field][index] += 1
    return {pid: {field: _settled(*counts) for field, counts in fields.items()} for pid, fields in tally.items()}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def _custody_hours(
    session: AsyncSession, partner_ids: list[str], since: dt.datetime, now: dt.datetime
) -> dict[str, float]:
    """Step 7: hours each partner held items within the window.

    A party holds the item from when it joined responsible (or joined and later handed the item on
    before receiving any) or accepted a handoff, until it handed it on (an accepted handoff from
    it), was released, the item was delivered, or the case closed; else until now.
    """
    parties_rows = (await session.execute(
        select(Party.case_id, Party.partner_id, Party.responsible, Party.joined_at, Party.released_at,
               Case.closed_at, Case.delivered_at)
        .join(Case, Case.id == Party.case_id)
        .where(Party.partner_id.in_(partner_ids), Case.sandbox.is_(False),
               or_(Case.closed_at.is_(None), Case.closed_at >= since))
    )).all()
    case_ids = {row.case_id for row in parties_rows}
    handoffs: dict[int, list[tuple[dt.datetime, str | None, str]]] = defaultdict(list)
    if case_ids:
        for case_id, at, giver, taker in (await session.execute(
            select(Handoff.case_id, Handoff.accepted_at, Handoff.from_partner_id, Handoff.to_partner_id)
            .where(Handoff.case_id.in_(case_ids), Handoff.accepted_at.is_not(None))
            .order_by(Handoff.accepted_at)
        )).all():
            handoffs[case_id].append((as_utc(at), giver, taker))
    hours: dict[str, float] = defaultdict(float)
    for row in parties_rows:
        moves = handoffs[row.case_id]
        starts = [at for at, _, taker in moves if taker == row.partner_id]
        gave = [at for at, giver, _ in moves if giver == row.partner_id]
        # Held from joining: it handed the item on before any came to it, or it is responsible and
        # none ever came to it (one that became responsible by accepting a handoff held it from then).
        if (gave and (not starts or min(gave) < min(starts))) or (row.responsible and not starts):
            starts.insert(0, as_utc(row.joined_at))
        ends = [as_utc(t) for t in (row.released_at, row.closed_at, row.delivered_at) if t is not None]
        for start in starts:
            end = min([at for at in gave if at > start] + ends + [now])
            held = (min(end, now) - max(start, since)).total_seconds()
            if held > 0:
                hours[row.partner_id] += held / 3600
    return {pid: round(value, 2) for pid, value in hours.items()}


def _settled(kept: int, broken: int, pending: int) -> Promises:
    settled = kept + broken
    return Promises(made=kept + broken + pending, kept=kept, broken=broken, pending=pending,
                    kept_rate=round(kept / settled, 4) if settled else None)


_SCORED_KINDS = ("update", "party.late", "party.escalated", "party.back_on_track", "party.nudged")
# (case_id, event type, received_at) of one partner, ordered by case then time.
_PartnerEvent = tuple[int, str, dt.datetime]


async def _partner_events(
    session: AsyncSession, partner_ids: list[str], since: dt.datetime, until: dt.datetime
) -> dict[str, list[_PartnerEvent]]:
    """The events a scorecard counts, per partner (one indexed query for all of them)."""
    rows = await session.execute(
        select(Event.partner_id, Event.case_id, Event.type, Event.received_at)
        .join(Case, Case.id == Event.case_id)
        .where(Event.partner_id.in_(partner_ids), Event.type.in_(_SCORED_KINDS), Event.received_at >= since,
               Event.received_at <= until,
               Case.sandbox.is_(False))
        .order_by(Event.partner_id, Event.case_id, Event.received_at)
    )
    by_partner: dict[str, list[_PartnerEvent]] = defaultdict(list)
    for pid, case_id, kind, at in rows.all():
        if pid is not None:
            by_partner[pid].append((case_id, kind, at))
    return by_partner


def _update_intervals(events: list[_PartnerEvent]) -> list[tuple[dt.datetime, float]]:
    """(time of the later update, seconds since the previous one) for consecutive updates on a case."""
    out = []
    previous: dict[int, dt.datetime] = {}
    for case_id, kind, at in events:
        if kind != "update":
            continue
        if case_id in previous:
            out.append((at, (at - previous[case_id]).total_seconds()))
        previous[case_id] = at
    return out


# How long partners leave between updates on a case, in bins that match typical cadences.
INTERVAL_BINS: tuple[tuple[str, float | None], ...] = (
    ("under 1 h", 3600.0),
    ("1-3 h", 3 * 3600.0),
    ("3-6 h", 6 * 3600.0),
    ("6-12 h", 12 * 3600.0),
    ("12-24 h", 24 * 3600.0),
    ("over 24 h", None),
)


async def activity(*, session: AsyncSession, partner_id: str, days: int, now: dt.datetime) -> Activity:
    """A partner's updates, late and escalated episodes and nudges over time, for the scorecard's charts.

    The window is cut into buckets of a day (windows up to two weeks) or a week, counted back from
    ``now``, so the last bucket always ends now; the first may be shorter. Counts come from the
    same events as the scorecard's; an update interval falls in the bucket of its later update.
    """
    if not 1 <= days <= 366:
        raise Unprocessable("days must be between 1 and 366.")
    if await session.get(Partner, partner_id) is None:
        raise NotFound(f"No partner {partner_id!r}.")
    since = now - dt.timedelta(days=days)
    size = dt.timedelta(days=1 if days <= 14 else 7)
    n = -(-dt.timedelta(days=days) // size)
    edges = [max(since, now - size * (n - i)) for i in range(n)] + [now]
    events = (await _partner_events(session, [partner_id], since, now)).get(partner_id, [])

    def bucket_of(at: dt.datetime) -> int:
        return max(0, min(n - 1, n - 1 - int((now - at) // size)))

    counts: list[defaultdict[str, int]] = [defaultdict(int) for _ in range(n)]
    for _, kind, at in events:
        counts[bucket_of(at)][kind] += 1
    gaps: list[list[float]] = [[] for _ in range(n)]
    intervals = _update_intervals(events)
    for at, seconds in intervals:
        gaps[bucket_of(at)].append(seconds)
    bins = [0] * len(INTERVAL_BINS)
    for _, seconds in intervals:
        bins[next(i for i, (_, upto) in enumerate(INTERVAL_BINS) if upto is None or seconds < upto)] += 1
    return Activity(
        partner=partner_id,
        bucket_days=size.days,
        buckets=[
            ActivityBucket(
                start=edges[i],
                end=edges[i + 1],
                updates=counts[i]["update"],
                late_episodes=counts[i]["party.late"],
                escalated_episodes=counts[i]["party.escalated"],
                nudges=counts[i]["party.nudged"],
                median_update_interval_seconds=statistics.median(gaps[i]) if gaps[i] else None,
            )
            for i in range(n)
        ],
        update_intervals=[
            IntervalBin(label=label, upto_seconds=upto, count=bins[i]) for i, (label, upto) in enumerate(INTERVAL_BINS)
        ],
    )
