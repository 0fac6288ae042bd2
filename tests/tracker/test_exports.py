"""Exports (SPEC "The complaint department's tools"): ``GET /v1/exports/{dataset}.{format}``, the console's
download and ``baton export`` stream the same rows, filtered by time and partner, with no personal data and
no sandbox cases. Every test runs on SQLite and PostgreSQL (the ``world`` fixture)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from notifications.models import Notification
from tests.conftest import World
from tests.tracker.test_console import Console
from tracker.complaints import _exports, export_columns, export_records, prepare_export
from tracker.models import Case
from tracker.principals import create_staff_token
from tracker.worker import Worker

DATASETS = ("cases", "events", "parties", "notifications", "scorecards")
FORMATS = ("csv", "ndjson")
ADA = {"name": "Ada Lovelace", "phone": "+14155550100", "email": "ada@example.com", "locale": "en",
       "timezone": "America/New_York"}
GRACE = {"name": "Grace Hopper", "phone": "+14155550111", "email": "grace@hopper.example", "locale": "en",
         "timezone": "America/New_York"}
ALAN = {"name": "Alan Turing", "phone": "+447911123456", "email": "alan@turing.example", "locale": "en",
        "timezone": "Europe/London"}
SANDY = {"name": "Sandy Quartermaine", "phone": "+14155550199", "email": "sandy@quartermaine.example", "locale": "en",
         "timezone": "UTC"}
CUSTOMERS = (ADA, GRACE, ALAN, SANDY)


def _sessions(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


def _stamp(at: dt.datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def export(world: World, dataset: str, fmt: str = "csv", **params: str) -> httpx.Response:
    return await world.client.get(f"/v1/exports/{dataset}.{fmt}", params=params, headers=world.admin)


def parse(response: httpx.Response, fmt: str) -> list[dict[str, Any]]:
    """The rows of an export, read with the csv module or one json.loads per line."""
    assert response.status_code == 200, response.text
    text = response.content.decode("utf-8")
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text, newline="")))
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.split("\n") if line]


def header(response: httpx.Response) -> list[str]:
    return next(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))


@dataclass
class Story:
    """Three cases opened a day apart (and a sandbox one), with known parties and one update."""

    a: str  # day 0, owner ua, parties ua + lh (carrier); lh updates it on day 1
    b: str  # day 1, owner ua, parties ua + swissport-fra
    c: str  # day 2, owner lh, party lh only
    sandbox: str  # day 1 (after b), owner ua with lh; marked sandbox
    t0: dt.datetime


async def _story(world: World) -> Story:
    t0 = world.clock.now()
    a = await world.open_case(customer=ADA)
    world.clock.advance(days=1)
    b = await world.open_case(customer=GRACE, title="Bag left in Frankfurt", parties=[
        {"partner": "swissport-fra", "role": "handler", "responsible": True, "cadence": "PT6H"},
        {"partner": "ua", "role": "owner"}])
    world.clock.advance(hours=1)
    update_a = await world.as_partner("lh", "POST", f"/v1/cases/{a['ref']}/events",
                                      json_body={"status": "located", "message": "Your bag is in Frankfurt.",
                                                 "internal_note": "tag re-printed"})
    assert update_a.status_code == 201, update_a.text
    world.clock.advance(hours=1)
    sandbox = await world.open_case(customer=SANDY, title="Practice case")
    async with _sessions(world)() as session:
        await session.execute(update(Case).where(Case.ref == sandbox["ref"]).values(sandbox=True))
        await session.commit()
    world.clock.set(t0 + dt.timedelta(days=2))
    c = await world.open_case(customer=ALAN, owner="lh", title="Bag damaged on LH401",
                              parties=[{"partner": "lh", "role": "owner", "responsible": True, "cadence": "PT6H"}])
    world.clock.advance(hours=1)
    return Story(a=a["ref"], b=b["ref"], c=c["ref"], sandbox=sandbox["ref"], t0=t0)


async def _timeline(world: World, ref: str) -> list[dict[str, Any]]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}/events?limit=200")
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return response.json()["items"]


async def _render_notifications(world: World, settings: Any) -> None:
    app = world.client._transport.app  # type: ignore[attr-defined]
    worker = Worker(sessionmaker=app.state.runtime.sessionmaker, clock=world.clock, settings=settings)
    # The customer's messages rendered and stored as "logged" (no providers here); not the watchdog's round.
    await worker.dispatcher.drain(max_batches=10)
    await worker.close()


# ---------------------------------------------------------------- formats and columns


async def test_every_dataset_parses_in_both_formats_with_its_documented_columns(world: World) -> None:
    story = await _story(world)
    assert export_columns("events")[:9] == ("id", "case", "seq", "type", "actor", "partner", "visibility",
                                            "occurred_at", "received_at")
    assert {"signed", "keyid", "via", "body"} <= set(export_columns("events"))
    for dataset in DATASETS:
        columns = list(export_columns(dataset))
        for fmt in FORMATS:
            response = await export(world, dataset, fmt)
            rows = parse(response, fmt)
            assert rows, f"{dataset}.{fmt} is empty"
            if fmt == "csv":
                assert response.headers["content-type"] == "text/csv; charset=utf-8"
                assert header(response) == columns
                assert b"\r\n" in response.content  # RFC 4180 line ends
            else:
                assert response.headers["content-type"] == "application/x-ndjson"
                top = [c for c in columns if "." not in c] if dataset != "scorecards" else None
                for row in rows:
                    if top is not None:
                        assert list(row) == top
                    else:  # scorecards keep their nested objects; the CSV's dotted columns reach into them
                        assert [k for k in columns if _reach(row, k) is _MISSING] == []
            now = story.t0 + dt.timedelta(days=2, hours=1)
            # No "from": the start of time, or for scorecards the default 30-day window; no "to": now.
            since = (now - dt.timedelta(days=30)).strftime("%Y%m%dT%H%M%SZ") if dataset == "scorecards" else "start"
            assert response.headers["content-disposition"] == (
                f'attachment; filename="baton-{dataset}-{since}-{now.strftime("%Y%m%dT%H%M%SZ")}.{fmt}"')
            assert response.headers["cache-control"] == "no-store"


_MISSING = object()


def _reach(row: dict[str, Any], column: str) -> Any:
    value: Any = row
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


async def test_events_carry_header_signature_and_body_and_staff_see_internal_ones(world: World) -> None:
    story = await _story(world)
    csv_rows = [r for r in parse(await export(world, "events", "csv"), "csv") if r["case"] == story.a]
    json_rows = [r for r in parse(await export(world, "events", "ndjson"), "ndjson") if r["case"] == story.a]
    timeline = await _timeline(world, story.a)
    assert [int(r["seq"]) for r in csv_rows] == [r["seq"] for r in json_rows] == [e["seq"] for e in timeline]
    [update_csv] = [r for r in csv_rows if r["type"] == "update"]
    [update_json] = [r for r in json_rows if r["type"] == "update"]
    assert update_csv["signed"] == "true" and update_csv["keyid"] == "lh-ed" and update_csv["partner"] == "lh"
    assert update_json["signed"] is True and update_json["keyid"] == "lh-ed" and update_json["via"] is None
    assert json.loads(update_csv["body"]) == update_json["body"]
    assert update_json["body"]["internal_note"] == "tag re-printed"  # staff see internal notes
    [source] = [e for e in timeline if e["seq"] == update_json["seq"]]
    assert update_json["hash"] == source["hash"] and update_json["received_at"] == _stamp(
        dt.datetime.fromisoformat(source["received_at"]).astimezone(dt.timezone.utc))
    opened = next(r for r in json_rows if r["type"] == "case.opened")
    assert opened["signed"] is False and opened["keyid"] is None and opened["actor"].startswith("staff:")


async def test_scorecards_are_the_scorecard_field_by_field(world: World) -> None:
    await _story(world)
    now = world.clock.now()
    window = {"from": _stamp(now - dt.timedelta(days=30)), "to": _stamp(now)}
    rows = parse(await export(world, "scorecards", "ndjson", partner="lh", **window), "ndjson")
    card = await world.as_admin("GET", "/v1/partners/lh/scorecard?days=30")
    assert rows == [card.json()]
    assert rows[0]["updates"] == 1
    [flat] = parse(await export(world, "scorecards", "csv", partner="lh", **window), "csv")
    assert flat["partner"] == "lh" and flat["updates"] == "1"
    assert flat["time_to_first_update.count"] == str(card.json()["time_to_first_update"]["count"])
    assert json.loads(flat["satisfaction"]) == card.json()["satisfaction"]
    every = parse(await export(world, "scorecards", "csv"), "csv")
    assert [r["partner"] for r in every] == ["fastcourier", "lh", "swissport-fra", "ua"]


async def test_a_scorecards_window_ending_in_the_past_leaves_later_updates_out(world: World) -> None:
    story = await _story(world)
    window = {"from": _stamp(story.t0 - dt.timedelta(days=1)), "to": _stamp(story.t0 + dt.timedelta(hours=12))}
    [card] = parse(await export(world, "scorecards", "ndjson", partner="lh", **window), "ndjson")
    assert card["updates"] == 0  # lh's one update came on day 1, after the window


# ---------------------------------------------------------------- filters


async def test_filters_by_time_and_partner_select_the_right_rows(world: World) -> None:
    story = await _story(world)
    day1 = _stamp(story.t0 + dt.timedelta(hours=12))
    day2 = _stamp(story.t0 + dt.timedelta(days=1, hours=12))

    async def refs(dataset: str, column: str = "case", **params: str) -> list[str]:
        return [r[column] for r in parse(await export(world, dataset, "ndjson", **params), "ndjson")]

    # cases: by opened_at, and those the partner is a party to
    assert await refs("cases", "ref") == [story.a, story.b, story.c]
    assert await refs("cases", "ref", **{"from": day1}) == [story.b, story.c]
    assert await refs("cases", "ref", to=day1) == [story.a]
    assert await refs("cases", "ref", **{"from": day1, "to": day2}) == [story.b]
    assert await refs("cases", "ref", partner="lh") == [story.a, story.c]
    assert await refs("cases", "ref", partner="swissport-fra") == [story.b]
    assert await refs("cases", "ref", partner="lh", **{"from": day1}) == [story.c]
    assert await refs("cases", "ref", partner="fastcourier") == []

    # parties: by joined_at, and the partner's own
    parties = parse(await export(world, "parties", "ndjson"), "ndjson")
    assert sorted((p["case"], p["partner"]) for p in parties) == sorted(
        [(story.a, "lh"), (story.a, "ua"), (story.b, "swissport-fra"), (story.b, "ua"), (story.c, "lh")])
    assert sorted(await refs("parties", partner="ua")) == sorted([story.a, story.b])
    assert sorted(await refs("parties", **{"from": day1})) == sorted([story.b, story.b, story.c])
    assert await refs("parties", partner="lh", to=day1) == [story.a]

    # events: by received_at, on the cases the partner is a party to (whoever wrote them)
    timelines = {ref: await _timeline(world, ref) for ref in (story.a, story.b, story.c)}

    def expected(refs_: tuple[str, ...], since: str | None = None, until: str | None = None) -> int:
        def inside(e: dict[str, Any]) -> bool:
            at = dt.datetime.fromisoformat(e["received_at"])
            return ((since is None or at >= dt.datetime.fromisoformat(since))
                    and (until is None or at < dt.datetime.fromisoformat(until)))
        return sum(1 for ref in refs_ for e in timelines[ref] if inside(e))

    assert len(await refs("events")) == expected((story.a, story.b, story.c))
    assert len(await refs("events", partner="lh")) == expected((story.a, story.c)) == len(timelines[story.a]) + len(
        timelines[story.c])
    in_day1 = await refs("events", **{"from": day1, "to": day2})
    assert len(in_day1) == expected((story.a, story.b), day1, day2) and set(in_day1) == {story.a, story.b}
    assert await refs("events", partner="swissport-fra", to=day1) == []
    lh_day1 = [e for e in parse(await export(world, "events", "ndjson", partner="lh", **{"from": day1, "to": day2}),
                                "ndjson")]
    assert [(e["case"], e["type"]) for e in lh_day1] == [(story.a, "update")]

    # notifications: by created_at, and those to the partner (checked against the outbox itself)
    async with _sessions(world)() as session:
        outbox = (await session.execute(select(Notification.id, Notification.partner_id, Notification.created_at,
                                                Notification.case_id))).all()
        sandbox_id = await session.scalar(select(Case.id).where(Case.ref == story.sandbox))
    kept = [row for row in outbox if row.case_id != sandbox_id]
    assert kept and len(kept) < len(outbox), "the story writes notifications, the sandbox case's too"
    every = parse(await export(world, "notifications", "ndjson"), "ndjson")
    assert [n["id"] for n in every] == sorted(row.id for row in kept)
    to_lh = await refs("notifications", "id", partner="lh")
    assert to_lh and to_lh == sorted(row.id for row in kept if row.partner_id == "lh")
    since = story.t0 + dt.timedelta(hours=12)
    late = await refs("notifications", "id", **{"from": day1})
    assert late == sorted(row.id for row in kept if row.created_at.replace(tzinfo=dt.timezone.utc) >= since)
    assert 0 < len(late) < len(every)


async def test_sandbox_cases_are_left_out_of_every_export(world: World) -> None:
    story = await _story(world)
    async with _sessions(world)() as session:
        sandbox_id = await session.scalar(select(Case.id).where(Case.ref == story.sandbox))
    assert len(await _timeline(world, story.sandbox)) >= 1
    for dataset in DATASETS:
        for fmt in FORMATS:
            response = await export(world, dataset, fmt)
            assert story.sandbox.encode() not in response.content, f"{dataset}.{fmt}"
            assert b"Practice case" not in response.content
    rows = parse(await export(world, "cases", "ndjson"), "ndjson")
    assert sandbox_id not in [r["id"] for r in rows]


# ---------------------------------------------------------------- personal data


async def test_no_customer_name_phone_email_or_address_appears_in_any_export(world: World, settings: Any) -> None:
    story = await _story(world)
    # The customer writes, a partner quotes the customer, a title names them, and a delivery has an address.
    case = await world.open_case(
        customer=ADA, title="Ada Lovelace's second bag",
        parties=[{"partner": "ua", "role": "owner"},
                 {"partner": "fastcourier", "role": "courier", "responsible": True, "cadence": "PT6H"}],
        external_refs={"worldtracer": "JFKUA55555", "note": "ask for ada@example.com"})
    ref, token = case["ref"], case["status_url"].rsplit("/", 1)[1]
    sent = await world.client.post(f"/s/{token}/messages",
                                   data={"message": "I am at 12 Beacon Street, Boston 02108, flat 4"})
    assert sent.status_code == 303
    asked = await world.as_admin("PUT", f"/v1/cases/{ref}/delivery", json_body={
        "address": {"line1": "12 Beacon Street", "line2": "Flat 4", "city": "Boston", "postcode": "02108",
                    "country": "US"}, "phone": "+14155550177"})
    assert asked.status_code == 200, asked.text
    noted = await world.as_partner("fastcourier", "POST", f"/v1/cases/{ref}/events", json_body={
        "internal_note": "Called Ada Lovelace on (415) 555-0100 and +14155550177, then mailed ada@example.com; "
                         "she is at 12 Beacon Street, 02108"})
    assert noted.status_code == 201, noted.text
    await _render_notifications(world, settings)

    needles = [needle for customer in CUSTOMERS
               for needle in (customer["name"], customer["name"].split()[1], customer["phone"],
                              customer["phone"][-10:], customer["email"])]
    needles += ["555-0100", "+14155550177", "12 Beacon Street", "02108", "Flat 4"]
    seen: dict[str, int] = {}
    for dataset in DATASETS:
        for fmt in FORMATS:
            response = await export(world, dataset, fmt)
            assert response.status_code == 200, response.text
            seen[f"{dataset}.{fmt}"] = len(response.content)
            leaked = [needle for needle in needles if needle.lower().encode() in response.content.lower()]
            assert leaked == [], f"{dataset}.{fmt} carries {leaked}"
    assert all(seen.values())

    # ... and yet the rows are there, with what is not personal.
    events = [e for e in parse(await export(world, "events", "ndjson"), "ndjson") if e["case"] == ref]
    [message] = [e for e in events if e["type"] == "customer.message"]
    assert message["body"] == {"_withheld": True} and message["via"] == "status page"
    [note] = [e for e in events if e["type"] == "update"]
    assert note["body"]["internal_note"].startswith("Called [erased] on [erased]")
    [row] = [c for c in parse(await export(world, "cases", "ndjson"), "ndjson") if c["ref"] == ref]
    assert row["title"] == "[erased]'s second bag" and row["external_refs"]["worldtracer"] == "JFKUA55555"
    to_ada = [n for n in parse(await export(world, "notifications", "ndjson"), "ndjson")
              if n["case"] == story.a and n["audience"] == "customer"]
    assert {n["channel"] for n in to_ada} == {"sms", "email"}
    assert {n["recipient"] for n in to_ada} == {"••••••••0100", "•••@•••.com"}
    assert all("subject" not in n and "body_text" not in n for n in to_ada)


# ---------------------------------------------------------------- who may, and bad requests


async def test_partners_are_refused_and_bad_requests_are_problems(world: World) -> None:
    await _story(world)
    async with _sessions(world)() as session:
        agent = await create_staff_token(session=session, name="agent-1", role="agent", now=world.clock.now())
        await session.commit()

    def problem(response: httpx.Response, status: int) -> dict[str, Any]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        return response.json()

    problem(await world.as_partner("lh", "GET", "/v1/exports/cases.csv"), 403)
    problem(await world.as_partner("lh", "GET", "/v1/exports/scorecards.ndjson?partner=lh"), 403)
    problem(await world.client.get("/v1/exports/cases.csv"), 401)
    # Who asks is checked before what is asked: no credentials, no validation answer.
    problem(await world.client.get("/v1/exports/cases.csv?from=yesterday&partner=" + "x" * 200), 401)
    problem(await world.as_partner("lh", "GET", "/v1/exports/people.csv?from=yesterday"), 403)
    ok = await world.client.get("/v1/exports/cases.csv", headers={"Authorization": f"Bearer {agent}"})
    assert ok.status_code == 200 and len(parse(ok, "csv")) == 3
    problem(await export(world, "customers", "csv"), 404)
    problem(await export(world, "cases", "xlsx"), 404)
    problem(await world.client.get("/v1/exports/cases", headers=world.admin), 404)
    for params, field in (({"from": "yesterday"}, "from"), ({"from": "2026-11-01"}, "from"),
                          ({"from": "2026-11-01T00:00:00"}, "from"), ({"to": "2026-13-01T00:00:00Z"}, "to"),
                          ({"from": "2026-11-01T00:00:00 01:00"}, "from"), ({"to": "0001-01-01T00:00:00Z"}, "to"),
                          ({"partner": "nobody"}, "partner"),
                          ({"from": "2026-11-03T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "from")):
        body = problem(await export(world, "cases", "csv", **params), 422)
        assert body["errors"][0]["field"] == field, params
    assert "%2B" in problem(await export(world, "cases", "csv", **{"from": "2026-11-01T00:00:00 01:00"}), 422)["detail"]
    # "+01:00" percent-encoded is a good instant
    assert (await export(world, "cases", "csv", **{"from": "2026-11-01T00:00:00+01:00"})).status_code == 200
    problem(await export(world, "scorecards", "csv", **{"from": "2025-01-01T00:00:00Z"}), 422)  # over 366 days


# ---------------------------------------------------------------- streaming and CSV safety


async def test_an_export_streams_in_batches_and_keeps_every_row_in_order(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = []
    for i in range(7):
        refs.append((await world.open_case(title=f"Bag {i}"))["ref"])
        if i == 3:  # a sandbox case in the middle of a batch must not shift the keyset
            sandbox = await world.open_case(title="Practice case")
            async with _sessions(world)() as session:
                await session.execute(update(Case).where(Case.ref == sandbox["ref"]).values(sandbox=True))
                await session.commit()
        world.clock.advance(minutes=1)
    monkeypatch.setattr(_exports, "BATCH", 2)

    async with _sessions(world)() as session:
        prepared = await prepare_export(session=session, dataset="cases", format="csv", since=None, until=None,
                                        partner=None, now=world.clock.now())
    batches = [batch async for batch in export_records(sessions=_sessions(world), export=prepared)]
    assert [len(b) for b in batches] == [2, 2, 2, 1]

    for fmt in FORMATS:
        rows = parse(await export(world, "cases", fmt), fmt)
        assert [r["ref"] for r in rows] == refs
        ids = [int(r["id"]) for r in rows]
        assert ids == sorted(ids)


async def test_a_paused_download_holds_no_transaction_so_writes_go_on(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        await world.open_case(title=f"Bag {i}")
    monkeypatch.setattr(_exports, "BATCH", 2)
    async with _sessions(world)() as session:
        prepared = await prepare_export(session=session, dataset="cases", format="csv", since=None, until=None,
                                        partner=None, now=world.clock.now())
    stream = _exports.export_stream(sessions=_sessions(world), export=prepared)
    chunks = [await anext(stream), await anext(stream)]  # the header, then the first batch
    # A slow client: meanwhile a case is opened. On SQLite every transaction takes the write lock, so a
    # read transaction held across batches would keep this waiting (busy_timeout: 30 s).
    opened = await asyncio.wait_for(world.open_case(title="Opened mid-download"), timeout=10)
    chunks += [chunk async for chunk in stream]
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode(), newline="")))
    # Not a snapshot: a row written while the export streams comes at its end (ids only grow).
    assert [r["title"] for r in rows] == [f"Bag {i}" for i in range(5)] + ["Opened mid-download"]
    assert rows[-1]["ref"] == opened["ref"]


async def test_formula_cells_are_neutralised_in_csv_and_kept_as_written_in_ndjson(world: World) -> None:
    titles = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+1+2", "-3+4", "@SUM(A1:A9)", "Plain, with \"quotes\""]
    for title in titles:
        await world.open_case(title=title)
    csv_titles = [r["title"] for r in parse(await export(world, "cases", "csv"), "csv")]
    assert csv_titles == ["'" + t for t in titles[:4]] + [titles[4]]
    assert [r["title"] for r in parse(await export(world, "cases", "ndjson"), "ndjson")] == titles
    assert b'"Plain, with ""quotes"""' in (await export(world, "cases", "csv")).content  # RFC 4180 quoting


