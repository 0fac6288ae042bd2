"""Staff single sign-on through the organization's OpenID Connect provider, over HTTP.

The app runs over ASGI; the provider is ``tests.support.oidc_provider``, a real server on a
loopback port that the app's Authlib client talks to (discovery, JWKS, token endpoint). The test
plays the browser and follows every redirect by hand: the console sends it to the provider's
authorization URL, it posts the provider's login form, and takes the provider's redirect back to
the console's callback. What an action changed is read back through the JSON API or the database.

Groups map to roles here (``BATON_OIDC_ROLE_CLAIM=groups``): baton-agents, baton-supervisors and
baton-admins; "staff" maps to nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pydantic
import pytest
from sqlalchemy import select

from kernel.clock import FrozenClock
from kernel.config import STAFF_ROLES, Settings
from tests.conftest import ADMIN_TOKEN, BASE_URL, World
from tests.support.oidc_provider import OidcProvider
from tracker.models import StaffToken
from tracker.principals import ROLES, create_staff_token
from tracker.staff_sign_in import identity_of, staff_role
from tracker.web.app import create_app

CALLBACK = f"{BASE_URL}/console/oidc/callback"
ROLE_MAP = {"baton-agents": "agent", "baton-supervisors": "supervisor", "baton-admins": "admin"}


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider() as provider:
        provider.allow_redirect(CALLBACK)
        provider.add_user("sam", "sam-password", name="Sam Supervisor", email="sam@example.com",
                          groups=["staff", "baton-supervisors"])
        provider.add_user("ada", "ada-password", name="Ada Agent", email="ada@example.com", groups=["baton-agents"])
        provider.add_user("root", "root-password", name="Rosa Admin", email="rosa@example.com",
                          groups=["baton-agents", "baton-admins"])
        provider.add_user("nobody", "nobody-password", name="No Body", email="nobody@example.com", groups=["staff"])
        yield provider


@pytest.fixture
def settings(settings: Settings, idp: OidcProvider, clock: FrozenClock) -> Settings:
    idp.clock = clock.now  # ID tokens are issued on the app's clock
    idp.token_requests.clear()
    return settings.model_copy(update={**idp.settings(), "oidc_role_claim": "groups", "oidc_role_map": ROLE_MAP})


class Browser:
    """One browser: its own cookie jar on the console, and a plain client for the provider's pages."""

    def __init__(self, http: httpx.AsyncClient, idp: OidcProvider) -> None:
        self.http = http
        self.idp = idp

    async def begin(self, next: str | None = None) -> str:
        """Click "Sign in with your organization": the provider's authorization URL the console redirects to."""
        started = await self.http.get("/console/oidc/login", params={"next": next} if next else None)
        assert started.status_code == 303, started.text
        return started.headers["location"]

    async def at_provider(self, authorize_url: str, username: str, password: str) -> str:
        """Sign in on the provider's form: the URL it sends the browser back to."""
        async with httpx.AsyncClient(trust_env=False) as provider:
            form = await provider.get(authorize_url)
            assert form.status_code == 200, form.text
            fields = {name: html.unescape(value) for name, value in
                      re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.text)}
            answer = await provider.post(f"{self.idp.issuer}/authorize",
                                         data={**fields, "username": username, "password": password})
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]

    async def back(self, url: str) -> httpx.Response:
        """Arrive at the console's callback."""
        assert url.startswith(CALLBACK + "?"), url
        return await self.http.get(url.removeprefix(BASE_URL))

    async def sign_in(self, username: str, password: str, *, next: str | None = None) -> httpx.Response:
        """The whole round trip; answers the callback's page."""
        return await self.back(await self.at_provider(await self.begin(next), username, password))

    async def csrf(self) -> str:
        page = await self.http.get("/console/")
        assert page.status_code == 200, page.text
        return _csrf(page.text)

    async def post(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(path, data={**(data or {}), "csrf": await self.csrf()})

    def session_cookie(self) -> str | None:
        return self.http.cookies.get("baton_console", path="/console")


@pytest.fixture
async def open_browser(app: Any, idp: OidcProvider) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    async def make(application: Any = None) -> Browser:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=application or app), base_url=BASE_URL)
        clients.append(http)
        return Browser(http, idp)

    yield make
    for http in clients:
        await http.aclose()


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def _who(page: str) -> tuple[str, str]:
    """The signed-in person's name and role in the console's header."""
    match = re.search(r'<span class="who"[^>]*>([^<]+)<span class="role">([^<]+)</span>', page)
    assert match, "nobody is shown as signed in"
    return html.unescape(match.group(1)).strip(), match.group(2)


