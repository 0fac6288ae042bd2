"""``baton verify``: any edit to a stored event is caught, and the failing event is named."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import World
from tracker.models import Case, Event
from tracker.verify import verify_case


async def _story(world: World) -> str:
    case = await world.open_case()
    ref = case["ref"]
    for body in (
        {"status": "tracing", "internal_note": "checking FRA"},
        {"status": "located", "message": "Your bag is in Frankfurt.", "location": "FRA"},
        {"message": "It flies tonight.", "eta": "2026-11-03T08:00:00+01:00"},
    ):
        response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body=body)
        assert response.status_code == 201, response.text
    response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", hmac=True,
                                      json_body={"internal_note": "signed with the HMAC key"})
    assert response.status_code == 201, response.text
    return ref


async def _verify(world: World, ref: str) -> Any:
    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        return await verify_case(session=session, ref=ref)


async def _edit(world: World, ref: str, seq: int, **values: Any) -> None:
    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        case_id = await session.scalar(select(Case.id).where(Case.ref == ref))
        await session.execute(update(Event).where(Event.case_id == case_id, Event.seq == seq).values(**values))
        await session.commit()


async def test_untouched_timeline_verifies_with_every_signature(world: World) -> None:
    ref = await _story(world)
    result = await _verify(world, ref)
    assert result.ok, result.reason
    assert result.events == 5
    assert result.signed == 4


@pytest.mark.parametrize(
    "seq, change",
    [
        (3, {"body": {"status": "delivered", "message": "Your bag is in Frankfurt.", "location": "FRA"}}),
        (2, {"visibility": "public"}),
        (4, {"actor": "partner:ua"}),
        (1, {"type": "note"}),
        (3, {"hash": "f" * 64}),
        (4, {"prev_hash": "0" * 64}),
    ],
    ids=["body", "visibility", "actor", "type", "hash", "prev_hash"],
)
async def test_editing_a_stored_event_fails_verification_naming_it(
    world: World, seq: int, change: dict[str, Any]
) -> None:
    ref = await _story(world)
    await _edit(world, ref, seq, **change)
    result = await _verify(world, ref)
    assert not result.ok
    assert result.failed_seq == seq, result.reason


async def test_rewriting_body_and_digest_together_is_caught_by_the_chain(world: World) -> None:
    from tracker.chain import digest

    ref = await _story(world)
    forged = {"status": "delivered"}
    await _edit(world, ref, 3, body=forged, body_digest=digest(forged))
    result = await _verify(world, ref)
    assert (result.ok, result.failed_seq) == (False, 3)


async def test_forged_partner_statement_with_recomputed_chain_is_caught_by_the_signature(world: World) -> None:
    """An insider who rewrites an event and recomputes every hash still cannot forge lh's signature."""
    from tracker.chain import digest, event_hash

    ref = await _story(world)
    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        case = await session.scalar(select(Case).where(Case.ref == ref))
        events = (await session.scalars(select(Event).where(Event.case_id == case.id).order_by(Event.seq))).all()
        prev = events[1].hash
        for event in events[2:]:
            if event.seq == 3:
                event.body = {**event.body, "message": "Your bag was never checked in."}
                event.body_digest = digest(event.body)
            event.prev_hash = prev
            event.hash = event_hash(
                case_ref=ref, seq=event.seq, type=event.type, actor=event.actor, partner_id=event.partner_id,
                visibility=event.visibility, occurred_at=event.occurred_at, received_at=event.received_at,
                body_digest=event.body_digest, signature=event.signature, prev_hash=event.prev_hash,
            )
            prev = event.hash
        case.last_hash = prev
        await session.commit()
    result = await _verify(world, ref)
    assert (result.ok, result.failed_seq) == (False, 3)
    assert "signed" in (result.reason or "")


async def test_deleting_the_last_event_is_detected(world: World) -> None:
    ref = await _story(world)
    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        case_id = await session.scalar(select(Case.id).where(Case.ref == ref))
        await session.execute(Event.__table__.delete().where(Event.case_id == case_id, Event.seq == 5))
        await session.commit()
    result = await _verify(world, ref)
    assert not result.ok
    assert "removed" in (result.reason or "")


async def _cli(db_url: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "BATON_DATABASE_URL": db_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracker.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_baton_verify_command_passes_then_names_the_edited_event(world: World, settings: Any) -> None:
    ref = await _story(world)
    code, out = await _cli(settings.database_url, "verify", ref.lower())
    assert code == 0, out
    assert "4 partner signatures verified" in out

    await _edit(world, ref, 4, occurred_at=world.clock.now().replace(year=2025))
    code, out = await _cli(settings.database_url, "verify", ref)
    assert code == 1
    assert "event 4" in out
