"""The customer is told before they ask: the lost-bag story through the real twilio client and SMTP."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from notifications.models import Notification
from tests.conftest import ADMIN_TOKEN, World
from tests.support.smtp import SMTPSink
from tests.support.twilio_double import TwilioDouble
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from tracker.worker import Worker

PHONE = "+14155550100"


def _to_customer(twilio: TwilioDouble) -> list[dict]:
    """The texts to the customer (a late partner's ops phone gets its own, with its update link)."""
    return [m for m in twilio.messages if m["to"] == PHONE]
PUBLIC = "http://baton.test"


@pytest.fixture
def clock() -> FrozenClock:
    # Monday 2 November 2026, 10:00 in New York (EST, UTC-5): the customer's daytime.
    return FrozenClock(dt.datetime(2026, 11, 2, 15, 0, tzinfo=UTC))


@pytest.fixture
def settings(db: Any, twilio: TwilioDouble, smtp: SMTPSink) -> Settings:
    return Settings(
        database_url=db.url, admin_token=ADMIN_TOKEN, public_base_url=PUBLIC, workers_in_process=False,
        **twilio.settings(), smtp_url=smtp.url, email_from="Baton <baton@baton.test>",
    )


async def _rows(world: World, **where: Any) -> list[Notification]:
    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        query = select(Notification).where(Notification.audience == "customer").order_by(Notification.id)
        for key, value in where.items():
            query = query.where(getattr(Notification, key) == value)
        return list((await session.scalars(query)).all())


async def _update(world: World, ref: str, **body: Any) -> None:
    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body=body)
    assert response.status_code == 201, response.text


async def test_lost_bag_story_tells_the_customer_once_per_change_and_never_at_night(
    world: World, worker: Worker, twilio: TwilioDouble, smtp: SMTPSink
) -> None:
    case = await world.open_case()
    ref, link = case["ref"], case["status_url"]
    await worker.run_round()
    assert [m["to"] for m in twilio.messages] == [PHONE]
    assert link in _to_customer(twilio)[0]["body"]
    assert _to_customer(twilio)[0]["status_callback"] == f"{PUBLIC}/hooks/twilio/status"
    smtp.wait_for(1)
    assert [m["To"] for m in smtp.messages] == ["ada@example.com"]
    assert link in smtp.messages[0].get_body(("plain",)).get_content()

    # located -> one SMS, after the coalescing window
    await _update(world, ref, status="located", message="Your bag is in Frankfurt.")
    await worker.run_round()
    assert len(_to_customer(twilio)) == 1, "held for the coalescing window"
    world.clock.advance(minutes=10)
    await worker.run_round()
    assert len(_to_customer(twilio)) == 2
    assert "Frankfurt" in _to_customer(twilio)[1]["body"]

    # after an hour of quiet an update goes at once (leading edge); the next two, within the
    # window after it, merge into one SMS with the latest state, sent when the window closes
    world.clock.advance(hours=1)
    await _update(world, ref, status="in_transit", message="On LH400 tonight.")
    await worker.run_round()
    assert len(_to_customer(twilio)) == 3
    assert "On LH400 tonight" in _to_customer(twilio)[2]["body"]
    world.clock.advance(minutes=2)
    await _update(world, ref, message="Loaded in container AKE1234.")
    world.clock.advance(minutes=2)
    await _update(world, ref, message="Departed FRA.")
    world.clock.advance(minutes=2)
    await _update(world, ref, status="arrived", message="Landed at JFK.")
    world.clock.advance(minutes=3, seconds=59)
    await worker.run_round()
    assert len(_to_customer(twilio)) == 3, "held until the window after the last SMS closes"
    world.clock.advance(seconds=1)
    await worker.run_round()
    assert len(_to_customer(twilio)) == 4
    assert "Landed at JFK" in _to_customer(twilio)[3]["body"], "three updates, one SMS with the latest"

    # out for delivery, within the window after that SMS, is never held
    world.clock.advance(minutes=1)
    await _update(world, ref, status="out_for_delivery", message="The driver is on the way.")
    await worker.run_round()
    assert len(_to_customer(twilio)) == 5 and "driver is on the way" in _to_customer(twilio)[4]["body"]

    # an update at 23:00 in New York waits for 08:00 (out for delivery is never held, quiet hours aside)
    world.clock.set(dt.datetime(2026, 11, 3, 4, 0, tzinfo=UTC))  # 23:00 EST on 2 November
    await _update(world, ref, status="out_for_delivery", message="With the courier tomorrow morning.")
    world.clock.advance(minutes=10)
    await worker.run_round()
    assert len(_to_customer(twilio)) == 5, "no SMS at night"
    world.clock.set(dt.datetime(2026, 11, 3, 12, 59, tzinfo=UTC))  # 07:59 in New York
    await worker.run_round()
    assert len(_to_customer(twilio)) == 5
    world.clock.set(dt.datetime(2026, 11, 3, 13, 0, tzinfo=UTC))  # 08:00
    await worker.run_round()
    assert len(_to_customer(twilio)) == 6
    assert "courier" in _to_customer(twilio)[5]["body"]
    assert twilio.duplicates() == {}


