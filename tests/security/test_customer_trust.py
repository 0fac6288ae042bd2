"""Customers (SPEC "Trust between organizations"): what others do from the customer's side must not
lock the customer out, pass for them, or act twice in their name.

- A guesser behind the same address (carrier NAT, load balancer) cannot lock valid status links out.
- ``X-Forwarded-For`` counts only from a proxy in ``BATON_TRUSTED_PROXIES``.
- Without a public URL, only the hosts in ``BATON_ALLOWED_HOSTS`` are served.
- A signed inbound Twilio message posted again is answered, not acted on again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy import func, select

from notifications.models import Notification
from tests.conftest import BASE_URL, World
from tests.support.twilio_double import TwilioDouble
from kernel.config import Settings
from tracker.models import Case, Event, InboundMessage
from tracker.web.proxies import client_address_of
from tracker.worker import housekeeping

PROXY = ("10.1.2.3", 5000)  # the load balancer, as the app sees the connection
ADA = "+14155550100"


def _app(app: Any, settings: Settings, world: World, **changes: Any) -> Any:
    """A second app on the same database and clock, with other settings."""
    from tracker.web.app import create_app

    return create_app(settings.model_copy(update=changes), clock=world.clock, engine=app.state.engine)


def _token(case: dict[str, Any]) -> str:
    return case["status_url"].rsplit("/", 1)[1]


def _guess(n: int) -> str:
    return f"/v1/status/AAAAAAAAguess-{n:020d}"


# ---------------------------------------------------------------- status links behind one address


async def test_a_valid_status_link_is_served_after_25_unknown_tokens_from_the_same_address(world: World) -> None:
    case = await world.open_case()
    answers = [(await world.client.get(_guess(n))).status_code for n in range(25)]

    assert answers == [404] * 20 + [429] * 5, "unknown tokens still count, 20 a minute"
    assert (await world.client.get(f"/v1/status/{_token(case)}")).status_code == 200
    page = await world.client.get(f"/s/{_token(case)}")
    assert page.status_code == 200 and case["ref"] in page.text
    assert (await world.client.post(f"/s/{_token(case)}/messages", data={"message": "Any news?"})).status_code == 303


# ---------------------------------------------------------------- client address behind proxies


def test_the_client_address_is_the_right_most_forwarded_hop_that_is_not_a_trusted_proxy() -> None:
    trusted = "10.0.0.0/8, 2001:db8::/32"
    assert client_address_of("203.0.113.9", ["198.51.100.1"], trusted) == "203.0.113.9", "untrusted peer"
    assert client_address_of("10.1.2.3", ["198.51.100.1"], "") == "10.1.2.3", "no proxy trusted by default"
    assert client_address_of("10.1.2.3", ["198.51.100.1"], trusted) == "198.51.100.1"
    assert client_address_of("10.1.2.3", ["6.6.6.6, 198.51.100.1, 10.9.9.9"], trusted) == "198.51.100.1"
    assert client_address_of("10.1.2.3", ["6.6.6.6", "198.51.100.1"], trusted) == "198.51.100.1", "headers joined"
    assert client_address_of("2001:db8::1", ["[2001:db8::2]:443, 198.51.100.1:7"], trusted) == "198.51.100.1"
    assert client_address_of("10.1.2.3", ["198.51.100.1, not-an-ip"], trusted) == "10.1.2.3", "garbage: the peer"
    assert client_address_of("10.1.2.3", [], trusted) == "10.1.2.3"


@pytest.fixture
async def behind_proxy(app: Any, settings: Settings, world: World) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app behind a trusted load balancer (10.0.0.0/8), reached through it."""
    proxied = _app(app, settings, world, trusted_proxies="10.0.0.0/8")
    transport = httpx.ASGITransport(app=proxied, client=PROXY)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield proxied, client


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(world: World, app: Any) -> None:
    app.state.runtime.limits.bad_tokens.limit = 3
    forged = [(await world.client.get(_guess(n), headers={"X-Forwarded-For": f"198.51.100.{n}"})).status_code
              for n in range(4)]

    assert forged == [404, 404, 404, 429], "a fresh forwarded address per request does not escape the limit"


