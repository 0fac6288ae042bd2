"""Words of the customer-facing pages in en, de, fr, es, and times in the customer's zone (Babel)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

LOCALES = ("en", "de", "fr", "es")

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your {item} {ref}",
        "hello": "Hello {name},",
        "hello_anonymous": "Hello,",
        "intro": "This page shows where your {item} is. It updates by itself whenever one of the companies handling it reports.",
        "status": "Status",
        "holder": "Who has it now",
        "holder_unknown": "Being assigned",
        "holder_none": "Nobody: the case is resolved",
        "next_update": "Next update due",
        "next_update_none": "No further updates expected",
        "late": "We are waiting on {partner}: their update was due at {since}. We chased them at {chased}.",
        "escalated": "We are sorry for the wait. {partner} has not answered since {since}; our complaint department is chasing them (last reminder {chased}).",
        "timeline": "What has happened",
        "you_wrote": "You wrote",
        "opened": "We opened a search for your {item}.",
        "handoff": "Now with {holder}.",
        "closed": "Resolved: {resolution}",
        "deadline": "Your {item} has not been found within the time limit. It is now treated as lost and you can claim compensation.",
        "confirmation_yes": "You told us you are satisfied.",
        "confirmation_no": "You told us you are not satisfied.",
        "write": "Write to us",
        "write_hint": "Your message goes to the team handling your case. Please do not include card or passport numbers.",
        "message_label": "Your message",
        "send": "Send message",
        "sent": "Thank you: your message was sent. We will answer here and by message.",
        "confirm_title": "Are you satisfied with how this was resolved?",
        "confirm_yes": "Yes, I am satisfied",
        "confirm_no": "No, I am not satisfied",
        "comment_label": "Anything you would like to add (optional)",
        "confirmed": "Thank you for telling us.",
        "disputed": "Thank you. Our complaint department will look at your case again and contact you.",
        "not_found_title": "Page not found",
        "not_found": "This link is not valid. Please use the latest link we sent you, or contact the airline or company that opened your case.",
        "rate_limited": "Too many attempts from your connection. Please wait a minute and try again.",
        "unsubscribe_title": "Stop emails about {ref}",
        "unsubscribe_button": "Stop emails",
        "unsubscribed": "You will not receive further emails about this case. This page stays available.",
        "footer": "Baton keeps every partner's statement on record.",
        "bag": "bag",
        "parcel": "parcel",
    },
    "de": {
        "title": "Ihr {item} {ref}",
        "hello": "Hallo {name},",
        "hello_anonymous": "Hallo,",
        "intro": "Diese Seite zeigt, wo sich Ihr {item} befindet. Sie aktualisiert sich, sobald eines der beteiligten Unternehmen etwas meldet.",
        "status": "Stand",
        "holder": "Wer es gerade hat",
        "holder_unknown": "Wird zugewiesen",
        "holder_none": "Niemand: der Fall ist erledigt",
        "next_update": "Nächste Meldung fällig",
        "next_update_none": "Keine weiteren Meldungen erwartet",
        "late": "Wir warten auf {partner}: die Meldung war um {since} fällig. Wir haben um {chased} nachgehakt.",
        "escalated": "Entschuldigen Sie die Wartezeit. {partner} hat sich seit {since} nicht gemeldet; unsere Beschwerdestelle hakt nach (zuletzt {chased}).",
        "timeline": "Was bisher geschah",
        "you_wrote": "Sie schrieben",
        "opened": "Wir haben die Suche nach Ihrem {item} begonnen.",
        "handoff": "Jetzt bei {holder}.",
        "closed": "Erledigt: {resolution}",
        "deadline": "Ihr {item} wurde nicht innerhalb der Frist gefunden. Es gilt nun als verloren, und Sie können eine Entschädigung beantragen.",
        "confirmation_yes": "Sie haben uns mitgeteilt, dass Sie zufrieden sind.",
        "confirmation_no": "Sie haben uns mitgeteilt, dass Sie nicht zufrieden sind.",
        "write": "Schreiben Sie uns",
        "write_hint": "Ihre Nachricht geht an das Team, das Ihren Fall bearbeitet. Bitte keine Karten- oder Passnummern angeben.",
        "message_label": "Ihre Nachricht",
        "send": "Nachricht senden",
        "sent": "Danke, Ihre Nachricht wurde gesendet. Wir antworten hier und per Nachricht.",
        "confirm_title": "Sind Sie mit der Lösung zufrieden?",
        "confirm_yes": "Ja, ich bin zufrieden",
        "confirm_no": "Nein, ich bin nicht zufrieden",
        "comment_label": "Möchten Sie etwas ergänzen? (optional)",
        "confirmed": "Danke für Ihre Rückmeldung.",
        "disputed": "Danke. Unsere Beschwerdestelle prüft Ihren Fall erneut und meldet sich bei Ihnen.",
        "not_found_title": "Seite nicht gefunden",
        "not_found": "Dieser Link ist nicht gültig. Bitte verwenden Sie den neuesten Link, den wir Ihnen geschickt haben, oder wenden Sie sich an das Unternehmen, das Ihren Fall eröffnet hat.",
        "rate_limited": "Zu viele Versuche von Ihrer Verbindung. Bitte warten Sie eine Minute.",
        "unsubscribe_title": "Keine E-Mails mehr zu {ref}",
        "unsubscribe_button": "E-Mails abbestellen",
        "unsubscribed": "Sie erhalten keine weiteren E-Mails zu diesem Fall. Diese Seite bleibt verfügbar.",
        "footer": "Baton bewahrt jede Aussage der beteiligten Unternehmen auf.",
        "bag": "Gepäckstück",
        "parcel": "Paket",
    },
    "fr": {
        "title": "Votre {item} {ref}",
        "hello": "Bonjour {name},",
        "hello_anonymous": "Bonjour,",
        "intro": "Cette page indique où se trouve votre {item}. Elle se met à jour dès qu'une des entreprises concernées donne des nouvelles.",
        "status": "État",
        "holder": "Qui l'a en ce moment",
        "holder_unknown": "En cours d'attribution",
        "holder_none": "Personne : le dossier est résolu",
        "next_update": "Prochaine nouvelle attendue",
        "next_update_none": "Aucune autre nouvelle attendue",
        "late": "Nous attendons {partner} : sa mise à jour était due à {since}. Nous l'avons relancé à {chased}.",
        "escalated": "Nous sommes désolés de l'attente. {partner} ne répond plus depuis {since} ; notre service réclamations le relance (dernière relance {chased}).",
        "timeline": "Ce qui s'est passé",
        "you_wrote": "Vous avez écrit",
        "opened": "Nous avons lancé la recherche de votre {item}.",
        "handoff": "Désormais chez {holder}.",
        "closed": "Résolu : {resolution}",
        "deadline": "Votre {item} n'a pas été retrouvé dans le délai prévu. Il est désormais considéré comme perdu et vous pouvez demander une indemnisation.",
        "confirmation_yes": "Vous nous avez dit être satisfait.",
        "confirmation_no": "Vous nous avez dit ne pas être satisfait.",
        "write": "Nous écrire",
        "write_hint": "Votre message est transmis à l'équipe qui traite votre dossier. N'indiquez pas de numéro de carte ou de passeport.",
        "message_label": "Votre message",
        "send": "Envoyer le message",
        "sent": "Merci, votre message a été envoyé. Nous répondrons ici et par message.",
        "confirm_title": "Êtes-vous satisfait de la résolution ?",
        "confirm_yes": "Oui, je suis satisfait",
        "confirm_no": "Non, je ne suis pas satisfait",
        "comment_label": "Souhaitez-vous ajouter quelque chose ? (facultatif)",
        "confirmed": "Merci de votre réponse.",
        "disputed": "Merci. Notre service réclamations va réexaminer votre dossier et vous contacter.",
        "not_found_title": "Page introuvable",
        "not_found": "Ce lien n'est pas valide. Utilisez le dernier lien que nous vous avons envoyé, ou contactez l'entreprise qui a ouvert votre dossier.",
        "rate_limited": "Trop de tentatives depuis votre connexion. Veuillez patienter une minute.",
        "unsubscribe_title": "Ne plus recevoir d'e-mails pour {ref}",
        "unsubscribe_button": "Arrêter les e-mails",
        "unsubscribed": "Vous ne recevrez plus d'e-mails concernant ce dossier. Cette page reste disponible.",
        "footer": "Baton conserve chaque déclaration des entreprises concernées.",
        "bag": "bagage",
        "parcel": "colis",
    },
    "es": {
        "title": "Su {item} {ref}",
        "hello": "Hola, {name}:",
        "hello_anonymous": "Hola:",
        "intro": "Esta página muestra dónde está su {item}. Se actualiza cada vez que una de las empresas que lo gestionan informa.",
        "status": "Estado",
        "holder": "Quién lo tiene ahora",
        "holder_unknown": "Asignándose",
        "holder_none": "Nadie: el caso está resuelto",
        "next_update": "Próxima actualización prevista",
        "next_update_none": "No se esperan más actualizaciones",
        "late": "Estamos esperando a {partner}: su actualización debía llegar a las {since}. Le hemos reclamado a las {chased}.",
        "escalated": "Lamentamos la espera. {partner} no responde desde {since}; nuestro departamento de reclamaciones le está reclamando (último aviso {chased}).",
        "timeline": "Lo que ha pasado",
        "you_wrote": "Usted escribió",
        "opened": "Hemos abierto la búsqueda de su {item}.",
        "handoff": "Ahora lo tiene {holder}.",
        "closed": "Resuelto: {resolution}",
        "deadline": "Su {item} no se ha encontrado dentro del plazo. Ahora se considera perdido y puede reclamar una indemnización.",
        "confirmation_yes": "Nos ha indicado que está satisfecho.",
        "confirmation_no": "Nos ha indicado que no está satisfecho.",
        "write": "Escríbanos",
        "write_hint": "Su mensaje llega al equipo que gestiona su caso. No incluya números de tarjeta ni de pasaporte.",
        "message_label": "Su mensaje",
        "send": "Enviar mensaje",
        "sent": "Gracias, su mensaje se ha enviado. Le responderemos aquí y por mensaje.",
        "confirm_title": "¿Está satisfecho con la solución?",
        "confirm_yes": "Sí, estoy satisfecho",
        "confirm_no": "No, no estoy satisfecho",
        "comment_label": "¿Desea añadir algo? (opcional)",
        "confirmed": "Gracias por decírnoslo.",
        "disputed": "Gracias. Nuestro departamento de reclamaciones revisará su caso y se pondrá en contacto con usted.",
        "not_found_title": "Página no encontrada",
        "not_found": "Este enlace no es válido. Use el último enlace que le enviamos o contacte con la empresa que abrió su caso.",
        "rate_limited": "Demasiados intentos desde su conexión. Espere un minuto, por favor.",
        "unsubscribe_title": "Dejar de recibir correos sobre {ref}",
        "unsubscribe_button": "Dejar de recibir correos",
        "unsubscribed": "No recibirá más correos sobre este caso. Esta página sigue disponible.",
        "footer": "Baton conserva cada declaración de las empresas implicadas.",
        "bag": "equipaje",
        "parcel": "paquete",
    },
}


def pick_locale(preferred: str | None, accept_language: str | None) -> str:
    """The customer's own locale if Baton speaks it, else the best of Accept-Language, else English."""
    if preferred and preferred.split("-")[0].lower() in LOCALES:
        return preferred.split("-")[0].lower()
    ranked: list[tuple[float, str]] = []
    for part in (accept_language or "").split(",")[:20]:
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        ranked.append((weight, tag.split("-")[0].lower()))
    for _, lang in sorted(ranked, key=lambda item: -item[0]):
        if lang in LOCALES:
            return lang
    return "en"


class Words:
    """``t("key", **values)`` in one locale, and times in one time zone."""

    def __init__(self, locale: str, timezone: str = "UTC") -> None:
        self.locale = locale if locale in LOCALES else "en"
        self.zone = ZoneInfo(timezone)

    def __call__(self, key: str, **values: object) -> str:
        text = STRINGS[self.locale].get(key) or STRINGS["en"][key]
        return text.format(**values) if values else text

    def when(self, value: dt.datetime | None) -> str:
        if value is None:
            return ""
        return format_datetime(value.astimezone(self.zone), "EEE d MMM, HH:mm", locale=self.locale)

    def iso(self, value: dt.datetime) -> str:
        return value.astimezone(self.zone).isoformat(timespec="minutes")
