"""The status page's rights and claims in headless Chromium at 390×844: the rights in every supported
locale (``lang`` set, axe-core clean), and a claim filed from the page with a receipt."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from kernel.locales import LOCALES
from tests.browser.conftest import LiveServer, shot
from tests.browser.test_status_page import axe_violations, describe
from tests.tracker.test_evidence import photo_with_gps

TITLES = {"en": "Your rights and deadlines", "de": "Ihre Rechte und Fristen", "fr": "Vos droits et délais",
          "es": "Sus derechos y plazos", "it": "I suoi diritti e le scadenze", "nl": "Uw rechten en termijnen",
          "pt": "Os seus direitos e prazos", "pl": "Państwa prawa i terminy"}
ZONES = {"en": "America/New_York", "de": "Europe/Berlin", "fr": "Europe/Paris", "es": "Europe/Madrid",
         "it": "Europe/Rome", "nl": "Europe/Amsterdam", "pt": "Europe/Lisbon", "pl": "Europe/Warsaw"}


def test_every_supported_locale_has_a_title() -> None:
    assert set(TITLES) == set(LOCALES.supported) == set(ZONES)


@pytest.mark.parametrize("locale", sorted(LOCALES.supported))
def test_the_rights_show_in_the_customers_language_and_pass_axe(
    live: LiveServer, context_for: Any, axe_source: Path, locale: str
) -> None:
    arrived = live.clock.now() - dt.timedelta(hours=2)
    case = live.open_case(
        customer={"name": "Grace Hopper", "email": "grace@example.com", "locale": locale, "timezone": ZONES[locale]},
        itinerary={"international": True, "longest_flight_hours": 8.5, "arrived_at": arrived.isoformat()},
    )
    page, violations = axe_violations(context_for, axe_source, live.status_link(case["status_url"]))
    assert page.locator("html").get_attribute("lang") == locale
    rights = page.locator("#rights")
    assert rights.locator("h2").inner_text() == TITLES[locale]
    codes = rights.locator("[data-right]").evaluate_all("nodes => nodes.map(n => n.dataset.right)")
    assert codes == ["presumed_lost", "damage_complaint", "delay_complaint", "legal_action",
                     "dot_fee_refund_international"]
    shot(page, f"status-rights-{locale}")
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not serious, describe(serious)


def test_a_claim_is_filed_from_the_page_with_a_receipt(live: LiveServer, context_for: Any, tmp_path: Path) -> None:
    case = live.open_case()
    receipt = tmp_path / "receipt.jpg"
    receipt.write_bytes(photo_with_gps(color="white"))
    page = context_for().new_page()
    page.goto(live.status_link(case["status_url"]))
    page.get_by_label("What are you claiming?").select_option("interim_expenses")
    page.get_by_label("Item 1").fill("Toothbrush and a shirt")
    page.locator("#amount_1").fill("41,90")
    page.locator("#currency_1").fill("USD")
    page.get_by_label("Receipt (photo or PDF, optional)").set_input_files(str(receipt))
    page.get_by_role("button", name="Send claim").click()
    page.wait_for_url("**/s/*?claimed=1*")
    assert "your claim was sent" in page.locator(".flash").inner_text()
    listed = page.locator(".claim-list li").first.inner_text()
    assert "What I had to buy meanwhile" in listed and "$41.90" in listed
    [claim] = live.api("GET", f"/v1/cases/{case['ref']}/claims")["items"]
    assert claim["totals"] == {"USD": "41.90"} and claim["items"][0]["attachment"] is not None
    shot(page, "status-claim-filed")
