"""The hot path's database round trips, counted: a signed update must not grow new queries.

Every statement the engine sends (and each BEGIN and COMMIT) is a round trip to the database,
and on the benchmark's 2-core machine the round trips, not PostgreSQL, bound the throughput of
signed partner updates (see README, Performance). These tests pin the count so that an extra
query on the path shows up as a failing test rather than as a slower benchmark.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from tests.conftest import World


@contextmanager
def statements(app: Any) -> Iterator[list[str]]:
    """What the app sends to the database: through SQLAlchemy, and straight to asyncpg.

    On PostgreSQL, asyncpg's query logger sees BEGIN, COMMIT and the hot path's statements,
    SQLAlchemy's hook the statements it prepares; on SQLite every statement passes SQLAlchemy.
    """
    sent: list[str] = []
    engine = app.state.engine.sync_engine
    postgres = engine.dialect.name == "postgresql"

    def note(statement: str) -> None:
        sent.append(" ".join(statement.split())[:160])

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        note(statement)

    def on_asyncpg_query(record: Any) -> None:
        note(record.query)

    def on_checkout(dbapi_connection: Any, *_args: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(on_asyncpg_query)

    def on_checkin(dbapi_connection: Any, *_args: Any) -> None:
        if dbapi_connection is not None:
            dbapi_connection.driver_connection.remove_query_logger(on_asyncpg_query)

    hooks: list[tuple[Any, str, Any]] = [(engine, "before_cursor_execute", on_execute)]
    if postgres:
        hooks += [(engine.pool, "checkout", on_checkout), (engine.pool, "checkin", on_checkin)]
    else:
        hooks.append((engine, "commit", lambda _c: note("COMMIT")))  # BEGIN IMMEDIATE is a statement of its own
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield sent
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)


# PostgreSQL (group commit, a batch of one): BEGIN; spend the nonce (checking the key is still
# active) and take the idempotency lock and stored response; lock and read the case and party;
# write event, case, party and the kept response in one statement; COMMIT. SQLite looks the key
# up on its own, has no advisory lock, and runs the write as five statements (event, case, party,
# the due moment the update met, the kept response), in-process calls rather than round trips.
# With BATON_GROUP_COMMIT=false each update has a transaction of its own (the general path's
# session): the kept response is one more statement on PostgreSQL.
EXPECTED = {("postgres", True): 5, ("sqlite", True): 10, ("postgres", False): 6, ("sqlite", False): 10}


@pytest.mark.parametrize("group_commit", [True, False], ids=["group-commit", "one-transaction-each"])
async def test_routine_signed_update_costs_a_fixed_number_of_round_trips(
    world: World, app: Any, db: Any, group_commit: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not group_commit:
        monkeypatch.setattr(app.state.runtime, "group_commit", None)
    case = await world.open_case()
    path = f"/v1/cases/{case['ref']}/events"
    body = {"status": "located", "location": "FRA", "internal_note": "scanned at belt 4"}
    # The first request fills the per-process caches (key material, case type, partner rules).
    response = await world.as_partner("lh", "POST", path, json_body=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201, response.text
    world.clock.advance(dt.timedelta(minutes=5))

    with statements(app) as sent:
        response = await world.as_partner("lh", "POST", path, json_body={**body, "location": "JFK"},
                                          headers={"Idempotency-Key": str(uuid.uuid4())})

    assert response.status_code == 201, response.text
    assert len(sent) == EXPECTED[(db.backend, group_commit)], "\n".join(sent)
    timeline = (await world.as_partner("lh", "GET", f"{path}?limit=10")).json()["items"]
    assert [e.get("location") for e in timeline[-2:]] == ["FRA", "JFK"]
    party = next(p for p in (await world.as_admin("GET", f"/v1/cases/{case['ref']}")).json()["parties"]
                 if p["partner"] == "lh")
    assert party["last_update_at"].startswith(world.clock.now().strftime("%Y-%m-%dT%H:%M"))
