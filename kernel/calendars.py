"""Business hours that pause the watchdog's clock.

A partner may keep office hours: a time zone, working days, a daily window in local time and
holidays. The watchdog counts a cadence or an escalation threshold in business time only, so a
ground handler that closes at 18:00 on Friday is not late on Saturday morning. Without a calendar
(``None``) the clock never sleeps, weekends included.

A working day is a local date whose weekday is one of ``days`` and which is not a holiday. Its
window is [opening, closing), where opening is the first instant at which the local wall clock
reads that date at ``start`` or later, and closing likewise for ``end``. Usually that is just the
local time converted to UTC; the wording settles the days when the clocks change:

- a window that contains a transition is shorter or longer by the shift: in Europe/Berlin,
  01:00-05:00 lasts 3 hours on the last Sunday of March and 5 hours on the last Sunday of October;
- a wall time skipped in spring (02:30 in Berlin) is reached at the transition, 03:00 CEST;
- a wall time that happens twice in autumn is reached the first time.

Later wall times are never reached earlier, so windows come in date order and never overlap.

Long spans are counted, not walked (``_dates_total``): working days by weekday arithmetic, each
worth the nominal window, minus holidays, corrected on the few dates when the clock changes. Those
dates are found once per zone and year by looking at the UTC offset of every local midnight, and
remembered. Two assumptions, both true of every zone in the tz database: a zone never changes its
offset and changes it back within two days (the closest such pair is four days apart, Freetown
1939), and the wall clock never goes back by a whole day.

Everything here is pure (the per-year memo only saves work): datetimes must be timezone-aware and
come back in UTC.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kernel.clock import UTC

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DEFAULT_DAYS = ("mon", "tue", "wed", "thu", "fri")  # the defaults of partners.schemas.CalendarIn
_DEFAULT_START = "08:00"
_DEFAULT_END = "18:00"
_KEYS = frozenset({"timezone", "days", "start", "end", "holidays"})
_TIME = re.compile(r"^\d{2}:\d{2}(?::\d{2})?$")
_ZERO = dt.timedelta(0)
_ONE_DAY = dt.timedelta(days=1)
_WEEK = dt.timedelta(days=7)
_TICK = dt.timedelta(microseconds=1)
_MIDNIGHT = dt.time(0)
_MIDNIGHT_LATER = dt.time(0, fold=1)


@dataclass(frozen=True)
class BusinessCalendar:
    """A partner's office hours: working days (Monday=0), a daily local window and holidays."""

    timezone: str
    days: frozenset[int]
    start: dt.time
    end: dt.time
    holidays: frozenset[dt.date] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _daily: dt.timedelta = field(init=False, repr=False, compare=False)
    _weekly: dt.timedelta = field(init=False, repr=False, compare=False)
    _sorted_holidays: tuple[dt.date, ...] = field(init=False, repr=False, compare=False)
    _start_later: dt.time = field(init=False, repr=False, compare=False)
    _end_later: dt.time = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(f"calendar timezone {self.timezone!r} is not an IANA time zone") from exc
        days = frozenset(self.days)
        if not days:
            raise ValueError("a calendar needs at least one working day")
        if not all(isinstance(day, int) and 0 <= day <= 6 for day in days):
            raise ValueError(f"calendar days are weekday numbers 0 (Monday) to 6 (Sunday), not {sorted(days)}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, dt.time) or value.tzinfo is not None:
                raise ValueError(f"calendar {name} must be a local time without offset, not {value!r}")
        start, end = self.start.replace(fold=0), self.end.replace(fold=0)
        if start >= end:
            raise ValueError(
                f"calendar end {end.isoformat()} must be after start {start.isoformat()}: "
                "windows that run past midnight (such as 22:00-06:00) are not supported"
            )
        holidays = frozenset(self.holidays)
        if any(isinstance(day, dt.datetime) or not isinstance(day, dt.date) for day in holidays):
            raise ValueError("calendar holidays are dates, without a time of day")
        daily = dt.datetime.combine(dt.date.min, end) - dt.datetime.combine(dt.date.min, start)
        for name, value in {
            "days": days,
            "start": start,
            "end": end,
            "holidays": holidays,
            "_zone": zone,
            "_daily": daily,
            "_weekly": daily * len(days),
            "_sorted_holidays": tuple(sorted(holidays)),
            "_start_later": start.replace(fold=1),
            "_end_later": end.replace(fold=1),
        }.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, *, default_timezone: str) -> BusinessCalendar | None:
        """Read the stored shape; ``None`` means always on. Missing keys take CalendarIn's defaults."""
        if data is None:
            return None
        # ValueError even for wrong types: callers catch one error for any bad stored calendar.
        if not isinstance(data, dict):
            raise ValueError("a calendar is a JSON object")  # noqa: TRY004
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ValueError(f"unknown calendar fields: {', '.join(unknown)}")
        names = data.get("days", _DEFAULT_DAYS)
        if not isinstance(names, list | tuple) or not all(isinstance(name, str) for name in names):
            raise ValueError('calendar days must be a list such as ["mon", "tue"]')
        unknown_days = sorted({name for name in names if name.lower() not in DAY_NAMES})
        if unknown_days:
            raise ValueError(f"unknown calendar days {unknown_days}: use {', '.join(DAY_NAMES)}")
        holidays = data.get("holidays") or []
        if not isinstance(holidays, list | tuple):
            raise ValueError('calendar holidays must be a list of dates such as "2026-12-25"')  # noqa: TRY004
        return cls(
            timezone=data.get("timezone") or default_timezone,
            days=frozenset(DAY_NAMES.index(name.lower()) for name in names),
            start=_parse_time(data.get("start", _DEFAULT_START), "start"),
            end=_parse_time(data.get("end", _DEFAULT_END), "end"),
            holidays=frozenset(_parse_date(value) for value in holidays),
        )


