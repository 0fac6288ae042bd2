"""Status by text message (criterion 5): the customer texts Baton's number and gets a TwiML answer.

Every request is signed as Twilio signs it (``twilio.request_validator.RequestValidator``, through
the Twilio double) for the URL Baton validates against: its public base URL + ``/hooks/twilio/sms``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from notifications.models import Notification
from partners.models import Partner
from tests.conftest import ADMIN_TOKEN, World
from tests.support.twilio_double import TwilioDouble
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from tracker.refs import ALPHABET
from tracker.worker import Worker

PUBLIC = "http://baton.test"
HOOK = f"{PUBLIC}/hooks/twilio/sms"
ADA = "+14155550100"
ADA_CUSTOMER = {"name": "Ada Lovelace", "phone": ADA, "email": "ada@example.com", "locale": "en",
                "timezone": "America/New_York"}
GRACE = "+14155550199"
GRACE_CUSTOMER = {"name": "Grace Hopper", "phone": GRACE, "locale": "en", "timezone": "America/New_York"}
GRETE = "+4915112345678"
GRETE_CUSTOMER = {"name": "Grete Müller", "phone": GRETE, "locale": "de", "timezone": "Europe/Berlin"}
STRANGER = "+16175550123"
UA_HOOK = "https://hooks.ua.example/baton"


@pytest.fixture
def clock() -> FrozenClock:
    # Monday 2 November 2026, 10:00 in New York: texts to the customer are not held for the night.
    return FrozenClock(dt.datetime(2026, 11, 2, 15, 0, tzinfo=UTC))


@pytest.fixture
def settings(db: Any, twilio: TwilioDouble) -> Settings:
    return Settings(
        database_url=db.url, admin_token=ADMIN_TOKEN, public_base_url=PUBLIC, workers_in_process=False,
        **twilio.settings(),
        # Served too (BATON_ALLOWED_HOSTS), so that the Twilio signature, not the Host check, refuses staging's.
        allowed_hosts="127.0.0.1,localhost,staging.baton.test",
    )


def _sessionmaker(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


# ---------------------------------------------------------------- helpers


async def text(world: World, twilio: TwilioDouble, body: str, *, sender: str = ADA) -> httpx.Response:
    """``sender`` texts ``body`` to Baton's number: Twilio's signed webhook."""
    params, headers = twilio.inbound_sms(HOOK, sender, body)
    return await world.client.post("/hooks/twilio/sms", data=params, headers=headers)


def reply_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(response.content)
    assert root.tag == "Response"
    messages = root.findall("Message")
    assert len(messages) == 1, response.text
    return messages[0].text or ""


async def ask(world: World, twilio: TwilioDouble, body: str, *, sender: str = ADA) -> str:
    return reply_of(await text(world, twilio, body, sender=sender))


def token_of(case: dict[str, Any]) -> str:
    return case["status_url"].rsplit("/s/", 1)[1]


async def events(world: World, ref: str) -> list[dict[str, Any]]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}/events")
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def customer_messages(world: World, ref: str) -> list[dict[str, Any]]:
    return [e for e in await events(world, ref) if e["type"] == "customer.message"]


async def customer(world: World, ref: str) -> dict[str, Any]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}")
    assert response.status_code == 200, response.text
    return response.json()["customer"]


async def status_label(world: World, case: dict[str, Any]) -> str:
    """The status in the customer's own words (their locale)."""
    return (await world.client.get(f"/v1/status/{token_of(case)}")).json()["status_label"]


async def webhook_rows(world: World, kind: str) -> list[Notification]:
    async with _sessionmaker(world)() as session:
        query = (select(Notification).where(Notification.channel == "webhook", Notification.kind == kind)
                 .order_by(Notification.id))
        return list((await session.scalars(query)).all())


async def set_webhook_url(world: World, partner_id: str, url: str) -> None:
    async with _sessionmaker(world)() as session:
        partner = await session.get(Partner, partner_id)
        assert partner is not None
        partner.webhook_url = url
        await session.commit()


