"""The customer's status page (``/s/{token}``) in headless Chromium, against a real server.

Issue 5, "Done when" 1–3 and 6: the demo case's page on a phone, the message form, the confirm /
dispute buttons after closure, the honest notice for a late and an escalated partner, axe-core in
two locales, the page without JavaScript, and no request to any other host.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

from tests.browser.conftest import LiveServer, shot

NEW_YORK = ZoneInfo("America/New_York")


def parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def party(case: dict[str, Any], partner: str) -> dict[str, Any]:
    return next(p for p in case["parties"] if p["partner"] == partner)


def field_text(page: Any, name: str) -> str:
    return page.locator(f"[data-field={name}]").inner_text().strip()


def timeline(page: Any, selector: str = ".timeline li") -> list[str]:
    items = page.locator(selector)
    assert items.count() > 0, "the timeline is empty"
    return [text.strip() for text in items.all_inner_texts()]


def event_fields(event: dict[str, Any]) -> dict[str, Any]:
    """An event's posted fields, whether the API nests them under ``body`` or not."""
    return {**event, **(event.get("body") or {})}


def assert_shows_time(text: str, when: dt.datetime, zone: ZoneInfo = NEW_YORK) -> None:
    """``text`` names ``when`` in the customer's zone: its day, month and 24-hour time."""
    local = when.astimezone(zone)
    for part in (f"{local.day} ", local.strftime("%b"), local.strftime("%H:%M")):
        assert part in text, f"{text!r} does not show {local:%a %d %b %H:%M %Z} ({part!r} missing)"


# ---------------------------------------------------------------- 1. the demo case on a phone


def test_demo_case_page_on_a_phone_shows_status_holder_next_update_and_timeline(
    live: LiveServer, demo_url: str, page: Any
) -> None:
    case = live.case(live.demo.ref)
    courier = party(case, "fastcourier")
    assert courier["responsible"] and courier["next_update_due"], case["parties"]

    response = page.goto(demo_url)
    assert response is not None and response.status == 200
    assert page.viewport_size == {"width": 390, "height": 844}

    assert field_text(page, "status") == "Out for delivery to you" == case["status_label"]
    assert field_text(page, "holder") == "FastCourier"
    due = parse(courier["next_update_due"])
    next_update = page.locator("[data-field=next-update] time")
    assert parse(next_update.get_attribute("datetime") or "") == due
    assert_shows_time(field_text(page, "next-update"), due)
    for name in ("status", "holder", "next-update"):
        assert page.locator(f"[data-field={name}]").is_visible()

    items = timeline(page, ".timeline li:not(.mine)")  # other tests may have written messages already
    assert len(items) >= 6, items
    assert "Out for delivery to you" in items[0] and "on its way to you" in items[0], items[0]  # newest first
    assert any("found in Frankfurt" in item for item in items), items
    assert any("Now with FastCourier." in item for item in items), items
    assert "We opened a search for your bag." in items[-1], items[-1]
    assert page.locator(".timeline li").first.is_visible()

    body = page.locator("body").inner_text()
    assert "Hello Ada," in body
    # Only the first name; no contact data, no internal notes, no partner-only content.
    for secret in ("Lovelace", "ada@example.com", "4155550100", "transfer belt", "Tag 0016123456", "belt 14"):
        assert secret not in body, f"the page shows {secret!r}"
    # Mobile first: nothing wider than the phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "status-demo-390x844")


# ---------------------------------------------------------------- 2. the message form


def test_customer_message_form_posts_a_customer_message_event(live: LiveServer, demo_url: str, page: Any) -> None:
    text = f"The hotel reception closes at 23:00, please ring the night bell. ({uuid.uuid4().hex[:8]})"
    page.goto(demo_url)
    page.get_by_label("Your message").fill(text)
    with page.expect_navigation():
        page.get_by_role("button", name="Send message").click()

    assert urlsplit(page.url).query == "sent=1"
    flash = page.get_by_role("status")
    assert "your message was sent" in flash.inner_text()
    mine = page.locator(".timeline li.mine").filter(has_text=text)
    assert mine.count() == 1
    assert mine.locator("strong").inner_text().strip() == "You wrote:"
    assert text in timeline(page)[0]  # the newest entry
    shot(page, "status-message-sent")

    posted = [e for e in live.events(live.demo.ref) if e["type"] == "customer.message"]
    assert any(event_fields(e).get("message") == text for e in posted), json.dumps(posted, indent=1)
    event = next(e for e in posted if event_fields(e).get("message") == text)
    assert event["actor"] == "customer" and event["visibility"] == "parties"


