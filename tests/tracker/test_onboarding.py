"""Onboarding by invitation (SPEC "Partners without friction", onboarding; ``tracker.onboarding``).

An admin invites a partner with the body of ``POST /v1/partners``; the partner's own staff, holding
only the link, register a signing key (the partner now exists and signs), set and test a webhook
against a real endpoint, get a sandbox case that no figure counts, and finish. Every test runs on
SQLite and PostgreSQL; time moves only with the injected clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

from notifications.models import Notification
from partners.client import BatonSigner
from partners.models import Partner
from partners.service import new_webhook_secret
from tests.conftest import ADMIN_TOKEN, BASE_URL, World
from tests.support._http import free_port
from tests.support.raw_receivers import RawServer, answer
from tests.support.webhook_receiver import WebhookReceiver
from tracker.models import Case, PartnerInvitation
from tracker.principals import create_staff_token

ACME = {"id": "acme-cargo", "name": "Acme Cargo", "kind": "courier", "ops_email": "ops@acme.example",
        "timezone": "Europe/Berlin", "default_cadence": "PT4H"}
JOIN = "/v1/join/{}"


# ---------------------------------------------------------------- helpers


def _sessions(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


async def invite(world: World, partner: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await world.as_admin("POST", "/v1/partner-invitations", json_body={"partner": partner or ACME})
    assert response.status_code == 201, response.text
    return response.json()


def token_of(url: str) -> str:
    assert url.startswith(f"{BASE_URL}/join/"), url
    return url.rsplit("/", 1)[1]


def public_pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


async def join_with_ed25519(world: World, partner: dict[str, Any] | None = None) -> tuple[str, Ed25519PrivateKey,
                                                                                              dict[str, Any]]:
    """Invite, register an Ed25519 key through the link: (setup token, private key, the keys answer)."""
    token = token_of((await invite(world, partner))["url"])
    private = Ed25519PrivateKey.generate()
    response = await world.client.post(JOIN.format(token) + "/keys",
                                       json={"alg": "ed25519", "public_key": public_pem(private)})
    assert response.status_code == 201, response.text
    return response.json()["setup_token"], private, response.json()


def signer(world: World, keyid: str, private: Ed25519PrivateKey) -> BatonSigner:
    return BatonSigner.ed25519(keyid, private, clock=lambda: world.clock.now().timestamp())


async def partner_row(world: World, partner_id: str) -> Partner | None:
    async with _sessions(world)() as session:
        return await session.get(Partner, partner_id)


async def staff_header(world: World, role: str) -> dict[str, str]:
    async with _sessions(world)() as session:
        token = await create_staff_token(session=session, name=f"{role}-1", role=role, now=world.clock.now())
        await session.commit()
    return {"Authorization": f"Bearer {token}"}


async def set_webhook(world: World, setup: str, url: str, secret: str | None = None) -> httpx.Response:
    body = {"url": url, **({"secret": secret} if secret else {})}
    return await world.client.put(JOIN.format(setup) + "/webhook", json=body)


# ---------------------------------------------------------------- inviting


async def test_an_admin_invites_a_partner_with_a_seven_day_link_of_which_only_the_hash_is_kept(world: World) -> None:
    created = await invite(world)
    token = token_of(created["url"])
    assert len(token) == 43  # secrets.token_urlsafe(32)
    assert created["partner"] == "acme-cargo" and created["emailed"] is True
    assert dt.datetime.fromisoformat(created["expires_at"]) == world.clock.now() + dt.timedelta(days=7)
    async with _sessions(world)() as session:
        invitation = await session.scalar(select(PartnerInvitation))
        assert invitation is not None
        assert invitation.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in str(invitation.partner) and invitation.state == "open"
        assert invitation.created_by == "staff:admin"
        email = await session.scalar(select(Notification).where(Notification.kind == "partner.invited"))
    assert email is not None and email.channel == "email" and email.audience == "partner"
    assert email.recipient == "ops@acme.example" and email.partner_id == "acme-cargo"
    assert created["url"] in (email.body_text or "") and created["url"] in (email.body_html or "")
    assert await partner_row(world, "acme-cargo") is None, "the partner exists only once it registers a key"

    opened = await world.client.get(JOIN.format(token))
    assert opened.status_code == 200
    view = opened.json()
    assert (view["partner"], view["name"], view["state"]) == ("acme-cargo", "Acme Cargo", "open")
    assert view["steps"] == {"keys": [], "webhook_url": None, "webhook_test": None, "sandbox": None}


async def test_only_admins_invite_partners(world: World) -> None:
    body = {"partner": ACME}
    for role in ("agent", "supervisor"):
        refused = await world.client.post("/v1/partner-invitations", json=body,
                                          headers=await staff_header(world, role))
        assert refused.status_code == 403, role
        assert refused.headers["content-type"] == "application/problem+json"
    signed = await world.as_partner("lh", "POST", "/v1/partner-invitations", json_body=body)
    assert signed.status_code == 403
    assert (await world.client.post("/v1/partner-invitations", json=body)).status_code == 401
    async with _sessions(world)() as session:
        assert await session.scalar(select(func.count()).select_from(PartnerInvitation)) == 0


async def test_an_invitation_body_is_validated_as_partner_registration_is(world: World) -> None:
    for partner in ({**ACME, "id": "Not A Slug"}, {**ACME, "ops_email": "not-an-email"},
                    {**ACME, "timezone": "Mars/Olympus"}, {**ACME, "colour": "red"},
                    {**ACME, "webhook_url": "http://hooks.acme.example/baton"},
                    {**ACME, "webhook_secret": "plain"}, {"name": "No Id"}):
        response = await world.as_admin("POST", "/v1/partner-invitations", json_body={"partner": partner})
        assert response.status_code == 422, (partner, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert (await world.as_admin("POST", "/v1/partner-invitations", json_body=ACME)).status_code == 422


async def test_inviting_an_existing_partner_id_is_a_conflict(world: World) -> None:
    response = await world.as_admin("POST", "/v1/partner-invitations", json_body={"partner": {**ACME, "id": "lh"}})
    assert response.status_code == 409 and "already exists" in response.json()["detail"]


async def test_inviting_the_same_partner_again_retires_the_earlier_link(world: World) -> None:
    first = token_of((await invite(world))["url"])
    second = token_of((await invite(world))["url"])
    assert (await world.client.get(JOIN.format(first))).status_code == 404
    assert (await world.client.get(JOIN.format(second))).json()["state"] == "open"


# ---------------------------------------------------------------- the key


async def test_an_ed25519_key_creates_the_partner_which_then_signs_requests(world: World) -> None:
    token = token_of((await invite(world))["url"])
    private = Ed25519PrivateKey.generate()
    response = await world.client.post(JOIN.format(token) + "/keys",
                                       json={"alg": "ed25519", "public_key": public_pem(private)})
    assert response.status_code == 201, response.text
    joined = response.json()
    assert joined["partner"]["id"] == "acme-cargo" and joined["partner"]["name"] == "Acme Cargo"
    assert joined["partner"]["default_cadence"] == "PT4H" and joined["partner"]["timezone"] == "Europe/Berlin"
    assert joined["key"]["keyid"] == "acme-cargo-1" and joined["key"]["secret"] is None
    assert joined["setup_url"] == f"{BASE_URL}/join/{joined['setup_token']}"
    assert joined["setup_token"] != token

    me = await world.client.get("/v1/me", auth=signer(world, "acme-cargo-1", private))
    assert me.status_code == 200, me.text
    assert me.json() == {"kind": "partner", "partner": "acme-cargo", "name": "Acme Cargo", "role": None}

    view = (await world.client.get(JOIN.format(joined["setup_token"]))).json()
    assert view["state"] == "joined" and [k["keyid"] for k in view["steps"]["keys"]] == ["acme-cargo-1"]


async def test_the_emailed_link_works_once_and_the_setup_link_refuses_a_second_key(world: World) -> None:
    token = token_of((await invite(world))["url"])
    first = await world.client.post(JOIN.format(token) + "/keys", json={"alg": "hmac-sha256"})
    assert first.status_code == 201
    setup = first.json()["setup_token"]

    again = await world.client.post(JOIN.format(token) + "/keys", json={"alg": "hmac-sha256", "keyid": "acme-2"})
    assert again.status_code == 404
    assert again.json()["detail"].startswith("This invitation link is not valid")
    assert (await world.client.get(JOIN.format(token))).status_code == 404

    through_setup = await world.client.post(JOIN.format(setup) + "/keys", json={"alg": "hmac-sha256",
                                                                                "keyid": "acme-2"})
    assert through_setup.status_code == 409 and "already registered" in through_setup.json()["detail"]


async def test_an_hmac_key_secret_is_returned_once_and_signs(world: World) -> None:
    token = token_of((await invite(world))["url"])
    response = await world.client.post(JOIN.format(token) + "/keys", json={"alg": "hmac-sha256", "keyid": "acme-h"})
    assert response.status_code == 201, response.text
    key = response.json()["key"]
    assert key["alg"] == "hmac-sha256" and key["keyid"] == "acme-h" and key["secret"]
    hmac_signer = BatonSigner.hmac("acme-h", key["secret"], clock=lambda: world.clock.now().timestamp())
    assert (await world.client.get("/v1/me", auth=hmac_signer)).json()["partner"] == "acme-cargo"

    view = await world.client.get(JOIN.format(response.json()["setup_token"]))
    assert key["secret"] not in view.text
    assert view.json()["steps"]["keys"][0]["secret"] is None


async def test_a_key_registration_retried_with_its_idempotency_key_gets_the_first_answer(world: World) -> None:
    token = token_of((await invite(world))["url"])
    headers = {"Idempotency-Key": "acme-key-1"}
    first = await world.client.post(JOIN.format(token) + "/keys", json={"alg": "hmac-sha256"}, headers=headers)
    retry = await world.client.post(JOIN.format(token) + "/keys", json={"alg": "hmac-sha256"}, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true" and retry.content == first.content


async def test_a_bad_public_key_is_422_and_creates_nothing(world: World) -> None:
    token = token_of((await invite(world))["url"])
    bad = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n"
    for body in ({"alg": "ed25519", "public_key": bad}, {"alg": "ed25519"}, {"alg": "rsa"},
                 {"alg": "hmac-sha256", "public_key": public_pem(Ed25519PrivateKey.generate())},
                 {"alg": "ed25519", "public_key": public_pem(Ed25519PrivateKey.generate()), "keyid": "no spaces"}):
        response = await world.client.post(JOIN.format(token) + "/keys", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert await partner_row(world, "acme-cargo") is None
    assert (await world.client.get(JOIN.format(token))).json()["state"] == "open", "the link still works"


async def test_a_key_id_already_taken_is_a_conflict_and_creates_no_partner(world: World) -> None:
    token = token_of((await invite(world))["url"])
    response = await world.client.post(JOIN.format(token) + "/keys", json={"alg": "hmac-sha256", "keyid": "lh-ed"})
    assert response.status_code == 409
    assert await partner_row(world, "acme-cargo") is None


async def test_the_links_expire_after_seven_days(world: World) -> None:
    token = token_of((await invite(world))["url"])
    other = token_of((await invite(world, {**ACME, "id": "beta-air", "name": "Beta Air"}))["url"])
    setup = (await world.client.post(JOIN.format(other) + "/keys", json={"alg": "hmac-sha256"})).json()["setup_token"]

    world.clock.advance(dt.timedelta(days=7) - dt.timedelta(hours=1))
    assert (await world.client.get(JOIN.format(token))).status_code == 200
    assert (await world.client.get(JOIN.format(setup))).status_code == 200
    world.clock.advance(dt.timedelta(hours=1))
    assert (await world.client.get(JOIN.format(token))).status_code == 404
    assert (await world.client.get(JOIN.format(setup))).status_code == 404
    late = await world.client.post(JOIN.format(token) + "/keys", json={"alg": "hmac-sha256"})
    assert late.status_code == 404
    assert (await world.client.post(JOIN.format(setup) + "/sandbox")).status_code == 404
    assert await partner_row(world, "acme-cargo") is None


# ---------------------------------------------------------------- the webhook


async def test_a_webhook_url_is_checked_like_a_registered_one(world: World) -> None:
    token = token_of((await invite(world))["url"])
    before_key = await set_webhook(world, token, "https://hooks.acme.example/baton")
    assert before_key.status_code == 409 and "key first" in before_key.json()["detail"]
    setup = (await world.client.post(JOIN.format(token) + "/keys", json={"alg": "hmac-sha256"})).json()["setup_token"]

    for url in ("http://hooks.acme.example/baton", "https://10.0.0.5/hook", "ftp://hooks.acme.example/x"):
        refused = await set_webhook(world, setup, url)
        assert refused.status_code == 422, (url, refused.text)
    assert (await set_webhook(world, setup, "https://hooks.acme.example/baton", "whsec_short")).status_code == 422
    partner = await partner_row(world, "acme-cargo")
    assert partner is not None and partner.webhook_url is None

    generated = await set_webhook(world, setup, "https://hooks.acme.example/baton")
    assert generated.status_code == 200
    assert generated.json()["url"] == "https://hooks.acme.example/baton"
    assert generated.json()["secret"].startswith("whsec_")
    partner = await partner_row(world, "acme-cargo")
    assert partner is not None and partner.webhook_secret == generated.json()["secret"]
    view = await world.client.get(JOIN.format(setup))
    assert view.json()["steps"]["webhook_url"] == "https://hooks.acme.example/baton"
    assert generated.json()["secret"] not in view.text


async def test_a_receiver_that_verifies_signatures_passes_the_webhook_test(world: World) -> None:
    setup, _, _ = await join_with_ed25519(world)
    secret = new_webhook_secret()
    with WebhookReceiver(secret) as receiver:
        assert (await set_webhook(world, setup, receiver.url, secret)).json()["secret"] is None
        response = await world.client.post(JOIN.format(setup) + "/webhook-tests")
        assert response.status_code == 200, response.text
        result = response.json()
        received = receiver.received
    assert result["verified"] is True
    assert result["signed"] == {"status": 204, "error": None}
    assert result["bad_signature"] == {"status": 401, "error": None}
    assert result["explanation"] == ("Your endpoint accepted the signed test event (HTTP 204) and refused one with a "
                                     "wrong signature (HTTP 401): it verifies Baton's signatures.")
    assert [r.verified for r in received] == [True, False]
    assert received[0].payload["type"] == "baton.test" and received[0].payload["data"]["partner"] == "acme-cargo"
    assert received[0].webhook_id != received[1].webhook_id

    kept = (await world.client.get(JOIN.format(setup))).json()["steps"]["webhook_test"]
    assert kept["verified"] is True and kept["url"] == receiver.url
    async with _sessions(world)() as session:
        invitation = await session.scalar(select(PartnerInvitation))
        assert invitation is not None and invitation.webhook_tested_at == world.clock.now()


async def test_a_receiver_that_accepts_anything_fails_the_webhook_test_with_an_explanation(world: World) -> None:
    setup, _, _ = await join_with_ed25519(world)
    with RawServer(answer(204)) as raw:
        await set_webhook(world, setup, raw.url(path="/baton"))
        response = await world.client.post(JOIN.format(setup) + "/webhook-tests")
        connections = len(raw.connections)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["verified"] is False and connections == 2
    assert result["signed"]["status"] == 204 and result["bad_signature"]["status"] == 204
    assert "does not check signatures" in result["explanation"]


async def test_a_receiver_that_is_down_gets_its_failure_class_not_a_500(world: World) -> None:
    setup, _, _ = await join_with_ed25519(world)
    await set_webhook(world, setup, f"http://127.0.0.1:{free_port()}/baton")
    response = await world.client.post(JOIN.format(setup) + "/webhook-tests")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["verified"] is False
    assert result["signed"] == {"status": None, "error": "connection refused"}
    assert result["bad_signature"] == {"status": None, "error": "not sent"}
    assert "could not deliver" in result["explanation"] and "127.0.0.1" not in result["explanation"]


async def test_a_webhook_test_needs_a_webhook(world: World) -> None:
    setup, _, _ = await join_with_ed25519(world)
    response = await world.client.post(JOIN.format(setup) + "/webhook-tests")
    assert response.status_code == 409 and response.json()["detail"] == "Set your webhook URL first."


# ---------------------------------------------------------------- the sandbox, and finishing


async def test_the_sandbox_case_is_made_once_for_the_new_partner_and_left_out_of_its_scorecard(world: World) -> None:
    setup, private, _ = await join_with_ed25519(world)
    acme = signer(world, "acme-cargo-1", private)
    first = await world.client.post(JOIN.format(setup) + "/sandbox")
    assert first.status_code == 200, first.text
    ref = first.json()["ref"]
    assert first.json()["status_url"].startswith(f"{BASE_URL}/s/")
    again = await world.client.post(JOIN.format(setup) + "/sandbox")
    assert again.json() == first.json()

    case = await world.client.get(f"/v1/cases/{ref}", auth=acme)
    assert case.status_code == 200, case.text
    body = case.json()
    assert body["owner"] == "acme-cargo" and body["title"] == "Sandbox case: try baton-partner here"
    assert [(p["partner"], p["role"], p["responsible"]) for p in body["parties"]] == [("acme-cargo", "owner", False)]
    assert body["customer"]["phone"] is None and body["customer"]["email"] is None
    assert body["deadline_at"] is None
    async with _sessions(world)() as session:
        row = await session.scalar(select(Case).where(Case.ref == ref))
        assert row is not None and row.sandbox is True
        assert await session.scalar(select(func.count()).select_from(Case).where(Case.sandbox.is_(True))) == 1
        customer_messages = await session.scalar(select(func.count()).select_from(Notification)
                                                 .where(Notification.audience == "customer"))
    assert customer_messages == 0, "nobody is messaged about a sandbox case"

    # The partner practises on it; a real case beside it is scored as usual.
    update = {"status": "located", "message": "Found in Frankfurt, on its way to you"}
    practised = await world.client.post(f"/v1/cases/{ref}/events", json=update, auth=acme)
    assert practised.status_code == 201, practised.text
    real = await world.open_case(parties=[{"partner": "ua", "role": "owner"},
                                          {"partner": "acme-cargo", "role": "courier", "responsible": True}])
    world.clock.advance(minutes=5)
    assert (await world.client.post(f"/v1/cases/{real['ref']}/events", json=update, auth=acme)).status_code == 201

    card = await world.as_admin("GET", "/v1/partners/acme-cargo/scorecard")
    assert card.status_code == 200
    assert card.json()["updates"] == 1, "the sandbox case's update is not counted"
    assert card.json()["time_to_first_update"]["count"] == 1
    league = await world.as_admin("GET", "/v1/overdue")
    assert ref not in league.text


async def test_finish_ends_the_setup_link(world: World) -> None:
    token = token_of((await invite(world))["url"])
    early = await world.client.post(JOIN.format(token) + "/finish")
    assert early.status_code == 409
    setup = (await world.client.post(JOIN.format(token) + "/keys", json={"alg": "hmac-sha256"})).json()["setup_token"]
    finished = await world.client.post(JOIN.format(setup) + "/finish")
    assert finished.status_code == 200, finished.text
    assert finished.json()["state"] == "finished" and finished.json()["finished_at"] is not None
    for method, path in (("GET", ""), ("POST", "/sandbox"), ("POST", "/finish"), ("POST", "/webhook-tests")):
        assert (await world.client.request(method, JOIN.format(setup) + path)).status_code == 404, path
    assert (await world.client.get(f"/join/{setup}")).status_code == 404
    assert await partner_row(world, "acme-cargo") is not None, "the partner stays"


async def test_unknown_links_are_rate_limited_per_address_and_a_live_link_never_is(world: World) -> None:
    live = token_of((await invite(world))["url"])
    bodies = set()
    for n in range(20):
        path = JOIN.format(secrets.token_urlsafe(32)) if n % 2 else f"/join/{secrets.token_urlsafe(32)}"
        response = await world.client.get(path)
        assert response.status_code == 404
        if n % 2:
            bodies.add(response.content)
    assert len(bodies) == 1, "every unknown link gets the same answer"
    limited = await world.client.get(JOIN.format(secrets.token_urlsafe(32)))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    page = await world.client.get(f"/join/{secrets.token_urlsafe(32)}")
    assert page.status_code == 429 and "Too many unknown links" in page.text
    assert (await world.client.get(JOIN.format(live))).status_code == 200
    world.clock.advance(seconds=61)
    assert (await world.client.get(JOIN.format(secrets.token_urlsafe(32)))).status_code == 404


# ---------------------------------------------------------------- the pages, without a browser


async def test_the_join_pages_work_as_plain_forms(world: World) -> None:
    token = token_of((await invite(world))["url"])
    page = await world.client.get(f"/join/{token}")
    assert page.status_code == 200 and 'lang="en"' in page.text and "<script" not in page.text
    assert f'action="/join/{token}/keys"' in page.text
    assert page.headers["referrer-policy"] == "no-referrer"

    registered = await world.client.post(f"/join/{token}/keys", data={"alg": "hmac-sha256", "public_key": "",
                                                                      "keyid": ""})
    assert registered.status_code == 201, registered.text
    secret = re.search(r'id="shown-secret" class="secret" readonly value="([^"]+)"', registered.text)
    setup = re.search(r'id="setup-url" class="secret" readonly value="[^"]+/join/([^"]+)"', registered.text)
    assert secret and setup
    hmac_signer = BatonSigner.hmac("acme-cargo-1", secret.group(1), clock=lambda: world.clock.now().timestamp())
    assert (await world.client.get("/v1/me", auth=hmac_signer)).json()["partner"] == "acme-cargo"
    assert (await world.client.get(f"/join/{token}")).status_code == 404

    bad = await world.client.post(f"/join/{setup.group(1)}/webhook", data={"url": "http://hooks.acme.example/x"})
    assert bad.status_code == 422 and "https" in bad.text and f'href="/join/{setup.group(1)}"' in bad.text
    saved = await world.client.post(f"/join/{setup.group(1)}/webhook",
                                    data={"url": "https://hooks.acme.example/baton", "secret": ""})
    assert saved.status_code == 200 and "Webhook secret, shown this once" in saved.text
    made = await world.client.post(f"/join/{setup.group(1)}/sandbox")
    assert made.status_code == 303 and made.headers["location"] == f"/join/{setup.group(1)}?done=sandbox#sandbox"
    shown = await world.client.get(made.headers["location"])
    assert "baton-partner post-update BAG-" in shown.text and "BATON_KEYID=acme-cargo-1" in shown.text
    assert secret.group(1) not in shown.text
    finished = await world.client.post(f"/join/{setup.group(1)}/finish")
    assert finished.status_code == 200 and "You have joined Baton" in finished.text


# ---------------------------------------------------------------- the console


@contextlib.asynccontextmanager
async def signed_in_console(world: World, token: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A browser without JavaScript signed in to the console: its client and a form's CSRF token."""
    app = world.client._transport.app  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as browser:
        yield browser, await _sign_in(browser, token)


