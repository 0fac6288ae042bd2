"""Validators for personal contact data, shared by partners and cases."""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo

import phonenumbers
from email_validator import EmailNotValidError, validate_email

_ZONE_SHAPE = re.compile(r"[A-Za-z0-9_+-]{1,30}(/[A-Za-z0-9_+-]{1,30}){0,2}")
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)


def phone_number(value: str) -> str:
    """Return the E.164 form, or raise ValueError with a reason a person can act on."""
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("a phone number must be in E.164 form, such as +14155550100") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def email_address(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email address: {exc}") from None


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def time_zone(value: str) -> str:
    """An IANA time zone name; checked against the known set, never by importing arbitrary paths."""
    if not _ZONE_SHAPE.fullmatch(value) or value not in _zones():
        raise ValueError(f"unknown time zone {value[:80]!r} (use an IANA name such as Europe/Berlin)")
    return value


def instant(value: dt.datetime) -> dt.datetime:
    """A moment Baton can store: between 1970 and 9999 once in UTC."""
    try:
        utc = value.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):
        raise ValueError("the time is out of range") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError("the time must be between 1970 and 9999")
    return utc
