"""The staff console in headless Chromium, against the live demo server of ``conftest.py``.

1. A staff member signs in with the demo admin token, finds the lost-bag case by its WorldTracer
   reference, nudges the silent courier, sees the nudge in the timeline and its webhook listed,
   and opens the courier's scorecard with its charts.
2. Every action works without JavaScript; with it, destructive actions ask first.
3. axe-core finds no serious or critical violations on the console's pages.

Screenshots go to ``tests/artifacts/screenshots/console-*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import update

from partners.models import Partner
from tests.browser.conftest import LiveServer, shot

DESKTOP = {"width": 1280, "height": 900}
WORLDTRACER = "JFKUA12345"
SILENT = "fastcourier"
HOOK = "https://hooks.fastcourier.example/baton"


async def _set_webhook_url(live: LiveServer, partner_id: str, url: str | None) -> None:
    async with live.app.state.runtime.sessionmaker() as session:
        await session.execute(update(Partner).where(Partner.id == partner_id).values(webhook_url=url))
        await session.commit()


@pytest.fixture(scope="module")
def courier_webhook(live: LiveServer) -> Iterator[str]:
    """FastCourier gets a webhook URL (the demo has none), so a nudge queues a signed webhook.

    Nothing leaves the machine: the live server's worker rounds run without transports.
    """
    live.run(_set_webhook_url(live, SILENT, HOOK))
    yield HOOK
    live.run(_set_webhook_url(live, SILENT, None))


@pytest.fixture(scope="module")
def overdue(live: LiveServer) -> None:
    """One watchdog round at the demo's instant: the silent courier and others become late or
    escalated, as the embedded worker would make them within seconds of ``make run``."""
    live.worker_round()


def sign_in(page: Any, live: LiveServer, path: str = "/console/") -> None:
    """Open a console page, get sent to sign in, sign in with the demo admin token, land back there."""
    page.goto(live.url + path)
    assert urlsplit(page.url).path == "/console/login"
    page.get_by_label("Staff token").fill(live.demo.admin_token)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert urlsplit(page.url).path == urlsplit(path).path, page.url


# ---------------------------------------------------------------- 1. find, nudge, see it, scorecard


def test_staff_find_the_demo_case_nudge_the_silent_partner_and_open_its_scorecard(
    live: LiveServer, context_for: Any, courier_webhook: str, overdue: None
) -> None:
    ref = live.demo.ref
    before = [e["seq"] for e in live.events(ref) if e["type"] == "party.nudged"]
    page = context_for(viewport=DESKTOP).new_page()
    sign_in(page, live)
    assert page.get_by_role("heading", level=1).inner_text() == "Overdue queue"
    assert page.locator(f'a.ref:text-is("{ref}")').count() >= 1, "the silent courier is not in the queue"
    shot(page, "console-queue")

    page.get_by_label("Search cases").fill(WORLDTRACER)
    with page.expect_navigation():
        page.get_by_label("Search cases").press("Enter")
    results = page.locator("table.results tbody tr")
    assert results.count() == 1, results.all_inner_texts()
    assert WORLDTRACER in results.first.inner_text()
    shot(page, "console-search-worldtracer")

    with page.expect_navigation():
        results.first.get_by_role("link", name=ref).click()
    assert urlsplit(page.url).path == f"/console/cases/{ref}"
    assert "chain verified" in page.locator("[data-field=verification]").inner_text()
    courier = page.locator(f'table.parties tr[data-partner="{SILENT}"]')
    assert "escalated" in courier.inner_text() or "late" in courier.inner_text(), courier.inner_text()

    with page.expect_navigation():
        courier.get_by_role("button", name=re.compile(r"^Nudge")).click()
    assert "Nudged" in page.get_by_role("status").inner_text()

    nudges = page.locator('.timeline li[data-type="party.nudged"]')
    assert nudges.count() == len(before) + 1
    newest = nudges.last
    assert "FastCourier" in newest.inner_text() and "staff:demo-admin" in newest.inner_text()
    newest.scroll_into_view_if_needed()
    assert newest.is_visible()
    webhook = page.locator(f'table.webhooks tr[data-kind="party.nudged"][data-partner="{SILENT}"]')
    assert webhook.count() == 1, page.locator("table.webhooks").inner_text()
    assert courier_webhook in webhook.inner_text()
    assert re.search(r"pending|sending|logged|delivered", webhook.inner_text())
    shot(page, "console-case-nudged")

    after = [e for e in live.events(ref) if e["type"] == "party.nudged"]
    assert len(after) == len(before) + 1 and after[-1]["actor"] == "staff:demo-admin"

    with page.expect_navigation():
        courier.get_by_role("link", name="FastCourier").click()
    assert urlsplit(page.url).path == f"/console/partners/{SILENT}"
    charts = page.locator("svg.chart[role=img]")
    assert charts.count() >= 5
    assert charts.first.is_visible()
    # The chart's accessible name is its <title>, as a screen reader announces it.
    episodes = page.get_by_role("img", name=re.compile(r"^Late and escalated episodes per (day|week)"))
    assert episodes.is_visible() and episodes.locator("rect.bar").count() > 0
    assert page.locator("dl.figures").get_by_text("Nudges").is_visible()
    shot(page, "console-scorecard-fastcourier")

    with page.expect_navigation():
        page.get_by_role("navigation", name="Console").get_by_role("link", name="Scorecards").click()
    assert page.locator("table.league tbody tr").count() == 4
    shot(page, "console-league")


# ---------------------------------------------------------------- 2. without JavaScript, and with it


def test_actions_work_without_javascript(live: LiveServer, context_for: Any) -> None:
    case = live.open_case()
    page = context_for(viewport=DESKTOP, java_script_enabled=False).new_page()
    sign_in(page, live, f"/console/cases/{case['ref']}")
    page.get_by_label("Note (staff only").fill("Customer rang the call centre; told her we are on it.")
    with page.expect_navigation():
        page.get_by_role("button", name="Add note").click()
    assert "Internal note added" in page.locator(".flash").inner_text()
    assert "told her we are on it" in page.locator('.timeline li[data-type="update"]').last.inner_text()
    page.once("dialog", lambda dialog: pytest.fail(f"a dialog without JavaScript: {dialog.message}"))
    page.get_by_label("Resolution").fill("Delivered to the hotel")
    with page.expect_navigation():
        page.get_by_role("button", name="Close case").click()
    assert live.case(case["ref"])["closed_at"] is not None
    shot(page, "console-no-javascript-closed")


def test_closing_asks_first_when_javascript_runs(live: LiveServer, context_for: Any) -> None:
    case = live.open_case()
    page = context_for(viewport=DESKTOP).new_page()
    sign_in(page, live, f"/console/cases/{case['ref']}")
    page.get_by_label("Resolution").fill("Delivered to the hotel")
    questions: list[str] = []

    def dismiss(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Close case").click()
    page.wait_for_timeout(300)
    assert questions and case["ref"] in questions[0]
    assert live.case(case["ref"])["closed_at"] is None, "closed although the user said no"

    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.get_by_role("button", name="Close case").click()
    assert live.case(case["ref"])["closed_at"] is not None


# ---------------------------------------------------------------- 3. accessibility


def _axe(page: Any, axe: Path) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(axe))
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    assert results["testEngine"]["name"] == "axe-core"
    assert len(results["passes"]) > 10, "axe checked next to nothing"
    return results["violations"]


def _describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:5]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: {node['html'][:160]}")
            lines.append("       " + (node.get("failureSummary") or "").replace("\n", "\n       "))
    return "\n".join(lines)


PAGES = {
    "queue": ("/console/", "Overdue queue"),
    "case": ("/console/cases/{ref}", "Timeline"),
    "scorecard": ("/console/partners/fastcourier", "Late and escalated episodes"),
    "league": ("/console/partners", "Partner league table"),
    "search": ("/console/search?q=" + WORLDTRACER, "Cases matching"),
    "deliveries": ("/console/deliveries", "Webhook deliveries"),
    "admin": ("/console/admin/partners", "Register a partner"),
    "login": ("/console/login", "Sign in to the console"),
}


# Every page at desktop size; the three the complaint department lives in at phone size too.
VARIANTS = [(name, "desktop") for name in PAGES] + [(name, "phone") for name in ("queue", "case", "scorecard")]


@pytest.mark.parametrize(("name", "viewport"), VARIANTS, ids=[f"{n}-{v}" for n, v in VARIANTS])
def test_console_pages_have_no_serious_accessibility_violations(
    live: LiveServer, context_for: Any, axe_source: Path, overdue: None, name: str, viewport: str
) -> None:
    path, words = PAGES[name]
    path = path.format(ref=live.demo.ref)
    # The pages' CSP (script-src 'self') would refuse axe: only this test context bypasses it.
    options = {"viewport": DESKTOP} if viewport == "desktop" else {}
    page = context_for(bypass_csp=True, **options).new_page()
    if name == "login":
        page.goto(live.url + path)
    else:
        sign_in(page, live, path)
    assert page.locator("html").get_attribute("lang") == "en"
    assert words in page.locator("main").inner_text()
    if name == "queue":
        assert page.locator("table.queue tbody tr").count() > 0, "an empty queue checks no table"
    if name == "scorecard":
        assert page.locator("svg.chart[role=img]").count() >= 5
    violations = _axe(page, axe_source)
    shot(page, f"console-axe-{name}-{viewport}")
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not serious, f"axe-core on the console's {name} page ({viewport}):\n{_describe(serious)}"
