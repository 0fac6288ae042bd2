"""Trust between organizations: what an authenticated partner may do on a case, and how much.

Partners are independent organizations, sometimes rivals; what one writes must never become
another's problem unless the other agreed (SPEC.md, "Trust between organizations").

1. **Opening.** A partner opens a case only as its owner; staff may name any owner.
2. **Joining.** A partner named on a case by another partner joins ``invited``: not watched, not
   named to the customer as holding anything. It confirms by accepting or by its first signed
   write on the case, or declines. Parties that staff add, and the opener itself, join confirmed.
3. **Speaking.** Only the owner, a responsible party or staff set a ``status``; other parties post
   notes; a released party writes nothing. A terminal status is set only by closing the case, and
   the case type's deadline status only by the watchdog or staff.
4. **Limits.** No cadence shorter than ``BATON_MIN_CADENCE``; per partner, at most so many cases
   opened and customer messages caused per hour (counted from the timeline, so every process
   sees the same count).

The rules here are pure or read-only; the case services call them before they write.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tracker.casetypes import CaseTypeDef
from kernel.durations import format_duration
from kernel.db import settings_of
from kernel.durations import parse_duration
from kernel.errors import Forbidden, TooManyRequests, Unprocessable
from tracker.models import Case, Event, Party
from tracker.parties import PartyState, is_overdue

HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class TrustLimits:
    """The operator's limits on partners: ``BATON_MIN_CADENCE`` and the ``BATON_PARTNER_*`` quotas."""

    min_cadence: dt.timedelta
    cases_per_hour: int
    customer_messages_per_hour: int


def limits_of(session: AsyncSession) -> TrustLimits:
    """The limits of the settings the session carries (``kernel.db.settings_of``)."""
    settings = settings_of(session)
    return TrustLimits(min_cadence=parse_duration(settings.min_cadence),
                       cases_per_hour=settings.partner_cases_per_hour,
                       customer_messages_per_hour=settings.partner_customer_messages_per_hour)


def check_cadence(cadence: dt.timedelta | None, *, session: AsyncSession) -> None:
    """A cadence shorter than the operator's minimum would make a partner late within minutes."""
    if cadence is None:
        return
    limits = limits_of(session)
    if cadence < limits.min_cadence:
        raise Unprocessable(
            f"cadence {format_duration(cadence)} is shorter than the minimum {format_duration(limits.min_cadence)}."
        )


def check_opener(*, partner_id: str | None, owner: str) -> None:
    """A partner opens a case only as its owner (staff pass ``partner_id=None``)."""
    if partner_id is not None and partner_id != owner:
        raise Forbidden("A partner may open a case only as its owner; name yourself as owner.")


def joins_invited(*, opener: str | None, partner_id: str) -> bool:
    """A partner named by another partner must agree before anything is asked of it."""
    return opener is not None and partner_id != opener


def check_may_write(party: Party | None) -> None:
    """A released party (one that left the case or declined it) writes nothing more."""
    if party is not None and party.state == PartyState.RELEASED:
        raise Forbidden(f"{party.partner_id} was released from this case and can no longer write to it.")


def check_status_change(*, case: Case, party: Party | None, status: str, ctype: CaseTypeDef, staff: bool) -> None:
    """Who may set which status (see the module docstring, point 3)."""
    definition = ctype.statuses[status]
    if definition.get("terminal"):
        raise Unprocessable(f"{status!r} closes the case: use POST /v1/cases/{case.ref}/close.")
    if status == ctype.deadline_status and not staff:
        raise Forbidden(f"{status!r} is set by the case type's deadline (the watchdog) or by staff.")
    if staff or party is None:
        return
    if party.partner_id == case.owner_id or party.responsible:
        return
    raise Forbidden("Only the owner, a responsible party or staff may set a status; post a note instead.")


def takes_watch_off(party: Party, *, responsible: bool | None, cadence: dt.timedelta | None) -> bool:
    """Would this change take the watch off an overdue party (the supervisor-only release by another name)?"""
    if not is_overdue(party):
        return False
    longer = cadence is not None and cadence.total_seconds() > party.cadence_seconds
    return responsible is False or longer


async def check_case_quota(*, session: AsyncSession, partner_id: str, now: dt.datetime) -> None:
    """At most ``cases_per_hour`` cases opened by one partner in the last hour."""
    limits = limits_of(session)
    opened = await _events_since(session, partner_id, now - HOUR, type_="case.opened")
    if opened >= limits.cases_per_hour:
        raise TooManyRequests(f"{partner_id} opened {opened} cases in the last hour; the limit is "
                              f"{limits.cases_per_hour}.", retry_after=60)


async def check_customer_message_quota(
    *, session: AsyncSession, partner_id: str, now: dt.datetime
) -> None:
    """At most ``customer_messages_per_hour`` customer-visible updates caused by one partner in the last hour."""
    limits = limits_of(session)
    caused = await _events_since(session, partner_id, now - HOUR, type_="update", visibility="public")
    if caused >= limits.customer_messages_per_hour:
        raise TooManyRequests(f"{partner_id} caused {caused} customer messages in the last hour; the limit is "
                              f"{limits.customer_messages_per_hour}.", retry_after=60)


async def _events_since(
    session: AsyncSession, partner_id: str, since: dt.datetime, *, type_: str, visibility: str | None = None
) -> int:
    # ix_events_partner_id_type_received_at answers this from the index.
    query = select(func.count()).select_from(Event).where(
        Event.partner_id == partner_id, Event.type == type_, Event.received_at > since
    )
    if visibility is not None:
        query = query.where(Event.visibility == visibility)
    return await session.scalar(query) or 0
