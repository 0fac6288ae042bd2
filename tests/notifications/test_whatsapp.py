"""WhatsApp as a customer channel, through the real twilio client against the Twilio double.

The double enforces Twilio's 24-hour rule (free text only within 24 hours after the customer's
last WhatsApp message, else error 63016) on the test's clock (``twilio.clock``), so a message the
app sends as free text outside the window fails here as it would at Twilio.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from xml.etree import ElementTree

import pytest
from sqlalchemy import select

from notifications.models import Notification
from tests.conftest import ADMIN_TOKEN, World, worker_for
from tests.support.twilio_double import TwilioDouble
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from tracker.customer import whatsapp_template
from tracker.worker import Worker

PUBLIC = "http://baton.test"
HOOK = f"{PUBLIC}/hooks/twilio/sms"
PHONE = "+14155550100"
WHATSAPP = f"whatsapp:{PHONE}"
NEW_YORK = dt.timezone(dt.timedelta(hours=-5))  # EST on these dates
COALESCE = dt.timedelta(minutes=10)
TEMPLATES = {"opened": {"en": "HXopened_en"}, "update": {"en": "HXupdate_en", "de": "HXupdate_de"}}


@pytest.fixture
def clock() -> FrozenClock:
    # Monday 2 November 2026, 10:00 in New York: daytime for the customer.
    return FrozenClock(dt.datetime(2026, 11, 2, 15, 0, tzinfo=UTC))


@pytest.fixture
def settings(db: Any, twilio: TwilioDouble, clock: FrozenClock) -> Settings:
    twilio.clock = clock.now  # the double's 24-hour window runs on the test's clock
    return Settings(
        database_url=db.url, admin_token=ADMIN_TOKEN, public_base_url=PUBLIC, workers_in_process=False,
        **twilio.settings(), **twilio.whatsapp_settings(), whatsapp_templates=TEMPLATES,
    )


async def _open(world: World, channels: list[str], **customer: Any) -> dict[str, Any]:
    body = {"name": "Ada Lovelace", "phone": PHONE, "email": "ada@example.com", "locale": "en",
            "timezone": "America/New_York", "channels": channels, **customer}
    return await world.open_case(customer=body)


async def _rows(world: World, channel: str | None = None) -> list[Notification]:
    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        query = select(Notification).where(Notification.audience == "customer").order_by(Notification.id)
        if channel:
            query = query.where(Notification.channel == channel)
        return list((await session.scalars(query)).all())


async def _update(world: World, ref: str, message: str) -> None:
    response = await world.as_admin("POST", f"/v1/cases/{ref}/events",
                                    json_body={"message": message, "visibility": "public"})
    assert response.status_code == 201, response.text


async def _write(world: World, twilio: TwilioDouble, body: str) -> str:
    """The customer writes ``body`` over WhatsApp: Twilio's signed webhook; the TwiML answer's text."""
    params, headers = twilio.inbound_sms(HOOK, WHATSAPP, body)
    assert params["To"] == f"whatsapp:{twilio.phone_number}"
    response = await world.client.post("/hooks/twilio/sms", data=params, headers=headers)
    assert response.status_code == 200, response.text
    [message] = ElementTree.fromstring(response.content).findall("Message")
    # No "to": Twilio answers the sender on the channel the message came by, here WhatsApp.
    assert "to" not in message.attrib
    return message.text or ""


async def _customer(world: World, ref: str) -> dict[str, Any]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}")
    assert response.status_code == 200, response.text
    return response.json()["customer"]


async def _label(world: World, case: dict[str, Any]) -> str:
    token = case["status_url"].rsplit("/s/", 1)[1]
    return (await world.client.get(f"/v1/status/{token}")).json()["status_label"]


def _whatsapp(twilio: TwilioDouble) -> list[Any]:
    return [m for m in twilio.messages if m["to"] == WHATSAPP]


def _sms(twilio: TwilioDouble) -> list[Any]:
    return [m for m in twilio.messages if m["to"] == PHONE]


# ---------------------------------------------------------------- the window and templates


async def test_opening_message_is_business_initiated_so_it_goes_to_whatsapp_as_the_opened_template(
    world: World, worker: Worker, twilio: TwilioDouble
) -> None:
    case = await _open(world, ["whatsapp"])
    await worker.dispatcher.drain()

    [message] = twilio.messages
    assert message["to"] == WHATSAPP and message["from"] == f"whatsapp:{twilio.phone_number}"
    assert message["content_sid"] == "HXopened_en" and message["body"] == ""
    assert json.loads(message["content_variables"]) == {
        "1": case["ref"], "2": await _label(world, case), "3": case["status_url"]}
    [row] = await _rows(world)
    assert (row.channel, row.state, row.recipient) == ("whatsapp", "sent", WHATSAPP)


async def test_after_the_customer_wrote_updates_are_free_text_for_24_hours_then_the_template(
    world: World, worker: Worker, twilio: TwilioDouble
) -> None:
    case = await _open(world, ["whatsapp"])
    await worker.dispatcher.drain()
    assert case["ref"] in await _write(world, twilio, "STATUS")

    world.clock.advance(dt.timedelta(hours=23, minutes=59))  # 09:59 the next morning in New York
    await _update(world, case["ref"], "Your bag is in Frankfurt.")
    await worker.dispatcher.drain()
    free = _whatsapp(twilio)[-1]
    assert free["content_sid"] is None and "Your bag is in Frankfurt." in free["body"]

    world.clock.advance(dt.timedelta(hours=1))  # 24 hours and more since the customer wrote
    await _update(world, case["ref"], "Your bag is on UA123.")
    world.clock.advance(COALESCE)
    await worker.dispatcher.drain()
    template = _whatsapp(twilio)[-1]
    assert template["content_sid"] == "HXupdate_en" and template["body"] == ""
    assert len(_whatsapp(twilio)) == 3 and _sms(twilio) == []
    assert twilio.rejected == 0, "the double's 24-hour rule refused nothing the app sent"


async def test_without_a_template_a_message_outside_the_window_goes_by_sms(
    world: World, settings: Settings, twilio: TwilioDouble
) -> None:
    worker = worker_for(world, settings.model_copy(update={"whatsapp_templates": {}}))
    try:
        case = await _open(world, ["whatsapp"])
        await worker.dispatcher.drain()
    finally:
        await worker.close()
    assert _whatsapp(twilio) == []
    [sms] = _sms(twilio)
    assert case["ref"] in sms["body"] and case["status_url"] in sms["body"]
    whatsapp, fallback = await _rows(world)
    assert whatsapp.state == "suppressed" and "no template" in (whatsapp.last_error or "")
    assert (fallback.channel, fallback.state, fallback.kind) == ("sms", "sent", whatsapp.kind)
    assert fallback.payload["fallback_for"] == whatsapp.id
    assert fallback.payload["triggers"] == whatsapp.payload["triggers"]


def test_a_template_is_chosen_by_kind_then_update_and_by_locale_through_its_fallbacks(settings: Settings) -> None:
    assert whatsapp_template(settings, "opened", "en") == "HXopened_en"
    assert whatsapp_template(settings, "escalation", "de-AT") == "HXupdate_de"
    assert whatsapp_template(settings, "opened", "de") == "HXopened_en"  # no German "opened": English
    assert whatsapp_template(settings.model_copy(update={"whatsapp_templates": {}}), "update", "en") is None


def test_the_double_refuses_free_text_outside_the_window_with_63016(twilio: TwilioDouble) -> None:
    from tests.support.twilio_double import twilio_client_for
    from twilio.base.exceptions import TwilioRestException

    client = twilio_client_for(twilio)
    sender = twilio.whatsapp_settings()["twilio_whatsapp_from"]
    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(to=WHATSAPP, from_=sender, body="Hello")
    assert (refused.value.status, refused.value.code) == (400, 63016)
    sent = client.messages.create(to=WHATSAPP, from_=sender, content_sid="HX1", content_variables='{"1": "x"}')
    assert sent.status == "queued"
    twilio.customer_wrote(PHONE)
    assert client.messages.create(to=WHATSAPP, from_=sender, body="Hello").body == "Hello"
    with pytest.raises(TwilioRestException) as mixed:
        client.messages.create(to=WHATSAPP, from_=twilio.phone_number, body="Hello")
    assert mixed.value.code == 21910


# ---------------------------------------------------------------- inbound


async def test_status_over_whatsapp_is_answered_over_whatsapp_and_opens_the_window(
    world: World, worker: Worker, twilio: TwilioDouble
) -> None:
    case = await _open(world, ["whatsapp", "sms"])
    await _update(world, case["ref"], "Your bag is in Frankfurt.")

    reply = await _write(world, twilio, "STATUS")
    assert case["ref"] in reply and case["status_url"] in reply and await _label(world, case) in reply

    await worker.dispatcher.drain()
    [whatsapp] = _whatsapp(twilio)
    assert whatsapp["content_sid"] is None, "inside the window the opening message is free text"
    assert case["ref"] in whatsapp["body"]


async def test_stop_over_whatsapp_stops_whatsapp_only_and_start_restores_it(
    world: World, worker: Worker, twilio: TwilioDouble
) -> None:
    case = await _open(world, ["whatsapp", "sms"])
    await worker.dispatcher.drain()
    assert len(_whatsapp(twilio)) == 1 and len(_sms(twilio)) == 1

    assert "WhatsApp" in await _write(world, twilio, "STOP")
    customer = await _customer(world, case["ref"])
    assert customer["whatsapp_opted_out"] is True and customer["sms_opted_out"] is False

    world.clock.advance(dt.timedelta(hours=1))
    await _update(world, case["ref"], "Your bag is in Frankfurt.")
    await worker.dispatcher.drain()
    assert len(_whatsapp(twilio)) == 1, "no WhatsApp after STOP"
    assert "Your bag is in Frankfurt." in _sms(twilio)[-1]["body"]

    assert "WhatsApp" in await _write(world, twilio, "START")
    assert (await _customer(world, case["ref"]))["whatsapp_opted_out"] is False
    world.clock.advance(dt.timedelta(hours=1))
    await _update(world, case["ref"], "Your bag is on UA123.")
    await worker.dispatcher.drain()
    assert "Your bag is on UA123." in _whatsapp(twilio)[-1]["body"]


# ---------------------------------------------------------------- failures and callbacks


async def test_whatsapp_failing_for_good_falls_back_to_sms_then_email_each_once(
    world: World, worker: Worker, twilio: TwilioDouble
) -> None:
    case = await _open(world, ["whatsapp"])
    twilio.fail_next(1, code=21211)  # WhatsApp: not a valid number (400, permanent)
    await worker.dispatcher.drain()
    assert _whatsapp(twilio) == []
    [sms] = _sms(twilio)
    assert case["ref"] in sms["body"]
    whatsapp, fallback = await _rows(world)
    assert (whatsapp.state, fallback.channel, fallback.state) == ("failed", "sms", "sent")

    world.clock.advance(dt.timedelta(hours=1))
    await _update(world, case["ref"], "Your bag is in Frankfurt.")
    twilio.fail_next(2, code=21211)  # WhatsApp and the SMS standing in for it
    await worker.dispatcher.drain()
    rows = await _rows(world)
    assert [(r.channel, r.state) for r in rows[2:]] == [("whatsapp", "failed"), ("sms", "failed"),
                                                      ("email", "logged")]
    assert rows[-1].recipient == "ada@example.com"
    assert rows[-1].payload["fallback_tried"] == ["sms", "whatsapp"]


async def test_stop_known_to_twilio_opts_out_of_whatsapp_and_the_message_goes_by_sms(
    world: World, worker: Worker, twilio: TwilioDouble
) -> None:
    case = await _open(world, ["whatsapp"])
    twilio.opt_out(WHATSAPP)  # 21610 for WhatsApp only
    await worker.dispatcher.drain()
    assert len(_sms(twilio)) == 1 and _whatsapp(twilio) == []
    customer = await _customer(world, case["ref"])
    assert customer["whatsapp_opted_out"] is True and customer["sms_opted_out"] is False


async def test_delivery_callbacks_update_whatsapp_rows_and_a_late_failure_falls_back_to_sms(
    world: World, worker: Worker, twilio: TwilioDouble
) -> None:
    case = await _open(world, ["whatsapp"])
    await worker.dispatcher.drain()
    [message] = twilio.messages
    assert message["status_callback"] == f"{PUBLIC}/hooks/twilio/status"
    response = await twilio.adeliver(message["sid"], "read", client=world.client)
    assert response.status_code == 204
    [row] = await _rows(world)
    assert row.state == "delivered" and row.delivered_at == world.clock.now()

    world.clock.advance(dt.timedelta(hours=1))
    await _update(world, case["ref"], "Your bag is in Frankfurt.")
    await worker.dispatcher.drain()
    second = twilio.messages[-1]
    response = await twilio.adeliver(second["sid"], "undelivered", error_code=63016, client=world.client)
    assert response.status_code == 204
    rows = await _rows(world)
    assert [(r.channel, r.state) for r in rows] == [("whatsapp", "delivered"), ("whatsapp", "failed"),
                                                   ("sms", "pending")]
    await worker.dispatcher.drain()
    assert "Your bag is in Frankfurt." in _sms(twilio)[-1]["body"]


# ---------------------------------------------------------------- quiet hours and the cap, both channels


async def test_quiet_hours_hold_whatsapp_and_sms_alike(world: World, worker: Worker, twilio: TwilioDouble) -> None:
    world.clock.set(dt.datetime(2026, 11, 2, 22, 0, tzinfo=NEW_YORK).astimezone(UTC))
    await _open(world, ["whatsapp", "sms"])
    await worker.dispatcher.drain()
    assert twilio.messages == []
    morning = dt.datetime(2026, 11, 3, 8, 0, tzinfo=NEW_YORK).astimezone(UTC)
    rows = await _rows(world)
    assert [(r.channel, r.state, r.next_attempt_at) for r in rows] == [
        ("whatsapp", "pending", morning), ("sms", "pending", morning)]
    assert all("quiet hours" in (r.last_error or "") for r in rows)

    world.clock.set(morning)
    await worker.dispatcher.drain()
    assert len(_whatsapp(twilio)) == 1 and len(_sms(twilio)) == 1


async def test_the_daily_cap_counts_whatsapp_and_sms_together(
    world: World, settings: Settings, twilio: TwilioDouble
) -> None:
    worker = worker_for(world, settings.model_copy(update={"sms_daily_cap": 3}))
    try:
        case = await _open(world, ["whatsapp", "sms"])
        await worker.dispatcher.drain()
        assert len(twilio.messages) == 2  # the opening template and the opening SMS

        await _update(world, case["ref"], "Your bag is in Frankfurt.")
        world.clock.advance(COALESCE)
        await worker.dispatcher.drain()
        assert len(twilio.messages) == 3, "one more of either channel, then the cap"
        waiting = [r for r in await _rows(world) if r.state == "pending"]
        assert len(waiting) == 1 and "daily SMS cap" in (waiting[0].last_error or "")
        morning = dt.datetime(2026, 11, 3, 8, 0, tzinfo=NEW_YORK).astimezone(UTC)
        assert waiting[0].next_attempt_at == morning

        world.clock.set(morning)
        await worker.dispatcher.drain()
        assert len(twilio.messages) == 4
    finally:
        await worker.close()


def test_whatsapp_templates_are_read_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_WHATSAPP_TEMPLATES", json.dumps(TEMPLATES))
    monkeypatch.setenv("BATON_TWILIO_WHATSAPP_FROM", "whatsapp:+14155238886")
    settings = Settings()
    assert settings.whatsapp_templates == TEMPLATES
    assert settings.twilio_whatsapp_from == "whatsapp:+14155238886"


async def test_an_unknown_channel_in_the_customer_body_is_a_problem_not_a_500(world: World) -> None:
    response = await world.as_admin("POST", "/v1/cases", json_body={
        "type": "baggage", "title": "Delayed bag", "owner": "ua",
        "customer": {"phone": PHONE, "channels": ["telegram"]},
        "parties": [{"partner": "ua", "role": "owner"}]})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 422
