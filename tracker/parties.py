"""A party's watchdog state, and every move between states: the one module that changes ``Party.state``.

    invited ──join──▶ on_track ──late──▶ late ──escalate──▶ escalated
       │                 ▲                 │                   │
       │                 └──back_on_track──┴───────────────────┘
       └──decline──▶ released ◀──release── (any)      released ──restore──▶ on_track | invited

- **invited**: named by another partner, not yet agreed: not watched, holds nothing.
- **on_track**: watched when responsible; ``watch_at`` is its next due time.
- **late**: past due; ``watch_at`` is when its escalation ladder's next level fires
  (``tracker.ladders``), or when its acknowledgement lapses.
- **escalated**: heads the complaint department's queue until it updates; the ladder may still
  have levels to fire (``watch_at``), else ``watch_at`` is NULL.

A late or escalated party may acknowledge (``acknowledge``): a reason and a time at most 24
hours ahead. It stays late (only an update ends that), but its ladder waits until then
(``watch_at`` is the lapse), and the time acknowledged does not count towards the next level.
- **released**: off the case; writes nothing and is never watched.

Due times are business time (the partner's calendar) after the last update, or the party's own
sooner promise (``next_update_by``). The functions here change the row only; the caller, which
holds the case lock, writes the events and notifications that announce the move.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TYPE_CHECKING

from kernel.calendars import add_business_time
from tracker.models import Party

if TYPE_CHECKING:
    from tracker.casetypes import CaseTypeDef
    from tracker.watchdog import PartnerRules


class PartyState(StrEnum):
    ON_TRACK = "on_track"
    LATE = "late"
    ESCALATED = "escalated"
    RELEASED = "released"
    INVITED = "invited"


OVERDUE = (PartyState.LATE, PartyState.ESCALATED)
UNWATCHED = (PartyState.RELEASED, PartyState.INVITED)


def is_overdue(party: Party) -> bool:
    return party.state in OVERDUE


def holds_custody(party: Party) -> bool:
    """Responsible and on the case: the one the customer is told holds the item."""
    return bool(party.responsible) and party.state not in UNWATCHED


# ---------------------------------------------------------------- due times


def schedule(party: Party, *, now: dt.datetime, rules: PartnerRules) -> None:
    """Set when the party's next update is due: a cadence of business time from now, or its own sooner promise."""
    if not party.responsible or party.state in UNWATCHED:
        party.next_update_due = None
        party.watch_at = None
        return
    due = add_business_time(now, dt.timedelta(seconds=party.cadence_seconds), rules.calendar)
    if party.promised_by is not None and party.promised_by < due:
        due = party.promised_by
    party.next_update_due = due
    party.watch_at = due


def escalation_threshold(party: Party, *, rules: PartnerRules, ctype: CaseTypeDef) -> dt.timedelta:
    """How long past due the built-in ladder escalates: the partner's, the case type's, else one cadence."""
    return rules.escalate_after or ctype.escalate_after or dt.timedelta(seconds=party.cadence_seconds)


def due_met(party: Party, *, now: dt.datetime) -> dt.datetime | None:
    """The due moment an update now meets (the party on track and watched, its due time not passed)."""
    if party.state != PartyState.ON_TRACK or not party.responsible or party.next_update_due is None:
        return None
    return party.next_update_due if now <= party.next_update_due else None


def spoke(party: Party, *, now: dt.datetime, promised: dt.datetime | None, rules: PartnerRules) -> None:
    """The party posted an update: its clock restarts from now (or its own sooner promise)."""
    party.last_update_at = now
    party.promised_by = promised
    schedule(party, now=now, rules=rules)


# ---------------------------------------------------------------- moves


def new_state(*, invited: bool) -> PartyState:
    return PartyState.INVITED if invited else PartyState.ON_TRACK


def join(party: Party, *, now: dt.datetime, rules: PartnerRules) -> None:
    """invited → on_track: the partner agreed; watched from now if responsible."""
    party.state = PartyState.ON_TRACK
    party.joined_at = now
    schedule(party, now=now, rules=rules)


def decline(party: Party, *, now: dt.datetime) -> None:
    """invited → released: the partner refused the case."""
    release(party, now=now)


def release(party: Party, *, now: dt.datetime) -> None:
    """Any state → released: off the case, never watched again unless restored."""
    _clear_overdue(party)
    party.state = PartyState.RELEASED
    party.released_at = now
    party.responsible = False
    party.next_update_due = party.watch_at = None


def restore(party: Party, *, by_staff: bool) -> None:
    """released → on_track (staff bring it back) or invited (a partner may only invite it back)."""
    party.released_at = None
    party.state = PartyState.ON_TRACK if by_staff else PartyState.INVITED


def back_on_track(party: Party) -> None:
    """late | escalated → on_track (it spoke, or was relieved of the watch)."""
    _clear_overdue(party)


def mark_late(party: Party, *, overdue_since: dt.datetime, now: dt.datetime) -> None:
    """on_track → late: past due (or an unaccepted handoff); its ladder starts counting from then."""
    party.state = PartyState.LATE
    party.overdue_since = overdue_since
    party.reminders_sent += 1
    party.last_reminded_at = now
    party.ladder_level = 0
    party.ladder_since = overdue_since
    _clear_ack(party)


def climbed(party: Party, *, level: int, now: dt.datetime, next_at: dt.datetime | None) -> None:
    """A ladder level fired: count it, note the chase, and watch for the next level (if any)."""
    party.ladder_level = level + 1
    party.last_reminded_at = now
    party.watch_at = next_at


def escalate(party: Party, *, now: dt.datetime) -> None:
    """late → escalated: it heads the queue until it updates."""
    party.state = PartyState.ESCALATED
    party.escalated_at = now


def acknowledge(party: Party, *, now: dt.datetime, until: dt.datetime, reason: str, by: str) -> None:
    """A late party says why and until when: its ladder waits until ``until``; it stays late."""
    if party.acked_at is not None and party.ladder_since is not None:
        party.ladder_since += now - party.acked_at  # the earlier acknowledgement held the ladder until now
    party.acked_at = now
    party.acked_until = until
    party.ack_reason = reason
    party.acked_by = by
    party.watch_at = until


def ack_lapsed(party: Party) -> None:
    """The acknowledged time is over: the ladder counts on from where it stopped."""
    if party.acked_at is not None and party.acked_until is not None and party.ladder_since is not None:
        party.ladder_since += party.acked_until - party.acked_at
    _clear_ack(party)


def is_acknowledged(party: Party, *, now: dt.datetime) -> bool:
    return party.acked_until is not None and party.acked_until > now


def _clear_ack(party: Party) -> None:
    party.acked_at = party.acked_until = party.ack_reason = party.acked_by = None


def _clear_overdue(party: Party) -> None:
    if party.state in OVERDUE:
        party.state = PartyState.ON_TRACK
    party.overdue_since = None
    party.escalated_at = None
    party.customer_told_at = None
    party.ladder_level = 0
    party.ladder_since = None
    _clear_ack(party)