def _refresh_target(page: str) -> str:
    match = re.search(r'<meta http-equiv="refresh" content="0; url=([^"]+)">', page)
    assert match, "the page does not move on by itself"
    return html.unescape(match.group(1))


def _sets_session(response: httpx.Response) -> bool:
    return any(c.startswith("baton_console=") and not c.startswith('baton_console=""')
               for c in response.headers.get_list("set-cookie"))


async def _sign_in_rows(app: Any) -> list[StaffToken]:
    async with app.state.runtime.sessionmaker() as session:
        return list((await session.execute(select(StaffToken).where(StaffToken.source == "oidc")
                                           .order_by(StaffToken.id))).scalars())


async def _events(world: World, ref: str) -> list[dict[str, Any]]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}/events")
    assert response.status_code == 200, response.text
    return response.json()["items"]


# ---------------------------------------------------------------- signing in


async def test_a_supervisor_from_a_mapped_group_signs_in_and_acts_as_a_supervisor(
    app: Any, world: World, open_browser: Any, idp: OidcProvider
) -> None:
    browser = await open_browser()
    login = await browser.http.get("/console/login")
    assert re.search(r'<a class="button" href="/console/oidc/login">Sign in with your organization</a>', login.text)
    assert 'name="token"' in login.text  # the token form stays, for automation and break-glass

    authorize = await browser.begin(next="/console/search?q=JFK")
    parts = urlsplit(authorize)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{idp.issuer}/authorize"
    assert query["response_type"] == "code" and query["client_id"] == idp.client_id
    assert query["redirect_uri"] == CALLBACK and query["scope"] == "openid email profile"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32 and query["state"] != query["nonce"]
    attempt_cookie = next(c for c in browser.http.cookies.jar if c.name == "baton_console_oidc")
    assert attempt_cookie.path == "/console/oidc"

    landed = await browser.back(await browser.at_provider(authorize, "sam", "sam-password"))
    assert landed.status_code == 200, landed.text
    assert "Welcome, Sam Supervisor." in landed.text
    assert _refresh_target(landed.text) == "/console/search?q=JFK"
    session_cookie = next(c for c in landed.headers.get_list("set-cookie") if c.startswith("baton_console="))
    assert "HttpOnly" in session_cookie and "SameSite=strict" in session_cookie and "Max-Age=43200" in session_cookie
    assert any(c.startswith('baton_console_oidc=""') for c in landed.headers.get_list("set-cookie"))

    # The code went back with the PKCE verifier that matches the challenge, and the client authenticated.
    [exchange] = idp.token_requests
    verifier = exchange["code_verifier"]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    assert challenge == query["code_challenge"] and exchange["redirect_uri"] == CALLBACK
    assert exchange["authorization"].startswith("Basic ")

    page = await browser.http.get("/console/")
    assert page.status_code == 200
    assert _who(page.text) == ("Sam Supervisor", "supervisor")
    assert "Partners and keys" not in page.text

    [row] = await _sign_in_rows(app)
    assert (row.name, row.role, row.subject, row.display_name) == (
        "sam@example.com", "supervisor", "sub-sam", "Sam Supervisor")
    assert row.expires_at == world.clock.now() + dt.timedelta(hours=12) and row.revoked_at is None

    # A supervisor's actions are allowed, an admin's are not; the timeline names the person.
    ref = (await world.open_case())["ref"]
    noted = await browser.post(f"/console/cases/{ref}/notes", {"note": "Called the carrier."})
    assert noted.status_code == 303, noted.text
    note = next(e for e in await _events(world, ref) if e.get("internal_note") == "Called the carrier.")
    assert note["actor"] == "staff:sam@example.com"
    assert (await browser.post(f"/console/cases/{ref}/close", {"resolution": "Delivered", "status": "delivered"})
            ).status_code == 303
    assert (await world.as_admin("GET", f"/v1/cases/{ref}")).json()["closed_at"] is not None
    refused = await browser.post("/console/admin/partners/lh/keys/lh-ed/revoke")
    assert refused.status_code == 403 and "needs the admin role" in refused.text


