"""Re-check a case's timeline: the hash chain, every body digest, every partner signature.

1. Events are read in sequence order; the sequence must start at 1 and have no gap.
2. Each event's ``prev_hash`` must equal the previous event's hash (genesis for the first).
3. Its body must still hash to its ``body_digest`` (unless the body was erased under GDPR, or is
   withheld from the bundle's reader, in which case the stored digest stands in for it).
4. Its hash must recompute from its header, so no stored field was changed.
5. A signed event's stored request must verify with the partner's key (revoked keys too: they
   were valid when the event was signed), and the signed body must say what the event says.
   Events a partner posted through a one-tap link (``via: "link"``) carry no signature: they are
   counted apart (``via_link``), so a report never passes them off as key-signed.
6. The case's head (``last_seq``, ``last_hash``) must be the last event's (no event was deleted at the end).

One core, ``check_timeline``, runs these checks on plain ``Record``s. ``verify_case`` feeds it from
the database, ``verify_bundle`` from an evidence bundle (``tracker.bundle``) with no database at
all. A bundle carries public keys only: an HMAC-signed event in it is counted as not checkable
offline (``hmac_unchecked``), never as verified, and is not a failure.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from partners.service import key_materials
from partners.signatures import ALGORITHMS, KeyCache, KeyMaterial, check_body_digest, verify_stored
from tracker import chain
from tracker.chain import GENESIS, digest, header, header_hash, signature_commitment, stamp
from kernel.errors import BatonError, NotFound
from tracker.models import Case, Event
from tracker.refs import parse_ref

BUNDLE_FORMAT = "baton-evidence-bundle"
BUNDLE_VERSION = 1
WITHHELD = ("internal", "erased")  # why a bundle's event has no body
_REF = re.compile(r"[A-Z0-9][A-Z0-9-]{0,39}")


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ref: str
    events: int
    signed: int
    ok: bool
    failed_seq: int | None = None
    reason: str | None = None
    via_link: int = 0  # partner events posted through a one-tap link: chained, not key-signed
    hmac_unchecked: int = 0  # HMAC-signed events of a bundle: their shared secret is (rightly) not in it
    last_hash: str | None = None  # the verified head: compare it with a copy you trust to detect truncation


@dataclass(frozen=True, slots=True)
class Record:
    """One event as the checks read it, from the database or from a bundle; times as the chain stamps them."""

    seq: int
    type: str
    actor: str
    partner_id: str | None
    visibility: str
    occurred_at: str
    received_at: str
    body: dict[str, Any] | None  # None: not in hand (withheld from the bundle's reader, or erased)
    erased: bool  # erased under GDPR: the stored digest stands in for the body
    body_digest: str
    signature: dict[str, Any] | None
    signature_digest: str | None
    prev_hash: str
    hash: str


def body_erased(body: object) -> bool:
    """Whether ``baton erase`` replaced or redacted this body (``tracker.erasure``)."""
    return isinstance(body, dict) and bool(body.get("_erased"))


def check_timeline(
    *, ref: str, records: Sequence[Record], head: tuple[int, str], keys: Mapping[str, KeyMaterial]
) -> VerifyResult:
    """Steps 1-6 over plain records, whichever source fed them; the first failure is named."""
    built = KeyCache()
    prev = GENESIS
    signed = via_link = unchecked = 0

    def fail(record: Record | None, reason: str) -> VerifyResult:
        return VerifyResult(ref, len(records), signed, False, record.seq if record else None, reason, via_link,
                            unchecked)

    for expected_seq, record in enumerate(records, start=1):
        if record.seq != expected_seq:
            return fail(record, f"sequence gap: expected {expected_seq}, found {record.seq}")
        if record.prev_hash != prev:
            return fail(record, "prev_hash does not match the previous event's hash")
        if record.body is not None and not record.erased and digest(record.body) != record.body_digest:
            return fail(record, "body does not match its digest (the event's content was changed)")
        if signature_commitment(record.signature) != record.signature_digest:
            return fail(record, "the kept signed request does not match its signature_digest")
        recomputed = header_hash(header(
            case_ref=ref,
            seq=record.seq,
            type=record.type,
            actor=record.actor,
            partner_id=record.partner_id,
            visibility=record.visibility,
            occurred_at=record.occurred_at,
            received_at=record.received_at,
            body_digest=record.body_digest,
            signature_digest=record.signature_digest,
            prev_hash=record.prev_hash,
        ))
        if recomputed != record.hash:
            return fail(record, "hash does not recompute (a stored field was changed)")
        if record.signature:
            reason, verified = _check_signature(record, keys, built)
            if reason:
                return fail(record, reason)
            if verified:
                signed += 1
            else:
                unchecked += 1
        elif record.body is not None and record.body.get("via") == "link":
            via_link += 1
        prev = record.hash
    if head != (len(records), prev):
        return fail(None, "the case's last hash does not match its last event (events were removed)")
    return VerifyResult(ref, len(records), signed, True, via_link=via_link, hmac_unchecked=unchecked, last_hash=prev)


# ---------------------------------------------------------------- fed from the database


async def verify_case(*, session: AsyncSession, ref: str, case: Case | None = None) -> VerifyResult:
    """Re-check the timeline of case ``ref``; pass ``case`` when it is already loaded, to skip looking it up."""
    if case is None:
        parsed = parse_ref(ref)
        case = await session.scalar(select(Case).where(Case.ref == (parsed.ref if parsed else ref.upper())))
    if case is None:
        raise NotFound(f"No case {ref!r}.")
    events = (await session.scalars(select(Event).where(Event.case_id == case.id).order_by(Event.seq))).all()
    keyids = {str(e.signature.get("keyid")) for e in events if e.signature}
    keys = await key_materials(session=session, keyids=keyids)
    return check_timeline(ref=case.ref, records=[_from_row(e) for e in events], head=(case.last_seq, case.last_hash),
                          keys=keys)


def _from_row(event: Event) -> Record:
    return Record(
        seq=event.seq,
        type=event.type,
        actor=event.actor,
        partner_id=event.partner_id,
        visibility=event.visibility,
        occurred_at=stamp(event.occurred_at),
        received_at=stamp(event.received_at),
        body=event.body,
        erased=body_erased(event.body),
        body_digest=event.body_digest,
        signature=event.signature,
        # The database keeps no separate commitment: it is the signature's, by construction.
        signature_digest=signature_commitment(event.signature),
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


# ---------------------------------------------------------------- fed from an evidence bundle


class _Malformed(Exception):
    def __init__(self, reason: str, *, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.seq = reason, seq


def verify_bundle(data: Any) -> VerifyResult:
    """Check an evidence bundle (parsed JSON) with no database: the same checks as ``verify_case``."""
    case = data.get("case") if isinstance(data, dict) else None
    ref = case.get("ref") if isinstance(case, dict) else None
    ref = ref if isinstance(ref, str) and _REF.fullmatch(ref) else "?"  # it is printed: nothing but a reference
    try:
        records, head, keys = _read_bundle(data, ref)
    except _Malformed as exc:
        count = len(data["events"]) if isinstance(data, dict) and isinstance(data.get("events"), list) else 0
        return VerifyResult(ref, count, 0, False, exc.seq, exc.reason)
    return check_timeline(ref=ref, records=records, head=head, keys=keys)


def _read_bundle(data: Any, ref: str) -> tuple[list[Record], tuple[int, str], dict[str, KeyMaterial]]:
    """The bundle's events, head and keys as the core takes them; ``_Malformed`` naming what is wrong."""
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise _Malformed(f"not a Baton evidence bundle (format is not {BUNDLE_FORMAT!r})")
    if data.get("version") != BUNDLE_VERSION:
        raise _Malformed(f"bundle version {data.get('version')!r} is not known here (expected {BUNDLE_VERSION})")
    described = data.get("chain")
    if not isinstance(described, dict) or described.get("version") != chain.VERSION:
        version = described.get("version") if isinstance(described, dict) else None
        raise _Malformed(f"chain format version {version!r} is not known here (expected {chain.VERSION})")
    if ref == "?":
        raise _Malformed("the bundle names no case reference (case.ref, such as BAG-7KQ3X9T)")
    head = data.get("head")
    if not isinstance(head, dict) or not _is_int(head.get("last_seq")) or not isinstance(head.get("last_hash"), str):
        raise _Malformed("the bundle has no head (last_seq, last_hash)")
    events = data.get("events")
    if not isinstance(events, list):
        raise _Malformed("the bundle has no list of events")
    records = [_record(event, position) for position, event in enumerate(events, start=1)]
    return records, (head["last_seq"], head["last_hash"]), _keys(data.get("keys"))


