"""The watchdog: catches the partner that goes silent, reminds it, escalates it.

A responsible party's ``watch_at`` says when the watchdog must next look at it:

    on_track   watch_at = next_update_due  (a cadence of business time after its last update,
                                            or its own sooner ``next_update_by`` promise)
    late       watch_at = when it escalates (one more cadence, or the configured threshold)
    escalated  watch_at = NULL             (it heads the queue until it updates)

The sweep (``sweep``) touches only rows whose ``watch_at`` has passed (indexed), locks them and
their cases with ``FOR UPDATE SKIP LOCKED`` (the case row is the one lock every writer of a case
takes first; the sweep skips locked rows and never waits, so workers and requests never
deadlock), moves each party one step, and commits in batches. Every step moves ``watch_at``
forward or clears it, so running the sweep twice at the same instant changes nothing the second
time, and two workers never flag a party twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from partners.models import Partner
from tracker import announce, claims, ladders, parties, party_links, rights
from kernel.calendars import BusinessCalendar
from tracker.casetypes import case_type
from kernel.clock import Clock
from kernel.db import caches_of, skip_locked
from tracker.customer import notify_customer, reachable
from kernel.durations import format_duration
from kernel.errors import Conflict, TooManyRequests
from tracker.models import Case, DueMoment, Handoff, Party
from tracker.parties import PartyState
from tracker.timeline import append_event

_RULES_CACHE_SECONDS = 30.0  # partners' calendars and thresholds change rarely; the runtime's caches hold them
NUDGE_INTERVAL = dt.timedelta(hours=1)
OPERATOR_SIDE = ("supervisors", "account_email")  # ladder recipients on Baton's side: no update link for them


@dataclass(frozen=True, slots=True)
class PartnerRules:
    partner_id: str
    name: str
    calendar: BusinessCalendar | None
    escalate_after: dt.timedelta | None
    ladder: ladders.Ladder | None = None  # the partner's own escalation ladder, parsed once per cache fill


async def partner_rules(session: AsyncSession, partner_id: str) -> PartnerRules:
    """A partner's calendar and escalation threshold, cached briefly (they change rarely)."""
    cache = caches_of(session).partner_rules
    cached = cache.get(partner_id, max_age=_RULES_CACHE_SECONDS)
    if cached is not None:
        return cached
    row = (
        await session.execute(
            select(Partner.name, Partner.calendar, Partner.timezone, Partner.escalate_after_seconds,
                   Partner.ladder).where(
                Partner.id == partner_id
            )
        )
    ).one()
    rules = PartnerRules(
        partner_id=partner_id,
        name=row.name,
        calendar=BusinessCalendar.from_json(row.calendar, default_timezone=row.timezone),
        escalate_after=dt.timedelta(seconds=row.escalate_after_seconds) if row.escalate_after_seconds else None,
        ladder=ladders.Ladder.parse(row.ladder) if row.ladder else None,
    )
    return cache.put(partner_id, rules)


