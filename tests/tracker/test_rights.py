"""Rights and deadlines (SPEC "Rights, deadlines and claims"), each rule with the clock moved across
its boundary: an hour before, at, and an hour after, in two time zones.

Calendar rules end at the customer's local midnight after their last day (a legal deadline is read
by the calendar where the customer is); hour rules (the US DOT refund) end exactly.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from notifications.models import Notification
from tests.conftest import World
from tracker.models import Event
from tracker.watchdog import Watchdog, WatchdogConfig

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
ZONES = ["America/New_York", "Asia/Tokyo"]


def _sessions(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


async def _rights(world: World, ref: str) -> dict[str, dict[str, Any]]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}/rights")
    assert response.status_code == 200, response.text
    return {r["code"]: r for r in response.json()["items"]}


async def _open(world: World, zone: str = "America/New_York", itinerary: dict[str, Any] | None = None) -> dict:
    customer = {"name": "Ada Lovelace", "phone": "+14155550100", "email": "ada@example.com", "locale": "en",
                "timezone": zone}
    return await world.open_case(customer=customer, **({"itinerary": itinerary} if itinerary else {}))


async def _deliver(world: World, ref: str) -> dt.datetime:
    """The bag reaches the customer now (the owner closes the case as delivered)."""
    response = await world.as_admin("POST", f"/v1/cases/{ref}/close",
                                    json_body={"resolution": "Delivered to the hotel", "status": "delivered"})
    assert response.status_code == 200, response.text
    return world.clock.now()


async def _sweep(world: World) -> Any:
    return await Watchdog(sessionmaker=_sessions(world), clock=world.clock, config=WatchdogConfig()).sweep()


async def _customer_kinds(world: World, ref: str) -> list[str]:
    async with _sessions(world)() as session:
        rows = (await session.scalars(select(Notification).where(Notification.audience == "customer"))).all()
        return [t["kind"] for row in rows for t in (row.payload or {}).get("triggers", [])]


# ---------------------------------------------------------------- calendar rules, two zones


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(("code", "days"), [("damage_complaint", 7), ("delay_complaint", 21)])
async def test_a_complaint_deadline_ends_at_the_customers_midnight_after_its_last_day(
        world: World, zone: str, code: str, days: int) -> None:
    case = await _open(world, zone)
    assert (await _rights(world, case["ref"]))[code]["state"] == "waiting"  # counts from the delivery
    delivered = await _deliver(world, case["ref"])
    local = delivered.astimezone(ZoneInfo(zone))
    last_day = local.date() + dt.timedelta(days=days)
    end = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(0), ZoneInfo(zone))
    right = (await _rights(world, case["ref"]))[code]
    assert right["due_date"] == last_day.isoformat()
    assert dt.datetime.fromisoformat(right["due_at"]) == end
    for moment, state in ((end - HOUR, "open"), (end, "passed"), (end + HOUR, "passed")):
        world.clock.set(moment.astimezone(UTC))
        assert (await _rights(world, case["ref"]))[code]["state"] == state, moment


@pytest.mark.parametrize("zone", ZONES)
async def test_legal_action_is_two_years_from_the_arrival(world: World, zone: str) -> None:
    arrived = dt.datetime(2026, 11, 1, 22, 30, tzinfo=UTC)
    case = await _open(world, zone, {"international": True, "longest_flight_hours": 8, "arrived_at": arrived.isoformat()})
    right = (await _rights(world, case["ref"]))["legal_action"]
    local_day = arrived.astimezone(ZoneInfo(zone)).date()
    assert right["due_date"] == local_day.replace(year=2028).isoformat()
    end = dt.datetime.fromisoformat(right["due_at"])
    for moment, state in ((end - HOUR, "open"), (end, "passed"), (end + HOUR, "passed")):
        world.clock.set(moment.astimezone(UTC))
        assert (await _rights(world, case["ref"]))["legal_action"]["state"] == state


@pytest.mark.parametrize(("delivered_on_day", "lost_state"), [(20, "met"), (22, "passed")])
async def test_a_bag_delivered_on_day_20_was_never_lost_on_day_22_it_was(
        world: World, delivered_on_day: int, lost_state: str) -> None:
    case = await _open(world)
    opened = world.clock.now()
    world.clock.set(opened + dt.timedelta(days=delivered_on_day))
    await _sweep(world)  # on day 22 the case type's deadline has moved the case to presumed_lost
    status = (await world.as_admin("GET", f"/v1/cases/{case['ref']}")).json()["status"]
    assert status == ("presumed_lost" if delivered_on_day > 21 else "reported")
    delivered = await _deliver(world, case["ref"])
    rights = await _rights(world, case["ref"])
    assert rights["presumed_lost"]["state"] == lost_state
    delay = rights["delay_complaint"]
    assert delay["state"] == "open"  # counts from the delivery, whenever it came
    assert delay["due_date"] == (delivered.astimezone(ZoneInfo("America/New_York")).date()
                                 + dt.timedelta(days=21)).isoformat()


# ---------------------------------------------------------------- the US DOT fee refund


@pytest.mark.parametrize(("international", "longest", "hours", "code"), [
    (False, 3, 12, "dot_fee_refund_domestic"),
    (True, 12, 15, "dot_fee_refund_international"),
    (True, 12.5, 30, "dot_fee_refund_long_haul"),
])
async def test_the_dot_refund_falls_due_at_its_hour_and_tells_the_owner_and_the_customer(
        world: World, international: bool, longest: float, hours: int, code: str) -> None:
    arrived = world.clock.now()
    case = await _open(world, itinerary={"international": international, "longest_flight_hours": longest,
                                         "arrived_at": arrived.isoformat()})
    rights = await _rights(world, case["ref"])
    dot = [c for c in rights if c.startswith("dot_")]
    assert dot == [code]  # exactly one of the three applies
    end = arrived + dt.timedelta(hours=hours)
    assert dt.datetime.fromisoformat(rights[code]["due_at"]) == end
    world.clock.set(end - HOUR)
    await _sweep(world)
    assert (await _rights(world, case["ref"]))[code]["state"] == "open"
    assert "refund_due" not in await _customer_kinds(world, case["ref"])
    world.clock.set(end)
    assert (await _sweep(world)).rights == 1
    assert (await _rights(world, case["ref"]))[code]["state"] == "due"
    events = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/events")).json()["items"]
    assert [e["rule"] for e in events if e["type"] == "case.refund_due"] == [code]
    assert "refund_due" in await _customer_kinds(world, case["ref"])
    async with _sessions(world)() as session:
        told = (await session.scalars(select(Notification).where(Notification.kind == "case.refund_due"))).all()
    assert [row.partner_id for row in told] == []  # ua (the owner) has no webhook URL in the fixtures ...
    world.clock.set(end + HOUR)
    assert (await _sweep(world)).rights == 0  # ... and it fires once
    assert (await _rights(world, case["ref"]))[code]["state"] == "due"


async def test_the_owner_gets_the_refund_webhook(world: World) -> None:
    async with _sessions(world)() as session:
        from sqlalchemy import update

        from partners.models import Partner

        await session.execute(update(Partner).where(Partner.id == "ua").values(
            webhook_url="https://hooks.ua.example/baton"))
        await session.commit()
    arrived = world.clock.now()
    case = await _open(world, itinerary={"international": False, "longest_flight_hours": 2,
                                         "arrived_at": arrived.isoformat()})
    world.clock.set(arrived + dt.timedelta(hours=12))
    await _sweep(world)
    async with _sessions(world)() as session:
        told = (await session.scalars(select(Notification).where(Notification.kind == "case.refund_due"))).all()
    assert [(row.partner_id, row.payload["data"]["rule"]) for row in told] == [("ua", "dot_fee_refund_domestic")]
    assert told[0].payload["data"]["case"]["ref"] == case["ref"]


async def test_a_bag_delivered_before_the_dot_hour_owes_nothing(world: World) -> None:
    arrived = world.clock.now()
    case = await _open(world, itinerary={"international": False, "longest_flight_hours": 2,
                                         "arrived_at": arrived.isoformat()})
    world.clock.set(arrived + dt.timedelta(hours=11))
    await _deliver(world, case["ref"])
    world.clock.set(arrived + dt.timedelta(hours=13))
    await _sweep(world)
    assert (await _rights(world, case["ref"]))["dot_fee_refund_domestic"]["state"] == "met"
    async with _sessions(world)() as session:
        fired = (await session.scalars(select(Event).where(Event.type == "case.refund_due"))).all()
    assert fired == []


async def test_without_an_itinerary_no_dot_rule_applies(world: World) -> None:
    case = await _open(world)
    assert not [c for c in await _rights(world, case["ref"]) if c.startswith("dot_")]


# ---------------------------------------------------------------- reminders


@pytest.mark.parametrize(("code", "before"), [("damage_complaint", 2), ("delay_complaint", 3)])
async def test_the_customer_is_reminded_days_before_a_filing_deadline(world: World, code: str, before: int) -> None:
    case = await _open(world)
    await _deliver(world, case["ref"])
    end = dt.datetime.fromisoformat((await _rights(world, case["ref"]))[code]["due_at"])
    remind = end - dt.timedelta(days=before)
    world.clock.set(remind - HOUR)
    await _sweep(world)
    reminded = [k for k in await _customer_kinds(world, case["ref"]) if k == "rights_reminder"]
    already = len(reminded)
    world.clock.set(remind)
    await _sweep(world)
    events = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/events")).json()["items"]
    assert [e["rule"] for e in events if e["type"] == "rights.reminder"].count(code) == 1
    world.clock.set(remind + HOUR)
    await _sweep(world)
    events = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/events")).json()["items"]
    assert [e["rule"] for e in events if e["type"] == "rights.reminder"].count(code) == 1  # once
    assert len([k for k in await _customer_kinds(world, case["ref"]) if k == "rights_reminder"]) > already


async def test_rights_are_for_staff_and_the_owner(world: World) -> None:
    case = await _open(world)
    assert (await world.as_partner("ua", "GET", f"/v1/cases/{case['ref']}/rights")).status_code == 200
    assert (await world.as_partner("lh", "GET", f"/v1/cases/{case['ref']}/rights")).status_code == 403
    assert (await world.as_partner("fastcourier", "GET", f"/v1/cases/{case['ref']}/rights")).status_code == 404


async def test_the_status_page_lists_the_rights_in_the_customers_language(world: World) -> None:
    customer = {"name": "Emmy Noether", "email": "emmy@example.de", "locale": "de", "timezone": "Europe/Berlin"}
    case = await world.open_case(customer=customer)
    await _deliver(world, case["ref"])
    status = (await world.client.get(f"/v1/status/{case['status_url'].rsplit('/', 1)[1]}")).json()
    labels = {r["code"]: r["label"] for r in status["rights"]}
    assert labels["delay_complaint"].startswith("Schriftliche Beschwerde")
    assert "1.519" in status["liability_cap"]["label"]
    page = await world.client.get(case["status_url"].replace("http://baton.test", ""))
    assert "Ihre Rechte und Fristen" in page.text


def test_the_liability_cap_is_converted_only_at_configured_rates() -> None:
    from tracker.casetypes import BAGGAGE, CaseTypeDef
    from tracker.rights import _cap

    ctype = CaseTypeDef.parse(code="baggage", prefix="BAG", name="x", definition=BAGGAGE["definition"])
    plain = _cap(ctype, "en", ())
    assert plain is not None and plain.converted == {} and plain.amount == "1519" and plain.currency == "XDR"
    converted = _cap(ctype, "fr", ("EUR=1.21", "USD=1.3405"))
    assert converted is not None and converted.converted == {"EUR": "1838", "USD": "2036"}  # Decimal, rounded
    assert "1 519 DTS" in converted.label


@pytest.mark.parametrize("zone", ZONES)
async def test_the_bag_counts_as_lost_at_the_moment_the_watchdog_moves_the_case(world: World, zone: str) -> None:
    case = await _open(world, zone)
    end = dt.datetime.fromisoformat((await _rights(world, case["ref"]))["presumed_lost"]["due_at"])
    assert end == dt.datetime.fromisoformat((await world.as_admin("GET", f"/v1/cases/{case['ref']}")).json()["deadline_at"])
    for moment, state, status in ((end - HOUR, "open", "reported"), (end, "passed", "presumed_lost"),
                                  (end + HOUR, "passed", "presumed_lost")):
        world.clock.set(moment)
        await _sweep(world)
        assert (await _rights(world, case["ref"]))["presumed_lost"]["state"] == state
        assert (await world.as_admin("GET", f"/v1/cases/{case['ref']}")).json()["status"] == status
