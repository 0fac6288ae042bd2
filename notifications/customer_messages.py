"""What the customer reads: the SMS and the email for each moment of a case, in their language,
with times in their time zone.

The caller resolves everything a message may say into a ``CustomerView`` (no database here),
then asks for ``render_sms(view)`` or ``render_email(view)``. Templates live in
``templates/customer/``; their strings are English message ids translated by
``notifications.customer_catalog`` through Jinja2's i18n extension. A locale outside
``SUPPORTED_LOCALES`` (after dropping its region: ``de-AT`` is German) gets English.

Only the customer's first name is ever used, for the greeting.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_skeleton, format_time
from jinja2 import Environment
from markupsafe import Markup

from notifications.customer_catalog import CATALOG
from notifications.rendering import environment
from notifications.sms_text import fit, is_gsm7, to_gsm7

BRAND = "Baton"
KINDS = ("opened", "update", "escalation", "resolution", "deadline")
SUPPORTED_LOCALES = ("en", "de", "fr", "es")
SMS_MAX_SEGMENTS = 2


def N_(message: str) -> str:
    """Marks a message id for translation where it is defined; translated where it is used."""
    return message


# Item words by case type; an unknown case type gets the generic word.
ITEM_WORDS = {"baggage": N_("bag"), "parcel": N_("parcel")}
GENERIC_ITEM = N_("item")


@dataclass(frozen=True)
class CustomerView:
    """Everything a customer message may say, resolved by the caller."""

    kind: str  # "opened" | "update" | "escalation" | "resolution" | "deadline"
    ref: str
    case_type: str  # "baggage" | "parcel"
    first_name: str | None
    locale: str  # "en", "de", "fr", "es", "de-AT"; anything else is English
    timezone: str  # IANA, the customer's
    status_label: str  # already in the customer's language
    holder_name: str | None  # the organization holding the item now
    next_update_due: dt.datetime | None  # aware UTC
    status_url: str
    message: str | None  # the partner's customer-facing text, shown verbatim (quoted)
    waiting_on: str | None = None  # escalation: the party we are waiting on
    chased_at: dt.datetime | None = None  # escalation: when we chased it (aware UTC)
    resolution: str | None = None  # resolution text
    now: dt.datetime | None = None  # render time: lets the SMS name a weekday instead of a date


def resolve_locale(locale: str | None) -> str:
    """The catalog language for a customer locale: ``de-AT`` -> ``de``, ``xx`` -> ``en``."""
    language = (locale or "").strip().replace("_", "-").split("-")[0].lower()
    return language if language in SUPPORTED_LOCALES else "en"


def render_sms(view: CustomerView) -> str:
    """The SMS: at most two segments, GSM-7 unless some name or message needs UCS-2 anyway.

    1. The template sets the pieces: the lead (brand, reference, what happened), the optional
       holder, next-update and status lines (in that order of importance), and the tail with
       the link.
    2. ``fit`` keeps the lead and as many optional lines as fit, then puts the partner's message
       (or the resolution text) quoted in between as far as it fits; the link is never cut.
    3. Done on ``to_gsm7`` text, the partner's emoji dropped. If that is still not GSM-7 (a
       Chinese name or message), the SMS is UCS-2 whatever we do, and transliteration would only
       lose accents and emoji: it is then fitted again from the original text.
    4. An escalation whose apology had to be cut (a party name too long for a UCS-2 message)
       is made again without naming the party: a whole apology beats a cut one.
    """
    env = _environment(resolve_locale(view.locale))
    context = _context(view, sms=True)
    quote = view.resolution if view.kind == "resolution" and view.resolution else view.message
    text, whole_lead = _fit_sms(env, context, _clean_text(quote))
    if not whole_lead and context["waiting_on"]:
        text, _ = _fit_sms(env, {**context, "waiting_on": None}, _clean_text(quote))
    return text


def _fit_sms(env: Environment, context: dict[str, object], quote: str | None) -> tuple[str, bool]:
    """The fitted SMS, and whether its lead survived whole."""
    module = env.get_template("customer/sms.txt").make_module(context)
    head = [str(module.lead), str(module.holder_line), str(module.due_line), str(module.status_line)]
    tail = str(module.tail)
    gsm_head = [to_gsm7(part) for part in head]
    gsm_quote = to_gsm7(quote, drop_emoji=True) if quote else None
    text = fit(gsm_head, gsm_quote, to_gsm7(tail), max_segments=SMS_MAX_SEGMENTS)
    lead = gsm_head[0]
    if not is_gsm7(text):
        text, lead = fit(head, quote, tail, max_segments=SMS_MAX_SEGMENTS), head[0]
    return text, text.startswith(" ".join(lead.split()))


def render_email(view: CustomerView) -> tuple[str, str, str]:
    """Subject, plain text and HTML (autoescaped, inline styles only, no external assets)."""
    env = _environment(resolve_locale(view.locale))
    context = _context(view, sms=False)
    # One line (names and labels in it come from partners; _context already squashed theirs),
    # keeping the no-break spaces of French typography.
    subject = re.sub(r"[ \t\r\n\f\v]+", " ", env.get_template("customer/email.subject.txt").render(context)).strip()
    text = env.get_template("customer/email.txt").render(context)
    body_html = env.get_template("customer/email.html").render({**context, "subject": subject})
    return subject, text, body_html


# ---------------------------------------------------------------- context


def _context(view: CustomerView, *, sms: bool) -> dict[str, object]:
    if view.kind not in KINDS:
        raise ValueError(f"unknown customer message kind {view.kind!r}")
    if not view.status_url.startswith(("https://", "http://")):
        raise ValueError("status_url must be an absolute http(s) URL")
    clock = _Clock(view)
    gettext = _gettext(clock.lang)
    due = view.next_update_due
    if due is not None and view.now is not None and _utc(due) <= _utc(view.now):
        due = None  # overdue (the escalation case): a time in the past is no promise to repeat
    return {
        "brand": BRAND,
        "lang": clock.lang,
        "kind": view.kind,
        "case_type": view.case_type,
        "ref": view.ref,
        "item": gettext(ITEM_WORDS.get(view.case_type, GENERIC_ITEM)),
        "first_name": (view.first_name or "").strip() or None,
        "status": (_clean(view.status_label) or "").rstrip("."),
        "holder": _clean(view.holder_name),
        "waiting_on": _clean(view.waiting_on),
        "url": view.status_url,
        "message": _clean_text(view.message),
        "resolution": _clean_text(view.resolution) if view.kind == "resolution" else None,
        "next_update_when": clock.when(due, relative=sms),
        "next_update_stamp": clock.stamp(due),
        "chased_when": clock.when(view.chased_at, relative=sms),
    }


def _utc(moment: dt.datetime) -> dt.datetime:
    """Naive values are UTC, as the database stores them."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def _clean(value: str | None) -> str | None:
    return " ".join(value.split()) or None if value else None