_TEXT = ("type", "actor", "visibility", "occurred_at", "received_at", "body_digest", "prev_hash", "hash")


def _record(event: Any, position: int) -> Record:
    seq = event.get("seq") if isinstance(event, dict) else None
    if not _is_int(seq):
        raise _Malformed(f"event number {position} has no integer seq", seq=position)

    def malformed(what: str) -> _Malformed:
        return _Malformed(f"malformed event: {what}", seq=seq)

    for name in _TEXT:
        if not isinstance(event.get(name), str):
            raise malformed(f"{name} must be a string")
    for name in ("partner", "signature_digest"):
        if event.get(name) is not None and not isinstance(event.get(name), str):
            raise malformed(f"{name} must be a string or null")
    body, withheld, signature = event.get("body"), event.get("body_withheld"), event.get("signature")
    if body is None and withheld not in WITHHELD:
        raise malformed(f"a null body needs body_withheld ({' or '.join(WITHHELD)})")
    if body is not None and (not isinstance(body, dict) or withheld is not None):
        raise malformed("body must be an object, and then body_withheld null")
    if signature is not None and not isinstance(signature, dict):
        raise malformed("signature must be an object or null")
    if signature is not None and not all(signature.get(n) is None or isinstance(signature.get(n), str)
                                         for n in ("body", "body_sha256")):
        raise malformed("signature.body and signature.body_sha256 must be strings or null")
    if not _hashable(event, signature):
        raise malformed("it holds text that is not valid Unicode, or nests too deep to hash")
    return Record(
        seq=seq, type=event["type"], actor=event["actor"], partner_id=event.get("partner"),
        visibility=event["visibility"], occurred_at=event["occurred_at"], received_at=event["received_at"],
        body=body, erased=withheld == "erased", body_digest=event["body_digest"], signature=signature,
        signature_digest=event.get("signature_digest"), prev_hash=event["prev_hash"], hash=event["hash"],
    )


