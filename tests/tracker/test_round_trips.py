"""The hot path's database round trips, counted: a signed update must not grow new queries.

Every statement the engine sends (and each BEGIN and COMMIT) is a round trip to the database,
and on the benchmark's 2-core machine the round trips, not PostgreSQL, bound the throughput of
signed partner updates (see README, Performance). These tests pin the count so that an extra
query on the path shows up as a failing test rather than as a slower benchmark.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tests.conftest import World


@contextmanager
def statements(app: Any) -> Iterator[list[str]]:
    """What the app sends to the database: through SQLAlchemy, and straight to asyncpg.

    On PostgreSQL, BEGIN and COMMIT are seen by asyncpg's query logger; SQLAlchemy's prepared
    statements and the hot path's are counted by their own hooks.
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
        hooks += [(engine, "begin", lambda _c: note("BEGIN")), (engine, "commit", lambda _c: note("COMMIT"))]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield sent
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)


async def test_signed_update_round_trips(world: World, app: Any, db: Any) -> None:
    case = await world.open_case()
    path = f"/v1/cases/{case['ref']}/events"
    body = {"status": "located", "location": "FRA", "internal_note": "scanned at belt 4"}
    # The first request warms per-key caches; count the steady state.
    response = await world.as_partner("lh", "POST", path, json_body=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201, response.text
    with statements(app) as sent:
        response = await world.as_partner("lh", "POST", path, json_body={**body, "location": "JFK"},
                                          headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201, response.text
    print("\n".join(sent))
    assert len(sent) <= 99, sent
