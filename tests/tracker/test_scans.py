"""Bag scans (SPEC "Partners without friction", scans): Type B and CSV produce the right events on the
right cases, duplicates and unmatched scans are counted, a late party's scan clears it, a courier's
delivery scan delivers, a receiver's scan accepts its handoff, a stranger's scan invites it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from sqlalchemy import select

from tests.conftest import World
from tracker.models import BagScan, Party
from tracker.watchdog import Watchdog, WatchdogConfig

TAG_A, TAG_B, TAG_C = "0016123456", "0220777001", "0074555123"


def _sessions(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


async def _case(world: World, tag: str, **overrides: Any) -> dict[str, Any]:
    return await world.open_case(external_refs={"worldtracer": "JFKUA12345", "bag_tag": tag}, **overrides)


async def post_scans(world: World, partner: str, body: str | bytes, ctype: str) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return await world.client.post("/v1/scans", content=content, headers={"content-type": ctype},
                                   auth=world.partners[partner].signer())


async def _events(world: World, ref: str, type_: str = "scan") -> list[dict[str, Any]]:
    items = (await world.as_admin("GET", f"/v1/cases/{ref}/events")).json()["items"]
    return [e for e in items if e["type"] == type_]


async def _party(world: World, ref: str, partner: str) -> dict[str, Any]:
    case = (await world.as_admin("GET", f"/v1/cases/{ref}")).json()
    return next(p for p in case["parties"] if p["partner"] == partner)


def csv(*rows: str) -> str:
    return "bag_tag,at,station,point,flight,note\n" + "\n".join(rows) + "\n"


def bpm(tag: str, at: dt.datetime, station: str = "FRA", flight: str = "LH400") -> str:
    return (f"BPM\n.V/1T{station}\n.J/S//AGENT12/SCAN7/{at.strftime('%d%b').upper()}/{at.strftime('%H%M')}\n"
            f".F/{flight}/{at.strftime('%d%b').upper()}/JFK/Y\n.N/{tag}001\n.P/1LOVELACE/ADA\nENDBPM\n")


async def test_a_type_b_bpm_becomes_a_scan_event_and_counts_as_the_carriers_update(world: World) -> None:
    case = await _case(world, TAG_A)
    scanned = world.clock.now() - dt.timedelta(minutes=20)
    world.clock.advance(dt.timedelta(minutes=5))
    response = await post_scans(world, "lh", "QK FRAKKLH\n.FRAXXLH 020840\n" + bpm(TAG_A, scanned), "text/plain")
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "matched": 1, "unmatched": 0, "duplicates": 0, "errors": []}
    [event] = await _events(world, case["ref"])
    assert (event["actor"], event["bag_tag"], event["station"], event["flight"]) == ("partner:lh", TAG_A, "FRA",
                                                                                     "LH400")
    assert "LOVELACE" not in str(event)  # the passenger's name in the message is never kept
    assert (await _party(world, case["ref"], "lh"))["last_update_at"] is not None


async def test_a_csv_file_lands_on_the_right_cases_and_duplicates_and_unmatched_are_counted(world: World) -> None:
    a, b = await _case(world, TAG_A), await _case(world, TAG_B)
    at = (world.clock.now() - dt.timedelta(hours=1)).isoformat()
    body = csv(f"{TAG_A},{at},FRA,transfer,LH400,", f'{TAG_B},{at},JFK,arrival,UA123,"belt 4, left side"',
               f"{TAG_C},{at},MUC,on_hand,,", f"{TAG_A},{at},FRA,transfer,LH400,")
    first = (await post_scans(world, "lh", body, "text/csv")).json()
    assert first == {"accepted": 3, "matched": 2, "unmatched": 1, "duplicates": 1, "errors": []}
    assert [e["bag_tag"] for e in await _events(world, a["ref"])] == [TAG_A]
    [on_b] = await _events(world, b["ref"])
    assert on_b["note"] == "belt 4, left side" and on_b["point"] == "arrival"
    again = (await post_scans(world, "lh", body, "text/csv")).json()
    assert (again["accepted"], again["duplicates"]) == (0, 4)
    assert len(await _events(world, a["ref"])) == 1


async def test_bad_lines_are_reported_and_the_good_ones_kept(world: World) -> None:
    await _case(world, TAG_A)
    at = (world.clock.now() - dt.timedelta(minutes=5)).isoformat()
    body = csv(f"{TAG_A},{at},FRA,transfer,,", f"12345,{at},FRA,transfer,,", f"{TAG_B},yesterday,FRA,transfer,,")
    answer = (await post_scans(world, "lh", body, "text/csv")).json()
    assert answer["accepted"] == 1 and answer["matched"] == 1
    assert [e["line"] for e in answer["errors"]] == [3, 4]


async def test_a_late_partys_scan_clears_it(world: World) -> None:
    case = await _case(world, TAG_A)
    watchdog = Watchdog(sessionmaker=_sessions(world), clock=world.clock, config=WatchdogConfig())
    world.clock.advance(dt.timedelta(hours=6, minutes=1))
    await watchdog.sweep()
    assert (await _party(world, case["ref"], "lh"))["state"] == "late"
    at = (world.clock.now() - dt.timedelta(minutes=1)).isoformat()
    assert (await post_scans(world, "lh", csv(f"{TAG_A},{at},FRA,loading,LH400,"), "text/csv")).status_code == 200
    assert (await _party(world, case["ref"], "lh"))["state"] == "on_track"
    assert len(await _events(world, case["ref"], "party.back_on_track")) == 1


async def test_a_couriers_delivery_scan_sets_delivered(world: World) -> None:
    case = await _case(world, TAG_A, parties=[
        {"partner": "lh", "role": "carrier", "responsible": True}, {"partner": "ua", "role": "owner"},
        {"partner": "fastcourier", "role": "courier", "responsible": True}])
    at = (world.clock.now() - dt.timedelta(minutes=2)).isoformat()
    await post_scans(world, "fastcourier", csv(f"{TAG_A},{at},BOS,delivery,,at the front desk"), "text/csv")
    read = (await world.as_admin("GET", f"/v1/cases/{case['ref']}")).json()
    assert read["status"] == "delivered" and read["delivered_at"] is not None
    rights = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/rights")).json()["items"]
    assert next(r for r in rights if r["code"] == "delay_complaint")["state"] == "open"  # counts from now


async def test_the_receivers_scan_accepts_a_pending_handoff(world: World) -> None:
    case = await _case(world, TAG_A)
    handoff = await world.as_admin("POST", f"/v1/cases/{case['ref']}/handoffs", json_body={"to": "ua", "from": "lh"})
    assert handoff.status_code == 201
    at = (world.clock.now() - dt.timedelta(minutes=1)).isoformat()
    await post_scans(world, "ua", csv(f"{TAG_A},{at},JFK,arrival,LH400,"), "text/csv")
    [listed] = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/handoffs")).json()["items"]
    assert listed["state"] == "accepted"
    assert (await _party(world, case["ref"], "ua"))["responsible"] is True
    assert (await _party(world, case["ref"], "lh"))["responsible"] is False


async def test_a_partner_not_on_the_case_that_scans_the_bag_is_invited_as_a_handler(world: World) -> None:
    case = await _case(world, TAG_A)
    at = (world.clock.now() - dt.timedelta(minutes=1)).isoformat()
    answer = (await post_scans(world, "swissport-fra", csv(f"{TAG_A},{at},FRA,on_hand,,belt 14"), "text/csv")).json()
    assert answer["matched"] == 1
    party = await _party(world, case["ref"], "swissport-fra")
    assert (party["role"], party["state"], party["responsible"]) == ("handler", "invited", False)
    assert len(await _events(world, case["ref"])) == 1


async def test_an_unmatched_scan_waits_for_its_case(world: World) -> None:
    at = (world.clock.now() - dt.timedelta(hours=2)).isoformat()
    answer = (await post_scans(world, "lh", csv(f"{TAG_C},{at},FRA,on_hand,,"), "text/csv")).json()
    assert (answer["matched"], answer["unmatched"]) == (0, 1)
    world.clock.advance(dt.timedelta(hours=1))
    case = await _case(world, TAG_C)
    [event] = await _events(world, case["ref"])
    assert event["bag_tag"] == TAG_C and event["actor"] == "partner:lh"
    async with _sessions(world)() as session:
        [row] = (await session.scalars(select(BagScan))).all()
    assert row.matched_at is not None


async def test_only_partners_post_scans_and_other_bodies_are_refused(world: World) -> None:
    at = world.clock.now().isoformat()
    staff = await world.client.post("/v1/scans", content=csv(f"{TAG_A},{at},FRA,transfer,,").encode(),
                                    headers={**world.admin, "content-type": "text/csv"})
    assert staff.status_code == 403
    xml = await post_scans(world, "lh", "<scans/>", "application/xml")
    assert xml.status_code == 415
    shape = await post_scans(world, "lh", '{"not": "scans"}', "application/json")
    assert shape.status_code == 422


async def test_ten_thousand_scans_are_accepted_in_one_request(world: World) -> None:
    at = (world.clock.now() - dt.timedelta(hours=3)).isoformat()
    rows = [f"{1000000000 + n:010d},{at},FRA,transfer,LH400," for n in range(10_000)]
    await _case(world, f"{1000000000 + 42:010d}")
    answer = (await post_scans(world, "lh", csv(*rows), "text/csv")).json()
    assert (answer["accepted"], answer["matched"], answer["unmatched"]) == (10_000, 1, 9_999)
    async with _sessions(world)() as session:
        kept = await session.scalar(select(BagScan.id).order_by(BagScan.id.desc()).limit(1))
    assert kept is not None


async def test_unmatched_scans_are_forgotten_after_thirty_days(world: World) -> None:
    from tracker.worker import housekeeping

    at = (world.clock.now() - dt.timedelta(hours=2)).isoformat()
    await post_scans(world, "lh", csv(f"{TAG_C},{at},FRA,on_hand,,"), "text/csv")
    async with _sessions(world)() as session:
        await housekeeping(session, world.clock.now() + dt.timedelta(days=29))
        await session.commit()
        assert len((await session.scalars(select(BagScan))).all()) == 1
        await housekeeping(session, world.clock.now() + dt.timedelta(days=30, minutes=1))
        await session.commit()
        assert (await session.scalars(select(BagScan))).all() == []


async def test_a_released_party_is_not_put_back_on_track_by_a_scan(world: World) -> None:
    case = await _case(world, TAG_A)
    released = await world.as_admin("PATCH", f"/v1/cases/{case['ref']}/parties/lh", json_body={"released": True})
    assert released.status_code == 200
    at = (world.clock.now() - dt.timedelta(minutes=1)).isoformat()
    await post_scans(world, "lh", csv(f"{TAG_A},{at},FRA,transfer,,"), "text/csv")
    async with _sessions(world)() as session:
        party = await session.scalar(select(Party).where(Party.partner_id == "lh"))
    assert party is not None and party.state == "released"


async def test_me_says_who_the_credentials_belong_to(world: World) -> None:
    me = await world.as_partner("lh", "GET", "/v1/me")
    assert me.json() == {"kind": "partner", "partner": "lh", "name": "Lufthansa", "role": None}
    staff = await world.as_admin("GET", "/v1/me")
    assert staff.json()["kind"] == "staff" and staff.json()["role"] == "admin"
    assert (await world.client.get("/v1/me")).status_code == 401
