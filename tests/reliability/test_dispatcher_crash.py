"""A dispatcher process killed in the middle of a batch (issue 4, criterion 3).

300 SMS wait in the outbox. A real ``baton worker`` sends them to the Twilio double, which
answers each request 0.2 s late (it accepts the message on arrival, as a slow provider does),
so the worker is mid-batch with a batch claimed and part of it accepted by the provider when it
gets SIGKILL. A new worker is started; the claims of the dead one run out after the dispatch
lease (shortened to 3 s with ``BATON_DISPATCH_LEASE_SECONDS``) and those rows are sent again.

Afterwards every row is ``sent``, the double got every message, and a message it got twice is
exactly one the dead worker had sent before it was killed and never recorded: that row shows two
attempts. The two workers are told apart by their ``StatusCallback`` URL (each gets its own
``BATON_PUBLIC_BASE_URL``), so the test knows which process each accepted request came from
without relying on timing.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from notifications.models import Notification
from notifications.outbox import enqueue
from tests.support.processes import BatonWorker, poll, run_db
from tests.support.twilio_double import TwilioDouble

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MESSAGES = 300
FIRST = "http://127.0.0.1:9/first-worker"
SECOND = "http://127.0.0.1:9/second-worker"
KILL_AFTER = 40  # accepted by the double; the first batch claims 200


def _body(i: int) -> str:
    return f"Baton: your bag is on its way (dispatch test {i:03d})."


def _outbox(db_url: str) -> list[Notification]:
    async def rows(session: Any) -> list[Notification]:
        return list((await session.scalars(select(Notification).order_by(Notification.id))).all())

    return run_db(db_url, rows)


def test_dispatcher_killed_mid_batch_sends_everything_and_counts_its_duplicates(pg_db: Any, tmp_path: Path) -> None:
    async def queue(session: Any) -> None:
        now = dt.datetime.now(dt.UTC)
        for i in range(MESSAGES):
            await enqueue(session=session, channel="sms", audience="customer", kind="customer.update",
                          recipient=f"+1415555{i:04d}", body_text=_body(i), now=now)

    run_db(pg_db.url, queue)

    with TwilioDouble() as twilio:
        twilio.hang(0.2)
        env = {
            "BATON_TWILIO_ACCOUNT_SID": twilio.account_sid,
            "BATON_TWILIO_AUTH_TOKEN": twilio.auth_token,
            "BATON_TWILIO_FROM": twilio.phone_number,
            "BATON_TWILIO_API_BASE": twilio.url,
            "BATON_DISPATCH_LEASE_SECONDS": "3",
            "BATON_PUBLIC_BASE_URL": FIRST,
        }
        worker = BatonWorker(pg_db.url, env=env, log_dir=tmp_path)
        with worker:

            def mid_batch() -> bool:
                worker.assert_running()
                return len(twilio.messages) >= KILL_AFTER

            poll(mid_batch, timeout=60, interval=0.01, what=f"the double accepting {KILL_AFTER} messages")
            worker.kill()  # SIGKILL, and wait until the process is gone
            in_hands = {row.body_text: row for row in _outbox(pg_db.url) if row.state == "sending"}
            from_first = [m["body"] for m in twilio.messages if (m["status_callback"] or "").startswith(FIRST)]

            worker.restart(env={"BATON_PUBLIC_BASE_URL": SECOND})

            async def unfinished(session: Any) -> int:
                query = select(func.count()).select_from(Notification).where(
                    Notification.state.in_(("pending", "sending")))
                return await session.scalar(query) or 0

            def drained() -> bool:
                worker.assert_running()
                return run_db(pg_db.url, unfinished) == 0

            poll(drained, timeout=90, interval=0.2, what="the outbox drained after the restart")
        received = twilio.messages

    rows = _outbox(pg_db.url)
    by_body = {row.body_text: row for row in rows}
    first_accepted = Counter(from_first)
    assert len(rows) == MESSAGES

    # The premise: the kill came in the middle of a batch, some of it accepted, some not yet sent.
    accepted_in_hands = set(in_hands) & set(first_accepted)
    assert accepted_in_hands, f"no claimed row had reached the provider at the kill\n{worker.log_tail()}"
    assert set(in_hands) - set(first_accepted), "the whole claimed batch had been sent before the kill"
    assert all(n == 1 for n in first_accepted.values()), "the first worker sent something twice by itself"

    # Every pending notification is sent after the restart.
    states = Counter(row.state for row in rows)
    assert states == {"sent": MESSAGES}, f"{states}\n{worker.log_tail()}"
    assert all(row.provider_id for row in rows)

    # The double received each message at least once ...
    counts = Counter(m["body"] for m in received)
    assert set(counts) == set(by_body), f"never received: {sorted(set(by_body) - set(counts))[:5]}"
    # ... and twice only what the dead worker had sent but not recorded, which is counted in
    # the row: two attempts. Every other row went out once, with one attempt.
    duplicates = {body: n for body, n in counts.items() if n > 1}
    assert set(duplicates) == accepted_in_hands, (
        f"{len(duplicates)} duplicates, {len(accepted_in_hands)} accepted before the kill and unrecorded"
    )
    assert set(duplicates.values()) == {2}
    assert twilio_duplicates(received) == len(accepted_in_hands)
    retried = {row.body_text for row in rows if row.attempts > 1}
    assert retried == set(in_hands), "the rows attempted twice are not the rows the dead worker held"
    assert all(row.attempts == 2 for row in rows if row.body_text in retried)
    assert all(row.attempts == 1 for row in rows if row.body_text not in retried)
    # The recorded provider id is the second send's: the resend's SID, not the lost first one.
    sids = {m["sid"]: m for m in received}
    assert all((sids[row.provider_id]["status_callback"] or "").startswith(SECOND)
               for row in rows if row.body_text in retried)
    assert len(received) == MESSAGES + len(accepted_in_hands)


def twilio_duplicates(received: list[Any]) -> int:
    """Extra copies the customer got: what ``TwilioDouble.duplicates()`` counts, summed."""
    counts = Counter((m["to"], m["body"]) for m in received)
    return sum(n - 1 for n in counts.values() if n > 1)
