"""The staff console over HTTP: sign-in and its cookie, CSRF, roles, search, the queue, the actions.

Every test runs on SQLite and PostgreSQL (the ``world`` fixture). The console is driven as a
browser without JavaScript would drive it: GET a page, read its form, POST the form, follow the
303. What an action changed is read back through the JSON API, never from the console itself.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from notifications.models import Notification
from tests.conftest import ADMIN_TOKEN, BASE_URL, World
from kernel.config import Settings
from tracker.models import StaffToken
from tracker.principals import create_staff_token, hash_token
from tracker.watchdog import Watchdog, WatchdogConfig
from tracker.web import charts, console
from tracker.web.app import create_app


class Console:
    """One browser's view of the console: its own cookie jar, forms read from the pages."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def sign_in(self, token: str) -> httpx.Response:
        page = await self.http.get("/console/login")
        assert page.status_code == 200, page.text
        return await self.http.post("/console/login", data={"token": token, "csrf": csrf_of(page.text), "next": ""})

    async def csrf(self) -> str:
        page = await self.http.get("/console/")
        assert page.status_code == 200, page.text
        return csrf_of(page.text)

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params or None)

    async def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True) -> httpx.Response:
        body = dict(data or {})
        if csrf:
            body["csrf"] = await self.csrf()
        return await self.http.post(path, data=body)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def found(pattern: str, page: str) -> str:
    """The first group of ``pattern`` on the page (HTML entities decoded); fails when absent."""
    match = re.search(pattern, page)
    assert match, f"{pattern!r} is not on the page"
    return html.unescape(match.group(1))


def refs_on(page: str) -> list[str]:
    """The case references a results table links to, in order."""
    return re.findall(r'<a href="/console/cases/([A-Z0-9-]+)" class="ref">', page)


@pytest.fixture
async def open_console(app: Any) -> AsyncIterator[Callable[[], Awaitable[Console]]]:
    """``await open_console()``: a fresh browser (cookie jar) on the app under test."""
    clients: list[httpx.AsyncClient] = []

    async def make() -> Console:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        clients.append(http)
        return Console(http)

    yield make
    for http in clients:
        await http.aclose()


@pytest.fixture
async def admin(open_console: Callable[[], Awaitable[Console]]) -> Console:
    browser = await open_console()
    assert (await browser.sign_in(ADMIN_TOKEN)).status_code == 303
    return browser


async def staff_token(app: Any, role: str, *, name: str | None = None) -> str:
    async with app.state.runtime.sessionmaker() as session:
        token = await create_staff_token(session=session, name=name or f"{role}-1", role=role,
                                         now=app.state.runtime.clock.now())
        await session.commit()
    return token


async def events(world: World, ref: str) -> list[dict[str, Any]]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}/events", headers={})
    assert response.status_code == 200, response.text
    return response.json()["items"]


# ---------------------------------------------------------------- signing in and out


async def test_unauthenticated_console_requests_redirect_to_sign_in(world: World) -> None:
    page = await world.client.get("/console/cases/BAG-7KQ3X9M?after=3")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/login?next=%2Fconsole%2Fcases%2FBAG-7KQ3X9M%3Fafter%3D3"
    posted = await world.client.post("/console/cases/BAG-7KQ3X9M/notes", data={"note": "x"})
    assert posted.status_code == 303 and posted.headers["location"] == "/console/login"


async def test_sign_in_sets_an_httponly_samesite_strict_session_cookie(world: World, open_console: Any) -> None:
    browser = await open_console()
    response = await browser.sign_in(ADMIN_TOKEN)
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("baton_console="))
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == "Path=/console"
    assert attributes["max-age"] == "Max-Age=43200"
    assert "secure" not in attributes  # plain http here; see the https test below
    assert ADMIN_TOKEN not in cookie and hash_token(ADMIN_TOKEN) in _payload(cookie)

    queue = await browser.get("/console/")
    assert queue.status_code == 200
    assert "<h1>Overdue queue</h1>" in queue.text
    assert "content-security-policy" in queue.headers


