"""The routine update: a partner whose party is on track posts, and the customer is not told.

Most traffic is this, so it skips the ORM's unit of work: one statement locks and reads the case
and party rows whole, the shared rules (``tracker.update_rules``, ``tracker.parties``) run on
those rows in memory, one statement writes the events, cases and parties. The same three steps
serve one update (``tracker.updates.post_update``) and a batch of concurrent ones in one
transaction (``tracker.groupcommit``):

1. ``lock``: every case the batch names, locked in id order (``FOR UPDATE`` on PostgreSQL; on
   SQLite the transaction's ``BEGIN IMMEDIATE`` is the lock), with the posting partners' parties.
2. ``apply``: one update, in arrival order. Two updates of one case chain one after the other
   on the same in-memory rows. An update the case refuses raises and changes nothing; one that
   is not routine (the customer is told; a late, invited or released party) answers None, and
   every later update of that case in the batch waits for the general path too, so that each
   sees the one before it. A status that moves a delivery (``tracker.delivery``) is not routine either.
3. ``write``: the final state of each touched case and party and every new event, one statement
   each (one statement in all on PostgreSQL, the rows as JSON); stored idempotent responses ride along.

The SQL is built from the table definitions (``kernel.db``), never from a second column list;
``tests/tracker/test_write_path.py`` proves that this path and the ORM path store the same rows,
one update at a time and in batches.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kernel.db import (RowPlan, Statement, column_types, insert_json_sql, insert_sql, is_postgres, select_list,
                       update_json_sql, update_sql)
from tracker import idempotency, parties
from tracker.access import not_found, signature_of
from tracker.casetypes import case_type
from tracker.delivery import MOVING_STATUSES
from tracker.models import Case, DueMoment, Event, Party
from tracker.parties import PartyState
from tracker.principals import Principal
from tracker.refs import parse_ref
from tracker.schemas import EventIn
from tracker.timeline import event_out, new_event
from tracker.update_rules import apply_to_case, checked_update
from tracker.watchdog import partner_rules

_CASE, _PARTY, _EVENT, _DUE = Case.__table__, Party.__table__, Event.__table__, DueMoment.__table__
# What a routine update changes, besides inserting its event.
CASE_CHANGES = ("status", "eta", "eta_first", "last_seq", "last_hash", "updated_at")
PARTY_CHANGES = ("last_update_at", "promised_by", "next_update_due", "watch_at")


@dataclass(frozen=True, slots=True)
class RoutineUpdate:
    """One update as its caller sent it; ``pair`` is (normalized reference, partner), or None for
    a reference that names no case."""

    principal: Principal
    ref: str
    payload: EventIn
    now: dt.datetime
    pair: tuple[str, str] | None = field(init=False)

    def __post_init__(self) -> None:
        parsed = parse_ref(self.ref)
        partner = self.principal.partner_id
        object.__setattr__(self, "pair", (parsed.ref, partner) if parsed and parsed.valid and partner else None)


class Locked:
    """The rows one transaction holds locked, and what the updates applied so far changed."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[Case, Party]] = {}
        self._cases: dict[int, Case] = {}
        self.events: list[Event] = []
        self.changed_cases: dict[int, Case] = {}
        self.changed_parties: dict[int, Party] = {}
        self.due_moments: list[DueMoment] = []  # due moments the updates met (scorecards' on-time)
        self.held: set[int] = set()  # cases whose later updates in this batch take the general path

    def add(self, row: Any) -> None:
        case = _READ_CASE.load(row)
        case = self._cases.setdefault(case.id, case)  # one object per case, however many parties post
        party = _READ_PARTY.load(row)
        self._rows[(case.ref, party.partner_id)] = (case, party)

    def find(self, pair: tuple[str, str] | None) -> tuple[Case, Party] | None:
        return self._rows.get(pair) if pair is not None else None


async def lock(session: AsyncSession, updates: Sequence[RoutineUpdate]) -> Locked:
    """Step 1: lock and read the case and party rows the updates name."""
    pairs = sorted({pair for u in updates if (pair := u.pair) is not None})
    locked = Locked()
    if not pairs:
        return locked
    if is_postgres(session):
        rows = await _LOCK_MANY_PG.rows(session, {"pairs": _pairs_json(pairs)})
    else:
        rows = [row for ref, partner in pairs
                if (row := await _LOCK_ONE.first(session, {"ref": ref, "partner": partner})) is not None]
    for row in rows:
        locked.add(row)
    return locked


