"""Status by text message: the customer texts Baton's number and gets an answer at once.

1. STOP (and its synonyms) opts the number out of SMS on every case; START opts it back in;
   HELP explains. These work for any sender.
2. The sender's number finds their open cases. An unknown number learns nothing about any case.
3. A reference in the text picks a case (if it is the sender's); a reference whose check
   character is wrong is answered as a probable typo; STATUS (or nothing) answers for the only
   open case, or lists the references when there are several.
4. Any other text becomes a customer message on the sender's only open case, and reaches the
   owner partner by webhook.
5. WhatsApp arrives on the same webhook (``From: whatsapp:+E164``) and gets the same answers, sent
   back over WhatsApp by Twilio (the reply is inside the 24-hour window the message opened). It
   records the time of the message on the number's cases (the window for later updates), and its
   STOP and START apply to WhatsApp only.

Twilio retries a webhook it got no answer to, and a captured signed webhook can be posted again:
each ``MessageSid`` is claimed in ``inbound_messages`` in the transaction that acts on it, so a
second delivery is answered with nothing to send and changes nothing. Claims are kept 30 days.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.customer_messages import CustomerView, render_sms
from notifications.sms_text import to_gsm7
from tracker.models import Case, CaseType, InboundMessage
from tracker.refs import ParsedRef, find_refs_in_text, parse_ref
from tracker.status import post_customer_message, status_of
from tracker.timeline import append_event
from kernel.locales import LOCALES, N_
from kernel.validation import phone_number

# Far past Twilio's retries. Its signature has no timestamp: a capture replayed after this is acted on again.
INBOUND_RETENTION = dt.timedelta(days=30)
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "STOPP", "ARRET", "ARRÊT", "BAJA"}
START_WORDS = {"START", "UNSTOP", "YES"}
HELP_WORDS = {"HELP", "INFO", "HILFE", "AIDE", "AYUDA", "AIUTO", "HULP", "AJUDA", "POMOC"}
STATUS_WORDS = {"STATUS", "STAND", "STATUT", "ESTADO", "STATO", "?"}
# A reference with a space for its dash ("bag 7kq3x9t"), which find_refs_in_text does not read.
_SPACED_REF = re.compile(r"(?<![0-9A-Za-z])[A-Za-z]{2,5}\s+[0-9A-Za-z]{7}(?![0-9A-Za-z])")

# What Baton answers, in the sender's language (translated in kernel/translations; a reply is
# one SMS, so GSM-7 letters keep it short).
UNKNOWN = N_("Baton: we have no open case for this number. Please use the link in our messages, or contact the "
             "company that opened your case.")
STOPPED = N_("Baton: you will no longer get text messages from us. Reply START to get them again.")
STARTED = N_("Baton: text messages are on again. Reply STOP to stop them.")
WHATSAPP_STOPPED = N_("Baton: you will no longer get WhatsApp messages from us. Reply START to get them again.")
WHATSAPP_STARTED = N_("Baton: WhatsApp messages are on again. Reply STOP to stop them.")
HELP = N_("Baton: reply STATUS for the state of your case, or the case reference (e.g. BAG-7KQ3X9T). Any other "
          "text is passed to the team handling your case. STOP to stop texts.")
TYPO = N_("Baton: {ref} does not look like a valid reference; please check it.")
NOT_YOURS = N_("Baton: we have no open case {ref} for this number.")
CHOOSE = N_("Baton: you have several open cases: {refs}. Reply with the reference.")
CHOOSE_MESSAGE = N_("Baton: you have several open cases: {refs}. Please start your message with the reference.")
PASSED_ON = N_("Baton: thank you, we have passed your message on ({ref}). We will reply here.")


def _say(locale: str, message: str, **values: str) -> str:
    return to_gsm7(LOCALES.words(locale)(message, **values))


def _yours(locale: str, cases: Sequence[Case]) -> str:
    """The sender's open cases, after a reference that is not one of them."""
    refs = ", ".join(c.ref for c in cases)
    t = LOCALES.words(locale)
    return to_gsm7(t.plural("Your open case: {refs}.", "Your open cases: {refs}.", len(cases), refs=refs))


async def claim_message(*, session: AsyncSession, sid: str, now: dt.datetime) -> bool:
    """Claim a MessageSid in the caller's transaction; False when it was already processed (a replay)."""
    key = sid if len(sid) <= 64 else hashlib.sha256(sid.encode()).hexdigest()  # Twilio's are 34 characters
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(InboundMessage)
    # A concurrent twin waits on the primary key until the first commits, then inserts nothing.
    result = await session.execute(
        insert.values(sid=key, received_at=now).on_conflict_do_nothing(index_elements=["sid"])
        .returning(InboundMessage.sid)
    )
    return result.first() is not None


async def purge_inbound_messages(*, session: AsyncSession, now: dt.datetime) -> int:
    """Forget MessageSids claimed more than 30 days ago."""
    result = await session.execute(delete(InboundMessage).where(InboundMessage.received_at < now - INBOUND_RETENTION))
    return result.rowcount or 0