# ---------------------------------------------------------------- 3. closure, then the customer's answer


def test_after_closure_the_customer_can_say_not_satisfied(live: LiveServer, page: Any) -> None:
    case = live.open_case()
    ref = case["ref"]
    page.goto(live.status_link(case["status_url"]))
    assert page.locator("section.confirm").count() == 0, "confirm buttons before the case is resolved"

    closed = live.api("POST", f"/v1/cases/{ref}/close", json={"resolution": "Delivered to your hotel"})
    assert closed["closed_at"] and closed["satisfaction"] is None

    page.reload()
    confirm = page.locator("section.confirm")
    assert confirm.is_visible()
    assert "Delivered to your hotel" in confirm.inner_text()
    assert page.get_by_role("button", name="Yes, I am satisfied").is_visible()
    assert field_text(page, "next-update") == "No further updates expected"
    shot(page, "status-closed-confirm")

    comment = "It arrived, but four days late and nobody called me back."
    page.get_by_label("Anything you would like to add (optional)").fill(comment)
    with page.expect_navigation():
        page.get_by_role("button", name="No, I am not satisfied").click()

    assert "answered=dissatisfied" in page.url
    assert "complaint department will look at your case again" in page.get_by_role("status").inner_text()
    assert page.locator("section.confirm").count() == 0, "the buttons stay after the answer"
    assert "You told us you are not satisfied." in timeline(page)[0]
    shot(page, "status-closed-dissatisfied")

    after = live.case(ref)
    assert after["satisfaction"] == "dissatisfied"
    assert after["closed_at"] is not None and parse(after["closed_at"]) == parse(closed["closed_at"])
    answers = [event_fields(e) for e in live.events(ref) if e["type"] == "customer.confirmation"]
    assert [(a.get("satisfaction"), a.get("comment")) for a in answers] == [("dissatisfied", comment)]
    disputes = live.api("GET", "/v1/disputes")
    assert ref in json.dumps(disputes), f"{ref} is not in front of the complaint department: {disputes}"


# ---------------------------------------------------------------- 4. late, then escalated


def test_late_then_escalated_partner_shows_the_honest_notice(live: LiveServer, page: Any) -> None:
    case = live.open_case(parties=[
        {"partner": "ua", "role": "owner"},
        {"partner": "fastcourier", "role": "courier", "responsible": True, "cadence": "PT4H"},
    ])
    ref, url = case["ref"], live.status_link(case["status_url"])
    page.goto(url)
    assert page.locator(".notice").count() == 0, "a notice before anyone is late"

    due = parse(party(case, "fastcourier")["next_update_due"])
    live.clock.set(due + dt.timedelta(minutes=1))
    live.worker_round()
    assert party(live.case(ref), "fastcourier")["state"] == "late"

    page.goto(url)
    late = page.locator(".notice-late")
    assert late.count() == 1 and late.is_visible()
    assert late.get_attribute("role") == "alert"
    text = late.inner_text()
    assert "We are waiting on FastCourier" in text, text
    assert_shows_time(text, due)
    assert page.locator(".notice-escalated").count() == 0
    shot(page, "status-partner-late")

    flagged = [event_fields(e) for e in live.events(ref) if e["type"] == "party.late"]
    assert len(flagged) == 1, flagged
    escalates_at = parse(flagged[0]["escalates_at"])
    assert escalates_at > live.clock.now()
    live.clock.set(escalates_at + dt.timedelta(minutes=1))
    live.worker_round()
    assert party(live.case(ref), "fastcourier")["state"] == "escalated"

    page.goto(url)
    escalated = page.locator(".notice-escalated")
    assert escalated.count() == 1 and escalated.is_visible()
    text = escalated.inner_text()
    assert "sorry" in text and "FastCourier" in text, text
    assert page.locator(".notice-late").count() == 0
    shot(page, "status-partner-escalated")


# ---------------------------------------------------------------- 5. accessibility, two locales


