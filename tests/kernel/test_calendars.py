"""Business hours that pause the watchdog's clock (kernel/calendars.py).

The slow reference at the top walks day by day and converts each window's local start and end
to UTC the obvious way. It agrees with the module everywhere except at wall times that a spring
change skips (the reference then lands an hour late), so the calendars compared with it keep
their openings and closings out of those gaps; the gaps have tests of their own.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.calendars import (
    BusinessCalendar,
    add_business_time,
    business_time_between,
    is_open,
    next_opening,
)
from kernel.clock import UTC
from kernel.durations import parse_duration

BERLIN = ZoneInfo("Europe/Berlin")
ONE_DAY = dt.timedelta(days=1)
H = dt.timedelta(hours=1)
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def berlin(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN)


def office(**overrides) -> BusinessCalendar:
    """Mon-Fri 08:00-18:00 in Berlin, the shape partners store."""
    data = {"timezone": "Europe/Berlin", "days": WEEKDAYS, "start": "08:00", "end": "18:00", "holidays": []}
    calendar = BusinessCalendar.from_json({**data, **overrides}, default_timezone="UTC")
    assert calendar is not None
    return calendar


OFFICE = office()


# ---------------------------------------------------------------- the slow, obvious reference


def reference_windows(calendar: BusinessCalendar, after: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    zone = ZoneInfo(calendar.timezone)
    day = after.astimezone(zone).date() - ONE_DAY
    while True:
        if day.weekday() in calendar.days and day not in calendar.holidays:
            opening = dt.datetime.combine(day, calendar.start, tzinfo=zone).astimezone(UTC)
            closing = dt.datetime.combine(day, calendar.end, tzinfo=zone).astimezone(UTC)
            yield opening, closing
        day += ONE_DAY


def reference_add(start: dt.datetime, duration: dt.timedelta, calendar: BusinessCalendar) -> dt.datetime:
    if not duration:
        return start
    remaining = duration
    for opening, closing in reference_windows(calendar, start):
        opening = max(opening, start)
        if opening >= closing:
            continue
        if remaining <= closing - opening:
            return opening + remaining
        remaining -= closing - opening
    raise AssertionError("unreachable")


def reference_between(a: dt.datetime, b: dt.datetime, calendar: BusinessCalendar) -> dt.timedelta:
    total = dt.timedelta(0)
    for opening, closing in reference_windows(calendar, a):
        if opening >= b:
            return total
        total += max(dt.timedelta(0), min(closing, b) - max(opening, a))
    raise AssertionError("unreachable")


def wall_clock_is_open(at: dt.datetime, calendar: BusinessCalendar) -> bool:
    local = at.astimezone(ZoneInfo(calendar.timezone))
    return (
        local.weekday() in calendar.days
        and local.date() not in calendar.holidays
        and calendar.start <= local.time() < calendar.end
    )


def christmases(first: int, last: int) -> list[str]:
    return [f"{year}-12-{day}" for year in range(first, last + 1) for day in (24, 25, 26, 31)]


COMPARED = [
    office(holidays=christmases(2019, 2046) + ["2026-05-01", "2027-05-01", "2030-04-22"]),
    # A weekend window that contains Berlin's changes: 3 hours in March, 5 in October.
    office(days=["sat", "sun"], start="00:30", end="04:30"),
    office(timezone="America/New_York", start="09:00", end="17:00", holidays=["2026-11-26", "2027-07-05"]),
    # Lord Howe Island shifts by 30 minutes, at 02:00, inside this window.
    office(timezone="Australia/Lord_Howe", days=["mon", "wed", "sun"], start="01:00", end="03:00"),
    # Gaza's rules change the clock twice within a week around some Ramadans (2040s).
    office(timezone="Asia/Gaza", days=["sun", "mon", "tue", "wed", "thu"], start="09:00", end="17:00"),
    # Windows that touch midnight, where the day-by-day bookkeeping turns over.
    office(timezone="UTC", days=["tue", "sat"], start="00:00", end="23:59:59"),
]


# ---------------------------------------------------------------- due dates


def test_friday_update_with_six_hour_cadence_is_due_monday_at_13_berlin():
    due = add_business_time(berlin(2026, 11, 6, 17), parse_duration("PT6H"), OFFICE)

    assert due == berlin(2026, 11, 9, 13)  # 1 h on Friday, 5 h on Monday
    assert due.utcoffset() == dt.timedelta(0)


def test_saturday_update_is_counted_from_monday_opening():
    assert add_business_time(berlin(2026, 11, 7, 10), parse_duration("PT6H"), OFFICE) == berlin(2026, 11, 9, 14)


def test_update_before_opening_is_counted_from_that_morning():
    assert add_business_time(berlin(2026, 11, 9, 6, 30), 2 * H, OFFICE) == berlin(2026, 11, 9, 10)


def test_always_on_partner_is_due_the_same_friday_night():
    due = add_business_time(berlin(2026, 11, 6, 17), parse_duration("PT6H"), None)

    assert due == berlin(2026, 11, 6, 23)
    assert due.tzinfo == UTC


def test_cadence_that_fills_the_day_exactly_is_due_at_closing_not_next_opening():
    assert add_business_time(berlin(2026, 11, 6, 17), H, OFFICE) == berlin(2026, 11, 6, 18)


def test_escalation_after_one_more_cadence_counts_business_time_from_when_it_became_late():
    late_at = add_business_time(berlin(2026, 11, 5, 12), parse_duration("PT12H"), OFFICE)
    escalate_at = add_business_time(late_at, parse_duration("PT12H"), OFFICE)

    assert late_at == berlin(2026, 11, 6, 14)  # 6 h Thursday, 6 h Friday
    assert escalate_at == berlin(2026, 11, 9, 16)  # 4 h Friday, 8 h Monday


def test_zero_business_time_is_no_time_at_all_even_when_closed():
    saturday = berlin(2026, 11, 7, 10)

    assert add_business_time(saturday, dt.timedelta(0), OFFICE) == saturday


def test_negative_duration_is_refused():
    with pytest.raises(ValueError, match="negative"):
        add_business_time(berlin(2026, 11, 6, 17), -H, OFFICE)


@pytest.mark.parametrize(
    "call",
    [
        lambda: add_business_time(dt.datetime(2026, 11, 6, 17), H, OFFICE),
        lambda: add_business_time(dt.datetime(2026, 11, 6, 17), H, None),
        lambda: business_time_between(dt.datetime(2026, 11, 6), berlin(2026, 11, 7), OFFICE),
        lambda: is_open(dt.datetime(2026, 11, 6, 12), OFFICE),
        lambda: next_opening(dt.datetime(2026, 11, 6, 12), None),
    ],
)
def test_naive_datetimes_are_refused(call):
    with pytest.raises(ValueError, match="timezone-aware"):
        call()


# ---------------------------------------------------------------- holidays


def test_holidays_are_skipped_like_weekends():
    christmas = office(holidays=["2026-12-25", "2026-12-28"])  # a Friday and the Monday after
    posted = berlin(2026, 12, 24, 17)

    assert add_business_time(posted, 6 * H, christmas) == berlin(2026, 12, 29, 13)
    assert add_business_time(posted, 6 * H, OFFICE) == berlin(2026, 12, 25, 13)
    assert not is_open(berlin(2026, 12, 25, 12), christmas)
    assert next_opening(berlin(2026, 12, 24, 18), christmas) == berlin(2026, 12, 29, 8)


def test_holiday_on_a_day_off_changes_nothing():
    boxing_day = office(holidays=["2026-12-26"])  # a Saturday

    assert business_time_between(berlin(2026, 12, 1), berlin(2027, 1, 1), boxing_day) == 23 * 10 * H


# ---------------------------------------------------------------- daylight saving time


def test_business_time_across_spring_change_ends_at_the_same_wall_clock_time():
    friday = berlin(2026, 3, 27, 16)  # CET, UTC+1; the clocks go forward on Sunday 29 March

    monday = add_business_time(friday, 10 * H, OFFICE)
    tuesday = add_business_time(friday, 20 * H, OFFICE)

    assert friday.utcoffset() == H
    assert monday == dt.datetime(2026, 3, 30, 14, tzinfo=UTC)
    assert monday.astimezone(BERLIN).replace(tzinfo=None) == dt.datetime(2026, 3, 30, 16)
    assert monday.astimezone(BERLIN).utcoffset() == 2 * H
    assert tuesday.astimezone(BERLIN).replace(tzinfo=None) == dt.datetime(2026, 3, 31, 16)
    assert business_time_between(friday, monday, OFFICE) == 10 * H


def test_business_time_across_autumn_change_ends_at_the_same_wall_clock_time():
    friday = berlin(2026, 10, 23, 16)  # CEST, UTC+2; the clocks go back on Sunday 25 October

    monday = add_business_time(friday, 10 * H, OFFICE)

    assert friday.utcoffset() == 2 * H
    assert monday == dt.datetime(2026, 10, 26, 15, tzinfo=UTC)
    assert monday.astimezone(BERLIN).replace(tzinfo=None) == dt.datetime(2026, 10, 26, 16)
    assert monday.astimezone(BERLIN).utcoffset() == H


def test_window_containing_a_change_is_as_long_as_the_clock_says():
    night_shift = office(days=["sun"], start="01:00", end="05:00")

    def sunday(month: int, day: int) -> dt.timedelta:
        return business_time_between(berlin(2026, month, day - 1), berlin(2026, month, day + 1), night_shift)

    assert sunday(3, 22) == 4 * H
    assert sunday(3, 29) == 3 * H
    assert sunday(10, 25) == 5 * H
    # 01:00 CET is 00:00 UTC; three real hours later it is 05:00 CEST and the window closes.
    assert add_business_time(berlin(2026, 3, 29, 0), 3 * H, night_shift) == dt.datetime(2026, 3, 29, 3, tzinfo=UTC)


def test_opening_skipped_by_spring_change_opens_when_the_clock_jumps():
    early = office(days=["sun"], start="02:30", end="06:00")
    jump = dt.datetime(2026, 3, 29, 1, tzinfo=UTC)  # 02:00 CET becomes 03:00 CEST

    assert next_opening(berlin(2026, 3, 28, 12), early) == jump
    assert not is_open(jump - dt.timedelta(microseconds=1), early)
    assert is_open(jump, early)
    assert business_time_between(jump - 3 * H, jump + 6 * H, early) == 3 * H


def test_opening_read_twice_in_autumn_opens_the_first_time():
    early = office(days=["sun"], start="02:30", end="06:00")

    assert next_opening(berlin(2026, 10, 24, 12), early) == dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert business_time_between(berlin(2026, 10, 24), berlin(2026, 10, 26), early) == dt.timedelta(hours=4.5)


def test_tiny_window_lengthened_by_autumn_change_is_still_counted_exactly():
    # Nominally one minute a week, but 61 minutes on the Sunday the clocks go back: counting
    # whole weeks by the nominal length would overshoot, so this takes the walking path.
    minute = office(days=["sun"], start="02:59", end="03:00")
    start = berlin(2026, 1, 1)

    for minutes in (1, 59, 60, 61, 62, 200):
        duration = dt.timedelta(minutes=minutes)
        assert add_business_time(start, duration, minute) == reference_add(start, duration, minute)
    assert business_time_between(berlin(2026, 10, 24), berlin(2026, 10, 26), minute) == dt.timedelta(minutes=61)


# ---------------------------------------------------------------- open, next opening, elapsed


def test_window_is_open_from_start_up_to_but_excluding_end():
    assert is_open(berlin(2026, 11, 6, 8), OFFICE)
    assert is_open(berlin(2026, 11, 6, 17, 59, 59), OFFICE)
    assert not is_open(berlin(2026, 11, 6, 18), OFFICE)
    assert not is_open(berlin(2026, 11, 7, 12), OFFICE)
    assert is_open(berlin(2026, 11, 7, 3), None)


def test_next_opening_is_now_when_open_and_monday_morning_after_friday_close():
    assert next_opening(berlin(2026, 11, 6, 12), OFFICE) == berlin(2026, 11, 6, 12)
    assert next_opening(berlin(2026, 11, 6, 18), OFFICE) == berlin(2026, 11, 9, 8)
    assert next_opening(berlin(2026, 11, 7, 3), None) == berlin(2026, 11, 7, 3)


def test_business_time_between_counts_only_open_hours():
    assert business_time_between(berlin(2026, 11, 6, 17), berlin(2026, 11, 9, 13), OFFICE) == 6 * H
    assert business_time_between(berlin(2026, 11, 7), berlin(2026, 11, 8, 23), OFFICE) == dt.timedelta(0)
    assert business_time_between(berlin(2026, 11, 9), berlin(2026, 11, 6), OFFICE) == dt.timedelta(0)
    assert business_time_between(berlin(2026, 11, 9), berlin(2026, 11, 6), None) == dt.timedelta(0)
    assert business_time_between(berlin(2026, 11, 6), berlin(2026, 11, 9), None) == 72 * H


# ---------------------------------------------------------------- properties and the reference

instants = st.datetimes(min_value=dt.datetime(2019, 6, 1), max_value=dt.datetime(2045, 6, 1), timezones=st.just(UTC))
durations = st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=400))
calendars = st.sampled_from(COMPARED)


@settings(max_examples=400, deadline=None)
@given(calendar=calendars, start=instants, duration=durations)
def test_business_time_between_inverts_add_business_time(calendar, start, duration):
    due = add_business_time(start, duration, calendar)

    assert due >= start
    assert business_time_between(start, due, calendar) == duration
    assert due == reference_add(start, duration, calendar)


@settings(max_examples=300, deadline=None)
@given(calendar=calendars, a=instants, span=durations)
def test_business_time_between_matches_the_day_by_day_reference(calendar, a, span):
    b = a + span
    elapsed = business_time_between(a, b, calendar)

    assert elapsed == reference_between(a, b, calendar)
    assert add_business_time(a, elapsed, calendar) <= b
    assert business_time_between(a, b, None) == span


@settings(max_examples=500, deadline=None)
@given(calendar=calendars, at=instants)
def test_is_open_and_next_opening_agree_with_the_local_wall_clock(calendar, at):
    assert is_open(at, calendar) == wall_clock_is_open(at, calendar)
    opening = next_opening(at, calendar)
    assert opening >= at
    assert is_open(opening, calendar)
    assert opening == at or not is_open(opening - dt.timedelta(microseconds=1), calendar)


def test_a_300_day_duration_is_computed_exactly_and_fast():
    start = berlin(2026, 1, 5, 9)
    duration = dt.timedelta(days=300)  # 7200 h: exactly 144 weeks of 50 h
    with_holidays = COMPARED[0]

    assert add_business_time(start, duration, OFFICE) == berlin(2028, 10, 9, 9)
    due = add_business_time(start, duration, with_holidays)
    assert due == reference_add(start, duration, with_holidays)
    assert business_time_between(start, due, with_holidays) == duration

    def best_of(runs: int, call) -> float:
        timings = []
        for _ in range(runs):
            began = time.perf_counter()
            call()
            timings.append(time.perf_counter() - began)
        return min(timings)

    assert best_of(20, lambda: add_business_time(start, duration, with_holidays)) < 0.001
    assert best_of(20, lambda: business_time_between(start, due, with_holidays)) < 0.001


# ---------------------------------------------------------------- the stored shape


def test_from_json_reads_the_stored_shape():
    calendar = BusinessCalendar.from_json(
        {"timezone": None, "days": ["mon", "fri"], "start": "08:30:00", "end": "17:00", "holidays": ["2026-12-25"]},
        default_timezone="Europe/Berlin",
    )

    assert calendar == BusinessCalendar(
        timezone="Europe/Berlin",
        days=frozenset({0, 4}),
        start=dt.time(8, 30),
        end=dt.time(17),
        holidays=frozenset({dt.date(2026, 12, 25)}),
    )


def test_from_json_without_a_calendar_means_always_on():
    assert BusinessCalendar.from_json(None, default_timezone="Europe/Berlin") is None


def test_from_json_fills_missing_fields_like_the_partner_schema():
    calendar = BusinessCalendar.from_json({"days": ["sat"]}, default_timezone="America/Chicago")

    assert calendar is not None
    assert (calendar.timezone, calendar.days) == ("America/Chicago", frozenset({5}))
    assert (calendar.start, calendar.end, calendar.holidays) == (dt.time(8), dt.time(18), frozenset())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"start": "22:00", "end": "06:00"}, "past midnight"),
        ({"start": "08:00", "end": "08:00"}, "must be after start"),
        ({"days": []}, "at least one working day"),
        ({"days": ["mon", "funday"]}, "unknown calendar days"),
        ({"days": "mon"}, "must be a list"),
        ({"timezone": "Mars/Olympus_Mons"}, "not an IANA time zone"),
        ({"start": "8am"}, "local time such as"),
        ({"end": "25:00"}, "not a valid time"),
        ({"start": "08:00+01:00"}, "local time such as"),
        ({"holidays": ["25.12.2026"]}, "not a date"),
        ({"holidays": "2026-12-25"}, "must be a list"),
        ({"holiday": ["2026-12-25"]}, "unknown calendar fields: holiday"),
        (["mon"], "JSON object"),
    ],
)
def test_from_json_refuses_invalid_calendars(data, message):
    with pytest.raises(ValueError, match=message):
        BusinessCalendar.from_json(data, default_timezone="Europe/Berlin")


def test_direct_construction_is_validated_too():
    with pytest.raises(ValueError, match="weekday numbers"):
        BusinessCalendar(timezone="UTC", days=frozenset({7}), start=dt.time(8), end=dt.time(18))
    with pytest.raises(ValueError, match="without a time of day"):
        BusinessCalendar(
            timezone="UTC",
            days=frozenset({0}),
            start=dt.time(8),
            end=dt.time(18),
            holidays=frozenset({dt.datetime(2026, 12, 25)}),
        )
