"""``Idempotency-Key`` on writes.

A retry with the same key and body returns the first response and has no second effect; the
same key with another body is 422; keys are scoped per caller; a twin still in flight is 409.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import World, case_body
from tracker import idempotency
from tracker.idempotency import MAX_KEY_LENGTH

UPDATE = {"status": "located", "message": "Your bag is in Frankfurt.", "location": "FRA"}


async def _post_update(world: World, partner: str, ref: str, body: dict[str, Any], key: str) -> httpx.Response:
    # as_partner signs every call afresh (new nonce, new created): a genuine retry, not a replay.
    return await world.as_partner(
        partner, "POST", f"/v1/cases/{ref}/events", json_body=body, headers={"Idempotency-Key": key}
    )


async def _events(world: World, ref: str) -> list[dict[str, Any]]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}/events")
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def _case_refs(world: World) -> list[str]:
    response = await world.as_admin("GET", "/v1/cases")
    assert response.status_code == 200, response.text
    return [c["ref"] for c in response.json()["items"]]


def _assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["type"] and body["title"] and body["detail"]
    return body


# ---------------------------------------------------------------- retries


async def test_retry_with_same_key_and_body_replays_the_first_response_and_creates_one_event(world: World) -> None:
    case = await world.open_case()
    before = len(await _events(world, case["ref"]))

    first = await _post_update(world, "lh", case["ref"], UPDATE, "k1")
    world.clock.advance(seconds=30)  # a retry comes a little later; the replay must not change
    second = await _post_update(world, "lh", case["ref"], UPDATE, "k1")

    assert first.status_code == 201, first.text
    assert second.status_code == first.status_code
    assert second.content == first.content
    assert second.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    events = await _events(world, case["ref"])
    assert len(events) == before + 1
    assert [e["seq"] for e in events if e.get("location") == "FRA"] == [first.json()["seq"]]


async def test_same_key_with_another_body_is_422_and_writes_nothing(world: World) -> None:
    case = await world.open_case()
    first = await _post_update(world, "lh", case["ref"], UPDATE, "k1")
    assert first.status_code == 201, first.text
    after_first = len(await _events(world, case["ref"]))

    other = await _post_update(world, "lh", case["ref"], {**UPDATE, "message": "Actually it is in Newark."}, "k1")

    body = _assert_problem(other, 422)
    assert "Idempotency-Key" in body["detail"]
    events = await _events(world, case["ref"])
    assert len(events) == after_first
    assert "Newark" not in str(events)


async def test_same_key_on_another_path_is_422(world: World) -> None:
    first_case = await world.open_case()
    second_case = await world.open_case()
    assert (await _post_update(world, "lh", first_case["ref"], UPDATE, "k1")).status_code == 201
    before = len(await _events(world, second_case["ref"]))

    elsewhere = await _post_update(world, "lh", second_case["ref"], UPDATE, "k1")

    _assert_problem(elsewhere, 422)
    assert len(await _events(world, second_case["ref"])) == before


async def test_the_same_key_used_by_another_partner_is_independent(world: World) -> None:
    case = await world.open_case()
    before = len(await _events(world, case["ref"]))

    by_lh = await _post_update(world, "lh", case["ref"], UPDATE, "k1")
    by_ua = await _post_update(world, "ua", case["ref"], UPDATE, "k1")

    assert by_lh.status_code == 201 and by_ua.status_code == 201, (by_lh.text, by_ua.text)
    assert "idempotent-replayed" not in by_ua.headers
    assert by_ua.json()["seq"] == by_lh.json()["seq"] + 1
    assert by_ua.json()["actor"] == "partner:ua" and by_lh.json()["actor"] == "partner:lh"
    assert len(await _events(world, case["ref"])) == before + 2


async def test_a_retry_without_a_key_is_not_deduplicated(world: World) -> None:
    # The counterpart of the replay test: without a key, two posts are two events.
    case = await world.open_case()
    before = len(await _events(world, case["ref"]))

    for _ in range(2):
        response = await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/events", json_body=UPDATE)
        assert response.status_code == 201, response.text

    assert len(await _events(world, case["ref"])) == before + 2


async def test_staff_retry_of_open_case_creates_one_case(world: World) -> None:
    headers = {"Idempotency-Key": "open-ada-1"}

    first = await world.as_admin("POST", "/v1/cases", json_body=case_body(), headers=headers)
    second = await world.as_admin("POST", "/v1/cases", json_body=case_body(), headers=headers)

    assert first.status_code == 201, first.text
    assert second.status_code == 201
    assert second.content == first.content
    assert second.headers.get("idempotent-replayed") == "true"
    assert await _case_refs(world) == [first.json()["ref"]]


async def test_staff_open_case_with_same_key_and_another_body_is_422(world: World) -> None:
    headers = {"Idempotency-Key": "open-ada-1"}
    first = await world.as_admin("POST", "/v1/cases", json_body=case_body(), headers=headers)
    assert first.status_code == 201, first.text

    other = await world.as_admin("POST", "/v1/cases", json_body=case_body(title="Another bag"), headers=headers)

    _assert_problem(other, 422)
    assert await _case_refs(world) == [first.json()["ref"]]


async def test_a_failed_request_is_not_stored_so_its_corrected_retry_runs(world: World) -> None:
    case = await world.open_case()
    before = len(await _events(world, case["ref"]))

    refused = await _post_update(world, "lh", case["ref"], {"status": "teleported"}, "k1")
    corrected = await _post_update(world, "lh", case["ref"], UPDATE, "k1")

    _assert_problem(refused, 422)
    assert corrected.status_code == 201, corrected.text
    assert "idempotent-replayed" not in corrected.headers
    assert len(await _events(world, case["ref"])) == before + 1


# ---------------------------------------------------------------- in flight


async def test_twin_still_in_flight_is_409_and_the_key_works_once_it_is_done(world: World) -> None:
    case = await world.open_case()
    before = len(await _events(world, case["ref"]))
    token = ("partner:lh", "k-busy")
    idempotency._in_flight.add(token)
    try:
        twin = await _post_update(world, "lh", case["ref"], UPDATE, "k-busy")
    finally:
        idempotency._in_flight.discard(token)

    body = _assert_problem(twin, 409)
    assert "in flight" in body["detail"]
    assert len(await _events(world, case["ref"])) == before
    later = await _post_update(world, "lh", case["ref"], UPDATE, "k-busy")
    assert later.status_code == 201, later.text
    assert "idempotent-replayed" not in later.headers


async def test_twin_in_flight_for_another_caller_does_not_block(world: World) -> None:
    case = await world.open_case()
    token = ("partner:ua", "k-busy")
    idempotency._in_flight.add(token)
    try:
        response = await _post_update(world, "lh", case["ref"], UPDATE, "k-busy")
    finally:
        idempotency._in_flight.discard(token)

    assert response.status_code == 201, response.text


async def test_twin_in_flight_in_another_postgres_process_is_409(world: World, app: Any, db: Any) -> None:
    # Across processes the in-memory set cannot see the twin: the advisory lock must.
    if db.backend != "postgres":
        pytest.skip("the cross-process guard is PostgreSQL's advisory lock")
    case = await world.open_case()
    before = len(await _events(world, case["ref"]))
    lock_id = int.from_bytes(hashlib.sha256(b"partner:lh\0k-other-process").digest()[:8], "big", signed=True)
    async with app.state.runtime.sessionmaker() as other_process:
        await other_process.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})
        twin = await _post_update(world, "lh", case["ref"], UPDATE, "k-other-process")
        await other_process.rollback()

    _assert_problem(twin, 409)
    assert len(await _events(world, case["ref"])) == before
    assert (await _post_update(world, "lh", case["ref"], UPDATE, "k-other-process")).status_code == 201


# ---------------------------------------------------------------- the key itself


async def test_key_longer_than_255_characters_is_422(world: World) -> None:
    case = await world.open_case()
    before = len(await _events(world, case["ref"]))

    response = await _post_update(world, "lh", case["ref"], UPDATE, "k" * (MAX_KEY_LENGTH + 1))

    body = _assert_problem(response, 422)
    assert "Idempotency-Key" in body["detail"] and str(MAX_KEY_LENGTH) in body["detail"]
    assert len(await _events(world, case["ref"])) == before


async def test_key_of_exactly_255_characters_is_accepted(world: World) -> None:
    case = await world.open_case()

    response = await _post_update(world, "lh", case["ref"], UPDATE, "k" * MAX_KEY_LENGTH)

    assert response.status_code == 201, response.text


async def test_empty_key_is_422(world: World) -> None:
    case = await world.open_case()

    response = await world.as_admin(
        "POST", f"/v1/cases/{case['ref']}/events", json_body=UPDATE, headers={"Idempotency-Key": ""}
    )

    _assert_problem(response, 422)


async def test_a_twin_stored_after_the_lookup_is_a_409_not_a_second_response(app: Any) -> None:
    """On PostgreSQL the lookup's snapshot may miss a twin that commits a moment later; the unique key catches it."""
    import datetime as dt

    from kernel.clock import UTC
    from kernel.errors import Conflict
    from tracker.idempotency import IdempotencyGuard

    now = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    async with app.state.runtime.sessionmaker() as session:
        guard = IdempotencyGuard(session=session, principal="partner:lh", key="k-1", digest="d")
        async with guard as replay:
            assert replay is None
            await session.execute(text(  # the twin's record, as the unique index sees it
                "INSERT INTO idempotency_records (principal, \"key\", request_digest, status_code, response_body, "
                "created_at) VALUES ('partner:lh', 'k-1', 'd', 201, '{}', CURRENT_TIMESTAMP)"))
            with pytest.raises(Conflict, match="completed meanwhile"):
                await guard.store(status_code=201, body=b"{}", now=now)
        await session.rollback()