@dataclass
class SweepResult:
    late: int = 0
    escalated: int = 0
    chased: int = 0  # ladder levels past the first that neither escalated (tracker.ladders)
    handoffs_flagged: int = 0
    deadlines: int = 0
    rights: int = 0  # reminders sent and refunds fired (tracker.rights)
    claims: int = 0  # claims flagged overdue or escalated (tracker.claims)
    visited: int = 0
    touched_cases: set[int] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        """What the sweep did, by kind: the watchdog metric's labels."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("visited", "touched_cases")}

    def total(self) -> int:
        return (self.late + self.escalated + self.chased + self.handoffs_flagged + self.deadlines + self.rights
                + self.claims)


@dataclass(frozen=True, slots=True)
class WatchdogConfig:
    supervisors_email: str | None = None
    batch: int = 500
    public_base_url: str | None = None  # where the one-tap links in reminders point; none, no links


class Watchdog:
    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock, config: WatchdogConfig) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.config = config

    async def sweep(self) -> SweepResult:
        """One full sweep at the clock's current instant, in batches of ``config.batch``."""
        now = self.clock.now()
        result = SweepResult()
        for step in (self._parties_batch, self._handoffs_batch, self._deadlines_batch, self._rights_batch,
                     self._claims_batch):
            for _ in range(10_000):
                async with self.sessionmaker() as session:
                    handled = await step(session, now, result)
                    await session.commit()
                if handled < self.config.batch:
                    break
        return result

    # -------------------------------------------------------------- parties

    async def _parties_batch(self, session: AsyncSession, now: dt.datetime, result: SweepResult) -> int:
        query = (
            select(Party, Case)
            .join(Case, Case.id == Party.case_id)
            .where(Party.watch_at <= now)
            .order_by(Party.watch_at)
            .limit(self.config.batch)
        )
        rows = (await session.execute(skip_locked(session, query, of=(Party, Case)))).all()
        wanted = {party.partner_id for party, _ in rows}
        partners = {p.id: p for p in (await session.scalars(select(Partner).where(Partner.id.in_(wanted)))).all()}
        for party, case in rows:
            result.visited += 1
            await self._visit(session, party, case, partners[party.partner_id], now, result)
        await session.flush()
        return len(rows)

    async def _visit(
        self, session: AsyncSession, party: Party, case: Case, partner: Partner, now: dt.datetime, result: SweepResult
    ) -> None:
        if case.closed_at is not None or party.state in parties.UNWATCHED:
            party.watch_at = None
            return
        watching_handoff = parties.is_overdue(party)
        if not party.responsible and not watching_handoff:
            party.watch_at = None
            return
        if party.state == PartyState.ON_TRACK:
            due = party.next_update_due
            if due is None or due > now:
                party.watch_at = due
                return
            await self._late(session, case, party, partner, now, result, overdue_since=due, reason="update")
        elif parties.is_overdue(party):
            if party.acked_until is not None:
                if parties.is_acknowledged(party, now=now):
                    party.watch_at = party.acked_until
                    return
                body = {"partner": party.partner_id, "reason": party.ack_reason,
                        "until": announce.stamp(party.acked_until)}
                parties.ack_lapsed(party)
                append_event(session=session, case=case, type="party.ack_lapsed", actor="system",
                             visibility="parties", body=body, now=now, partner_id=party.partner_id)
            await self._climb(session, case, party, partner, now, result)
        else:
            party.watch_at = None
        result.touched_cases.add(case.id)

    async def _late(
        self, session: AsyncSession, case: Case, party: Party, partner: Partner, now: dt.datetime,
        result: SweepResult, *, overdue_since: dt.datetime, reason: str, handoff_id: int | None = None,
    ) -> None:
        """on_track → late: the event, the webhook, a missed due moment; then the ladder's first levels."""
        parties.mark_late(party, overdue_since=overdue_since, now=now)
        ladder, calendar = await self._ladder(session, case, party)
        body: dict[str, object] = {
            "partner": party.partner_id, "partner_name": partner.name, "role": party.role, "reason": reason,
            "overdue_since": announce.stamp(overdue_since),
            "escalates_at": announce.stamp(ladder.escalates_at(since=overdue_since, calendar=calendar)),
        }
        if handoff_id is not None:
            body["handoff"] = handoff_id
        append_event(session=session, case=case, type="party.late", actor="system", visibility="parties",
                     body=body, now=now, partner_id=party.partner_id)
        session.add(DueMoment(partner_id=party.partner_id, case_id=case.id, due_at=overdue_since, resolved_at=now,
                              met=False))
        key = f"late:{party.id}:{announce.stamp(overdue_since)}"
        await announce.webhook_to(session=session, case=case, kind="party.late", partner_id=party.partner_id,
                                  url=partner.webhook_url, now=now, data=body, dedupe_key=key)
        if handoff_id is None:
            result.late += 1  # an unaccepted handoff counts as handoffs_flagged
        await self._climb(session, case, party, partner, now, result, handoff_id=handoff_id,
                          ladder=(ladder, calendar))

    async def _ladder(self, session: AsyncSession, case: Case, party: Party) -> tuple[ladders.Ladder, Any]:
        rules = await partner_rules(session, party.partner_id)
        ctype = await case_type(session=session, code=case.type)
        threshold = parties.escalation_threshold(party, rules=rules, ctype=ctype)
        return rules.ladder or ctype.ladder or ladders.built_in(threshold), rules.calendar

    async def _climb(
        self, session: AsyncSession, case: Case, party: Party, partner: Partner, now: dt.datetime,
        result: SweepResult, *, handoff_id: int | None = None,
        ladder: tuple[ladders.Ladder, Any] | None = None,
    ) -> None:
        """Fire every level of the party's ladder whose time has come, each once; watch for the next."""
        steps, calendar = ladder or await self._ladder(session, case, party)
        assert party.ladder_since is not None
        level = party.ladder_level
        escalates_at = steps.escalates_at(since=party.ladder_since, calendar=calendar)
        while (at := steps.due(level, since=party.ladder_since, calendar=calendar)) is not None and at <= now:
            await self._fire(session, case, party, partner, now, result, steps.levels[level], level,
                             handoff_id=handoff_id, escalates_at=escalates_at)
            parties.climbed(party, level=level, now=now,
                            next_at=steps.due(level + 1, since=party.ladder_since, calendar=calendar))
            level += 1
        party.watch_at = at

    async def _fire(
        self, session: AsyncSession, case: Case, party: Party, partner: Partner, now: dt.datetime,
        result: SweepResult, level: ladders.Level, index: int, *, handoff_id: int | None,
        escalates_at: dt.datetime | None,
    ) -> None:
        """One ladder level: its event (the late or escalated one for those levels), then its recipients."""
        key = f"ladder:{party.id}:{announce.stamp(party.overdue_since)}:{index}"
        context = {**self._context(party, partner), "handoff_id": handoff_id, "level": index + 1,
                   "escalate_at": _human(escalates_at)}
        if level.escalates and party.state == PartyState.LATE:
            kind = "party.escalated"
            parties.escalate(party, now=now)
            body = {"partner": party.partner_id, "partner_name": partner.name, "role": party.role,
                    "overdue_since": announce.stamp(party.overdue_since), "reminders_sent": party.reminders_sent,
                    "level": index + 1, "notify": list(level.notify)}
            append_event(session=session, case=case, type="party.escalated", actor="system", visibility="parties",
                         body=body, now=now, partner_id=party.partner_id)
            await announce.webhook_to(session=session, case=case, kind="party.escalated",
                                      partner_id=party.partner_id, url=partner.webhook_url, now=now, data=body,
                                      dedupe_key=key)
            # The honest note, once per escalation: we are waiting on them, and we chased them.
            chased_at = party.last_reminded_at or now
            await notify_customer(session=session, case=case, kind="escalation", now=now,
                                  trigger={"waiting_on": partner.name, "chased_at": chased_at.isoformat()})
            if reachable(case):
                party.customer_told_at = now
            result.escalated += 1
        elif index == 0:
            kind = "party.late"
        else:
            kind = "party.chased"
            body = {"partner": party.partner_id, "level": index + 1, "notify": list(level.notify)}
            append_event(session=session, case=case, type="party.chased", actor="system", visibility="parties",
                         body=body, now=now, partner_id=party.partner_id)
            result.chased += 1
        escalated = party.state == PartyState.ESCALATED
        await chase(session=session, case=case, party=party, partner=partner, kind=kind, now=now, dedupe_key=key,
                    context=context, base_url=self.config.public_base_url,
                    template="party.escalated.party" if escalated else "party.late",
                    notify=[k for k in level.notify if k not in OPERATOR_SIDE])
        for recipient in (k for k in level.notify if k in OPERATOR_SIDE):
            address = self.config.supervisors_email if recipient == "supervisors" else partner.account_email
            await announce.supervisors_email(
                session=session, case=case, kind=kind, address=address, partner=partner, now=now,
                dedupe_key=f"{key}:{recipient}", context=context,
                template="party.escalated" if kind == "party.escalated" else "party.chased",
            )

    @staticmethod
    def _context(party: Party, partner: Partner) -> dict[str, object]:
        return {
            "role": party.role,
            "partner_id": partner.id,
            "ops_contact": partner.ops_email or partner.ops_phone,
            "cadence": format_duration(party.cadence_seconds),
            "due_at": _human(party.overdue_since),
            "escalate_at": _human(party.watch_at),
            "last_update_at": _human(party.last_update_at),
            "reminders_sent": party.reminders_sent,
        }

    # -------------------------------------------------------------- handoffs

    async def _handoffs_batch(self, session: AsyncSession, now: dt.datetime, result: SweepResult) -> int:
        query = (
            select(Handoff, Case)
            .join(Case, Case.id == Handoff.case_id)
            .where(Handoff.state == "requested", Handoff.accept_by <= now, Handoff.flagged_at.is_(None))
            .order_by(Handoff.accept_by)
            .limit(self.config.batch)
        )
        rows = (await session.execute(skip_locked(session, query, of=(Handoff, Case)))).all()
        for handoff, case in rows:
            handoff.flagged_at = now
            if case.closed_at is not None:
                continue
            receiver = await session.scalar(
                select(Party).where(and_(Party.case_id == case.id, Party.partner_id == handoff.to_partner_id))
            )
            partner = await session.get(Partner, handoff.to_partner_id)
            if receiver is None or partner is None or receiver.state == PartyState.RELEASED:
                continue
            append_event(session=session, case=case, type="handoff.overdue", actor="system", visibility="parties",
                         body={"handoff": handoff.id, "from": handoff.from_partner_id, "to": handoff.to_partner_id,
                               "accept_by": announce.stamp(handoff.accept_by)},
                         now=now, partner_id=handoff.to_partner_id)
            if receiver.state == PartyState.ON_TRACK:
                await self._late(session, case, receiver, partner, now, result, overdue_since=handoff.accept_by,
                                 reason="handoff", handoff_id=handoff.id)
            result.handoffs_flagged += 1
            result.touched_cases.add(case.id)
        await session.flush()
        return len(rows)

    # -------------------------------------------------------------- deadlines

    async def _deadlines_batch(self, session: AsyncSession, now: dt.datetime, result: SweepResult) -> int:
        query = (
            select(Case)
            .where(Case.deadline_at <= now, Case.deadline_passed_at.is_(None), Case.closed_at.is_(None))
            .order_by(Case.deadline_at)
            .limit(self.config.batch)
        )
        cases = (await session.scalars(skip_locked(session, query))).all()
        for case in cases:
            ctype = await case_type(session=session, code=case.type)
            case.deadline_passed_at = now
            body: dict[str, object] = {"deadline_at": announce.stamp(case.deadline_at), "previous_status": case.status}
            if ctype.deadline_status and ctype.deadline_status in ctype.statuses:
                case.status = ctype.deadline_status
                body["status"] = ctype.deadline_status
            append_event(session=session, case=case, type="case.deadline", actor="system", visibility="public",
                         body=body, now=now)
            await notify_customer(session=session, case=case, kind="deadline", now=now)
            partner_ids = (await session.scalars(select(Party.partner_id).where(Party.case_id == case.id))).all()
            await announce.webhooks(session=session, case=case, kind="case.deadline", partner_ids=partner_ids, now=now,
                                    data=body, dedupe_key=f"deadline:{case.id}")
            result.deadlines += 1
            result.touched_cases.add(case.id)
        await session.flush()
        return len(cases)


    async def _rights_batch(self, session: AsyncSession, now: dt.datetime, result: SweepResult) -> int:
        handled = await rights.sweep_batch(session, now, self.config.batch)
        result.rights += handled
        return handled

    async def _claims_batch(self, session: AsyncSession, now: dt.datetime, result: SweepResult) -> int:
        handled = await claims.sweep_batch(session, now, self.config.batch)
        result.claims += handled
        return handled