async def test_queue_reloads_itself_every_30_seconds_until_the_user_stops_it(world: World, admin: Console) -> None:
    queue = (await admin.get("/console/")).text
    # console.js reloads after data-autorefresh seconds; without scripts, the <noscript> meta refresh does.
    assert '<noscript><meta http-equiv="refresh" content="30"></noscript>' in queue
    assert 'data-autorefresh="30"' in queue
    stop = found(r'<a href="([^"]+)">Stop reloading</a>', queue)
    assert stop == "/console/?refresh=off"

    stopped = (await admin.get(stop)).text
    assert 'http-equiv="refresh"' not in stopped and 'data-autorefresh="0"' in stopped
    assert '<input type="hidden" name="refresh" value="off">' in stopped  # the filters keep it off
    assert re.search(r'<a href="/console/">Reload every 30 seconds</a>', stopped)


def _payload(cookie: str) -> str:
    value = cookie.split(";")[0].split("=", 1)[1]
    payload = value.split(".")[0]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()


async def test_session_cookie_is_secure_when_the_public_url_is_https(settings: Settings, clock: Any) -> None:
    app = create_app(settings.model_copy(update={"public_base_url": "https://baton.example"}), clock=clock)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://baton.example") as http:
            response = await Console(http).sign_in(ADMIN_TOKEN)
        assert response.status_code == 303
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("baton_console="))
        assert "secure" in cookie.lower().replace(" ", "").split(";")
    finally:
        await app.state.engine.dispose()


async def test_wrong_token_gets_401_and_after_ten_failures_429(world: World, open_console: Any) -> None:
    browser = await open_console()
    for attempt in range(10):
        response = await browser.sign_in("not-a-token")
        assert response.status_code == 401, (attempt, response.text)
        assert "That token is unknown or has been revoked." in response.text
        assert "baton_console=" not in response.headers.get("set-cookie", "")
    refused = await browser.sign_in("not-a-token")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in refused.text
    # While the address is at its limit, even the right token waits (no oracle for guesses).
    assert (await browser.sign_in(ADMIN_TOKEN)).status_code == 429
    # After the window, the right token works again.
    world.clock.advance(seconds=601)
    assert (await browser.sign_in(ADMIN_TOKEN)).status_code == 303


async def test_sign_in_form_without_its_csrf_token_is_refused(world: World, open_console: Any) -> None:
    browser = await open_console()
    await browser.get("/console/login")
    response = await browser.http.post("/console/login", data={"token": ADMIN_TOKEN, "csrf": "forged"})
    assert response.status_code == 403
    assert "baton_console=" not in response.headers.get("set-cookie", "")


async def test_sign_out_invalidates_the_session(world: World, admin: Console) -> None:
    stolen = admin.http.cookies.get("baton_console", path="/console")
    assert stolen
    assert (await admin.post("/console/logout", csrf=False)).status_code == 403  # CSRF-protected too
    assert (await admin.get("/console/")).status_code == 200

    response = await admin.post("/console/logout")
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert 'baton_console=""' in response.headers["set-cookie"] and "Max-Age=0" in response.headers["set-cookie"]
    assert (await admin.get("/console/")).status_code == 303
    # A copy of the cookie taken before sign-out does not work either.
    replay = await world.client.get("/console/", headers={"Cookie": f"baton_console={stolen}"})
    assert replay.status_code == 303 and replay.headers["location"].startswith("/console/login")


async def test_revoking_the_staff_token_ends_its_sessions(app: Any, world: World, open_console: Any) -> None:
    token = await staff_token(app, "supervisor", name="sam")
    browser = await open_console()
    assert (await browser.sign_in(token)).status_code == 303
    page = await browser.get("/console/")
    assert page.status_code == 200 and "sam" in page.text
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(update(StaffToken).where(StaffToken.token_hash == hash_token(token))
                              .values(revoked_at=world.clock.now()))
        await session.commit()
    assert (await browser.get("/console/")).status_code == 303


async def test_session_expires_after_twelve_hours(world: World, admin: Console) -> None:
    world.clock.advance(hours=11, minutes=59)
    assert (await admin.get("/console/")).status_code == 200
    world.clock.advance(minutes=2)
    assert (await admin.get("/console/")).status_code == 303


