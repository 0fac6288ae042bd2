"""``baton erase REF``: remove a customer's personal data on request (GDPR art. 17), keep the record.

1. The case's customer name, phone, email, channels and satisfaction comment are cleared.
2. Every body the customer wrote (``customer.message``, ``customer.confirmation``) is replaced by
   ``{"_erased": true}``; the event keeps its ``body_digest``, so the chain still verifies.
3. Raw request bodies kept with partner signatures are dropped when they carry the customer's
   data (a partner that opened the case sent the customer's contact details); the signature
   still verifies against the kept ``Content-Digest``, and the chain commits to the body's hash.
4. Notifications to the customer lose their recipient and content; idempotency records of the
   case (stored responses carry the customer block) are deleted.
5. An internal ``customer.erased`` event records that it happened, and by whom.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.models import Notification
from tracker.errors import NotFound
from tracker.models import Case, Event, IdempotencyRecord
from tracker.refs import parse_ref
from tracker.timeline import append_event

ERASED = {"_erased": True}
CUSTOMER_AUTHORED = ("customer.message", "customer.confirmation")


async def erase_customer(*, session: AsyncSession, ref: str, actor: str, now: dt.datetime) -> dict[str, int]:
    parsed = parse_ref(ref)
    case = await session.scalar(
        select(Case).where(Case.ref == (parsed.ref if parsed else ref.upper())).with_for_update()
    )
    if case is None:
        raise NotFound(f"No case {ref!r}.")
    personal = [v for v in (case.customer_name, case.customer_phone, case.customer_email) if v]

    events = (await session.scalars(select(Event).where(Event.case_id == case.id))).all()
    bodies = signatures = 0
    for event in events:
        if event.type in CUSTOMER_AUTHORED and event.body != ERASED:
            event.body = dict(ERASED)
            bodies += 1
        raw = (event.signature or {}).get("body")
        if raw is not None and (event.type == "case.opened" or any(p in raw for p in personal)):
            kept = dict(event.signature or {})
            kept["body_sha256"] = hashlib.sha256(raw.encode("utf-8", errors="surrogateescape")).hexdigest()
            kept["body"] = None
            event.signature = kept
            signatures += 1

    notes = await session.execute(
        update(Notification)
        .where(Notification.case_id == case.id, Notification.audience == "customer")
        .values(recipient="erased", subject=None, body_text=None, body_html=None, payload=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    replays = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.response_body.contains(json.dumps(case.ref)))
    )

    case.customer_name = None
    case.customer_phone = None
    case.customer_email = None
    case.customer_channels = []
    case.satisfaction_comment = None
    append_event(session=session, case=case, type="customer.erased", actor=actor, visibility="internal",
                 body={"bodies": bodies, "signed_bodies": signatures}, now=now)
    await session.flush()
    return {"events": bodies, "signatures": signatures, "notifications": notes.rowcount or 0,
            "idempotency_records": replays.rowcount or 0}