def add_business_time(start: dt.datetime, duration: dt.timedelta, calendar: BusinessCalendar | None) -> dt.datetime:
    """The first instant by which ``duration`` of business time has elapsed after ``start``.

    1. Without a calendar, or for a zero duration, that is plain arithmetic.
    2. The days around ``start`` are walked one by one: a window counts from ``start`` or its
       opening, whichever is later, so counting from a closed moment begins at the next opening.
    3. While more than two weeks' worth remains, whole weeks are counted at once
       (``_dates_total``), keeping strictly less than what remains, so the answer lies beyond.
    4. The rest is walked day by day; the window in which the remainder runs out holds the answer.
       A remainder that fills a window exactly ends at its closing, not at the next opening.
    """
    _check_aware(start, "start")
    if duration < _ZERO:
        raise ValueError("a business-time duration cannot be negative")
    start = start.astimezone(UTC)
    if calendar is None or not duration:
        return start + duration
    remaining = duration
    cursor = start
    day = _local_date(start, calendar) - _ONE_DAY
    skip_from = day + 3 * _ONE_DAY  # the dates before may hold the window that contains `start`
    may_skip = True
    while True:
        if may_skip and day >= skip_from and remaining > 2 * calendar._weekly:
            stop = day + (remaining // calendar._weekly - 1) * _WEEK
            elapsed = _dates_total(calendar, day, stop)
            # Holidays only shorten weeks; only tiny windows around an autumn change can hold
            # more than a week's margin. Walking stays correct when counting cannot be used.
            if elapsed < remaining and _midnight(calendar, day) >= cursor:
                remaining -= elapsed
                day = stop
                continue
            may_skip = False
        window = _window(calendar, day)
        if window is not None:
            opening, closing = max(window[0], cursor), window[1]
            if opening < closing:
                if remaining <= closing - opening:
                    return opening + remaining
                remaining -= closing - opening
                cursor = closing
        day += _ONE_DAY


def business_time_between(a: dt.datetime, b: dt.datetime, calendar: BusinessCalendar | None) -> dt.timedelta:
    """How much business time elapsed from ``a`` to ``b``; zero when ``b`` is not after ``a``.

    1. The days around ``a`` and ``b`` are walked, each window clipped to [a, b).
    2. The local dates in between close before ``b`` and open after ``a``: they are counted.
    """
    _check_aware(a, "a")
    _check_aware(b, "b")
    a, b = a.astimezone(UTC), b.astimezone(UTC)
    if b <= a:
        return _ZERO
    if calendar is None:
        return b - a
    total = _ZERO
    day = _local_date(a, calendar) - _ONE_DAY
    middle = day + 3 * _ONE_DAY
    b_day = _local_date(b, calendar)
    while day <= b_day + _ONE_DAY:
        if day == middle and day < b_day and _midnight(calendar, day) >= a:
            total += _dates_total(calendar, day, b_day)
            day = b_day
            continue
        window = _window(calendar, day)
        if window is not None:
            opening, closing = max(window[0], a), min(window[1], b)
            if opening < closing:
                total += closing - opening
        day += _ONE_DAY
    return total


def is_open(at: dt.datetime, calendar: BusinessCalendar | None) -> bool:
    """Whether ``at`` falls inside a working day's window (always, without a calendar)."""
    _check_aware(at, "at")
    if calendar is None:
        return True
    at = at.astimezone(UTC)
    day = _local_date(at, calendar)
    for offset in (-1, 0, 1):
        window = _window(calendar, day + offset * _ONE_DAY)
        if window is not None and window[0] <= at < window[1]:
            return True
    return False


def next_opening(at: dt.datetime, calendar: BusinessCalendar | None) -> dt.datetime:
    """The first instant at or after ``at`` when the calendar is open: ``at`` itself if open now."""
    _check_aware(at, "at")
    at = at.astimezone(UTC)
    if calendar is None:
        return at
    day = _local_date(at, calendar) - _ONE_DAY
    while True:  # ends: a week has a working day, and holidays are finitely many
        window = _window(calendar, day)
        if window is not None and window[0] < window[1] and window[1] > at:
            return max(window[0], at)
        day += _ONE_DAY


# ---------------------------------------------------------------- parsing


def _parse_time(value: Any, name: str) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if not isinstance(value, str) or not _TIME.match(value):
        raise ValueError(f'calendar {name} must be a local time such as "08:00" or "08:00:00", not {value!r}')
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"calendar {name} {value!r} is not a valid time of day") from None


