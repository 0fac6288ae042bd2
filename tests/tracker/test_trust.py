"""Trust between organizations: what an authenticated partner may do to a case, and to the others.

Each test replays one scenario a hostile partner tried against the running server, through the
API with real signatures, on SQLite and PostgreSQL, and checks it ends as SPEC.md says.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from notifications.models import Notification
from tests.conftest import World, case_body
from kernel.config import Settings
from tracker.models import Case, Event, Party
from tracker.watchdog import Watchdog, WatchdogConfig

STRANGER = {"name": "Sam Stranger", "phone": "+14155550199", "email": "sam@example.com",
            "locale": "en", "timezone": "America/New_York"}


def _sessionmaker(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


async def _count(world: World, model: Any, *where: Any) -> int:
    async with _sessionmaker(world)() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def _party(world: World, ref: str, partner: str) -> Party:
    async with _sessionmaker(world)() as session:
        case_id = await session.scalar(select(Case.id).where(Case.ref == ref))
        party = await session.scalar(select(Party).where(Party.case_id == case_id, Party.partner_id == partner))
        assert party is not None
        return party


async def _sweep(world: World) -> Any:
    watchdog = Watchdog(sessionmaker=_sessionmaker(world), clock=world.clock, config=WatchdogConfig())
    return await watchdog.sweep()


async def _courier_case(world: World, **overrides: Any) -> dict[str, Any]:
    """FastCourier opens a case as its owner and names Lufthansa as responsible carrier."""
    body = case_body(owner="fastcourier", customer=STRANGER, parties=[
        {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT1H"},
        {"partner": "fastcourier", "role": "owner"},
    ])
    body.update(overrides)
    response = await world.as_partner("fastcourier", "POST", "/v1/cases", json_body=body)
    assert response.status_code == 201, response.text
    return response.json()


# ---------------------------------------------------------------- opening


async def test_a_partner_cannot_open_a_case_naming_another_owner(world: World) -> None:
    body = case_body(owner="ua", customer=STRANGER)
    response = await world.as_partner("fastcourier", "POST", "/v1/cases", json_body=body)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await _count(world, Case) == 0
    assert await _count(world, Notification) == 0


async def test_staff_may_name_any_owner(world: World) -> None:
    case = await world.open_case(owner="ua")
    assert case["owner"] == "ua"
    assert {p["partner"]: p["state"] for p in case["parties"]} == {"lh": "on_track", "ua": "on_track"}


async def test_a_cadence_under_the_minimum_is_refused_and_nothing_is_created(world: World) -> None:
    body = case_body(owner="fastcourier", parties=[
        {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT1S"}])
    response = await world.as_partner("fastcourier", "POST", "/v1/cases", json_body=body)
    assert response.status_code == 422
    assert "PT15M" in response.json()["detail"]
    assert await _count(world, Case) == 0


# ---------------------------------------------------------------- joining


async def test_a_named_partner_is_invited_not_watched_and_not_blamed(world: World) -> None:
    case = await _courier_case(world)
    states = {p["partner"]: p["state"] for p in case["parties"]}
    assert states == {"lh": "invited", "fastcourier": "on_track"}
    lh = next(p for p in case["parties"] if p["partner"] == "lh")
    assert lh["next_update_due"] is None

    world.clock.advance(hours=30)
    result = await _sweep(world)
    assert result.late == 0 and result.escalated == 0
    assert (await _party(world, case["ref"], "lh")).state == "invited"
    late_rows = await _count(world, Notification, Notification.kind.in_(("party.late", "party.escalated")))
    assert late_rows == 0
    overdue = await world.as_admin("GET", "/v1/overdue")
    assert overdue.json()["items"] == []

    # The customer is not told Lufthansa holds the bag.
    status = await world.client.get(f"/v1/status/{case['status_url'].rsplit('/', 1)[1]}")
    assert "Lufthansa" not in status.text


async def test_an_invited_partner_is_told_by_webhook_email_and_text_with_a_one_tap_link(world: World) -> None:
    case = await _courier_case(world)
    async with _sessionmaker(world)() as session:
        rows = (await session.scalars(select(Notification).where(Notification.partner_id == "lh"))).all()
    kinds = sorted((r.channel, r.kind) for r in rows)
    assert kinds == [("email", "party.invited"), ("sms", "party.invited"), ("webhook", "party.invited")]
    email = next(r for r in rows if r.channel == "email")
    assert email.recipient == "baggage-ops@lh.example"
    assert f"/v1/cases/{case['ref']}/parties/lh/accept" in (email.body_text or "")
    text = next(r for r in rows if r.channel == "sms")
    assert text.recipient == "+4969123456" and "/p/" in (text.body_text or "")
    assert _one_tap_link(text.body_text or "") in (email.body_text or ""), "one link per party: email and text agree"


async def test_accepting_an_invitation_starts_the_watch(world: World) -> None:
    case = await _courier_case(world)
    response = await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/parties/lh/accept", json_body={})
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "on_track"
    assert response.json()["next_update_due"] is not None
    world.clock.advance(hours=1, seconds=1)
    assert (await _sweep(world)).late == 1


async def test_the_first_signed_write_accepts_the_invitation(world: World) -> None:
    case = await _courier_case(world)
    response = await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/events",
                                      json_body={"internal_note": "We have the bag in FRA."})
    assert response.status_code == 201, response.text
    party = await _party(world, case["ref"], "lh")
    assert party.state == "on_track" and party.next_update_due is not None
    assert await _count(world, Event, Event.type == "party.joined") == 1


async def test_declining_releases_the_party_and_it_writes_nothing_more(world: World) -> None:
    case = await _courier_case(world)
    ref = case["ref"]
    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/parties/lh/decline",
                                      json_body={"note": "Not our bag."})
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "released"
    before = await _count(world, Event)
    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body={"message": "Hello!"})
    assert response.status_code == 403
    assert await _count(world, Event) == before
    # Answering twice is a conflict, and nobody answers for another partner.
    again = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/parties/lh/accept", json_body={})
    assert again.status_code == 409


async def test_a_partner_cannot_answer_another_partners_invitation(world: World) -> None:
    case = await _courier_case(world)
    response = await world.as_partner("fastcourier", "POST", f"/v1/cases/{case['ref']}/parties/lh/accept",
                                      json_body={})
    assert response.status_code == 403
    assert (await _party(world, case["ref"], "lh")).state == "invited"


async def test_unanswered_invitations_are_listed_for_staff(world: World) -> None:
    case = await _courier_case(world)
    response = await world.as_admin("GET", "/v1/invitations")
    assert response.status_code == 200
    assert [(i["case"], i["partner"]) for i in response.json()["items"]] == [(case["ref"], "lh")]
    assert (await world.as_partner("lh", "GET", "/v1/invitations")).status_code == 403
    await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/parties/lh/accept", json_body={})
    assert (await world.as_admin("GET", "/v1/invitations")).json()["items"] == []


async def test_a_party_the_owner_adds_is_invited_but_one_staff_add_is_not(world: World) -> None:
    case = await world.open_case()
    ref = case["ref"]
    by_owner = await world.as_partner("ua", "POST", f"/v1/cases/{ref}/parties",
                                      json_body={"partner": "fastcourier", "role": "courier", "responsible": True})
    assert by_owner.status_code == 201 and by_owner.json()["state"] == "invited"
    by_staff = await world.as_admin("POST", f"/v1/cases/{ref}/parties",
                                    json_body={"partner": "swissport-fra", "role": "handler", "responsible": True})
    assert by_staff.status_code == 201 and by_staff.json()["state"] == "on_track"


# ---------------------------------------------------------------- speaking


async def test_a_party_that_is_not_responsible_cannot_set_a_status(world: World) -> None:
    case = await world.open_case(parties=[
        {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
        {"partner": "swissport-fra", "role": "handler"},
        {"partner": "ua", "role": "owner"},
    ])
    ref = case["ref"]
    before = await _count(world, Event)
    response = await world.as_partner("swissport-fra", "POST", f"/v1/cases/{ref}/events",
                                      json_body={"status": "located", "message": "Found it"})
    assert response.status_code == 403
    assert await _count(world, Event) == before
    note = await world.as_partner("swissport-fra", "POST", f"/v1/cases/{ref}/events",
                                  json_body={"internal_note": "Scanned in hall B."})
    assert note.status_code == 201
    assert (await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events",
                                   json_body={"status": "located"})).status_code == 201
    assert (await world.as_partner("ua", "POST", f"/v1/cases/{ref}/events",
                                   json_body={"status": "in_transit"})).status_code == 201


@pytest.mark.parametrize(("status", "refused"), [("presumed_lost", 403), ("closed", 422)])
async def test_closing_and_deadline_statuses_are_not_posted_by_partners(world: World, status: str, refused: int) -> None:
    # The deadline status is the watchdog's or staff's (403); closing has its own route for everyone (422).
    case = await world.open_case()
    response = await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/events",
                                      json_body={"status": status, "message": "See https://claims.example"})
    assert response.status_code == refused
    read = await world.as_admin("GET", f"/v1/cases/{case['ref']}")
    assert read.json()["status"] == case["status"]
    assert await _count(world, Notification, Notification.audience == "customer",
                        Notification.kind != "customer.opened") == 0


async def test_staff_may_set_the_deadline_status_but_closing_goes_through_close(world: World) -> None:
    case = await world.open_case()
    ref = case["ref"]
    assert (await world.as_admin("POST", f"/v1/cases/{ref}/events",
                                 json_body={"status": "presumed_lost"})).status_code == 201
    closed = await world.as_admin("POST", f"/v1/cases/{ref}/events", json_body={"status": "closed"})
    assert closed.status_code == 422 and "/close" in closed.json()["detail"]


async def test_a_released_party_writes_nothing(world: World) -> None:
    case = await world.open_case()
    ref = case["ref"]
    released = await world.as_partner("ua", "PATCH", f"/v1/cases/{ref}/parties/lh", json_body={"released": True})
    assert released.status_code == 200, released.text
    before = await _count(world, Event)
    for body in ({"message": "We found it!"}, {"internal_note": "just a note"}):
        response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body=body)
        assert response.status_code == 403
    handoff = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/handoffs", json_body={"to": "ua"})
    assert handoff.status_code == 403
    assert await _count(world, Event) == before


async def test_taking_the_watch_off_an_escalated_party_needs_a_supervisor(world: World) -> None:
    async with _sessionmaker(world)() as session:
        from tracker.principals import create_staff_token

        agent = await create_staff_token(session=session, name="agent-ann", role="agent", now=world.clock.now())
        supervisor = await create_staff_token(session=session, name="sup-sue", role="supervisor",
                                              now=world.clock.now())
        await session.commit()
    case = await world.open_case()
    ref = case["ref"]
    world.clock.advance(hours=6, minutes=1)
    await _sweep(world)
    world.clock.advance(hours=6)
    await _sweep(world)
    assert (await _party(world, ref, "lh")).state == "escalated"

    as_agent = {"Authorization": f"Bearer {agent}"}
    for body in ({"responsible": False}, {"cadence": "P2D"}):
        response = await world.client.patch(f"/v1/cases/{ref}/parties/lh", json=body, headers=as_agent)
        assert response.status_code == 403, body
    assert (await _party(world, ref, "lh")).state == "escalated"
    # A shorter cadence keeps the watch on: an agent may do that.
    shorter = await world.client.patch(f"/v1/cases/{ref}/parties/lh", json={"cadence": "PT2H"}, headers=as_agent)
    assert shorter.status_code == 200
    response = await world.client.patch(f"/v1/cases/{ref}/parties/lh", json={"responsible": False},
                                        headers={"Authorization": f"Bearer {supervisor}"})
    assert response.status_code == 200
    assert response.json()["state"] == "on_track" and response.json()["responsible"] is False


# ---------------------------------------------------------------- limits


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"partner_cases_per_hour": 2, "partner_customer_messages_per_hour": 3})


async def test_a_partner_opening_too_many_cases_an_hour_gets_429(world: World) -> None:
    for _ in range(2):
        await _courier_case(world)
    body = case_body(owner="fastcourier", customer=STRANGER, parties=[])
    response = await world.as_partner("fastcourier", "POST", "/v1/cases", json_body=body)
    assert response.status_code == 429
    assert "Retry-After" in response.headers
    assert await _count(world, Case) == 2
    # Staff are not limited, and the hour passes.
    await world.open_case(owner="fastcourier", parties=[])
    world.clock.advance(hours=1, seconds=1)
    assert (await world.as_partner("fastcourier", "POST", "/v1/cases", json_body=body)).status_code == 201


async def test_a_partner_causing_too_many_customer_messages_an_hour_gets_429(world: World) -> None:
    case = await world.open_case()
    ref = case["ref"]
    for i in range(3):
        response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body={"message": f"m{i}"})
        assert response.status_code == 201
    before = await _count(world, Event)
    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body={"message": "m4"})
    assert response.status_code == 429
    assert await _count(world, Event) == before
    # Notes that the customer does not see are not limited.
    note = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body={"internal_note": "n"})
    assert note.status_code == 201


async def test_min_cadence_holds_when_adding_or_changing_a_party(world: World) -> None:
    case = await world.open_case()
    ref = case["ref"]
    add = await world.as_admin("POST", f"/v1/cases/{ref}/parties",
                               json_body={"partner": "fastcourier", "responsible": True, "cadence": "PT14M"})
    assert add.status_code == 422
    patch = await world.as_partner("ua", "PATCH", f"/v1/cases/{ref}/parties/lh", json_body={"cadence": "PT1M"})
    assert patch.status_code == 422
    assert (await _party(world, ref, "lh")).cadence_seconds == 6 * 3600
    ok = await world.as_partner("ua", "PATCH", f"/v1/cases/{ref}/parties/lh", json_body={"cadence": "PT15M"})
    assert ok.status_code == 200
    assert ok.json()["cadence"] == "PT15M"


@pytest.mark.parametrize(("countries", "phone", "allowed"), [
    ("", "+4915112345678", True),
    ("US,CA", "+14155550100", True),
    ("US,CA", "+4915112345678", False),
    ("us, de", "+4915112345678", True),
    ("US", "+88234", False),
])
def test_sms_goes_only_to_the_countries_the_operator_enabled(countries: str, phone: str, allowed: bool) -> None:
    from tracker.customer import sms_country_allowed

    assert sms_country_allowed(phone, Settings(sms_countries=countries)) is allowed


def _one_tap_link(text: str) -> str:
    return next(word for word in text.split() if "/p/" in word)