async def _sign_in(browser: httpx.AsyncClient, token: str) -> str:
    login = await browser.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf
    signed_in = await browser.post("/console/login", data={"token": token, "csrf": csrf.group(1), "next": ""})
    assert signed_in.status_code == 303
    csrf = re.search(r'name="csrf" value="([^"]+)"', (await browser.get("/console/")).text)
    assert csrf
    return csrf.group(1)


CONSOLE_FORM = {"id": "acme-cargo", "name": "Acme Cargo", "kind": "courier", "ops_email": "", "ops_phone": "",
                "timezone": "Europe/Berlin"}


async def test_an_admin_invites_from_the_console_and_sees_the_link_once(world: World) -> None:
    async with signed_in_console(world, ADMIN_TOKEN) as (browser, csrf):
        answer_ = await browser.post("/console/admin/partner-invitations", data={**CONSOLE_FORM, "csrf": csrf})
        assert answer_.status_code == 201, answer_.text
        link = re.search(r'<label for="invitation-url">Invitation link[^<]*</label></p>\s*'
                         r'<input id="invitation-url" class="secret" readonly value="([^"]+)"', answer_.text)
        assert link, answer_.text
        page = await browser.get("/console/admin/partners")
        assert "Invite a partner" in page.text and link.group(1) not in page.text, "the link is shown once"
        forged = await browser.post("/console/admin/partner-invitations", data={**CONSOLE_FORM, "csrf": "x"})
        assert forged.status_code == 403
    assert (await world.client.get(JOIN.format(token_of(link.group(1))))).json()["name"] == "Acme Cargo"