async def test_a_tampered_cookie_is_refused(world: World, admin: Console) -> None:
    value = admin.http.cookies.get("baton_console", path="/console")
    assert value
    payload, mac = value.split(".")
    forged = _payload(f"baton_console={value}").replace('"admin"', '"agent"')
    forged_payload = base64.urlsafe_b64encode(forged.encode()).decode().rstrip("=")
    for cookie in (f"{forged_payload}.{mac}", f"{payload}.{'0' * 64}", "garbage"):
        response = await world.client.get("/console/", headers={"Cookie": f"baton_console={cookie}"})
        assert response.status_code == 303, cookie


# ---------------------------------------------------------------- CSRF and roles


async def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(world: World, admin: Console) -> None:
    ref = (await world.open_case())["ref"]
    before = await events(world, ref)

    for data in ({}, {"csrf": ""}, {"csrf": "0" * 64}):
        refused = await admin.http.post(f"/console/cases/{ref}/parties/lh/nudge", data=data)
        assert refused.status_code == 403, refused.text
        assert "security token" in refused.text
    refused = await admin.http.post(f"/console/cases/{ref}/notes", data={"note": "sneaky"})
    assert refused.status_code == 403
    # Another session's token does not fit this session either.
    other = Console(world.client)
    assert (await other.sign_in(ADMIN_TOKEN)).status_code == 303
    foreign = await other.csrf()
    assert (await admin.http.post(f"/console/cases/{ref}/parties/lh/nudge", data={"csrf": foreign})).status_code == 403

    assert await events(world, ref) == before
    case = (await world.as_admin("GET", f"/v1/cases/{ref}")).json()
    assert next(p for p in case["parties"] if p["partner"] == "lh")["reminders_sent"] == 0

    # The same form with the token goes through: the refusal was the CSRF check and nothing else.
    done = await admin.post(f"/console/cases/{ref}/parties/lh/nudge")
    assert done.status_code == 303 and done.headers["location"] == f"/console/cases/{ref}?done=nudged"
    assert [e["type"] for e in await events(world, ref)][len(before):] == ["party.nudged"]


async def test_an_agent_cannot_revoke_keys_or_close_cases(app: Any, world: World, open_console: Any) -> None:
    ref = (await world.open_case())["ref"]
    agent = await open_console()
    assert (await agent.sign_in(await staff_token(app, "agent"))).status_code == 303

    revoke = await agent.post("/console/admin/partners/lh/keys/lh-ed/revoke")
    assert revoke.status_code == 403 and "needs the admin role" in revoke.text
    assert (await agent.get("/console/admin/partners")).status_code == 403
    added = await agent.post("/console/admin/partners/lh/keys", {"keyid": "agent-key", "alg": "hmac-sha256"})
    assert added.status_code == 403
    keys = {k["keyid"]: k for k in (await world.as_admin("GET", "/v1/partners/lh")).json()["keys"]}
    assert keys["lh-ed"]["revoked_at"] is None and "agent-key" not in keys

    close = await agent.post(f"/console/cases/{ref}/close", {"resolution": "Delivered"})
    assert close.status_code == 403 and "needs the supervisor role" in close.text
    release = await agent.post(f"/console/cases/{ref}/parties/lh/release")
    assert release.status_code == 403
    case = (await world.as_admin("GET", f"/v1/cases/{ref}")).json()
    assert case["closed_at"] is None
    assert next(p for p in case["parties"] if p["partner"] == "lh")["state"] != "released"

    # The agent does not see what it may not do, but does see what it may.
    page = (await agent.get(f"/console/cases/{ref}")).text
    assert "Close case" not in page and "/release" not in page and "Partners and keys" not in page
    assert "Add note" in page and "/nudge" in page and "Rotate the status link" in page


async def test_a_supervisor_closes_and_releases_but_cannot_manage_keys(
    app: Any, world: World, open_console: Any
) -> None:
    ref = (await world.open_case())["ref"]
    supervisor = await open_console()
    assert (await supervisor.sign_in(await staff_token(app, "supervisor"))).status_code == 303
    assert (await supervisor.post("/console/admin/partners/lh/keys/lh-ed/revoke")).status_code == 403
    assert (await supervisor.post(f"/console/cases/{ref}/parties/lh/release")).status_code == 303
    assert (await supervisor.post(f"/console/cases/{ref}/close", {"resolution": "Delivered", "status": "delivered"})
            ).status_code == 303
    case = (await world.as_admin("GET", f"/v1/cases/{ref}")).json()
    assert case["status"] == "delivered" and case["closed_at"] is not None
    assert next(p for p in case["parties"] if p["partner"] == "lh")["state"] == "released"


