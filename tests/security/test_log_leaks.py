"""Logs never hold a token, a secret or a customer's contact data; HTML answers carry security headers.

The log-leak test configures logging as ``baton serve`` does at its most verbose
(``kernel.logs.configure("DEBUG")``: the root logger at DEBUG) and captures everything that reaches
the root logger, each record rendered in both formats (``kernel.logs.JSONFormatter`` and, as on a
terminal, ``kernel.logs.TextFormatter``), during a full scenario: partners registered with HMAC keys and webhook secrets, cases opened by staff and by a
signed partner, signed updates, the customer's status page and messages, inbound SMS and delivery
callbacks from Twilio, the watchdog's reminders and escalations (webhooks, emails, SMS), provider
failures, an unexpected error on a status-link route, a rotated link, a closed case, an erasure.

Then the captured text is searched for every credential and every piece of personal data the
scenario used: the admin and staff tokens, HMAC secrets, webhook secrets, status-link tokens
(current and rotated), the Twilio auth token, the customers' phone numbers (E.164 and digits
only), their email addresses and surnames. None may appear.

The only lines left out are those of the local test doubles' own servers (``mail.log``: the SMTP
sink, which plays the customer's mail provider): they are the receiving side, not Baton.

The same scenario checks that every HTML answer carries the security headers (CSP, Referrer-Policy,
X-Content-Type-Options, X-Frame-Options); a second test checks that with an ``https://`` public
URL every answer carries HSTS and every cookie is ``Secure`` and ``HttpOnly``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from notifications.models import Notification
from partners.client import BatonSigner
from partners.models import Partner
from tests.conftest import ADMIN_TOKEN, BASE_URL, Database, World
from tests.support.smtp import SMTPSink
from tests.support.twilio_double import TwilioDouble
from tests.support.webhook_receiver import LOCAL_RECEIVERS, WebhookReceiver
from kernel import logs
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from tracker.erasure import erase_customer
from tracker.principals import create_staff_token
from tracker.web.app import HTML_HEADERS, create_app
from tracker.worker import Worker

PUBLIC = BASE_URL  # Twilio signs the public URL; the test client talks to the same host
SUPERVISORS = "complaints@ua.example"
ADA = {"name": "Ada Lovelace", "phone": "+14155550100", "email": "ada.lovelace@example.com",
       "locale": "en", "timezone": "America/New_York"}
BRUNO = {"name": "Bruno Schulz", "phone": "+4915112345678", "email": "bruno.schulz@example.de",
         "locale": "de", "timezone": "Europe/Berlin"}
STRANGER = "+15550001111"
DHL_WEBHOOK_SECRET = "whsec_" + "QmF0b24gdGVzdCBzZWNyZXQgZm9yIERITCEhIQ=="
SECURITY_HEADERS = ("content-security-policy", "referrer-policy", "x-content-type-options", "x-frame-options")
DOUBLES = ("mail.log",)  # the SMTP sink's server: the customer's mail provider, not Baton


class Capture(logging.Handler):
    """Everything that reaches the root logger, formatted both ways Baton formats it (JSON, text)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.renderings = (logs.JSONFormatter(), logs.TextFormatter(colour=True))
        self.stream = io.StringIO()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(DOUBLES):
            return
        for rendering in self.renderings:
            self.stream.write(rendering.format(record) + "\n")

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def captured() -> Iterator[Capture]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    names = (*logs.QUIET_LIBRARIES, "uvicorn", "uvicorn.error", "uvicorn.access")
    touched = [logging.getLogger(name) for name in names]
    saved = [(lg, lg.level, lg.disabled, lg.propagate, lg.handlers[:]) for lg in touched]
    logs.configure("DEBUG")  # as `BATON_LOG_LEVEL=debug baton serve` does
    capture = Capture()
    root.handlers[:] = [capture, *saved_handlers]  # pytest's own capture stays in place
    try:
        yield capture
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for lg, level, disabled, propagate, handlers in saved:
            lg.setLevel(level)
            lg.disabled, lg.propagate, lg.handlers[:] = disabled, propagate, handlers


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime(2026, 11, 2, 15, 0, tzinfo=UTC))  # 10:00 in New York


