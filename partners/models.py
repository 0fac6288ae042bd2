"""Partners, their signing keys, and the nonces they have used."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kernel.db import Base, BigID, JSONType, UTCDateTime


class Partner(Base):
    __tablename__ = "partners"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40), default="other")
    ops_email: Mapped[str | None] = mapped_column(String(320))
    ops_phone: Mapped[str | None] = mapped_column(String(20))
    # The rest of the contact roster an escalation ladder may name (``tracker.ladders``).
    duty_email: Mapped[str | None] = mapped_column(String(320))
    duty_phone: Mapped[str | None] = mapped_column(String(20))
    account_email: Mapped[str | None] = mapped_column(String(320))  # the operator's account manager for it
    ladder: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # {"levels": [...]}; none: the case type's
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    default_cadence_seconds: Mapped[int] = mapped_column(Integer, default=6 * 3600)
    escalate_after_seconds: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    calendar: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Circuit breaker on the partner's webhook receiver: consecutive failures, and while open,
    # when its deliveries may be tried again. Only this partner's deliveries wait.
    webhook_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    webhook_paused_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A courier's delivery windows, "HH:MM-HH:MM" in its own time zone, offered for the next days.
    delivery_slots: Mapped[list[str] | None] = mapped_column(JSONType)


class PartnerKey(Base):
    """A signing key. Ed25519 keys hold only the public half; HMAC keys hold the shared secret."""

    __tablename__ = "partner_keys"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"), index=True)
    keyid: Mapped[str] = mapped_column(String(200), unique=True)
    alg: Mapped[str] = mapped_column(String(20))
    public_key: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class SignatureNonce(Base):
    """A nonce accepted from a key. Kept until the signature skew window has passed."""

    __tablename__ = "signature_nonces"

    keyid: Mapped[str] = mapped_column(String(200), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_signature_nonces_expires_at", "expires_at"),)
