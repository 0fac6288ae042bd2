"""The locale registry: every supported locale translates every English text with the same
placeholders, the catalogs hold exactly the texts the code says, and a reader's locale is chosen
and falls back as the registry says (``de-AT`` -> ``de`` -> ``en``)."""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.extract import extract
from babel.messages.plurals import get_plural
from jinja2.ext import babel_extract

from kernel.locales import CATALOGS, LOCALES, STATUS_PAGE, Locales

ROOT = Path(__file__).resolve().parents[2]
OTHERS = [locale for locale in LOCALES.supported if locale != LOCALES.default]


def messages(locale: str) -> dict[tuple[str | None, str], Message]:
    """A catalog's messages by (context, msgid), the msgid of a plural being its singular."""
    return {(m.context, m.id if isinstance(m.id, str) else m.id[0]): m for m in LOCALES.catalog(locale) if m.id}


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def forms(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


# ---------------------------------------------------------------- the catalogs


def test_every_supported_locale_has_a_catalog_and_every_catalog_is_registered() -> None:
    on_disk = {path.parent.parent.name for path in CATALOGS.glob("*/LC_MESSAGES/baton.po")}
    assert on_disk == set(LOCALES.supported)


@pytest.mark.parametrize("locale", OTHERS)
def test_every_english_text_is_translated_and_nothing_else(locale: str) -> None:
    english, translated = messages(LOCALES.default), messages(locale)
    missing = [key for key in english if key not in translated or not all(forms(translated[key].string))]
    assert missing == [], f"missing or empty in kernel/translations/{locale}/LC_MESSAGES/baton.po"
    assert translated.keys() - english.keys() == set(), "stale: no longer in the English catalog"
    assert [key for key, m in translated.items() if m.fuzzy] == [], "fuzzy translations are not used: review them"


@pytest.mark.parametrize("locale", OTHERS)
def test_every_translation_has_the_english_texts_placeholders(locale: str) -> None:
    english, translated = messages(LOCALES.default), messages(locale)
    wrong = []
    for key, source in english.items():
        if key not in translated:
            continue
        expected = set().union(*(fields(text) for text in forms(source.id)))
        got = [fields(text) for text in forms(translated[key].string)]
        # A plural form may leave out a field its other forms have (a language's "one" may not say the number).
        if source.pluralizable and (any(not f <= expected for f in got) or set().union(*got) != expected):
            wrong.append((key, expected, got))
        if not source.pluralizable and got != [expected]:
            wrong.append((key, expected, got))
    assert wrong == []


@pytest.mark.parametrize("locale", LOCALES.supported)
def test_plural_texts_have_as_many_forms_as_the_language_has(locale: str) -> None:
    catalog = LOCALES.catalog(locale)
    assert catalog.num_plurals == get_plural(locale).num_plurals  # the header says what Babel knows of the language
    for message in catalog:
        if message.id and message.pluralizable and locale != LOCALES.default:
            assert len(message.string) == catalog.num_plurals, message.id


def _used() -> Iterator[tuple[str | None, str]]:
    """Every (context, msgid) the code says: the customer messages, the status page, the SMS replies."""
    for path in sorted((ROOT / "notifications/templates/customer").iterdir()):
        with path.open("rb") as f:
            yield from ((None, m) for _, m, _, _ in extract(babel_extract, f, keywords={"_": None}))
    for path in sorted((ROOT / "tracker/web/templates/status").iterdir()):
        with path.open("rb") as f:
            yield from ((STATUS_PAGE, m) for _, m, _, _ in extract(babel_extract, f, keywords={"t": None}))
    with (ROOT / "tracker/web/status_pages.py").open("rb") as f:
        yield from ((STATUS_PAGE, m) for _, m, _, _ in extract("python", f, keywords={"t": None}))
    for module in ("notifications/customer_messages.py", "tracker/sms_inbound.py"):
        with (ROOT / module).open("rb") as f:
            found = extract("python", f, keywords={"N_": None, "t": None, "plural": (1, 2)})
            yield from ((None, m if isinstance(m, str) else m[0]) for _, m, _, _ in found)


def test_the_english_catalog_holds_exactly_the_texts_the_code_says() -> None:
    used, english = set(_used()), set(messages(LOCALES.default))
    assert (None, "Held by {holder}.") in used and (STATUS_PAGE, "Who has it now") in used  # extraction works
    assert used - english == set(), "said by the code, missing from kernel/translations/en/LC_MESSAGES/baton.po"
    assert english - used == set(), "in the English catalog, said nowhere"


# ---------------------------------------------------------------- choosing a locale


@pytest.mark.parametrize(("tag", "chain"), [
    ("de-AT", ("de-AT", "de", "en")),
    ("de_at", ("de-AT", "de", "en")),
    ("zh-hant-tw", ("zh-Hant-TW", "zh-Hant", "zh", "en")),
    ("en-GB", ("en-GB", "en")),
    ("", ("en",)),
    (None, ("en",)),
    ("*", ("en",)),
])
def test_a_tag_falls_back_through_its_region_to_its_language_then_english(tag: str | None, chain: tuple) -> None:
    assert LOCALES.fallbacks(tag) == chain


@pytest.mark.parametrize(("tag", "locale"),
                         [("de-AT", "de"), ("FR-ca", "fr"), ("es", "es"), ("pt-BR", "pt"), ("nl-BE", "nl"),
                          ("ja", "en"), (None, "en")])
def test_resolve_gives_the_supported_locale_serving_a_tag(tag: str | None, locale: str) -> None:
    assert LOCALES.resolve(tag) == locale


@pytest.mark.parametrize(("preferred", "header", "locale"), [
    ("de-AT", "fr", "de"),  # the customer's own locale wins
    ("ja", "ja;q=1, fr;q=0.8, en;q=0.5", "fr"),  # one Baton does not speak: the best of the header
    (None, "es-MX,es;q=0.9,en;q=0.8", "es"),
    (None, "en;q=0.5, de;q=0.9", "de"),  # by weight, not by order
    (None, "de;q=0, fr;q=0.1", "fr"),  # q=0 is "not this one"
    (None, "*", "en"),
    (None, "ja, zh", "en"),
    (None, "de;q=abc, fr", "fr"),
    (None, "en; q=0.5, es ; q=0.7", "es"),
    (None, None, "en"),
])
def test_pick_takes_the_stored_locale_then_accept_language_then_english(
    preferred: str | None, header: str | None, locale: str
) -> None:
    assert LOCALES.pick(preferred=preferred, accept_language=header) == locale


def test_data_keyed_by_locale_falls_back_the_same_way() -> None:
    labels = {"en": "Found", "de": "Gefunden", "de-AT": "Gefunden (AT)"}
    assert LOCALES.label(labels, "de-AT", missing="x") == "Gefunden (AT)"
    assert LOCALES.label(labels, "de-CH", missing="x") == "Gefunden"
    assert LOCALES.label(labels, "fr", missing="x") == "Found"
    assert LOCALES.label({}, "fr", missing="located") == "located"


def test_a_registry_without_its_default_locale_is_refused() -> None:
    with pytest.raises(ValueError, match="default"):
        Locales(("de", "fr"))


# ---------------------------------------------------------------- texts and times


def test_words_translate_with_context_plurals_and_fields() -> None:
    german = LOCALES.words("de-AT")
    assert german("Held by {holder}.", holder="Lufthansa") == "Derzeit bei Lufthansa."
    assert german.plural("Your open case: {refs}.", "Your open cases: {refs}.", 1, refs="BAG-1") == (
        "Ihr offener Fall: BAG-1.")
    assert german.plural("Your open case: {refs}.", "Your open cases: {refs}.", 2, refs="BAG-1, BAG-2") == (
        "Ihre offenen Fälle: BAG-1, BAG-2.")
    assert german("Status") == "Status" and LOCALES.words("de", context=STATUS_PAGE)("Status") == "Stand"
    assert LOCALES.words("ja")("Held by {holder}.", holder="JAL") == "Held by JAL."


def test_the_catalogs_are_read_once_per_registry() -> None:
    assert LOCALES.translations("de") is LOCALES.translations("de-AT")
    other = Locales()
    assert other.translations("de") is not LOCALES.translations("de")
    assert other.catalog("de") is LOCALES.catalog("de")  # the .po file is parsed once per process


def test_times_are_in_the_readers_zone_and_conventions() -> None:
    moment = dt.datetime(2026, 1, 3, 13, 0, tzinfo=dt.UTC)
    vienna = LOCALES.words("de-AT", "Europe/Vienna")
    assert vienna.time(moment) == "14:00"
    assert vienna.date(moment) == "Sa., 3. Jän."  # Austrian month names: the reader's region, the catalog's language
    assert vienna.iso(moment) == "2026-01-03T14:00+01:00"
    assert LOCALES.words("en", "America/New_York").when(moment) == "Sat 3 Jan, 08:00"
    assert LOCALES.words("en-US", "America/New_York").time(moment) == "8:00\u202fAM"
    assert LOCALES.words("en", "Europe/London").time(moment.replace(tzinfo=None)) == "1:00\u202fPM"  # naive is UTC


def test_an_unknown_zone_gives_utc_and_says_so() -> None:
    moment = dt.datetime(2026, 1, 3, 13, 0, tzinfo=dt.UTC)
    assert LOCALES.words("de", "Mars/Olympus").time(moment) == "13:00 UTC"
