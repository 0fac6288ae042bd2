"""Telling the customer before they have to ask: triggers, coalescing, quiet hours, caps, fallback.

1. A trigger (case opened, a customer-visible update, custody passing, an escalation, the
   resolution, the deadline) queues one outbox row per channel the customer uses, without text.
2. Coalescing is leading-edge: the first trigger after a quiet spell (no message on that channel
   in the last coalescing window) goes at once; a trigger within the window after a message waits
   for the window's end, and every trigger that arrives while a row is still waiting merges into
   it, so a burst of updates becomes one message, sent when the window closes. "Case opened" and
   the time-critical kinds (``URGENT_KINDS``: out for delivery, the PIN, delivered) are never held
   (quiet hours aside) and never merged into.
3. The text is rendered when the dispatcher picks the row up, from the case as it is then (the
   latest state, holder and due time), in the customer's language and time zone.
4. SMS and WhatsApp wait out quiet hours in the customer's zone and one daily cap per case that
   counts both; a channel that fails for good (invalid number, opted out, WhatsApp's window
   closed) falls back once along WhatsApp → SMS → email.
5. WhatsApp (opt-in, to the customer's phone): inside 24 hours after the customer's last inbound
   WhatsApp message the text goes as free text; outside it (the opening message included: it is
   business-initiated) only as an approved template (``BATON_WHATSAPP_TEMPLATES``) with the
   variables ``{"1": reference, "2": status label, "3": status link}``; with no template for the
   kind (or "update") in the customer's locale chain, the message goes by SMS (then email) instead.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.customer_messages import CustomerView, render_email, render_sms
from notifications.dispatcher import Defer, Prepared, Suppress
from notifications.models import Notification
from notifications.outbox import enqueue
from notifications.transports import Outgoing, TransportError
from partners.models import Partner
from tracker.casetypes import case_type
from kernel.config import Settings
from kernel.db import settings_of
from kernel.locales import LOCALES
from tracker.models import Case, Delivery, Party
from tracker.parties import UNWATCHED

KIND_RANK = {"update": 0, "delivery_confirmed": 1, "opened": 1, "escalation": 2, "deadline": 3, "resolution": 4,
             "out_for_delivery": 5, "delivered": 6, "rights_reminder": 1, "refund_due": 2, "claim_decided": 2,
             "claim_paid": 2}
# Sent at once, never held for the coalescing window: the driver is on the way, or has been.
URGENT_KINDS = frozenset({"out_for_delivery", "delivered"})
# A status update that says the same (a courier's "out for delivery" without a delivery booked).
URGENT_STATUSES = frozenset({"out_for_delivery"})


# A channel that fails for good falls back along this order, each channel at most once per message.
FALLBACKS = {"whatsapp": ("sms", "email"), "sms": ("email",), "email": ("sms",)}
# Twilio's channels, which share quiet hours and the daily cap.
PHONE_CHANNELS = ("sms", "whatsapp")
WHATSAPP_WINDOW = dt.timedelta(hours=24)


def _contact(case: Case, channel: str) -> str | None:
    if channel == "sms":
        return None if case.sms_opted_out else case.customer_phone
    if channel == "whatsapp":
        return None if case.whatsapp_opted_out else case.customer_phone
    return None if case.email_opted_out else case.customer_email


def whatsapp_window_open(case: Case, now: dt.datetime) -> bool:
    """Twilio allows free text on WhatsApp only within 24 hours after the customer's last message."""
    wrote = case.whatsapp_inbound_at
    return wrote is not None and now - wrote < WHATSAPP_WINDOW


def whatsapp_template(settings: Settings, kind: str, locale: str) -> str | None:
    """The approved template for ``kind`` (else "update") in ``locale`` (through its fallbacks to en)."""
    templates = settings.whatsapp_templates
    by_locale = templates.get(kind) or templates.get("update") or {}
    return LOCALES.label(by_locale, locale, missing="") or None


def sms_country_allowed(phone: str, settings: Settings) -> bool:
    """Against SMS pumping: with ``BATON_SMS_COUNTRIES`` set, SMS go only to numbers of those countries."""
    allowed = settings.sms_countries
    if not allowed:
        return True
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return False
    return region in allowed


def reachable(case: Case) -> bool:
    """The customer can be told something on at least one of their channels."""
    return any(_contact(case, channel) for channel in case.customer_channels or [])


