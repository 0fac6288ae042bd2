"""Loading a case for a caller, and the guards every case service shares.

A partner that is not party to a case gets the same 404 as for a case that does not exist.
Writers lock the case row first (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite),
so a case's timeline stays gapless and its chain linear under concurrent writers.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import Conflict, Forbidden, NotFound, Unprocessable
from tracker.casetypes import CaseTypeDef
from tracker.models import Case, Party
from tracker.principals import Principal
from tracker.refs import parse_ref


async def load_case(
    *, session: AsyncSession, principal: Principal, ref: str, for_update: bool = False
) -> tuple[Case, Party | None]:
    """The case and the caller's own party on it; 404 unless the caller may see it."""
    parsed = parse_ref(ref)
    if parsed is None or not parsed.valid:
        raise not_found(ref)
    if principal.is_staff:
        query = select(Case).where(Case.ref == parsed.ref)
        if for_update:
            query = query.with_for_update()
        case = await session.scalar(query)
        if case is None:
            raise not_found(ref)
        return case, None
    query = (
        select(Case, Party)
        .join(Party, and_(Party.case_id == Case.id, Party.partner_id == principal.partner_id))
        .where(Case.ref == parsed.ref)
    )
    if for_update:
        query = query.with_for_update(of=Case)
    row = (await session.execute(query)).first()
    if row is None:
        raise not_found(ref)
    return row[0], row[1]


def not_found(ref: str) -> NotFound:
    # The same answer whether the case does not exist or the caller may not see it.
    return NotFound(f"No case {ref!r}.")


async def party_of(session: AsyncSession, case: Case, partner_id: str) -> Party:
    party = await session.scalar(select(Party).where(Party.case_id == case.id, Party.partner_id == partner_id))
    if party is None:
        raise NotFound(f"{partner_id!r} is not a party to {case.ref}.")
    return party


async def parties_by_case(session: AsyncSession, case_ids: list[int]) -> dict[int, list[Party]]:
    by_case: dict[int, list[Party]] = {cid: [] for cid in case_ids}
    if case_ids:
        rows = await session.scalars(select(Party).where(Party.case_id.in_(case_ids)).order_by(Party.id))
        for party in rows:
            by_case[party.case_id].append(party)
    return by_case


def require_open(case: Case) -> None:
    if case.closed_at is not None:
        raise Conflict(f"Case {case.ref} is closed.")


def require_owner_or_staff(principal: Principal, case: Case) -> None:
    if not principal.is_staff and principal.partner_id != case.owner_id:
        raise Forbidden("Only staff and the owner partner may change the case's parties.")


def check_status(ctype: CaseTypeDef, status: str) -> None:
    if status not in ctype.statuses:
        known = ", ".join(ctype.statuses)
        raise Unprocessable(f"Unknown status {status!r} for a {ctype.code} case; known statuses: {known}.")


def signature_of(principal: Principal) -> dict[str, Any] | None:
    return principal.signature if principal.kind == "partner" else None