async def update(world: World, ref: str, **body: Any) -> None:
    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body=body)
    assert response.status_code == 201, response.text


def with_wrong_check_symbol(ref: str) -> str:
    check = ref[-1]
    return ref[:-1] + ALPHABET[(ALPHABET.index(check) + 1) % len(ALPHABET)]


async def everything(world: World, refs: list[str]) -> list[Any]:
    """What a refused request must not change: every event and both opt-out flags of every case."""
    state: list[Any] = []
    for ref in refs:
        state.append(await events(world, ref))
        owner = await customer(world, ref)
        state.append((owner["sms_opted_out"], owner["email_opted_out"]))
    return state


# ---------------------------------------------------------------- one open case


async def test_status_from_a_sender_with_one_open_case_gives_status_holder_and_link(
    world: World, twilio: TwilioDouble
) -> None:
    case = await world.open_case()
    await update(world, case["ref"], status="located", message="Your bag is in Frankfurt.")

    reply = await ask(world, twilio, "STATUS")

    assert case["ref"] in reply
    assert await status_label(world, case) in reply
    assert "Lufthansa" in reply
    assert case["status_url"] == f"{PUBLIC}/s/{token_of(case)}"
    assert case["status_url"] in reply
    assert await customer_messages(world, case["ref"]) == [], "asking for the status posts nothing"


@pytest.mark.parametrize("body", ["{ref}", "STATUS {ref}", "  {lower}  ", "{spaced}", "status {spaced}"])
async def test_a_reference_in_the_text_answers_with_that_cases_status(
    world: World, twilio: TwilioDouble, body: str
) -> None:
    case = await world.open_case()
    ref = case["ref"]
    message = body.format(ref=ref, lower=ref.lower(), spaced=ref.lower().replace("-", " "))

    reply = await ask(world, twilio, message)

    assert await status_label(world, case) in reply
    assert "Lufthansa" in reply and case["status_url"] in reply
    assert await customer_messages(world, ref) == []


# ---------------------------------------------------------------- several open cases


async def test_status_with_several_open_cases_lists_their_references_and_posts_nothing(
    world: World, twilio: TwilioDouble
) -> None:
    first = await world.open_case()
    second = await world.open_case(title="Second bag, LH401")

    reply = await ask(world, twilio, "status")

    assert first["ref"] in reply and second["ref"] in reply
    assert first["status_url"] not in reply and second["status_url"] not in reply
    for case in (first, second):
        assert await customer_messages(world, case["ref"]) == []


async def test_with_several_open_cases_a_reference_picks_one(world: World, twilio: TwilioDouble) -> None:
    first = await world.open_case()
    second = await world.open_case(title="Second bag, LH401")

    reply = await ask(world, twilio, second["ref"].lower())

    assert second["status_url"] in reply
    assert first["status_url"] not in reply


async def test_with_several_open_cases_a_reference_typed_with_a_space_picks_one(
    world: World, twilio: TwilioDouble
) -> None:
    first = await world.open_case()
    second = await world.open_case(title="Second bag, LH401")

    reply = await ask(world, twilio, f"status {second['ref'].lower().replace('-', ' ')}")

    assert second["status_url"] in reply and first["status_url"] not in reply
    assert await customer_messages(world, second["ref"]) == []


async def test_words_after_a_prefix_are_a_message_not_a_reference(world: World, twilio: TwilioDouble) -> None:
    case = await world.open_case()

    reply = await ask(world, twilio, "My bag arrived damaged")

    assert "passed your message on" in reply
    assert [m["message"] for m in await customer_messages(world, case["ref"])] == ["My bag arrived damaged"]


async def test_free_text_with_several_open_cases_asks_for_the_reference_and_posts_nothing(
    world: World, twilio: TwilioDouble
) -> None:
    first = await world.open_case()
    second = await world.open_case(title="Second bag, LH401")

    reply = await ask(world, twilio, "Any news about my bag?")

    assert first["ref"] in reply and second["ref"] in reply
    for case in (first, second):
        assert await customer_messages(world, case["ref"]) == []