async def test_provider_down_for_ten_minutes_sends_once_after_recovery(
    world: World, worker: Worker, twilio: TwilioDouble
) -> None:
    twilio.fail_with(500)
    await world.open_case()
    for _ in range(10):  # ten simulated minutes of 500s, retried on the backoff schedule
        await worker.run_round()
        world.clock.advance(minutes=1)
    assert twilio.messages == []
    [row] = await _rows(world, channel="sms")
    assert row.state == "pending" and row.attempts >= 2

    twilio.recover()
    world.clock.advance(hours=1)
    await worker.run_round()
    assert len(twilio.messages) == 1
    [row] = await _rows(world, channel="sms")
    assert row.state == "sent" and row.provider_id == twilio.messages[0]["sid"]


async def test_opted_out_number_is_marked_and_email_carries_on_without_retry(
    world: World, worker: Worker, twilio: TwilioDouble, smtp: SMTPSink
) -> None:
    twilio.opt_out(PHONE)
    case = await world.open_case(customer={"name": "Ada Lovelace", "phone": PHONE, "email": "ada@example.com",
                                           "locale": "en", "timezone": "America/New_York", "channels": ["sms"]})
    await worker.run_round()
    [sms] = await _rows(world, channel="sms")
    assert sms.state == "failed" and "21610" in (sms.last_error or "")
    [email] = await _rows(world, channel="email")  # the fallback
    assert email.state == "sent"
    smtp.wait_for(1)
    detail = (await world.as_admin("GET", f"/v1/cases/{case['ref']}")).json()
    assert detail["customer"]["sms_opted_out"] is True

    attempts = twilio.attempts
    world.clock.advance(hours=2)
    await _update(world, case["ref"], status="located", message="Found it.")
    world.clock.advance(minutes=10)
    await worker.run_round()
    assert twilio.attempts == attempts, "no SMS is attempted after an opt-out"


async def test_signed_status_callback_marks_delivered_and_unsigned_is_refused(
    world: World, worker: Worker, twilio: TwilioDouble
) -> None:
    await world.open_case()
    await worker.run_round()
    [message] = twilio.messages

    unsigned = await world.client.post("/hooks/twilio/status",
                                       data={"MessageSid": message["sid"], "MessageStatus": "delivered"})
    assert unsigned.status_code == 403
    [row] = await _rows(world, channel="sms")
    assert row.state == "sent"

    response = await twilio.adeliver(message["sid"], "delivered", client=world.client)
    assert response.status_code == 204
    [row] = await _rows(world, channel="sms")
    assert row.state == "delivered" and row.delivered_at is not None


async def test_without_providers_notifications_are_logged_and_visible(world: World, settings: Settings) -> None:
    offline = settings.model_copy(update={"twilio_account_sid": None, "smtp_url": None})
    app = world.client._transport.app  # type: ignore[attr-defined]
    worker = Worker(sessionmaker=app.state.runtime.sessionmaker, clock=world.clock, settings=offline)
    case = await world.open_case()
    await worker.run_round()
    await worker.close()
    listed = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/notifications")).json()["items"]
    customer = [n for n in listed if n["audience"] == "customer"]
    assert {n["channel"] for n in customer} == {"sms", "email"}
    assert all(n["state"] == "logged" for n in customer)
    assert all(case["status_url"] in (n["body_text"] or "") for n in customer)


async def test_internal_notes_never_reach_the_customer(world: World, worker: Worker, twilio: TwilioDouble,
                                                       smtp: SMTPSink) -> None:
    case = await world.open_case()
    await worker.run_round()
    await _update(world, case["ref"], status="located", message="Found in FRA.",
                  internal_note="SECRET-NOTE handler blamed")
    world.clock.advance(minutes=10)
    await worker.run_round()
    smtp.wait_for(2)
    texts = [m["body"] for m in twilio.messages] + [m.get_body(("plain",)).get_content() for m in smtp.messages]
    assert any("Found in FRA" in t for t in texts)
    assert not any("SECRET-NOTE" in t for t in texts)

