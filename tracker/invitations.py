"""Invited parties: a partner named on a case by another partner agrees before anything is asked of it.

    invited --accept / first signed write--> on_track (watched from now on, if responsible)
    invited --decline-----------------------> released

While invited, a party is not watched (no due time), not named to the customer as holding
anything, and its lateness cannot be made to count against it. Staff see unanswered invitations
(``GET /v1/invitations``). The case services call these after locking the case.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tracker import announce, parties
from kernel.errors import Conflict
from kernel.pagination import Page
from tracker.models import Case, Party
from tracker.principals import Principal
from tracker.timeline import append_event
from tracker.parties import PartyState
from tracker.watchdog import partner_rules


class InvitationOut(BaseModel):
    case: str
    partner: str
    role: str
    responsible: bool
    invited_at: dt.datetime


class InvitationList(Page[InvitationOut]):
    """One page; pass ``next_cursor`` back as ``cursor`` for the next."""


def _require_invited(case: Case, party: Party) -> None:
    if party.state != PartyState.INVITED:
        raise Conflict(f"{party.partner_id} is not invited to {case.ref} (its state is {party.state}).")


async def confirm_invitation(
    *, session: AsyncSession, case: Case, party: Party, principal: Principal, now: dt.datetime, note: str | None = None
) -> None:
    """The invited partner agreed (by accepting, or by its first signed write): it joins and is watched from now."""
    _require_invited(case, party)
    parties.join(party, now=now, rules=await partner_rules(session, party.partner_id))
    body: dict[str, object] = {"partner": party.partner_id, "role": party.role, "responsible": party.responsible}
    if note:
        body["note"] = note
    if principal.via:
        body["via"] = principal.via
    append_event(session=session, case=case, type="party.joined", actor=principal.actor,
                 partner_id=party.partner_id, visibility="parties", body=body, now=now,
                 signature=principal.signature if principal.kind == "partner" else None)
    await announce.webhooks(session=session, case=case, kind="party.joined",
                            partner_ids=[case.owner_id, party.partner_id], now=now, data={"party": body})


async def decline_invitation(
    *, session: AsyncSession, case: Case, party: Party, principal: Principal, now: dt.datetime, note: str | None = None
) -> None:
    """The invited partner refused: it is released and writes nothing more on the case."""
    _require_invited(case, party)
    parties.decline(party, now=now)
    body: dict[str, object] = {"partner": party.partner_id, "role": party.role}
    if note:
        body["note"] = note
    if principal.via:
        body["via"] = principal.via
    append_event(session=session, case=case, type="party.declined", actor=principal.actor,
                 partner_id=party.partner_id, visibility="parties", body=body, now=now,
                 signature=principal.signature if principal.kind == "partner" else None)
    await announce.webhooks(session=session, case=case, kind="party.declined", partner_ids=[case.owner_id],
                            now=now, data={"party": body})


async def list_invitations(*, session: AsyncSession, limit: int = 200) -> InvitationList:
    """Unanswered invitations on open cases, oldest first (for staff)."""
    rows = await session.execute(
        select(Party, Case.ref)
        .join(Case, Case.id == Party.case_id)
        .where(Party.state == PartyState.INVITED, Case.closed_at.is_(None))
        .order_by(Party.joined_at, Party.id)
        .limit(limit)
    )
    return InvitationList(items=[
        InvitationOut(case=ref, partner=p.partner_id, role=p.role, responsible=p.responsible, invited_at=p.joined_at)
        for p, ref in rows.all()
    ])
