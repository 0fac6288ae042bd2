"""Request and response bodies of the case API. Names follow SPEC.md's "Minimal bodies"."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from kernel.durations import Duration
from kernel.validation import email_address, instant, phone_number, time_zone
from kernel.pagination import Page
from tracker.parties import PartyState

Instant = Annotated[AwareDatetime, AfterValidator(instant)]

Visibility = Literal["public", "parties", "internal"]


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, description="E.164, e.g. +14155550100")
    email: str | None = None
    locale: str = Field(default="en", max_length=10, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
    timezone: str = "UTC"
    channels: list[Literal["sms", "email", "whatsapp"]] | None = Field(
        default=None, description="Preferred channels; default: every channel with contact data (SMS and email). "
        "WhatsApp is opt-in: name it here, to the same phone number."
    )

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return phone_number(value) if value else None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return email_address(value) if value else None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return time_zone(value)


class PartyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partner: str
    role: str = Field(default="party", min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$")
    responsible: bool = False
    cadence: Duration | None = Field(default=None, description="Default: the partner's, then the case type's.")


class ItineraryIn(BaseModel):
    """Which rules apply (``tracker.rights``): the US DOT refund counts from ``arrived_at``."""

    model_config = ConfigDict(extra="forbid")
    international: bool
    longest_flight_hours: float = Field(gt=0, le=24, description="The longest flight of the trip, in hours.")
    arrived_at: Instant = Field(description="When the customer's flight arrived (without the bag).")


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(examples=["baggage"])
    title: str = Field(min_length=1, max_length=300)
    customer: CustomerIn
    owner: str = Field(description="The partner that holds the customer relationship.")
    parties: list[PartyIn] = Field(default_factory=list, max_length=50)
    external_refs: dict[str, str] = Field(default_factory=dict, examples=[{"worldtracer": "JFKUA12345"}])
    status: str | None = Field(default=None, description="Default: the case type's initial status.")
    itinerary: ItineraryIn | None = None

    @field_validator("external_refs")
    @classmethod
    def _refs(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 20:
            raise ValueError("at most 20 external references")
        for kind, ref in value.items():
            # Stored normalized (no spaces, upper case), and upper-casing can lengthen text ("ß" -> "SS").
            if not (1 <= len(kind) <= 40) or not (1 <= len(normalize_external(ref)) <= 100):
                raise ValueError("external reference kinds are 1-40 characters, values 1-100")
        return value


def normalize_external(value: str) -> str:
    """External references are matched without spaces and case: "jfkua 12345" finds JFKUA12345."""
    return "".join(value.split()).upper()


class PartyOut(BaseModel):
    partner: str
    role: str
    responsible: bool
    state: PartyState
    cadence: Duration
    last_update_at: dt.datetime | None
    next_update_due: dt.datetime | None
    overdue_since: dt.datetime | None = None
    reminders_sent: int = 0
    acked_until: dt.datetime | None = Field(default=None, description="Acknowledged: the ladder waits until then.")
    ack_reason: str | None = None


class AckIn(BaseModel):
    """A late party says why, and by when it will update: at most 24 hours ahead."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=300, examples=["Held in customs until tomorrow morning"])
    until: Instant = Field(description="When it will update; the escalation ladder waits until then.")


class CustomerOut(BaseModel):
    name: str | None
    phone: str | None
    email: str | None
    locale: str
    timezone: str
    channels: list[str]
    sms_opted_out: bool
    email_opted_out: bool
    whatsapp_opted_out: bool = False


class CaseOut(BaseModel):
    ref: str
    type: str
    title: str
    status: str
    status_label: str
    status_url: str | None = Field(default=None, description="The customer's status link (staff and owner only).")
    owner: str
    parties: list[PartyOut]
    customer: CustomerOut | None = Field(default=None, description="Staff and the owner partner only.")
    external_refs: dict[str, str]
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    resolution: str | None
    deadline_at: dt.datetime | None
    satisfaction: str | None
    eta: dt.datetime | None = Field(default=None, description="The latest expected arrival a party announced.")
    eta_first: dt.datetime | None = Field(default=None, description="The first one: the promise it is held to.")
    delivered_at: dt.datetime | None = Field(default=None, description="When the item reached the customer.")
    itinerary: dict | None = None
    last_seq: int
    last_hash: str


class CaseList(Page[CaseOut]):
    """One page; pass ``next_cursor`` back as ``cursor`` for the next."""


class EventIn(BaseModel):
    """A status update or note. At least one field besides the timing ones is needed."""

    model_config = ConfigDict(extra="forbid")
    status: str | None = Field(default=None, max_length=40)
    message: str | None = Field(default=None, max_length=2000, description="Shown to the customer.")
    internal_note: str | None = Field(default=None, max_length=8000, description="Never shown to the customer.")
    location: str | None = Field(default=None, max_length=100)
    eta: Instant | None = None
    occurred_at: Instant | None = None
    next_update_by: Instant | None = Field(default=None, description="A promise to update by then.")
    visibility: Visibility | None = Field(
        default=None, description="Default: public when there is a message or a notified status, else parties."
    )

    @model_validator(mode="after")
    def _something(self) -> EventIn:
        if not any((self.status, self.message, self.internal_note, self.location, self.eta, self.next_update_by)):
            raise ValueError("an update needs at least one of status, message, internal_note, location, eta")
        return self


class EventOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    seq: int
    type: str
    actor: str
    visibility: Visibility
    occurred_at: dt.datetime
    received_at: dt.datetime
    hash: str
    prev_hash: str
    signed: bool = Field(description="True when a partner's verified signature is kept with the event.")
    keyid: str | None = None


class EventList(Page[EventOut]):
    """One page; pass ``next_cursor`` back as ``cursor`` for the next."""


class PartyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str | None = Field(default=None, min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$")
    responsible: bool | None = None
    cadence: Duration | None = None
    released: bool | None = Field(default=None, description="true releases the party from the case.")


class HandoffIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    to: str
    from_: str | None = Field(default=None, alias="from", description="Staff only; default: the caller.")
    note: str | None = Field(default=None, max_length=2000)
    accept_within: Duration | None = None


class HandoffOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: int
    from_: str | None = Field(serialization_alias="from", validation_alias="from")
    to: str
    state: Literal["requested", "accepted", "withdrawn"]
    note: str | None
    requested_at: dt.datetime
    accept_by: dt.datetime
    accepted_at: dt.datetime | None


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resolution: str = Field(min_length=1, max_length=2000)
    status: str | None = Field(default=None, description="A terminal status; default 'closed'.")
    message: str | None = Field(default=None, max_length=2000, description="Shown to the customer.")


class HandoffList(Page[HandoffOut]):
    """One page; pass ``next_cursor`` back as ``cursor`` for the next."""


class StatusLinkOut(BaseModel):
    ref: str
    status_url: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class NudgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000, description="Shown to the partner.")


class NudgeOut(BaseModel):
    seq: int
    partner: str
    nudged_at: dt.datetime
    reminders_sent: int