# ---------------------------------------------------------------- references that are not the sender's


async def test_a_reference_with_a_wrong_check_character_is_answered_as_a_typo(
    world: World, twilio: TwilioDouble
) -> None:
    case = await world.open_case()
    typo = with_wrong_check_symbol(case["ref"])
    before = await events(world, case["ref"])

    reply = await ask(world, twilio, f"Status of {typo.lower()} please")

    assert f"{typo} does not look like a valid reference" in reply
    assert case["status_url"] not in reply
    assert await events(world, case["ref"]) == before


async def test_another_customers_reference_reveals_nothing_about_that_case(
    world: World, twilio: TwilioDouble
) -> None:
    mine = await world.open_case()
    theirs = await world.open_case(customer=GRACE_CUSTOMER, title="Grace's bag",
                                   parties=[{"partner": "fastcourier", "role": "courier", "responsible": True},
                                            {"partner": "ua", "role": "owner"}])
    posted = await world.as_partner("fastcourier", "POST", f"/v1/cases/{theirs['ref']}/events",
                                    json_body={"status": "out_for_delivery", "message": "Driver on the way."})
    assert posted.status_code == 201, posted.text
    before = await events(world, theirs["ref"])

    reply = await ask(world, twilio, theirs["ref"])

    assert "FastCourier" not in reply and "Driver" not in reply
    assert await status_label(world, theirs) not in reply
    assert token_of(theirs) not in reply
    assert mine["ref"] in reply, "the sender is reminded of their own case"
    assert await events(world, theirs["ref"]) == before


async def test_an_unknown_number_gets_a_generic_answer_that_reveals_nothing(
    world: World, twilio: TwilioDouble
) -> None:
    case = await world.open_case()
    label = await status_label(world, case)

    for body in ("STATUS", case["ref"], f"where is {case['ref']}?", "Hello, where is my bag?"):
        reply = await ask(world, twilio, body, sender=STRANGER)
        assert reply.startswith("Baton:")
        for secret in (case["ref"], token_of(case), "Lufthansa", "United", label, "Ada"):
            assert secret not in reply, f"{secret!r} told to a stranger who texted {body!r}"
    assert await customer_messages(world, case["ref"]) == []


# ---------------------------------------------------------------- free text


async def test_free_text_becomes_a_customer_message_and_reaches_the_owner(world: World, twilio: TwilioDouble) -> None:
    await set_webhook_url(world, "ua", UA_HOOK)
    case = await world.open_case()

    reply = await ask(world, twilio, "Please deliver it to the Hilton, room 512.")

    assert "passed your message on" in reply and case["ref"] in reply
    [message] = await customer_messages(world, case["ref"])
    assert message["message"] == "Please deliver it to the Hilton, room 512."
    assert message["via"] == "sms" and message["actor"] == "customer"
    seen_by_lh = (await world.as_partner("lh", "GET", f"/v1/cases/{case['ref']}/events")).json()["items"]
    assert any(e["type"] == "customer.message" for e in seen_by_lh)
    [hook] = await webhook_rows(world, "customer.message")
    assert (hook.partner_id, hook.recipient) == ("ua", UA_HOOK)
    assert hook.payload["data"]["message"] == "Please deliver it to the Hilton, room 512."
    assert hook.payload["data"]["via"] == "sms"


async def test_a_reference_followed_by_text_is_a_message_on_that_case(world: World, twilio: TwilioDouble) -> None:
    first = await world.open_case()
    second = await world.open_case(title="Second bag, LH401")

    reply = await ask(world, twilio, f"{second['ref']}: the tag number is 0016123999")

    assert "passed your message on" in reply and second["ref"] in reply
    assert [m["message"] for m in await customer_messages(world, second["ref"])] == ["the tag number is 0016123999"]
    assert await customer_messages(world, first["ref"]) == []


