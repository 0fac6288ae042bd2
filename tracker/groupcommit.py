"""Group commit: concurrent signed updates of one process share one transaction.

A signed update's own work (parsing, verifying its signature) runs in its request; what needs the
database is handed to the process's ``GroupCommit``, which writes whatever has gathered as one
transaction and answers each request only after that transaction committed:

1. Spend every nonce and take every Idempotency-Key's lock and stored response, one statement
   (``tracker.admission.spend_many``). A stale nonce, a twin in flight in another process or a
   stored response answers that request alone (401, 409, the replay or 422).
2. Lock the cases in id order and read them with the posting parties, one statement; apply each
   update in arrival order (``tracker.routine``). An update the case refuses gets its own
   problem and does not fail the batch; an update that is not routine gets None, and its
   request takes the general path in a transaction of its own (its nonce stays spent here).
3. Write all events, cases, parties and stored responses, one statement; commit.

Batches form by themselves, with no timer: while a transaction is open, new updates queue;
when it commits, everything queued (up to ``group_commit_max``) becomes the next one. A lone
update on an idle server is therefore sent at once, and under load the batch grows with the
load. ``group_commit_lanes`` transactions may be open at once (lane two fills while lane one
waits for the database).

If a batch's transaction fails as a whole (a deadlock between processes, a dropped connection,
a twin Idempotency-Key committed by another process a moment earlier), nothing of it is kept,
and each of its updates is tried again alone; only an update that fails alone gets the error.
Retrying is safe even when a failed COMMIT did in fact commit: the nonces are spent then, and
the retry is refused as a replay, never applied twice.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kernel import metrics
from kernel.errors import BatonError
from kernel.rendering import render_json
from tracker import admission, idempotency, routine
from tracker.admission import Verified
from tracker.routine import RoutineUpdate

log = logging.getLogger("baton.groupcommit")


@dataclass(frozen=True, slots=True)
class Answer:
    """A committed answer: the new event (201), or a stored response replayed."""

    status_code: int
    body: bytes
    replayed: bool = False


# What a submission comes to: an Answer, the problem to answer, or None: take the general path
# (the update is not routine; its nonce is spent).
Outcome = Answer | BatonError | None


@dataclass(slots=True)
class Submission:
    verified: Verified
    update: RoutineUpdate
    key: str | None  # a valid Idempotency-Key this process holds in flight (``idempotency.hold``)
    digest: str | None
    future: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit:
    """The per-process writer of signed routine updates (see the module doc)."""

    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], gate: AbstractAsyncContextManager[Any],
                 max_batch: int = 64, lanes: int = 1) -> None:
        self._sessionmaker = sessionmaker
        self._gate = gate
        self._max_batch = max_batch
        self._lanes = lanes
        self._queue: list[Submission] = []
        self._open = 0  # lanes draining the queue now
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, *, verified: Verified, update: RoutineUpdate, key: str | None = None,
                     digest: str | None = None) -> Answer | None:
        """Write one update with whatever else is queued: its Answer, or None for the general
        path; raises the problem the update itself earned."""
        submission = Submission(verified=verified, update=update, key=key, digest=digest)
        self._queue.append(submission)
        if self._open < self._lanes:
            self._open += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        outcome = await submission.future
        if isinstance(outcome, BatonError):
            raise outcome
        return outcome

    async def close(self) -> None:
        """Let the open transactions finish (their requests are answered)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while self._queue:  # no await between this test failing and the lane closing
                batch = self._queue[: self._max_batch]
                del self._queue[: len(batch)]
                await self._commit(batch)
        finally:
            self._open -= 1

    async def _commit(self, batch: list[Submission]) -> None:
        try:
            async with self._gate, self._sessionmaker() as session:
                outcomes = await write_batch(session, batch)
                await session.commit()
        except Exception as exc:
            if len(batch) > 1:
                log.warning("a batch of %d updates failed as a whole (%s); each is tried alone",
                            len(batch), type(exc).__name__)
                for submission in batch:
                    await self._commit([submission])
                return
            _settle(batch[0], exc)
            return
        metrics.WRITE_BATCH.observe(len(batch))
        for submission, outcome in zip(batch, outcomes, strict=True):
            _settle(submission, outcome)


async def write_batch(session: AsyncSession, batch: list[Submission]) -> list[Outcome]:
    """Steps 1-3 of the module doc in ``session``'s transaction, short of the commit."""
    outcomes: list[Outcome] = [None] * len(batch)
    entries, admitted, seen = [], [], set()
    for i, sub in enumerate(batch):
        nonce = sub.verified.nonce
        if (nonce.keyid, nonce.nonce) in seen:
            outcomes[i] = admission.replayed()
            continue
        seen.add((nonce.keyid, nonce.nonce))
        entries.append((nonce, sub.verified.principal.idempotency_scope, sub.key))
        admitted.append(i)
    live = []
    for i, spent in zip(admitted, await admission.spend_many(session, entries), strict=True):
        sub = batch[i]
        if not spent.fresh:
            outcomes[i] = admission.refused(spent, sub.verified.nonce.keyid)
        elif spent.claim is not None and not spent.claim.locked:
            outcomes[i] = idempotency.still_in_flight()
        elif spent.claim is not None and spent.claim.request_digest is not None:
            claim = spent.claim
            outcomes[i] = (idempotency.different_request() if claim.request_digest != sub.digest
                           else Answer(claim.status_code or 200, (claim.response_body or "").encode(), replayed=True))
        else:
            live.append(i)
    locked = await routine.lock(session, [batch[i].update for i in live])
    stored = []
    for i in live:
        sub = batch[i]
        try:
            result = await routine.apply(session, locked, sub.update)
        except BatonError as problem:
            outcomes[i] = problem
            continue
        if result is None:
            continue  # the general path
        body = render_json(result)
        outcomes[i] = Answer(201, body)
        if sub.key is not None and sub.digest is not None:
            stored.append(idempotency.StoredResponse(
                principal=sub.verified.principal.idempotency_scope, key=sub.key, request_digest=sub.digest,
                status_code=201, response_body=body.decode(), created_at=sub.update.now))
    await routine.write(session, locked, stored)
    return outcomes


def _settle(submission: Submission, outcome: Outcome | Exception) -> None:
    future = submission.future
    if future.done():  # the request went away (its client disconnected); its update stands
        return
    if isinstance(outcome, Exception) and not isinstance(outcome, BatonError):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
