"""The status page's evidence and delivery parts in headless Chromium, on a phone (390×844).

The customer adds a photo with the plain file input and asks for delivery in one of the courier's
slots; the page then shows the file's thumbnail and the request, later the PIN, and axe-core finds
no serious violation on any of these states.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from tests.browser.conftest import LiveServer, shot
from tests.browser.test_status_page import axe_violations, describe
from tests.tracker.test_evidence import photo_with_gps


def courier_case(live: LiveServer) -> dict[str, Any]:
    return live.open_case(parties=[
        {"partner": "ua", "role": "owner"},
        {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
        {"partner": "fastcourier", "role": "courier"},
    ], external_refs={"worldtracer": "BOSUA54321", "bag_tag": "0016777777"})


def serious(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def test_the_customer_adds_a_photo_and_asks_for_an_evening_slot_on_a_phone(
    live: LiveServer, context_for: Any, axe_source: Path, tmp_path: Path
) -> None:
    case = courier_case(live)
    url = live.status_link(case["status_url"])
    photo = tmp_path / "IMG_2041.jpg"
    photo.write_bytes(photo_with_gps(size=(1200, 900), color="saddlebrown"))

    page = context_for().new_page()
    page.goto(url)
    page.get_by_label("Add a photo of the damage, a receipt or a document").set_input_files(str(photo))
    page.get_by_label("What is it?").select_option("photo")
    page.get_by_label("Note (optional)").fill("The wheel came off")
    page.get_by_role("button", name="Send file").click()
    page.wait_for_url("**/s/*?uploaded=1*")
    assert "your file was added" in page.locator(".flash").inner_text()
    thumbnail = page.locator(".file-list img").first
    thumbnail.scroll_into_view_if_needed()
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", thumbnail.element_handle())
    [stored] = live.api("GET", f"/v1/cases/{case['ref']}/attachments")["items"]
    assert stored["actor"] == "customer" and stored["note"] == "The wheel came off"
    original = live.http.get(f"/v1/cases/{case['ref']}/attachments/{stored['id']}")
    assert not Image.open(io.BytesIO(original.content)).getexif()  # no GPS, no phone model
    shot(page, "status-file-added")

    slots = live.api("GET", f"/v1/cases/{case['ref']}/delivery/slots")["items"]
    evening = next(s for s in slots if s["start"].endswith(("23:00:00Z", "22:00:00Z")))  # 18:00 in New York
    page.get_by_label("Address", exact=True).fill("The Langham, 250 Franklin Street")
    page.get_by_label("Postcode").fill("02110")
    page.get_by_label("City").fill("Boston")
    page.get_by_label("Country (two letters, e.g. US)").fill("US")
    page.get_by_label("Phone number for the driver").fill("+14155550123")
    options = page.locator("#window option").all_inner_texts()
    assert options[0] == "Any time" and len(options) == len(slots) + 1
    page.locator("#window").select_option(f"{evening['start'].replace('Z', '+00:00')}/"
                                          f"{evening['end'].replace('Z', '+00:00')}")
    page.get_by_label("Instructions for the driver (optional)").fill("Front desk, please")
    page.get_by_role("button", name="Ask for delivery").click()
    page.wait_for_url("**/s/*?delivery=1*")
    state = page.locator("[data-field=delivery-state]").inner_text()
    assert "Waiting for FastCourier to confirm" in state, state
    asked = live.api("GET", f"/v1/cases/{case['ref']}/delivery")
    assert asked["state"] == "requested" and asked["window"]["start"] == evening["start"]
    assert asked["address"]["city"] == "Boston" and asked["phone"] == "+14155550123"
    assert "Franklin Street" not in page.locator("body").inner_text()  # the page shows no personal data
    shot(page, "status-delivery-requested")

    checked, violations = axe_violations(context_for, axe_source, url)
    assert checked.locator("#files").count() == 1 and checked.locator("#delivery").count() == 1
    assert not serious(violations), describe(serious(violations))


def test_out_for_delivery_the_page_shows_the_pin_and_stays_accessible(
    live: LiveServer, context_for: Any, axe_source: Path
) -> None:
    case = courier_case(live)
    ref = case["ref"]
    live.api("PUT", f"/v1/cases/{ref}/delivery", json={
        "address": {"line1": "1 Main St", "city": "Boston", "postcode": "02110", "country": "US"}})
    live.api("POST", f"/v1/cases/{ref}/delivery/accept", json={})
    live.api("POST", f"/v1/cases/{ref}/events", json={"status": "out_for_delivery"}, expect=201)
    page, violations = axe_violations(context_for, axe_source, live.status_link(case["status_url"]))
    pin = page.locator("[data-field=pin]").inner_text().strip()
    assert len(pin) == 4 and pin.isdigit()
    assert "on its way" in page.locator(".pin").inner_text()
    shot(page, "status-out-for-delivery-pin")
    assert not serious(violations), describe(serious(violations))
