"""Browser fixtures: a real Baton server on a loopback port, the demo seeded once, headless Chromium.

1. ``live``: the app from ``create_app`` served by uvicorn in a background thread (its own event
   loop) on a free port of 127.0.0.1, on a SQLite file copied from the migrated template. The
   server's clock is a ``FrozenClock`` the tests hold: they move it and run watchdog rounds in the
   server's loop (``live.run``), so "late" and "escalated" happen when a test says so. Its console
   offers single sign-on through ``identity_provider``, a local OpenID Connect provider.
2. The demo (``tracker.demo.seed``) is seeded once, in the server's loop, through the app's own
   sessionmaker; ``live.demo`` is its ``DemoResult`` (the lost-bag case and its status link).
3. ``browser``: Debian's Chromium driven by Playwright (never Playwright's own browser download).
   Missing Chromium, Playwright or axe-core skip with the reason outside CI and fail in CI.

Screenshots go to ``tests/artifacts/screenshots/`` (gitignored); a failing test leaves one too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support.oidc_provider import OidcProvider
from tests.support.webhook_receiver import LOCAL_RECEIVERS
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings

IN_CI = os.environ.get("CI") == "true"
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
# A Thursday afternoon in Boston: the demo's story ends about a day and a half before it.
START = dt.datetime(2026, 11, 5, 19, 0, tzinfo=UTC)
T = TypeVar("T")


def missing(reason: str) -> None:
    """A test that cannot run says why; in CI that is a failure, not a skip."""
    if IN_CI:
        pytest.fail(f"{reason} (required in CI)", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------- the live server


@dataclass
class LiveServer:
    url: str
    app: Any
    settings: Settings
    clock: FrozenClock
    loop: asyncio.AbstractEventLoop
    http: httpx.Client
    demo: Any = None  # tracker.demo.DemoResult, once seeded

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine in the server's own event loop (where its engine lives) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def worker_round(self) -> Any:
        """One watchdog + dispatcher round at the clock's instant; nothing leaves the machine."""
        from tracker.worker import Worker

        worker = Worker(sessionmaker=self.app.state.runtime.sessionmaker, clock=self.clock, settings=self.settings,
                        transports={})
        return self.run(worker.run_round())

    # staff API, with the admin token

    def api(self, method: str, path: str, *, json: Any = None, expect: int | None = 200) -> Any:
        response = self.http.request(method, path, json=json)
        if expect is not None:
            assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def case(self, ref: str) -> dict[str, Any]:
        return self.api("GET", f"/v1/cases/{ref}")

    def events(self, ref: str) -> list[dict[str, Any]]:
        """The whole timeline as staff see it, oldest first (every page of it)."""
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": "500"}
        while True:
            response = self.http.get(f"/v1/cases/{ref}/events", params=params)
            assert response.status_code == 200, response.text
            items += response.json()["items"]
            cursor = response.json().get("next_cursor")
            if not cursor:
                return items
            params["cursor"] = cursor

    def open_case(self, **overrides: Any) -> dict[str, Any]:
        """A case between the demo's partners, opened by staff at the clock's instant."""
        body: dict[str, Any] = {
            "type": "baggage",
            "title": "Delayed bag, UA123 JFK-BOS",
            "customer": {"name": "Grace Hopper", "phone": "+14155550123", "email": "grace@example.com",
                         "locale": "en", "timezone": "America/New_York"},
            "owner": "ua",
            "parties": [
                {"partner": "ua", "role": "owner"},
                {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
            ],
            "external_refs": {"worldtracer": "BOSUA54321"},
        }
        body.update(overrides)
        return self.api("POST", "/v1/cases", json=body, expect=201)

    def status_link(self, status_url: str) -> str:
        """The status link as served here (it is built from BATON_PUBLIC_BASE_URL, which is this server)."""
        assert status_url.startswith(self.url + "/s/"), status_url
        return status_url


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="session")
def identity_provider() -> Iterator[OidcProvider]:
    """The organization's OpenID Connect provider that the live console offers staff (``test_console_oidc``)."""
    with OidcProvider() as provider:
        yield provider


