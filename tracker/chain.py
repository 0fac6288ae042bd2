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
    header = {
        "case": case_ref,
        "seq": seq,
        "type": type,
        "actor": actor,
        "partner": partner_id,
        "visibility": visibility,
        "occurred_at": stamp(occurred_at),
        "received_at": stamp(received_at),
        "body_digest": body_digest,
        "signature_digest": signature_commitment(signature),
        "prev": prev_hash,
    }
    return hashlib.sha256(canonical(header)).hexdigest()
