"""The evidence bundle of a case: one JSON file that anyone can check without Baton's database.

1. Staff (any role) and the case's owner partner may take it; another party of the case gets 403,
   anyone else the 404 of a case they cannot see (``tracker.access.load_case``).
2. Every event goes in, in order, with every header field its hash covers, its digests, its hash and
   the kept signed request. The owner partner does not see staff-internal events: their bodies (and a
   signed request's raw body, were there one) are withheld, but their headers and digests stay, so the
   chain still verifies end to end. Erased bodies are null too; their digests stand in for them.
3. The keys that signed an event, revoked ones too: Ed25519 public keys as PEM; HMAC keys without
   their secret, marked ``verifiable_offline: false``.
4. The attachments' digests as stored (not the files), the case's head (so a truncated copy shows),
   and the chain's formula in words (``tracker.chain.DESCRIPTION``): the file explains how to check itself.
5. ``render`` writes it with a fixed key order and ASCII-only JSON: the same case gives the same bytes
   but for ``generated_at``, and a raw body kept with ``surrogateescape`` survives the round trip.
``tracker.verify.verify_bundle`` (``baton verify --bundle``) and ``tools/check_bundle.py`` check it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import Forbidden
from partners.service import signing_keys
from tracker import chain, evidence
from tracker.access import load_case
from tracker.chain import stamp
from tracker.models import Attachment, Event, Party
from tracker.principals import Principal
from tracker.verify import BUNDLE_FORMAT, BUNDLE_VERSION, body_erased

# How a kept signed request is checked, in words, beside the chain's formula (``partners.signatures``).
SIGNATURES: dict[str, Any] = {
    "standard": "RFC 9421 HTTP Message Signatures, with RFC 9530 Content-Digest",
    "key": "keys[] entry whose keyid is signature.keyid; its partner must be the event's partner",
    "content_digest": (
        "signature.headers['content-digest'] is sha-256=:<base64 of the sha-256 of the raw body>:, the raw body "
        "being signature.body.encode('utf-8', 'surrogateescape'), or, when signature.body is null (erased, "
        "withheld, or an upload's multipart body, never kept), the bytes of signature.body_sha256 when given"
    ),
    "signature_base": (
        "one line per component listed in signature.headers['signature-input'] (label=(...);params), in order: "
        "'\"<component>\": <value>', where @method is signature.method, @target-uri is signature.target_uri, "
        "other derived components (@authority, @scheme, @path, @query, @request-target) are taken from target_uri "
        "as RFC 9421 section 2.2 says, and a header is signature.headers[<component>]; then the line "
        "'\"@signature-params\": ' followed by the text after 'label=' in signature-input; lines joined with a "
        "line feed, no trailing one"
    ),
    "signature_value": "signature.headers['signature'] is label=:<base64 of the signature bytes>:",
    "ed25519": "verify the signature bytes over the signature base with the key's public_key (PEM)",
    "hmac-sha256": "needs the partner's shared secret, which a bundle never holds: not checkable offline",
    "signed_body": "for an update event, every member of the event's body equals the same member of the signed JSON "
                   "body (times compared as instants)",
    "one_tap_links": "an event whose body has via: 'link' was posted through a one-tap link: chained, not signed",
}


class BundleParty(BaseModel):
    partner: str
    role: str
    responsible: bool
    joined_at: str
    released_at: str | None


class BundleCase(BaseModel):
    ref: str
    type: str
    title: str
    status: str
    owner: str
    opened_at: str
    closed_at: str | None
    parties: list[BundleParty]


class BundleHead(BaseModel):
    last_seq: int = Field(description="The case's last event: a bundle missing events at the end shows it.")
    last_hash: str


class BundleEvent(BaseModel):
    seq: int
    type: str
    actor: str
    partner: str | None
    visibility: str
    occurred_at: str = Field(description="UTC, YYYY-MM-DDTHH:MM:SS.ffffffZ: exactly as the hash covers it.")
    received_at: str
    body_digest: str
    signature_digest: str | None
    prev_hash: str
    hash: str
    body: dict[str, Any] | None
    body_withheld: Literal["internal", "erased"] | None = Field(
        description="Why body is null: a staff-internal event (owner's bundle), or erased under GDPR.")
    signature: dict[str, Any] | None = Field(
        description="The kept signed request: keyid, alg, created, nonce, method, target_uri, headers and the "
                    "exact raw body (null when erased, withheld or an upload, with body_sha256).")


class BundleKey(BaseModel):
    keyid: str
    partner: str
    alg: str
    created_at: str
    revoked_at: str | None
    public_key: str | None = Field(description="Ed25519: the public key, PEM. HMAC: null; its secret stays in Baton.")
    verifiable_offline: bool


class BundleAttachment(BaseModel):
    id: int
    seq: int = Field(description="The attachment.added event.")
    kind: str
    visibility: str
    filename: str | None
    content_type: str
    size: int
    sha256: str = Field(description="Of the stored file (images re-encoded without metadata).")
    original_sha256: str = Field(description="Of the bytes received.")
    thumbnail_sha256: str | None
    erased: bool


class EvidenceBundle(BaseModel):
    """Everything needed to check a case without Baton's database (``baton verify --bundle``)."""

    format: Literal["baton-evidence-bundle"] = BUNDLE_FORMAT
    version: Literal[1] = BUNDLE_VERSION
    generated_at: str
    generated_for: str = Field(description="Who asked: staff:<name> or partner:<id>.")
    case: BundleCase
    head: BundleHead
    chain: dict[str, Any] = Field(description="The hash chain's formula and version, in words.")
    signatures: dict[str, Any] = Field(description="How a kept signed request is checked, in words.")
    events: list[BundleEvent]
    keys: list[BundleKey]
    attachments: list[BundleAttachment]


