"""Known-answer vectors for the hash chain: the record cannot be quietly rewritten.

``baton verify`` recomputes hashes with the same function the writer used, so a writer that
left something out of the hash (the previous hash, say) would still verify. These vectors pin
the formula documented in ``tracker/chain.py`` to digests computed once, outside Baton's code,
and committed below as literals:

    body_digest = sha256(canonical(body))
    hash        = sha256(canonical({case, seq, type, actor, partner, visibility, occurred_at,
                                    received_at, body_digest, signature_digest, prev}))

What the docstring leaves implicit, and these vectors therefore fix (see ``_canonical`` and
friends below, written with hashlib and json only): ``canonical`` is JSON with sorted keys, no
whitespace, non-ASCII kept as UTF-8; times are UTC with microseconds and a ``Z``;
``signature_digest`` is the digest of the kept signature with its raw ``body`` replaced by the
body's sha-256 (``null`` without a signature); the first event's ``prev`` is 64 zeros.

If one of these constants has to change, every chain ever written stops verifying: that is a
format change, not a refactoring.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import select

from tests.conftest import World
from tracker.chain import GENESIS, digest, event_hash, signature_commitment
from tracker.models import Case, Event
from tracker.timeline import append_event, new_event

UTC = dt.timezone.utc
REF = "BAG-7KQ3X9T"
ZEROS = "0" * 64

# ---------------------------------------------------------------- the committed answers

BODY_DIGEST_1 = "c84b6d5f0c20d9b70d80390fa4caf3e3807a13105e9cdb9dc81dbb47832be71c"
BODY_DIGEST_2 = "49688f4acad545af2d5062b460e81dca15778f1dc35d41138e8bd83e6e349a11"
BODY_DIGEST_3 = "5f359d521b12f4ce59823cb3ae90f1e13bd53a6d6bdd51ecd1ae3f1c05e9beed"
SIGNATURE_DIGEST_2 = "9e745304f2cc191ef3686fd861d4e1e1bdd01b6454621957b1526a2a9cde53a1"
HASH_1 = "f6ea3536596abc632e53da3aa8cfb077e1e22d1ee4aab291e0fcd91f6f554df3"
HASH_2 = "76ffa7af35c3600a0d688cb37b88b5f89f1627857e9d1e4d399088cf65540f31"
HASH_3 = "ca16164069d8debf53091971267052e96f3368bee813aa51b4f4310ecf9a121a"
# Event 3's hash input, byte for byte (checked with `sha256sum` too, outside Python).
HEADER_3 = (
    '{"actor":"system","body_digest":"5f359d521b12f4ce59823cb3ae90f1e13bd53a6d6bdd51ecd1ae3f1c05e9beed",'
    '"case":"BAG-7KQ3X9T","occurred_at":"2026-11-02T15:20:00.123456Z","partner":"lh",'
    '"prev":"76ffa7af35c3600a0d688cb37b88b5f89f1627857e9d1e4d399088cf65540f31",'
    '"received_at":"2026-11-02T15:20:00.123456Z","seq":3,"signature_digest":null,"type":"party.late",'
    '"visibility":"parties"}'
)
BODY_1 = ('{"customer_city":"Zürich","external_refs":{"bag_tag":"0016123456"},"owner":"ua",'
          '"parties":["lh","ua"],"title":"Delayed bag, LH400 FRA-JFK"}')
# Event 3 again, identical in every field but its prev_hash: proves the link is in the hash.
HASH_3_OTHER_PREV = "9239fcd89b94aa85ff35e3af9a66bf590a463bea8c656b3f357eb4b210b4e947"
OTHER_PREV = "f" * 64

# ---------------------------------------------------------------- the fixed sequence

RAW_BODY_2 = '{"status":"located","message":"Gefunden in FRA, Ladung auf UA123 – Gepäckband 4"}'
SIGNATURE_2: dict[str, Any] = {
    "keyid": "lh-ed",
    "alg": "ed25519",
    "created": 1793955600,
    "nonce": "n-0001",
    "method": "POST",
    "target_uri": f"https://baton.example.com/v1/cases/{REF}/events",
    "headers": {
        "content-digest": "sha-256=:AAAA:",
        "signature-input": 'baton=("@method" "@target-uri" "content-digest");created=1793955600;keyid="lh-ed"',
        "signature": "baton=:c2lnbmF0dXJl:",
    },
    "body": RAW_BODY_2,
}

EVENTS: list[dict[str, Any]] = [
    {
        "type": "case.opened", "actor": "staff:admin", "partner_id": None, "visibility": "public",
        "occurred_at": dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        "received_at": dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        "occurred_stamp": "2026-11-02T09:00:00.000000Z", "received_stamp": "2026-11-02T09:00:00.000000Z",
        "body": {"title": "Delayed bag, LH400 FRA-JFK", "owner": "ua", "customer_city": "Zürich",
                 "parties": ["lh", "ua"], "external_refs": {"bag_tag": "0016123456"}},
        "signature": None,
    },
    {
        # A partner's signed update, received in another zone's offset and with sub-second time.
        "type": "update", "actor": "partner:lh", "partner_id": "lh", "visibility": "parties",
        "occurred_at": dt.datetime(2026, 11, 2, 10, 15, 30, 250000, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        "received_at": dt.datetime(2026, 11, 2, 9, 20, 0, 123456, tzinfo=UTC),
        "occurred_stamp": "2026-11-02T09:15:30.250000Z", "received_stamp": "2026-11-02T09:20:00.123456Z",
        "body": {"status": "located", "message": "Gefunden in FRA, Ladung auf UA123 – Gepäckband 4"},
        "signature": SIGNATURE_2,
    },
    {
        "type": "party.late", "actor": "system", "partner_id": "lh", "visibility": "parties",
        "occurred_at": dt.datetime(2026, 11, 2, 15, 20, 0, 123456, tzinfo=UTC),
        "received_at": dt.datetime(2026, 11, 2, 15, 20, 0, 123456, tzinfo=UTC),
        "occurred_stamp": "2026-11-02T15:20:00.123456Z", "received_stamp": "2026-11-02T15:20:00.123456Z",
        "body": {"partner": "lh", "role": "carrier", "reminders_sent": 1, "responsible": True, "note": None},
        "signature": None,
    },
]

# ---------------------------------------------------------------- the formula, written out independently


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signature_digest(signature: dict[str, Any] | None) -> str | None:
    if signature is None:
        return None
    committed = {k: v for k, v in signature.items() if k != "body"}
    committed["body_sha256"] = _sha256_hex(signature["body"].encode("utf-8"))
    return _sha256_hex(_canonical(committed))


def _hash(spec: dict[str, Any], *, seq: int, prev: str, case: str = REF) -> str:
    header = {
        "case": case, "seq": seq, "type": spec["type"], "actor": spec["actor"], "partner": spec["partner_id"],
        "visibility": spec["visibility"], "occurred_at": spec["occurred_stamp"],
        "received_at": spec["received_stamp"], "body_digest": _sha256_hex(_canonical(spec["body"])),
        "signature_digest": _signature_digest(spec["signature"]), "prev": prev,
    }
    return _sha256_hex(_canonical(header))


def _chain_independently() -> list[str]:
    hashes, prev = [], ZEROS
    for seq, spec in enumerate(EVENTS, start=1):
        prev = _hash(spec, seq=seq, prev=prev)
        hashes.append(prev)
    return hashes


def _baton_hash(spec: dict[str, Any], *, seq: int, prev: str) -> str:
    return event_hash(case_ref=REF, seq=seq, type=spec["type"], actor=spec["actor"], partner_id=spec["partner_id"],
                      visibility=spec["visibility"], occurred_at=spec["occurred_at"],
                      received_at=spec["received_at"], body_digest=digest(spec["body"]),
                      signature=spec["signature"], prev_hash=prev)


# ---------------------------------------------------------------- tests


def test_the_committed_answers_follow_from_the_documented_formula() -> None:
    # Guards the constants themselves: they were produced by the functions above, not by Baton.
    assert _chain_independently() == [HASH_1, HASH_2, HASH_3]
    assert [_sha256_hex(_canonical(e["body"])) for e in EVENTS] == [BODY_DIGEST_1, BODY_DIGEST_2, BODY_DIGEST_3]
    assert _signature_digest(SIGNATURE_2) == SIGNATURE_DIGEST_2
    assert _hash(EVENTS[2], seq=3, prev=OTHER_PREV) == HASH_3_OTHER_PREV


def test_the_hash_input_is_the_documented_bytes() -> None:
    assert hashlib.sha256(HEADER_3.encode("utf-8")).hexdigest() == HASH_3
    assert hashlib.sha256(BODY_1.encode("utf-8")).hexdigest() == BODY_DIGEST_1
    assert f'"prev":"{HASH_2}"' in HEADER_3


def test_chain_functions_produce_the_known_answers() -> None:
    assert GENESIS == ZEROS
    assert [digest(e["body"]) for e in EVENTS] == [BODY_DIGEST_1, BODY_DIGEST_2, BODY_DIGEST_3]
    assert signature_commitment(None) is None
    assert signature_commitment(SIGNATURE_2) == SIGNATURE_DIGEST_2
    assert _baton_hash(EVENTS[0], seq=1, prev=GENESIS) == HASH_1
    assert _baton_hash(EVENTS[1], seq=2, prev=HASH_1) == HASH_2
    assert _baton_hash(EVENTS[2], seq=3, prev=HASH_2) == HASH_3


def test_only_prev_hash_differs_and_the_hash_differs() -> None:
    assert HASH_3_OTHER_PREV != HASH_3
    assert _baton_hash(EVENTS[2], seq=3, prev=OTHER_PREV) == HASH_3_OTHER_PREV
    # A rewritten predecessor therefore shows in its successor even if the successor's body is untouched.
    assert _baton_hash(EVENTS[2], seq=3, prev=HASH_2) != _baton_hash(EVENTS[2], seq=3, prev=HASH_1)


def test_erasing_the_kept_raw_body_leaves_the_signature_digest_and_hash() -> None:
    # GDPR erasure replaces the raw body by its sha-256: the chain must not notice.
    erased = {k: v for k, v in SIGNATURE_2.items() if k != "body"}
    erased["body_sha256"] = hashlib.sha256(RAW_BODY_2.encode("utf-8")).hexdigest()
    assert signature_commitment(erased) == SIGNATURE_DIGEST_2
    assert _baton_hash({**EVENTS[1], "signature": erased}, seq=2, prev=HASH_1) == HASH_2


class _Session:
    """Just enough of an AsyncSession for ``append_event``, which only adds the event it built."""

    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, obj: Any) -> None:
        self.added.append(obj)


def test_the_event_writer_produces_the_known_answers() -> None:
    case = Case(id=41, ref=REF, last_seq=0, last_hash=GENESIS)
    session = _Session()
    written: list[Event] = []
    for i, spec in enumerate(EVENTS):
        kwargs = dict(case=case, type=spec["type"], actor=spec["actor"], visibility=spec["visibility"],
                      body=spec["body"], now=spec["received_at"], occurred_at=spec["occurred_at"],
                      partner_id=spec["partner_id"], signature=spec["signature"])
        # Both entry points: new_event (the routine update path) and append_event (everything else).
        event = new_event(**kwargs) if i == 1 else append_event(session=session, **kwargs)  # type: ignore[arg-type]
        written.append(event)

    assert [e.hash for e in written] == [HASH_1, HASH_2, HASH_3]
    assert [e.prev_hash for e in written] == [ZEROS, HASH_1, HASH_2]
    assert [e.body_digest for e in written] == [BODY_DIGEST_1, BODY_DIGEST_2, BODY_DIGEST_3]
    assert [e.seq for e in written] == [1, 2, 3]
    assert all(e.case_id == 41 for e in written)
    assert case.last_seq == 3 and case.last_hash == HASH_3
    assert session.added == [written[0], written[2]]


def test_a_writer_following_another_head_gets_another_hash() -> None:
    # The same event appended after a different chain head: the writer must carry the link.
    case = Case(id=41, ref=REF, last_seq=2, last_hash=OTHER_PREV)
    spec = EVENTS[2]
    event = new_event(case=case, type=spec["type"], actor=spec["actor"], visibility=spec["visibility"],
                      body=spec["body"], now=spec["received_at"], occurred_at=spec["occurred_at"],
                      partner_id=spec["partner_id"], signature=spec["signature"])
    assert event.prev_hash == OTHER_PREV
    assert event.hash == HASH_3_OTHER_PREV


# ---------------------------------------------------------------- the stored chain, recomputed outside Baton


def _stamp(value: dt.datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_events_written_through_the_api_match_the_independent_formula(world: World) -> None:
    """Every writer (case opening, the routine update path, the general path) on both backends."""
    case = await world.open_case()
    ref = case["ref"]
    world.clock.advance(minutes=5, microseconds=250)
    routine = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events",
                                     json_body={"message": "Tracing in FRA", "visibility": "parties"})
    assert routine.status_code == 201, routine.text
    world.clock.advance(minutes=7)
    general = await world.as_admin("POST", f"/v1/cases/{ref}/events",
                                   json_body={"status": "located", "message": "Gepäck in Zürich gefunden"})
    assert general.status_code == 201, general.text

    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        row = await session.scalar(select(Case).where(Case.ref == ref))
        assert row is not None
        events = list((await session.scalars(select(Event).where(Event.case_id == row.id).order_by(Event.seq))).all())
    assert len(events) >= 3 and any(e.signature for e in events)
    prev = ZEROS
    for event in events:
        spec = {"type": event.type, "actor": event.actor, "partner_id": event.partner_id,
                "visibility": event.visibility, "occurred_stamp": _stamp(event.occurred_at),
                "received_stamp": _stamp(event.received_at), "body": event.body, "signature": event.signature}
        assert event.prev_hash == prev, f"event {event.seq} does not link to its predecessor"
        assert event.body_digest == _sha256_hex(_canonical(event.body))
        assert event.hash == _hash(spec, seq=event.seq, prev=prev, case=ref), f"event {event.seq} ({event.type})"
        prev = event.hash
    assert row.last_hash == prev
