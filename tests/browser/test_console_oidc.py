"""Single sign-on in headless Chromium: the console's sign-in page, the organization's provider, and back.

The live server's console offers ``identity_provider`` (``conftest.py``), a local OpenID Connect
provider on a loopback port whose groups map to Baton roles. The browser does everything itself:
the provider's redirect back, and the callback page that moves on to the console.

Screenshots go to ``tests/artifacts/screenshots/console-oidc-*.png``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from tests.browser.conftest import LiveServer, shot
from tests.support.oidc_provider import OidcProvider

DESKTOP = {"width": 1280, "height": 900}


def test_a_supervisor_signs_in_with_the_organization_and_sees_their_name_and_role(
    live: LiveServer, identity_provider: OidcProvider, context_for: Any
) -> None:
    identity_provider.add_user("grace", "grace-password", name="Grace Hopper", email="grace@example.com",
                               groups=["staff", "baton-supervisors"])
    page = context_for(viewport=DESKTOP).new_page()
    page.goto(live.url + "/console/partners")
    assert urlsplit(page.url).path == "/console/login"
    assert page.get_by_label("Staff token").is_visible()  # tokens stay, beside single sign-on
    shot(page, "console-oidc-login")

    page.get_by_role("link", name="Sign in with your organization").click()
    page.wait_for_url(re.compile(re.escape(identity_provider.issuer) + r"/authorize\?"))
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Password").fill("grace-password")
    page.get_by_role("button", name="Sign in").click()

    # Back through the callback, which moves on by itself to the page asked for before signing in.
    page.wait_for_url(live.url + "/console/partners")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Partner league table")
    who = page.locator(".top .who")
    assert who.inner_text().startswith("Grace Hopper")
    assert who.locator(".role").inner_text() == "supervisor"
    assert who.get_attribute("title") == "staff:grace@example.com"
    assert page.get_by_role("link", name="Partners and keys").count() == 0  # an admin's, not a supervisor's
    shot(page, "console-oidc-signed-in")

    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    assert urlsplit(page.url).path == "/console/login"
    page.goto(live.url + "/console/")
    assert urlsplit(page.url).path == "/console/login"