def axe_violations(context_for: Any, axe: Path, url: str, **context_options: Any) -> tuple[Any, list[dict]]:
    # The page's CSP (script-src 'self') would refuse axe: only this test context bypasses it.
    page = context_for(bypass_csp=True, **context_options).new_page()
    response = page.goto(url)
    assert response is not None and response.status == 200
    page.add_script_tag(path=str(axe))
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    assert results["testEngine"]["name"] == "axe-core"
    assert len(results["passes"]) > 10, "axe checked next to nothing"
    return page, results["violations"]


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:5]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: {node['html'][:160]}")
            lines.append("       " + (node.get("failureSummary") or "").replace("\n", "\n       "))
    return "\n".join(lines)


@pytest.mark.parametrize("variant", ["en-demo", "en-late-partner", "de-customer", "de-accept-language-closed"])
def test_status_page_has_no_serious_accessibility_violations(
    live: LiveServer, demo_url: str, context_for: Any, axe_source: Path, variant: str
) -> None:
    if variant == "en-demo":
        url, lang, options, words = demo_url, "en", {}, "Who has it now"
    elif variant == "en-late-partner":
        # The notice's colours and role=alert are checked too.
        case = live.open_case(parties=[{"partner": "ua", "role": "owner"},
                                       {"partner": "fastcourier", "role": "courier", "responsible": True}])
        live.clock.set(parse(party(case, "fastcourier")["next_update_due"]) + dt.timedelta(minutes=1))
        live.worker_round()
        url, lang, options, words = live.status_link(case["status_url"]), "en", {}, "We are waiting on FastCourier"
    elif variant == "de-customer":
        # The customer's own locale wins over the browser's English Accept-Language.
        case = live.open_case(customer={"name": "Emmy Noether", "phone": "+4915112345678",
                                        "email": "emmy@example.de", "locale": "de", "timezone": "Europe/Berlin"})
        url, lang, options, words = live.status_link(case["status_url"]), "de", {}, "Wer es gerade hat"
    else:
        # A customer without a locale Baton speaks: the browser's Accept-Language picks German; the
        # resolved case shows the confirm form too.
        case = live.open_case(customer={"name": "Lise Meitner", "email": "lise@example.at", "locale": "sv",
                                        "timezone": "Europe/Vienna"})
        live.api("POST", f"/v1/cases/{case['ref']}/close", json={"resolution": "Zugestellt"})
        url, lang, words = live.status_link(case["status_url"]), "de", "Sind Sie mit der Lösung zufrieden?"
        options = {"locale": "de-DE", "extra_http_headers": {"Accept-Language": "de-DE,de;q=0.9"}}

    page, violations = axe_violations(context_for, axe_source, url, **options)
    assert page.locator("html").get_attribute("lang") == lang
    assert words in page.locator("body").inner_text()
    shot(page, f"status-axe-{variant}")
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not serious, f"axe-core on {variant}:\n{describe(serious)}"


# ---------------------------------------------------------------- 6. without JavaScript


def test_message_form_works_without_javascript(live: LiveServer, demo_url: str, context_for: Any) -> None:
    page = context_for(java_script_enabled=False).new_page()
    page.goto(demo_url)
    assert page.locator("script").count() == 0, "the status page ships a script"
    text = f"Sent from a phone with JavaScript off ({uuid.uuid4().hex[:8]})"
    page.locator("textarea#message").fill(text)
    with page.expect_navigation():
        page.locator("section.write button[type=submit]").click()
    assert urlsplit(page.url).query == "sent=1"
    assert "your message was sent" in page.locator(".flash").inner_text()
    assert text in timeline(page)[0]
    messages = [event_fields(e).get("message") for e in live.events(live.demo.ref) if e["type"] == "customer.message"]
    assert text in messages
    shot(page, "status-no-javascript")


# ---------------------------------------------------------------- 7. nothing from other hosts


def test_page_requests_nothing_from_other_hosts(live: LiveServer, demo_url: str, page: Any) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = page.goto(demo_url, wait_until="networkidle")
    assert response is not None and response.status == 200
    page.get_by_label("Your message").fill("Is it still coming today?")
    with page.expect_navigation():
        page.get_by_role("button", name="Send message").click()
    page.wait_for_load_state("networkidle")

    server = urlsplit(live.url).netloc
    foreign = [url for url in requested if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).netloc != server]
    assert not foreign, f"requests to other hosts: {foreign}"
    paths = {urlsplit(url).path for url in requested}
    token_path = urlsplit(demo_url).path
    assert {token_path, "/static/status.css", f"{token_path}/messages"} <= paths, sorted(paths)

    headers = response.headers
    assert headers["referrer-policy"] == "no-referrer"
    assert "noindex" in headers["x-robots-tag"]
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp, csp
