"""Who is on a case: add, change, release or bring back a party; answer an invitation; chase it.

A party a partner names on a case joins invited (``tracker.trust``, ``tracker.invitations``);
every change of a party's state goes through ``tracker.parties``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.durations import format_duration
from kernel.errors import Conflict, Forbidden, Unprocessable
from partners.models import Partner
from tracker import announce, parties, trust
from tracker.access import load_case, party_of, require_open, require_owner_or_staff, signature_of
from tracker.casetypes import CaseTypeDef, case_type
from tracker.invitations import confirm_invitation, decline_invitation
from tracker.models import Case, Party
from tracker.parties import PartyState
from tracker.principals import Principal
from tracker.schemas import AcceptIn, AckIn, PartyIn, PartyOut, PartyPatch
from tracker.timeline import append_event
from tracker.watchdog import chase, nudge, partner_rules


def party_out(party: Party) -> PartyOut:
    return PartyOut(
        partner=party.partner_id,
        role=party.role,
        responsible=party.responsible,
        state=party.state,  # type: ignore[arg-type]
        cadence=dt.timedelta(seconds=party.cadence_seconds),
        last_update_at=party.last_update_at,
        next_update_due=party.next_update_due,
        overdue_since=party.overdue_since,
        reminders_sent=party.reminders_sent,
        acked_until=party.acked_until,
        ack_reason=party.ack_reason,
    )


async def new_party(
    session: AsyncSession, case: Case, spec: PartyIn, partner: Partner, ctype: CaseTypeDef, now: dt.datetime,
    *, invited: bool,
) -> Party:
    cadence = spec.cadence or dt.timedelta(seconds=partner.default_cadence_seconds) or ctype.default_cadence
    party = Party(
        case_id=case.id,
        partner_id=spec.partner,
        role=spec.role,
        responsible=spec.responsible,
        cadence_seconds=int(cadence.total_seconds()),
        state=parties.new_state(invited=invited),
        joined_at=now,
        reminders_sent=0,
    )
    parties.schedule(party, now=now, rules=await partner_rules(session, spec.partner))
    return party


async def announce_invitation(
    *, session: AsyncSession, case: Case, party: Party, partner: Partner, invited_by: Principal, now: dt.datetime,
    base_url: str | None,
) -> None:
    """Tell an invited partner by webhook, email and text (with a one-tap link); it is asked nothing until it accepts."""
    data = {"party": {"partner": party.partner_id, "role": party.role, "responsible": party.responsible,
                      "state": party.state}, "invited_by": invited_by.partner_id or invited_by.actor}
    key = f"invited:{party.case_id}:{party.partner_id}:{announce.stamp(now)}"
    await announce.webhook_to(session=session, case=case, kind="party.invited", partner_id=partner.id,
                              url=partner.webhook_url, now=now, data=data, dedupe_key=key)
    await session.flush()  # the party needs its id for its link
    await chase(
        session=session, case=case, party=party, partner=partner, kind="party.invited", now=now, dedupe_key=key,
        context={"invited_by": invited_by.partner_id or "The complaint department", "role": party.role,
                 "responsible": party.responsible, "cadence": format_duration(party.cadence_seconds),
                 "partner_id": partner.id},
        base_url=base_url,
    )


async def _load_for_change(
    *, session: AsyncSession, principal: Principal, ref: str, cadence: dt.timedelta | None
) -> Case:
    """The case, locked, once the caller may change its parties (owner or staff, case open, caller not released)."""
    trust.check_cadence(cadence, session=session)
    case, own = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    require_owner_or_staff(principal, case)
    require_open(case)
    trust.check_may_write(own)
    return case


async def add_party(
    *, session: AsyncSession, principal: Principal, ref: str, payload: PartyIn, now: dt.datetime, base_url: str,
) -> PartyOut:
    """Add a party: confirmed at once when staff add it, invited when a partner names another."""
    case = await _load_for_change(session=session, principal=principal, ref=ref, cadence=payload.cadence)
    partner = await session.get(Partner, payload.partner)
    if partner is None:
        raise Unprocessable(f"Unknown partner {payload.partner!r}.")
    taken = await session.scalar(
        select(Party.id).where(Party.case_id == case.id, Party.partner_id == payload.partner)
    )
    if taken is not None:
        raise Conflict(f"{payload.partner} is already a party to {case.ref}; PATCH it instead.")
    ctype = await case_type(session=session, code=case.type)
    invited = trust.joins_invited(opener=principal.partner_id, partner_id=payload.partner)
    party = await new_party(session, case, payload, partner, ctype, now, invited=invited)
    session.add(party)
    append_event(
        session=session,
        case=case,
        type="party.added",
        actor=principal.actor,
        partner_id=principal.partner_id,
        visibility="parties",
        body={"partner": party.partner_id, "role": party.role, "responsible": party.responsible,
              "cadence_seconds": party.cadence_seconds, "state": party.state},
        now=now,
        signature=signature_of(principal),
    )
    if invited:
        await announce_invitation(session=session, case=case, party=party, partner=partner, invited_by=principal,
                                   now=now, base_url=base_url)
    else:
        await announce.webhooks(
            session=session, case=case, kind="party.added", partner_ids=[party.partner_id], now=now,
            data={"party": {"partner": party.partner_id, "role": party.role, "responsible": party.responsible,
                            "next_update_due": announce.stamp(party.next_update_due)}},
        )
    await session.flush()
    return party_out(party)


async def patch_party(
    *, session: AsyncSession, principal: Principal, ref: str, partner_id: str, payload: PartyPatch, now: dt.datetime,
) -> PartyOut:
    """Change a party's role, cadence or responsibility, or release it (or bring it back)."""
    case = await _load_for_change(session=session, principal=principal, ref=ref, cadence=payload.cadence)
    party = await party_of(session, case, partner_id)
    changes = payload.model_dump(mode="json", exclude_none=True)
    if not changes:
        raise Unprocessable("Nothing to change: give role, responsible, cadence or released.")
    watch_off = trust.takes_watch_off(party, responsible=payload.responsible, cadence=payload.cadence)
    if (payload.released or watch_off) and principal.is_staff:
        # Taking the watch off an overdue party is a release by another name.
        principal.require_staff("supervisor")
    if payload.role is not None:
        party.role = payload.role
    if payload.cadence is not None:
        party.cadence_seconds = int(payload.cadence.total_seconds())
    if payload.released:
        parties.release(party, now=now)
    elif payload.released is False and party.state == PartyState.RELEASED:
        # Staff bring a party back; a partner can only invite it back (it may have declined).
        parties.restore(party, by_staff=principal.is_staff)
    if payload.responsible is not None:
        if payload.responsible and party.state == PartyState.RELEASED:
            raise Conflict(f"{partner_id} was released; send released=false to bring it back.")
        party.responsible = payload.responsible
        if not party.responsible:
            parties.back_on_track(party)
    if party.state in (PartyState.ON_TRACK, PartyState.RELEASED):
        # A new cadence or responsibility counts from now (a released party is no longer watched);
        # a late party keeps its overdue clock.
        parties.schedule(party, now=now, rules=await partner_rules(session, party.partner_id))
    append_event(
        session=session,
        case=case,
        type="party.released" if payload.released else "party.updated",
        actor=principal.actor,
        partner_id=principal.partner_id,
        visibility="parties",
        body={"partner": partner_id, **changes},
        now=now,
        signature=signature_of(principal),
    )
    await session.flush()
    return party_out(party)


