"""Rights and deadlines: what the customer is owed and by when, computed per case from rules as data.

A case type's ``rules`` (``tracker.casetypes``), each::

    {"code", "kind", "from", "fallback", "within", "remind_before", "applies", "labels", "how"}

    kind      filing    the customer must act by the date (a written complaint, legal action)
              lost      the item counts as lost if not delivered by the date
              refund    a fee is owed back if the item is not delivered by the date (US DOT)
    from      what the date counts from: "opened", "delivered" (the proof of delivery, or the case
              closed as delivered), "arrived" (the itinerary's arrival), or "status:<code>" (the
              first update setting that status); ``fallback`` when that has not happened or is unknown
    within    "P7D", "P2Y" (calendar days and years: to the end of that day in the customer's time
              zone, as a legal deadline is read, never business time), or "PT12H" (exact hours)
    applies   conditions on the case's itinerary: {"international": bool,
              "longest_flight_hours_at_most": n, "longest_flight_hours_over": n}; a rule with
              conditions needs an itinerary
    labels, how   the customer's words per locale (falling back as every label does)

1. ``rights_of`` lists each rule that applies to a case with its date and its state now:
   ``waiting`` (what it counts from has not happened), ``open`` (the date is ahead), ``passed``,
   ``met`` (delivered in time: nothing is lost or owed), ``due`` (a refund is owed).
2. ``refresh`` keeps one ``case_deadlines`` row per dated rule, whenever what rules count from
   changes (opening, delivery): the watchdog's index of what is due when.
3. ``sweep_batch`` (the watchdog) reminds the customer before each filing deadline
   (``remind_before``: 2 days before the 7-day one, 3 before the 21-day one) and fires a refund
   that became due: ``case.refund_due`` on the timeline, a webhook to the owner, the customer told.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.db import settings_of, skip_locked
from kernel.errors import Forbidden
from kernel.locales import LOCALES
from tracker import announce
from tracker.access import load_case
from tracker.casetypes import CaseTypeDef, case_type
from tracker.customer import notify_customer
from tracker.models import Case, CaseDeadline, Event
from tracker.principals import Principal
from tracker.timeline import append_event

State = Literal["waiting", "open", "passed", "met", "due"]
_WITHIN = re.compile(r"^P(?:(?P<years>\d+)Y)?(?:(?P<days>\d+)D)?(?:T(?P<hours>\d+)H)?$")


class RightOut(BaseModel):
    code: str
    kind: Literal["filing", "lost", "refund"]
    label: str
    how: str
    counts_from: str = Field(description="What the date counts from (opened, delivered, arrived, status:<code>).")
    due_at: dt.datetime | None = Field(description="The exclusive end: the right must be used before it.")
    due_date: dt.date | None = Field(description="The last day, in the customer's time zone (calendar rules).")
    state: State


class CapOut(BaseModel):
    amount: str
    currency: str
    label: str
    converted: dict[str, str] = Field(default_factory=dict, description="At the configured rates (BATON_SDR_RATES).")


class RightsOut(BaseModel):
    items: list[RightOut]
    liability_cap: CapOut | None = None


@dataclass(frozen=True, slots=True)
class Anchors:
    """The moments rules count from, for one case."""

    opened: dt.datetime
    delivered: dt.datetime | None
    arrived: dt.datetime | None
    statuses: dict[str, dt.datetime]
    deadline: dt.datetime | None = None  # the case type's deadline, when the watchdog moves the case

    def get(self, name: str | None) -> dt.datetime | None:
        if name is None:
            return None
        if name.startswith("status:"):
            return self.statuses.get(name.partition(":")[2])
        return {"opened": self.opened, "delivered": self.delivered, "arrived": self.arrived}.get(name)


def applies(rule: dict[str, Any], itinerary: dict[str, Any] | None) -> bool:
    """Whether a rule's conditions hold for a case's itinerary (a rule with conditions needs one)."""
    conditions = rule.get("applies") or {}
    if not conditions:
        return True
    if not itinerary:
        return False
    if "international" in conditions and bool(itinerary.get("international")) != conditions["international"]:
        return False
    hours = float(itinerary.get("longest_flight_hours") or 0)
    if "longest_flight_hours_at_most" in conditions and hours > conditions["longest_flight_hours_at_most"]:
        return False
    return not ("longest_flight_hours_over" in conditions and hours <= conditions["longest_flight_hours_over"])


def due(rule: dict[str, Any], start: dt.datetime, zone: ZoneInfo) -> tuple[dt.datetime, dt.date | None]:
    """The rule's exclusive end after ``start``, and its last day in ``zone`` for a calendar rule.

    "P7D": the local date of ``start`` plus seven days is the last day; the end is the next local
    midnight (a deadline is read by the calendar where the customer is, not by business hours).
    "PT12H": exactly twelve hours later.
    """
    match = _WITHIN.match(rule["within"])
    if match is None:
        raise ValueError(f"rule {rule['code']}: 'within' must look like P7D, P2Y or PT12H")
    years, days, hours = (int(match.group(g) or 0) for g in ("years", "days", "hours"))
    if hours and not (years or days):
        return start + dt.timedelta(hours=hours), None
    local = start.astimezone(zone).date()
    last = _add_years(local, years) + dt.timedelta(days=days)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), zone).astimezone(dt.UTC)
    return end, last


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February, in a year without one
        return day.replace(year=day.year + years, day=28)


def _zone(case: Case) -> ZoneInfo:
    try:
        return ZoneInfo(case.customer_timezone or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


async def anchors(session: AsyncSession, case: Case, ctype: CaseTypeDef) -> Anchors:
    wanted = {r["from"].partition(":")[2] for r in ctype.rules if str(r.get("from", "")).startswith("status:")}
    statuses: dict[str, dt.datetime] = {}
    if wanted:
        rows = await session.execute(
            select(Event.body, Event.occurred_at).where(Event.case_id == case.id, Event.type == "update")
            .order_by(Event.seq)
        )
        for body, at in rows.all():
            status = (body or {}).get("status")
            if status in wanted and status not in statuses:
                statuses[status] = at
    arrived = None
    raw = (case.itinerary or {}).get("arrived_at")
    if raw:
        arrived = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return Anchors(opened=case.opened_at, delivered=case.delivered_at, arrived=arrived, statuses=statuses,
                   deadline=case.deadline_at)


def evaluate(rule: dict[str, Any], found: Anchors, *, zone: ZoneInfo, now: dt.datetime
             ) -> tuple[State, dt.datetime | None, dt.date | None]:
    start = found.get(rule["from"]) or found.get(rule.get("fallback"))
    if start is None:
        return "waiting", None, None
    end, last = due(rule, start, zone)
    if rule["kind"] == "lost" and found.deadline is not None:
        # The moment the watchdog declares the item lost (the case type's deadline), to the minute:
        # the page must not say "by the end of the day" when the case moves at 14:05.
        end, last = found.deadline, None
    delivered = found.delivered
    if rule["kind"] in ("lost", "refund"):
        if delivered is not None and delivered < end:
            return "met", end, last
        if now >= end:
            return ("passed" if rule["kind"] == "lost" else "due"), end, last
        return "open", end, last
    return ("passed" if now >= end else "open"), end, last


async def rights_of(*, session: AsyncSession, case: Case, now: dt.datetime, locale: str | None = None) -> RightsOut:
    """Step 1: each rule that applies, dated in the customer's time zone, in their words."""
    ctype = await case_type(session=session, code=case.type)
    tag = locale or case.customer_locale
    found = await anchors(session, case, ctype)
    zone = _zone(case)
    items = []
    for rule in ctype.rules:
        if not applies(rule, case.itinerary):
            continue
        state, end, last = evaluate(rule, found, zone=zone, now=now)
        items.append(RightOut(
            code=rule["code"], kind=rule["kind"], label=LOCALES.label(rule.get("labels", {}), tag, missing=rule["code"]),
            how=LOCALES.label(rule.get("how", {}), tag, missing=""), counts_from=rule["from"], due_at=end,
            due_date=last, state=state,
        ))
    return RightsOut(items=items, liability_cap=_cap(ctype, tag, settings_of(session).sdr_rates))


