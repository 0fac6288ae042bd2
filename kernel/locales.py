"""The one locale registry: the languages Baton speaks to customers, how a reader's locale is
chosen, their texts (Babel message catalogs) and their times (Babel, in their zone).

    SUPPORTED_LOCALES   the languages with a catalog; adding one is its catalog plus one entry
    Locales             the registry: fallbacks, resolve, pick, translations, words
    LOCALES             the registry of SUPPORTED_LOCALES, built once per process
    Words               texts and times for one reader: ``t("Hello {name},", name=...)``, ``t.when(...)``
    N_                  marks a text for the catalogs where it is defined, translated where used

Catalogs are ``kernel/translations/<locale>/LC_MESSAGES/baton.po``, read with
``babel.messages.pofile.read_po`` the first time a locale is used and kept on the registry;
nothing is compiled and no ``.mo`` file exists. The stdlib's gettext machinery (plural
expressions, contexts, fallbacks) works on the catalog converted in memory.

Message ids are the English source strings, not invented keys: a template reads as what the
customer gets, ``pybabel extract`` and translators' tools work as they expect, and changing an
English sentence changes its id, so every translation of the old wording drops out of the other
catalogs and ``tests/kernel/test_locales.py`` fails until it is translated again (a key would keep
serving the stale translation silently). ``en`` is the catalog of record: its msgids are the
texts Baton says, its msgstrs stay empty. Where one English text needs two translations a
context tells them apart: the status page's texts carry ``msgctxt "status page"`` (its short
labels read otherwise than a message's: "Stand" on the page, "Status" in an email).

Placeholders are Python format fields (``{partner}``, flagged ``python-brace-format``), the
same in the English text and every translation. A locale falls back through its region to its
language and then to English: ``de-AT`` -> ``de`` -> ``en``, for catalogs and for data keyed by
locale (case types' status labels) alike.
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_skeleton, format_time
from babel.numbers import format_currency
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

# Adding a language: kernel/translations/<locale>/LC_MESSAGES/baton.po and its tag here.
SUPPORTED_LOCALES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl")
DEFAULT_LOCALE = "en"
DOMAIN = "baton"
CATALOGS = Path(__file__).resolve().parent / "translations"
STATUS_PAGE = "status page"  # the msgctxt of the status page's texts
# Accept-Language is a client's free text: a header with more languages than this is cut.
MAX_ACCEPT_LANGUAGES = 20


def N_(message: str) -> str:
    """Marks a text for the catalogs where it is defined; it is translated where it is used."""
    return message


def canonical(tag: str | None) -> str | None:
    """A BCP 47 tag in one spelling: ``de_at`` -> ``de-AT``, ``zh-hant-tw`` -> ``zh-Hant-TW``; junk -> None."""
    parts = (tag or "").strip().replace("_", "-").split("-")
    if not parts[0].isalpha() or not 2 <= len(parts[0]) <= 8 or not all(p.isalnum() for p in parts):
        return None
    return "-".join([parts[0].lower()] + [p.upper() if len(p) == 2 else p.title() if len(p) == 4 else p.lower()
                                          for p in parts[1:]])


def _shortening(tag: str | None) -> list[str]:
    """``zh-Hant-TW`` -> ``["zh-Hant-TW", "zh-Hant", "zh"]``; junk -> ``[]``."""
    parts = (canonical(tag) or "").split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)] if parts[0] else []


@functools.cache
def load_catalog(path: Path, locale: str) -> Catalog:
    """The catalog in a ``.po`` file, as Babel reads it (pure: the file is part of the code)."""
    with path.open("rb") as f:
        return read_po(f, locale=locale.replace("-", "_"), domain=DOMAIN)


def _translations(catalog: Catalog) -> Translations:
    """The stdlib gettext object of a catalog, converted in memory (untranslated entries are absent)."""
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


class Locales:
    """The registry: which locales have catalogs, how a reader's locale is chosen, their translations."""

    def __init__(self, supported: Iterable[str] = SUPPORTED_LOCALES, *, default: str = DEFAULT_LOCALE,
                 directory: Path = CATALOGS) -> None:
        self.supported = tuple(supported)
        self.default = default
        self.directory = directory
        self._by_key = {tag.lower(): tag for tag in self.supported}
        self._translations: dict[str, Translations] = {}
        if default not in self.supported:
            raise ValueError(f"the default locale {default!r} is not among {self.supported}")

    def fallbacks(self, tag: str | None) -> tuple[str, ...]:
        """``de-AT`` -> ``("de-AT", "de", "en")``: the tag, its shorter forms, then the default."""
        return tuple(dict.fromkeys([*_shortening(tag), self.default]))

    def resolve(self, tag: str | None) -> str:
        """The supported locale that serves a tag: ``de-AT`` -> ``de``, ``xx`` -> ``en``."""
        return next(self._by_key[t.lower()] for t in self.fallbacks(tag) if t.lower() in self._by_key)

    def speaks(self, tag: str | None) -> bool:
        """Whether a tag is served by a catalog of its own language (``de-AT`` is, ``ja`` is not)."""
        return any(t.lower() in self._by_key for t in _shortening(tag))

    def pick(self, *, preferred: str | None, accept_language: str | None) -> str:
        """The customer's stored locale if Baton speaks it, else the best of Accept-Language, else the default.

        Accept-Language entries are taken by weight, in header order among equal weights; ``q=0``
        means "not this one" (RFC 9110) and ``*`` names no language.
        """
        if preferred and self.speaks(preferred):
            return self.resolve(preferred)
        ranked: list[tuple[float, str]] = []
        for part in (accept_language or "").split(",")[:MAX_ACCEPT_LANGUAGES]:
            tag, *params = part.split(";")
            q = next((p.strip()[2:] for p in params if p.strip().startswith("q=")), "1")
            try:
                weight = float(q)
            except ValueError:
                weight = 0.0
            if weight > 0 and self.speaks(tag):
                ranked.append((weight, tag))
        ranked.sort(key=lambda item: -item[0])
        return self.resolve(ranked[0][1]) if ranked else self.default

    def label(self, labels: Mapping[str, str], tag: str | None, *, missing: str) -> str:
        """A text from data keyed by locale (a case type's status labels), through the same fallbacks."""
        by_key = {key.lower(): text for key, text in labels.items() if text}
        return next((by_key[t.lower()] for t in self.fallbacks(tag) if t.lower() in by_key), missing)

    def catalog_path(self, locale: str) -> Path:
        return self.directory / locale / "LC_MESSAGES" / f"{DOMAIN}.po"

    def catalog(self, locale: str) -> Catalog:
        """The catalog of a supported locale, as read from its ``.po`` file."""
        return load_catalog(self.catalog_path(locale), locale)

    def translations(self, tag: str | None) -> Translations:
        """The translations serving a tag, falling back to the default locale's catalog, then the msgid."""
        locale = self.resolve(tag)
        if locale not in self._translations:
            translations = _translations(self.catalog(locale))
            if locale != self.default:
                translations.add_fallback(self.translations(self.default))
            self._translations[locale] = translations
        return self._translations[locale]

    def words(self, tag: str | None, timezone: str = "UTC", *, context: str | None = None) -> Words:
        """Texts and times for a reader of ``tag`` in ``timezone``."""
        return Words(self, tag, timezone, context=context)


