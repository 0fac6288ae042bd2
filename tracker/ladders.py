"""Escalation ladders: whom Baton tells, and how, while a party stays late.

A ladder is data: ``{"levels": [{"after": "PT0S", "notify": ["ops_email", "ops_phone"]}, ...]}``.
Each level fires once per late episode, ``after`` the party became late (business time on the
partner's calendar, as every due time), telling the recipients it names:

    ops_email, ops_phone     the partner's operations desk (with its one-tap update link)
    duty_email, duty_phone   the partner's duty contact (the same link)
    account_email            the operator's account manager for that partner
    supervisors              the complaint department (``BATON_SUPERVISORS_EMAIL``)

The first level that names ``supervisors`` escalates the party (or the level marked
``"escalates": true``): it heads the queue and the customer is told we are chasing it. Levels
after it keep chasing. Where the ladder comes from, first found: the partner's own ``ladder``,
the case type's ``ladder``, else ``built_in``, which is Baton's original two steps: its ops
desk when late, and the complaint department (and the desk again) one threshold later (the
partner's ``escalate_after``, the case type's, else one cadence).

An acknowledgement (``tracker.parties.acknowledge``) stops the ladder until its time; the level
times then count on from where they stopped (``Party.ladder_since`` moves on by the time
acknowledged), so a pause never makes two levels fire at once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, get_args

from kernel.calendars import add_business_time
from kernel.durations import parse_delay
from partners.schemas import LadderRecipient

NOTIFY: tuple[str, ...] = get_args(LadderRecipient)
MAX_LEVELS = 8


@dataclass(frozen=True, slots=True)
class Level:
    after: dt.timedelta
    notify: tuple[str, ...]
    escalates: bool = False


@dataclass(frozen=True, slots=True)
class Ladder:
    levels: tuple[Level, ...]

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Ladder:
        """A ladder from its JSON form; ValueError naming what is wrong (a validator's 422)."""
        raw = data.get("levels") if isinstance(data, dict) else None
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_LEVELS:
            raise ValueError(f"a ladder has 1 to {MAX_LEVELS} levels")
        levels: list[Level] = []
        for n, level in enumerate(raw, start=1):
            if not isinstance(level, dict) or set(level) - {"after", "notify", "escalates"}:
                raise ValueError(f"level {n}: give after, notify and optionally escalates")
            try:
                after = parse_delay(str(level.get("after", "")))
            except ValueError:
                raise ValueError(f"level {n}: after must be an ISO 8601 duration such as PT2H (PT0S: at once)") from None
            notify = level.get("notify")
            if not isinstance(notify, list) or not notify or any(k not in NOTIFY for k in notify):
                raise ValueError(f"level {n}: notify is a list of {', '.join(NOTIFY)}")
            if levels and after <= levels[-1].after:
                raise ValueError(f"level {n}: each level comes after the one before")
            levels.append(Level(after=after, notify=tuple(dict.fromkeys(notify)),
                                escalates=bool(level.get("escalates", False))))
        if not any(level.escalates for level in levels):
            first = next((i for i, level in enumerate(levels) if "supervisors" in level.notify), len(levels) - 1)
            levels[first] = Level(levels[first].after, levels[first].notify, escalates=True)
        return cls(levels=tuple(levels))

    def escalates_at(self, *, since: dt.datetime, calendar: Any) -> dt.datetime | None:
        """When the escalating level fires, counted from ``since``."""
        index = next((i for i, level in enumerate(self.levels) if level.escalates), None)
        return self.due(index, since=since, calendar=calendar) if index is not None else None

    def due(self, index: int, *, since: dt.datetime, calendar: Any) -> dt.datetime | None:
        """When level ``index`` fires, counted from ``since``; None past the last level."""
        if index >= len(self.levels):
            return None
        return add_business_time(since, self.levels[index].after, calendar)


def built_in(threshold: dt.timedelta) -> Ladder:
    """Baton's two steps: the ops desk when late; the complaint department one threshold later."""
    return Ladder(levels=(
        Level(after=dt.timedelta(0), notify=("ops_email", "ops_phone")),
        Level(after=threshold, notify=("supervisors", "ops_email", "ops_phone"), escalates=True),
    ))
