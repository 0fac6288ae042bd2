"""Re-check a case's timeline: the hash chain, every body digest, every partner signature.

1. Events are read in sequence order; the sequence must start at 1 and have no gap.
2. Each event's ``prev_hash`` must equal the previous event's hash (genesis for the first).
3. Its body must still hash to its ``body_digest`` (unless the body was erased under GDPR,
   in which case the stored digest stands in for it).
4. Its hash must recompute from its header, so no stored field was changed.
5. A signed event's stored request must verify with the partner's key (revoked keys too: they
   were valid when the event was signed), and the signed body must say what the event says.
6. The case row's ``last_hash`` must be the last event's hash (no event was deleted at the end).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from partners.service import key_material
from partners.signatures import KeyCache, verify_stored
from tracker.chain import GENESIS, digest, event_hash
from kernel.errors import BatonError, NotFound
from tracker.models import Case, Event
from tracker.refs import parse_ref


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ref: str
    events: int
    signed: int
    ok: bool
    failed_seq: int | None = None
    reason: str | None = None


async def verify_case(*, session: AsyncSession, ref: str, case: Case | None = None) -> VerifyResult:
    """Re-check the timeline of case ``ref``; pass ``case`` when it is already loaded, to skip looking it up."""
    if case is None:
        parsed = parse_ref(ref)
        case = await session.scalar(select(Case).where(Case.ref == (parsed.ref if parsed else ref.upper())))
    if case is None:
        raise NotFound(f"No case {ref!r}.")
    events = (await session.scalars(select(Event).where(Event.case_id == case.id).order_by(Event.seq))).all()
    keys = KeyCache()
    prev = GENESIS
    signed = 0

    def fail(event: Event | None, reason: str) -> VerifyResult:
        return VerifyResult(case.ref, len(events), signed, False, event.seq if event else None, reason)

    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq:
            return fail(event, f"sequence gap: expected {expected_seq}, found {event.seq}")
        if event.prev_hash != prev:
            return fail(event, "prev_hash does not match the previous event's hash")
        erased = bool(event.body.get("_erased")) if isinstance(event.body, dict) else False
        if not erased and digest(event.body) != event.body_digest:
            return fail(event, "body does not match its digest (the event's content was changed)")
        recomputed = event_hash(
            case_ref=case.ref,
            seq=event.seq,
            type=event.type,
            actor=event.actor,
            partner_id=event.partner_id,
            visibility=event.visibility,
            occurred_at=event.occurred_at,
            received_at=event.received_at,
            body_digest=event.body_digest,
            signature=event.signature,
            prev_hash=event.prev_hash,
        )
        if recomputed != event.hash:
            return fail(event, "hash does not recompute (a stored field was changed)")
        if event.signature:
            reason = await _check_signature(session, event, keys, erased=erased)
            if reason:
                return fail(event, reason)
            signed += 1
        prev = event.hash
    if case.last_hash != prev or case.last_seq != len(events):
        return fail(None, "the case's last hash does not match its last event (events were removed)")
    return VerifyResult(case.ref, len(events), signed, True)


async def _check_signature(session: AsyncSession, event: Event, keys: KeyCache, *, erased: bool) -> str | None:
    record = event.signature or {}
    material = await key_material(session=session, keyid=record.get("keyid", ""), active_only=False)
    if material is None:
        return f"signing key {record.get('keyid')!r} is unknown"
    if material.partner_id != event.partner_id:
        return "the signing key belongs to another partner"
    try:
        verify_stored(record, material, keys)
    except BatonError as exc:
        return f"partner signature does not verify: {exc.detail}"
    if erased or record.get("body") is None:
        return None  # erased under GDPR: the signature and the chain still hold, the words are gone
    if event.type == "update":
        try:
            sent = json.loads(record.get("body") or "{}")
        except ValueError:
            return "the signed body is not JSON"
        for field, value in event.body.items():
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