async def notify_customer(
    *,
    session: AsyncSession,
    case: Case,
    kind: str,
    now: dt.datetime,
    trigger: dict[str, Any] | None = None,
    urgent: bool = False,
) -> int:
    """Queue (or merge into a waiting) customer message on each of the customer's channels.

    ``urgent`` (out for delivery, delivered): a message of its own, due at once.
    """
    settings = settings_of(session)  # the runtime's, carried by the session (kernel.db)
    queued = 0
    entry = {"kind": kind, "at": now.isoformat(), **(trigger or {})}
    at_once = urgent or kind == "opened" or kind in URGENT_KINDS
    window = dt.timedelta(seconds=settings.coalesce_seconds)
    for channel in case.customer_channels or []:
        recipient = _contact(case, channel)
        if recipient is None:
            continue
        if not at_once and await _merge(session, case, channel, entry, now):
            continue
        due = now if at_once else await _window_end(session, case, channel, now, window)
        queued += await enqueue(
            session=session, channel=channel, audience="customer", kind=f"customer.{kind}", recipient=recipient,
            now=now, case_id=case.id, payload={"kind": kind, "triggers": [entry]}, not_before=due,
        )
    return queued


async def _window_end(
    session: AsyncSession, case: Case, channel: str, now: dt.datetime, window: dt.timedelta
) -> dt.datetime:
    """When a new message on ``channel`` may go: now after a quiet spell, else when the last one's window closes."""
    # The last message that went (or is going: claimed, not yet recorded) on this channel.
    last = await session.scalar(
        select(func.max(func.coalesce(Notification.sent_at, Notification.created_at)))
        .where(Notification.case_id == case.id, Notification.channel == channel,
               Notification.audience == "customer", Notification.state.in_(("sending", "sent", "delivered", "logged")))
    )
    if last is None:
        return now
    if isinstance(last, str):  # SQLite answers an aggregate of a coalesce as text
        last = dt.datetime.fromisoformat(last)
    last = last if last.tzinfo else last.replace(tzinfo=dt.timezone.utc)
    return max(now, last + window)