@pytest.mark.parametrize("next_page", ["https://evil.example/console/", "//evil.example/", "/console/oidc/login"])
async def test_the_page_after_signing_in_is_never_another_site_or_the_sign_in_itself(
    world: World, open_browser: Any, next_page: str
) -> None:
    browser = await open_browser()
    landed = await browser.sign_in("ada", "ada-password", next=next_page)
    assert landed.status_code == 200 and _refresh_target(landed.text) == "/console/"


async def test_an_agent_may_not_close_and_two_mapped_groups_give_the_higher_role(
    world: World, open_browser: Any
) -> None:
    ref = (await world.open_case())["ref"]
    agent = await open_browser()
    assert (await agent.sign_in("ada", "ada-password")).status_code == 200
    assert _who((await agent.http.get("/console/")).text) == ("Ada Agent", "agent")
    close = await agent.post(f"/console/cases/{ref}/close", {"resolution": "Delivered"})
    assert close.status_code == 403 and "needs the supervisor role" in close.text
    assert (await world.as_admin("GET", f"/v1/cases/{ref}")).json()["closed_at"] is None

    admin = await open_browser()
    assert (await admin.sign_in("root", "root-password")).status_code == 200
    assert _who((await admin.http.get("/console/")).text) == ("Rosa Admin", "admin")
    assert (await admin.http.get("/console/admin/partners")).status_code == 200


async def test_an_account_without_a_baton_role_gets_a_403_page_and_no_session(
    app: Any, world: World, open_browser: Any
) -> None:
    browser = await open_browser()
    refused = await browser.sign_in("nobody", "nobody-password")
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert "Your account has no Baton role; ask your administrator" in refused.text
    assert not _sets_session(refused) and browser.session_cookie() is None
    assert await _sign_in_rows(app) == []
    assert (await browser.http.get("/console/")).status_code == 303


async def test_a_wrong_or_missing_state_is_refused_before_the_code_is_exchanged(
    app: Any, world: World, open_browser: Any, idp: OidcProvider
) -> None:
    browser = await open_browser()
    back = await browser.at_provider(await browser.begin(), "sam", "sam-password")
    state = parse_qs(urlsplit(back).query)["state"][0]

    # The answer of another browser's attempt: this browser has no attempt cookie.
    stranger = await open_browser()
    assert (await stranger.back(back)).status_code == 400

    forged = back.replace(f"state={state}", "state=" + "A" * len(state))
    refused = await browser.back(forged)
    assert refused.status_code == 400 and "did not start in this browser" in refused.text
    assert not _sets_session(refused)
    assert idp.token_requests == []  # nothing reached the provider's token endpoint
    # The attempt was answered once: the right state no longer works either.
    assert (await browser.back(back)).status_code == 400
    assert await _sign_in_rows(app) == [] and browser.session_cookie() is None


async def test_an_attempt_older_than_ten_minutes_is_refused(
    world: World, open_browser: Any, idp: OidcProvider, clock: FrozenClock
) -> None:
    browser = await open_browser()
    back = await browser.at_provider(await browser.begin(), "sam", "sam-password")
    clock.advance(minutes=10, seconds=1)
    refused = await browser.back(back)
    assert refused.status_code == 400 and "took longer than 10 minutes" in refused.text
    assert idp.token_requests == [] and not _sets_session(refused)