def _keys(listed: Any) -> dict[str, KeyMaterial]:
    """Key material from the bundle's public keys; an HMAC key comes without its secret (not checkable offline)."""
    if not isinstance(listed, list):
        raise _Malformed("the bundle has no list of keys")
    keys: dict[str, KeyMaterial] = {}
    for key in listed:
        if not isinstance(key, dict) or not all(isinstance(key.get(n), str) for n in ("keyid", "partner", "alg")):
            raise _Malformed("malformed key: keyid, partner and alg must be strings")
        if key["alg"] not in ALGORITHMS or key["keyid"] in keys:
            raise _Malformed(f"malformed key {key['keyid']!r}: unknown alg, or listed twice")
        public_key = key.get("public_key") if isinstance(key.get("public_key"), str) else None
        keys[key["keyid"]] = KeyMaterial(key["keyid"], key["partner"], key["alg"], public_key, None)
    return keys


def _hashable(event: dict[str, Any], signature: dict[str, Any] | None) -> bool:
    """Whether the checks can hash what the event holds: JSON allows lone surrogates (``\\ud800``), UTF-8 does not."""
    try:
        canonical_event = {k: v for k, v in event.items() if k != "signature"}
        chain.canonical(canonical_event)
        if signature is not None:
            chain.canonical({k: v for k, v in signature.items() if k != "body"})
            if signature.get("body") is not None:
                signature["body"].encode("utf-8", errors="surrogateescape")  # how the raw body is restored
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    return True


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------- step 5


def _check_signature(record: Record, keys: Mapping[str, KeyMaterial], built: KeyCache) -> tuple[str | None, bool]:
    """Why the kept signed request fails (or None), and whether it was verified (False: HMAC, offline)."""
    kept = record.signature or {}
    keyid = kept.get("keyid")
    material = keys.get(keyid) if isinstance(keyid, str) else None
    if material is None:
        return f"signing key {keyid!r} is unknown", False
    if material.partner_id != record.partner_id:
        return "the signing key belongs to another partner", False
    offline = material.alg == "hmac-sha256" and material.secret is None
    if not offline:
        try:
            built.key_for(material)
        except (BatonError, ValueError, TypeError, UnsupportedAlgorithm):  # not PEM, or not an Ed25519 key
            return f"the public key of {keyid!r} is not a readable Ed25519 public key", False
        try:
            verify_stored(kept, material, built)
        except BatonError as exc:
            return f"partner signature does not verify: {exc.detail}", False
        except (KeyError, TypeError, AttributeError, ValueError):
            return "the kept signed request is malformed", False
    reason = _check_erased_body(kept) or _check_signed_body(record, kept)
    return reason, not offline


def _check_erased_body(kept: Mapping[str, Any]) -> str | None:
    """A raw body dropped by erasure leaves its sha-256, which must be the one the signature covers."""
    sha256 = kept.get("body_sha256")
    if kept.get("body") is not None or sha256 is None:
        return None  # present (checked with the signature), or an upload's, never kept
    try:
        headers = {str(k).lower(): v for k, v in kept["headers"].items()}
        check_body_digest(headers.get("content-digest"), bytes.fromhex(sha256))
    except BatonError as exc:
        return f"the erased body's sha-256 is not the signed one: {exc.detail}"
    except (KeyError, TypeError, AttributeError, ValueError):
        return "the kept signed request is malformed"
    return None


def _check_signed_body(record: Record, kept: Mapping[str, Any]) -> str | None:
    if record.erased or record.body is None or kept.get("body") is None:
        return None  # erased under GDPR, or withheld: the signature and the chain still hold, the words are gone
    if record.type == "update":
        try:
            sent = json.loads(kept.get("body") or "{}")
        except (ValueError, TypeError, RecursionError):
            return "the signed body is not JSON"
        if not isinstance(sent, dict):
            return "the signed body is not a JSON object"
        for field, value in record.body.items():
            if sent.get(field) != value and not _same_instant(sent.get(field), value):
                return f"the event's {field!r} differs from what the partner signed"
    return None


def _same_instant(a: object, b: object) -> bool:
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    try:
        return dt.datetime.fromisoformat(a) == dt.datetime.fromisoformat(b)
    except ValueError:
        return False