@pytest.fixture(scope="session")
def live(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory, identity_provider: OidcProvider
) -> Iterator[LiveServer]:
    import uvicorn

    from tracker import demo
    from tracker.web.app import create_app

    work = tmp_path_factory.mktemp("browser")
    database = work / "baton.db"
    shutil.copy(sqlite_template, database)
    sock = _free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    clock = FrozenClock(START)
    identity_provider.clock = clock.now  # its ID tokens are issued on the server's clock
    identity_provider.allow_redirect(f"{url}/console/oidc/callback")
    settings = Settings(**identity_provider.settings(), oidc_role_claim="groups",
                        oidc_role_map="baton-agents=agent,baton-supervisors=supervisor,baton-admins=admin",
                        database_url=f"sqlite+aiosqlite:///{database}", admin_token=ADMIN_TOKEN,
                        public_base_url=url, workers_in_process=False, storage_url=f"file:{work / 'attachments'}",
                        webhook_allow_hosts=LOCAL_RECEIVERS)  # the join page's webhook test reaches a local receiver
    app = create_app(settings, clock=clock)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def serve() -> None:
        # Not the main thread: uvicorn installs no signal handlers here.
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException as exc:  # noqa: BLE001 - uvicorn exits (SystemExit) when it cannot start
            failure.append(exc)

    thread = threading.Thread(target=serve, name="baton-live-server", daemon=True)
    thread.start()
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, trust_env=False,
                        timeout=15)
    deadline = time.monotonic() + 15
    while True:
        if failure or not thread.is_alive():
            raise RuntimeError(f"the server did not start: {failure!r}")
        try:
            if http.get("/healthz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}/healthz did not answer within 15 s")
        time.sleep(0.05)

    live = LiveServer(url=url, app=app, settings=settings, clock=clock, loop=loop, http=http)

    async def seed() -> Any:
        async with app.state.runtime.sessionmaker() as session:
            result = await demo.seed(session=session, now=clock.now(), base_url=url, var_dir=work / "var")
            await session.commit()
            return result

    live.demo = live.run(seed())
    try:
        yield live
    finally:
        http.close()
        server.should_exit = True
        thread.join(timeout=15)
        if not thread.is_alive():
            loop.close()
        sock.close()


@pytest.fixture(scope="session")
def demo_url(live: LiveServer) -> str:
    return live.status_link(live.demo.status_url)


# ---------------------------------------------------------------- the browser


# Module scope, not session: while sync Playwright runs, its event loop counts as running in the
# main thread, and pytest-asyncio could not run the async tests collected after this package.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        missing("Chromium not installed: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright not installed: pip install playwright (in the test extra)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context_for(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``context_for(**options)``: a fresh browser context (phone-sized, English) closed after the test.

    When the test fails, every page still open is screenshotted as ``FAILED-<test>-<n>.png``.
    """
    from playwright.sync_api import Error as PlaywrightError

    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        options = {"viewport": PHONE, "locale": "en-US", **options}
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    report = getattr(request.node, "rep_call", None)
    for n, context in enumerate(contexts):
        if report is not None and report.failed:
            for m, page in enumerate(context.pages):
                with contextlib.suppress(PlaywrightError):  # a crashed page has no picture to give
                    shot(page, f"FAILED-{request.node.name}-{n}{m}")
        context.close()


@pytest.fixture
def page(context_for: Any) -> Any:
    return context_for().new_page()


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under tests/artifacts/screenshots/ and answer its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000, f"empty screenshot {path}"
    return path


@pytest.fixture(scope="session")
def axe_source() -> Path:
    if not AXE.exists():
        missing("axe-core not installed: run `npm ci` at the repository root")
    return AXE


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