async def build_bundle(*, session: AsyncSession, principal: Principal, ref: str, now: dt.datetime) -> EvidenceBundle:
    """The evidence bundle of case ``ref`` for staff or the case's owner partner (403 for another party)."""
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    if not principal.is_staff and principal.partner_id != case.owner_id:
        raise Forbidden("Only staff and the case's owner partner may take its evidence bundle.")
    events = (await session.scalars(select(Event).where(Event.case_id == case.id).order_by(Event.seq))).all()
    parties = (await session.scalars(select(Party).where(Party.case_id == case.id).order_by(Party.id))).all()
    files = (await session.scalars(select(Attachment).where(Attachment.case_id == case.id)
                                   .order_by(Attachment.id))).all()
    keyids = {str(e.signature.get("keyid")) for e in events if e.signature}
    keys = await signing_keys(session=session, keyids=keyids)
    return EvidenceBundle(
        generated_at=stamp(now),
        generated_for=principal.actor,
        case=BundleCase(
            ref=case.ref, type=case.type, title=case.title, status=case.status, owner=case.owner_id,
            opened_at=stamp(case.opened_at), closed_at=_stamp(case.closed_at),
            parties=[BundleParty(partner=p.partner_id, role=p.role, responsible=p.responsible,
                                 joined_at=stamp(p.joined_at), released_at=_stamp(p.released_at)) for p in parties],
        ),
        head=BundleHead(last_seq=case.last_seq, last_hash=case.last_hash),
        chain=chain.DESCRIPTION,
        signatures=SIGNATURES,
        events=[_event(e, hidden=not principal.is_staff and e.visibility == "internal") for e in events],
        keys=[
            BundleKey(keyid=k.keyid, partner=k.partner, alg=k.alg, created_at=stamp(k.created_at),
                      revoked_at=_stamp(k.revoked_at), public_key=k.public_key if k.alg == "ed25519" else None,
                      verifiable_offline=k.alg == "ed25519")
            for k in keys
        ],
        attachments=[_attachment(a) for a in files if evidence.party_sees(principal, a)],
    )


def render(bundle: EvidenceBundle) -> bytes:
    """The file: fixed key order, indented, ASCII only (``\\u`` escapes keep every string exact)."""
    return (json.dumps(bundle.model_dump(mode="python"), indent=2, ensure_ascii=True) + "\n").encode("ascii")


def _event(event: Event, *, hidden: bool) -> BundleEvent:
    erased = body_erased(event.body)
    withheld: Literal["internal", "erased"] | None = "internal" if hidden else "erased" if erased else None
    signature = _sorted(event.signature) if event.signature else None
    if signature is not None and hidden and signature.get("body") is not None:
        # As erasure does: the raw body goes, its sha-256 stays, so chain and Content-Digest still check.
        raw = signature["body"].encode("utf-8", errors="surrogateescape")
        signature = {**signature, "body": None, "body_sha256": hashlib.sha256(raw).hexdigest()}
    return BundleEvent(
        seq=event.seq, type=event.type, actor=event.actor, partner=event.partner_id, visibility=event.visibility,
        occurred_at=stamp(event.occurred_at), received_at=stamp(event.received_at), body_digest=event.body_digest,
        signature_digest=chain.signature_commitment(event.signature), prev_hash=event.prev_hash, hash=event.hash,
        body=None if withheld else _sorted(event.body), body_withheld=withheld, signature=signature,
    )


def _attachment(attachment: Attachment) -> BundleAttachment:
    return BundleAttachment(
        id=attachment.id, seq=attachment.seq, kind=attachment.kind, visibility=attachment.visibility,
        filename=attachment.filename, content_type=attachment.content_type, size=attachment.size,
        sha256=attachment.sha256, original_sha256=attachment.original_sha256,
        thumbnail_sha256=attachment.thumbnail_sha256, erased=attachment.erased_at is not None,
    )


def _sorted(value: Any) -> Any:
    # PostgreSQL's JSONB and SQLite's JSON keep keys in different orders: the file must not depend on the backend.
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _stamp(value: dt.datetime | None) -> str | None:
    return stamp(value) if value is not None else None
