"""Claims (SPEC "Rights, deadlines and claims"): filing (the customer, with a receipt; the owner for them),
deciding in whole or part, payment, money as decimal strings only, who may see and decide, and the
complaint department's view of claims overdue for an answer, with the clock moved."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from notifications.models import Notification
from tests.conftest import World
from tests.tracker.test_evidence import multipart, photo_with_gps
from tracker.models import Attachment
from tracker.watchdog import Watchdog, WatchdogConfig

ITEMS = [{"description": "Toothbrush and toothpaste", "amount": "7.90", "currency": "USD"},
         {"description": "A shirt", "amount": "34.10", "currency": "USD"},
         {"description": "Taxi in Frankfurt", "amount": "22.50", "currency": "EUR"}]


def _sessions(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


def _token(case: dict[str, Any]) -> str:
    return case["status_url"].rsplit("/", 1)[1]


async def _file(world: World, ref: str, items: list[dict[str, Any]] = ITEMS, kind: str = "interim_expenses") -> dict:
    response = await world.as_partner("ua", "POST", f"/v1/cases/{ref}/claims", json_body={"kind": kind, "items": items})
    assert response.status_code == 201, response.text
    return response.json()


async def test_the_customer_files_from_the_status_page_with_a_receipt(world: World) -> None:
    case = await world.open_case()
    fields = {"kind": "interim_expenses", "description_1": "Toothbrush", "amount_1": "7,90", "currency_1": "usd",
              "description_2": "A shirt", "amount_2": "34.10", "currency_2": "USD"}
    body, ctype = multipart({"receipt": ("receipt.jpg", photo_with_gps(), "image/jpeg")}, fields)
    response = await world.client.post(f"/s/{_token(case)}/claims", content=body, headers={"content-type": ctype})
    assert response.status_code == 303, response.text
    [claim] = (await world.as_partner("ua", "GET", f"/v1/cases/{case['ref']}/claims")).json()["items"]
    assert claim["state"] == "filed" and claim["filed_by"] == "customer"
    assert claim["totals"] == {"USD": "42.00"}  # Decimal: 7.90 + 34.10, exactly
    receipt = claim["items"][0]["attachment"]
    async with _sessions(world)() as session:
        attachment = await session.get(Attachment, receipt)
    assert attachment is not None and attachment.kind == "receipt" and attachment.from_customer
    answer_due = dt.datetime.fromisoformat(claim["answer_due"])
    assert answer_due == world.clock.now() + dt.timedelta(days=30)  # baggage: claim_answer_within P30D
    status = (await world.client.get(f"/v1/status/{_token(case)}")).json()
    assert [c["totals"] for c in status["claims"]] == [{"USD": "42.00"}]


@pytest.mark.parametrize(("amount", "why"), [(12.5, "a JSON number"), ("12.505", "three decimals"),
                                             ("-3.00", "negative"), ("1e3", "exponent"), ("12.50 ", "a space")])
async def test_money_is_a_decimal_string_and_nothing_else(world: World, amount: Any, why: str) -> None:
    case = await world.open_case()
    response = await world.as_partner("ua", "POST", f"/v1/cases/{case['ref']}/claims", json_body={
        "kind": "delay", "items": [{"description": "x", "amount": amount, "currency": "EUR"}]})
    assert response.status_code == 422, (why, response.text)
    assert (await world.as_partner("ua", "GET", f"/v1/cases/{case['ref']}/claims")).json()["items"] == []


async def test_an_unknown_currency_or_a_foreign_receipt_is_refused(world: World) -> None:
    case = await world.open_case()
    bad = await world.as_partner("ua", "POST", f"/v1/cases/{case['ref']}/claims", json_body={
        "kind": "delay", "items": [{"description": "x", "amount": "1.00", "currency": "XYZ"}]})
    assert bad.status_code == 422 and "ISO 4217" in bad.text
    foreign = await world.as_partner("ua", "POST", f"/v1/cases/{case['ref']}/claims", json_body={
        "kind": "delay", "items": [{"description": "x", "amount": "1.00", "currency": "EUR", "attachment": 999}]})
    assert foreign.status_code == 422


async def test_the_owner_decides_in_part_then_pays_and_the_customer_is_told_each_time(world: World) -> None:
    case = await world.open_case()
    claim = await _file(world, case["ref"])
    path = f"/v1/cases/{case['ref']}/claims/{claim['id']}"
    whole = await world.as_partner("ua", "POST", f"{path}/decision", json_body={
        "decision": "approved", "amount": "30.00", "currency": "USD", "reason": "Receipts for the shirt only"})
    assert whole.status_code == 422  # "approved" is the whole amount: a part is partly_approved
    part = await world.as_partner("ua", "POST", f"{path}/decision", json_body={
        "decision": "partly_approved", "amount": "34.10", "currency": "USD", "reason": "The shirt, with its receipt"})
    assert part.status_code == 200, part.text
    assert part.json()["state"] == "partly_approved" and part.json()["decision"]["amount"] == "34.10"
    again = await world.as_partner("ua", "POST", f"{path}/decision", json_body={
        "decision": "rejected", "reason": "changed our mind"})
    assert again.status_code == 409
    paid = await world.as_partner("ua", "POST", f"{path}/paid", json_body={"reference": "SEPA-2026-11-0042"})
    assert paid.status_code == 200 and paid.json()["state"] == "paid"
    assert paid.json()["paid"]["reference"] == "SEPA-2026-11-0042"
    events = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/events")).json()["items"]
    assert [e["type"] for e in events if e["type"].startswith("claim.")] == ["claim.filed", "claim.decided",
                                                                            "claim.paid"]
    decided = next(e for e in events if e["type"] == "claim.decided")
    assert decided["signed"] is True and decided["visibility"] == "public"
    async with _sessions(world)() as session:
        rows = (await session.scalars(select(Notification).where(Notification.audience == "customer"))).all()
    kinds = [t["kind"] for row in rows for t in row.payload["triggers"]]
    assert kinds.count("claim_decided") >= 1 and kinds.count("claim_paid") >= 1


async def test_a_rejection_needs_a_reason_and_cannot_be_paid(world: World) -> None:
    case = await world.open_case()
    claim = await _file(world, case["ref"], kind="damage")
    path = f"/v1/cases/{case['ref']}/claims/{claim['id']}"
    assert (await world.as_admin("POST", f"{path}/decision", json_body={"decision": "rejected"})).status_code == 422
    rejected = await world.as_admin("POST", f"{path}/decision", json_body={
        "decision": "rejected", "reason": "Damage predates the flight (check-in photo)"})
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    assert (await world.as_admin("POST", f"{path}/paid", json_body={"reference": "x"})).status_code == 409


async def test_a_carrier_cannot_decide_or_read_and_a_non_party_sees_nothing(world: World) -> None:
    case = await world.open_case()
    claim = await _file(world, case["ref"])
    path = f"/v1/cases/{case['ref']}/claims"
    decision = {"decision": "rejected", "reason": "not ours"}
    assert (await world.as_partner("lh", "POST", f"{path}/{claim['id']}/decision", json_body=decision)).status_code == 403
    assert (await world.as_partner("lh", "GET", path)).status_code == 403
    assert (await world.as_partner("lh", "POST", path, json_body={"kind": "delay", "items": ITEMS})).status_code == 403
    assert (await world.as_partner("fastcourier", "GET", path)).status_code == 404
    assert (await world.as_partner("ua", "GET", "/v1/claims")).status_code == 403
    state = (await world.as_partner("ua", "GET", path)).json()["items"][0]["state"]
    assert state == "filed"


async def test_an_unanswered_claim_goes_overdue_then_escalates_like_a_late_party(world: World) -> None:
    case = await world.open_case()
    claim = await _file(world, case["ref"])
    due = dt.datetime.fromisoformat(claim["answer_due"])
    watchdog = Watchdog(sessionmaker=_sessions(world), clock=world.clock,
                        config=WatchdogConfig(supervisors_email="complaints@baton.example"))
    world.clock.set(due - dt.timedelta(hours=1))
    assert (await watchdog.sweep()).claims == 0
    assert (await world.as_admin("GET", "/v1/claims?overdue=true")).json()["items"] == []
    world.clock.set(due)
    assert (await watchdog.sweep()).claims == 1
    [overdue] = (await world.as_admin("GET", "/v1/claims?overdue=true")).json()["items"]
    assert overdue["id"] == claim["id"] and overdue["overdue"] and not overdue["escalated"]
    async with _sessions(world)() as session:
        emails = (await session.scalars(select(Notification).where(Notification.kind == "claim.overdue"))).all()
    assert [(e.channel, e.recipient) for e in emails] == [("email", "baggage@ua.example")]
    world.clock.set(due + dt.timedelta(days=7))
    assert (await watchdog.sweep()).claims == 1
    [escalated] = (await world.as_admin("GET", "/v1/claims?overdue=true")).json()["items"]
    assert escalated["escalated"]
    events = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/events")).json()["items"]
    assert [e["type"] for e in events if e["type"] in ("claim.overdue", "claim.escalated")] == [
        "claim.overdue", "claim.escalated"]
    world.clock.set(due + dt.timedelta(days=30))
    assert (await watchdog.sweep()).claims == 0  # once each
    answered = await world.as_partner("ua", "POST", f"/v1/cases/{case['ref']}/claims/{claim['id']}/decision",
                                      json_body={"decision": "rejected", "reason": "late, but no"})
    assert answered.status_code == 200
    assert (await world.as_admin("GET", "/v1/claims?overdue=true")).json()["items"] == []