async def test_the_provider_sending_back_an_error_is_a_refusal_page(world: World, open_browser: Any) -> None:
    browser = await open_browser()
    state = parse_qs(urlsplit(await browser.begin()).query)["state"][0]
    refused = await browser.back(f"{CALLBACK}?{urlencode({'error': 'access_denied', 'state': state})}")
    assert refused.status_code == 401 and "did not complete (access_denied)" in refused.text
    assert not _sets_session(refused)


@pytest.mark.parametrize(("tamper", "reason"), [
    ({"claims": {"nonce": "a-nonce-from-another-attempt"}}, "wrong nonce"),
    ({"claims": {"nonce": None}}, "no nonce claim"),
    ({"claims": {"aud": "another-client"}}, "wrong aud"),
    ({"claims": {"iss": "https://impostor.example"}}, "wrong iss"),
    ({"key": "rogue"}, "bad signature"),
    ({"key": "unknown"}, "signed with a key the provider does not publish"),
], ids=["nonce", "no-nonce", "audience", "issuer", "rogue-key", "unknown-key"])
async def test_a_tampered_id_token_is_refused(
    app: Any, world: World, open_browser: Any, idp: OidcProvider, tamper: dict[str, Any], reason: str
) -> None:
    browser = await open_browser()
    back = await browser.at_provider(await browser.begin(), "sam", "sam-password")
    idp.tamper_next(**tamper)
    refused = await browser.back(back)
    assert refused.status_code == 401, refused.text
    assert f"ID token did not verify ({reason})" in refused.text
    assert not _sets_session(refused) and await _sign_in_rows(app) == []


async def test_an_id_token_that_expired_before_it_arrived_is_refused(
    world: World, open_browser: Any, idp: OidcProvider, clock: FrozenClock
) -> None:
    # The provider issues its token (5 minutes) at a fixed instant; Baton's clock moves on meanwhile.
    issued = clock.now()
    idp.clock = lambda: issued
    browser = await open_browser()
    back = await browser.at_provider(await browser.begin(), "sam", "sam-password")
    clock.advance(minutes=7)  # past exp and the minute of leeway, within the attempt's 10 minutes
    refused = await browser.back(back)
    assert refused.status_code == 401 and "ID token has expired" in refused.text
    assert not _sets_session(refused)

    # The same timing within the leeway signs in: the refusal above was the expiry.
    issued = clock.now()
    again = await open_browser()
    back = await again.at_provider(await again.begin(), "sam", "sam-password")
    clock.advance(minutes=5, seconds=50)
    assert (await again.back(back)).status_code == 200


async def test_signing_out_revokes_the_session_on_every_replica(
    app: Any, world: World, open_browser: Any, settings: Settings, clock: FrozenClock
) -> None:
    browser = await open_browser()
    assert (await browser.sign_in("sam", "sam-password")).status_code == 200
    stolen = browser.session_cookie()
    assert stolen

    signed_out = await browser.post("/console/logout")
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/console/login"
    [row] = await _sign_in_rows(app)
    assert row.revoked_at == clock.now()
    assert (await browser.http.get("/console/")).status_code == 303

    # Another replica never saw the sign-out; the revoked row refuses the copied cookie there too.
    replica = create_app(settings, clock=clock)
    try:
        other = await open_browser(replica)
        replay = await other.http.get("/console/", headers={"Cookie": f"baton_console={stolen}"})
        assert replay.status_code == 303 and replay.headers["location"].startswith("/console/login")
    finally:
        await replica.state.engine.dispose()