@pytest.fixture
def settings(captured: Capture, db: Database, twilio: TwilioDouble, smtp: SMTPSink) -> Settings:
    # Depends on `captured`: logging is captured before the world registers its partners.
    return Settings(
        database_url=db.url, admin_token=ADMIN_TOKEN, public_base_url=PUBLIC, workers_in_process=False,
        **twilio.settings(), smtp_url=smtp.url,
        email_from="Baton <baton@baton.test>", supervisors_email=SUPERVISORS, webhook_allow_hosts=LOCAL_RECEIVERS,
    )


@pytest.fixture
async def html_responses(world: World) -> AsyncIterator[list[httpx.Response]]:
    seen: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        if response.headers.get("content-type", "").startswith("text/html"):
            seen.append(response)

    world.client.event_hooks["response"].append(keep)
    yield seen


class Scenario:
    def __init__(self, world: World, settings: Settings, twilio: TwilioDouble, smtp: SMTPSink) -> None:
        self.world, self.twilio, self.smtp = world, twilio, smtp
        self.checked = 0  # requests the scenario made and checked (each must leave one access line)
        self.app = world.client._transport.app  # type: ignore[attr-defined]
        self.sessionmaker = self.app.state.runtime.sessionmaker
        self.worker = Worker(sessionmaker=self.sessionmaker, clock=world.clock, settings=settings)
        self.secrets: dict[str, str] = {"admin token": ADMIN_TOKEN, "Twilio auth token": twilio.auth_token}

    def keep(self, what: str, value: str | None) -> None:
        if value:
            self.secrets[what] = value

    async def ok(self, response: httpx.Response, *codes: int) -> Any:
        assert response.status_code in (codes or (200, 201)), f"{response.request.url}: {response.text}"
        self.checked += 1
        ctype = response.headers.get("content-type", "")
        return response.json() if "json" in ctype else response

    async def round(self) -> None:
        await self.worker.run_round()

    async def inbound_sms(self, sender: str, text: str) -> httpx.Response:
        url = f"{PUBLIC}/hooks/twilio/sms"
        params, headers = self.twilio.inbound_sms(url, sender, text)
        return await self.world.client.post(url, data=params, headers=headers)


