"""The watchdog catches the silent partner, chases it, escalates it, and lets it back on track."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.conftest import World
from tests.support.smtp import SMTPSink
from tests.support.webhook_receiver import WebhookReceiver

if TYPE_CHECKING:
    from tests.tracker.watchdog_rig import Rig

pytest_plugins = ["tests.tracker.watchdog_rig"]  # the rig fixture
SUPERVISORS = "complaints@ua.example"


async def test_silent_partner_is_late_then_escalated_then_back_on_track(
    world: World, rig: Rig, smtp: SMTPSink
) -> None:
    async with rig.receiver_for("lh") as lh_receiver:
        await _story(world, rig, smtp, lh_receiver)


async def _story(world: World, rig: Rig, smtp: SMTPSink, lh_receiver: WebhookReceiver) -> None:
    case = await world.open_case()
    ref = case["ref"]
    await rig.tick()  # case.opened and party notices go out first
    lh_receiver.clear()
    smtp.clear()

    world.clock.advance(hours=6, minutes=1)
    result = await rig.tick()
    assert result.late == 1
    lh = next(p for p in (await world.as_admin("GET", f"/v1/cases/{ref}")).json()["parties"] if p["partner"] == "lh")
    assert lh["state"] == "late"
    late_hooks = [r for r in lh_receiver.received if r.payload["type"] == "party.late"]
    assert len(late_hooks) == 1 and late_hooks[0].verified
    assert late_hooks[0].payload["data"]["case"]["ref"] == ref
    assert len(smtp.messages) == 1
    email = smtp.messages[0]
    assert email["To"] == "baggage-ops@lh.example" and ref in email["Subject"]
    assert {part.get_content_type() for part in email.walk()} >= {"text/plain", "text/html"}

    again = await rig.tick()  # the same instant: nothing more happens
    assert again.total() == 0
    assert len(lh_receiver.received) == 1 and len(smtp.messages) == 1

    world.clock.advance(hours=6)  # +12h01
    result = await rig.tick()
    assert result.escalated == 1
    queue = (await world.as_admin("GET", "/v1/overdue")).json()["items"]
    assert queue[0]["case"] == ref and queue[0]["partner"] == "lh" and queue[0]["state"] == "escalated"
    assert [r.payload["type"] for r in lh_receiver.received] == ["party.late", "party.escalated"]
    # The supervisors hear of the escalation, and so does the silent partner (with a fresh update link).
    assert smtp.messages[0]["To"] == "baggage-ops@lh.example"
    # Sent side by side, in any order; the customer's honest note goes at once too (the first
    # message to them in hours: leading-edge coalescing).
    escalation = {m["To"]: m for m in smtp.messages[1:]}
    assert len(smtp.messages) == 4
    assert escalation.keys() == {SUPERVISORS, "baggage-ops@lh.example", "ada@example.com"}
    to_lh = escalation["baggage-ops@lh.example"]
    assert "escalated" in to_lh["Subject"] and "/p/" in to_lh.get_body(("plain",)).get_content()

    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events",
                                      json_body={"status": "located", "message": "Found in FRA"})
    assert response.status_code == 201
    assert (await world.as_admin("GET", "/v1/overdue")).json()["items"] == []
    events = (await world.as_admin("GET", f"/v1/cases/{ref}/events")).json()["items"]
    assert [e["type"] for e in events][-4:] == ["party.late", "party.escalated", "update", "party.back_on_track"]
    lh = next(p for p in (await world.as_admin("GET", f"/v1/cases/{ref}")).json()["parties"] if p["partner"] == "lh")
    assert lh["state"] == "on_track"