def _cap(ctype: CaseTypeDef, tag: str | None, rates: tuple[str, ...]) -> CapOut | None:
    cap = ctype.liability_cap
    if not cap:
        return None
    amount = Decimal(cap["amount"])
    converted = {}
    for pair in rates:
        currency, _, rate = pair.partition("=")
        converted[currency] = str((amount * Decimal(rate)).quantize(Decimal("1")))
    return CapOut(amount=cap["amount"], currency=cap["currency"],
                  label=LOCALES.label(cap.get("labels", {}), tag, missing=""), converted=converted)


async def read_rights(*, session: AsyncSession, principal: Principal, ref: str, now: dt.datetime) -> RightsOut:
    """``GET /v1/cases/{ref}/rights``: staff and the owner partner."""
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    if not principal.is_staff and principal.partner_id != case.owner_id:
        raise Forbidden("Only staff and the owner partner read a case's rights.")
    return await rights_of(session=session, case=case, now=now)


# ---------------------------------------------------------------- step 2: the watchdog's index


async def refresh(*, session: AsyncSession, case: Case, now: dt.datetime) -> None:
    """Keep one ``case_deadlines`` row per dated rule of the case (call when what rules count from changes)."""
    ctype = await case_type(session=session, code=case.type)
    found = await anchors(session, case, ctype)
    zone = _zone(case)
    existing = {row.code: row for row in (await session.scalars(
        select(CaseDeadline).where(CaseDeadline.case_id == case.id))).all()}
    for rule in ctype.rules:
        if rule["kind"] not in ("filing", "refund") or not applies(rule, case.itinerary):
            continue
        start = found.get(rule["from"]) or found.get(rule.get("fallback"))
        if start is None:
            continue
        end, _ = due(rule, start, zone)
        remind_at = None
        if rule["kind"] == "filing" and rule.get("remind_before"):
            remind_at = end - _remind(rule["remind_before"])
        row = existing.get(rule["code"])
        if row is None:
            row = CaseDeadline(case_id=case.id, code=rule["code"], kind=rule["kind"])
            session.add(row)
        elif row.due_at == end:
            continue  # unchanged: keep what the watchdog already did
        row.due_at, row.remind_at, row.reminded_at, row.fired_at = end, remind_at, None, None
        row.watch_at = _next_look(row, now)
    await session.flush()