def _clean_text(value: str | None) -> str | None:
    return value.strip() or None if value else None


class _Clock:
    """Times as the customer reads them: their zone, their language's conventions (Babel)."""

    def __init__(self, view: CustomerView) -> None:
        self.lang = resolve_locale(view.locale)
        self.locale = _babel_locale(view.locale, self.lang)
        self.gettext = _gettext(self.lang)
        try:
            self.zone: dt.tzinfo = ZoneInfo(view.timezone)
            self.zone_suffix = ""
        except (ZoneInfoNotFoundError, ValueError):
            # A wrong zone must not make a time look local: say it is UTC.
            self.zone, self.zone_suffix = dt.UTC, " UTC"
        self.now = self._local(view.now) if view.now else None

    def _local(self, moment: dt.datetime) -> dt.datetime:
        return _utc(moment).astimezone(self.zone)

    def _time(self, local: dt.datetime) -> str:
        return format_time(local, "short", locale=self.locale) + self.zone_suffix

    def _date(self, local: dt.datetime) -> str:
        return format_skeleton("MMMEd", local, locale=self.locale)

    def when(self, moment: dt.datetime | None, *, relative: bool) -> str | None:
        """A phrase for a sentence: "on Tue, Nov 3 at 2:00 PM", "am Di., 3. Nov. um 14:00".

        With ``relative`` (the SMS) and the render time known, a time within six days is named
        by its weekday ("on Tuesday at 2:00 PM"), and a time earlier the same day by its time
        alone. Never "today" or "tomorrow": a message held through quiet hours would be read on
        another day than it was written.
        """
        if moment is None:
            return None
        local = self._local(moment)
        time = self._time(local)
        if relative and self.now is not None:
            days = (local.date() - self.now.date()).days
            if days == 0 and local <= self.now:
                return self.gettext("at %(time)s") % {"time": time}
            if -6 <= days <= 6:
                weekday = format_date(local, "EEEE", locale=self.locale)
                return self.gettext("on %(weekday)s at %(time)s") % {"weekday": weekday, "time": time}
        return self.gettext("on %(date)s at %(time)s") % {"date": self._date(local), "time": time}

    def stamp(self, moment: dt.datetime | None) -> str | None:
        """A time on its own, for a label: "Tue, Nov 3, 2:00 PM", "Di., 3. Nov., 14:00"."""
        if moment is None:
            return None
        local = self._local(moment)
        pattern = str(self.locale.datetime_formats["medium"])
        return pattern.replace("{1}", self._date(local)).replace("{0}", self._time(local))


def _babel_locale(locale: str, lang: str) -> Locale:
    """The customer's own locale for date conventions (en-GB, de-AT), if it speaks ``lang``."""
    try:
        parsed = Locale.parse((locale or "").strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse(lang)
    return parsed if parsed.language == lang else Locale.parse(lang)


# ---------------------------------------------------------------- translation


def _gettext(lang: str) -> Callable[[str], str]:
    translations = CATALOG.get(lang, {})

    def gettext(message: str) -> str:
        return translations.get(message) or message

    return gettext


def _plain(value: object) -> str:
    """Text from an autoescaped macro, for a plain-text template: entities back to characters."""
    return Markup(value).unescape() if isinstance(value, Markup) else html.unescape(str(value))


@functools.cache
def _environment(lang: str) -> Environment:
    """The messages environment with the i18n extension, its gettext bound to one language."""
    env = environment().overlay(extensions=["jinja2.ext.i18n"], cache_size=100)
    # An overlay shares its parent's globals and filters: give it its own before adding to them.
    env.globals = dict(env.globals)
    env.filters = {**env.filters, "plain": _plain}
    gettext = _gettext(lang)
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext, lambda singular, plural, n: gettext(singular if n == 1 else plural), newstyle=True
    )
    return env
