"""ISO 8601 durations (``PT6H``, ``P21D``) as used throughout the API.

Only weeks, days, hours, minutes and whole seconds are accepted: months and years have no fixed
length, and a cadence of "P1M" would be ambiguous.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_PATTERN = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
MAX = dt.timedelta(days=366)


def parse_duration(text: str) -> dt.timedelta:
    match = _PATTERN.match(text.strip().upper()) if isinstance(text, str) and len(text) < 40 else None
    if not match:
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT6H or P2DT12H")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    try:
        value = dt.timedelta(**parts)
    except OverflowError:
        raise ValueError("the duration must be at most a year") from None
    if value > MAX:
        raise ValueError("the duration must be at most a year")
    if value <= dt.timedelta(0):
        raise ValueError("the duration must be positive")
    if value < dt.timedelta(seconds=1) or value.microseconds:
        raise ValueError("the duration must be a whole number of seconds, at least PT1S")
    return value


def parse_delay(text: str) -> dt.timedelta:
    """A duration that may also be zero (``PT0S``: at once), as an escalation ladder's first level."""
    if isinstance(text, str) and text.strip().upper() in ("PT0S", "PT0M", "PT0H", "P0D"):
        return dt.timedelta(0)
    return parse_duration(text)


def format_duration(value: dt.timedelta | int) -> str:
    seconds = int(value.total_seconds()) if isinstance(value, dt.timedelta) else int(value)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    if hours or minutes or secs or not days:
        out += "T" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
        out += f"{secs}S" if secs or not (hours or minutes) else ""
    return out


def _validate(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("a duration must be an ISO 8601 string such as PT6H")
    return parse_duration(value)


Duration = Annotated[
    dt.timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "format": "duration", "examples": ["PT6H"]}),
]
