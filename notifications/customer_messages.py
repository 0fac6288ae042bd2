"""What the customer reads: the SMS and the email for each moment of a case, in their language,
with times in their time zone.

The caller resolves everything a message may say into a ``CustomerView`` (no database here),
then asks for ``render_sms(view)`` or ``render_email(view)``. Templates live in
``templates/customer/``; their strings are English message ids (``_("...")``) translated
through the locale registry (``kernel.locales``), whose catalogs hold every customer-facing
text. A locale the registry does not speak falls back through its language to English
(``de-AT`` is German, ``xx`` English).

Only the customer's first name is ever used, for the greeting.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import re
from dataclasses import dataclass

from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from kernel.locales import LOCALES, N_, Words
from notifications.rendering import environment
from notifications.sms_text import fit, is_gsm7, to_gsm7

BRAND = "Baton"
KINDS = ("opened", "update", "escalation", "resolution", "deadline", "delivery_confirmed", "out_for_delivery",
         "delivered", "rights_reminder", "refund_due", "claim_decided", "claim_paid")
SMS_MAX_SEGMENTS = 2


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
    eta: dt.datetime | None = None  # when a party expects the item to arrive (aware UTC)
    window_start: dt.datetime | None = None  # delivery window (aware UTC)
    window_end: dt.datetime | None = None
    pin: str | None = None  # out for delivery: the PIN the driver asks for
    right: str | None = None  # rights_reminder: the rule, in the customer's words
    due_at: dt.datetime | None = None  # rights_reminder: the deadline's exclusive end (aware UTC)
    decision: str | None = None  # claim_decided: approved | partly_approved | rejected
    amount: str | None = None  # claims: a decimal string
    currency: str | None = None


def resolve_locale(locale: str | None) -> str:
    """The catalog language for a customer locale: ``de-AT`` -> ``de``, ``xx`` -> ``en``."""
    return LOCALES.resolve(locale)


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
    t = LOCALES.words(view.locale, view.timezone)
    due = view.next_update_due
    if due is not None and view.now is not None and _utc(due) <= _utc(view.now):
        due = None  # overdue (the escalation case): a time in the past is no promise to repeat
    eta = view.eta
    if eta is not None and view.now is not None and _utc(eta) <= _utc(view.now):
        eta = None  # a promise already past is not repeated as news
    return {
        "brand": BRAND,
        "lang": t.locale,
        "kind": view.kind,
        "case_type": view.case_type,
        "ref": view.ref,
        "item": t(ITEM_WORDS.get(view.case_type, GENERIC_ITEM)),
        "first_name": (view.first_name or "").strip() or None,
        "status": (_clean(view.status_label) or "").rstrip("."),
        "holder": _clean(view.holder_name),
        "waiting_on": _clean(view.waiting_on),
        "url": view.status_url,
        "message": _clean_text(view.message),
        "resolution": _clean_text(view.resolution) if view.kind == "resolution" else None,
        "next_update_when": _when(t, due, now=view.now if sms else None),
        "next_update_stamp": t.stamp(due),
        "chased_when": _when(t, view.chased_at, now=view.now if sms else None),
        "eta_when": _when(t, eta, now=view.now if sms else None),
        "eta_stamp": t.stamp(eta),
        "window_when": _window(t, view.window_start, view.window_end, now=view.now if sms else None),
        "pin": view.pin if view.pin and view.pin.isdigit() else None,
        "right": _clean(view.right),
        # The last day: the end is exclusive, the customer reads "by Monday" as "on Monday at the latest".
        "due_day": t.day(t.local(view.due_at) - dt.timedelta(seconds=1)) if view.due_at else None,
        "decision": view.decision,
        "amount": t.money(view.amount, view.currency) if view.amount and view.currency else None,
    }


def _window(t: Words, start: dt.datetime | None, end: dt.datetime | None, *, now: dt.datetime | None) -> str | None:
    """A delivery window for a sentence: "on Tuesday at 6:00 PM–8:00 PM"."""
    if start is None or end is None:
        return None
    return f"{_when(t, start, now=now)}–{t.time(end)}"


def _utc(moment: dt.datetime) -> dt.datetime:
    """Naive values are UTC, as the database stores them."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def _clean(value: str | None) -> str | None:
    return " ".join(value.split()) or None if value else None


def _clean_text(value: str | None) -> str | None:
    return value.strip() or None if value else None


def _when(t: Words, moment: dt.datetime | None, *, now: dt.datetime | None) -> str | None:
    """A time for a sentence, in the customer's zone: "on Tue, Nov 3 at 2:00 PM", "am Di., 3. Nov. um 14:00".

    With the render time ``now`` (the SMS), a time within six days is named by its weekday ("on
    Tuesday at 2:00 PM"), and a time earlier the same day by its time alone. Never "today" or
    "tomorrow": a message held through quiet hours would be read on another day than it was written.
    """
    if moment is None:
        return None
    time = t.time(moment)
    if now is not None:
        local, today = t.local(moment), t.local(now)
        days = (local.date() - today.date()).days
        if days == 0 and local <= today:
            return t("at {time}", time=time)
        if -6 <= days <= 6:
            return t("on {weekday} at {time}", weekday=t.weekday(moment), time=time)
    return t("on {date} at {time}", date=t.date(moment), time=time)


# ---------------------------------------------------------------- translation


def _plain(value: object) -> str:
    """Text from an autoescaped macro, for a plain-text template: entities back to characters."""
    return Markup(value).unescape() if isinstance(value, Markup) else html.unescape(str(value))


def _fill(context: Context, text: str, values: dict[str, object]) -> str:
    """A translated text with its ``{fields}`` filled; under autoescape the values are escaped, the text trusted."""
    if context.eval_ctx.autoescape:
        text = Markup(text)
    return text.format(**values) if values else text


@functools.cache
def _environment(lang: str) -> Environment:
    """The messages environment whose ``_`` and ``ngettext`` speak one language of the registry."""
    env = environment().overlay(cache_size=100)
    # An overlay shares its parent's globals and filters: give it its own before adding to them.
    env.globals = dict(env.globals)
    env.filters = {**env.filters, "plain": _plain}
    t = LOCALES.words(lang)

    @pass_context
    def gettext(context: Context, message: str, /, **values: object) -> str:
        return _fill(context, t.gettext(message), values)

    @pass_context
    def ngettext(context: Context, singular: str, plural: str, n: int, /, **values: object) -> str:
        return _fill(context, t.ngettext(singular, plural, n), {"n": n, **values})

    env.globals.update(_=gettext, gettext=gettext, ngettext=ngettext)
    return env