async def test_the_session_ends_after_its_configured_hours(
    world: World, open_browser: Any, settings: Settings, clock: FrozenClock
) -> None:
    app = create_app(settings.model_copy(update={"oidc_session_hours": 2.0}), clock=clock)
    try:
        browser = await open_browser(app)
        landed = await browser.sign_in("sam", "sam-password")
        assert "Max-Age=7200" in landed.headers["set-cookie"]
        clock.advance(hours=1, minutes=59)
        assert (await browser.http.get("/console/")).status_code == 200
        clock.advance(minutes=2)
        expired = await browser.http.get("/console/")
        assert expired.status_code == 303 and expired.headers["location"].startswith("/console/login")
    finally:
        await app.state.engine.dispose()


async def test_a_default_session_lasts_twelve_hours(world: World, open_browser: Any, clock: FrozenClock) -> None:
    browser = await open_browser()
    assert (await browser.sign_in("ada", "ada-password")).status_code == 200
    clock.advance(hours=11, minutes=59)
    assert (await browser.http.get("/console/")).status_code == 200
    clock.advance(minutes=2)
    assert (await browser.http.get("/console/")).status_code == 303


async def test_a_rotated_provider_key_is_fetched_again(world: World, open_browser: Any, idp: OidcProvider) -> None:
    first = await open_browser()
    assert (await first.sign_in("sam", "sam-password")).status_code == 200  # the key set is now kept
    idp.rotate_key()
    second = await open_browser()
    assert (await second.sign_in("ada", "ada-password")).status_code == 200


async def test_tokens_still_work_for_the_api_and_the_console_form(
    app: Any, world: World, open_browser: Any
) -> None:
    assert (await world.client.get("/v1/cases", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})).status_code == 200
    async with app.state.runtime.sessionmaker() as session:
        token = await create_staff_token(session=session, name="robot", role="agent", now=world.clock.now())
        await session.commit()
    assert (await world.client.get("/v1/overdue", headers={"Authorization": f"Bearer {token}"})).status_code == 200

    browser = await open_browser()
    login = await browser.http.get("/console/login")
    signed_in = await browser.http.post("/console/login", data={"token": token, "csrf": _csrf(login.text), "next": ""})
    assert signed_in.status_code == 303
    assert _who((await browser.http.get("/console/")).text) == ("robot", "agent")
    # A staff token's console session ends at sign-out; the token itself is not revoked.
    assert (await browser.post("/console/logout")).status_code == 303
    assert (await world.client.get("/v1/overdue", headers={"Authorization": f"Bearer {token}"})).status_code == 200


async def test_an_unreachable_provider_gets_a_502_page(
    settings: Settings, clock: FrozenClock, open_browser: Any
) -> None:
    from tests.support._http import free_port

    app = create_app(settings.model_copy(update={"oidc_issuer": f"http://127.0.0.1:{free_port()}"}), clock=clock)
    try:
        browser = await open_browser(app)
        page = await browser.http.get("/console/oidc/login")
        assert page.status_code == 502 and page.headers["content-type"].startswith("text/html")
        assert "discovery document could not be fetched" in page.text
    finally:
        await app.state.engine.dispose()


async def test_without_single_sign_on_the_console_offers_tokens_only(
    settings: Settings, clock: FrozenClock, open_browser: Any
) -> None:
    plain = settings.model_copy(update={"oidc_issuer": None, "oidc_client_id": None, "oidc_client_secret": None})
    app = create_app(plain, clock=clock)
    try:
        browser = await open_browser(app)
        login = await browser.http.get("/console/login")
        assert login.status_code == 200 and "Sign in with your organization" not in login.text
        assert (await browser.http.get("/console/oidc/login")).status_code == 404
        assert (await browser.http.get("/console/oidc/callback?code=x&state=y")).status_code == 404
    finally:
        await app.state.engine.dispose()


# ---------------------------------------------------------------- roles from claims, and the settings


