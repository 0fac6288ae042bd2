"""Status by text message: the customer texts Baton's number and gets an answer at once.

1. STOP (and its synonyms) opts the number out of SMS on every case; START opts it back in;
   HELP explains. These work for any sender.
2. The sender's number finds their open cases. An unknown number learns nothing about any case.
3. A reference in the text picks a case (if it is the sender's); a reference whose check
   character is wrong is answered as a probable typo; STATUS (or nothing) answers for the only
   open case, or lists the references when there are several.
4. Any other text becomes a customer message on the sender's only open case, and reaches the
   owner partner by webhook.

Twilio retries a webhook it got no answer to, and a captured signed webhook can be posted again:
each ``MessageSid`` is claimed in ``inbound_messages`` in the transaction that acts on it, so a
second delivery is answered with nothing to send and changes nothing. Claims are kept 30 days.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.customer_messages import CustomerView, render_sms
from notifications.sms_text import to_gsm7
from tracker.models import Case, CaseType, InboundMessage
from tracker.refs import ParsedRef, find_refs_in_text, parse_ref
from tracker.status import post_customer_message, status_of
from tracker.timeline import append_event
from kernel.validation import phone_number

# Far past Twilio's retries. Its signature has no timestamp: a capture replayed after this is acted on again.
INBOUND_RETENTION = dt.timedelta(days=30)
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "STOPP", "ARRET", "ARRÊT", "BAJA"}
START_WORDS = {"START", "UNSTOP", "YES"}
HELP_WORDS = {"HELP", "INFO", "HILFE", "AIDE", "AYUDA"}
STATUS_WORDS = {"STATUS", "STAND", "STATUT", "ESTADO", "?"}
# A reference with a space for its dash ("bag 7kq3x9t"), which find_refs_in_text does not read.
_SPACED_REF = re.compile(r"(?<![0-9A-Za-z])[A-Za-z]{2,5}\s+[0-9A-Za-z]{7}(?![0-9A-Za-z])")

REPLIES: dict[str, dict[str, str]] = {
    "en": {
        "unknown": "Baton: we have no open case for this number. Please use the link in our messages, or contact the company that opened your case.",
        "stopped": "Baton: you will no longer get text messages from us. Reply START to get them again.",
        "started": "Baton: text messages are on again. Reply STOP to stop them.",
        "help": "Baton: reply STATUS for the state of your case, or the case reference (e.g. BAG-7KQ3X9T). Any other text is passed to the team handling your case. STOP to stop texts.",
        "typo": "Baton: {ref} does not look like a valid reference; please check it.",
        "not_yours": "Baton: we have no open case {ref} for this number.",
        "choose": "Baton: you have several open cases: {refs}. Reply with the reference.",
        "choose_message": "Baton: you have several open cases: {refs}. Please start your message with the reference.",
        "yours": " Your open cases: {refs}.",
        "passed_on": "Baton: thank you, we have passed your message on ({ref}). We will reply here.",
    },
    "de": {
        "unknown": "Baton: Für diese Nummer gibt es keinen offenen Fall. Bitte nutzen Sie den Link aus unseren Nachrichten oder wenden Sie sich an das Unternehmen, das Ihren Fall eröffnet hat.",
        "stopped": "Baton: Sie erhalten keine SMS mehr von uns. Antworten Sie START, um sie wieder zu erhalten.",
        "started": "Baton: SMS sind wieder eingeschaltet. Antworten Sie STOP, um sie abzubestellen.",
        "help": "Baton: Antworten Sie STATUS für den Stand Ihres Falls oder mit der Fallnummer (z. B. BAG-7KQ3X9T). Anderer Text geht an das Team, das Ihren Fall bearbeitet. STOP beendet SMS.",
        "typo": "Baton: {ref} ist keine gültige Fallnummer; bitte prüfen Sie sie.",
        "not_yours": "Baton: Für diese Nummer gibt es keinen offenen Fall {ref}.",
        "choose": "Baton: Sie haben mehrere offene Fälle: {refs}. Antworten Sie mit der Fallnummer.",
        "choose_message": "Baton: Sie haben mehrere offene Fälle: {refs}. Bitte beginnen Sie Ihre Nachricht mit der Fallnummer.",
        "yours": " Ihre offenen Fälle: {refs}.",
        "passed_on": "Baton: Danke, wir haben Ihre Nachricht weitergegeben ({ref}). Wir antworten hier.",
    },
    "fr": {
        "unknown": "Baton : aucun dossier ouvert pour ce numéro. Utilisez le lien de nos messages ou contactez l'entreprise qui a ouvert votre dossier.",
        "stopped": "Baton : vous ne recevrez plus de SMS de notre part. Répondez START pour les recevoir à nouveau.",
        "started": "Baton : les SMS sont réactivés. Répondez STOP pour les arrêter.",
        "help": "Baton : répondez STATUT pour l'état de votre dossier, ou sa référence (ex. BAG-7KQ3X9T). Tout autre texte est transmis à l'équipe qui le traite. STOP pour arrêter les SMS.",
        "typo": "Baton : {ref} n'est pas une référence valide ; merci de la vérifier.",
        "not_yours": "Baton : aucun dossier ouvert {ref} pour ce numéro.",
        "choose": "Baton : vous avez plusieurs dossiers ouverts : {refs}. Répondez avec la référence.",
        "choose_message": "Baton : vous avez plusieurs dossiers ouverts : {refs}. Commencez votre message par la référence.",
        "yours": " Vos dossiers ouverts : {refs}.",
        "passed_on": "Baton : merci, nous avons transmis votre message ({ref}). Nous répondrons ici.",
    },
    "es": {
        "unknown": "Baton: no hay ningún caso abierto para este número. Use el enlace de nuestros mensajes o contacte con la empresa que abrió su caso.",
        "stopped": "Baton: ya no recibirá SMS nuestros. Responda START para volver a recibirlos.",
        "started": "Baton: los SMS vuelven a estar activados. Responda STOP para desactivarlos.",
        "help": "Baton: responda ESTADO para saber cómo va su caso, o la referencia (p. ej. BAG-7KQ3X9T). Cualquier otro texto se pasa al equipo que lo gestiona. STOP para no recibir SMS.",
        "typo": "Baton: {ref} no parece una referencia válida; revísela, por favor.",
        "not_yours": "Baton: no hay ningún caso abierto {ref} para este número.",
        "choose": "Baton: tiene varios casos abiertos: {refs}. Responda con la referencia.",
        "choose_message": "Baton: tiene varios casos abiertos: {refs}. Empiece su mensaje con la referencia.",
        "yours": " Sus casos abiertos: {refs}.",
        "passed_on": "Baton: gracias, hemos transmitido su mensaje ({ref}). Le responderemos aquí.",
    },
}


def _say(locale: str, key: str, **values: str) -> str:
    lang = locale.split("-")[0] if locale.split("-")[0] in REPLIES else "en"
    return to_gsm7(REPLIES[lang][key].format(**values))


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
    """Answer one inbound SMS; the caller commits and replies with the returned text."""
    try:
        number = phone_number(sender)
    except ValueError:
        return _say("en", "unknown")
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

    if keyword in STOP_WORDS and len(words) <= 2:
        await _set_opt_out(session, number, True, now)
        return _say(locale, "stopped")
    if keyword in START_WORDS and len(words) <= 2:
        await _set_opt_out(session, number, False, now)
        return _say(locale, "started")
    if keyword in HELP_WORDS and len(words) <= 2:
        return _say(locale, "help")
    if not cases:
        return _say("en", "unknown")

    refs = ", ".join(c.ref for c in cases)
    prefixes = (await session.scalars(select(CaseType.prefix))).all()
    mentioned = find_refs_in_text(text, prefixes=prefixes) or _spaced_refs(text, prefixes, cases)
    if mentioned:
        first = mentioned[0]
        if not first.valid:
            return _say(locale, "typo", ref=first.ref) + _say(locale, "yours", refs=refs)
        chosen = next((c for c in cases if c.ref == first.ref), None)
        if chosen is None:
            return _say(locale, "not_yours", ref=first.ref) + _say(locale, "yours", refs=refs)
        rest = text.replace(first.text, "", 1).strip(" :,-")
        if rest and rest.upper() not in STATUS_WORDS:
            # "BAG-7KQ3X9T: the tag is 0016..." loses its leading reference; a reference inside a
            # sentence stays, or "Where is BAG-7KQ3X9T?" would reach the owner as "Where is ?".
            leading = text.strip().startswith(first.text)
            return await _pass_on(session, chosen, rest if leading else text.strip(), now, base_url)
        return await _status_reply(session, chosen, now, base_url)

    if keyword in STATUS_WORDS or not words:
        if len(cases) > 1:
            return _say(locale, "choose", refs=refs)
        return await _status_reply(session, cases[0], now, base_url)
    if len(cases) > 1:
        return _say(locale, "choose_message", refs=refs)
    return await _pass_on(session, cases[0], text, now, base_url)


async def _pass_on(session: AsyncSession, case: Case, text: str, now: dt.datetime, base_url: str) -> str:
    """Free text is a message to the case's owner; the reply confirms it and gives the status and link.

    "Where is BAG-7KQ3X9T?" is a question no keyword catches: the status in the same reply
    answers it, and the message still reaches the owner partner.
    """
    await post_customer_message(session=session, case=case, text=text, now=now, via="sms")
    passed = _say(case.customer_locale, "passed_on", ref=case.ref)
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


async def _set_opt_out(session: AsyncSession, number: str, opted_out: bool, now: dt.datetime) -> None:
    """STOP and START apply to every case of the number, open or closed."""
    cases = (await session.scalars(select(Case).where(Case.customer_phone == number).with_for_update())).all()
    for case in cases:
        if case.sms_opted_out != opted_out:
            case.sms_opted_out = opted_out
            append_event(session=session, case=case, type="customer.sms_opt_out" if opted_out else "customer.sms_opt_in",
                         actor="customer", visibility="internal", body={"channel": "sms", "via": "sms"}, now=now)
    await session.flush()