async def test_x_forwarded_for_from_a_trusted_proxy_keys_the_limit_on_the_forwarded_address(
    world: World, behind_proxy: tuple[Any, httpx.AsyncClient]
) -> None:
    proxied, client = behind_proxy
    proxied.state.runtime.limits.bad_tokens.limit = 3
    guesser = {"X-Forwarded-For": "203.0.113.7"}
    assert [(await client.get(_guess(n), headers=guesser)).status_code for n in range(4)] == [404, 404, 404, 429]

    # The guesser prepends a made-up hop: the proxy appends the real one, and that is the one counted.
    spoofed = await client.get(_guess(9), headers={"X-Forwarded-For": "192.0.2.1, 203.0.113.7"})
    assert spoofed.status_code == 429
    neighbour = await client.get(_guess(10), headers={"X-Forwarded-For": "203.0.113.8"})
    assert neighbour.status_code == 404, "another customer behind the same proxy is not limited"


async def test_console_sign_in_failures_count_per_forwarded_address_behind_a_trusted_proxy(
    world: World, behind_proxy: tuple[Any, httpx.AsyncClient]
) -> None:
    proxied, client = behind_proxy
    proxied.state.runtime.limits.sign_in.limit = 2

    async def sign_in(address: str) -> int:
        import re

        form = await client.get("/console/login", headers={"X-Forwarded-For": address})
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, form.text
        response = await client.post("/console/login", headers={"X-Forwarded-For": address},
                                     data={"token": "bat_wrong", "csrf": csrf.group(1), "next": ""})
        return response.status_code

    assert [await sign_in("203.0.113.7") for _ in range(3)] == [401, 401, 429]
    assert await sign_in("203.0.113.8") == 401, "the limit is the forwarded address's, not the proxy's"


# ---------------------------------------------------------------- Host allowlist


async def test_a_request_for_another_host_is_refused_without_a_public_url(
    world: World, app: Any, settings: Settings
) -> None:
    default_hosts = Settings.model_fields["allowed_hosts"].default
    strict = _app(app, settings, world, allowed_hosts=default_hosts)
    transport = httpx.ASGITransport(app=strict)

    async def call(base: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            return await client.request(method, path, headers=world.admin, **kwargs)

    refused = await call("http://evil.example", "POST", "/v1/cases", json={"type": "baggage"})
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 400 and "Host" in refused.json()["detail"]
    assert (await call(BASE_URL, "GET", "/v1/cases")).status_code == 400, "baton.test is the tests' own addition"
    for base in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000", "http://LOCALHOST"):
        assert (await call(base, "GET", "/v1/cases")).status_code == 200, base
    for probe in ("/healthz", "/readyz"):  # load balancers probe by address
        assert (await call("http://10.0.0.5:8000", "GET", probe)).status_code == 200, probe
    assert (await call("http://evil.example", "GET", "/s/AAAAAAAAguess-0000000000000")).status_code == 400


async def test_with_a_public_url_its_host_and_the_allowlist_are_served(
    world: World, app: Any, settings: Settings
) -> None:
    public = _app(app, settings, world, public_base_url="https://baton.example",
                  allowed_hosts=Settings.model_fields["allowed_hosts"].default)
    transport = httpx.ASGITransport(app=public)
    answers = {}
    for base in ("https://baton.example", "https://BATON.example:443", "http://127.0.0.1:8000", "https://evil.example"):
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            answers[base] = (await client.get("/v1/cases", headers=world.admin)).status_code

    assert answers == {"https://baton.example": 200, "https://BATON.example:443": 200, "http://127.0.0.1:8000": 200,
                       "https://evil.example": 400}


# ---------------------------------------------------------------- inbound Twilio messages, once


@pytest.fixture
def signer() -> TwilioDouble:
    return TwilioDouble()  # never started: it only signs the webhooks Twilio would send


@pytest.fixture
async def texting(app: Any, settings: Settings, world: World, signer: TwilioDouble) -> AsyncIterator[Any]:
    """``await texting(params, headers)`` posts a signed Twilio webhook to an app that has Twilio set up."""
    with_twilio = _app(app, settings, world, public_base_url=BASE_URL, twilio_account_sid=signer.account_sid,
                       twilio_auth_token=signer.auth_token, twilio_from=signer.phone_number)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=with_twilio), base_url=BASE_URL) as client:
        async def post(params: dict[str, str], headers: dict[str, str]) -> httpx.Response:
            return await client.post("/hooks/twilio/sms", data=params, headers=headers)

        yield post