# ---------------------------------------------------------------- search and pagination


async def test_search_finds_the_case_by_worldtracer_ref_bag_tag_phone_and_email(world: World, admin: Console) -> None:
    ref = (await world.open_case())["ref"]
    other = (await world.open_case(
        title="Parcel missing",
        customer={"name": "Grace Hopper", "phone": "+14155550111", "email": "grace@example.com"},
        external_refs={"worldtracer": "LHRLH55501", "bag_tag": "0016999999"},
    ))["ref"]
    for query in ("JFKUA12345", "jfkua 12345", "0016123456", "+14155550100", "+1 415 555 0100", "ada@example.com",
                  "ADA@example.com", ref, ref.lower()):
        page = await admin.get("/console/search", q=query)
        assert page.status_code == 200, query
        assert refs_on(page.text) == [ref], (query, refs_on(page.text))
    assert refs_on((await admin.get("/console/search", q="grace@example.com")).text) == [other]
    nothing = await admin.get("/console/search", q="NOPE00000")
    assert refs_on(nothing.text) == [] and "No case matches" in nothing.text


async def test_search_results_are_paginated(world: World, admin: Console) -> None:
    opened = [(await world.open_case(external_refs={"worldtracer": f"JFKUA{n:05d}"}))["ref"] for n in range(27)]
    first = await admin.get("/console/search", q="Delayed bag")
    page_one = refs_on(first.text)
    assert page_one == opened[::-1][:25]
    next_url = found(r'<a href="([^"]+)" rel="next">', first.text)
    second = await admin.get(next_url)
    assert refs_on(second.text) == opened[::-1][25:]
    assert 'rel="next"' not in second.text and "First page" in second.text


async def test_queue_lists_escalated_first_filters_and_paginates(
    world: World, admin: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = world.client._transport.app  # type: ignore[attr-defined]
    watchdog = Watchdog(sessionmaker=app.state.runtime.sessionmaker, clock=world.clock, config=WatchdogConfig())
    first = (await world.open_case())["ref"]
    world.clock.advance(hours=1)
    second = (await world.open_case())["ref"]
    courier = (await world.open_case(parties=[
        {"partner": "ua", "role": "owner"},
        {"partner": "fastcourier", "role": "courier", "responsible": True, "cadence": "PT2H"},
    ]))["ref"]
    world.clock.advance(hours=6, minutes=30)  # lh on the first two: 6.5 h and 5.5 h+; fastcourier escalated
    await watchdog.sweep()
    await watchdog.sweep()

    page = (await admin.get("/console/")).text
    assert refs_on(page) == [courier, first, second]
    assert re.findall(r'class="badge b-(late|escalated)"', page) == ["escalated", "late", "late"]

    monkeypatch.setattr(console.queue, "PAGE", 2)
    one = await admin.get("/console/")
    assert refs_on(one.text) == [courier, first]
    next_url = found(r'<a href="([^"]+)" rel="next">', one.text)
    assert refs_on((await admin.get(next_url)).text) == [second]

    assert refs_on((await admin.get("/console/", partner="lh")).text) == [first, second]
    assert refs_on((await admin.get("/console/", state="escalated")).text) == [courier]

    # One-click nudge from the queue comes back to the same filtered page.
    nudged = await admin.post(f"/console/cases/{first}/parties/lh/nudge", {"back": "/console/?partner=lh"})
    assert nudged.status_code == 303 and nudged.headers["location"] == "/console/?partner=lh&done=nudged"
    assert "nudged 0 s ago" in (await admin.get("/console/", partner="lh")).text
    # An open redirect is not possible through "back".
    for elsewhere in ("https://evil.example/console/", "//evil.example/console/", "/s/some-token"):
        sent = await admin.post(f"/console/cases/{second}/parties/ua/nudge", {"back": elsewhere})
        assert sent.headers["location"] == f"/console/cases/{second}?done=nudged", elsewhere
        world.clock.advance(hours=1)


# ---------------------------------------------------------------- the case page and its actions


async def test_case_page_shows_parties_timeline_marks_and_deliveries(world: World, admin: Console) -> None:
    ref = (await world.open_case())["ref"]
    signed = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events",
                                    json_body={"status": "located", "message": "Found in Frankfurt."})
    assert signed.status_code == 201, signed.text
    page = (await admin.get(f"/console/cases/{ref}")).text
    assert "Ada Lovelace" in page and "+14155550100" in page and "ada@example.com" in page
    assert "chain verified" in page and "1 partner signature checked" in page
    assert "signed by lh-ed" in page and "unsigned" in page
    assert '<span class="badge b-public">public</span>' in page
    assert "Found in Frankfurt." in page
    assert 'data-partner="lh"' in page and "on track" in page
    # lh has a webhook URL: its deliveries are listed with their state.
    assert re.search(r'<tr data-kind="case.opened" data-partner="lh">', page)
    assert "customer.opened" in page  # the customer's SMS and email, with their delivery state


