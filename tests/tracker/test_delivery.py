"""Delivery to the customer's door (SPEC "Delivery to the customer's door"), with the clock moved.

The customer asks from the status page (or staff and the owner through the API), the courier party
accepts and becomes responsible, out for delivery gives the customer a PIN sent at once, and the
proof is checked (a wrong PIN or tag changes nothing) and recorded with its digests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import httpx
from sqlalchemy import func, select, update

from partners.models import Partner

from notifications.models import Notification
from tests.conftest import World
from tests.tracker.test_evidence import multipart, photo_with_gps
from tracker.models import Attachment, Case, Delivery, Party
from tracker.verify import verify_case
from tracker.watchdog import Watchdog, WatchdogConfig

ADDRESS = {"line1": "Hotel Riverside, 12 Water St", "city": "New York", "postcode": "10038", "country": "us"}


def _sessions(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


def _token(case: dict[str, Any]) -> str:
    return case["status_url"].rsplit("/", 1)[1]


async def courier_case(world: World) -> dict[str, Any]:
    return await world.open_case(parties=[
        {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
        {"partner": "ua", "role": "owner"},
        {"partner": "fastcourier", "role": "courier", "cadence": "PT4H"},
    ])


async def _rows(world: World, model: Any, *where: Any) -> list[Any]:
    async with _sessions(world)() as session:
        return list((await session.scalars(select(model).where(*where))).all())


async def _party(world: World, ref: str, partner: str) -> Party:
    async with _sessions(world)() as session:
        case_id = await session.scalar(select(Case.id).where(Case.ref == ref))
        return await session.scalar(select(Party).where(Party.case_id == case_id, Party.partner_id == partner))


async def ask_from_status_page(world: World, case: dict[str, Any], **fields: str) -> httpx.Response:
    form = {"how": "deliver", "line1": ADDRESS["line1"], "city": ADDRESS["city"], "postcode": ADDRESS["postcode"],
            "country": ADDRESS["country"], "phone": "+12125550199", "instructions": "Ask at the front desk",
            **fields}
    return await world.client.post(f"/s/{_token(case)}/delivery", data=form)


async def evening_slot(world: World, ref: str) -> dict[str, str]:
    response = await world.as_partner("ua", "GET", f"/v1/cases/{ref}/delivery/slots")
    assert response.status_code == 200, response.text
    slots = response.json()["items"]
    return next(s for s in slots if s["start"].endswith("18:00:00Z"))


# ---------------------------------------------------------------- asking


async def test_the_customer_asks_for_an_evening_slot_and_only_staff_owner_and_courier_see_the_address(
        world: World) -> None:
    async with _sessions(world)() as session:  # FastCourier with an ops contact and a webhook receiver
        await session.execute(update(Partner).where(Partner.id == "fastcourier").values(
            ops_email="dispatch@fastcourier.example", webhook_url="https://hooks.fastcourier.example/baton"))
        await session.commit()
    case = await courier_case(world)
    slots = (await world.as_partner("ua", "GET", f"/v1/cases/{case['ref']}/delivery/slots")).json()["items"]
    # The clock says 09:00 UTC; the courier publishes 09:00-12:00 and 18:00-20:00 (UTC), an hour's notice.
    assert slots[0] == {"start": "2026-11-02T18:00:00Z", "end": "2026-11-02T20:00:00Z"}
    assert len(slots) == 7  # tonight, then both windows for the next three days
    status = (await world.client.get(f"/v1/status/{_token(case)}")).json()
    assert status["can_request_delivery"] and status["delivery_slots"][0]["start"] == "2026-11-02T18:00:00Z"

    response = await ask_from_status_page(world, case, window=f"{slots[0]['start']}/{slots[0]['end']}")
    assert response.status_code == 303, response.text
    for who in ("ua", "fastcourier"):
        seen = (await world.as_partner(who, "GET", f"/v1/cases/{case['ref']}/delivery")).json()
        assert seen["address"]["line1"] == ADDRESS["line1"] and seen["phone"] == "+12125550199", who
        assert seen["state"] == "requested" and seen["window"]["start"] == "2026-11-02T18:00:00Z"
    carrier = (await world.as_partner("lh", "GET", f"/v1/cases/{case['ref']}/delivery")).json()
    assert carrier["address"] is None and carrier["phone"] is None and carrier["instructions"] is None
    assert carrier["state"] == "requested"
    staff = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/delivery")).json()
    assert staff["address"]["country"] == "US"
    status = (await world.client.get(f"/v1/status/{_token(case)}")).json()
    assert status["delivery"]["state"] == "requested" and "address" not in status["delivery"]
    events = (await world.as_partner("lh", "GET", f"/v1/cases/{case['ref']}/events")).json()["items"]
    requested = next(e for e in events if e["type"] == "delivery.requested")
    assert "Riverside" not in str(requested) and requested["courier"] == "fastcourier"
    told = await _rows(world, Notification, Notification.partner_id == "fastcourier",
                       Notification.kind == "delivery.requested")
    assert {row.channel for row in told} == {"email", "webhook"}
    email = next(row for row in told if row.channel == "email")
    assert "18:00" in email.body_text and "delivery/accept" in email.body_text
    webhook = next(row for row in told if row.channel == "webhook")
    assert "Riverside" not in str(webhook.payload) and webhook.payload["data"]["delivery"]["window"]


async def test_a_window_that_is_not_one_of_the_couriers_slots_is_refused(world: World) -> None:
    case = await courier_case(world)
    response = await world.as_partner("ua", "PUT", f"/v1/cases/{case['ref']}/delivery", json_body={
        "address": ADDRESS, "phone": "+12125550199",
        "window": {"start": "2026-11-02T15:00:00Z", "end": "2026-11-02T16:00:00Z"}})
    assert response.status_code == 422 and "slots" in response.json()["detail"]
    response = await world.as_partner("ua", "PUT", f"/v1/cases/{case['ref']}/delivery",
                                      json_body={"address": ADDRESS, "collect_at": "JFK"})
    assert response.status_code == 422  # an address or a collection, not both
    assert await _rows(world, Delivery) == []


async def test_only_staff_and_the_owner_ask_through_the_api_and_collection_needs_no_address(world: World) -> None:
    case = await courier_case(world)
    refused = await world.as_partner("lh", "PUT", f"/v1/cases/{case['ref']}/delivery",
                                     json_body={"collect_at": "JFK"})
    assert refused.status_code == 403
    response = await world.as_partner("ua", "PUT", f"/v1/cases/{case['ref']}/delivery",
                                      json_body={"collect_at": "jfk", "window": None})
    assert response.status_code == 200, response.text
    assert response.json()["collect_at"] == "JFK" and response.json()["window"] is None


async def test_a_case_without_a_courier_cannot_take_a_delivery_request(world: World) -> None:
    case = await world.open_case()
    response = await world.as_partner("ua", "PUT", f"/v1/cases/{case['ref']}/delivery",
                                      json_body={"collect_at": "JFK"})
    assert response.status_code == 409 and "courier" in response.json()["detail"]
    status = (await world.client.get(f"/v1/status/{_token(case)}")).json()
    assert status["can_request_delivery"] is False


# ---------------------------------------------------------------- accepting


async def test_the_courier_accepts_becomes_responsible_and_the_customer_hears_the_window(world: World) -> None:
    case = await courier_case(world)
    slot = await evening_slot(world, case["ref"])
    await ask_from_status_page(world, case, window=f"{slot['start']}/{slot['end']}")
    assert (await _party(world, case["ref"], "fastcourier")).responsible is False
    refused = await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/delivery/accept", json_body={})
    assert refused.status_code == 403
    accepted = await world.as_partner("fastcourier", "POST", f"/v1/cases/{case['ref']}/delivery/accept",
                                      json_body={})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "accepted"
    courier = await _party(world, case["ref"], "fastcourier")
    assert courier.responsible and courier.next_update_due is not None
    again = await world.as_partner("fastcourier", "POST", f"/v1/cases/{case['ref']}/delivery/accept", json_body={})
    assert again.status_code == 409
    customer = await _rows(world, Notification, Notification.audience == "customer")
    confirmed = [row for row in customer if any(t["kind"] == "delivery_confirmed" for t in row.payload["triggers"])]
    assert {row.channel for row in confirmed} == {"sms", "email"}  # merged into any message still waiting
    assert confirmed[0].payload["triggers"][-1]["window_start"].startswith("2026-11-02T18:00")


async def test_an_unaccepted_request_is_flagged_like_an_unaccepted_handoff(world: World) -> None:
    case = await courier_case(world)
    await ask_from_status_page(world, case)
    watchdog = Watchdog(sessionmaker=_sessions(world), clock=world.clock, config=WatchdogConfig())
    world.clock.advance(dt.timedelta(hours=1, minutes=59))
    assert (await watchdog.sweep()).handoffs_flagged == 0
    world.clock.advance(dt.timedelta(minutes=2))  # the baggage type gives PT2H to accept
    assert (await watchdog.sweep()).handoffs_flagged == 1
    assert (await _party(world, case["ref"], "fastcourier")).state == "late"
    accepted = await world.as_partner("fastcourier", "POST", f"/v1/cases/{case['ref']}/delivery/accept",
                                      json_body={})
    assert accepted.status_code == 200
    assert (await _party(world, case["ref"], "fastcourier")).state == "on_track"


async def test_a_changed_request_replaces_the_first_and_asks_again(world: World) -> None:
    case = await courier_case(world)
    await ask_from_status_page(world, case)
    await world.as_partner("fastcourier", "POST", f"/v1/cases/{case['ref']}/delivery/accept", json_body={})
    slot = await evening_slot(world, case["ref"])
    response = await ask_from_status_page(world, case, window=f"{slot['start']}/{slot['end']}")
    assert response.status_code == 303
    seen = (await world.as_partner("fastcourier", "GET", f"/v1/cases/{case['ref']}/delivery")).json()
    assert seen["state"] == "requested" and seen["window"]["start"] == slot["start"]
    handoffs = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/handoffs")).json()["items"]
    assert [h["state"] for h in handoffs] == ["accepted", "requested"]


# ---------------------------------------------------------------- out for delivery, PIN and proof


async def out_for_delivery(world: World) -> dict[str, Any]:
    case = await courier_case(world)
    slot = await evening_slot(world, case["ref"])
    await ask_from_status_page(world, case, window=f"{slot['start']}/{slot['end']}")
    await world.as_partner("fastcourier", "POST", f"/v1/cases/{case['ref']}/delivery/accept", json_body={})
    world.clock.advance(dt.timedelta(hours=8, minutes=30))
    response = await world.as_partner("fastcourier", "POST", f"/v1/cases/{case['ref']}/events",
                                      json_body={"status": "out_for_delivery", "message": "Driver is on the way",
                                                 "eta": "2026-11-02T18:45:00Z"})
    assert response.status_code == 201, response.text
    return case


async def proof(world: World, ref: str, partner: str = "fastcourier", **fields: str) -> httpx.Response:
    if fields.pop("photo", "1"):
        body, content_type = multipart({"photo": ("door.jpg", photo_with_gps(color="navy"), "image/jpeg")}, fields)
    else:  # text fields only, still multipart/form-data
        body, content_type = multipart({k: (None, v.encode(), None) for k, v in fields.items()}, {})
    return await world.client.post(f"/v1/cases/{ref}/delivery/proof", content=body,
                                   headers={"content-type": content_type}, auth=world.partners[partner].signer())


async def test_out_for_delivery_gives_the_customer_a_pin_sent_at_once(world: World) -> None:
    case = await out_for_delivery(world)
    status = (await world.client.get(f"/v1/status/{_token(case)}")).json()
    pin = status["delivery"]["pin"]
    assert status["delivery"]["state"] == "out_for_delivery" and len(pin) == 4 and pin.isdigit()
    assert status["eta"] == "2026-11-02T18:45:00Z"
    sent = await _rows(world, Notification, Notification.kind == "customer.out_for_delivery")
    assert sent and all(row.next_attempt_at == world.clock.now() for row in sent)  # never held for the window
    seen = (await world.as_partner("fastcourier", "GET", f"/v1/cases/{case['ref']}/delivery")).json()
    assert "pin" not in seen and pin not in str(seen)  # the courier must get the PIN from the customer
    page = await world.client.get(f"/s/{_token(case)}")
    assert f'data-field="pin">{pin}<' in page.text


async def test_a_wrong_pin_or_tag_is_refused_and_changes_nothing(world: World) -> None:
    case = await out_for_delivery(world)
    pin = (await world.client.get(f"/v1/status/{_token(case)}")).json()["delivery"]["pin"]
    wrong = f"{(int(pin) + 1) % 10000:04d}"
    response = await proof(world, case["ref"], pin=wrong)
    assert response.status_code == 422 and "PIN" in response.json()["detail"]
    response = await proof(world, case["ref"], pin=pin, bag_tag="0016999999")
    assert response.status_code == 422 and "tag" in response.json()["detail"]
    response = await proof(world, case["ref"], "lh", pin=pin)
    assert response.status_code == 403
    assert await _rows(world, Attachment) == []
    assert (await world.as_admin("GET", f"/v1/cases/{case['ref']}")).json()["status"] == "out_for_delivery"


async def test_the_proof_delivers_records_its_digests_and_shows_the_customer_the_photo(world: World) -> None:
    case = await out_for_delivery(world)
    pin = (await world.client.get(f"/v1/status/{_token(case)}")).json()["delivery"]["pin"]
    response = await proof(world, case["ref"], pin=pin, bag_tag="0016123456")
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["state"] == "delivered"
    [photo] = answer["attachments"]
    stored = await world.as_partner("ua", "GET", f"/v1/cases/{case['ref']}/attachments/{photo['id']}")
    assert hashlib.sha256(stored.content).hexdigest() == photo["sha256"]
    events = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/events")).json()["items"]
    completed = next(e for e in events if e["type"] == "delivery.completed")
    assert completed["attachments"][0]["sha256"] == photo["sha256"] and completed["pin"] is True
    assert completed["bag_tag"] == "0016123456" and completed["signed"] is True
    read = (await world.as_admin("GET", f"/v1/cases/{case['ref']}")).json()
    assert read["status"] == "delivered" and read["closed_at"] is None  # the owner closes, asking the customer
    status = (await world.client.get(f"/v1/status/{_token(case)}")).json()
    assert status["delivery"]["state"] == "delivered" and status["delivery"]["pin"] is None
    assert [f["kind"] for f in status["files"]] == ["proof_of_delivery"]
    # Delivered: nobody holds it any more, so the watch ends for every party, the carrier included.
    assert completed["relieved"] == ["lh", "fastcourier"]
    assert [p["responsible"] for p in read["parties"]] == [False, False, False]
    assert status["holder"] is None and status["notices"] == [] and status["eta"] is None
    page = await world.client.get(f"/s/{_token(case)}")
    assert "You: it was delivered" in page.text
    told = await _rows(world, Notification, Notification.kind == "customer.delivered")
    assert told and all(row.next_attempt_at == world.clock.now() for row in told)
    again = await proof(world, case["ref"], pin=pin)
    assert again.status_code == 409
    async with _sessions(world)() as session:
        verdict = await verify_case(session=session, ref=case["ref"])
    assert verdict.ok, verdict


async def test_delivered_is_only_set_through_the_proof_while_a_delivery_is_under_way(world: World) -> None:
    case = await out_for_delivery(world)
    response = await world.as_partner("fastcourier", "POST", f"/v1/cases/{case['ref']}/events",
                                      json_body={"status": "delivered"})
    assert response.status_code == 422 and "close" in response.json()["detail"]  # terminal: closing, or the proof
    failed = await world.as_partner("fastcourier", "POST", f"/v1/cases/{case['ref']}/events",
                                    json_body={"status": "delivery_failed", "message": "Nobody at the desk"})
    assert failed.status_code == 201, failed.text
    status = (await world.client.get(f"/v1/status/{_token(case)}")).json()
    assert status["delivery"]["state"] == "failed" and status["delivery"]["pin"] is None
    assert status["can_request_delivery"] is True  # the customer chooses a new time


# ---------------------------------------------------------------- ETA and erasure


async def test_eta_and_eta_first_are_kept_in_the_case_and_shown_to_the_customer(world: World) -> None:
    case = await world.open_case()
    for eta in ("2026-11-03T12:00:00Z", "2026-11-04T09:00:00Z"):
        response = await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/events",
                                          json_body={"internal_note": "rebooked", "eta": eta})
        assert response.status_code == 201, response.text
    read = (await world.as_admin("GET", f"/v1/cases/{case['ref']}")).json()
    assert (read["eta"], read["eta_first"]) == ("2026-11-04T09:00:00Z", "2026-11-03T12:00:00Z")
    status = (await world.client.get(f"/v1/status/{_token(case)}")).json()
    assert status["eta"] == "2026-11-04T09:00:00Z"
    page = await world.client.get(f"/s/{_token(case)}")
    assert 'data-field="eta"' in page.text


async def test_erasure_removes_the_address_and_phone(world: World) -> None:
    from tracker.erasure import erase_customer

    case = await courier_case(world)
    await ask_from_status_page(world, case)
    async with _sessions(world)() as session:
        await erase_customer(session=session, ref=case["ref"], actor="staff:test", now=world.clock.now())
        await session.commit()
    [row] = await _rows(world, Delivery)
    assert (row.address, row.phone, row.instructions) == (None, None, None)
    seen = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/delivery")).json()
    assert seen["address"] is None and seen["state"] == "requested"


async def test_bad_delivery_forms_get_a_plain_error_and_change_nothing(world: World) -> None:
    case = await courier_case(world)
    response = await ask_from_status_page(world, case, phone="not a phone")
    assert response.status_code == 422 and "phone" in response.text
    response = await ask_from_status_page(world, case, window="2026-11-02T15:00:00Z/2026-11-02T16:00:00Z")
    assert response.status_code == 422
    response = await ask_from_status_page(world, case, window="garbage")
    assert response.status_code == 422
    assert await _rows(world, Delivery) == []
    count = await _count_cases(world)
    assert count == 1


async def _count_cases(world: World) -> int:
    async with _sessions(world)() as session:
        return await session.scalar(select(func.count()).select_from(Case)) or 0



async def test_a_signature_image_is_kept_for_the_parties_and_the_photo_for_the_customer_too(world: World) -> None:
    import io

    from PIL import Image

    case = await out_for_delivery(world)
    pin = (await world.client.get(f"/v1/status/{_token(case)}")).json()["delivery"]["pin"]
    scrawl = io.BytesIO()
    Image.new("LA", (300, 120), (0, 0)).save(scrawl, "PNG")
    body, content_type = multipart({"photo": ("door.jpg", photo_with_gps(), "image/jpeg"),
                                    "signature": ("sig.png", scrawl.getvalue(), "image/png")}, {"pin": pin})
    response = await world.client.post(f"/v1/cases/{case['ref']}/delivery/proof", content=body,
                                       headers={"content-type": content_type},
                                       auth=world.partners["fastcourier"].signer())
    assert response.status_code == 201, response.text
    roles = {a["role"]: a for a in response.json()["attachments"]}
    assert set(roles) == {"photo", "signature"}
    listed = {a["id"]: a for a in (await world.as_partner("ua", "GET",
                                                          f"/v1/cases/{case['ref']}/attachments")).json()["items"]}
    assert listed[roles["signature"]["id"]]["visibility"] == "parties"
    assert listed[roles["photo"]["id"]]["visibility"] == "public"
    assert listed[roles["signature"]["id"]]["content_type"] == "image/png"
    status = (await world.client.get(f"/v1/status/{_token(case)}")).json()
    assert [f["id"] for f in status["files"]] == [roles["photo"]["id"]]


async def test_five_wrong_pins_and_the_pin_is_no_longer_taken(world: World) -> None:
    case = await out_for_delivery(world)
    pin = (await world.client.get(f"/v1/status/{_token(case)}")).json()["delivery"]["pin"]
    wrong = [f"{(int(pin) + n) % 10000:04d}" for n in range(1, 6)]
    for guess in wrong:
        response = await proof(world, case["ref"], pin=guess, photo="")
        assert response.status_code == 422, response.text
    locked = await proof(world, case["ref"], pin=pin, photo="")
    assert locked.status_code == 409 and "no longer taken" in locked.json()["detail"]
    delivered = await proof(world, case["ref"], bag_tag="0016123456")  # the photo and the tag still prove it
    assert delivered.status_code == 201, delivered.text
    assert delivered.json()["state"] == "delivered"
    events = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/events")).json()["items"]
    assert next(e for e in events if e["type"] == "delivery.completed")["pin"] is False
