"""Webhook URLs are https on public addresses; deliveries are fenced (SPEC.md, "Trust between organizations").

Registration refuses what points inside (loopback, private, link-local, CGNAT, multicast,
unique-local, mapped forms, localhost) and plain http, unless the host is in
``BATON_WEBHOOK_ALLOW_HOSTS``. At delivery the name is resolved through an injected resolver
(no DNS server needed), every answer is checked, and the connection goes to the checked address
while TLS and ``Host`` keep the name. Staff see failure classes, not socket errors. A partner
whose receiver keeps failing is paused by its own circuit breaker, and only it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from notifications.dispatcher import BREAKER_FIRST_PAUSE, BREAKER_THRESHOLD, Dispatcher
from notifications.models import Notification
from notifications.outbox import enqueue
from notifications.transports import WebhookTransport
from partners.models import Partner
from tests.conftest import ADMIN_TOKEN, BASE_URL, World
from tests.support.processes import free_port
from tests.support.raw_receivers import RawServer, answer, server_context, trickle
from tests.support.webhook_receiver import LOCAL_RECEIVERS, WebhookReceiver
from kernel.config import Settings

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CLASSES = {"timeout", "connection refused", "tls error", "http 500", "blocked address", "not https",
           "answer too large", "connection reset", "protocol error", "unknown host", "connection failed"}


def sessionmaker_of(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


async def webhook_secret(world: World, partner_id: str) -> str:
    async with sessionmaker_of(world)() as session:
        row = await session.get(Partner, partner_id)
        assert row is not None and row.webhook_secret
        return row.webhook_secret


@pytest.fixture
async def strict(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app as deployed: no host is exempt from the public-https rule."""
    from tracker.web.app import create_app

    app = create_app(settings.model_copy(update={"webhook_allow_hosts": ()}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
        yield http
    await app.state.engine.dispose()


def partner(url: str, pid: str = "acme") -> dict[str, Any]:
    return {"id": pid, "name": "Acme Handling", "webhook_url": url}


# ---------------------------------------------------------------- registration

REFUSED = {
    "metadata service": "https://169.254.169.254/latest/meta-data",
    "loopback": "https://127.0.0.1/hook",
    "private 10/8": "https://10.0.0.1/hook",
    "private 192.168/16": "https://192.168.1.1/hook",
    "private 172.16/12": "https://172.16.0.1/hook",
    "CGNAT 100.64/10": "https://100.64.0.1/hook",
    "IPv6 loopback": "https://[::1]/hook",
    "unique-local fc00::/7": "https://[fc00::1]/hook",
    "IPv4-mapped loopback": "https://[::ffff:127.0.0.1]/hook",
    "localhost": "https://localhost/hook",
    "a .localhost name": "https://hooks.localhost/hook",
    "loopback spelled as one number": "https://2130706433/hook",
    "multicast": "https://224.0.0.1/hook",
    "unspecified": "https://0.0.0.0/hook",
    "plain http": "http://public.example/hook",
}


@pytest.mark.parametrize("url", REFUSED.values(), ids=REFUSED.keys())
async def test_a_webhook_url_that_is_not_https_on_a_public_address_is_refused(
    strict: httpx.AsyncClient, url: str
) -> None:
    response = await strict.post("/v1/partners", json=partner(url), headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["webhook_url"]
    assert (await strict.get("/v1/partners/acme", headers=ADMIN)).status_code == 404  # nothing was created


async def test_an_https_url_on_a_public_name_is_registered(strict: httpx.AsyncClient) -> None:
    response = await strict.post("/v1/partners", json=partner("https://hooks.example.com/baton"), headers=ADMIN)
    assert response.status_code == 201, response.text
    assert response.json()["webhook_url"] == "https://hooks.example.com/baton"


async def test_allowed_hosts_are_exempt_plain_http_included_and_only_they(client: httpx.AsyncClient) -> None:
    # The test settings allow 127.0.0.1 and localhost (BATON_WEBHOOK_ALLOW_HOSTS), as for local development.
    for n, url in enumerate(["http://127.0.0.1:8080/hook", "http://localhost:8080/hook", "https://127.0.0.1/hook"]):
        response = await client.post("/v1/partners", json=partner(url, f"local-{n}"), headers=ADMIN)
        assert response.status_code == 201, response.text
    for url in ["http://public.example/hook", "https://10.0.0.1/hook", "https://[::1]/hook"]:
        response = await client.post("/v1/partners", json=partner(url, "other"), headers=ADMIN)
        assert response.status_code == 422, (url, response.text)


# ---------------------------------------------------------------- delivery


class Resolver:
    """Answers from a script, one list per call (the last repeats); records every question."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


async def queue_webhook(world: World, url: str, *, partner_id: str = "lh", n: int = 0) -> None:
    async with sessionmaker_of(world)() as session:
        await enqueue(session=session, channel="webhook", audience="partner", kind="party.late", recipient=url,
                      now=world.clock.now(), partner_id=partner_id, payload={"type": "party.late", "data": {"n": n}})
        await session.commit()


async def webhook_rows(world: World, partner_id: str | None = None) -> list[Notification]:
    query = select(Notification).where(Notification.channel == "webhook").order_by(Notification.id)
    if partner_id:
        query = query.where(Notification.partner_id == partner_id)
    async with sessionmaker_of(world)() as session:
        return list((await session.scalars(query)).all())


def lane(world: World, transport: WebhookTransport) -> Dispatcher:
    return Dispatcher(sessionmaker=sessionmaker_of(world), clock=world.clock, transports={"webhook": transport},
                      channels=("webhook",))


BLOCKED_AT_DELIVERY = {
    "a name resolving to loopback": ("localtest", Resolver(["127.0.0.1"])),
    "localhost itself, not allow-listed": ("localhost", Resolver(["127.0.0.1"])),
    "a name with one private answer among public ones": ("mixed.test", Resolver(["93.184.216.34", "10.1.2.3"])),
    "a name resolving to the metadata service": ("meta.test", Resolver(["169.254.169.254"])),
    "a name resolving to a mapped loopback": ("mapped.test", Resolver(["::ffff:127.0.0.1"])),
}


@pytest.mark.parametrize("name,resolver", BLOCKED_AT_DELIVERY.values(), ids=BLOCKED_AT_DELIVERY.keys())
async def test_a_name_that_resolves_inside_is_blocked_at_delivery_without_a_connection(
    world: World, name: str, resolver: Resolver
) -> None:
    resolver.calls.clear()
    with RawServer(answer(204)) as server:
        transport = WebhookTransport(timeout=2.0, resolver=resolver)  # as deployed: nothing allow-listed
        await queue_webhook(world, server.url(scheme="https", name=name))
        await lane(world, transport).drain()
        await transport.close()
    [row] = await webhook_rows(world)
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "blocked address")
    assert server.connections == []
    # One lookup, whose answer was checked; localhost is refused by name, before any lookup.
    assert len(resolver.calls) == (0 if name == "localhost" else 1)


async def test_plain_http_to_a_host_not_allow_listed_is_not_sent(world: World) -> None:
    resolver = Resolver(["93.184.216.34"])
    transport = WebhookTransport(timeout=2.0, resolver=resolver)
    await queue_webhook(world, "http://hooks.partner.test/baton")
    await lane(world, transport).drain()
    await transport.close()
    [row] = await webhook_rows(world)
    assert row.last_error == "not https" and resolver.calls == []


async def test_the_connection_goes_to_the_checked_address_and_tls_keeps_the_name(world: World) -> None:
    """DNS rebinding: the name answers a permitted address, then an inside one. Baton resolves
    once per delivery and connects to the answer it checked; the certificate is verified for
    the name, which is also the SNI and the Host header."""
    tls, certificate = server_context("partner.test")
    resolver = Resolver(["127.0.0.1"], ["127.0.0.2"])
    with RawServer(answer(204), tls=tls) as server, \
            RawServer(answer(204), host="127.0.0.2", port=server.port) as trap:
        transport = WebhookTransport(
            timeout=3.0, allow_hosts="127.0.0.1", resolver=resolver,
            transport=httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cadata=certificate)))
        url = f"https://partner.test:{server.port}/hook"
        await queue_webhook(world, url, n=1)
        await lane(world, transport).drain()

        [row] = await webhook_rows(world)
        assert (row.state, row.last_error) == ("delivered", None)
        assert resolver.calls == [("partner.test", server.port)]  # one lookup: checked and connected to
        [conn] = server.connections
        assert (conn.sni, conn.host) == ("partner.test", f"partner.test:{server.port}")
        assert trap.connections == []

        # The next delivery gets the other answer, which is not permitted: blocked, not connected to.
        await queue_webhook(world, url, n=2)
        await lane(world, transport).drain()
        await transport.close()
        assert [r.last_error for r in await webhook_rows(world)] == [None, "blocked address"]
        assert len(server.connections) == 1 and trap.connections == []


async def test_a_certificate_for_another_name_is_a_tls_error(world: World) -> None:
    tls, certificate = server_context("other.test")
    with RawServer(answer(204), tls=tls) as server:
        transport = WebhookTransport(
            timeout=3.0, allow_hosts="127.0.0.1", resolver=Resolver(["127.0.0.1"]),
            transport=httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cadata=certificate)))
        await queue_webhook(world, f"https://partner.test:{server.port}/hook")
        await lane(world, transport).drain()
        await transport.close()
    [row] = await webhook_rows(world)
    assert (row.state, row.last_error) == ("pending", "tls error")


async def test_staff_see_the_class_of_a_failure_never_the_network_error(world: World) -> None:
    refused_port = free_port()  # nobody listens there
    with RawServer(answer(500)) as failing, RawServer(trickle(every=1.0, total=10.0)) as slow:
        urls = {"connection refused": f"http://127.0.0.1:{refused_port}/hook", "http 500": failing.url(),
                "timeout": slow.url()}
        async with sessionmaker_of(world)() as session:
            await session.execute(update(Partner).where(Partner.id == "lh")
                                  .values(webhook_url=urls["connection refused"]))
            await session.commit()
        ref = (await world.open_case())["ref"]  # lh's case.opened goes to the refused port
        for n, key in enumerate(("http 500", "timeout")):
            await queue_webhook(world, urls[key], n=n)
        transport = WebhookTransport(timeout=0.5, allow_hosts=LOCAL_RECEIVERS)
        await lane(world, transport).drain()
        await transport.close()

    listed = await world.as_admin("GET", "/v1/webhook-deliveries")
    assert listed.status_code == 200, listed.text
    errors = sorted(item["last_error"] for item in listed.json()["items"])
    assert errors == ["connection refused", "http 500", "timeout"]
    for_case = await world.as_admin("GET", f"/v1/cases/{ref}/notifications")
    [hook] = [item for item in for_case.json()["items"] if item["channel"] == "webhook"]
    assert hook["last_error"] == "connection refused"
    for row in await webhook_rows(world):
        assert row.last_error in CLASSES
        assert str(refused_port) not in row.last_error and "127.0.0.1" not in row.last_error


async def test_each_webhook_outcome_is_recorded_as_it_completes(world: World) -> None:
    """One partner's receiver hangs; another's delivery is recorded meanwhile, not after the batch."""
    with RawServer(trickle(every=0.5, total=30.0)) as slow, WebhookReceiver(await webhook_secret(world, "ua")) as ua:
        await queue_webhook(world, slow.url(), partner_id="lh")
        await queue_webhook(world, ua.url, partner_id="ua")
        transport = WebhookTransport(timeout=3.0, allow_hosts=LOCAL_RECEIVERS)
        batch = asyncio.create_task(lane(world, transport).run_once())
        for _ in range(100):
            if [r.state for r in await webhook_rows(world, "ua")] == ["delivered"]:
                break
            await asyncio.sleep(0.02)  # polling the database for the outcome, no timer is awaited
        assert [r.state for r in await webhook_rows(world, "ua")] == ["delivered"]
        assert not batch.done() and [r.state for r in await webhook_rows(world, "lh")] == ["sending"]
        await batch
        await transport.close()
    assert [(r.state, r.last_error) for r in await webhook_rows(world, "lh")] == [("pending", "timeout")]


async def partner_breaker(world: World, partner_id: str) -> tuple[int, dt.datetime | None]:
    async with sessionmaker_of(world)() as session:
        row = await session.get(Partner, partner_id)
        assert row is not None
        return row.webhook_failures, row.webhook_paused_until


async def test_a_failing_partner_is_paused_alone_and_loses_nothing(world: World) -> None:
    secrets = {pid: await webhook_secret(world, pid) for pid in ("lh", "ua")}
    with WebhookReceiver(secrets["lh"]) as lh, WebhookReceiver(secrets["ua"]) as ua:
        transport = WebhookTransport(timeout=2.0, allow_hosts=LOCAL_RECEIVERS)
        dispatcher = lane(world, transport)
        lh.fail_with(500)
        for n in range(BREAKER_THRESHOLD):
            await queue_webhook(world, lh.url, partner_id="lh", n=n)
        await dispatcher.drain()
        failures, paused_until = await partner_breaker(world, "lh")
        assert failures == BREAKER_THRESHOLD and paused_until == world.clock.now() + BREAKER_FIRST_PAUSE

        # While lh is paused: its new delivery waits (no attempt counted), ua's goes out at once.
        world.clock.advance(seconds=10)  # the failed rows' first retry (5-6 s) is due as well
        await queue_webhook(world, lh.url, partner_id="lh", n=99)
        await queue_webhook(world, ua.url, partner_id="ua")
        await dispatcher.drain()
        assert len(lh.attempts) == BREAKER_THRESHOLD  # nothing more reached lh
        assert [r.state for r in await webhook_rows(world, "ua")] == ["delivered"] and len(ua.received) == 1
        lh_rows = await webhook_rows(world, "lh")
        assert {(r.state, r.next_attempt_at) for r in lh_rows} == {("pending", paused_until)}
        assert sorted(r.attempts for r in lh_rows) == [0] + [1] * BREAKER_THRESHOLD

        # The pause ends, lh has recovered: every row is delivered once, and the breaker closes.
        lh.recover()
        world.clock.set(paused_until)
        await dispatcher.drain()
        await transport.close()
    assert {r.state for r in await webhook_rows(world, "lh")} == {"delivered"}
    assert len(lh.received) == BREAKER_THRESHOLD + 1 and lh.duplicates() == {}
    assert await partner_breaker(world, "lh") == (0, None)