# ---------------------------------------------------------------- the console


async def test_the_console_page_offers_the_export_and_downloads_it(world: World, app: Any) -> None:
    story = await _story(world)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=str(world.client.base_url)) as http:
        browser = Console(http)
        for query in ("dataset=cases&format=csv", "dataset=cases&from=someday"):
            refused = await http.get(f"/console/exports/download?{query}")
            assert refused.status_code == 303 and refused.headers["location"].startswith("/console/login")
        assert (await browser.sign_in(world.admin["Authorization"].split()[1])).status_code == 303
        page = await browser.get("/console/exports")
        assert page.status_code == 200
        assert '<a href="/console/exports" aria-current="page">Exports</a>' in page.text
        assert 'action="/console/exports/download"' in page.text
        for dataset in DATASETS:
            assert f'<option value="{dataset}">' in page.text
        assert ", ".join(export_columns("parties")) in page.text

        day1 = (story.t0 + dt.timedelta(days=1)).date().isoformat()
        download = await browser.get("/console/exports/download", dataset="cases", format="csv", partner="",
                                     **{"from": day1, "to": day1})
        assert download.headers["content-type"] == "text/csv; charset=utf-8"
        assert [r["ref"] for r in parse(download, "csv")] == [story.b]
        assert download.headers["content-disposition"] == (
            f'attachment; filename="baton-cases-{day1.replace("-", "")}T000000Z-'
            f'{(story.t0 + dt.timedelta(days=2)).strftime("%Y%m%d")}T000000Z.csv"')
        lh = await browser.get("/console/exports/download", dataset="events", format="ndjson", partner="lh")
        assert {e["case"] for e in parse(lh, "ndjson")} == {story.a, story.c}
        bad = await browser.get("/console/exports/download", dataset="cases", format="csv", **{"from": "03/11/2026"})
        assert bad.status_code == 422 and "text/html" in bad.headers["content-type"]
        unknown = await browser.get("/console/exports/download", dataset="people", format="csv")
        assert unknown.status_code == 404