async def _run_scenario(s: Scenario, world: World, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = world.as_admin
    for partner in world.partners.values():
        s.keep(f"{partner.partner_id} HMAC secret", partner.hmac_secret)

    # An admin registers a partner with its own webhook secret and an HMAC key (the secret comes back once).
    dhl = await s.ok(await admin("POST", "/v1/partners", json_body={
        "id": "dhl", "name": "DHL", "kind": "courier", "ops_email": "ops@dhl.example", "ops_phone": "+4922899990",
        "webhook_url": receiver.url, "webhook_secret": DHL_WEBHOOK_SECRET}))
    key = await s.ok(await admin("POST", "/v1/partners/dhl/keys", json_body={"keyid": "dhl-1", "alg": "hmac-sha256"}))
    s.keep("dhl HMAC secret", key["secret"])
    s.keep("dhl webhook secret", DHL_WEBHOOK_SECRET)
    s.keep("dhl webhook secret (answer)", dhl.get("webhook_secret"))
    async with s.sessionmaker() as session:
        agent = await create_staff_token(session=session, name="agent-alice", role="agent", now=world.clock.now())
        supervisor = await create_staff_token(session=session, name="sup-bob", role="supervisor",
                                              now=world.clock.now())
        lh = await session.get(Partner, "lh")
        assert lh is not None
        lh.webhook_url = receiver.url  # lh's endpoint is the receiver, verifying with lh's secret
        await session.commit()
    s.keep("agent token", agent)
    s.keep("supervisor token", supervisor)
    as_agent = {"Authorization": f"Bearer {agent}"}
    as_supervisor = {"Authorization": f"Bearer {supervisor}"}

    # The console: a mistyped token, then a sign-in (the token travels in a form body).
    login = await world.client.get("/console/login")
    if login.status_code != 404:
        for token, expected in ((agent + "x", 401), (agent, 303)):
            csrf = re.search(r'name="csrf" value="([^"]+)"', (await world.client.get("/console/login")).text)
            assert csrf is not None
            await s.ok(await world.client.post("/console/login", data={"token": token, "csrf": csrf.group(1)}),
                       expected)
        await s.ok(await world.client.get("/console/"))

    # Cases: one opened by staff, one by a partner signing with HMAC (its body carries the customer).
    ada = await world.open_case(customer=ADA)
    bruno_body = {"type": "baggage", "title": "Delayed bag, UA960 FRA", "customer": BRUNO, "owner": "ua",
                  "parties": [{"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
                              {"partner": "dhl", "role": "courier"}]}
    bruno = await s.ok(await world.as_partner("ua", "POST", "/v1/cases", json_body=bruno_body, hmac=True))
    ada_token = ada["status_url"].rsplit("/", 1)[1]
    bruno_token = bruno["status_url"].rsplit("/", 1)[1]
    s.keep("Ada's status token", ada_token)
    s.keep("Bruno's status token", bruno_token)

    # Staff look the customers up by phone and email; a wrong token and a customer's token are refused.
    await s.ok(await world.client.get("/v1/cases", params={"text": ADA["phone"]}, headers=as_agent))
    await s.ok(await world.client.get("/v1/cases", params={"text": BRUNO["email"]}, headers=as_agent))
    await s.ok(await world.client.get("/v1/cases", headers={"Authorization": f"Bearer {ada_token}"}), 401)
    await s.ok(await world.client.get("/v1/cases", headers={"Authorization": "Bearer bat_wrong"}), 401)
    forged = BatonSigner.hmac("lh-hmac", world.partners["ua"].hmac_secret, clock=lambda: world.clock.now().timestamp())
    await s.ok(await world.client.get("/v1/cases", auth=forged), 401)

    # Signed updates, Ed25519 and HMAC, with customer-facing text.
    for n, hmac in enumerate((False, True, False)):
        await s.ok(await world.as_partner("lh", "POST", f"/v1/cases/{ada['ref']}/events", hmac=hmac, json_body={
            "status": "located", "message": f"Your bag is in Frankfurt ({n}).", "internal_note": "tag re-printed"}))
    await s.ok(await world.as_partner("lh", "POST", f"/v1/cases/{bruno['ref']}/events",
                                      json_body={"status": "in_transit", "message": "On its way to Berlin."}))

    # The customer: status page, JSON, a message (with their own number in it), an unknown link.
    await s.ok(await world.client.get(f"/s/{ada_token}"))
    await s.ok(await world.client.get(f"/v1/status/{ada_token}"))
    await s.ok(await world.client.post(f"/s/{ada_token}/messages",
                                       data={"message": f"Please call me on {ADA['phone']} or {ADA['email']}"}), 303)
    await s.ok(await world.client.get(f"/s/{ada_token}/unsubscribe"))
    await s.ok(await world.client.get(f"/s/{bruno_token}"))
    await s.ok(await world.client.get("/s/AAAAAAAAunknown-token-000000000"), 404)

    # Notifications go out: SMS through Twilio (one 500 first), email, webhooks (refused once).
    s.twilio.fail_next(1, 500)
    receiver.refuse()
    await s.round()
    receiver.accept()
    s.smtp.fail_with(451)
    world.clock.advance(minutes=11)
    await s.round()
    s.smtp.recover()
    world.clock.advance(minutes=10)
    await s.round()
    assert s.twilio.messages and s.smtp.messages and receiver.received

    # Twilio: a delivery callback, and the customer texting in (status, free text, a stranger).
    await s.ok(await s.twilio.adeliver(s.twilio.messages[0]["sid"], "delivered", client=world.client), 204)
    for sender, text in ((ADA["phone"], "STATUS"), (ADA["phone"], f"Where is my bag? {ADA['phone']}"),
                         (BRUNO["phone"], bruno["ref"]), (STRANGER, "hello")):
        await s.ok(await s.inbound_sms(sender, text))

    # The watchdog: lh goes silent on Ada's case -> late, then escalated (customer told, supervisors mailed).
    world.clock.advance(hours=6, minutes=1)
    await s.round()
    world.clock.advance(hours=6)
    await s.round()
    world.clock.set(dt.datetime(2026, 11, 3, 14, 0, tzinfo=UTC))  # the next morning in New York
    await s.round()
    assert {"party.late", "party.escalated"} <= {r.payload.get("type") for r in receiver.received}
    assert SUPERVISORS in [m["To"] for m in s.smtp.messages], "the escalation was mailed to the supervisors"
    await s.ok(await world.client.get("/v1/overdue", headers=as_agent))
    await s.ok(await world.client.post(f"/v1/cases/{bruno['ref']}/parties/dhl/nudges", json={"note": "Any news?"},
                                       headers=as_agent), 201)
    await s.ok(await world.client.get(f"/v1/cases/{ada['ref']}/notifications", headers=as_agent))
    await s.ok(await world.client.get("/v1/webhook-deliveries", headers=as_supervisor))

    # A rotated link (the old one is kept among the secrets), a closed case.
    rotated = await s.ok(await admin("POST", f"/v1/cases/{bruno['ref']}/status-link"))
    s.keep("Bruno's rotated status token", rotated["status_url"].rsplit("/", 1)[1])
    await s.ok(await world.client.get(f"/s/{bruno_token}"), 404)
    await s.ok(await world.as_partner("ua", "POST", f"/v1/cases/{bruno['ref']}/close",
                                      json_body={"resolution": "Delivered to Mr Schulz at home."}))
    await s.round()

    # An unexpected error on a status-link route: the 500 is logged, with its traceback.
    from tracker import status as customer_side

    async def broken(**_: Any) -> None:
        raise RuntimeError("simulated failure while rendering the status")

    monkeypatch.setattr(customer_side, "status_of", broken)
    transport = httpx.ASGITransport(app=s.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as raw:
        assert (await raw.get(f"/v1/status/{ada_token}")).status_code == 500
    monkeypatch.undo()

    # Erasure of Ada's personal data.
    async with s.sessionmaker() as session:
        await erase_customer(session=session, ref=ada["ref"], actor="staff:cli", now=world.clock.now())
        await session.commit()
    await s.ok(await world.client.get(f"/v1/cases/{ada['ref']}", headers=as_agent))

    async with s.sessionmaker() as session:
        for partner in (await session.scalars(select(Partner))).all():
            s.keep(f"{partner.id} webhook secret", partner.webhook_secret)
        sent = (await session.scalars(select(Notification.channel))).all()
    assert {"sms", "email", "webhook"} <= set(sent)


def _personal_data(customer: dict[str, str]) -> dict[str, str]:
    digits = customer["phone"].lstrip("+")
    return {
        f"{customer['name']}'s phone (E.164)": customer["phone"],
        f"{customer['name']}'s phone (digits)": digits,
        f"{customer['name']}'s phone (national part)": digits[-9:],
        f"{customer['name']}'s email": customer["email"],
        f"{customer['name']}'s surname": customer["name"].split()[-1],
    }


async def test_a_full_scenario_logs_no_token_secret_phone_number_or_email_and_its_html_has_security_headers(
    world: World, settings: Settings, twilio: TwilioDouble, smtp: SMTPSink, captured: Capture,
    html_responses: list[httpx.Response], monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = Scenario(world, settings, twilio, smtp)
    lh_secret = await _webhook_secret(scenario, "lh")
    with WebhookReceiver(lh_secret) as receiver:
        await _run_scenario(scenario, world, receiver, monkeypatch)
    await scenario.worker.close()

    text = captured.text
    forbidden = {**scenario.secrets, **_personal_data(ADA), **_personal_data(BRUNO),
                 "a stranger's phone": STRANGER, "a stranger's phone (digits)": STRANGER.lstrip("+")}
    found = {what: _lines_with(text, value) for what, value in forbidden.items() if value in text}

    access = [line for line in text.splitlines() if '"logger": "baton.access"' in line]
    # The scenario makes 34 checked requests (the world's seeding no longer goes through the API,
    # so the old floor of 40 counted requests that are not the scenario's); each leaves an access line.
    assert scenario.checked >= 34 and len(access) >= scenario.checked, "one access line per request of the scenario"
    assert len([line for line in text.splitlines() if " baton.access [" in line]) == len(access), "and its text twin"
    assert '"status": 500' in text and "simulated failure" in text, "the unexpected error was logged"
    assert not found, "the logs hold:\n" + json.dumps(found, indent=2)[:6000]

    # Every HTML answer of the scenario (status pages, the unsubscribe page, 404 pages).
    assert len(html_responses) >= 5 and {r.status_code for r in html_responses} >= {200, 404}
    for response in html_responses:
        where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
        missing = [h for h in SECURITY_HEADERS if h not in response.headers]
        assert not missing, f"{where} lacks {missing}"
        assert response.headers["x-content-type-options"] == "nosniff", where
        assert response.headers["x-frame-options"] == "DENY", where
        assert response.headers["referrer-policy"] == "no-referrer", where
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], where
        assert "strict-transport-security" not in response.headers, f"{where}: no HSTS over plain http"


def _lines_with(text: str, value: str) -> list[str]:
    return [line[:400] for line in text.splitlines() if value in line][:3]


async def _webhook_secret(scenario: Scenario, partner_id: str) -> str:
    async with scenario.sessionmaker() as session:
        partner = await session.get(Partner, partner_id)
        assert partner is not None and partner.webhook_secret
        return partner.webhook_secret


# ---------------------------------------------------------------- security headers


@pytest.fixture
async def https_client(db: Database, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=db.url, admin_token=ADMIN_TOKEN, public_base_url="https://baton.example",
                        workers_in_process=False)
    app = create_app(settings, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://baton.example") as client:
        yield client
    await app.state.engine.dispose()


async def test_with_an_https_public_url_every_answer_carries_hsts_and_cookies_are_secure(
    https_client: httpx.AsyncClient,
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    answers = [
        await https_client.get("/healthz"),
        await https_client.get("/v1/cases", headers=admin),
        await https_client.get("/v1/cases"),  # 401
        await https_client.get("/s/AAAAAAAAunknown-token-000000000"),  # HTML 404
        await https_client.get("/static/does-not-exist.css"),
    ]
    console = await https_client.get("/console/login")
    if console.status_code != 404:
        answers.append(console)

    for response in answers:
        hsts = response.headers.get("strict-transport-security", "")
        assert re.fullmatch(r"max-age=\d+.*", hsts), f"{response.request.url.path}: HSTS {hsts!r}"
        assert int(hsts.split("=")[1].split(";")[0]) >= 15552000, "at least 180 days"
    html = [r for r in answers if r.headers.get("content-type", "").startswith("text/html")]
    assert html
    for response in html:
        for name, value in HTML_HEADERS:
            assert response.headers.get(name.decode()) == value.decode()
    for response in answers:
        for cookie in response.headers.get_list("set-cookie"):
            attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
            assert "secure" in attributes and "httponly" in attributes, f"cookie without Secure/HttpOnly: {cookie}"