class Words:
    """``t("Hello {name},", name=...)`` in one reader's locale, and times in their zone.

    ``locale`` is the catalog's locale (``de``); dates and times follow the reader's own tag when
    Babel knows it and it speaks that language (``de-AT`` writes "Jän."). A zone Babel cannot find
    must not make a time look local: times are then in UTC and say so.
    """

    def __init__(self, registry: Locales, tag: str | None, timezone: str = "UTC", *,
                 context: str | None = None) -> None:
        self.locale = registry.resolve(tag)
        self.context = context
        self.formats = _babel_locale(tag, self.locale)
        self._translations = registry.translations(self.locale)
        try:
            self.zone: dt.tzinfo = ZoneInfo(timezone)
            self.zone_suffix = ""
        except (ZoneInfoNotFoundError, ValueError):
            self.zone, self.zone_suffix = dt.UTC, " UTC"

    def gettext(self, message: str) -> str:
        """The translation of a text, unformatted."""
        if self.context is None:
            return self._translations.gettext(message)
        return self._translations.pgettext(self.context, message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """The translation of a text with a count, in the plural form the locale uses for ``n``."""
        if self.context is None:
            return self._translations.ngettext(singular, plural, n)
        return self._translations.npgettext(self.context, singular, plural, n)

    def __call__(self, message: str, /, **values: object) -> str:
        return _format(self.gettext(message), values)

    def plural(self, singular: str, plural: str, n: int, /, **values: object) -> str:
        """``t.plural("Your open case: {refs}.", "Your open cases: {refs}.", 2, refs=...)``; ``n`` is a value too."""
        return _format(self.ngettext(singular, plural, n), {"n": n, **values})

    def local(self, moment: dt.datetime) -> dt.datetime:
        """A moment on the reader's wall clock; naive values are UTC, as the database stores them."""
        return (moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment).astimezone(self.zone)

    def time(self, moment: dt.datetime) -> str:
        """"2:00 PM", "14:00"."""
        return format_time(self.local(moment), "short", locale=self.formats) + self.zone_suffix

    def date(self, moment: dt.datetime) -> str:
        """"Tue, Nov 3", "Di., 3. Nov."."""
        return format_skeleton("MMMEd", self.local(moment), locale=self.formats)

    def weekday(self, moment: dt.datetime) -> str:
        """"Tuesday", "Dienstag"."""
        return format_date(self.local(moment), "EEEE", locale=self.formats)

    def stamp(self, moment: dt.datetime | None) -> str | None:
        """A time on its own, for a label: "Tue, Nov 3, 2:00 PM", "Di., 3. Nov., 14:00"."""
        if moment is None:
            return None
        pattern = str(self.formats.datetime_formats["medium"])
        return pattern.replace("{1}", self.date(moment)).replace("{0}", self.time(moment))

    def when(self, moment: dt.datetime | None) -> str:
        """A time on the status page: "Tue 3 Nov, 14:00" (24-hour clock everywhere, as the page always had)."""
        if moment is None:
            return ""
        return format_datetime(self.local(moment), "EEE d MMM, HH:mm", locale=self.formats) + self.zone_suffix

    def day(self, value: dt.date | dt.datetime | None) -> str:
        """A day on the status page: "Tue 3 Nov 2026" (a deadline's last day, in the reader's zone)."""
        if value is None:
            return ""
        day = self.local(value).date() if isinstance(value, dt.datetime) else value
        return format_date(day, "EEE d MMM y", locale=self.formats)

    def money(self, amount: str | None, currency: str | None) -> str:
        """An amount in the reader's conventions: "12,50 €", "$12.50"; exact (a decimal string, never a float)."""
        if amount is None or currency is None:
            return ""
        return format_currency(Decimal(amount), currency, locale=self.formats)

    def until(self, moment: dt.datetime | None) -> str:
        """The end of a span that ``when`` began, on the status page: "20:00" (the same 24-hour clock)."""
        if moment is None:
            return ""
        return format_datetime(self.local(moment), "HH:mm", locale=self.formats)

    def iso(self, moment: dt.datetime) -> str:
        """For ``<time datetime>``: ISO 8601 in the reader's zone, to the minute."""
        return self.local(moment).isoformat(timespec="minutes")


def _format(text: str, values: Mapping[str, object]) -> str:
    """Fill a text's ``{fields}`` (a ``Markup`` text escapes the values, not itself)."""
    return text.format(**values) if values else text


def _babel_locale(tag: str | None, language: str) -> Locale:
    """The reader's own locale for date conventions (en-GB, de-AT), if Babel knows it and it speaks ``language``."""
    try:
        parsed = Locale.parse((canonical(tag) or "").replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse(language.replace("-", "_"))
    return parsed if parsed.language == language.split("-")[0] else Locale.parse(language.replace("-", "_"))


LOCALES = Locales()
