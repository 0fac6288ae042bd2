"""Crash safety (issue 7, criterion 2): SIGKILL a server under signed load, ten rounds in a row.

One ``baton serve`` process on one PostgreSQL database serves the ten rounds (each round's
restart serves the next); two partners with Ed25519 keys are registered through its API. Each
round:

1. Three new cases are opened through the API.
2. A separate load process (``tests.support.processes.load_client``) posts signed updates with the
   partner client, each with its own Idempotency-Key and a unique marker in its text (half are
   routine notes that group commit writes in batches, half customer messages), and
   retries every unacknowledged request with the same key until it is acknowledged.
3. At a random moment (after a random number of acknowledgements) the server's whole process
   group gets SIGKILL; it is restarted on the same port at once; the client keeps retrying
   through the outage.

   In odd rounds the client reaches the server through a ``Link`` (a TCP hop, as through a
   load balancer, adding 50 ms to answers), and the kill comes at the first moment after that
   random point when an answer is in transit; the link drops its connections with the server.
   That answer is of an update the server committed and the client never heard of: the round
   where exactly-once matters, and which an unlucky direct kill would hit only by chance. The
   client must get it from the idempotency record when it retries.
4. Then: every update the client considers done is in the database exactly once, with the
   sequence number the client was told; nothing else carries a marker; every case's hash chain
   and every stored signature verify.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.postgres import PostgresCluster
from tests.support.processes import Admin, BatonServer, Link, LoadPartner, SignedLoad, poll, run_db
from tracker.models import Case, Event
from tracker.verify import verify_case

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ADMIN_TOKEN = "crash-safety-admin-token-0123456789"
UPDATES = 100  # per round; the kill comes after 5 to 50 of them are acknowledged
PARTNERS = [
    {"id": "lh", "name": "Lufthansa", "kind": "airline", "default_cadence": "PT6H", "timezone": "Europe/Berlin"},
    {"id": "swissport-fra", "name": "Swissport Frankfurt", "kind": "ground_handler", "timezone": "Europe/Berlin"},
    {"id": "ua", "name": "United Airlines", "kind": "airline", "default_cadence": "PT6H"},
]


def _case_body(n: int) -> dict[str, Any]:
    return {
        "type": "baggage",
        "title": f"Delayed bag {n}, LH400 FRA-JFK then UA123",
        "customer": {"name": "Ada Lovelace", "phone": f"+1415555{n:04d}", "email": f"ada{n}@example.com",
                     "locale": "en", "timezone": "America/New_York"},
        "owner": "ua",
        "parties": [
            {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
            {"partner": "swissport-fra", "role": "handler", "responsible": True, "cadence": "PT6H"},
            {"partner": "ua", "role": "owner"},
        ],
    }


@dataclass
class Deployment:
    db_url: str
    server: BatonServer
    keys: dict[str, tuple[str, str]]  # partner id -> (keyid, private key PEM)


@pytest.fixture(scope="module")
def deployment(pg_cluster: PostgresCluster, pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One database and one server for the ten rounds: each round's restart serves the next."""
    name = f"crash_{os.getpid()}"
    url = pg_cluster.create_database(name, template=pg_template)
    server = BatonServer(url, env={"BATON_ADMIN_TOKEN": ADMIN_TOKEN}, log_dir=tmp_path_factory.mktemp("crash"))
    try:
        server.start()
        with Admin(server.url, ADMIN_TOKEN) as admin:
            keys = {spec["id"]: admin.partner(spec) for spec in PARTNERS}
        yield Deployment(url, server, keys)
    finally:
        server.stop()
        pg_cluster.drop_database(name)