def _remind(text: str) -> dt.timedelta:
    match = _WITHIN.match(text)
    if match is None:
        raise ValueError(f"remind_before must look like P2D, not {text!r}")
    return dt.timedelta(days=int(match.group("days") or 0), hours=int(match.group("hours") or 0))


def _next_look(row: CaseDeadline, now: dt.datetime) -> dt.datetime | None:
    if row.kind == "filing":
        # A reminder only makes sense before the deadline.
        return row.remind_at if row.remind_at is not None and row.reminded_at is None and now < row.due_at else None
    return row.due_at if row.fired_at is None else None


# ---------------------------------------------------------------- step 3: the watchdog's sweep


async def sweep_batch(session: AsyncSession, now: dt.datetime, batch: int) -> int:
    """Remind and fire what is due, up to ``batch`` rows (locked, skipped if another worker has them)."""
    query = (select(CaseDeadline, Case).join(Case, Case.id == CaseDeadline.case_id)
             .where(CaseDeadline.watch_at <= now).order_by(CaseDeadline.watch_at).limit(batch))
    rows = (await session.execute(skip_locked(session, query, of=(CaseDeadline, Case)))).all()
    for row, case in rows:
        ctype = await case_type(session=session, code=case.type)
        rule = next((r for r in ctype.rules if r["code"] == row.code), None)
        row.watch_at = None
        if rule is None or case.erased_at is not None:
            continue
        if row.kind == "filing":
            row.reminded_at = now
            if now < row.due_at:
                append_event(session=session, case=case, type="rights.reminder", actor="system", visibility="parties",
                             body={"rule": row.code, "due_at": announce.stamp(row.due_at)}, now=now)
                await notify_customer(session=session, case=case, kind="rights_reminder", now=now,
                                      trigger={"rule": row.code, "due_at": row.due_at.isoformat()})
            continue
        row.fired_at = now
        if case.delivered_at is not None and case.delivered_at < row.due_at:
            continue  # delivered in time: nothing is owed
        body = {"rule": row.code, "due_at": announce.stamp(row.due_at), "itinerary": case.itinerary}
        append_event(session=session, case=case, type="case.refund_due", actor="system", visibility="public",
                     body=body, now=now)
        await announce.webhooks(session=session, case=case, kind="case.refund_due", partner_ids=[case.owner_id],
                                now=now, data=body, dedupe_key=f"refund:{case.id}:{row.code}")
        await notify_customer(session=session, case=case, kind="refund_due", now=now, trigger={"rule": row.code})
    await session.flush()
    return len(rows)
