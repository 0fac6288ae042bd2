"""A late partner without IT opens the one-tap link in Baton's email and posts a status, in Chromium."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from notifications.transports import EmailTransport
from tests.browser.conftest import LiveServer, shot
from tests.browser.test_status_delivery import serious
from tests.browser.test_status_page import axe_violations, describe, parse, party
from tests.support.smtp import SMTPSink
from tracker.worker import Worker


def test_a_late_partner_posts_a_status_from_the_link_in_its_email(
    live: LiveServer, context_for: Any, axe_source: Path, smtp: SMTPSink
) -> None:
    case = live.open_case(parties=[
        {"partner": "ua", "role": "owner"},
        {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
    ])
    ref = case["ref"]
    live.clock.set(parse(party(case, "lh")["next_update_due"]) + dt.timedelta(minutes=1))
    worker = Worker(sessionmaker=live.app.state.runtime.sessionmaker, clock=live.clock, settings=live.settings,
                    transports={"email": EmailTransport(url=smtp.url, sender="Baton <baton@baton.test>")})
    live.run(worker.run_round())
    assert party(live.case(ref), "lh")["state"] == "late"

    # The email as the partner's ops desk receives it, through a real SMTP server.
    email = next(m for m in smtp.messages if m["To"] == "baggage-ops@lh.example" and ref in m["Subject"])
    html = email.get_body(("html",)).get_content()
    link = re.search(r'href="([^"]+/p/[^"]+)"', html)
    assert link is not None, html
    url = link.group(1)
    assert url.startswith(f"{live.url}/p/") and url in email.get_body(("plain",)).get_content()

    page, violations = axe_violations(context_for, axe_source, url)
    assert serious(violations) == [], describe(violations)
    assert page.locator("html").get_attribute("lang") == "en"
    shot(page, "one-tap-link-late")

    page = context_for(java_script_enabled=False).new_page()  # a phone with scripts off still posts
    page.goto(url)

    page.get_by_label(re.compile(r"\(located\)")).check()
    page.get_by_label("Message for the customer").fill("Found in Frankfurt, on LH400 tonight.")
    page.get_by_role("button", name="Post update").click()
    assert "on the case's record" in page.locator("[role=status]").inner_text()
    shot(page, "one-tap-link-posted")

    update = [e for e in live.events(ref) if e["type"] == "update"][-1]
    assert (update["actor"], update["via"], update["signed"]) == ("partner:lh", "link", False)
    assert update["status"] == "located"
    assert party(live.case(ref), "lh")["state"] == "on_track"
    customer = context_for().new_page()
    customer.goto(live.status_link(case["status_url"]))
    assert "Found in Frankfurt, on LH400 tonight." in customer.content()