async def apply(session: AsyncSession, locked: Locked, update: RoutineUpdate) -> dict[str, Any] | None:
    """Step 2 for one update: its answer, or None when it is not routine (nothing changed)."""
    found = locked.find(update.pair)
    if found is None:
        raise not_found(update.ref)
    case, party = found
    if case.id in locked.held:
        return None
    ctype = await case_type(session=session, code=case.type)
    checked = checked_update(case=case, party=party, ctype=ctype, principal=update.principal,
                             payload=update.payload, now=update.now)
    if checked.tells_customer or party.state != PartyState.ON_TRACK or update.payload.status in MOVING_STATUSES:
        locked.held.add(case.id)
        return None
    rules = await partner_rules(session, party.partner_id)
    event = new_event(case=case, type="update", actor=update.principal.actor, partner_id=update.principal.partner_id,
                      visibility=checked.visibility, body=checked.body, now=update.now,
                      occurred_at=checked.occurred_at, signature=signature_of(update.principal))
    apply_to_case(case, update.payload)
    met = parties.due_met(party, now=update.now)
    if met is not None:
        locked.due_moments.append(DueMoment(partner_id=party.partner_id, case_id=case.id, due_at=met,
                                            resolved_at=update.now, met=True))
    parties.spoke(party, now=update.now, promised=checked.promised, rules=rules)
    locked.events.append(event)
    locked.changed_cases[case.id] = case
    locked.changed_parties[party.id] = party
    return event_out(event)


async def write(session: AsyncSession, locked: Locked,
                stored: Sequence[idempotency.StoredResponse] = ()) -> None:
    """Step 3: the new events, the touched cases and parties, and ``stored`` responses."""
    if not locked.events and not stored:
        return
    cases, party_rows = locked.changed_cases.values(), locked.changed_parties.values()
    if is_postgres(session):
        await _WRITE_MANY_PG.rows(session, {
            "events": _WRITE_EVENT.records(locked.events), "cases": _WRITE_CASE.records(cases),
            "parties": _WRITE_PARTY.records(party_rows), "due": _WRITE_DUE.records(locked.due_moments),
            "records": idempotency.records_json(stored),
        })
        return
    for event in locked.events:
        await _INSERT_EVENT.rows(session, _WRITE_EVENT.values(event))
    for case in cases:
        await _UPDATE_CASE.rows(session, _WRITE_CASE.values(case))
    for party in party_rows:
        await _UPDATE_PARTY.rows(session, _WRITE_PARTY.values(party))
    for moment in locked.due_moments:
        await _INSERT_DUE.rows(session, _WRITE_DUE.values(moment))
    for response in stored:
        await idempotency.store_one(session, response)


def _pairs_json(pairs: list[tuple[str, str]]) -> str:
    return json.dumps([{"ref": ref, "partner": partner} for ref, partner in pairs], separators=(",", ":"))


# ---------------------------------------------------------------- statements, built once at import

_SELECT = f"SELECT {select_list(_CASE, alias='c', prefix='c_')}, {select_list(_PARTY, alias='p', prefix='p_')} "
_READ_TYPES = {**column_types(_CASE, prefix="c_", result=True), **column_types(_PARTY, prefix="p_", result=True)}
_LOCK_ONE = Statement(  # SQLite: the transaction's BEGIN IMMEDIATE is the lock
    f"{_SELECT}FROM cases AS c JOIN parties AS p ON p.case_id = c.id AND p.partner_id = :partner WHERE c.ref = :ref",
    **_READ_TYPES,
)
_LOCK_MANY_PG = Statement(
    f"{_SELECT}FROM cases AS c JOIN parties AS p ON p.case_id = c.id "
    "JOIN (SELECT DISTINCT ref, partner FROM json_to_recordset(CAST(:pairs AS json)) AS j(ref text, partner text)) "
    "AS j ON c.ref = j.ref AND p.partner_id = j.partner ORDER BY c.id FOR UPDATE OF c",
    **_READ_TYPES,
)
_WRITE_EVENT = RowPlan(Event, prefix="", exclude=("id",))
_WRITE_CASE = RowPlan(Case, prefix="", columns=(*CASE_CHANGES, "id"))
_WRITE_PARTY = RowPlan(Party, prefix="", columns=(*PARTY_CHANGES, "id"))
_WRITE_DUE = RowPlan(DueMoment, prefix="", exclude=("id",))
# SQLite: a statement per row (in-process calls, no round trips to save).
_INSERT_EVENT = Statement(insert_sql(_EVENT, prefix=""), **column_types(_EVENT, prefix=""))
_UPDATE_CASE = Statement(update_sql(_CASE, CASE_CHANGES, prefix=""),
                         **column_types(_CASE, prefix="", columns=CASE_CHANGES))
_UPDATE_PARTY = Statement(update_sql(_PARTY, PARTY_CHANGES, prefix=""),
                          **column_types(_PARTY, prefix="", columns=PARTY_CHANGES))
_INSERT_DUE = Statement(insert_sql(_DUE, prefix=""), **column_types(_DUE, prefix=""))
# PostgreSQL: every row of every table in one statement.
_WRITE_MANY_PG = Statement(
    f"WITH e AS ({insert_json_sql(_EVENT, param='events')}), "
    f"c AS ({update_json_sql(_CASE, CASE_CHANGES, param='cases')}), "
    f"p AS ({update_json_sql(_PARTY, PARTY_CHANGES, param='parties')}), "
    f"d AS ({insert_json_sql(_DUE, param='due')}) "
    f"{idempotency.INSERT_JSON}"
)
_READ_CASE, _READ_PARTY = RowPlan(Case, prefix="c_"), RowPlan(Party, prefix="p_")