def _human(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else None


# ------------------------------------------------------------------ chasing a party

_SMS = {
    "party.late": "Baton: an update on case {ref} was due {due} and has not arrived. Update in one tap: {link}",
    "party.escalated": "Baton: case {ref} is escalated, no update since {due}. Update in one tap: {link}",
    "party.chased": "Baton: your update on case {ref} is still overdue since {due}. Update in one tap: {link}",
    "party.nudged": "Baton: the complaint department asks for an update on case {ref} now. Update in one tap: {link}",
    "party.invited": "Baton: you are named {role} on case {ref}. Accept or decline in one tap: {link}",
}


async def chase(
    *, session: AsyncSession, case: Case, party: Party, partner: Partner, kind: str, now: dt.datetime,
    dedupe_key: str, context: dict[str, object], base_url: str | None, template: str | None = None,
    notify: Sequence[str] = ("ops_email", "ops_phone"),
) -> None:
    """Email and text the party's contacts named in ``notify``, with a new one-tap link replacing its previous one."""
    contacts = [(key, getattr(partner, key)) for key in notify if getattr(partner, key, None)]
    if not contacts:
        return
    link = await party_links.issue(session=session, case=case, party=party, reason=kind.removeprefix("party."),
                                   now=now, base_url=base_url)
    for key, address in contacts:
        if key.endswith("_email"):
            await announce.partner_email(session=session, case=case, kind=kind, partner=partner, now=now,
                                         dedupe_key=f"{dedupe_key}:{key}", context={**context, "link_url": link},
                                         template=template, address=address)
        elif link is not None:
            text = _SMS[kind].format(ref=case.ref, due=_human(party.overdue_since) or "", role=party.role, link=link)
            await announce.partner_sms(session=session, case=case, kind=kind, partner=partner, now=now, text=text,
                                       dedupe_key=f"{dedupe_key}:{key}", address=address)


async def nudge(
    *, session: AsyncSession, case: Case, party: Party, actor: str, note: str | None, now: dt.datetime,
    base_url: str | None = None,
) -> dict[str, object]:
    """Staff chase a partner now: timeline entry, webhook, email; at most once an hour per party."""
    if case.closed_at is not None:
        raise Conflict(f"Case {case.ref} is closed.")
    if party.state == PartyState.RELEASED:
        raise Conflict(f"{party.partner_id} was released from {case.ref}.")
    if party.last_nudged_at is not None and now - party.last_nudged_at < NUDGE_INTERVAL:
        wait = NUDGE_INTERVAL - (now - party.last_nudged_at)
        raise TooManyRequests(
            f"{party.partner_id} was nudged at {_human(party.last_nudged_at)}; nudge again after an hour.",
            retry_after=max(1, int(wait.total_seconds())),
        )
    partner = await session.get(Partner, party.partner_id)
    assert partner is not None
    party.last_nudged_at = now
    party.last_reminded_at = now
    party.reminders_sent += 1
    body: dict[str, object] = {"partner": party.partner_id, "partner_name": partner.name, "by": actor}
    if note:
        body["note"] = note
    event = append_event(session=session, case=case, type="party.nudged", actor=actor, visibility="parties",
                         body=body, now=now, partner_id=party.partner_id)
    key = f"nudge:{party.id}:{announce.stamp(now)}"
    await announce.webhook_to(session=session, case=case, kind="party.nudged", partner_id=party.partner_id,
                            url=partner.webhook_url, now=now, data=body, dedupe_key=key)
    await chase(
        session=session, case=case, party=party, partner=partner, kind="party.nudged", now=now, dedupe_key=key,
        context={**Watchdog._context(party, partner), "nudged_by": actor.partition(":")[2] or actor, "note": note},
        base_url=base_url,
    )
    return {"seq": event.seq, "partner": party.partner_id, "nudged_at": now, "reminders_sent": party.reminders_sent}
