"""The watchdog's rules: business hours, handoffs, promises, thresholds, deadlines, nudges, the queue."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from tests.conftest import World
from kernel.clock import UTC
from tracker.models import CaseType

if TYPE_CHECKING:
    from tests.support.smtp import SMTPSink
    from tests.tracker.watchdog_rig import Rig

OWNER = {"partner": "ua", "role": "owner"}
BERLIN_OFFICE_HOURS = {"timezone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"],
                       "start": "08:00", "end": "18:00"}

pytest_plugins = ["tests.tracker.watchdog_rig"]  # the rig fixture


def watched(partner: str, cadence: str = "PT6H", role: str = "carrier") -> dict[str, Any]:
    return {"partner": partner, "role": role, "responsible": True, "cadence": cadence}


def instant(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


async def state_of(rig: Rig, ref: str, partner: str) -> str:
    return (await rig.party(ref, partner))["state"]


# ---------------------------------------------------------------- business hours (criterion 2)


async def test_office_hours_partner_is_not_late_over_the_weekend_but_an_always_on_partner_is(
    world: World, rig: Rig
) -> None:
    await rig.register_partner(id="fra-handler", name="FRA Handler", timezone="Europe/Berlin",
                               calendar=BERLIN_OFFICE_HOURS)
    await rig.register_partner(id="nightowl", name="Night Owl Couriers")
    # Friday 6 November 2026, 17:00 in Berlin (CET, UTC+1).
    world.clock.set(dt.datetime(2026, 11, 6, 16, 0, tzinfo=UTC))
    case = await world.open_case(parties=[watched("fra-handler", role="handler"),
                                          watched("nightowl", role="courier"), OWNER])
    ref = case["ref"]

    # Office hours: 1 h left on Friday (17:00-18:00) + 5 h on Monday (08:00-13:00 Berlin = 12:00 UTC).
    assert instant((await rig.party(ref, "fra-handler"))["next_update_due"]) == dt.datetime(2026, 11, 9, 12, 0, tzinfo=UTC)
    # Always on: six hours of wall-clock time, Friday 23:00 Berlin.
    assert instant((await rig.party(ref, "nightowl"))["next_update_due"]) == dt.datetime(2026, 11, 6, 22, 0, tzinfo=UTC)

    world.clock.set(dt.datetime(2026, 11, 6, 22, 1, tzinfo=UTC))  # Friday night
    assert (await rig.sweep()).late == 1
    assert await state_of(rig, ref, "nightowl") == "late"
    assert await state_of(rig, ref, "fra-handler") == "on_track"

    for when in (dt.datetime(2026, 11, 7, 12, 0, tzinfo=UTC),   # Saturday
                 dt.datetime(2026, 11, 8, 12, 0, tzinfo=UTC),   # Sunday
                 dt.datetime(2026, 11, 9, 11, 59, tzinfo=UTC)):  # Monday 12:59 in Berlin
        world.clock.set(when)
        await rig.sweep()
        assert await state_of(rig, ref, "fra-handler") == "on_track", when

    world.clock.set(dt.datetime(2026, 11, 9, 12, 1, tzinfo=UTC))  # Monday 13:01 in Berlin
    assert (await rig.sweep()).late == 1
    assert await state_of(rig, ref, "fra-handler") == "late"
    [late] = [e for e in await rig.events(ref, "party.late") if e["partner"] == "fra-handler"]
    assert instant(late["overdue_since"]) == dt.datetime(2026, 11, 9, 12, 0, tzinfo=UTC)


async def test_office_hours_partner_update_counts_its_next_cadence_in_office_hours(world: World, rig: Rig) -> None:
    await rig.register_partner(id="fra-handler", name="FRA Handler", timezone="Europe/Berlin",
                               calendar=BERLIN_OFFICE_HOURS)
    world.clock.set(dt.datetime(2026, 11, 9, 12, 30, tzinfo=UTC))  # Monday 13:30 in Berlin
    ref = (await world.open_case(parties=[watched("fra-handler", role="handler"), OWNER]))["ref"]
    world.clock.advance(minutes=30)  # 14:00 in Berlin
    response = await world.as_partner("fra-handler", "POST", f"/v1/cases/{ref}/events",
                                      json_body={"status": "tracing"})
    assert response.status_code == 201, response.text
    # 4 h until 18:00, then 2 h from 08:00 on Tuesday: 10:00 in Berlin, 09:00 UTC.
    assert instant((await rig.party(ref, "fra-handler"))["next_update_due"]) == dt.datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


# ---------------------------------------------------------------- handoffs (criterion 3)


async def test_unaccepted_handoff_is_flagged_on_the_receiver_once_then_cleared_by_accepting(
    world: World, rig: Rig
) -> None:
    async with rig.receiver_for("fastcourier") as courier:
        ref = (await world.open_case(parties=[watched("lh"), {"partner": "fastcourier", "role": "courier"},
                                              OWNER]))["ref"]
        response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/handoffs",
                                          json_body={"to": "fastcourier", "accept_within": "PT2H"})
        assert response.status_code == 201, response.text
        handoff = response.json()
        assert instant(handoff["accept_by"]) == world.clock.now() + dt.timedelta(hours=2)

        world.clock.advance(hours=1, minutes=59)
        assert (await rig.tick()).handoffs_flagged == 0
        assert await state_of(rig, ref, "fastcourier") == "on_track"
        courier.clear()

        world.clock.advance(minutes=2)  # +2h01
        result = await rig.tick()
        assert result.handoffs_flagged == 1
        assert await state_of(rig, ref, "fastcourier") == "late"
        [overdue] = await rig.events(ref, "handoff.overdue")
        assert (overdue["handoff"], overdue["from"], overdue["to"]) == (handoff["id"], "lh", "fastcourier")
        [late] = await rig.events(ref, "party.late")
        assert (late["partner"], late["reason"], late["handoff"]) == ("fastcourier", "handoff", handoff["id"])
        assert instant(late["overdue_since"]) == instant(handoff["accept_by"])
        [hook] = courier.received
        assert hook.verified and hook.payload["type"] == "party.late"
        assert hook.payload["data"]["reason"] == "handoff" and hook.payload["data"]["case"]["ref"] == ref
        queue = (await world.as_admin("GET", "/v1/overdue")).json()["items"]
        assert [(i["case"], i["partner"], i["state"]) for i in queue] == [(ref, "fastcourier", "late")]

        timeline = len(await rig.events(ref))
        again = await rig.tick()
        assert again.total() == 0
        assert len(await rig.events(ref)) == timeline
        assert len(courier.received) == 1

        accepted = await world.as_partner("fastcourier", "POST", f"/v1/cases/{ref}/handoffs/{handoff['id']}/accept",
                                          json_body={})
        assert accepted.status_code == 200, accepted.text
        receiver = await rig.party(ref, "fastcourier")
        assert (receiver["state"], receiver["responsible"]) == ("on_track", True)
        assert (await rig.party(ref, "lh"))["responsible"] is False
        assert (await world.as_admin("GET", "/v1/overdue")).json()["items"] == []


async def test_handoff_accepted_within_its_window_is_never_flagged(world: World, rig: Rig) -> None:
    ref = (await world.open_case(parties=[watched("lh"), {"partner": "fastcourier", "role": "courier"}, OWNER]))["ref"]
    handoff = (await world.as_partner("lh", "POST", f"/v1/cases/{ref}/handoffs",
                                      json_body={"to": "fastcourier", "accept_within": "PT2H"})).json()
    world.clock.advance(hours=1)
    accepted = await world.as_partner("fastcourier", "POST", f"/v1/cases/{ref}/handoffs/{handoff['id']}/accept",
                                      json_body={})
    assert accepted.status_code == 200, accepted.text
    world.clock.advance(hours=1, minutes=1)
    assert (await rig.sweep()).handoffs_flagged == 0
    assert await rig.events(ref, "handoff.overdue") == []
    assert await state_of(rig, ref, "fastcourier") == "on_track"


# ---------------------------------------------------------------- promises


async def test_promise_sooner_than_the_cadence_makes_the_party_due_at_the_promise(world: World, rig: Rig) -> None:
    start = world.clock.now()
    ref = (await world.open_case(parties=[watched("lh", "PT6H"), OWNER]))["ref"]
    world.clock.advance(hours=1)
    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events",
                                      json_body={"status": "tracing",
                                                 "next_update_by": (start + dt.timedelta(hours=3)).isoformat()})
    assert response.status_code == 201, response.text
    assert instant((await rig.party(ref, "lh"))["next_update_due"]) == start + dt.timedelta(hours=3)

    world.clock.set(start + dt.timedelta(hours=2, minutes=59))
    assert (await rig.sweep()).late == 0
    world.clock.set(start + dt.timedelta(hours=3, minutes=1))
    assert (await rig.sweep()).late == 1
    [late] = await rig.events(ref, "party.late")
    assert instant(late["overdue_since"]) == start + dt.timedelta(hours=3)


async def test_promise_later_than_the_cadence_does_not_postpone_the_due_time(world: World, rig: Rig) -> None:
    start = world.clock.now()
    ref = (await world.open_case(parties=[watched("lh", "PT6H"), OWNER]))["ref"]
    world.clock.advance(hours=1)
    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events",
                                      json_body={"status": "tracing",
                                                 "next_update_by": (start + dt.timedelta(hours=10)).isoformat()})
    assert response.status_code == 201, response.text
    assert instant((await rig.party(ref, "lh"))["next_update_due"]) == start + dt.timedelta(hours=7)


# ---------------------------------------------------------------- escalation thresholds


async def test_partner_escalation_threshold_replaces_one_more_cadence(world: World, rig: Rig) -> None:
    await rig.register_partner(id="quick", name="Quick Handling", escalate_after="PT1H")
    start = world.clock.now()
    ref = (await world.open_case(parties=[watched("lh", "PT6H"), watched("quick", "PT6H", role="handler"),
                                          OWNER]))["ref"]

    world.clock.set(start + dt.timedelta(hours=6, minutes=1))
    assert (await rig.sweep()).late == 2
    escalates = {e["partner"]: instant(e["escalates_at"]) for e in await rig.events(ref, "party.late")}
    assert escalates == {"quick": start + dt.timedelta(hours=7), "lh": start + dt.timedelta(hours=12)}

    world.clock.set(start + dt.timedelta(hours=7, minutes=1))
    assert (await rig.sweep()).escalated == 1
    assert await state_of(rig, ref, "quick") == "escalated"
    assert await state_of(rig, ref, "lh") == "late"


async def test_case_type_escalation_threshold_replaces_one_more_cadence(world: World, rig: Rig) -> None:
    async with rig.sessionmaker() as session:
        parcel = await session.get(CaseType, "parcel")
        assert parcel is not None
        parcel.definition = {**parcel.definition, "escalate_after": "PT30M"}
        await session.commit()
    rig.caches.clear()  # the type was edited behind the app's back, in SQL
    start = world.clock.now()
    parcel_ref = (await world.open_case(type="parcel", title="Parcel never arrived",
                                        parties=[watched("lh", "PT6H"), OWNER]))["ref"]
    bag_ref = (await world.open_case(parties=[watched("lh", "PT6H"), OWNER]))["ref"]

    world.clock.set(start + dt.timedelta(hours=6, minutes=1))
    assert (await rig.sweep()).late == 2
    world.clock.set(start + dt.timedelta(hours=6, minutes=31))
    assert (await rig.sweep()).escalated == 1
    assert await state_of(rig, parcel_ref, "lh") == "escalated"
    assert await state_of(rig, bag_ref, "lh") == "late"


# ---------------------------------------------------------------- deadlines


async def test_baggage_case_moves_to_presumed_lost_after_21_days_once(world: World, rig: Rig) -> None:
    start = world.clock.now()
    ref = (await world.open_case())["ref"]

    world.clock.set(start + dt.timedelta(days=21) - dt.timedelta(minutes=1))
    assert (await rig.sweep()).deadlines == 0
    assert (await world.as_admin("GET", f"/v1/cases/{ref}")).json()["status"] == "reported"

    world.clock.set(start + dt.timedelta(days=21, minutes=1))
    assert (await rig.sweep()).deadlines == 1
    assert (await world.as_admin("GET", f"/v1/cases/{ref}")).json()["status"] == "presumed_lost"
    [deadline] = await rig.events(ref, "case.deadline")
    assert deadline["visibility"] == "public"
    assert (deadline["previous_status"], deadline["status"]) == ("reported", "presumed_lost")
    assert instant(deadline["deadline_at"]) == start + dt.timedelta(days=21)

    world.clock.advance(days=1)
    assert (await rig.sweep()).deadlines == 0
    assert len(await rig.events(ref, "case.deadline")) == 1
    assert len(await rig.notifications(kind="case.deadline", channel="webhook")) == 1  # lh, the one with a URL


# ---------------------------------------------------------------- nudges


async def test_nudge_records_the_chase_and_sends_a_webhook_and_an_email(
    world: World, rig: Rig, smtp: SMTPSink
) -> None:
    async with rig.receiver_for("lh") as lh:
        ref = (await world.open_case())["ref"]
        await rig.tick()
        lh.clear()
        response = await world.as_admin("POST", f"/v1/cases/{ref}/parties/lh/nudges",
                                        json_body={"note": "The passenger flies home tomorrow."})
        assert response.status_code == 201, response.text
        assert response.json()["partner"] == "lh"
        [nudged] = await rig.events(ref, "party.nudged")
        assert (nudged["partner"], nudged["note"]) == ("lh", "The passenger flies home tomorrow.")

        await rig.tick()
        [hook] = lh.received
        assert hook.verified and hook.payload["type"] == "party.nudged"
        assert hook.payload["data"]["case"]["ref"] == ref
        [email] = [m for m in smtp.messages if m["To"] == "baggage-ops@lh.example"]
        assert ref in email["Subject"]
        assert "The passenger flies home tomorrow." in email.get_body(("plain",)).get_content()


async def test_nudge_is_limited_to_once_an_hour_per_party(world: World, rig: Rig) -> None:
    ref = (await world.open_case())["ref"]
    path = f"/v1/cases/{ref}/parties/lh/nudges"
    assert (await world.as_admin("POST", path, json_body={})).status_code == 201

    world.clock.advance(minutes=30)
    too_soon = await world.as_admin("POST", path, json_body={})
    assert too_soon.status_code == 429
    assert too_soon.headers["Retry-After"] == "1800"
    assert too_soon.headers["content-type"].startswith("application/problem+json")

    world.clock.advance(minutes=30)
    assert (await world.as_admin("POST", path, json_body={})).status_code == 201
    assert len(await rig.events(ref, "party.nudged")) == 2


async def test_only_staff_nudge_and_a_stranger_learns_nothing(world: World, rig: Rig) -> None:
    ref = (await world.open_case())["ref"]
    path = f"/v1/cases/{ref}/parties/lh/nudges"
    assert (await world.as_partner("ua", "POST", path, json_body={})).status_code == 403
    assert (await world.as_partner("fastcourier", "POST", path, json_body={})).status_code == 404
    assert await rig.events(ref, "party.nudged") == []


async def test_nudging_a_released_party_is_a_conflict(world: World, rig: Rig) -> None:
    ref = (await world.open_case())["ref"]
    released = await world.as_admin("PATCH", f"/v1/cases/{ref}/parties/lh", json_body={"released": True})
    assert released.status_code == 200, released.text
    response = await world.as_admin("POST", f"/v1/cases/{ref}/parties/lh/nudges", json_body={})
    assert response.status_code == 409
    assert await rig.events(ref, "party.nudged") == []


# ---------------------------------------------------------------- the overdue queue


async def _overdue_world(world: World, rig: Rig) -> dict[str, str]:
    """Five silent parties; at t0+4h11 three are escalated and two late:

        case  partner      cadence  due    escalates         state at +4h11
        c1    lh           PT1H     +1h    +2h               escalated
        c2    lh           PT3H     +3h    +6h               late
        c3    fastcourier  PT2H     +2h    +4h               escalated
        c4    quick        PT4H     +4h    +4h10 (PT10M)     escalated
        c5    fastcourier  PT4H     +4h    +8h               late
    """
    await rig.register_partner(id="quick", name="Quick Handling", escalate_after="PT10M")
    start = world.clock.now()
    specs = {"c1": ("lh", "PT1H"), "c2": ("lh", "PT3H"), "c3": ("fastcourier", "PT2H"),
             "c4": ("quick", "PT4H"), "c5": ("fastcourier", "PT4H")}
    refs = {name: (await world.open_case(parties=[watched(p, cadence), OWNER]))["ref"]
            for name, (p, cadence) in specs.items()}
    for offset in ("1:01", "2:01", "3:01", "4:01", "4:11"):
        hours, minutes = map(int, offset.split(":"))
        world.clock.set(start + dt.timedelta(hours=hours, minutes=minutes))
        await rig.sweep()
    return refs


def _rows(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(i["case"], i["partner"], i["state"]) for i in items]


async def test_overdue_queue_puts_escalated_first_then_most_overdue(world: World, rig: Rig) -> None:
    refs = await _overdue_world(world, rig)
    start = world.clock.now() - dt.timedelta(hours=4, minutes=11)
    items = (await world.as_admin("GET", "/v1/overdue")).json()["items"]
    assert _rows(items) == [
        (refs["c1"], "lh", "escalated"),
        (refs["c3"], "fastcourier", "escalated"),
        (refs["c4"], "quick", "escalated"),  # less overdue than c2, but escalated
        (refs["c2"], "lh", "late"),
        (refs["c5"], "fastcourier", "late"),
    ]
    assert [instant(i["overdue_since"]) - start for i in items] == [
        dt.timedelta(hours=h) for h in (1, 2, 4, 3, 4)
    ]
    assert all(isinstance(i["customer_told"], bool) for i in items)
    assert [i["customer_told"] for i in items if i["state"] == "late"] == [False, False]
    assert all(i["reminders_sent"] >= 1 for i in items)


async def test_overdue_queue_filters_by_partner_and_state(world: World, rig: Rig) -> None:
    refs = await _overdue_world(world, rig)

    async def queue(query: str) -> list[tuple[str, str, str]]:
        response = await world.as_admin("GET", f"/v1/overdue?{query}")
        assert response.status_code == 200, response.text
        return _rows(response.json()["items"])

    assert await queue("partner=lh") == [(refs["c1"], "lh", "escalated"), (refs["c2"], "lh", "late")]
    assert await queue("state=late") == [(refs["c2"], "lh", "late"), (refs["c5"], "fastcourier", "late")]
    assert await queue("partner=fastcourier&state=escalated") == [(refs["c3"], "fastcourier", "escalated")]
    assert (await world.as_admin("GET", "/v1/overdue?state=on_track")).status_code == 422


async def test_overdue_queue_pages_with_a_cursor(world: World, rig: Rig) -> None:
    refs = await _overdue_world(world, rig)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await world.as_admin("GET", f"/v1/overdue?{query}")).json()
        pages += 1
        assert len(page["items"]) <= 2
        seen += [i["case"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [refs[name] for name in ("c1", "c3", "c4", "c2", "c5")]


async def test_overdue_queue_drops_a_party_once_its_case_is_closed(world: World, rig: Rig) -> None:
    refs = await _overdue_world(world, rig)
    closed = await world.as_admin("POST", f"/v1/cases/{refs['c1']}/close",
                                  json_body={"resolution": "Bag delivered by hand."})
    assert closed.status_code == 200, closed.text
    cases = [i["case"] for i in (await world.as_admin("GET", "/v1/overdue")).json()["items"]]
    assert refs["c1"] not in cases and len(cases) == 4
