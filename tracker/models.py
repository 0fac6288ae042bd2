"""The case domain's tables: case types, cases, parties, handoffs, events; staff and idempotency."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

import notifications.models  # noqa: F401  (registers the outbox on the shared metadata)
import partners.models  # noqa: F401  (registers partners.* tables on the shared metadata)
from kernel.db import Base, BigID, JSONType, UTCDateTime


class CaseType(Base):
    """A kind of case, as data: status vocabulary, cadence, escalation ladder, deadline."""

    __tablename__ = "case_types"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(5), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(20), unique=True)
    type: Mapped[str] = mapped_column(ForeignKey("case_types.code"))
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(40))
    owner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)

    customer_name: Mapped[str | None] = mapped_column(String(200))
    customer_phone: Mapped[str | None] = mapped_column(String(20), index=True)
    customer_email: Mapped[str | None] = mapped_column(String(320), index=True)
    customer_locale: Mapped[str] = mapped_column(String(10), default="en")
    customer_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    customer_channels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    sms_opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    email_opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    # STOP over WhatsApp stops WhatsApp only; the last inbound WhatsApp message opens Twilio's 24-hour window.
    whatsapp_opted_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    whatsapp_inbound_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    # Split token: the locator finds the row, the whole token is compared in constant time.
    status_token: Mapped[str] = mapped_column(String(64))
    status_token_locator: Mapped[str] = mapped_column(String(12), index=True)

    external_refs: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(Text)
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    deadline_passed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    satisfaction: Mapped[str | None] = mapped_column(String(20))
    satisfaction_comment: Mapped[str | None] = mapped_column(Text)
    satisfaction_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    # Set by `baton erase`: the customer's data is gone and the status link opens nothing.
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The latest expected arrival a party announced, and the first one (the promise scorecards hold it to).
    eta: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    eta_first: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When the item reached the customer (proof of delivery, or closed as delivered): rights count from it.
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # {"international": bool, "longest_flight_hours": number, "arrived_at": time}: which rules apply.
    itinerary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # A practice case for a partner that just joined (``tracker.onboarding``): nobody is watched,
    # no customer is told, and the complaint department's figures leave it out.
    sandbox: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_cases_status_opened_at", "status", "opened_at"),)


class ExternalRef(Base):
    """An external reference (WorldTracer file, bag tag) indexed for search, normalized upper-case."""

    __tablename__ = "case_external_refs"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(String(100), index=True)


class Party(Base):
    __tablename__ = "parties"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    role: Mapped[str] = mapped_column(String(40))
    responsible: Mapped[bool] = mapped_column(Boolean, default=False)
    cadence_seconds: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default="on_track")
    joined_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_update_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    next_update_due: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    promised_by: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    overdue_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    last_nudged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When Baton last chased the party (the late reminder or a nudge): what the customer is told.
    last_reminded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    customer_told_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When the watchdog must next look at this party; NULL when nothing can become due.
    watch_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The escalation ladder of the current late episode (``tracker.ladders``): levels fired, and
    # the instant its level times count from (moved on by acknowledged time).
    ladder_level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ladder_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # An acknowledgement: the late party said why and until when; the ladder waits until then.
    acked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    acked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ack_reason: Mapped[str | None] = mapped_column(String(300))
    acked_by: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (UniqueConstraint("case_id", "partner_id"),)


class Handoff(Base):
    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    from_partner_id: Mapped[str | None] = mapped_column(ForeignKey("partners.id"))
    to_partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), default="requested")
    note: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    accept_by: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    flagged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_handoffs_state_accept_by", "state", "accept_by"),)


class Event(Base):
    """One entry of a case's append-only timeline, chained to the previous one by its hash."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(120))
    partner_id: Mapped[str | None] = mapped_column(String(64))
    visibility: Mapped[str] = mapped_column(String(10))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    body_digest: Mapped[str] = mapped_column(String(64))
    # The request as signed by the partner: method, target URI, headers, and the exact body.
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("case_id", "seq"),
        Index("ix_events_partner_id_type_received_at", "partner_id", "type", "received_at"),
    )


