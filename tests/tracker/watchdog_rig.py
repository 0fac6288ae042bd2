"""Shared helpers for the watchdog suites: the app's watchdog and dispatcher wired to real doubles.

    pytest_plugins = ["tests.tracker.watchdog_rig"]  # provides the `rig` fixture (smtp comes from conftest)

    async def test_...(world: World, rig: Rig) -> None:  # Rig imported under TYPE_CHECKING
        async with rig.receiver_for("lh") as lh:
            ...
            await rig.tick()

``rig.sweep()`` runs the watchdog at the frozen clock's instant; ``rig.tick()`` also drains the
outbox through a real WebhookReceiver and SMTPSink. Partners registered with
``rig.register_partner`` get their own Ed25519 key through the API, so ``world.as_partner``
signs for them too. Test modules take everything through the fixture and do not import this
module at run time, so pytest rewrites its asserts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from notifications.dispatcher import Dispatcher
from notifications.models import Notification
from notifications.transports import EmailTransport, WebhookTransport
from partners.models import Partner
from tests.conftest import PartnerKeys, World
from tests.support.smtp import SMTPSink
from tests.support.webhook_receiver import LOCAL_RECEIVERS, WebhookReceiver
from tracker.watchdog import SweepResult, Watchdog, WatchdogConfig

SUPERVISORS = "complaints@ua.example"


def runtime_of(world: World) -> Any:
    return world.client._transport.app.state.runtime  # type: ignore[attr-defined]


def sessionmaker_of(world: World) -> Any:
    return runtime_of(world).sessionmaker


class Rig:
    """The watchdog and dispatcher of the app under test, sending to real sockets."""

    def __init__(self, world: World, smtp: SMTPSink, *, webhook_timeout: float = 2.0) -> None:
        self.world = world
        self.sessionmaker = sessionmaker_of(world)
        self.caches = runtime_of(world).caches  # the app's own: a fresh app starts with empty caches
        self.watchdog = Watchdog(sessionmaker=self.sessionmaker, clock=world.clock,
                                 config=WatchdogConfig(supervisors_email=SUPERVISORS,
                                                       public_base_url="http://baton.test"))
        self.webhooks = WebhookTransport(timeout=webhook_timeout, allow_hosts=LOCAL_RECEIVERS)
        self.dispatcher = Dispatcher(
            sessionmaker=self.sessionmaker, clock=world.clock,
            transports={"webhook": self.webhooks,
                        "email": EmailTransport(url=smtp.url, sender="Baton <baton@baton.test>")},
        )

    async def sweep(self) -> SweepResult:
        return await self.watchdog.sweep()

    async def tick(self) -> SweepResult:
        result = await self.watchdog.sweep()
        await self.dispatcher.drain()
        return result

    # The helpers below, for tests that take everything through the fixture.

    async def register_partner(self, **spec: Any) -> dict[str, Any]:
        return await register_partner(self.world, **spec)

    def receiver_for(self, partner: str) -> AbstractAsyncContextManager[WebhookReceiver]:
        return receiver_for(self.world, partner)

    async def party(self, ref: str, partner: str) -> dict[str, Any]:
        return await party(self.world, ref, partner)

    async def events(self, ref: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in await events(self.world, ref) if kind is None or e["type"] == kind]

    async def notifications(self, **where: Any) -> list[Notification]:
        async with self.sessionmaker() as session:
            query = select(Notification).order_by(Notification.id)
            for key, value in where.items():
                query = query.where(getattr(Notification, key) == value)
            return list((await session.scalars(query)).all())


@pytest.fixture
async def rig(world: World, smtp: SMTPSink) -> AsyncIterator[Rig]:
    made = Rig(world, smtp)
    yield made
    await made.webhooks.close()


async def register_partner(world: World, **spec: Any) -> dict[str, Any]:
    """Register a partner as admin, with its own Ed25519 key; ``world.as_partner`` then signs for it."""
    response = await world.as_admin("POST", "/v1/partners", json_body={"kind": "other", **spec})
    assert response.status_code == 201, response.text
    keys = PartnerKeys(spec["id"], f"{spec['id']}-ed", Ed25519PrivateKey.generate(), "", "", world.clock)
    added = await world.as_admin("POST", f"/v1/partners/{spec['id']}/keys",
                                 json_body={"keyid": keys.keyid, "alg": "ed25519", "public_key": keys.public_pem})
    assert added.status_code == 201, added.text
    world.partners[spec["id"]] = keys
    return response.json()


async def set_webhook_url(world: World, partner: str, url: str) -> str:
    """Point a partner's webhooks at ``url``; returns its webhook secret."""
    async with sessionmaker_of(world)() as session:
        row = await session.get(Partner, partner)
        assert row is not None and row.webhook_secret
        row.webhook_url = url
        await session.commit()
        return row.webhook_secret


@asynccontextmanager
async def receiver_for(world: World, partner: str) -> AsyncIterator[WebhookReceiver]:
    """A partner's webhook endpoint on a real socket, registered as its webhook URL."""
    async with sessionmaker_of(world)() as session:
        secret = (await session.get(Partner, partner)).webhook_secret  # type: ignore[union-attr]
    with WebhookReceiver(secret) as receiver:
        await set_webhook_url(world, partner, receiver.url)
        yield receiver


async def party(world: World, ref: str, partner: str) -> dict[str, Any]:
    case = (await world.as_admin("GET", f"/v1/cases/{ref}")).json()
    return next(p for p in case["parties"] if p["partner"] == partner)


async def events(world: World, ref: str) -> list[dict[str, Any]]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}/events?limit=500")
    assert response.status_code == 200, response.text
    return response.json()["items"]
