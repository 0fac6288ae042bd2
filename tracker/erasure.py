"""``baton erase REF``: remove a customer's personal data on request (GDPR art. 17), keep the record.

1. The case row is locked. What identifies the customer is gathered: name, phone, email and their
   own words (``customer.message`` and ``customer.confirmation`` bodies, the satisfaction comment),
   compiled into a ``tracker.redaction.Redactor`` that finds them however a text spells them.
2. On SQLite, ``PRAGMA secure_delete=ON``: the pages and cells the next writes free are zeroed,
   not left readable in the file.
3. The case loses the customer's name, phone, email, channels and satisfaction comment; its title,
   resolution and external references are redacted; ``erased_at`` is set, and the status link
   then answers exactly as an unknown one.
4. Every body the customer wrote becomes ``{"_erased": true}``. Every other event body (partners'
   free text included) is redacted, and marked ``_erased`` when something was replaced. Events keep
   their ``body_digest``, so the chain still verifies (``tracker.chain``).
5. Every kept raw request body of the case's events is dropped; its sha-256 stays, so the
   signature still verifies against its ``Content-Digest`` and the chain's commitment holds.
6. Handoff notes and indexed external references are redacted.
7. Notifications of the case: the customer's lose recipient, content and error, and those not yet
   sent are suppressed; the parties' (webhooks that carried the customer's messages, emails) are
   redacted, the customer's words in ``customer.message`` / ``case.disputed`` payloads replaced,
   and every ``last_error`` redacted.
8. Idempotency records of the case, or that mention the customer, are deleted (stored responses
   carry the customer block and the parties' notes).
9. An internal ``customer.erased`` event records that it happened, and by whom (once), and every
   party is told by a ``customer.erased`` webhook (once: its dedupe key is the case).
10. The customer's attachments and the delivery proof are marked erased (their notes and file
    names dropped, their digests kept in rows and events), the delivery request loses address,
    phone and instructions, the claims their item descriptions; after the commit ``delete_erased_files`` deletes the objects that no
    live attachment shares (``tracker.evidence``).
11. After the caller commits, ``forget_old_pages`` checkpoints SQLite's WAL with TRUNCATE, so the
    old page images leave the ``-wal`` file too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from notifications.models import Notification
from tracker import announce
from kernel.errors import NotFound
from kernel.storage import BlobStore
from tracker import evidence
from tracker.delivery import erase as erase_delivery
from tracker.models import Attachment, Case, Claim, Delivery, Event, ExternalRef, Handoff, IdempotencyRecord, Party
from tracker.redaction import ERASED_TEXT, Redactor
from tracker.refs import parse_ref
from tracker.timeline import append_event

ERASED = {"_erased": True}
CUSTOMER_AUTHORED = ("customer.message", "customer.confirmation")
# Webhook payload fields that are the customer's own words, whatever they say.
CUSTOMER_WORDS = {"customer.message": ("message",), "case.disputed": ("comment",)}


async def erase_customer(*, session: AsyncSession, ref: str, actor: str, now: dt.datetime) -> dict[str, int]:
    """Erase the customer of case ``ref`` everywhere it was written; the caller commits, then ``forget_old_pages``."""
    parsed = parse_ref(ref)
    case = await session.scalar(
        select(Case).where(Case.ref == (parsed.ref if parsed else ref.upper())).with_for_update()
    )
    if case is None:
        raise NotFound(f"No case {ref!r}.")
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        await session.execute(text("PRAGMA secure_delete=ON"))
    events = (await session.scalars(select(Event).where(Event.case_id == case.id).order_by(Event.seq))).all()
    redact = Redactor(name=case.customer_name, phone=case.customer_phone, email=case.customer_email,
                      own_words=_own_words(case, events))

    first_time = case.erased_at is None
    case.customer_name = case.customer_phone = case.customer_email = None
    case.customer_channels = []
    case.satisfaction_comment = None
    case.title = redact.text(case.title)[:300]
    case.resolution = redact.text(case.resolution)
    case.external_refs = redact.value(case.external_refs or {})
    case.erased_at = case.erased_at or now

    bodies = signatures = 0
    for event in events:
        if event.type in CUSTOMER_AUTHORED:
            body = dict(ERASED)
        elif event.type == "attachment.added" and event.actor == "customer":
            # The file's digests stay (what the chain and any copy can be checked against); the note goes.
            body = {k: v for k, v in event.body.items() if k != "note"}
            body = {**body, **ERASED} if body != event.body else body
        else:
            body = redact.value(event.body)
        if body != event.body:
            event.body = body if body.get("_erased") else {**body, **ERASED}
            bodies += 1
        raw = (event.signature or {}).get("body")
        if raw is not None:
            kept = dict(event.signature or {})
            kept["body_sha256"] = hashlib.sha256(raw.encode("utf-8", errors="surrogateescape")).hexdigest()
            kept["body"] = None
            event.signature = kept
            signatures += 1
    for handoff in (await session.scalars(select(Handoff).where(Handoff.case_id == case.id))).all():
        handoff.note = redact.text(handoff.note)
    for external in (await session.scalars(select(ExternalRef).where(ExternalRef.case_id == case.id))).all():
        external.value = redact.text(external.value)[:100]

    files = await evidence.erase_for_customer(session=session, case=case, now=now)
    for claim in (await session.scalars(select(Claim).where(Claim.case_id == case.id))).all():
        # What the customer wrote goes; amounts, currencies and the decision stay (they are the record).
        claim.items = [{**item, "description": ERASED_TEXT} for item in claim.items]
        claim.reason = redact.text(claim.reason)
    delivery = await session.scalar(select(Delivery).where(Delivery.case_id == case.id))
    if delivery is not None:
        erase_delivery(delivery)
    notes = await _erase_notifications(session, case, redact, now)
    replays = await _erase_idempotency_records(session, case, redact)
    if first_time:
        append_event(session=session, case=case, type="customer.erased", actor=actor, visibility="internal",
                     body={"bodies": bodies, "signed_bodies": signatures}, now=now)
    parties = (await session.scalars(select(Party.partner_id).where(Party.case_id == case.id))).all()
    told = await announce.webhooks(session=session, case=case, kind="customer.erased", partner_ids=parties, now=now,
                                   data={"erased_at": announce.stamp(case.erased_at)},
                                   dedupe_key=f"customer.erased:{case.ref}")
    await session.flush()
    return {"events": bodies, "signatures": signatures, "notifications": notes, "idempotency_records": replays,
            "parties_told": told, "files": len(files)}


async def delete_erased_files(*, session: AsyncSession, store: BlobStore, ref: str) -> int:
    """After ``erase_customer`` commits: delete the erased files' objects (idempotent; run again after a crash)."""
    parsed = parse_ref(ref)
    case = await session.scalar(select(Case).where(Case.ref == (parsed.ref if parsed else ref.upper())))
    if case is None:
        raise NotFound(f"No case {ref!r}.")
    rows = (await session.execute(
        select(Attachment.sha256, Attachment.thumbnail_sha256)
        .where(Attachment.case_id == case.id, Attachment.erased_at.is_not(None))
    )).all()
    digests = [d for row in rows for d in row if d]
    return await evidence.delete_unreferenced(session=session, store=store, digests=digests)