async def answer_invitation(
    *, session: AsyncSession, principal: Principal, ref: str, partner_id: str, accept: bool, payload: AcceptIn,
    now: dt.datetime,
) -> PartyOut:
    """The invited partner (or staff for it) accepts or declines being a party to the case."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    if not principal.is_staff and principal.partner_id != partner_id:
        raise Forbidden("A partner answers only its own invitation.")
    require_open(case)
    party = await party_of(session, case, partner_id)
    answer = confirm_invitation if accept else decline_invitation
    await answer(session=session, case=case, party=party, principal=principal, now=now, note=payload.note)
    await session.flush()
    return party_out(party)


async def nudge_party(
    *, session: AsyncSession, principal: Principal, ref: str, partner_id: str, note: str | None, now: dt.datetime,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Staff chase a partner now (webhook + email), at most once an hour per party."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    principal.require_staff("agent")
    party = await party_of(session, case, partner_id)
    result = await nudge(session=session, case=case, party=party, actor=principal.actor, note=note, now=now,
                         base_url=base_url)
    await session.flush()
    return result


ACK_LIMIT = dt.timedelta(hours=24)


async def acknowledge_party(
    *, session: AsyncSession, principal: Principal, ref: str, partner_id: str, payload: AckIn, now: dt.datetime,
) -> PartyOut:
    """A late party (or staff for it) says why and until when: the ladder waits; it stays late until it updates."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    if not principal.is_staff and principal.partner_id != partner_id:
        raise Forbidden("A partner acknowledges only for itself.")
    require_open(case)
    party = await party_of(session, case, partner_id)
    if not parties.is_overdue(party):
        raise Conflict(f"{partner_id} is not late on {case.ref}: there is nothing to acknowledge.")
    if not now < payload.until <= now + ACK_LIMIT:
        raise Unprocessable("until must be in the future and at most 24 hours ahead.",
                            errors=[{"field": "until", "message": "at most 24 hours ahead"}])
    parties.acknowledge(party, now=now, until=payload.until, reason=payload.reason, by=principal.actor)
    body = {"partner": partner_id, "reason": payload.reason, "until": announce.stamp(payload.until)}
    append_event(session=session, case=case, type="party.acknowledged", actor=principal.actor,
                 partner_id=partner_id, visibility="parties", body=body, now=now,
                 signature=signature_of(principal))
    await announce.webhooks(session=session, case=case, kind="party.acknowledged",
                            partner_ids=[case.owner_id, partner_id], now=now, data={"party": body})
    await session.flush()
    return party_out(party)