async def test_an_agent_neither_sees_nor_sends_the_console_invitation_form(world: World) -> None:
    token = (await staff_header(world, "agent"))["Authorization"].removeprefix("Bearer ")
    async with signed_in_console(world, token) as (browser, csrf):
        refused = await browser.post("/console/admin/partner-invitations", data={**CONSOLE_FORM, "csrf": csrf})
        assert refused.status_code == 403
        page = await browser.get("/console/admin/partners")
        assert page.status_code == 403 and "Invite a partner" not in page.text
    async with _sessions(world)() as session:
        assert await session.scalar(select(func.count()).select_from(PartnerInvitation)) == 0


async def test_webhook_tests_of_one_invitation_are_spaced_by_five_seconds(world: World) -> None:
    setup, _, _ = await join_with_ed25519(world)
    with RawServer(answer(401)) as raw:
        await set_webhook(world, setup, raw.url(path="/baton"))
        first = await world.client.post(JOIN.format(setup) + "/webhook-tests")
        assert first.status_code == 200 and first.json()["verified"] is False
        assert "refused the signed test event (HTTP 401)" in first.json()["explanation"]
        world.clock.advance(seconds=2)
        soon = await world.client.post(JOIN.format(setup) + "/webhook-tests")
        assert soon.status_code == 429 and soon.headers["retry-after"] == "3"
        world.clock.advance(seconds=3)
        assert (await world.client.post(JOIN.format(setup) + "/webhook-tests")).status_code == 200
        assert len(raw.connections) == 4
