"""Rate limits: per partner key, per client address (status links, console sign-in), per SMS sender.

Every limit answers ``429`` with a ``Retry-After`` that says when the window frees up, counts only
the caller it is about (another key, address or sender is not affected), and lets the caller in
again once the window has passed on the app's clock (the FrozenClock moves; nobody sleeps). The
limits are lowered on the running app (``app.state.runtime.limits``) to keep the tests short; the
windows are the production ones.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from partners.client import BatonSigner
from tests.conftest import ADMIN_TOKEN, BASE_URL, Database, World
from tests.support.twilio_double import TwilioDouble
from kernel.config import Settings

ELSEWHERE = ("198.51.100.20", 40000)  # another client address


def _limits(app: Any) -> Any:
    return app.state.runtime.limits


def _retry_after(response: httpx.Response, window: int) -> int:
    assert response.status_code == 429, response.text
    value = int(response.headers["retry-after"])
    assert 1 <= value <= window, f"Retry-After {value} for a {window} s window"
    return value


@pytest.fixture
async def from_elsewhere(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The same app, reached from another client address."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=ELSEWHERE), base_url=BASE_URL) as client:
        yield client


# ---------------------------------------------------------------- partner keys


async def test_a_partner_key_past_its_limit_gets_429_with_retry_after_until_the_window_passes(
    world: World, app: Any
) -> None:
    limit = _limits(app).partner_requests
    limit.limit = 5
    answers = [(await world.as_partner("lh", "GET", "/v1/cases")).status_code for _ in range(5)]
    assert answers == [200] * 5

    refused = await world.as_partner("lh", "GET", "/v1/cases")
    wait = _retry_after(refused, int(limit.window_seconds))
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "lh-ed" in refused.json()["detail"]
    assert (await world.as_partner("ua", "GET", "/v1/cases")).status_code == 200, "other partners go on"
    assert (await world.as_partner("lh", "GET", "/v1/cases", hmac=True)).status_code == 200, "the limit is per key"

    world.clock.advance(seconds=wait - 1)
    assert (await world.as_partner("lh", "GET", "/v1/cases")).status_code == 429, "not before Retry-After"
    world.clock.advance(seconds=1)
    assert (await world.as_partner("lh", "GET", "/v1/cases")).status_code == 200


async def test_a_refused_write_over_the_limit_changes_nothing(world: World, app: Any) -> None:
    case = await world.open_case()
    _limits(app).partner_requests.limit = 1
    first = await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/events", json_body={"message": "one"})
    second = await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/events", json_body={"message": "two"})

    assert first.status_code == 201 and second.status_code == 429
    events = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/events")).json()["items"]
    assert [e.get("message") for e in events if e["type"] == "update"] == ["one"]


async def test_requests_whose_signature_does_not_verify_do_not_use_up_a_partners_quota(
    world: World, app: Any
) -> None:
    # Key ids are not secret (they travel in every request): anybody can claim lh's. A flood of
    # requests claiming it but signed with another key must not lock lh out.
    _limits(app).partner_requests.limit = 5
    impostor = BatonSigner.ed25519("lh-ed", world.partners["fastcourier"].private_key,
                                   clock=lambda: world.clock.now().timestamp())
    forged = [(await world.client.get("/v1/cases", auth=impostor)).status_code for _ in range(20)]

    assert set(forged) == {401}
    assert (await world.as_partner("lh", "GET", "/v1/cases")).status_code == 200


# ---------------------------------------------------------------- status links, per client address


async def test_unknown_status_links_from_one_address_get_429_then_that_address_waits_out_the_window(
    world: World, app: Any, from_elsewhere: httpx.AsyncClient
) -> None:
    case = await world.open_case()
    token = case["status_url"].rsplit("/", 1)[1]
    limit = _limits(app).bad_tokens
    limit.limit = 3
    guesses = [(await world.client.get(f"/v1/status/AAAAAAAAguess-{n:020d}")).status_code for n in range(3)]
    assert guesses == [404] * 3

    page = await world.client.get("/s/AAAAAAAAguess-again-0000000000")
    api = await world.client.get("/v1/status/AAAAAAAAguess-and-again-00000000")
    wait = _retry_after(page, int(limit.window_seconds))
    _retry_after(api, int(limit.window_seconds))
    assert page.headers["content-type"].startswith("text/html")
    # The right token, from the same address (a carrier NAT is every customer): looked up, never refused.
    assert (await world.client.get(f"/v1/status/{token}")).status_code == 200
    assert (await world.client.get(f"/s/{token}")).status_code == 200

    assert (await from_elsewhere.get("/v1/status/AAAAAAAAguess-elsewhere-0000000")).status_code == 404, \
        "other addresses go on"
    world.clock.advance(seconds=wait)
    assert (await world.client.get("/v1/status/AAAAAAAAguess-later-000000000000")).status_code == 404


async def test_status_lookups_from_one_address_are_limited_even_with_the_right_token(
    world: World, app: Any, from_elsewhere: httpx.AsyncClient
) -> None:
    case = await world.open_case()
    token = case["status_url"].rsplit("/", 1)[1]
    limit = _limits(app).status_lookups
    limit.limit = 4
    answers = [(await world.client.get(path)).status_code for path in
               (f"/s/{token}", f"/v1/status/{token}", f"/s/{token}", f"/v1/status/{token}")]
    assert answers == [200] * 4

    wait = _retry_after(await world.client.get(f"/s/{token}"), int(limit.window_seconds))
    assert (await from_elsewhere.get(f"/s/{token}")).status_code == 200
    world.clock.advance(seconds=wait)
    assert (await world.client.get(f"/v1/status/{token}")).status_code == 200


# ---------------------------------------------------------------- inbound SMS, per sender


@pytest.fixture
def twilio() -> TwilioDouble:
    return TwilioDouble()  # never started: it only signs the webhooks Twilio would send


@pytest.fixture
def settings(db: Database, twilio: TwilioDouble) -> Settings:
    return Settings(database_url=db.url, admin_token=ADMIN_TOKEN, public_base_url=BASE_URL, workers_in_process=False,
                    twilio_account_sid=twilio.account_sid, twilio_auth_token=twilio.auth_token,
                    twilio_from=twilio.phone_number)


async def _text(world: World, twilio: TwilioDouble, sender: str, body: str = "STATUS") -> httpx.Response:
    url = f"{BASE_URL}/hooks/twilio/sms"
    params, headers = twilio.inbound_sms(url, sender, body)
    return await world.client.post(url, data=params, headers=headers)


async def test_a_sender_texting_too_often_gets_429_and_may_text_again_after_the_window(
    world: World, app: Any, twilio: TwilioDouble
) -> None:
    await world.open_case()
    limit = _limits(app).inbound_sms
    limit.limit = 3
    unsigned = [(await world.client.post("/hooks/twilio/sms", data={"From": "+14155550100", "Body": "x"})).status_code
                for _ in range(5)]
    assert set(unsigned) == {403}, "forged texts are refused, and do not count against the sender"

    answers = [(await _text(world, twilio, "+14155550100")).status_code for _ in range(3)]
    assert answers == [200] * 3
    wait = _retry_after(await _text(world, twilio, "+14155550100"), int(limit.window_seconds))
    assert (await _text(world, twilio, "+14155550199")).status_code == 200, "other senders go on"

    world.clock.advance(seconds=wait)
    again = await _text(world, twilio, "+14155550100")
    assert again.status_code == 200 and "<Message>" in again.text


# ---------------------------------------------------------------- console sign-in, per client address


class Console:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def sign_in(self, token: str) -> httpx.Response:
        form = await self.client.get("/console/login")
        if form.status_code == 404:
            pytest.skip("the console has no /console/login yet")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, "the sign-in form carries a CSRF token"
        return await self.client.post("/console/login", data={"token": token, "csrf": csrf.group(1), "next": ""})


@pytest.fixture
async def consoles(app: Any) -> AsyncIterator[tuple[Console, Console]]:
    here = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
    there = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=ELSEWHERE), base_url=BASE_URL)
    async with here, there:
        yield Console(here), Console(there)


async def test_failed_console_sign_ins_from_one_address_get_429_until_the_window_passes(
    world: World, app: Any, consoles: tuple[Console, Console]
) -> None:
    here, there = consoles
    limit = _limits(app).sign_in
    limit.limit = 3
    failures = [(await here.sign_in(f"bat_wrong-{n}")).status_code for n in range(3)]
    assert failures == [401] * 3

    locked = await here.sign_in(ADMIN_TOKEN)  # the right token, from the locked-out address
    wait = _retry_after(locked, int(limit.window_seconds))
    assert "baton_console=" not in locked.headers.get("set-cookie", ""), "no session while locked out"
    assert (await there.sign_in(ADMIN_TOKEN)).status_code == 303, "other addresses go on"

    world.clock.advance(seconds=wait)
    signed_in = await here.sign_in(ADMIN_TOKEN)
    assert signed_in.status_code == 303 and "baton_console=" in signed_in.headers.get("set-cookie", "")


async def test_successful_console_sign_ins_do_not_count_against_the_address(
    world: World, app: Any, consoles: tuple[Console, Console]
) -> None:
    here, _ = consoles
    _limits(app).sign_in.limit = 2
    answers = [(await here.sign_in(ADMIN_TOKEN)).status_code for _ in range(5)]

    assert answers == [303] * 5
    assert dt.timedelta(seconds=_limits(app).sign_in.window_seconds) >= dt.timedelta(minutes=10)