def _messages(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    root = ElementTree.fromstring(response.content)
    assert root.tag == "Response"
    return [m.text or "" for m in root.findall("Message")]


async def _counts(app: Any, ref: str) -> tuple[int, int, int]:
    """Customer messages, events and outbox rows of the case ``ref``."""
    async with app.state.runtime.sessionmaker() as session:
        case_id = await session.scalar(select(Case.id).where(Case.ref == ref))
        events = select(func.count()).select_from(Event).where(Event.case_id == case_id)
        messages = await session.scalar(events.where(Event.type == "customer.message"))
        events = await session.scalar(events)
        outbox = await session.scalar(select(func.count()).select_from(Notification)
                                      .where(Notification.case_id == case_id))
    return messages or 0, events or 0, outbox or 0


async def test_the_same_signed_inbound_sms_posted_three_times_is_one_customer_message(
    world: World, app: Any, texting: Any, signer: TwilioDouble
) -> None:
    case = await world.open_case(owner="lh", parties=[{"partner": "lh", "role": "owner", "responsible": True}])
    params, headers = signer.inbound_sms(f"{BASE_URL}/hooks/twilio/sms", ADA, "The bag has my medicine in it")
    before = await _counts(app, case["ref"])

    answers = [_messages(await texting(params, headers)) for _ in range(3)]

    assert len(answers[0]) == 1 and case["ref"] in answers[0][0], "the first is answered with the status"
    assert answers[1:] == [[], []], "a replay is answered with nothing for Twilio to send"
    messages, events, outbox = await _counts(app, case["ref"])
    assert messages == before[0] + 1
    assert events == before[1] + 1, "one event, no other"
    assert outbox == before[2] + 1, "one customer.message webhook to the owner, nothing more"
    other, other_headers = signer.inbound_sms(f"{BASE_URL}/hooks/twilio/sms", ADA, "The bag has my medicine in it")
    assert len(_messages(await texting(other, other_headers))) == 1, "a new message with the same words is new"
    assert (await _counts(app, case["ref"]))[0] == before[0] + 2


async def test_processed_message_sids_are_forgotten_after_30_days(
    world: World, app: Any, texting: Any, signer: TwilioDouble
) -> None:
    await world.open_case()
    params, headers = signer.inbound_sms(f"{BASE_URL}/hooks/twilio/sms", ADA, "STATUS")
    _messages(await texting(params, headers))
    sessionmaker = app.state.runtime.sessionmaker

    async def kept() -> list[str]:
        async with sessionmaker() as session:
            return list((await session.scalars(select(InboundMessage.sid))).all())

    assert await kept() == [params["MessageSid"]]
    async with sessionmaker() as session:
        await housekeeping(session, world.clock.now() + dt.timedelta(days=29))
        await session.commit()
    assert await kept() == [params["MessageSid"]]
    async with sessionmaker() as session:
        await housekeeping(session, world.clock.now() + dt.timedelta(days=30, seconds=1))
        await session.commit()
    assert await kept() == []
