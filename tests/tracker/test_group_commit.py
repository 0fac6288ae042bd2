"""Group commit stores what one-at-a-time writes store, and answers each request the same.

``tracker.groupcommit`` writes concurrent signed updates of one process in one transaction.
Hypothesis draws batches (several updates of one case by two partners, some the case must
refuse, some that are not routine and fall back to the general path, sweeps between batches so
that late parties come up) and posts each batch twice, on two copies of one database: all at
once through ``GroupCommit.submit`` (then, as the web layer does, the fallbacks one by one
through ``post_update``), and one by one through the ORM path only. The answers must be equal
in order, and so must every stored column of every event, case and party. The fixed tests pin
what a batch does with twin Idempotency-Keys, replayed nonces, and a batch that fails as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from kernel.errors import BatonError
from kernel.rendering import render_json
from partners.schemas import KeyIn
from partners.service import add_key
from tests.tracker.test_write_path import LH, REF, UA, Copy, _payload, update_fields
from tracker import routine, updates
from tracker.admission import SpentNonce, Verified
from tracker.groupcommit import Answer, GroupCommit
from tracker.models import Event
from tracker.routine import RoutineUpdate

ED25519_PUBLIC = Ed25519PrivateKey.generate().public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
KEYID = {"lh": "lh-ed", "ua": "ua-ed"}


class Grouped(Copy):
    """A copy written through group commit; lh and ua each have a signing key."""

    def __init__(self, url: str) -> None:
        super().__init__(url, general_only=False)
        self.writer = GroupCommit(sessionmaker=self.sessions, gate=contextlib.nullcontext(), max_batch=64)
        self.batches: list[int] = []

    async def seed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        await super().seed(monkeypatch)
        async with self.sessions() as session:
            for partner, keyid in KEYID.items():
                await add_key(session=session, partner_id=partner, now=self.clock.now(),
                              payload=KeyIn(keyid=keyid, alg="ed25519", public_key=ED25519_PUBLIC))
            await session.commit()

    def verified(self, who: str, *, nonce: str | None = None) -> Verified:
        spent = SpentNonce(KEYID[who], nonce or uuid.uuid4().hex, self.clock.now() + dt.timedelta(minutes=10))
        return Verified(principal=LH if who == "lh" else UA, nonce=spent, write=True)

    async def post_batch(self, members: list[tuple[str, Any]], **extra: Any) -> list[Any]:
        """Submit all members at once (one batch), then take each fallback through the general path."""
        outcomes = await asyncio.gather(*(
            self.writer.submit(verified=self.verified(who), update=RoutineUpdate(
                principal=LH if who == "lh" else UA, ref=REF, payload=payload, now=self.clock.now()), **extra)
            for who, payload in members), return_exceptions=True)
        answers = []
        for (who, payload), outcome in zip(members, outcomes, strict=True):
            if outcome is None:
                outcome = await self.post(who, payload)  # the web layer's fallback, nonce already spent
            answers.append(normal(outcome))
        return answers


def normal(answer: Any) -> Any:
    """An answer as the client reads it: the JSON body, or the problem's kind and status."""
    if isinstance(answer, BatonError):
        return (type(answer).__name__, answer.status)
    if isinstance(answer, Answer):
        return json.loads(answer.body)
    if isinstance(answer, tuple):
        return answer
    return json.loads(render_json(answer))


batches = st.lists(
    st.tuples(st.lists(st.tuples(st.sampled_from(["lh", "lh", "lh", "ua"]), update_fields), min_size=1, max_size=6),
              st.integers(min_value=0, max_value=9 * 60), st.booleans()),
    min_size=1, max_size=4,
)