def _parse_date(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f'calendar holiday {value!r} is not a date such as "2026-12-25"') from None


def _check_aware(value: dt.datetime, name: str) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {value!r}")


# ---------------------------------------------------------------- windows


def _local_date(at: dt.datetime, calendar: BusinessCalendar) -> dt.date:
    return at.astimezone(calendar._zone).date()


def _instant(zone: ZoneInfo, day: dt.date, time: dt.time, time_later: dt.time) -> dt.datetime:
    """The first instant, in UTC, at which the wall clock reads ``day`` ``time`` or later.

    ``time_later`` is ``time`` with fold=1, passed in because making it costs more than the rest.
    """
    first = zone.utcoffset(dt.datetime.combine(day, time))  # the offset before a change at this wall time
    later = zone.utcoffset(dt.datetime.combine(day, time_later))  # ... and after it
    if later <= first:  # an ordinary wall time, or one read twice: take the first reading
        return dt.datetime.combine(day, time, UTC) - first
    # The clock jumped over this wall time (spring forward). The jump lies between the reading
    # with the later offset and the one with the earlier offset: bisect to the microsecond.
    wall = dt.datetime.combine(day, time)
    low = dt.datetime.combine(day, time, UTC) - later
    high = dt.datetime.combine(day, time, UTC) - first
    while high - low > _TICK:
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high


def _midnight(calendar: BusinessCalendar, day: dt.date) -> dt.datetime:
    """The first instant of ``day``: no window of it or of a later date opens before."""
    return _instant(calendar._zone, day, _MIDNIGHT, _MIDNIGHT_LATER)


def _window(calendar: BusinessCalendar, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
    """A working day's [opening, closing) in UTC; None on other days. Empty only if the clock skips it."""
    if day.weekday() not in calendar.days or day in calendar.holidays:
        return None
    zone = calendar._zone
    return (
        _instant(zone, day, calendar.start, calendar._start_later),
        _instant(zone, day, calendar.end, calendar._end_later),
    )


# ---------------------------------------------------------------- counting


def _dates_total(calendar: BusinessCalendar, first: dt.date, stop: dt.date) -> dt.timedelta:
    """The exact business time of the whole local dates [first, stop).

    1. Working days are counted by weekday arithmetic, each worth one nominal window.
    2. Holidays among them take theirs away.
    3. On a date when the clock changes, the real window replaces the nominal one.
    """
    count = (stop - first).days
    if count <= 0:
        return _ZERO
    weeks, rest = divmod(count, 7)
    weekday = first.weekday()
    working = weeks * len(calendar.days) + sum((weekday + n) % 7 in calendar.days for n in range(rest))
    holidays = calendar._sorted_holidays
    for holiday in holidays[bisect.bisect_left(holidays, first) : bisect.bisect_left(holidays, stop)]:
        working -= holiday.weekday() in calendar.days
    total = working * calendar._daily
    for day in _unsteady_dates(calendar.timezone, first, stop):
        window = _window(calendar, day)
        if window is not None:
            total += window[1] - window[0] - calendar._daily
    return total


def _unsteady_dates(timezone: str, first: dt.date, stop: dt.date) -> list[dt.date]:
    """The local dates in [first, stop) whose windows may not be nominal: the clock changes near them."""
    found: list[dt.date] = []
    for year in range(first.year, (stop - _ONE_DAY).year + 1):
        found.extend(day for day in _unsteady_dates_of_year(timezone, year) if first <= day < stop)
    return found


@functools.lru_cache(maxsize=4096)
def _unsteady_dates_of_year(timezone: str, year: int) -> tuple[dt.date, ...]:
    """The dates of ``year`` whose midnight and the next two do not all read one UTC offset.

    A date whose own and next midnight share an offset kept it in between, so its window is
    nominal; the third midnight catches a next midnight that the clock skips or repeats, whose
    fold=0 reading shows the offset from before the change. About 370 look-ups, once per year.
    """
    zone = ZoneInfo(timezone)
    first = dt.date(year, 1, 1)
    days = (dt.date(year + 1, 1, 1) - first).days
    midnight = dt.datetime(year, 1, 1)
    offsets = []
    for _ in range(days + 2):
        offsets.append(zone.utcoffset(midnight))
        midnight += _ONE_DAY
    return tuple(first + n * _ONE_DAY for n in range(days) if not offsets[n] == offsets[n + 1] == offsets[n + 2])
