"""Housekeeping forgets spent nonces and idempotency records, but only once they can no longer matter.

``tracker.worker.housekeeping`` (run by every worker round) purges:

- signature nonces past their ``expires_at`` (``partners.service.purge_nonces``). A captured
  request can be replayed for as long as its ``created`` is within ``signature_max_skew_seconds``
  (300 s) of the clock; its nonce must outlive that, or a replay after a purge run would be
  accepted as new. The nonce is kept for twice the skew after its use.
- idempotency records older than ``IDEMPOTENCY_RETENTION`` (48 hours: clients retry within
  hours). Until then a retry must still get the first response, not run a second time.

The purge runs at frozen instants just inside and just past each window.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
from sqlalchemy import func, select

from partners.client import BatonSigner
from partners.models import SignatureNonce
from tests.conftest import World
from tracker.models import Case, IdempotencyRecord
from tracker.worker import IDEMPOTENCY_RETENTION, housekeeping

SKEW = dt.timedelta(seconds=300)  # signature_max_skew_seconds
RETENTION = dt.timedelta(hours=48)
UPDATE = {"message": "Checking the FRA carousel", "visibility": "parties"}


def _sessionmaker(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


async def _purge(world: World) -> int:
    async with _sessionmaker(world)() as session:
        purged = await housekeeping(session, world.clock.now())
        await session.commit()
    return purged


async def _count(world: World, model: Any, *where: Any) -> int:
    async with _sessionmaker(world)() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def _last_seq(world: World, ref: str) -> int:
    async with _sessionmaker(world)() as session:
        return await session.scalar(select(Case.last_seq).where(Case.ref == ref)) or 0


def _fixed_signer(world: World, *, created: dt.datetime, nonce: str) -> BatonSigner:
    """lh's Ed25519 key with a fixed ``created`` and nonce: every request it signs is the same bytes."""
    keys = world.partners["lh"]
    return BatonSigner.ed25519(keys.keyid, keys.private_key, clock=lambda: created.timestamp(),
                               nonce_factory=lambda: nonce)


async def _send(world: World, signer: BatonSigner, ref: str) -> httpx.Response:
    return await world.client.post(f"/v1/cases/{ref}/events", content=json.dumps(UPDATE).encode(),
                                   headers={"content-type": "application/json"}, auth=signer)


# ---------------------------------------------------------------- nonces


async def test_nonce_outlives_the_replay_window_and_is_purged_after_it(world: World) -> None:
    ref = (await world.open_case())["ref"]
    used_at = world.clock.now()
    created = used_at + dt.timedelta(seconds=60)  # a partner clock a minute fast: still accepted
    nonce = "purge-window-0001"
    signer = _fixed_signer(world, created=created, nonce=nonce)
    first = await _send(world, signer, ref)
    assert first.status_code == 201, first.text
    seq = await _last_seq(world, ref)
    assert await _count(world, SignatureNonce, SignatureNonce.nonce == nonce) == 1

    # The last instant at which the captured request still verifies: a purge run, then the replay.
    world.clock.set(created + SKEW)
    await _purge(world)
    assert await _count(world, SignatureNonce, SignatureNonce.nonce == nonce) == 1
    replay = await _send(world, signer, ref)
    assert replay.status_code == 401, replay.text
    assert "already used" in replay.json()["detail"]
    assert await _last_seq(world, ref) == seq

    # Kept through its expiry (twice the skew after use) ...
    world.clock.set(used_at + 2 * SKEW)
    await _purge(world)
    assert await _count(world, SignatureNonce, SignatureNonce.nonce == nonce) == 1

    # ... and gone just after it, when the request it guarded is long stale anyway.
    world.clock.set(used_at + 2 * SKEW + dt.timedelta(microseconds=1))
    assert await _purge(world) >= 1
    assert await _count(world, SignatureNonce, SignatureNonce.nonce == nonce) == 0
    stale = await _send(world, signer, ref)
    assert stale.status_code == 401 and "created" in stale.json()["detail"]
    assert await _last_seq(world, ref) == seq


async def test_purge_keeps_fresh_nonces_of_other_requests(world: World) -> None:
    ref = (await world.open_case())["ref"]
    old = _fixed_signer(world, created=world.clock.now(), nonce="old-0001")
    assert (await _send(world, old, ref)).status_code == 201
    world.clock.advance(2 * SKEW - dt.timedelta(seconds=1))
    recent = _fixed_signer(world, created=world.clock.now(), nonce="recent-0001")
    assert (await _send(world, recent, ref)).status_code == 201

    world.clock.advance(seconds=2)  # past the first nonce's expiry only
    await _purge(world)
    assert await _count(world, SignatureNonce, SignatureNonce.nonce == "old-0001") == 0
    assert await _count(world, SignatureNonce, SignatureNonce.nonce == "recent-0001") == 1
    replay = await _send(world, recent, ref)
    assert replay.status_code == 401 and "already used" in replay.json()["detail"]


# ---------------------------------------------------------------- idempotency records


async def test_idempotency_record_survives_its_retention_and_is_purged_after_it(world: World) -> None:
    assert IDEMPOTENCY_RETENTION == RETENTION, "a changed retention is a contract change: update this test"
    ref = (await world.open_case())["ref"]
    key = {"Idempotency-Key": "lh-purge-window-0001"}
    stored_at = world.clock.now()
    first = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body=UPDATE, headers=key)
    assert first.status_code == 201, first.text
    seq = await _last_seq(world, ref)
    records = (IdempotencyRecord.key == key["Idempotency-Key"],)
    assert await _count(world, IdempotencyRecord, *records) == 1

    # The last instant of the retention: a purge run, then a retry (signed afresh) still replays.
    world.clock.set(stored_at + RETENTION)
    await _purge(world)
    assert await _count(world, IdempotencyRecord, *records) == 1
    retry = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body=UPDATE, headers=key)
    assert retry.status_code == 201, retry.text
    assert retry.headers.get("idempotent-replayed") == "true"
    assert retry.json() == first.json()
    assert await _last_seq(world, ref) == seq

    # Just past it the record is gone: the key is free again and a request with it runs anew.
    world.clock.set(stored_at + RETENTION + dt.timedelta(microseconds=1))
    assert await _purge(world) >= 1
    assert await _count(world, IdempotencyRecord, *records) == 0
    again = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body=UPDATE, headers=key)
    assert again.status_code == 201, again.text
    assert again.headers.get("idempotent-replayed") is None
    assert await _last_seq(world, ref) == seq + 1