async def test_a_question_with_a_reference_is_answered_with_the_status_and_passed_on(
    world: World, twilio: TwilioDouble
) -> None:
    case = await world.open_case()
    label = await status_label(world, case)

    reply = await ask(world, twilio, f"Where is {case['ref']}?")

    assert "passed your message on" in reply
    assert label in reply and token_of(case) in reply, reply
    assert [m["message"] for m in await customer_messages(world, case["ref"])] == [f"Where is {case['ref']}?"]


# ---------------------------------------------------------------- STOP, START, HELP


async def test_stop_opts_every_case_of_the_number_out_and_the_worker_sends_no_more(
    world: World, twilio: TwilioDouble, worker: Worker
) -> None:
    first = await world.open_case()
    second = await world.open_case(title="Second bag, LH401")
    closed = await world.open_case(title="An older bag")
    assert (await world.as_admin("POST", f"/v1/cases/{closed['ref']}/close",
                                 json_body={"resolution": "Delivered."})).status_code == 200
    grace = await world.open_case(customer=GRACE_CUSTOMER)
    await worker.run_round()
    assert twilio.attempts > 0, "the opening texts went out"

    reply = await ask(world, twilio, "STOP")

    assert "START" in reply
    for case in (first, second, closed):
        assert (await customer(world, case["ref"]))["sms_opted_out"] is True
    assert (await customer(world, grace["ref"]))["sms_opted_out"] is False
    attempts = twilio.attempts
    await update(world, first["ref"], status="located", message="Found in Frankfurt.")
    world.clock.advance(minutes=15)
    await worker.run_round()
    assert twilio.attempts == attempts, "no SMS is attempted after STOP"

    reply = await ask(world, twilio, "start")

    assert "STOP" in reply
    for case in (first, second, closed):
        assert (await customer(world, case["ref"]))["sms_opted_out"] is False
    await update(world, first["ref"], status="in_transit", message="On LH400 tonight.")
    world.clock.advance(minutes=15)
    await worker.run_round()
    assert twilio.attempts > attempts, "texts flow again after START"
    assert any("LH400" in m["body"] and m["to"] == ADA for m in twilio.messages)


async def test_stop_from_an_unknown_number_changes_nobodys_case(world: World, twilio: TwilioDouble) -> None:
    case = await world.open_case()
    reply = await ask(world, twilio, "STOP", sender=STRANGER)
    assert "START" in reply
    assert (await customer(world, case["ref"]))["sms_opted_out"] is False


async def test_help_explains_what_to_text(world: World, twilio: TwilioDouble) -> None:
    case = await world.open_case()

    reply = await ask(world, twilio, "HELP")

    assert "STATUS" in reply and "STOP" in reply
    assert await customer_messages(world, case["ref"]) == []


# ---------------------------------------------------------------- forged requests