async def handle_inbound_sms(
    *, session: AsyncSession, sender: str, text: str, now: dt.datetime, base_url: str
) -> str:
    """Answer one inbound SMS or WhatsApp message; the caller commits and replies with the returned text."""
    channel = "whatsapp" if sender.startswith("whatsapp:") else "sms"
    try:
        number = phone_number(sender.removeprefix("whatsapp:"))
    except ValueError:
        return _say("en", UNKNOWN)
    words = text.strip().split()
    keyword = words[0].upper().strip(".!") if words else ""
    cases = list(
        (
            await session.scalars(
                select(Case).where(Case.customer_phone == number, Case.closed_at.is_(None))
                .order_by(Case.opened_at.desc()).with_for_update()
            )
        ).all()
    )
    locale = cases[0].customer_locale if cases else "en"
    if channel == "whatsapp":
        await _whatsapp_wrote(session, number, now)

    if keyword in STOP_WORDS and len(words) <= 2:
        await _set_opt_out(session, number, True, now, channel)
        return _say(locale, WHATSAPP_STOPPED if channel == "whatsapp" else STOPPED)
    if keyword in START_WORDS and len(words) <= 2:
        await _set_opt_out(session, number, False, now, channel)
        return _say(locale, WHATSAPP_STARTED if channel == "whatsapp" else STARTED)
    if keyword in HELP_WORDS and len(words) <= 2:
        return _say(locale, HELP)
    if not cases:
        return _say("en", UNKNOWN)

    refs = ", ".join(c.ref for c in cases)
    prefixes = (await session.scalars(select(CaseType.prefix))).all()
    mentioned = find_refs_in_text(text, prefixes=prefixes) or _spaced_refs(text, prefixes, cases)
    if mentioned:
        first = mentioned[0]
        if not first.valid:
            return _say(locale, TYPO, ref=first.ref) + " " + _yours(locale, cases)
        chosen = next((c for c in cases if c.ref == first.ref), None)
        if chosen is None:
            return _say(locale, NOT_YOURS, ref=first.ref) + " " + _yours(locale, cases)
        rest = text.replace(first.text, "", 1).strip(" :,-")
        if rest and rest.upper() not in STATUS_WORDS:
            # "BAG-7KQ3X9T: the tag is 0016..." loses its leading reference; a reference inside a
            # sentence stays, or "Where is BAG-7KQ3X9T?" would reach the owner as "Where is ?".
            leading = text.strip().startswith(first.text)
            return await _pass_on(session, chosen, rest if leading else text.strip(), now, base_url, channel)
        return await _status_reply(session, chosen, now, base_url)

    if keyword in STATUS_WORDS or not words:
        if len(cases) > 1:
            return _say(locale, CHOOSE, refs=refs)
        return await _status_reply(session, cases[0], now, base_url)
    if len(cases) > 1:
        return _say(locale, CHOOSE_MESSAGE, refs=refs)
    return await _pass_on(session, cases[0], text, now, base_url, channel)


async def _pass_on(
    session: AsyncSession, case: Case, text: str, now: dt.datetime, base_url: str, channel: str = "sms"
) -> str:
    """Free text is a message to the case's owner; the reply confirms it and gives the status and link.

    "Where is BAG-7KQ3X9T?" is a question no keyword catches: the status in the same reply
    answers it, and the message still reaches the owner partner.
    """
    await post_customer_message(session=session, case=case, text=text, now=now, via=channel)
    passed = _say(case.customer_locale, PASSED_ON, ref=case.ref)
    return f"{passed}\n\n{await _status_reply(session, case, now, base_url)}"


def _spaced_refs(text: str, prefixes: Sequence[str], cases: list[Case]) -> list[ParsedRef]:
    """A reference typed with a space for its dash ("bag 7kq3x9t"), taken only when it is one of the
    sender's own cases: "my bag arrived" is a message, not a typo of BAG-ARR1VED."""
    own = {case.ref for case in cases}
    for match in _SPACED_REF.finditer(text):
        parsed = parse_ref(match.group(), prefixes=prefixes)
        if parsed is not None and parsed.valid and parsed.ref in own:
            return [parsed]
    return []


async def _status_reply(session: AsyncSession, case: Case, now: dt.datetime, base_url: str) -> str:
    view = await status_of(session=session, case=case)
    return render_sms(
        CustomerView(
            kind="update",
            ref=case.ref,
            case_type=case.type,
            first_name=view.first_name,
            locale=case.customer_locale,
            timezone=case.customer_timezone,
            status_label=view.status_label,
            holder_name=view.holder.name if view.holder else None,
            next_update_due=view.next_update_due,
            status_url=f"{base_url}/s/{case.status_token}",
            message=None,
            now=now,
        )
    )


async def _whatsapp_wrote(session: AsyncSession, number: str, now: dt.datetime) -> None:
    """The number wrote over WhatsApp: Twilio's 24-hour window for free text opens on all its cases."""
    await session.execute(
        update(Case).where(Case.customer_phone == number).values(whatsapp_inbound_at=now)
        .execution_options(synchronize_session="fetch")
    )


async def _set_opt_out(session: AsyncSession, number: str, opted_out: bool, now: dt.datetime,
                       channel: str = "sms") -> None:
    """STOP and START apply to every case of the number, open or closed, on the channel they came by."""
    flag = "whatsapp_opted_out" if channel == "whatsapp" else "sms_opted_out"
    cases = (await session.scalars(select(Case).where(Case.customer_phone == number).with_for_update())).all()
    for case in cases:
        if getattr(case, flag) != opted_out:
            setattr(case, flag, opted_out)
            append_event(session=session, case=case,
                         type=f"customer.{channel}_opt_out" if opted_out else f"customer.{channel}_opt_in",
                         actor="customer", visibility="internal", body={"channel": channel, "via": channel}, now=now)
    await session.flush()