def _own_words(case: Case, events: Any) -> list[str]:
    words = [case.satisfaction_comment or ""]
    for event in events:
        if event.type == "attachment.added" and event.actor == "customer" and isinstance(event.body, dict):
            words.append(str(event.body.get("note") or ""))
        if event.type in CUSTOMER_AUTHORED and isinstance(event.body, dict):
            words += [str(event.body.get(key) or "") for key in ("message", "comment")]
    return [w for w in words if w.strip()]


async def _erase_notifications(session: AsyncSession, case: Case, redact: Redactor, now: dt.datetime) -> int:
    rows = (await session.scalars(select(Notification).where(Notification.case_id == case.id))).all()
    changed = 0
    for row in rows:
        before = (row.recipient, row.subject, row.body_text, row.body_html, row.payload, row.last_error, row.state)
        if row.audience == "customer":
            row.recipient, row.subject, row.body_text, row.body_html, row.payload = "erased", None, None, None, None
            row.last_error = None
            if row.state == "pending":  # "sending" is a dispatcher's to finish; it finds no recipient
                row.state, row.next_attempt_at = "suppressed", None
        else:
            row.subject = redact.text(row.subject)[:300] if row.subject else row.subject
            row.body_text = redact.text(row.body_text)
            row.body_html = redact.text(row.body_html)
            row.payload = _customer_words_out(row.kind, redact.value(row.payload)) if row.payload else row.payload
            row.last_error = redact.text(row.last_error)
        if (row.recipient, row.subject, row.body_text, row.body_html, row.payload, row.last_error, row.state) != before:
            row.updated_at = now
            changed += 1
    return changed


def _customer_words_out(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    data = payload.get("data")
    fields = [f for f in CUSTOMER_WORDS.get(kind, ()) if isinstance(data, dict) and data.get(f)]
    if not fields:
        return payload
    return {**payload, "data": {**data, **{f: ERASED_TEXT for f in fields}}}


async def _erase_idempotency_records(session: AsyncSession, case: Case, redact: Redactor) -> int:
    """Records that name the case, or were stored since it opened and mention the customer (a note's answer)."""
    doomed = set((await session.scalars(
        select(IdempotencyRecord.id).where(IdempotencyRecord.response_body.contains(json.dumps(case.ref)))
    )).all())
    recent = await session.execute(
        select(IdempotencyRecord.id, IdempotencyRecord.response_body).where(IdempotencyRecord.created_at >= case.opened_at)
    )
    doomed |= {rid for rid, body in recent.all() if rid not in doomed and redact.text(body) != body}
    if not doomed:
        return 0
    result = await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id.in_(sorted(doomed))))
    return result.rowcount or 0


async def forget_old_pages(*, engine: AsyncEngine) -> bool:
    """After the erasure commits, on SQLite: move the WAL into the file and truncate it. True when it did."""
    if engine.dialect.name != "sqlite":
        return False
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        # Outside any transaction (the pool's begin hook would open one): the checkpoint needs none open.
        cursor = await raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        busy, _, _ = await cursor.fetchone()
        await cursor.close()
    return busy == 0