async def test_unsigned_or_wrongly_signed_requests_are_refused_and_change_nothing(
    world: World, twilio: TwilioDouble
) -> None:
    case = await world.open_case()
    refs = [case["ref"]]
    before = await everything(world, refs)
    validator = RequestValidator(twilio.auth_token)

    # No signature at all.
    params, _ = twilio.inbound_sms(HOOK, ADA, "STOP")
    unsigned = await world.client.post("/hooks/twilio/sms", data=params)
    # Signed for another URL.
    params, headers = twilio.inbound_sms("http://elsewhere.example/hooks/twilio/sms", ADA, "STOP")
    other_url = await world.client.post("/hooks/twilio/sms", data=params, headers=headers)
    # Signed for the status callback, replayed to the SMS hook.
    params, headers = twilio.inbound_sms(f"{PUBLIC}/hooks/twilio/status", ADA, "STOP")
    other_path = await world.client.post("/hooks/twilio/sms", data=params, headers=headers)
    # A genuine request whose Body was changed on the way.
    params, headers = twilio.inbound_sms(HOOK, ADA, "Where is my bag?")
    tampered = await world.client.post("/hooks/twilio/sms", data={**params, "Body": "STOP"}, headers=headers)
    # A genuine request whose sender was changed on the way.
    params, headers = twilio.inbound_sms(HOOK, STRANGER, "Hello from me")
    spoofed = await world.client.post("/hooks/twilio/sms", data={**params, "From": ADA}, headers=headers)
    # Signed with another account's token.
    params, _ = twilio.inbound_sms(HOOK, ADA, "STOP")
    forged = await world.client.post("/hooks/twilio/sms", data=params, headers={
        "X-Twilio-Signature": RequestValidator("not-the-auth-token").compute_signature(HOOK, params)})

    for name, response in [("unsigned", unsigned), ("other url", other_url), ("other path", other_path),
                           ("tampered", tampered), ("spoofed", spoofed), ("forged", forged)]:
        assert response.status_code == 403, f"{name}: {response.status_code} {response.text}"
    assert await everything(world, refs) == before

    # The same request, signed right, does what it says.
    params, _ = twilio.inbound_sms(HOOK, ADA, "STOP")
    signed = await world.client.post("/hooks/twilio/sms", data=params,
                                     headers={"X-Twilio-Signature": validator.compute_signature(HOOK, params)})
    assert signed.status_code == 200
    assert (await customer(world, case["ref"]))["sms_opted_out"] is True


async def test_a_signature_for_another_host_is_refused_whatever_host_the_request_names(
    world: World, twilio: TwilioDouble
) -> None:
    """Baton knows its public URL: a request signed for another deployment (say staging, on the same
    Twilio account) cannot be replayed to it by naming that deployment's host."""
    case = await world.open_case()
    before = await everything(world, [case["ref"]])
    staging = "http://staging.baton.test/hooks/twilio/sms"
    params, headers = twilio.inbound_sms(staging, ADA, "STOP")

    response = await world.client.post(staging, data=params, headers=headers)

    assert response.status_code == 403, response.text
    assert await everything(world, [case["ref"]]) == before


# ---------------------------------------------------------------- rate limit


async def test_more_than_thirty_texts_in_ten_minutes_from_one_number_get_429(
    world: World, twilio: TwilioDouble
) -> None:
    case = await world.open_case()
    for _ in range(30):
        assert case["ref"] in await ask(world, twilio, "STATUS")
        world.clock.advance(seconds=10)

    limited = await text(world, twilio, "STATUS")

    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) == 300  # the first text, 300 s ago, leaves the window in 300 s
    assert reply_of(await text(world, twilio, "STATUS", sender=GRACE)), "another number is not limited"
    world.clock.advance(seconds=300)
    assert case["ref"] in await ask(world, twilio, "STATUS")


# ---------------------------------------------------------------- language


async def test_a_german_customer_gets_german_replies(world: World, twilio: TwilioDouble) -> None:
    await set_webhook_url(world, "ua", UA_HOOK)
    case = await world.open_case(customer=GRETE_CUSTOMER)
    label = await status_label(world, case)
    assert label == "Gemeldet: wir suchen Ihr Gepäckstück"

    status = await ask(world, twilio, "STATUS", sender=GRETE)
    assert label in status and "Derzeit bei Lufthansa" in status and case["status_url"] in status

    typo = await ask(world, twilio, with_wrong_check_symbol(case["ref"]), sender=GRETE)
    assert "ist keine gültige Fallnummer" in typo

    passed = await ask(world, twilio, "Bitte ins Hotel liefern.", sender=GRETE)
    assert "wir haben Ihre Nachricht weitergegeben" in passed
    assert [m["message"] for m in await customer_messages(world, case["ref"])] == ["Bitte ins Hotel liefern."]

    assert "Antworten Sie STATUS" in await ask(world, twilio, "HILFE", sender=GRETE)
    assert "Sie erhalten keine SMS mehr" in await ask(world, twilio, "STOPP", sender=GRETE)
