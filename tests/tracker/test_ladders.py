"""Escalation ladders fire each level once, at its time, to its recipients; an acknowledgement pauses them."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from tests.conftest import ADMIN_TOKEN, World
from tests.support.smtp import SMTPSink
from tests.support.twilio_double import TwilioDouble
from tracker.worker import Worker

if TYPE_CHECKING:
    from tests.tracker.watchdog_rig import Rig

pytest_plugins = ["tests.tracker.watchdog_rig"]  # the rig fixture
SUPERVISORS = "complaints@baton.example"
CONTACTS = {
    "ops_email": "dispatch@swiftvan.example", "ops_phone": "+12125550150",
    "duty_email": "duty@swiftvan.example", "duty_phone": "+12125550151",
    "account_email": "am-swiftvan@baton.example",
}
LADDER = {"levels": [
    {"after": "PT0S", "notify": ["ops_email", "ops_phone"]},
    {"after": "PT2H", "notify": ["duty_email", "duty_phone"]},
    {"after": "PT4H", "notify": ["supervisors", "account_email"]},
]}
CADENCE = dt.timedelta(hours=4)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime(2026, 11, 2, 14, 0, tzinfo=UTC))  # 09:00 in New York: no quiet hours


@pytest.fixture
def settings(db: Any, twilio: TwilioDouble, smtp: SMTPSink) -> Settings:
    return Settings(database_url=db.url, admin_token=ADMIN_TOKEN, public_base_url="http://baton.test",
                    workers_in_process=False, supervisors_email=SUPERVISORS, **twilio.settings(), smtp_url=smtp.url,
                    email_from="Baton <baton@baton.test>")


async def _case(world: World, rig: Rig) -> tuple[str, str, dt.datetime]:
    """A case whose courier SwiftVan (its own three-level ladder) is responsible; its ref, token and due time."""
    await rig.register_partner(id="swiftvan", name="SwiftVan", kind="courier", ladder=LADDER, **CONTACTS)
    case = await world.open_case(parties=[
        {"partner": "ua", "role": "owner"},
        {"partner": "swiftvan", "role": "courier", "responsible": True, "cadence": "PT4H"},
    ])
    return case["ref"], case["status_url"].rsplit("/", 1)[1], world.clock.now() + CADENCE


class Sent:
    """Who has heard what so far, through the real SMTP server and the Twilio double."""

    def __init__(self, smtp: SMTPSink, twilio: TwilioDouble) -> None:
        self.smtp, self.twilio = smtp, twilio

    def to(self) -> list[str]:
        mine = set(CONTACTS.values()) | {SUPERVISORS}
        return sorted([m["To"] for m in self.smtp.messages if m["To"] in mine]
                      + [m["to"] for m in self.twilio.messages if m["to"] in mine])


async def test_a_three_level_ladder_fires_each_level_once_at_its_time_to_its_recipients(
    world: World, rig: Rig, worker: Worker, smtp: SMTPSink, twilio: TwilioDouble
) -> None:
    ref, _, due = await _case(world, rig)
    sent = Sent(smtp, twilio)

    world.clock.set(due - dt.timedelta(minutes=1))
    await worker.run_round()
    assert sent.to() == []

    world.clock.set(due)
    await worker.run_round()
    assert sent.to() == sorted([CONTACTS["ops_email"], CONTACTS["ops_phone"]])
    assert "/p/" in next(m for m in twilio.messages if m["to"] == CONTACTS["ops_phone"])["body"]

    world.clock.set(due + dt.timedelta(hours=2) - dt.timedelta(seconds=1))
    await worker.run_round()
    assert len(sent.to()) == 2, "level 2 waits for its time"

    world.clock.set(due + dt.timedelta(hours=2))
    await worker.run_round()
    await worker.run_round()  # the same instant again: nothing twice
    assert sent.to() == sorted([CONTACTS["ops_email"], CONTACTS["ops_phone"], CONTACTS["duty_email"],
                                CONTACTS["duty_phone"]])
    assert (await rig.party(ref, "swiftvan"))["state"] == "late"

    world.clock.set(due + dt.timedelta(hours=4))
    await worker.run_round()
    assert sent.to() == sorted([*CONTACTS.values(), SUPERVISORS])
    assert (await rig.party(ref, "swiftvan"))["state"] == "escalated"

    world.clock.set(due + dt.timedelta(days=2))
    await worker.run_round()
    assert len(sent.to()) == len(CONTACTS) + 1, "a ladder's levels fire once per late episode"
    kinds = [e["type"] for e in await rig.events(ref) if e.get("partner") == "swiftvan"]
    assert kinds.count("party.late") == kinds.count("party.chased") == kinds.count("party.escalated") == 1
    duty_email = next(m for m in smtp.messages if m["To"] == CONTACTS["duty_email"])
    assert "/p/" in duty_email.get_body(("plain",)).get_content(), "the duty contact gets the update link too"
    manager = next(m for m in smtp.messages if m["To"] == CONTACTS["account_email"])
    assert "/p/" not in manager.get_body(("plain",)).get_content(), "Baton's own people get no partner link"


async def test_an_acknowledgement_pauses_the_ladder_and_tells_the_customer_why(
    world: World, rig: Rig, worker: Worker, smtp: SMTPSink, twilio: TwilioDouble
) -> None:
    ref, token, due = await _case(world, rig)
    sent = Sent(smtp, twilio)
    world.clock.set(due)
    await worker.run_round()
    assert len(sent.to()) == 2

    world.clock.advance(minutes=30)
    until = world.clock.now() + dt.timedelta(hours=6)
    acked = await world.as_partner("swiftvan", "POST", f"/v1/cases/{ref}/parties/swiftvan/ack",
                                   json_body={"reason": "Held in customs at JFK", "until": until.isoformat()})
    assert acked.status_code == 200, acked.text
    assert acked.json()["state"] == "late" and acked.json()["ack_reason"] == "Held in customs at JFK"

    status = (await world.client.get(f"/v1/status/{token}")).json()
    assert status["notices"][0]["reason"] == "Held in customs at JFK"
    assert dt.datetime.fromisoformat(status["notices"][0]["until"]) == until
    page = (await world.client.get(f"/s/{token}")).text
    assert "SwiftVan says: “Held in customs at JFK”" in page
    queue = (await world.as_admin("GET", "/v1/overdue")).json()["items"]
    assert queue[0]["partner"] == "swiftvan" and queue[0]["ack_reason"] == "Held in customs at JFK"

    world.clock.set(due + dt.timedelta(hours=5))  # level 2 (at +2 h) and level 3 (+4 h) would have fired
    await worker.run_round()
    assert len(sent.to()) == 2, "the ladder waits while acknowledged"
    assert (await rig.party(ref, "swiftvan"))["state"] == "late", "it stays late until it updates"

    # The acknowledgement lapses at +6 h 30; the 6 h acknowledged do not count, so level 2 is
    # due at +8 h and level 3 at +10 h.
    world.clock.set(until)
    await worker.run_round()
    assert len(sent.to()) == 2
    assert "party.ack_lapsed" in [e["type"] for e in await rig.events(ref)]
    assert (await world.client.get(f"/v1/status/{token}")).json()["notices"][0].get("reason") is None

    world.clock.set(due + dt.timedelta(hours=7, minutes=59))
    await worker.run_round()
    assert len(sent.to()) == 2
    world.clock.set(due + dt.timedelta(hours=8))
    await worker.run_round()
    assert sent.to() == sorted([CONTACTS["ops_email"], CONTACTS["ops_phone"], CONTACTS["duty_email"],
                                CONTACTS["duty_phone"]]), "the lapsed acknowledgement resumes the ladder"
    world.clock.set(due + dt.timedelta(hours=10))
    await worker.run_round()
    assert (await rig.party(ref, "swiftvan"))["state"] == "escalated" and SUPERVISORS in sent.to()


async def test_only_the_late_party_or_staff_acknowledge_and_for_at_most_a_day(world: World, rig: Rig,
                                                                             worker: Worker) -> None:
    ref, _, due = await _case(world, rig)
    body = {"reason": "Held in customs", "until": (world.clock.now() + dt.timedelta(hours=2)).isoformat()}
    early = await world.as_partner("swiftvan", "POST", f"/v1/cases/{ref}/parties/swiftvan/ack", json_body=body)
    assert early.status_code == 409, "on track: nothing to acknowledge"

    world.clock.set(due)
    await worker.run_round()
    later = {"reason": "Held in customs", "until": (world.clock.now() + dt.timedelta(hours=24, seconds=1)).isoformat()}
    too_far = await world.as_partner("swiftvan", "POST", f"/v1/cases/{ref}/parties/swiftvan/ack", json_body=later)
    assert too_far.status_code == 422
    body["until"] = (world.clock.now() + dt.timedelta(hours=3)).isoformat()
    other = await world.as_partner("ua", "POST", f"/v1/cases/{ref}/parties/swiftvan/ack", json_body=body)
    assert other.status_code == 403, "the owner cannot acknowledge for its courier"
    assert (await rig.party(ref, "swiftvan")).get("acked_until") is None
    staff = await world.as_admin("POST", f"/v1/cases/{ref}/parties/swiftvan/ack", json_body=body)
    assert staff.status_code == 200, "staff record what the partner said on the phone"


async def test_a_partner_ladder_is_validated(world: World) -> None:
    bad = await world.as_admin("POST", "/v1/partners", json_body={
        "id": "slowvan", "name": "SlowVan",
        "ladder": {"levels": [{"after": "PT2H", "notify": ["ops_email"]}, {"after": "PT1H", "notify": ["pager"]}]}})
    assert bad.status_code == 422
    assert (await world.as_admin("GET", "/v1/partners/slowvan")).status_code == 404


async def test_the_admin_sets_a_partners_roster_and_ladder(world: World, rig: Rig, worker: Worker,
                                                          twilio: TwilioDouble) -> None:
    ref, _, due = await _case(world, rig)
    two_steps = {"levels": [{"after": "PT0S", "notify": ["duty_phone"]}, {"after": "PT1H", "notify": ["supervisors"]}]}
    patched = await world.as_admin("PATCH", "/v1/partners/swiftvan",
                                   json_body={"duty_phone": "+12125550199", "ladder": two_steps})
    assert patched.status_code == 200, patched.text
    assert patched.json()["duty_phone"] == "+12125550199" and patched.json()["ops_email"] == CONTACTS["ops_email"]
    refused = await world.as_partner("swiftvan", "PATCH", "/v1/partners/swiftvan", json_body={"ladder": None})
    assert refused.status_code == 403, "a partner does not choose how it is chased"
    bad = await world.as_admin("PATCH", "/v1/partners/swiftvan", json_body={"ladder": {"levels": []}})
    assert bad.status_code == 422

    world.clock.set(due)
    await worker.run_round()
    assert [m["to"] for m in twilio.messages if m["to"].startswith("+1212555")] == ["+12125550199"]
    world.clock.set(due + dt.timedelta(hours=1))
    await worker.run_round()
    assert (await rig.party(ref, "swiftvan"))["state"] == "escalated", "the new ladder escalates after an hour"


async def test_the_console_form_sets_the_roster_and_refuses_a_bad_ladder(world: World, rig: Rig) -> None:
    await rig.register_partner(id="swiftvan", name="SwiftVan", kind="courier", **CONTACTS)
    login = await world.client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf is not None
    assert (await world.client.post("/console/login", data={"token": ADMIN_TOKEN, "csrf": csrf.group(1),
                                                            "next": ""})).status_code == 303
    page = await world.client.get("/console/admin/partners")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {"csrf": token, "ops_email": CONTACTS["ops_email"], "duty_phone": "+12125550177",
            "ladder": json.dumps(LADDER)}
    saved = await world.client.post("/console/admin/partners/swiftvan/contacts", data=form)
    assert saved.status_code == 303, saved.text
    partner = (await world.as_admin("GET", "/v1/partners/swiftvan")).json()
    assert partner["duty_phone"] == "+12125550177" and partner["duty_email"] is None
    assert [level["notify"] for level in partner["ladder"]["levels"]][2] == ["supervisors", "account_email"]
    shown = (await world.client.get("/console/admin/partners")).text
    assert "PT2H → duty_email, duty_phone" in shown
    refused = await world.client.post("/console/admin/partners/swiftvan/contacts",
                                      data={**form, "ladder": "{levels: oops"})
    assert refused.status_code == 422
    assert (await world.as_admin("GET", "/v1/partners/swiftvan")).json()["duty_phone"] == "+12125550177"


async def test_a_case_types_ladder_applies_to_partners_without_their_own(
    world: World, rig: Rig, worker: Worker, twilio: TwilioDouble
) -> None:
    from tracker.models import CaseType

    async with rig.sessionmaker() as session:
        baggage = await session.get(CaseType, "baggage")
        assert baggage is not None
        baggage.definition = {**baggage.definition, "ladder": {"levels": [
            {"after": "PT0S", "notify": ["duty_phone"]}, {"after": "PT30M", "notify": ["supervisors"]}]}}
        await session.commit()
    rig.caches.clear()
    await rig.register_partner(id="swiftvan", name="SwiftVan", kind="courier", **CONTACTS)  # no ladder of its own
    case = await world.open_case(parties=[
        {"partner": "ua", "role": "owner"},
        {"partner": "swiftvan", "role": "courier", "responsible": True, "cadence": "PT4H"}])
    world.clock.advance(hours=4)
    await worker.run_round()
    assert [m["to"] for m in twilio.messages if m["to"] in CONTACTS.values()] == [CONTACTS["duty_phone"]]
    world.clock.advance(minutes=30)
    await worker.run_round()
    assert (await rig.party(case["ref"], "swiftvan"))["state"] == "escalated", "the type's second level escalates"