async def test_case_actions_reach_the_timeline(world: World, admin: Console) -> None:
    ref = (await world.open_case())["ref"]
    steps = [
        (f"/console/cases/{ref}/notes", {"note": "Customer called twice."}, "noted"),
        (f"/console/cases/{ref}/parties", {"partner": "fastcourier", "role": "courier", "cadence": "PT4H"},
         "party-added"),
        (f"/console/cases/{ref}/handoffs", {"from": "lh", "to": "fastcourier", "note": "Deliver to the hotel.",
                                            "accept_within": "PT1H"}, "handed-off"),
        (f"/console/cases/{ref}/status-link", {}, "rotated"),
        (f"/console/cases/{ref}/parties/swissport-fra/release", {}, None),
        (f"/console/cases/{ref}/close", {"resolution": "Delivered to the hotel", "message": "Enjoy your trip."},
         "closed"),
    ]
    old_link = (await world.as_admin("GET", f"/v1/cases/{ref}")).json()["status_url"]
    for path, data, done in steps:
        response = await admin.post(path, data)
        if done is None:  # swissport-fra is not a party: a 404 page, not a crash
            assert response.status_code == 404 and "is not a party" in response.text
            continue
        assert response.status_code == 303, (path, response.text)
        assert response.headers["location"] == f"/console/cases/{ref}?done={done}"
        assert console.DONE[done] in (await admin.get(response.headers["location"])).text
    kinds = [e["type"] for e in await events(world, ref)]
    assert kinds[-5:] == ["update", "party.added", "handoff.requested", "status_link.rotated", "case.closed"]
    note = (await events(world, ref))[-5]
    assert note["visibility"] == "internal" and note["internal_note"] == "Customer called twice."
    case = (await world.as_admin("GET", f"/v1/cases/{ref}")).json()
    assert case["closed_at"] and case["resolution"] == "Delivered to the hotel"
    assert case["status_url"] != old_link


async def test_invalid_form_values_get_a_422_page(world: World, admin: Console) -> None:
    ref = (await world.open_case())["ref"]
    bad = await admin.post(f"/console/cases/{ref}/parties", {"partner": "fastcourier", "role": "Not A Role"})
    assert bad.status_code == 422 and "role" in bad.text and "text/html" in bad.headers["content-type"]
    bad = await admin.post(f"/console/cases/{ref}/handoffs", {"to": "ua", "accept_within": "soon"})
    assert bad.status_code == 422 and "ISO 8601" in bad.text
    missing = await admin.get("/console/cases/BAG-7KQ3X9M")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]


async def test_nudging_twice_within_the_hour_gets_a_429_page(world: World, admin: Console) -> None:
    ref = (await world.open_case())["ref"]
    assert (await admin.post(f"/console/cases/{ref}/parties/lh/nudge")).status_code == 303
    again = await admin.post(f"/console/cases/{ref}/parties/lh/nudge")
    assert again.status_code == 429 and int(again.headers["retry-after"]) > 0
    assert "nudge again after an hour" in again.text


# ---------------------------------------------------------------- scorecards, deliveries, admin


