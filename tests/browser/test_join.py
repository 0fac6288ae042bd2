"""Onboarding by invitation in headless Chromium, against the live server of ``conftest.py``.

The admin invites a partner from the console's partners page and reads the link once; the
partner's staff open it, paste an Ed25519 public key, set the webhook URL and secret of a real
endpoint that verifies Standard Webhooks, send a test event and read that it verified, get a
sandbox case with the commands to try it, and finish. axe-core finds no serious or critical
violation on the join page. Screenshots go to ``tests/artifacts/screenshots/join-*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import delete

from notifications.models import Notification
from partners.client import BatonSigner
from partners.models import Partner, SignatureNonce
from partners.service import new_webhook_secret
from tests.browser.conftest import LiveServer, shot
from tests.support.webhook_receiver import WebhookReceiver
from tracker.models import Case, PartnerInvitation

DESKTOP = {"width": 1280, "height": 900}
PARTNER = "acme-cargo"


async def _forget(live: LiveServer, partner_id: str) -> None:
    async with live.app.state.runtime.sessionmaker() as session:
        # Cases take their events, parties and notifications with them; the partner its keys.
        await session.execute(delete(Case).where(Case.owner_id == partner_id))
        await session.execute(delete(PartnerInvitation).where(PartnerInvitation.partner_id == partner_id))
        await session.execute(delete(Notification).where(Notification.partner_id == partner_id))
        await session.execute(delete(SignatureNonce).where(SignatureNonce.keyid.startswith(f"{partner_id}-")))
        await session.execute(delete(Partner).where(Partner.id == partner_id))
        await session.commit()
    live.app.state.runtime.caches.clear()


@pytest.fixture
def leaves_no_trace(live: LiveServer) -> Iterator[None]:
    """The live server is shared by the browser tests: the new partner, its invitation and sandbox case go
    afterwards, so that tests counting the demo's partners (the console's league) see the demo alone."""
    yield
    live.run(_forget(live, PARTNER))


def _sign_in(page: Any, live: LiveServer, path: str) -> None:
    page.goto(live.url + path)
    assert urlsplit(page.url).path == "/console/login"
    page.get_by_label("Staff token").fill(live.demo.admin_token)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert urlsplit(page.url).path == path, page.url


def _axe(page: Any, axe: Path) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(axe))
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    assert results["testEngine"]["name"] == "axe-core"
    assert len(results["passes"]) > 10, "axe checked next to nothing"
    return [v for v in results["violations"] if v["impact"] in ("serious", "critical")]


def _describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"[{v['impact']}] {v['id']}: {v['help']} at "
                     + "; ".join(" ".join(map(str, n["target"])) for n in v["nodes"][:5]) for v in violations)


def test_an_invited_partner_joins_tests_its_webhook_and_gets_a_sandbox_case(
    live: LiveServer, context_for: Any, axe_source: Path, leaves_no_trace: None
) -> None:
    # The pages' CSP (script-src 'self') would refuse axe: only this test context bypasses it.
    page = context_for(viewport=DESKTOP, bypass_csp=True).new_page()

    # 1. The admin invites from the console and reads the link, shown once.
    _sign_in(page, live, "/console/admin/partners")
    form = page.get_by_role("region", name="Invite a partner")
    form.get_by_label("Id (slug)").fill(PARTNER)
    form.get_by_label("Name").fill("Acme Cargo")
    form.get_by_label("Kind").fill("courier")
    form.get_by_label("Operations email").fill("ops@acme.example")
    form.get_by_label("Time zone").fill("Europe/Berlin")
    with page.expect_navigation():
        form.get_by_role("button", name="Invite partner").click()
    link = page.get_by_label(re.compile(r"^Invitation link")).input_value()
    assert link.startswith(f"{live.url}/join/"), link
    assert "Invitation for acme-cargo created" in page.get_by_role("status").first.inner_text()
    shot(page, "join-console-invited")

    # 2. The partner opens it and pastes its Ed25519 public key.
    page.goto(link)
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Join Baton as Acme Cargo"
    violations = _axe(page, axe_source)
    assert not violations, f"axe-core on the join page (open):\n{_describe(violations)}"
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    page.get_by_label("Ed25519 public key (PEM)").fill(pem)
    with page.expect_navigation():
        page.get_by_role("button", name="Register key").click()
    setup_path = urlsplit(page.url).path
    assert setup_path.startswith("/join/") and setup_path != urlsplit(link).path
    assert "Key registered" in page.locator(".flash").inner_text()
    assert "acme-cargo-1" in page.get_by_role("region", name="1. Your signing key").inner_text()
    assert page.get_by_label(re.compile(r"^Your setup link")).input_value() == live.url + setup_path

    # The key signs: Baton knows the new partner by it.
    with httpx.Client(base_url=live.url, trust_env=False, timeout=15) as http:
        me = http.get("/v1/me", auth=BatonSigner.ed25519("acme-cargo-1", private,
                                                          clock=lambda: live.clock.now().timestamp()))
    assert me.status_code == 200 and me.json()["partner"] == PARTNER, me.text

    # 3. Its webhook: a real endpoint that verifies Standard Webhooks, tested from the page.
    secret = new_webhook_secret()
    with WebhookReceiver(secret) as receiver:
        page.get_by_label("Webhook URL").fill(receiver.url)
        page.get_by_label("Webhook secret (optional)").fill(secret)
        with page.expect_navigation():
            page.get_by_role("button", name="Save webhook").click()
        assert receiver.url in page.get_by_role("region", name="2. Your webhook").inner_text()
        with page.expect_navigation():
            page.get_by_role("button", name="Send a test event").click()
        result = page.locator(".result")
        assert "verifies Baton's signatures" in result.inner_text(), result.inner_text()
        assert result.inner_text().startswith("Verified.")
        assert [r.verified for r in receiver.received] == [True, False]
    snippet = page.get_by_role("region", name="3. Test your webhook").locator("pre").inner_text()
    assert "from standardwebhooks.webhooks import Webhook" in snippet and "return 401" in snippet

    # 4. The sandbox case, with the commands to try it.
    with page.expect_navigation():
        page.get_by_role("button", name="Create a sandbox case").click()
    commands = page.locator("#sandbox-commands").inner_text()
    ref = re.search(r"baton-partner post-update (BAG-[A-Z0-9]+) --status located", commands)
    assert ref, commands
    assert f"export BATON_URL={live.url} BATON_KEYID=acme-cargo-1 BATON_KEY_FILE=baton.key" in commands
    assert "baton-partner whoami" in commands and "baton-partner cases" in commands
    assert live.case(ref.group(1))["owner"] == PARTNER

    violations = _axe(page, axe_source)
    shot(page, "join-setup")
    assert not violations, f"axe-core on the join page (joined):\n{_describe(violations)}"

    # 5. Finish: the setup link stops working.
    with page.expect_navigation():
        page.get_by_role("button", name="Finish").click()
    assert page.get_by_role("heading", level=1).inner_text() == "You have joined Baton, Acme Cargo"
    shot(page, "join-finished")
    page.goto(live.url + setup_path)
    assert page.get_by_role("heading", level=1).inner_text() == "Page not found"