async def _merge(session: AsyncSession, case: Case, channel: str, entry: dict[str, Any], now: dt.datetime) -> bool:
    waiting = await session.scalar(
        select(Notification)
        .where(Notification.case_id == case.id, Notification.channel == channel,
               Notification.audience == "customer", Notification.state == "pending")
        .order_by(Notification.id.desc())
        .limit(1)
    )
    if waiting is None:
        return False
    payload = dict(waiting.payload or {})
    kind = max((payload.get("kind", "update"), entry["kind"]), key=lambda k: KIND_RANK.get(k, 0))
    merged = {"kind": kind, "triggers": [*payload.get("triggers", []), entry][-20:]}
    # Conditional: if the dispatcher claimed the row meanwhile, this trigger gets a row of its own.
    result = await session.execute(
        update(Notification)
        .where(Notification.id == waiting.id, Notification.state == "pending")
        .values(payload=merged, kind=f"customer.{kind}", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


# ------------------------------------------------------------------ rendering at send time


def _in_quiet_hours(local: dt.datetime, start: dt.time, end: dt.time) -> bool:
    t = local.time()
    return (start <= t or t < end) if start > end else (start <= t < end)


def _next_local(local: dt.datetime, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The next moment the customer's wall clock shows ``at``, in UTC."""
    candidate = dt.datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = dt.datetime.combine(local.date() + dt.timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(dt.timezone.utc)


class CustomerRenderer:
    """The dispatcher's renderer for customer rows: decides now, later, or never, and the words."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __call__(self, session: AsyncSession, rows: Sequence[Notification], now: dt.datetime) -> dict[int, Prepared]:
        case_ids = {r.case_id for r in rows if r.case_id is not None}
        cases = {c.id: c for c in (await session.scalars(select(Case).where(Case.id.in_(case_ids)))).all()}
        holders = await self._holders(session, case_ids)
        prepared: dict[int, Prepared] = {}
        # Phone messages this batch already lets go, per case: a case's SMS and WhatsApp rows come due
        # together, and the cap counts only what was sent before the batch.
        granted: dict[int, int] = {}
        for row in rows:
            case = cases.get(row.case_id or -1)
            result = await self._prepare(session, row, case, holders.get(row.case_id or -1), now,
                                         granted.get(row.case_id or -1, 0))
            if isinstance(result, Outgoing) and result.channel in PHONE_CHANNELS and row.case_id is not None:
                granted[row.case_id] = granted.get(row.case_id, 0) + 1
            prepared[row.id] = result
        return prepared

    async def _holders(self, session: AsyncSession, case_ids: set[int]) -> dict[int, tuple[str, Party]]:
        """Who holds the item: the responsible party (a non-owner first), with its partner's name."""
        rows = (
            await session.execute(
                select(Party, Partner.name)
                .join(Partner, Partner.id == Party.partner_id)
                .where(Party.case_id.in_(case_ids), Party.responsible.is_(True),
                       Party.state.not_in(UNWATCHED))
                .order_by(Party.joined_at)
            )
        ).all()
        holders: dict[int, tuple[str, Party]] = {}
        for party, name in rows:
            if party.case_id not in holders or party.role != "owner":
                holders[party.case_id] = (name, party)
        return holders

    async def _prepare(
        self, session: AsyncSession, row: Notification, case: Case | None, holder: tuple[str, Party] | None,
        now: dt.datetime, granted: int = 0,
    ) -> Prepared:
        if case is None:
            return Suppress("the case no longer exists")
        recipient = _contact(case, row.channel)
        if recipient is None:
            return Suppress(f"no {row.channel} contact, or the customer opted out")
        zone = ZoneInfo(case.customer_timezone)
        local = now.astimezone(zone)
        if row.channel == "sms" and not sms_country_allowed(recipient, self.settings):
            return Suppress("SMS to this number's country is not enabled (BATON_SMS_COUNTRIES)")
        if row.channel in PHONE_CHANNELS:
            start, end = self.settings.quiet_window()
            if _in_quiet_hours(local, start, end):
                return Defer(_next_local(local, end, zone), "quiet hours in the customer's time zone")
            if await self._sent_today(session, case, local, zone) + granted >= self.settings.sms_daily_cap:
                return Defer(_next_local(local, end, zone), "daily SMS cap for this case reached")
        view = await self._view(session, row, case, holder, now)
        if row.channel == "sms":
            return Outgoing(id=row.id, channel="sms", kind=row.kind, recipient=recipient, message_id=row.message_id,
                            subject=None, body_text=render_sms(view), body_html=None, payload=None)
        if row.channel == "whatsapp":
            return await self._whatsapp(session, row, case, view, recipient, now)
        subject, text, html = render_email(view)
        domain = self.settings.email_from.rpartition("@")[2].rstrip(">") or "baton.local"
        unsubscribe = f"{self._base()}/s/{case.status_token}/unsubscribe"
        headers = {
            "Reply-To": f"case+{case.ref.lower()}@{domain}",
            "List-Unsubscribe": f"<{unsubscribe}>, <mailto:unsubscribe+{case.ref.lower()}@{domain}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Baton-Case": case.ref,
        }
        return Outgoing(id=row.id, channel="email", kind=row.kind, recipient=recipient, message_id=row.message_id,
                        subject=subject, body_text=text, body_html=html, payload=None, headers=headers)

    async def _whatsapp(
        self, session: AsyncSession, row: Notification, case: Case, view: CustomerView, recipient: str,
        now: dt.datetime,
    ) -> Prepared:
        """Free text inside the 24-hour window, else the approved template, else the message goes by SMS."""
        address = f"whatsapp:{recipient}"
        if whatsapp_window_open(case, now):
            return Outgoing(id=row.id, channel="whatsapp", kind=row.kind, recipient=address,
                            message_id=row.message_id, subject=None, body_text=render_sms(view), body_html=None,
                            payload=None)
        template = whatsapp_template(self.settings, view.kind, case.customer_locale)
        if template is None:
            # Never silence: the same triggers go as the next channel's message (dispatched in a later batch).
            if await fall_back(session=session, case=case, row=row, now=now):
                return Suppress("outside WhatsApp's 24-hour window and no template: sent by another channel")
            return Suppress("outside WhatsApp's 24-hour window and no template; another channel carries it")
        variables = json.dumps({"1": case.ref, "2": view.status_label, "3": view.status_url}, ensure_ascii=False)
        return Outgoing(id=row.id, channel="whatsapp", kind=row.kind, recipient=address, message_id=row.message_id,
                        subject=None, body_text=f"[WhatsApp template {template}] {variables}", body_html=None,
                        payload={"content_sid": template, "content_variables": variables})

    async def _sent_today(self, session: AsyncSession, case: Case, local: dt.datetime, zone: ZoneInfo) -> int:
        """SMS and WhatsApp messages sent to the case's customer since their local midnight (one cap for both)."""
        midnight = dt.datetime.combine(local.date(), dt.time(0), tzinfo=zone).astimezone(dt.timezone.utc)
        return await session.scalar(
            select(func.count()).select_from(Notification).where(
                Notification.case_id == case.id, Notification.channel.in_(PHONE_CHANNELS),
                Notification.audience == "customer", Notification.sent_at >= midnight,
            )
        ) or 0

    def _base(self) -> str:
        return self.settings.callback_base_url()

    async def _view(
        self, session: AsyncSession, row: Notification, case: Case, holder: tuple[str, Party] | None,
        now: dt.datetime,
    ) -> CustomerView:
        payload = row.payload or {}
        triggers = payload.get("triggers", [])
        kind = payload.get("kind", "update")
        ctype = await case_type(session=session, code=case.type)
        messages = [t["message"] for t in triggers if t.get("message")]
        escalation = next((t for t in reversed(triggers) if t.get("kind") == "escalation"), {})
        chased = escalation.get("chased_at")
        window = next((t for t in reversed(triggers) if t.get("window_start")), {})
        asked = next((t for t in reversed(triggers) if t.get("kind") in ("claim_decided", "claim_paid")), {})
        reminder = next((t for t in reversed(triggers) if t.get("kind") == "rights_reminder"), {})
        rule = next((r for r in ctype.rules if r["code"] == reminder.get("rule")), None)
        pin = None
        if kind == "out_for_delivery":  # read at send time: the PIN is never copied into the outbox payload
            pin = await session.scalar(select(Delivery.pin).where(Delivery.case_id == case.id))
        return CustomerView(
            kind=kind,
            ref=case.ref,
            case_type=case.type,
            first_name=(case.customer_name or "").split()[0] if case.customer_name else None,
            locale=case.customer_locale,
            timezone=case.customer_timezone,
            status_label=ctype.label(case.status, case.customer_locale),
            holder_name=holder[0] if holder else None,
            next_update_due=holder[1].next_update_due if holder else None,
            status_url=f"{self._base()}/s/{case.status_token}",
            message=messages[-1] if messages else None,
            waiting_on=escalation.get("waiting_on"),
            chased_at=dt.datetime.fromisoformat(chased) if chased else None,
            resolution=case.resolution if kind == "resolution" else None,
            now=now,
            eta=case.eta,
            window_start=dt.datetime.fromisoformat(window["window_start"]) if window else None,
            window_end=dt.datetime.fromisoformat(window["window_end"]) if window else None,
            pin=pin,
            right=LOCALES.label(rule.get("labels", {}), case.customer_locale, missing="") if rule else None,
            due_at=dt.datetime.fromisoformat(reminder["due_at"]) if reminder.get("due_at") else None,
            decision=asked.get("decision"),
            amount=asked.get("amount"),
            currency=asked.get("currency"),
        )


async def on_permanent_failure(session: AsyncSession, row: Notification, error: TransportError, now: dt.datetime) -> None:
    """A customer channel failed for good: honour an opt-out, and fall back (WhatsApp → SMS → email) once."""
    if row.audience != "customer" or row.case_id is None:
        return
    case = await session.get(Case, row.case_id)
    if case is None:
        return
    if row.channel == "sms" and error.code == 21610:
        case.sms_opted_out = True
    if row.channel == "whatsapp" and error.code == 21610:
        case.whatsapp_opted_out = True
    await fall_back(session=session, case=case, row=row, now=now)


async def fall_back(*, session: AsyncSession, case: Case, row: Notification, now: dt.datetime) -> bool:
    """Queue ``row``'s message on the next channel that can carry it; False when none (or one already does)."""
    tried = {row.channel, *(row.payload or {}).get("fallback_tried", [])}
    for other in FALLBACKS.get(row.channel, ()):
        if other in tried:
            continue  # each fallback once: an SMS that stood in for WhatsApp never goes back to it
        recipient = _contact(case, other)
        if recipient is None:
            continue
        if other in (case.customer_channels or []):
            return False  # that channel already carries every message
        return await enqueue(
            session=session, channel=other, audience="customer", kind=row.kind, recipient=recipient, now=now,
            case_id=case.id, payload={**(row.payload or {}), "fallback_for": row.id, "fallback_tried": sorted(tried)},
            dedupe_key=f"fallback:{row.id}",
        )
    return False