async def test_scorecard_draws_accessible_svg_charts_and_league_lists_every_partner(
    world: World, admin: Console
) -> None:
    ref = (await world.open_case())["ref"]
    for hours in (2, 5):
        world.clock.advance(hours=hours)
        response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body={"location": "FRA"})
        assert response.status_code == 201
    page = (await admin.get("/console/partners/lh")).text
    charts = re.findall(r'<svg class="chart[^"]*" role="img"[^>]*aria-labelledby="([^" ]+) ([^"]+)"', page)
    assert len(charts) == 6
    for title_id, desc_id in charts:
        assert f'<title id="{title_id}">' in page and f'<desc id="{desc_id}">' in page
    assert "Time between consecutive updates on a case" in page and "3-6 h: 1" in page
    figures = dict(re.findall(r"<div><dt>([^<]+)</dt><dd>([^<]+)</dd></div>", page))
    assert figures["Updates"] == "2" and figures["On-time rate"] == "100%"
    assert figures["Due moments met"] == "2 of 2"
    assert figures["Time to first update (median, 90th pct.)"] == "2 h, 2 h"
    assert figures["Median interval between updates"] == "5 h"
    assert "style=" not in page  # the CSP forbids inline styles: colours come from classes

    league = (await admin.get("/console/partners")).text
    rows = re.findall(r'<th scope="row"><a href="/console/partners/([a-z-]+)\?days=30">', league)
    assert sorted(rows) == ["fastcourier", "lh", "swissport-fra", "ua"]
    assert rows[0] == "lh"  # the only partner with updates, all on time
    assert (await admin.get("/console/partners/nobody")).status_code == 404


async def test_dead_lettered_webhooks_are_listed_and_resent(app: Any, world: World, admin: Console) -> None:
    ref = (await world.open_case())["ref"]
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(update(Notification).where(Notification.channel == "webhook")
                              .values(state="dead", attempts=8, last_error="HTTP 503"))
        await session.commit()
    page = (await admin.get("/console/deliveries", state="dead")).text
    ids = re.findall(r'action="/console/deliveries/(\d+)/resend"', page)
    assert ids and ref in page and "HTTP 503" in page

    agent = Console(world.client)
    assert (await agent.sign_in(await staff_token(app, "agent"))).status_code == 303
    assert (await agent.post(f"/console/deliveries/{ids[0]}/resend")).status_code == 403
    assert 'action="/console/deliveries/' not in (await agent.get("/console/deliveries", state="dead")).text

    resent = await admin.post(f"/console/deliveries/{ids[0]}/resend", {"back": "/console/deliveries?state=dead"})
    assert resent.status_code == 303 and resent.headers["location"] == "/console/deliveries?state=dead&done=resent"
    listed = (await world.as_admin("GET", "/v1/webhook-deliveries")).json()["items"]
    assert next(d for d in listed if d["id"] == int(ids[0]))["state"] == "pending"
    assert (await admin.post(f"/console/deliveries/{ids[0]}/resend")).status_code == 404


async def test_admin_registers_a_partner_adds_keys_and_revokes_one(world: World, admin: Console) -> None:
    created = await admin.post("/console/admin/partners", {
        "id": "acme-courier", "name": "Acme Courier", "kind": "courier", "ops_email": "ops@acme.example",
        "webhook_url": "https://hooks.acme.example/baton", "default_cadence": "PT4H", "timezone": "Europe/Paris",
    })
    assert created.status_code == 201, created.text
    assert re.search(r'value="whsec_[A-Za-z0-9+/=]+"', created.text)

    hmac_key = await admin.post("/console/admin/partners/acme-courier/keys", {"keyid": "acme-1", "alg": "hmac-sha256"})
    assert hmac_key.status_code == 201
    secret = found(r'id="created-secret" class="secret" readonly value="([^"]+)"', hmac_key.text)
    assert len(base64.b64decode(secret)) == 32
    assert secret not in (await admin.get("/console/admin/partners")).text  # shown once

    pem = world.partners["lh"].public_pem
    ed = await admin.post("/console/admin/partners/acme-courier/keys", {"keyid": "acme-ed", "alg": "ed25519",
                                                                        "public_key": pem})
    assert ed.status_code == 201 and "created-secret" not in ed.text
    bad = await admin.post("/console/admin/partners/acme-courier/keys", {"keyid": "acme-x", "alg": "ed25519",
                                                                         "public_key": "not a key"})
    assert bad.status_code == 422

    revoked = await admin.post("/console/admin/partners/acme-courier/keys/acme-1/revoke")
    assert revoked.status_code == 303 and revoked.headers["location"] == "/console/admin/partners?done=revoked"
    keys = {k["keyid"]: k for k in (await world.as_admin("GET", "/v1/partners/acme-courier")).json()["keys"]}
    assert keys["acme-1"]["revoked_at"] is not None and keys["acme-ed"]["revoked_at"] is None


