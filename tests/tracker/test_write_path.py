"""One write, two paths: the routine update's own statements store exactly what the ORM path stores.

Most signed updates take the routine path (``tracker.updates._post_routine_update``: two
statements built from the table definitions); everything else takes the general path through
the ORM (``post_general_update``). Hypothesis generates sequences of updates (statuses, notes,
promises, locations, back-dated occurrences, a few the case must refuse, and watchdog sweeps
between them so that late and escalated parties come up), and each sequence is posted twice, on
two copies of the same database: once through ``post_update`` (routine whenever it may be) and
once through ``post_general_update`` only. Every column of every event, case and party must be
equal afterwards (the case's random status token aside), and so must every answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from kernel.db import make_engine, make_sessionmaker
from kernel.errors import BatonError
from partners.models import Partner
from partners.schemas import PartnerIn
from partners.service import register_partner
from tracker import cases, updates
from tracker.models import Case, DueMoment, Event, Party
from tracker.principals import Principal
from tracker.schemas import CaseIn, EventIn
from tracker.watchdog import Watchdog, WatchdogConfig

START = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
REF = "BAG-7KQ3X9T"
STAFF = Principal(kind="staff", name="tests", role="admin")
LH = Principal(kind="partner", name="lh", partner_id="lh",
               signature={"method": "POST", "target_uri": f"http://baton.test/v1/cases/{REF}/events",
                          "keyid": "lh-ed", "body": "{}"})
UA = Principal(kind="partner", name="ua", partner_id="ua")
UNCOMPARED = {"cases": {"status_token", "status_token_locator"}}

# ---------------------------------------------------------------- what Hypothesis draws

statuses = st.sampled_from([None, None, "tracing", "located", "in_transit", "out_for_delivery", "no-such-status",
                            "closed"])
texts = st.one_of(st.none(), st.text(alphabet="abcäöü 0123456789.,-", min_size=1, max_size=40))
update_fields = st.fixed_dictionaries({
    "status": statuses,
    "internal_note": texts,
    "location": st.one_of(st.none(), st.sampled_from(["FRA", "JFK", "EWR"])),
    "message": st.one_of(st.none(), st.none(), st.none(), texts),
    "promise_minutes": st.one_of(st.none(), st.integers(min_value=-5, max_value=60 * 24 * 31)),
    "occurred_minutes_ago": st.one_of(st.none(), st.integers(min_value=-10, max_value=600)),
})
steps = st.lists(
    st.tuples(st.sampled_from(["lh", "lh", "lh", "ua"]), update_fields,
              st.integers(min_value=0, max_value=9 * 60), st.booleans()),
    min_size=1, max_size=8,
)


def _payload(fields: dict[str, Any], now: dt.datetime) -> EventIn | None:
    body: dict[str, Any] = {k: fields[k] for k in ("status", "internal_note", "location", "message") if fields[k]}
    if not body:
        return None  # an update says something (EventIn refuses an empty one)
    if fields["promise_minutes"] is not None:
        body["next_update_by"] = now + dt.timedelta(minutes=fields["promise_minutes"])
    if fields["occurred_minutes_ago"] is not None:
        body["occurred_at"] = now - dt.timedelta(minutes=fields["occurred_minutes_ago"])
    return EventIn.model_validate(body)


# ---------------------------------------------------------------- one copy of the world


class Copy:
    """One database with lh (responsible carrier) and ua (owner) on case REF."""

    def __init__(self, url: str, *, general_only: bool) -> None:
        self.settings = Settings(database_url=url, workers_in_process=False)
        self.engine = make_engine(self.settings)
        self.sessions = make_sessionmaker(self.engine, settings=self.settings)
        self.clock = FrozenClock(START)
        self.general_only = general_only
        self.watchdog = Watchdog(sessionmaker=self.sessions, clock=self.clock, config=WatchdogConfig())

    async def seed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async with self.sessions() as session:
            for spec in ({"id": "lh", "name": "Lufthansa"}, {"id": "ua", "name": "United"}):
                if await session.get(Partner, spec["id"]) is None:
                    await register_partner(session=session, payload=PartnerIn.model_validate(spec), now=START)
            monkeypatch.setattr(cases, "new_ref", lambda prefix: REF)
            await cases.open_case(session=session, principal=STAFF, now=START, base_url="http://baton.test",
                                  payload=CaseIn.model_validate({
                                      "type": "baggage", "title": "Delayed bag", "owner": "ua",
                                      "customer": {"name": "Ada", "email": "ada@example.com"},
                                      "parties": [{"partner": "lh", "role": "carrier", "responsible": True,
                                                   "cadence": "PT6H"}, {"partner": "ua", "role": "owner"}]}))
            await session.commit()

    async def post(self, who: str, payload: EventIn) -> Any:
        post = updates.post_general_update if self.general_only else updates.post_update
        async with self.sessions() as session:
            try:
                answer = await post(session=session, principal=LH if who == "lh" else UA, ref=REF,
                                    payload=payload, now=self.clock.now())
            except BatonError as error:
                await session.rollback()
                return (type(error).__name__, error.status)
            await session.commit()
            return answer

    async def rows(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        async with self.sessions() as session:
            for model, order in ((Event, Event.seq), (Case, Case.id), (Party, Party.partner_id),
                                 (DueMoment, DueMoment.resolved_at)):
                table = model.__table__
                skip = UNCOMPARED.get(table.name, set()) | {"id"}
                rows = (await session.scalars(select(model).order_by(order))).all()
                out[table.name] = [{c.name: getattr(r, c.name) for c in table.columns if c.name not in skip}
                                   for r in rows]
        return out


async def _run(urls: tuple[str, str], sequence: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    routine, general = Copy(urls[0], general_only=False), Copy(urls[1], general_only=True)
    try:
        for copy in (routine, general):
            await copy.seed(monkeypatch)
        for who, fields, minutes, sweep in sequence:
            for copy in (routine, general):
                copy.clock.advance(minutes=minutes)
                if sweep:
                    await copy.watchdog.sweep()
            payload = _payload(fields, routine.clock.now())
            if payload is None:
                continue
            answers = [await copy.post(who, payload) for copy in (routine, general)]
            assert answers[0] == answers[1], f"{who} {payload!r}"
        mine, theirs = await routine.rows(), await general.rows()
        for table in mine:
            assert len(mine[table]) == len(theirs[table]), table
            for a, b in zip(mine[table], theirs[table], strict=True):
                differ = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
                assert not differ, f"{table}: routine vs general differ in {differ}"
    finally:
        for copy in (routine, general):
            await copy.engine.dispose()


# ---------------------------------------------------------------- the property, on each backend
# (database_copies: tests/tracker/conftest.py)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequence=steps)
def test_routine_and_general_paths_store_the_same_rows(
    database_copies: Any, monkeypatch: pytest.MonkeyPatch, sequence: list[Any]
) -> None:
    asyncio.run(_run(database_copies(), sequence, monkeypatch))


def test_a_routine_sequence_takes_the_routine_path(database_copies: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The property compares something: plain notes by an on-track party do take the routine path."""
    taken: list[bool] = []
    original = updates._post_routine_update

    async def spy(**kwargs: Any) -> Any:
        answer = await original(**kwargs)
        taken.append(answer is not None)
        return answer

    monkeypatch.setattr(updates, "_post_routine_update", spy)
    fields = {"status": None, "internal_note": "scanned", "location": "FRA", "message": None,
              "promise_minutes": 90, "occurred_minutes_ago": 3}
    asyncio.run(_run(database_copies(), [("lh", fields, 5, False), ("lh", fields, 60, False)], monkeypatch))
    assert taken == [True, True]
