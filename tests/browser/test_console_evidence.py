"""The console's evidence and delivery parts in headless Chromium: staff attach a file with the
plain file input (no drag and drop needed), see its thumbnail, and read the delivery request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import LiveServer, shot
from tests.browser.test_console import sign_in
from tests.tracker.test_evidence import photo_with_gps


def test_staff_attach_a_photo_with_the_file_input_and_see_the_delivery(
    live: LiveServer, context_for: Any, tmp_path: Path
) -> None:
    case = live.open_case(parties=[{"partner": "ua", "role": "owner"},
                                   {"partner": "lh", "role": "carrier", "responsible": True},
                                   {"partner": "fastcourier", "role": "courier"}])
    ref = case["ref"]
    live.api("PUT", f"/v1/cases/{ref}/delivery", json={
        "address": {"line1": "12 Water St", "city": "New York", "postcode": "10038", "country": "US"},
        "phone": "+12125550177", "instructions": "Ring twice"})
    photo = tmp_path / "desk.jpg"
    photo.write_bytes(photo_with_gps(color="darkgreen"))

    page = context_for(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, live, f"/console/cases/{ref}")
    delivery = page.locator("[data-field=delivery]").inner_text()
    assert "12 Water St" in delivery and "+12125550177" in delivery and "requested" in delivery
    page.get_by_label("File (JPEG, PNG, WebP, HEIC or PDF; drop it here or choose it)").set_input_files(str(photo))
    page.get_by_label("Kind").select_option("photo")
    page.get_by_label("Who sees it").select_option("public")
    page.get_by_label("Note", exact=True).fill("Photo from the JFK office")
    with page.expect_navigation():
        page.get_by_role("button", name="Attach").click()
    assert "File attached" in page.locator("body").inner_text()
    tile = page.locator(".evidence li").first
    assert "photo · public" in tile.inner_text() and "Photo from the JFK office" in tile.inner_text()
    image = tile.locator("img")
    image.scroll_into_view_if_needed()
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", image.element_handle())
    [stored] = live.api("GET", f"/v1/cases/{ref}/attachments")["items"]
    assert stored["actor"].startswith("staff:") and stored["visibility"] == "public"
    timeline = page.locator("body").inner_text()
    assert "attachment.added" in timeline
    shot(page, "console-case-evidence")