@pytest.mark.parametrize("round", range(10))
def test_sigkill_under_signed_load_loses_nothing_and_doubles_nothing(
    round: int, deployment: Deployment, tmp_path: Path
) -> None:
    rng = random.Random(f"baton-crash-{round}")  # a reproducible "random moment" per round
    kill_after = rng.randint(5, UPDATES // 2)
    through_link = round % 2 == 1
    server, keys = deployment.server, deployment.keys
    load = SignedLoad.spawn(tmp_path, prefix=f"r{round}")  # starts up while the cases are opened
    dropped = 0
    try:
        if not server.running:  # a previous round failed half-way
            server.restart()
        with Admin(server.url, ADMIN_TOKEN) as admin:
            refs = [admin.post("/v1/cases", _case_body(3 * round + n))["ref"] for n in range(3)]
        with Link(server.port, delay=0.05) as link:
            load.go(
                urls=[link.url if through_link else server.url],
                partners=[LoadPartner(*keys["lh"], cases=refs), LoadPartner(*keys["swissport-fra"], cases=refs)],
                count=UPDATES, threads=8, timeout=90, notes=True,
            )
            load.wait_acknowledged(kill_after, timeout=60)
            if through_link:
                # The first moment after that when an answer is on its way: the server committed
                # an update its client has not heard of. The machine dies, and its connections
                # with it, that answer included.
                poll(link.holding, timeout=30, interval=0.001, what="an answer in transit")
                dropped = link.cut()
            server.kill()  # SIGKILL to the process group, and wait until every member is gone
            acknowledged_at_kill = len(load.acknowledged())
            killed_at = time.monotonic()
            server.restart()
            outage = time.monotonic() - killed_at
            code = load.wait(timeout=90)
            assert code == 0, f"the load client gave up or was refused\n{load.log_tail()}\n{server.log_tail()}"
    finally:
        load.kill()
    acks = load.acknowledged()
    print(f"round {round}: killed after {acknowledged_at_kill} of {UPDATES} acknowledged, back in {outage:.1f}s; "
          f"{sum(a.attempts > 1 for a in acks)} updates retried, {sum(a.no_answer for a in acks)} requests unanswered, "
          f"{sum(a.replayed for a in acks)} answered from the idempotency record"
          + (f"; through a link that lost {dropped} answers" if through_link else ""))

    # The client is done with every update, each once.
    assert len(acks) == UPDATES, f"{len(acks)} of {UPDATES} acknowledged\n{load.log_tail()}"
    assert len({a.key for a in acks}) == UPDATES
    # The kill hit the load: requests in flight or sent during the outage had to be retried.
    assert acknowledged_at_kill < UPDATES, "the load finished before the kill; nothing was tested"
    assert any(a.attempts > 1 for a in acks), f"no request needed a retry across a {outage:.1f}s outage"

    async def check(session: Any) -> tuple[dict[str, list[tuple[str, int, str | None]]], list[Any]]:
        cases = (await session.scalars(select(Case).where(Case.ref.in_(refs)))).all()
        refs_by_id = {c.id: c.ref for c in cases}
        rows = (await session.execute(select(Event.case_id, Event.seq, Event.partner_id, Event.body))).all()
        found: dict[str, list[tuple[str, int, str | None]]] = {}
        for case_id, seq, partner_id, body in rows:
            message = (body or {}).get("message") or (body or {}).get("internal_note") or ""
            if message.startswith(f"[r{round}-"):
                found.setdefault(message, []).append((refs_by_id.get(case_id, "?"), seq, partner_id))
        results = [await verify_case(session=session, ref=ref) for ref in refs]
        return found, results

    found, results = run_db(deployment.db_url, check)

    # Every acknowledged update exists exactly once, where and as the client was told.
    counts = Counter({message: len(places) for message, places in found.items()})
    doubled = {m: n for m, n in counts.items() if n != 1}
    assert not doubled, f"updates stored more than once: {doubled}"
    missing = [a.key for a in acks if a.message not in found]
    assert not missing, f"acknowledged but not in the database: {missing}"
    wrong = [(a.key, a.ref, a.seq, found[a.message][0]) for a in acks if found[a.message][0][:2] != (a.ref, a.seq)]
    assert not wrong, f"stored elsewhere than acknowledged (key, ref, seq, stored): {wrong}"
    strays = set(found) - {a.message for a in acks}
    assert not strays, f"updates in the database that no one acknowledged: {strays}"

    # Every case's chain verifies, every stored signature included.
    for result in results:
        assert result.ok, f"{result.ref}: event {result.failed_seq}: {result.reason}"
    assert sum(r.signed for r in results) == UPDATES

    # An answer lost with the server means a committed update the client sent again: it must
    # have been answered from the idempotency record, not stored a second time.
    assert sum(a.replayed for a in acks) >= min(dropped, 1), f"{dropped} answers lost, none replayed"
