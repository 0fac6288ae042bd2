"""Validators for personal contact data, shared by partners and cases."""

from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email


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