async def test_pages_carry_no_inline_script_or_style(world: World, admin: Console) -> None:
    ref = (await world.open_case())["ref"]
    for path in ("/console/login", "/console/", "/console/search?q=JFKUA12345", f"/console/cases/{ref}",
                 "/console/partners", "/console/partners/lh", "/console/deliveries", "/console/admin/partners"):
        page = await admin.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) == [], path
        assert " style=" not in page.text and " on" + "click=" not in page.text, path
        assert '<html lang="en">' in page.text and '<main id="main"' in page.text


def test_chart_axes_end_on_round_numbers_and_counts_get_whole_ticks() -> None:
    chart = charts.bar_chart(id="c", title="Late episodes per week", categories=["a", "b"],
                             series=[charts.Series("late", "c-late", [1, 2])])
    assert [t.text for t in chart.ticks] == ["0", "1", "2", "3", "4"]
    assert chart.description == "a: 1; b: 2" and not chart.empty
    tall = [b.height for b in chart.bars]
    assert tall[1] == 2 * tall[0]
    minutes = charts.bar_chart(id="m", title="Acceptance", categories=["median"], integers=False,
                               series=[charts.Series("minutes", "c-handoff", [37.5])])
    assert [t.text for t in minutes.ticks] == ["0", "10", "20", "30", "40"]
    empty = charts.bar_chart(id="e", title="Nothing", categories=["x"], series=[charts.Series("s", "c", [None])])
    assert empty.empty and empty.bars == [] and empty.description == "No data in this window."
    assert charts.meter(id="o", title="On-time rate", share=None).label == "no data"
    assert charts.meter(id="o", title="On-time rate", share=0.874).label == "87%"


async def test_queue_lists_invitations_waiting_for_an_answer(world: World, admin: Console) -> None:
    case = await world.open_case()
    invited = await world.as_partner("ua", "POST", f"/v1/cases/{case['ref']}/parties",
                                     json_body={"partner": "fastcourier", "role": "courier", "responsible": True})
    assert invited.status_code == 201
    queue = (await admin.get("/console/")).text
    section = queue.split('id="invitations"', 1)[1]
    assert case["ref"] in section and "fastcourier" in section and "asked to be responsible" in section
    declined = await world.as_partner("fastcourier", "POST",
                                      f"/v1/cases/{case['ref']}/parties/fastcourier/decline", json_body={})
    assert declined.status_code == 200
    after = (await admin.get("/console/")).text.split('id="invitations"', 1)[1]
    assert case["ref"] not in after and "No invitation is waiting." in after


async def test_the_queue_lists_claims_overdue_for_an_answer_beside_late_parties(
        world: World, admin: Console, open_console: Callable[[], Awaitable[Console]]) -> None:
    import datetime as dt

    from tracker.watchdog import Watchdog, WatchdogConfig

    case = await world.open_case()
    filed = await world.as_partner("ua", "POST", f"/v1/cases/{case['ref']}/claims", json_body={
        "kind": "delay", "items": [{"description": "Taxi", "amount": "22.50", "currency": "EUR"}]})
    assert filed.status_code == 201, filed.text
    assert "No claim is overdue." in (await admin.get("/console/")).text
    world.clock.advance(dt.timedelta(days=30))
    app = world.client._transport.app  # type: ignore[attr-defined]
    await Watchdog(sessionmaker=app.state.runtime.sessionmaker, clock=world.clock, config=WatchdogConfig()).sweep()
    assert len((await world.as_admin("GET", "/v1/claims?overdue=true")).json()["items"]) == 1
    later = await open_console()  # a month later the morning's console session has expired
    assert (await later.sign_in(ADMIN_TOKEN)).status_code == 303
    queue = (await later.get("/console/")).text
    assert 'data-field="overdue-claims"' in queue, queue[queue.find("Claims overdue"):][:600]
    table = queue.split('data-field="overdue-claims"', 1)[1].split("</table>", 1)[0]
    assert case["ref"] in table and "22.50 EUR" in table and ">overdue<" in table