# ---------------------------------------------------------------- the command line


async def _cli(db_url: str, *args: str) -> tuple[int, str, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracker.cli", *args, env={**os.environ, "BATON_DATABASE_URL": db_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, errors = await proc.communicate()
    return proc.returncode or 0, errors.decode(), out


async def test_baton_export_writes_a_file_and_standard_output(world: World, settings: Any, tmp_path: Path) -> None:
    story = await _story(world)
    target = tmp_path / "lh-events.csv"
    code, errors, _ = await _cli(settings.database_url, "export", "events", "--partner", "lh", "--out", str(target))
    assert code == 0, errors
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"), newline="")))
    api = parse(await export(world, "events", "csv", partner="lh"), "csv")
    assert rows == api and {r["case"] for r in rows} == {story.a, story.c}
    assert f"wrote {len(rows)} rows" in errors
    assert not (tmp_path / "lh-events.csv.part").exists()

    code, errors, out = await _cli(settings.database_url, "export", "cases", "--format", "ndjson",
                                   "--from", _stamp(story.t0 + dt.timedelta(hours=12)))
    assert code == 0, errors
    assert [json.loads(line)["ref"] for line in out.decode().splitlines()] == [story.b, story.c]

    code, errors, _ = await _cli(settings.database_url, "export", "cases", "--from", "last week")
    assert code == 1 and "RFC 3339" in errors
