"""One-tap update links: a chased party updates from a small page, marked as not key-signed."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tests.conftest import ADMIN_TOKEN, World
from tests.tracker.test_verify import _cli
from tracker.verify import verify_case

if TYPE_CHECKING:
    from tests.tracker.watchdog_rig import Rig

pytest_plugins = ["tests.tracker.watchdog_rig"]  # the rig fixture
LATE = {"hours": 6, "minutes": 1}  # lh's cadence is six hours


async def _link(rig: Rig, kind: str, partner: str = "lh", channel: str = "email") -> str:
    """The path of the one-tap link in the newest message of ``kind`` to ``partner``."""
    rows = await rig.notifications(partner_id=partner, kind=kind, channel=channel, audience="partner")
    assert rows, f"no {channel} {kind} to {partner}"
    word = next(w for w in (rows[-1].body_text or "").split() if "/p/" in w)
    return "/p/" + word.split("/p/", 1)[1]


async def _late_case(world: World, rig: Rig) -> tuple[str, str]:
    ref = (await world.open_case())["ref"]
    world.clock.advance(**LATE)
    assert (await rig.sweep()).late == 1
    return ref, await _link(rig, "party.late")


async def test_a_late_party_posts_a_status_from_its_link_and_is_back_on_track(
    world: World, rig: Rig, settings: Any
) -> None:
    ref, link = await _late_case(world, rig)
    assert await _link(rig, "party.late", channel="sms") == link, "the text and the email carry the same link"

    page = await world.client.get(link)
    assert page.status_code == 200
    assert ref in page.text and "Update due since" in page.text and "<script" not in page.text
    assert 'value="located"' in page.text, "a responsible party may set statuses"
    assert 'value="closed' not in page.text and 'value="presumed_lost"' not in page.text

    posted = await world.client.post(f"{link}/updates", data={"status": "located", "message": "Found in FRA."})
    assert posted.status_code == 303 and posted.headers["location"] == f"{link}?posted=1"
    assert "on the case's record" in (await world.client.get(posted.headers["location"])).text

    events = await rig.events(ref)
    update = next(e for e in events if e["type"] == "update")
    assert update["actor"] == "partner:lh" and update["via"] == "link" and update["signed"] is False
    assert update["status"] == "located" and update["message"] == "Found in FRA."
    assert events[-1]["type"] == "party.back_on_track"
    assert (await rig.party(ref, "lh"))["state"] == "on_track"
    case = (await world.as_admin("GET", f"/v1/cases/{ref}")).json()
    assert case["status"] == "located"

    async with rig.sessionmaker() as session:
        result = await verify_case(session=session, ref=ref)
    assert result.ok and result.via_link == 1 and result.signed == 0
    console = await _console_case_page(world, ref)
    assert "one-tap link, not key-signed" in console and "1 posted through one-tap link, not key-signed" in console
    code, out = await _cli(settings.database_url, "verify", ref)
    assert code == 0 and "1 posted through one-tap links (chained, not key-signed)" in " ".join(out.split()), out


async def test_the_next_reminder_replaces_the_link(world: World, rig: Rig) -> None:
    ref, late = await _late_case(world, rig)
    world.clock.advance(minutes=5)
    assert (await world.as_admin("POST", f"/v1/cases/{ref}/parties/lh/nudges", json_body={})).status_code == 201
    nudged = await _link(rig, "party.nudged")
    assert nudged != late
    gone = await world.client.get(late)
    assert gone.status_code == 404 and "latest message" in gone.text
    assert (await world.client.post(f"{late}/updates", data={"message": "x"})).status_code == 404
    assert (await world.client.get(nudged)).status_code == 200

    world.clock.advance(hours=6)
    assert (await rig.sweep()).escalated == 1
    escalated = await _link(rig, "party.escalated")
    assert (await world.client.get(nudged)).status_code == 404
    assert "escalated to the complaint department" in (await world.client.get(escalated)).text


async def test_a_link_lasts_72_hours(world: World, rig: Rig) -> None:
    _, link = await _late_case(world, rig)
    world.clock.advance(hours=71, minutes=59)
    assert (await world.client.get(link)).status_code == 200
    world.clock.advance(minutes=1)
    expired = await world.client.get(link)
    assert expired.status_code == 404
    assert (await world.client.post(f"{link}/updates", data={"message": "late words"})).status_code == 404


async def test_a_party_that_may_not_set_a_status_gets_only_the_message_field(world: World, rig: Rig) -> None:
    ref = (await world.open_case())["ref"]
    assert (await world.as_admin("POST", f"/v1/cases/{ref}/parties/lh/nudges", json_body={})).status_code == 201
    link = await _link(rig, "party.nudged")
    patched = await world.as_admin("PATCH", f"/v1/cases/{ref}/parties/lh", json_body={"responsible": False})
    assert patched.status_code == 200, patched.text
    page = await world.client.get(link)
    assert page.status_code == 200 and 'name="status"' not in page.text

    before = len(await rig.events(ref))
    refused = await world.client.post(f"{link}/updates", data={"status": "located"})
    assert refused.status_code == 403 and "post a note instead" in refused.text
    assert len(await rig.events(ref)) == before, "a refused post writes nothing"

    empty = await world.client.post(f"{link}/updates", data={"status": "", "message": "  "})
    assert empty.status_code == 422 and len(await rig.events(ref)) == before

    noted = await world.client.post(f"{link}/updates", data={"message": "Bag is in our FRA store."})
    assert noted.status_code == 303
    assert (await rig.events(ref))[-1]["via"] == "link"


async def test_an_invited_partner_accepts_from_its_link(world: World, rig: Rig) -> None:
    await _give_contact(rig, "fastcourier")
    other, ref = (await world.open_case())["ref"], (await world.open_case())["ref"]
    for case in (other, ref):
        invited = await world.as_partner("ua", "POST", f"/v1/cases/{case}/parties",
                                         json_body={"partner": "fastcourier", "role": "courier", "responsible": True})
        assert invited.status_code == 201 and invited.json()["state"] == "invited"
    link = await _link(rig, "party.invited", partner="fastcourier")

    page = await world.client.get(link)
    assert "You are invited" in page.text and 'name="answer"' in page.text and "/updates" not in page.text
    accepted = await world.client.post(f"{link}/invitation", data={"answer": "accept", "note": "On it."})
    assert accepted.status_code == 303
    assert (await rig.party(ref, "fastcourier"))["state"] == "on_track"
    joined = (await rig.events(ref, "party.joined"))[-1]
    assert joined["actor"] == "partner:fastcourier" and joined["via"] == "link" and joined["signed"] is False
    assert "Post update" in (await world.client.get(link)).text, "after accepting, the same link posts updates"
    assert (await rig.party(other, "fastcourier"))["state"] == "invited", "a link answers for its own case only"


async def test_a_declined_invitation_closes_the_link(world: World, rig: Rig) -> None:
    await _give_contact(rig, "fastcourier")
    ref = (await world.open_case())["ref"]
    await world.as_partner("ua", "POST", f"/v1/cases/{ref}/parties",
                           json_body={"partner": "fastcourier", "role": "courier"})
    link = await _link(rig, "party.invited", partner="fastcourier")
    declined = await world.client.post(f"{link}/invitation", data={"answer": "decline"})
    assert declined.status_code == 200 and "declined" in declined.text
    assert (await rig.party(ref, "fastcourier"))["state"] == "released"
    assert (await world.client.get(link)).status_code == 404


async def test_a_closed_case_link_opens_nothing(world: World, rig: Rig) -> None:
    ref, link = await _late_case(world, rig)
    closed = await world.as_admin("POST", f"/v1/cases/{ref}/close", json_body={"resolution": "Delivered."})
    assert closed.status_code == 200, closed.text
    assert (await world.client.get(link)).status_code == 404


async def test_unknown_links_are_limited_per_address_and_a_link_per_hour(world: World, rig: Rig) -> None:
    _, link = await _late_case(world, rig)
    for n in range(20):
        assert (await world.client.get(f"/p/{'x' * 40}{n:03d}")).status_code == 404
    limited = await world.client.get(f"/p/{'y' * 43}")
    assert limited.status_code == 429 and limited.headers["retry-after"]
    assert (await world.client.get(link)).status_code == 200, "a valid link is never refused by that count"

    for _ in range(30):
        assert (await world.client.post(f"{link}/updates", data={"message": "still searching"})).status_code == 303
    assert (await world.client.post(f"{link}/updates", data={"message": "again"})).status_code == 429
    world.clock.advance(hours=1)
    assert (await world.client.post(f"{link}/updates", data={"message": "an hour later"})).status_code == 303


async def _console_case_page(world: World, ref: str) -> str:
    login = await world.client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf is not None
    signed_in = await world.client.post("/console/login", data={"token": ADMIN_TOKEN, "csrf": csrf.group(1),
                                                                "next": ""})
    assert signed_in.status_code == 303
    page = await world.client.get(f"/console/cases/{ref}")
    assert page.status_code == 200
    return page.text


async def _give_contact(rig: Rig, partner_id: str) -> None:
    from partners.models import Partner

    async with rig.sessionmaker() as session:
        row = await session.get(Partner, partner_id)
        assert row is not None
        row.ops_email = f"ops@{partner_id}.example"
        await session.commit()


async def test_staff_read_the_reminder_but_never_the_partners_link(world: World, rig: Rig) -> None:
    ref, link = await _late_case(world, rig)
    sent = (await world.as_admin("GET", f"/v1/cases/{ref}/notifications")).json()["items"]
    late = [n for n in sent if n["kind"] == "party.late" and n["channel"] in ("email", "sms")]
    assert len(late) == 2 and all("one-tap link, shown only to its partner" in n["body_text"] for n in late)
    assert not any(link.rsplit("/", 1)[1] in (n["body_text"] or "") for n in sent)