def test_the_highest_mapped_role_wins_and_unmapped_values_count_for_nothing() -> None:
    assert staff_role(claims={"groups": ["staff", "baton-agents", "baton-supervisors"]}, claim="groups",
                      role_map=ROLE_MAP) == "supervisor"
    assert staff_role(claims={"groups": ["staff"]}, claim="groups", role_map=ROLE_MAP) is None
    assert staff_role(claims={}, claim="groups", role_map=ROLE_MAP) is None
    assert staff_role(claims={"groups": "baton-admins"}, claim="groups", role_map=ROLE_MAP) == "admin"
    # With a map, a provider group that happens to be called "admin" is not Baton's admin role.
    assert staff_role(claims={"groups": ["admin"]}, claim="groups", role_map=ROLE_MAP) is None


def test_without_a_map_the_claim_names_the_role_itself() -> None:
    assert staff_role(claims={"baton_role": "supervisor"}, claim="baton_role", role_map={}) == "supervisor"
    assert staff_role(claims={"baton_role": ["agent", "admin"]}, claim="baton_role", role_map={}) == "admin"
    assert staff_role(claims={"baton_role": "superuser"}, claim="baton_role", role_map={}) is None
    assert staff_role(claims={"baton_role": {"role": "admin"}}, claim="baton_role", role_map={}) is None
    # A dotted path reaches into an object (Keycloak's realm roles); a claim with dots in its name wins.
    assert staff_role(claims={"realm_access": {"roles": ["agent"]}}, claim="realm_access.roles", role_map={}) == "agent"
    assert staff_role(claims={"https://baton.example/role": "admin"}, claim="https://baton.example/role",
                      role_map={}) == "admin"


def test_the_actor_is_the_verified_email_else_the_subject_and_always_fits_the_timeline() -> None:
    def actor(**claims: Any) -> str:
        return "staff:" + identity_of(claims={"sub": "248289761001", **claims}, role="agent").name

    assert actor(email="grace@example.com", name="Grace Hopper") == "staff:grace@example.com"
    assert actor(email="grace@example.com", email_verified=False) == "staff:248289761001"
    assert actor() == "staff:248289761001"
    assert actor(email="g" * 120 + "@example.com") == "staff:248289761001"
    long_subject = identity_of(claims={"sub": "s" * 300}, role="agent")
    assert long_subject.name.startswith("sub-sha256:") and long_subject.subject == "s" * 255
    assert len("staff:" + long_subject.name) <= 120  # tracker.models.Event.actor
    assert identity_of(claims={"sub": "x", "preferred_username": "gh"}, role="agent").display_name == "gh"


def test_half_configured_single_sign_on_fails_at_start_naming_what_is_missing() -> None:
    with pytest.raises(pydantic.ValidationError, match="BATON_OIDC_CLIENT_SECRET missing"):
        Settings(oidc_issuer="https://id.example.com", oidc_client_id="baton")
    with pytest.raises(pydantic.ValidationError, match="BATON_OIDC_ISSUER, BATON_OIDC_CLIENT_ID missing"):
        Settings(oidc_client_secret="s3cret")
    with pytest.raises(pydantic.ValidationError, match="BATON_OIDC_ROLE_MAP: 'baton-bosses=boss'"):
        Settings(oidc_role_map="baton-agents=agent,baton-bosses=boss")
    with pytest.raises(pydantic.ValidationError, match="BATON_OIDC_ISSUER: .* must be an https URL"):
        Settings(oidc_issuer="http://id.example.com", oidc_client_id="baton", oidc_client_secret="s3cret")
    with pytest.raises(pydantic.ValidationError, match="BATON_OIDC_SCOPES"):
        Settings(oidc_scopes="email profile")
    complete = Settings(oidc_issuer="https://id.example.com", oidc_client_id="baton", oidc_client_secret="s3cret",
                        oidc_role_map="baton-agents=agent, baton-admins=admin")
    assert complete.oidc_enabled and complete.oidc_role_map == {"baton-agents": "agent", "baton-admins": "admin"}
    assert not Settings(oidc_issuer="", oidc_client_id="", oidc_client_secret="").oidc_enabled
    assert ROLES == STAFF_ROLES
