"""The outbox: one row per message to send, written in the transaction of the event that caused it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kernel.db import Base, BigID, JSONType, UTCDateTime

CHANNELS = ("webhook", "email", "sms", "whatsapp")
# pending -> sending -> sent -> delivered | failed;  suppressed (opted out, capped); logged (no provider
# configured: rendered and kept, for the offline demo); dead (retries exhausted: dead-lettered).
STATES = ("pending", "sending", "sent", "delivered", "failed", "suppressed", "logged", "dead")


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(10))
    audience: Mapped[str] = mapped_column(String(20))  # partner | supervisors | customer
    partner_id: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(2000))
    subject: Mapped[str | None] = mapped_column(String(300))
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Sent with the message (webhook-id, Message-ID) so a receiver can drop a duplicate delivery.
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    # At most one notification per key (one apology per escalation, one reminder per lateness).
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_notifications_state_next_attempt_at", "state", "next_attempt_at"),)
