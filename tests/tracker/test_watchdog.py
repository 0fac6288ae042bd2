"""The watchdog catches the silent partner, chases it, escalates it, and lets it back on track."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from notifications.dispatcher import Dispatcher
from notifications.models import Notification
from notifications.transports import EmailTransport, WebhookTransport
from tests.conftest import World
from tests.support.smtp import SMTPSink
from tests.support.webhook_receiver import WebhookReceiver
from tracker.watchdog import Watchdog, WatchdogConfig, forget_partner_rules

SUPERVISORS = "complaints@ua.example"


@pytest.fixture
def smtp() -> Iterator[SMTPSink]:
    with SMTPSink() as sink:
        yield sink


class Rig:
    """The watchdog and dispatcher of the app under test, sending to a real receiver and SMTP server."""

    def __init__(self, world: World, smtp: SMTPSink) -> None:
        app = world.client._transport.app  # type: ignore[attr-defined]
        self.world = world
        self.sessionmaker = app.state.runtime.sessionmaker
        self.watchdog = Watchdog(sessionmaker=self.sessionmaker, clock=world.clock,
                                 config=WatchdogConfig(supervisors_email=SUPERVISORS))
        self.dispatcher = Dispatcher(
            sessionmaker=self.sessionmaker, clock=world.clock,
            transports={"webhook": WebhookTransport(timeout=2.0),
                        "email": EmailTransport(url=smtp.url, sender="Baton <baton@baton.test>")},
        )

    async def tick(self) -> Any:
        result = await self.watchdog.sweep()
        await self.dispatcher.drain()
        return result

    async def notifications(self, **where: Any) -> list[Notification]:
        async with self.sessionmaker() as session:
            query = select(Notification).order_by(Notification.id)
            for key, value in where.items():
                query = query.where(getattr(Notification, key) == value)
            return list((await session.scalars(query)).all())


@pytest.fixture
async def rig(world: World, smtp: SMTPSink) -> AsyncIterator[Rig]:
    forget_partner_rules()
    yield Rig(world, smtp)


@pytest.fixture
async def lh_receiver(world: World) -> AsyncIterator[WebhookReceiver]:
    """Lufthansa's webhook endpoint, registered with Lufthansa's webhook secret."""
    with WebhookReceiver(await _webhook_secret(world, "lh")) as receiver:
        await _set_webhook_url(world, "lh", receiver.url)
        yield receiver


async def _webhook_secret(world: World, partner: str) -> str:
    from partners.models import Partner

    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        return (await session.get(Partner, partner)).webhook_secret  # type: ignore[union-attr]


async def _set_webhook_url(world: World, partner: str, url: str) -> None:
    from partners.models import Partner

    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        (await session.get(Partner, partner)).webhook_url = url  # type: ignore[union-attr]
        await session.commit()


async def test_silent_partner_is_late_then_escalated_then_back_on_track(
    world: World, rig: Rig, smtp: SMTPSink, lh_receiver: WebhookReceiver
) -> None:
    case = await world.open_case()
    ref = case["ref"]
    await rig.tick()  # case.opened and party notices go out first
    lh_receiver.clear()
    smtp.clear()

    world.clock.advance(hours=6, minutes=1)
    result = await rig.tick()
    assert result.late == 1
    lh = next(p for p in (await world.as_admin("GET", f"/v1/cases/{ref}")).json()["parties"] if p["partner"] == "lh")
    assert lh["state"] == "late"
    late_hooks = [r for r in lh_receiver.received if r.payload["type"] == "party.late"]
    assert len(late_hooks) == 1 and late_hooks[0].verified
    assert late_hooks[0].payload["data"]["case"]["ref"] == ref
    assert len(smtp.messages) == 1
    email = smtp.messages[0]
    assert email["To"] == "baggage-ops@lh.example" and ref in email["Subject"]
    assert {part.get_content_type() for part in email.walk()} >= {"text/plain", "text/html"}

    again = await rig.tick()  # the same instant: nothing more happens
    assert again.total() == 0
    assert len(lh_receiver.received) == 1 and len(smtp.messages) == 1

    world.clock.advance(hours=6)  # +12h01
    result = await rig.tick()
    assert result.escalated == 1
    queue = (await world.as_admin("GET", "/v1/overdue")).json()["items"]
    assert queue[0]["case"] == ref and queue[0]["partner"] == "lh" and queue[0]["state"] == "escalated"
    assert [r.payload["type"] for r in lh_receiver.received] == ["party.late", "party.escalated"]
    assert [m["To"] for m in smtp.messages] == ["baggage-ops@lh.example", SUPERVISORS]

    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events",
                                      json_body={"status": "located", "message": "Found in FRA"})
    assert response.status_code == 201
    assert (await world.as_admin("GET", "/v1/overdue")).json()["items"] == []
    events = (await world.as_admin("GET", f"/v1/cases/{ref}/events")).json()["items"]
    assert [e["type"] for e in events][-4:] == ["party.late", "party.escalated", "update", "party.back_on_track"]
    lh = next(p for p in (await world.as_admin("GET", f"/v1/cases/{ref}")).json()["parties"] if p["partner"] == "lh")
    assert lh["state"] == "on_track"
