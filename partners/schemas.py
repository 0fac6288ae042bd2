"""Request and response bodies of the partner registry."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from kernel.calendars import BusinessCalendar
from kernel.durations import Duration, parse_delay
from kernel.validation import email_address, phone_number, time_zone
from kernel.pagination import Page

PARTNER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class CalendarIn(BaseModel):
    """Business hours that pause the watchdog clock. Absent: always on, weekends included."""

    model_config = ConfigDict(extra="forbid")
    timezone: str | None = Field(default=None, description="Defaults to the partner's time zone.")
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"]
    )
    start: dt.time = dt.time(8, 0)
    end: dt.time = dt.time(18, 0)
    holidays: list[dt.date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return time_zone(value) if value else value

    @model_validator(mode="after")
    def _usable(self) -> CalendarIn:
        # The watchdog reads it with BusinessCalendar: refuse now what it would refuse later.
        BusinessCalendar.from_json(self.model_dump(mode="json"), default_timezone="UTC")
        return self


# Whom a level of an escalation ladder tells (tracker.ladders): the partner's contacts, the
# operator's account manager for it, or the complaint department.
LadderRecipient = Literal["ops_email", "ops_phone", "duty_email", "duty_phone", "account_email", "supervisors"]


class LevelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: str = Field(description="How long after the party became late (ISO 8601; PT0S: at once).",
                       examples=["PT2H"])
    notify: list[LadderRecipient] = Field(min_length=1, max_length=6)
    escalates: bool = Field(default=False, description="Default: the first level naming supervisors escalates.")

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        parse_delay(value)
        return value


class LadderIn(BaseModel):
    """An escalation ladder: levels in order, each later than the one before."""

    model_config = ConfigDict(extra="forbid")
    levels: list[LevelIn] = Field(min_length=1, max_length=8)

    @model_validator(mode="after")
    def _ordered(self) -> LadderIn:
        afters = [parse_delay(level.after) for level in self.levels]
        if any(b <= a for a, b in zip(afters, afters[1:])):
            raise ValueError("each level must come after the one before")
        return self


SlotWindow = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")]


class _Contacts(BaseModel):
    """The contact roster's checks, shared by registering a partner and changing its contacts."""

    @field_validator("ops_email", "duty_email", "account_email", check_fields=False)
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return email_address(value) if value else value

    @field_validator("ops_phone", "duty_phone", check_fields=False)
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return phone_number(value) if value else value


class PartnerIn(_Contacts):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="Slug such as lh, ua, swissport-fra.", examples=["lh"])
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(default="other", max_length=40, examples=["airline"])
    ops_email: str | None = None
    ops_phone: str | None = None
    duty_email: str | None = Field(default=None, description="The partner's duty contact, for its escalation ladder.")
    duty_phone: str | None = None
    account_email: str | None = Field(default=None, description="The operator's account manager for this partner.")
    ladder: LadderIn | None = Field(default=None, description="Its escalation ladder; absent: the case type's.")
    webhook_url: HttpUrl | None = None
    webhook_secret: str | None = Field(default=None, description="Standard Webhooks whsec_... secret.")
    default_cadence: Duration = Field(default=dt.timedelta(hours=6))
    escalate_after: Duration | None = None
    timezone: str = "UTC"
    calendar: CalendarIn | None = None
    delivery_slots: list[SlotWindow] | None = Field(
        default=None, max_length=12,
        description="A courier's delivery windows (local \"HH:MM-HH:MM\"), offered to customers for the next days.",
        examples=[["09:00-12:00", "18:00-20:00"]],
    )

    @field_validator("delivery_slots")
    @classmethod
    def _slots(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for window in value:
                start, _, end = window.partition("-")
                if start >= end:
                    raise ValueError(f"delivery slot {window!r} must end after it starts, within one day")
        return value

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not PARTNER_ID.fullmatch(value):
            raise ValueError("a partner id is a lower-case slug: letters, digits and dashes, up to 63")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return time_zone(value)

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return webhook_secret(value) if value is not None else value


def webhook_secret(value: str) -> str:
    """A Standard Webhooks signing secret (``whsec_`` then base64), else ValueError (a validator's 422)."""
    if not re.fullmatch(r"whsec_[A-Za-z0-9+/=]{24,200}", value):
        raise ValueError("webhook_secret must be a Standard Webhooks secret: whsec_ then base64")
    return value


class PartnerPatch(_Contacts):
    """The partner's contact roster and escalation ladder; only the fields sent change (null clears)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    ops_email: str | None = None
    ops_phone: str | None = None
    duty_email: str | None = None
    duty_phone: str | None = None
    account_email: str | None = None
    ladder: LadderIn | None = None

    @model_validator(mode="after")
    def _named(self) -> PartnerPatch:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("a partner keeps a name")
        return self


class PartnerOut(BaseModel):
    id: str
    name: str
    kind: str
    ops_email: str | None
    ops_phone: str | None
    duty_email: str | None = None
    duty_phone: str | None = None
    account_email: str | None = None
    ladder: dict | None = None
    webhook_url: str | None
    default_cadence: Duration
    escalate_after: Duration | None
    timezone: str
    calendar: dict | None
    delivery_slots: list[str] | None = None
    created_at: dt.datetime
    keys: list[KeyOut] = Field(default_factory=list)
    webhook_secret: str | None = Field(default=None, description="Returned once, when Baton generated it.")


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyid: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    alg: Literal["ed25519", "hmac-sha256"]
    public_key: str | None = Field(default=None, description="PEM Ed25519 public key (ed25519 only).")


class KeyOut(BaseModel):
    keyid: str
    alg: str
    partner: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None
    public_key: str | None = None
    secret: str | None = Field(default=None, description="hmac-sha256 only, returned once: base64 of 32 bytes.")


class PartnerList(Page[PartnerOut]):
    """One page; pass ``next_cursor`` back as ``cursor`` for the next."""

