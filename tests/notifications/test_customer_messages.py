"""Customer messages: what the SMS and the email say, in which language, at which local time,
and that every SMS stays within two segments."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract
from jinja2.ext import babel_extract

from kernel.locales import LOCALES as REGISTRY
from notifications import customer_messages
from notifications.customer_messages import KINDS, CustomerView, render_email, render_sms, resolve_locale
from notifications.rendering import TEMPLATES
from notifications.sms_text import Segments, segments

UTC = dt.UTC
URL = "https://baton.example.com/s/Qm9uIHZveWFnZSwgQWRhIExvdmVsYWNl"
# Monday 2 November 2026 (winter time: Berlin is UTC+1, London UTC+0, New York UTC-5).
MONDAY = dt.datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
TUESDAY_13_UTC = dt.datetime(2026, 11, 3, 13, 0, tzinfo=UTC)


def view(**changes: object) -> CustomerView:
    base = CustomerView(
        kind="update",
        ref="BAG-7KQ3X9T",
        case_type="baggage",
        first_name="Ada",
        locale="en",
        timezone="Europe/London",
        status_label="Located",
        holder_name="Lufthansa",
        next_update_due=TUESDAY_13_UTC,
        status_url=URL,
        message="Your bag is in Frankfurt.",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------- language and time (criterion 5)


def test_german_customer_gets_german_text_with_berlin_times() -> None:
    german = view(locale="de", timezone="Europe/Berlin", status_label="Gefunden")

    sms = render_sms(german)
    assert sms.startswith("Baton BAG-7KQ3X9T: Neues zu Ihrem Gepäckstück: Gefunden.")
    assert "Derzeit bei Lufthansa." in sms
    assert "Nächste Rückmeldung spätestens am Di., 3. Nov. um 14:00." in sms  # 13:00 UTC is 14:00 CET
    assert "13:00" not in sms

    subject, text, html = render_email(german)
    assert subject == "Neues zu Ihrem Gepäckstück (BAG-7KQ3X9T): Gefunden"
    assert text.startswith("Hallo Ada,\n")
    assert "Nächste Rückmeldung spätestens: Di., 3. Nov., 14:00" in text
    assert '<html lang="de">' in html and "Di., 3. Nov., 14:00" in html
    assert "13:00" not in text + html


def test_berlin_summer_time_is_two_hours_ahead_of_utc() -> None:
    sms = render_sms(
        view(locale="de", timezone="Europe/Berlin", next_update_due=dt.datetime(2026, 7, 7, 13, 0, tzinfo=UTC))
    )
    assert "spätestens am Di., 7. Juli um 15:00." in sms


@pytest.mark.parametrize("locale", ["de-AT", "de_DE", "DE"])
def test_a_regional_german_locale_gets_german(locale: str) -> None:
    assert resolve_locale(locale) == "de"
    assert "Gepäckstück" in render_sms(view(locale=locale, timezone="Europe/Vienna"))


@pytest.mark.parametrize("locale", ["xx", "zh-CN", "", "sv-SE"])
def test_an_unknown_locale_falls_back_to_english(locale: str) -> None:
    unknown = view(locale=locale, timezone="Europe/Berlin")
    assert render_sms(unknown).startswith("Baton BAG-7KQ3X9T: News about your bag: Located. Held by Lufthansa.")
    subject, text, html = render_email(unknown)
    assert subject == "News about your bag (BAG-7KQ3X9T): Located"
    assert text.startswith("Hello Ada,\n")
    assert '<html lang="en">' in html
    # English words, but still the customer's own clock: 13:00 UTC is 2:00 PM in Berlin.
    assert "Next update due: Tue, Nov 3, 2:00\u202fPM" in text


@pytest.mark.parametrize(
    ("locale", "zone", "expected"),
    [
        ("en", "America/New_York", "Next update due on Tue, Nov 3 at 8:00 AM."),
        ("en-GB", "Europe/London", "Next update due on Tue 3 Nov at 13:00."),
        ("fr", "Europe/Paris", "Prochaine mise à jour au plus tard le mar. 3 nov. à 14:00."),
        ("es", "Europe/Madrid", "Proxima actualizacion a mas tardar el mar, 3 nov a las 14:00."),
        ("it", "Europe/Rome", "Prossimo aggiornamento previsto il mar 3 nov alle 14:00."),
        ("nl", "Europe/Amsterdam", "Volgende update uiterlijk op di 3 nov om 14:00."),
        ("pt", "Europe/Lisbon", "Proxima atualizacao até ter., 3 de nov., às 13:00."),
        ("pl", "Europe/Warsaw", "Nastepna aktualizacja najpozniej: wt., 3 lis, godz. 14:00."),
    ],
)
def test_times_follow_the_customers_zone_and_locale_conventions(locale: str, zone: str, expected: str) -> None:
    assert expected in render_sms(view(locale=locale, timezone=zone))


def test_sms_names_a_weekday_within_a_week_and_a_date_beyond_never_today_or_tomorrow() -> None:
    # A message held through quiet hours is read the next morning: "tomorrow" would then be wrong.
    soon = render_sms(view(now=MONDAY))
    assert "Next update due on Tuesday at 1:00\u202fPM." not in soon  # the narrow space becomes GSM-7
    assert "Next update due on Tuesday at 1:00 PM." in soon
    later = render_sms(view(now=MONDAY, next_update_due=dt.datetime(2026, 11, 12, 9, 0, tzinfo=UTC)))
    assert "Next update due on Thu, Nov 12 at 9:00 AM." in later
    assert not re.search(r"today|tomorrow", soon + later, re.IGNORECASE)


def test_a_wrong_time_zone_shows_utc_and_says_so() -> None:
    assert "Next update due on Tue, Nov 3 at 1:00 PM UTC." in render_sms(view(timezone="Mars/Olympus_Mons"))


# ---------------------------------------------------------------- what each SMS says


def test_update_sms_names_holder_and_next_update_and_quotes_the_partner() -> None:
    assert render_sms(view(now=MONDAY)) == (
        "Baton BAG-7KQ3X9T: News about your bag: Located. Held by Lufthansa. Next update due on Tuesday at 1:00 PM."
        f' "Your bag is in Frankfurt." Details: {URL}'
    )


def test_opened_sms_says_a_case_is_open_and_gives_the_link() -> None:
    sms = render_sms(view(kind="opened", message=None, status_label="Reported missing"))
    assert sms.startswith("Baton BAG-7KQ3X9T: We have opened a case for your bag and will keep you posted.")
    assert "Handled by Lufthansa." in sms
    assert sms.endswith(f"Track it here: {URL}")


def test_escalation_sms_apologises_and_says_whom_we_wait_on_and_when_we_chased() -> None:
    escalation = view(
        kind="escalation",
        locale="de",
        timezone="Europe/Berlin",
        message=None,
        waiting_on="Lufthansa",
        chased_at=dt.datetime(2026, 11, 2, 13, 5, tzinfo=UTC),
        now=MONDAY,
    )
    sms = render_sms(escalation)
    assert sms.startswith(
        "Baton BAG-7KQ3X9T: Entschuldigen Sie bitte die Wartezeit. "
        "Wir warten auf eine Rückmeldung von Lufthansa und haben um 14:05 nachgehakt."
    )
    assert "Derzeit bei Lufthansa" not in sms  # the holder is the party we wait on: said once
    assert sms.endswith(f"Details: {URL}")
    en = render_sms(dataclasses.replace(escalation, locale="en"))
    assert "Sorry for the wait. We are waiting on Lufthansa and chased them at 2:05 PM." in en


def test_an_overdue_next_update_is_not_repeated_as_a_promise() -> None:
    late = view(kind="escalation", waiting_on="Lufthansa", now=dt.datetime(2026, 11, 3, 20, 0, tzinfo=UTC))
    assert "Next update due" not in render_sms(late)
    _, text, html = render_email(late)
    assert "Next update due" not in text + html
    assert "Next update due on Tuesday at 1:00 PM." in render_sms(dataclasses.replace(late, now=MONDAY))


def test_resolution_sms_asks_whether_the_customer_is_satisfied() -> None:
    sms = render_sms(
        view(kind="resolution", status_label="Delivered", resolution="Delivered to your hotel.", message=None)
    )
    assert sms == (
        'Baton BAG-7KQ3X9T: Your case has been resolved. Status: Delivered. "Delivered to your hotel."'
        f" Please tell us if you are satisfied: {URL}"
    )


def test_deadline_sms_says_the_bag_is_treated_as_lost_and_how_to_claim() -> None:
    bag = render_sms(view(kind="deadline", message=None))
    assert "your bag has not been found within 21 days and is now treated as lost" in bag
    assert bag.endswith(f"How to claim: {URL}")
    parcel = render_sms(view(kind="deadline", case_type="parcel", message=None))
    assert "your parcel has not been found in time" in parcel and "21" not in parcel


def test_sms_is_gsm7_for_latin_languages_even_with_typographic_partner_text() -> None:
    sms = render_sms(view(locale="es", message="Su equipaje llegó a Málaga – “hoy”…"))
    assert segments(sms).encoding == "GSM-7"
    assert '"Su equipaje llego a Malaga - "hoy"..."' in sms
    assert "Proxima actualizacion" in sms


def test_sms_drops_a_partners_emoji_rather_than_pay_for_ucs2() -> None:
    sms = render_sms(view(locale="es", message="¡Encontrado! 👍🏽"))
    assert segments(sms).encoding == "GSM-7"
    assert '"¡Encontrado!" Detalles:' in sms


def test_sms_keeps_the_original_spelling_when_ucs2_cannot_be_avoided() -> None:
    short_link = "https://b.example/s/x"
    sms = render_sms(
        view(
            kind="resolution",
            locale="es",
            status_label="Entregado",
            resolution="已送达酒店",
            message=None,
            status_url=short_link,
        )
    )
    assert segments(sms) == Segments("UCS-2", len(sms), 2)
    assert (
        sms
        == f'Baton BAG-7KQ3X9T: Su caso se ha resuelto. Estado: Entregado. "已送达酒店" Díganos si está conforme: {short_link}'
    )


def test_names_and_labels_with_markup_characters_reach_texts_unchanged() -> None:
    odd = view(status_label="Found & <kept>", holder_name="Tom & Jerry <Ltd>", message='Say "hi" & go')
    sms = render_sms(odd)
    assert "News about your bag: Found & <kept>. Held by Tom & Jerry <Ltd>." in sms
    assert '"Say "hi" & go"' in sms
    _, text, _ = render_email(odd)
    assert "News about your bag: Found & <kept>." in text and "Held by: Tom & Jerry <Ltd>" in text


# ---------------------------------------------------------------- two segments (criterion 6)

# Every language of the registry, and tags it serves through a fallback.
LOCALES = [*REGISTRY.supported, "xx", "en-GB", "de-AT", "fr-CA", "es-MX"]
LONGEST_PARTNER = "Swissport International Ltd. Frankfurt Baggage Services"
LONG_REF = "BAG-7KQ3X9TWXYZ2"
LONG_URL = "https://baton.example.com/s/" + "k3Jx9QpL2mVb7NcT4wYh8RzD5aFs6GeU"
LONG_LABEL = "Übergeben an den Kurier zur Zustellung ß"
PARTNER_TEXT = ("We found your bag at Frankfurt – it’s on the “evening” flight… Ça va? Grüße! " * 30)[:2000]


def longest(kind: str, locale: str, case_type: str, now: dt.datetime | None, **changes: object) -> CustomerView:
    return dataclasses.replace(
        view(),
        kind=kind,
        ref=LONG_REF,
        case_type=case_type,
        first_name="Maximiliane-Josephine",
        locale=locale,
        timezone="America/Argentina/ComodRivadavia",
        status_label=LONG_LABEL,
        holder_name=LONGEST_PARTNER,
        next_update_due=dt.datetime(2026, 11, 30, 13, 0, tzinfo=UTC),
        status_url=LONG_URL,
        message=PARTNER_TEXT,
        waiting_on="Swissport International Ltd. Frankfurt Baggage Handling",
        chased_at=dt.datetime(2026, 11, 28, 13, 5, tzinfo=UTC),
        resolution=PARTNER_TEXT,
        now=now,
        **changes,
    )


def test_the_longest_values_are_as_long_as_promised() -> None:
    assert (
        len(LONG_LABEL) == 40
        and len(PARTNER_TEXT) == 2000
        and len(LONG_URL) == len("https://baton.example.com/s/") + 32
    )


@pytest.mark.parametrize("now", [None, MONDAY], ids=["dated", "weekday"])
@pytest.mark.parametrize("case_type", ["baggage", "parcel"])
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_sms_fits_two_segments_with_the_longest_plausible_values(
    kind: str, locale: str, case_type: str, now: dt.datetime | None
) -> None:
    sms = render_sms(longest(kind, locale, case_type, now))
    size = segments(sms)
    assert size.count <= 2, (size, sms)
    assert size.encoding == "GSM-7", sms  # Latin languages never pay for UCS-2
    assert sms.startswith(f"Baton {LONG_REF}")
    assert sms.endswith(" " + LONG_URL) and sms.count(LONG_URL) == 1
    if kind == "update":
        assert LONG_LABEL in sms and LONGEST_PARTNER in sms  # the head is never given up for the message
    if kind == "escalation":
        assert "Swissport International Ltd. Frankfurt Baggage Handling" in sms


CHINESE_PARTNER = "中国国际航空股份有限公司北京首都国际机场行李服务部"
CHINESE_TEXT = ("您的行李已在法兰克福找到，今晚将随航班送达。" * 100)[:2000]


@pytest.mark.parametrize("locale", [*REGISTRY.supported, "zh-CN"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_sms_fits_two_segments_with_chinese_names_and_messages(kind: str, locale: str) -> None:
    chinese = longest(
        kind,
        locale,
        "baggage",
        None,
    )
    chinese = dataclasses.replace(
        chinese,
        first_name="小明",
        holder_name=CHINESE_PARTNER,
        waiting_on=CHINESE_PARTNER,
        message=CHINESE_TEXT,
        resolution=CHINESE_TEXT,
    )
    sms = render_sms(chinese)
    assert segments(sms).count <= 2, (segments(sms), sms)
    assert sms.startswith(f"Baton {LONG_REF}")
    assert sms.endswith(" " + LONG_URL) and sms.count(LONG_URL) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_chinese_status_label_makes_an_honest_ucs2_sms_within_two_segments(kind: str) -> None:
    chinese = dataclasses.replace(
        longest(kind, "zh-CN", "baggage", MONDAY),
        status_label="已找到，正在转运",
        holder_name="中国国际航空",
        waiting_on="中国国际航空",
        message=CHINESE_TEXT,
        resolution=CHINESE_TEXT,
    )
    sms = render_sms(chinese)
    size = segments(sms)
    assert size.count <= 2, (size, sms)
    assert sms.endswith(" " + LONG_URL)
    if kind == "update":  # the status is in the lead: UCS-2 is unavoidable, and still two segments
        assert size.encoding == "UCS-2" and "已找到，正在转运" in sms


# ---------------------------------------------------------------- email


def test_email_is_localized_multipart_content_with_a_real_link() -> None:
    subject, text, html = render_email(view(kind="opened", locale="fr", timezone="Europe/Paris", message=None))
    assert subject == "Dossier BAG-7KQ3X9T ouvert pour votre bagage"
    assert text.startswith(
        "Bonjour Ada,\n\nNous avons ouvert un dossier pour votre bagage et vous tiendrons au courant."
    )
    assert "Suivez votre dossier ici" not in text  # that is the SMS's wording
    assert f"Voir où en est le dossier BAG-7KQ3X9T\u00a0: {URL}" in text
    assert "Pris en charge par\u00a0: Lufthansa" in text
    assert html.lstrip().startswith("<!doctype html>") and '<html lang="fr">' in html
    assert f'<a href="{URL}" style="' in html
    assert re.search(r"<a [^>]*>Voir où en est le dossier BAG-7KQ3X9T</a>", html)  # says where it goes
    assert "<title>Dossier BAG-7KQ3X9T ouvert pour votre bagage</title>" in html


def test_email_html_escapes_the_partner_message_and_names_exactly_once() -> None:
    hostile = view(
        message='<script>alert("x")</script> Tom & Jerry',
        holder_name="Ground <b>Handling</b> & Co",
        first_name="<i>Ada</i>",
    )
    _, text, html = render_email(hostile)
    assert "<script" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Tom &amp; Jerry" in html
    assert "Ground &lt;b&gt;Handling&lt;/b&gt; &amp; Co" in html
    assert "Hello &lt;i&gt;Ada&lt;/i&gt;," in html
    assert "&amp;amp;" not in html and "&amp;lt;" not in html
    # The plain-text part shows the partner's words verbatim.
    assert '    <script>alert("x")</script> Tom & Jerry' in text


def test_email_has_no_external_assets_and_only_inline_styles() -> None:
    for kind in KINDS:
        _, _, html = render_email(view(kind=kind, waiting_on="Lufthansa", resolution="Delivered."))
        assert not re.search(r"<(img|link|script|style|iframe)\b|\bsrc=|url\(", html, re.IGNORECASE)
        assert set(re.findall(r"https?://[^\s\"<]+", html)) == {URL}


def test_greeting_uses_only_the_first_name() -> None:
    _, text, html = render_email(view(first_name="Ada"))
    assert text.startswith("Hello Ada,\n") and "Lovelace" not in text
    _, text, html = render_email(view(first_name=None, locale="es"))
    assert text.startswith("Hola:\n") and "None" not in text + html


def test_escalation_email_is_an_honest_apology_naming_whom_we_chased_and_when() -> None:
    subject, text, _ = render_email(
        view(
            kind="escalation",
            waiting_on="Lufthansa",
            chased_at=dt.datetime(2026, 11, 2, 13, 5, tzinfo=UTC),
            message=None,
        )
    )
    assert subject == "Sorry for the wait: we have chased Lufthansa (BAG-7KQ3X9T)"
    assert (
        "We are sorry that you have had to wait. We are waiting on Lufthansa and chased them on Mon, Nov 2 at 1:05\u202fPM."
        in text
    )
    assert "complaint department" in text


def test_resolution_email_shows_the_resolution_and_asks_for_a_verdict() -> None:
    subject, text, html = render_email(
        view(kind="resolution", locale="de", resolution="Zugestellt an Ihr Hotel.", message=None)
    )
    assert subject == "Ihr Vorgang BAG-7KQ3X9T ist abgeschlossen: Sind Sie zufrieden?"
    assert "Lösung:\n    Zugestellt an Ihr Hotel." in text
    assert f"Sagen Sie uns, ob Sie zufrieden sind: {URL}" in text
    assert re.search(r"<a [^>]*>Sagen Sie uns, ob Sie zufrieden sind</a>", html)
    assert "Nächste Rückmeldung" not in text  # a closed case owes no next update


def test_subject_is_one_line_whatever_a_partner_name_contains() -> None:
    subject, _, _ = render_email(view(kind="escalation", waiting_on="Luft\r\nBcc: x@example.com"))
    assert "\n" not in subject and "\r" not in subject


def test_unknown_kind_and_non_http_link_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        render_sms(view(kind="party.late"))
    with pytest.raises(ValueError, match="status_url"):
        render_email(view(status_url="javascript:alert(1)"))


# ---------------------------------------------------------------- the catalog


def _message_ids() -> set[str]:
    ids = set()
    for path in sorted((TEMPLATES / "customer").iterdir()):
        with path.open("rb") as f:
            ids |= {msg for _, msg, _, _ in extract(babel_extract, f, keywords={"_": None})}
    with Path(customer_messages.__file__).open("rb") as f:
        ids |= {msg for _, msg, _, _ in extract("python", f, keywords={"N_": None, "t": None})}
    return ids


def test_every_message_the_templates_say_is_in_the_english_catalog() -> None:
    """Completeness across languages and placeholders are tests/kernel/test_locales.py's; this is the link
    from the templates to the catalog."""
    ids = _message_ids()
    assert {"bag", "parcel", "on {date} at {time}", "Held by {holder}."} <= ids  # extraction works
    english = {message.id for message in REGISTRY.catalog("en") if message.id and not message.context}
    assert ids - english == set(), "said by a template, missing from kernel/translations/en/LC_MESSAGES/baton.po"
