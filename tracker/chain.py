"""The tamper-evident timeline: each event's hash covers the previous hash and the event itself.

    body_digest = sha256(canonical(body))
    hash        = sha256(canonical({case, seq, type, actor, partner, visibility, occurred_at,
                                    received_at, body_digest, signature_digest, prev}))

Exactly, so that anyone can recompute it with a JSON library and sha-256:
``canonical`` is JSON with sorted keys, no whitespace, non-ASCII kept as UTF-8; ``case`` is the
case reference; times are UTC with microseconds and a ``Z``; ``signature_digest`` is the digest
of the kept signature with its raw ``body`` replaced by the body's sha-256 as ``body_sha256``
(``null`` without a signature); the first event's ``prev`` is 64 zeros. The known answers in
``tests/tracker/test_chain_vectors.py`` pin this: changing it is a format change, not a refactoring.
``DESCRIPTION`` states it in words inside every evidence bundle: change the two together.

The body enters through its digest so that personal data in a body can later be erased (GDPR)
while the chain still verifies: the header, the stored digest and the signature stay. For the same
reason a kept partner signature enters with the sha-256 of its raw request body instead of the
body itself (``signature_commitment``): the raw body can be erased and the signature still checks
against its ``Content-Digest``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from kernel.clock import as_utc

GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def signature_commitment(signature: dict[str, Any] | None) -> str | None:
    """What the chain commits to of a kept signature: everything, with the raw body as its sha-256."""
    if not signature:
        return None
    core = {k: v for k, v in signature.items() if k not in ("body", "body_sha256")}
    body = signature.get("body")
    core["body_sha256"] = (
        hashlib.sha256(body.encode("utf-8", errors="surrogateescape")).hexdigest()
        if body is not None
        else signature.get("body_sha256")
    )
    return digest(core)


def stamp(value: dt.datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def header(
    *,
    case_ref: str,
    seq: int,
    type: str,
    actor: str,
    partner_id: str | None,
    visibility: str,
    occurred_at: str,
    received_at: str,
    body_digest: str,
    signature_digest: str | None,
    prev_hash: str,
) -> dict[str, Any]:
    """What an event's hash covers, times already stamped and the signature as its commitment."""
    return {
        "case": case_ref,
        "seq": seq,
        "type": type,
        "actor": actor,
        "partner": partner_id,
        "visibility": visibility,
        "occurred_at": occurred_at,
        "received_at": received_at,
        "body_digest": body_digest,
        "signature_digest": signature_digest,
        "prev": prev_hash,
    }


def header_hash(value: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def event_hash(
    *,
    case_ref: str,
    seq: int,
    type: str,
    actor: str,
    partner_id: str | None,
    visibility: str,
    occurred_at: dt.datetime,
    received_at: dt.datetime,
    body_digest: str,
    signature: dict[str, Any] | None,
    prev_hash: str,
) -> str:
    return header_hash(header(
        case_ref=case_ref,
        seq=seq,
        type=type,
        actor=actor,
        partner_id=partner_id,
        visibility=visibility,
        occurred_at=stamp(occurred_at),
        received_at=stamp(received_at),
        body_digest=body_digest,
        signature_digest=signature_commitment(signature),
        prev_hash=prev_hash,
    ))


# The formula above in words, for a third party holding an evidence bundle (``tracker.bundle``) and
# no Baton: the bundle carries it, so the file explains how to check itself. Bump VERSION with the formula.
VERSION = 1
DESCRIPTION: dict[str, Any] = {
    "version": VERSION,
    "digest": "sha-256 of the bytes, written as 64 lowercase hex digits",
    "canonical": (
        "JSON with object keys sorted by Unicode code point, no whitespace (separators ',' and ':'), "
        "non-ASCII characters written as themselves (not \\u escapes), encoded as UTF-8. In Python: "
        "json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode('utf-8'). "
        "Hash values re-serialized this way, never the bundle's own text."
    ),
    "genesis": GENESIS,
    "body_digest": "digest(canonical(body)); a body that is null (erased, or withheld from this reader) is "
                   "not checked, and its stated body_digest enters the hash as it is",
    "signature_digest": (
        "null for an event without a signature; otherwise digest(canonical(S)), where S is the event's "
        "signature object without its 'body' member and with 'body_sha256' set to the digest of the raw body "
        "(body.encode('utf-8', 'surrogateescape')) when 'body' is a string, or kept as given (possibly null) "
        "when 'body' is null"
    ),
    "header": {
        "case": "case.ref",
        "seq": "events[].seq (an integer)",
        "type": "events[].type",
        "actor": "events[].actor",
        "partner": "events[].partner (a string or null)",
        "visibility": "events[].visibility",
        "occurred_at": "events[].occurred_at, as given: UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ",
        "received_at": "events[].received_at, as given: UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ",
        "body_digest": "events[].body_digest",
        "signature_digest": "events[].signature_digest, which must equal the one computed from events[].signature",
        "prev": "events[].prev_hash",
    },
    "hash": "events[].hash = digest(canonical(header)), header being an object of exactly the fields above",
    "links": (
        "events[].seq runs 1, 2, 3, ... without a gap; the first event's prev_hash is genesis, every other "
        "event's prev_hash is the hash of the event before it; head.last_seq and head.last_hash are the "
        "last event's seq and hash"
    ),
}