class Attachment(Base):
    """A file kept as evidence: stored by the digest of its cleaned bytes (``tracker.evidence``)."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # the attachment.added event
    kind: Mapped[str] = mapped_column(String(20))
    visibility: Mapped[str] = mapped_column(String(10))
    # Who gave it: "customer", "partner:<id>" or "staff:<name>"; the customer's are erased with them.
    actor: Mapped[str] = mapped_column(String(120))
    partner_id: Mapped[str | None] = mapped_column(String(64))
    from_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    original_sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    thumbnail_sha256: Mapped[str | None] = mapped_column(String(64))
    filename: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Delivery(Base):
    """The customer's delivery request and its progress (``tracker.delivery`` moves its state)."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), unique=True)
    state: Mapped[str] = mapped_column(String(20))
    courier_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    handoff_id: Mapped[int | None] = mapped_column(ForeignKey("handoffs.id"))
    # Personal data: seen by staff, the owner and the courier only; erased with the customer.
    address: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    phone: Mapped[str | None] = mapped_column(String(20))
    instructions: Mapped[str | None] = mapped_column(Text)
    collect_at: Mapped[str | None] = mapped_column(String(3))
    window_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    window_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    requested_by: Mapped[str] = mapped_column(String(120))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    out_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    pin: Mapped[str | None] = mapped_column(String(8))
    pin_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    proof: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CaseDeadline(Base):
    """A rule's date on one case (``tracker.rights``): what the watchdog reminds of or fires, indexed."""

    __tablename__ = "case_deadlines"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(20))
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    remind_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reminded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When the watchdog next looks: the reminder, then (a refund) the due time; NULL when done.
    watch_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    fired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("case_id", "code"),)


class Claim(Base):
    """A customer's claim (``tracker.claims`` moves its state); amounts are decimal strings, never floats."""

    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    totals: Mapped[dict[str, str]] = mapped_column(JSONType)
    filed_by: Mapped[str] = mapped_column(String(120))
    filed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    answer_due: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # When the watchdog next looks (the answer's due time, then its escalation); NULL once answered.
    watch_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    overdue_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision: Mapped[str | None] = mapped_column(String(20))
    decided_amount: Mapped[str | None] = mapped_column(String(24))
    decided_currency: Mapped[str | None] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(120))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    paid_reference: Mapped[str | None] = mapped_column(String(200))
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class BagScan(Base):
    """A bag tag scanned by a partner (``tracker.scans``): kept 30 days while no open case has the tag."""

    __tablename__ = "bag_scans"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"))
    # sha-256 of partner, tag, time, point and station: the same scan sent twice is one.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    bag_tag: Mapped[str] = mapped_column(String(10), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    station: Mapped[str | None] = mapped_column(String(3))
    point: Mapped[str] = mapped_column(String(20))
    flight: Mapped[str | None] = mapped_column(String(10))
    note: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    matched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class DueMoment(Base):
    """A moment an update was due from a party, and whether it came by then: what on-time counts.

    Written when the moment is settled: met by an update before it (``tracker.parties.spoke``, on
    both write paths), missed when the watchdog finds it passed (or a handoff unaccepted).
    """

    __tablename__ = "due_moments"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    met: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (Index("ix_due_moments_partner_id_resolved_at", "partner_id", "resolved_at"),)


class PartyLink(Base):
    """A one-tap update link (``tracker.party_links``): one live link per party, only its hash kept."""

    __tablename__ = "party_links"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id", ondelete="CASCADE"), unique=True)
    partner_id: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(20))  # late | escalated | nudged | invited
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class PartnerInvitation(Base):
    """An invitation for a new partner to join (``tracker.onboarding``); only the link's hash is kept."""

    __tablename__ = "partner_invitations"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(String(64))
    partner: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the POST /v1/partners body the admin gave
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(20))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    joined_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    webhook_tested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    webhook_result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    sandbox_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))


class StaffToken(Base):
    """A staff bearer token (``source`` "token", from ``baton staff add``), or one console session
    signed in through the organization's identity provider (``source`` "oidc": it expires, sign-out
    revokes it, and its token is never shown to anyone, so it is no bearer token)."""

    __tablename__ = "staff_tokens"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120))  # the actor: staff:<name>; for "oidc", the email or subject
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(20), default="token", server_default="token")
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    display_name: Mapped[str | None] = mapped_column(String(200))  # the person's name, as the console greets them
    subject: Mapped[str | None] = mapped_column(String(255))  # the provider's "sub", stable when an email changes


class InboundMessage(Base):
    """A Twilio MessageSid already processed: a retried or replayed webhook is answered, not acted on twice."""

    __tablename__ = "inbound_messages"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(String(120))
    key: Mapped[str] = mapped_column(String(255))
    request_digest: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (UniqueConstraint("principal", "key"),)