async def _run(urls: tuple[str, str], drawn: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    grouped, general = Grouped(urls[0]), Copy(urls[1], general_only=True)
    try:
        for copy in (grouped, general):
            await copy.seed(monkeypatch)
        for members, minutes, sweep in drawn:
            for copy in (grouped, general):
                copy.clock.advance(minutes=minutes)
                if sweep:
                    await copy.watchdog.sweep()
            now = grouped.clock.now()
            posted = [(who, p) for who, fields in members if (p := _payload(fields, now)) is not None]
            if not posted:
                continue
            expected = [normal(await general.post(who, payload)) for who, payload in posted]
            assert await grouped.post_batch(posted) == expected
        mine, theirs = await grouped.rows(), await general.rows()
        for table in mine:
            assert len(mine[table]) == len(theirs[table]), table
            for a, b in zip(mine[table], theirs[table], strict=True):
                differ = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
                assert not differ, f"{table}: grouped vs one at a time differ in {differ}"
    finally:
        for copy in (grouped, general):
            await copy.engine.dispose()


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(drawn=batches)
def test_a_batch_stores_and_answers_what_one_at_a_time_does(
    database_copies: Any, monkeypatch: pytest.MonkeyPatch, drawn: list[Any]
) -> None:
    asyncio.run(_run(database_copies(), drawn, monkeypatch))


def watch_writes(monkeypatch: pytest.MonkeyPatch, *, fail_first: Exception | None = None) -> list[int]:
    """The number of events each ``routine.write`` call was given (one call per transaction);
    ``fail_first``: the first call raises it instead of writing."""
    writes: list[int] = []
    original = routine.write

    async def watched(session: Any, locked: Any, stored: Any = ()) -> None:
        writes.append(len(locked.events))
        if fail_first is not None and len(writes) == 1:
            raise fail_first
        await original(session, locked, stored)

    monkeypatch.setattr(routine, "write", watched)
    return writes


def test_a_batch_of_routine_updates_is_one_transaction(database_copies: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The property compares something: six routine notes by two parties go through one write, and chain in order."""
    writes = watch_writes(monkeypatch)

    url = database_copies()[0]  # outside the loop: the template may still have to be migrated

    async def scenario() -> None:
        grouped = Grouped(url)
        try:
            await grouped.seed(monkeypatch)
            notes = [("lh" if i % 3 else "ua", updates.EventIn(internal_note=f"scan {i}", location="FRA"))
                     for i in range(6)]
            answers = await grouped.post_batch(notes)
            assert [a["seq"] for a in answers] == [2, 3, 4, 5, 6, 7]
            assert [a["prev_hash"] for a in answers[1:]] == [a["hash"] for a in answers[:-1]]
        finally:
            await grouped.engine.dispose()

    asyncio.run(scenario())
    assert writes == [6]


def test_twin_keys_replayed_nonces_and_a_failed_batch(database_copies: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url = database_copies()[0]  # outside the loop: the template may still have to be migrated

    async def scenario() -> None:
        grouped = Grouped(url)
        try:
            await grouped.seed(monkeypatch)
            note = updates.EventIn(internal_note="scanned", location="FRA")
            other = updates.EventIn(internal_note="scanned again", location="JFK")
            now = grouped.clock.now()

            def submit(payload: Any, *, key: str | None, digest: str | None, nonce: str | None = None) -> Any:
                return grouped.writer.submit(verified=grouped.verified("lh", nonce=nonce), key=key, digest=digest,
                                             update=RoutineUpdate(principal=LH, ref=REF, payload=payload, now=now))

            # Twins in one batch: the first writes, the same request again replays it, another request is 422.
            first, twin, mismatch, plain = await asyncio.gather(
                submit(note, key="k1", digest="d1"), submit(note, key="k1", digest="d1"),
                submit(other, key="k1", digest="d2"), submit(other, key=None, digest=None),
                return_exceptions=True)
            assert isinstance(first, Answer) and first.status_code == 201 and not first.replayed
            assert isinstance(twin, Answer) and twin.replayed and twin.body == first.body
            assert normal(mismatch) == ("IdempotencyMismatch", 422)
            assert isinstance(plain, Answer) and plain.status_code == 201
            # A nonce used twice in one batch, and one used before: the replays are refused, the first stands.
            again = await asyncio.gather(submit(note, key=None, digest=None, nonce="n-1"),
                                         submit(note, key=None, digest=None, nonce="n-1"),
                                         return_exceptions=True)
            assert isinstance(again[0], Answer)
            assert normal(again[1]) == ("Unauthorized", 401) and "replayed" in str(again[1])
            later = await asyncio.gather(submit(note, key=None, digest=None, nonce="n-1"), return_exceptions=True)
            assert normal(later[0]) == ("Unauthorized", 401)
            async with grouped.sessions() as session:
                count = await session.scalar(select(func.count()).select_from(Event).where(Event.type == "update"))
            assert count == 3  # first, plain, again[0]: nothing else was written
        finally:
            await grouped.engine.dispose()

    asyncio.run(scenario())


def test_a_batch_that_fails_as_a_whole_is_retried_one_by_one(
    database_copies: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure of the batch's transaction (here: its first write) costs nobody their update."""
    writes = watch_writes(monkeypatch, fail_first=RuntimeError("connection lost"))

    url = database_copies()[0]  # outside the loop: the template may still have to be migrated

    async def scenario() -> None:
        grouped = Grouped(url)
        try:
            await grouped.seed(monkeypatch)
            notes = [("lh", updates.EventIn(internal_note=f"scan {i}")) for i in range(3)]
            answers = await grouped.post_batch(notes)
            assert [a["seq"] for a in answers] == [2, 3, 4]
            assert writes == [3, 1, 1, 1]  # the batch failed, then each update alone
        finally:
            await grouped.engine.dispose()

    asyncio.run(scenario())
