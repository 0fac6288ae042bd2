"""Claims: what the customer asks to be paid, the owner's decision, the payment, and who is late answering.

The lifecycle lives here and only here (``ClaimState``)::

    filed ──decision──▶ approved | partly_approved | rejected ──paid──▶ paid   (rejected ends there)

1. The customer files from the status page (``tracker.web.status_pages``; receipts are attachments
   of the case), staff or the owner partner on their behalf (``POST /v1/cases/{ref}/claims``). Items
   carry amounts as decimal strings with ISO 4217 currencies: a JSON number is refused (a float
   cannot hold 0.10 exactly), totals are summed per currency as ``Decimal``.
2. The owner (signed) or staff decide, wholly or partly, with a reason; then mark it paid with a
   reference. Each step is an event; the customer is told of the decision and of the payment.
3. An undecided claim is due an answer within the case type's ``claim_answer_within`` (baggage:
   30 days). Past it the watchdog flags it overdue (``claim.overdue``: webhook and email to the
   owner, the decider) and, ``claim_escalate_after`` later, escalates it (``claim.escalated``: the
   supervisors, and the customer's honest note), as a late party is: ``sweep_batch``.

Only staff and the owner partner read claims: they hold the customer relationship and the money;
another party of the case gets 403, a partner that is no party 404.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from babel.numbers import list_currencies
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.db import settings_of, skip_locked
from kernel.errors import Conflict, Forbidden, NotFound, Unprocessable
from kernel.pagination import Page
from partners.models import Partner
from tracker import announce
from tracker.access import load_case, signature_of
from tracker.casetypes import case_type
from tracker.customer import notify_customer
from tracker.models import Attachment, Case, Claim
from tracker.principals import Principal
from tracker.timeline import append_event

DEFAULT_ANSWER_WITHIN = dt.timedelta(days=30)
DEFAULT_ESCALATE_AFTER = dt.timedelta(days=7)
CURRENCIES = frozenset(list_currencies())


class ClaimState(StrEnum):
    FILED = "filed"
    APPROVED = "approved"
    PARTLY_APPROVED = "partly_approved"
    REJECTED = "rejected"
    PAID = "paid"


Kind = Literal["interim_expenses", "damage", "loss", "delay"]
# A decimal string: no float ever carries money (strict: a JSON number is refused, not converted).
Amount = Annotated[str, StringConstraints(strict=True, pattern=r"^\d{1,9}(\.\d{1,2})?$")]


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(min_length=1, max_length=300)
    amount: Amount = Field(description='A decimal string, e.g. "12.50"; a JSON number is refused.')
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217.")
    attachment: int | None = Field(default=None, description="A receipt: an attachment of the case.")

    @field_validator("currency")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in CURRENCIES:
            raise ValueError(f"{value} is not an ISO 4217 currency")
        return value


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind
    items: list[ItemIn] = Field(min_length=1, max_length=50)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approved", "partly_approved", "rejected"]
    amount: Amount | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    reason: str = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _amount(self) -> DecisionIn:
        if self.decision != "rejected" and (self.amount is None or self.currency is None):
            raise ValueError("an approval needs the amount and currency approved")
        if self.decision == "rejected" and self.amount is not None:
            raise ValueError("a rejection has no amount")
        if self.currency is not None and self.currency not in CURRENCIES:
            raise ValueError(f"{self.currency} is not an ISO 4217 currency")
        return self


class PaidIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(min_length=1, max_length=200)


class DecisionOut(BaseModel):
    decision: str
    amount: str | None
    currency: str | None
    reason: str | None
    decided_at: dt.datetime
    decided_by: str


class PaidOut(BaseModel):
    reference: str
    paid_at: dt.datetime


class ClaimOut(BaseModel):
    id: int
    ref: str
    kind: str
    state: ClaimState
    items: list[dict[str, Any]]
    totals: dict[str, str] = Field(description="Per currency, decimal strings.")
    filed_by: str
    filed_at: dt.datetime
    answer_due: dt.datetime
    overdue: bool
    escalated: bool
    decision: DecisionOut | None
    paid: PaidOut | None


class ClaimList(Page[ClaimOut]):
    """Claims, oldest first."""


def totals(items: list[dict[str, Any]]) -> dict[str, str]:
    """Per currency, summed as ``Decimal`` (never float)."""
    sums: dict[str, Decimal] = {}
    for item in items:
        sums[item["currency"]] = sums.get(item["currency"], Decimal(0)) + Decimal(item["amount"])
    return {currency: str(total) for currency, total in sorted(sums.items())}


def claim_out(claim: Claim, ref: str) -> ClaimOut:
    decision = None
    if claim.decision is not None and claim.decided_at is not None:
        decision = DecisionOut(decision=claim.decision, amount=claim.decided_amount, currency=claim.decided_currency,
                               reason=claim.reason, decided_at=claim.decided_at, decided_by=claim.decided_by or "")
    paid = PaidOut(reference=claim.paid_reference, paid_at=claim.paid_at) if claim.paid_at and claim.paid_reference \
        else None
    return ClaimOut(id=claim.id, ref=ref, kind=claim.kind, state=ClaimState(claim.state), items=claim.items,
                    totals=claim.totals, filed_by=claim.filed_by, filed_at=claim.filed_at,
                    answer_due=claim.answer_due, overdue=claim.overdue_at is not None,
                    escalated=claim.escalated_at is not None, decision=decision, paid=paid)


def _require_reader(principal: Principal, case: Case) -> None:
    if not principal.is_staff and principal.partner_id != case.owner_id:
        raise Forbidden("Only staff and the owner partner handle claims.")


# ---------------------------------------------------------------- filing


async def file_claim(
    *, session: AsyncSession, case: Case, payload: ClaimIn, actor: str, now: dt.datetime,
    from_customer: bool = False,
) -> Claim:
    """Step 1 on a case whose row the caller holds locked."""
    ids = [item.attachment for item in payload.items if item.attachment is not None]
    if ids:
        query = select(Attachment.id).where(Attachment.case_id == case.id, Attachment.id.in_(ids),
                                            Attachment.erased_at.is_(None))
        if from_customer:  # the customer may only point at their own files
            query = query.where(Attachment.from_customer.is_(True))
        known = set((await session.scalars(query)).all())
        if missing := sorted(set(ids) - known):
            raise Unprocessable(f"No attachment {missing[0]} on {case.ref} to use as a receipt.")
    ctype = await case_type(session=session, code=case.type)
    items = [item.model_dump() for item in payload.items]
    answer_due = now + (ctype.claim_answer_within or DEFAULT_ANSWER_WITHIN)
    claim = Claim(case_id=case.id, kind=payload.kind, state=ClaimState.FILED, items=items, totals=totals(items),
                  filed_by=actor, filed_at=now, answer_due=answer_due, watch_at=answer_due, updated_at=now)
    session.add(claim)
    await session.flush()
    body = {"claim": claim.id, "kind": claim.kind, "totals": claim.totals, "answer_due": announce.stamp(answer_due)}
    append_event(session=session, case=case, type="claim.filed", actor=actor, visibility="parties", body=body, now=now)
    await announce.webhooks(session=session, case=case, kind="claim.filed", partner_ids=[case.owner_id], now=now,
                            data=body)
    await session.flush()
    return claim


async def file_for_customer(
    *, session: AsyncSession, principal: Principal, ref: str, payload: ClaimIn, now: dt.datetime
) -> ClaimOut:
    """``POST /v1/cases/{ref}/claims``: staff or the owner file on the customer's behalf."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    _require_reader(principal, case)
    claim = await file_claim(session=session, case=case, payload=payload, actor=principal.actor, now=now)
    return claim_out(claim, case.ref)


# ---------------------------------------------------------------- reading


async def list_claims(*, session: AsyncSession, principal: Principal, ref: str) -> ClaimList:
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    _require_reader(principal, case)
    rows = await session.scalars(select(Claim).where(Claim.case_id == case.id).order_by(Claim.id))
    return ClaimList(items=[claim_out(c, case.ref) for c in rows], next_cursor=None)


async def of_case(session: AsyncSession, case: Case) -> list[Claim]:
    return list((await session.scalars(select(Claim).where(Claim.case_id == case.id).order_by(Claim.id))).all())


async def overdue_claims(*, session: AsyncSession, principal: Principal, overdue: bool, limit: int = 200) -> ClaimList:
    """``GET /v1/claims``: staff; ``overdue=true``, the undecided ones past their answer time, oldest first."""
    principal.require_staff("agent")
    query = select(Claim, Case.ref).join(Case, Case.id == Claim.case_id).order_by(Claim.answer_due).limit(limit)
    if overdue:
        query = query.where(Claim.overdue_at.is_not(None), Claim.state == ClaimState.FILED)
    rows = (await session.execute(query)).all()
    return ClaimList(items=[claim_out(claim, ref) for claim, ref in rows], next_cursor=None)


async def _claim(session: AsyncSession, case: Case, claim_id: int) -> Claim:
    claim = await session.scalar(select(Claim).where(Claim.id == claim_id, Claim.case_id == case.id))
    if claim is None:
        raise NotFound(f"No claim {claim_id} on {case.ref}.")
    return claim


# ---------------------------------------------------------------- step 2: deciding and paying


async def decide(
    *, session: AsyncSession, principal: Principal, ref: str, claim_id: int, payload: DecisionIn, now: dt.datetime
) -> ClaimOut:
    """The owner (signed) or staff decide a filed claim; the customer is told."""
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    _require_reader(principal, case)
    claim = await _claim(session, case, claim_id)
    if claim.state != ClaimState.FILED:
        raise Conflict(f"Claim {claim_id} is already {claim.state}.")
    if payload.amount is not None and payload.currency is not None:
        asked = Decimal(claim.totals.get(payload.currency, "0"))
        if payload.decision == "approved" and Decimal(payload.amount) != asked:
            raise Unprocessable(f"An approval is of the whole claim ({asked} {payload.currency}); "
                                "approve part of it with partly_approved.")
        if payload.decision == "partly_approved" and not Decimal(0) < Decimal(payload.amount) < asked:
            raise Unprocessable(f"A partial approval is more than 0 and less than the {asked} {payload.currency} "
                                "claimed in that currency.")
    claim.state = ClaimState(payload.decision)
    claim.decision = payload.decision
    claim.decided_amount, claim.decided_currency, claim.reason = payload.amount, payload.currency, payload.reason
    claim.decided_by, claim.decided_at = principal.actor, now
    claim.watch_at = None
    claim.updated_at = now
    body = {"claim": claim.id, "decision": claim.decision, "amount": claim.decided_amount,
            "currency": claim.decided_currency, "reason": claim.reason}
    append_event(session=session, case=case, type="claim.decided", actor=principal.actor,
                 partner_id=principal.partner_id, visibility="public", body=body, now=now,
                 signature=signature_of(principal))
    await notify_customer(session=session, case=case, kind="claim_decided", now=now,
                          trigger={"claim": claim.id, "decision": claim.decision, "amount": claim.decided_amount,
                                   "currency": claim.decided_currency})
    await session.flush()
    return claim_out(claim, case.ref)


async def mark_paid(
    *, session: AsyncSession, principal: Principal, ref: str, claim_id: int, payload: PaidIn, now: dt.datetime
) -> ClaimOut:
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    _require_reader(principal, case)
    claim = await _claim(session, case, claim_id)
    if claim.state not in (ClaimState.APPROVED, ClaimState.PARTLY_APPROVED):
        raise Conflict(f"Claim {claim_id} is {claim.state}; only an approved claim is paid.")
    claim.state = ClaimState.PAID
    claim.paid_reference, claim.paid_at, claim.updated_at = payload.reference, now, now
    body = {"claim": claim.id, "amount": claim.decided_amount, "currency": claim.decided_currency,
            "reference": payload.reference}
    append_event(session=session, case=case, type="claim.paid", actor=principal.actor,
                 partner_id=principal.partner_id, visibility="public", body=body, now=now,
                 signature=signature_of(principal))
    await notify_customer(session=session, case=case, kind="claim_paid", now=now,
                          trigger={"claim": claim.id, "amount": claim.decided_amount,
                                   "currency": claim.decided_currency})
    await session.flush()
    return claim_out(claim, case.ref)


# ---------------------------------------------------------------- step 3: the watchdog


async def sweep_batch(session: AsyncSession, now: dt.datetime, batch: int) -> int:
    """Flag undecided claims past their answer time, then escalate them (locked rows skipped)."""
    query = (select(Claim, Case).join(Case, Case.id == Claim.case_id).where(Claim.watch_at <= now)
             .order_by(Claim.watch_at).limit(batch))
    rows = (await session.execute(skip_locked(session, query, of=(Claim, Case)))).all()
    settings = settings_of(session)
    for claim, case in rows:
        if claim.state != ClaimState.FILED:
            claim.watch_at = None
            continue
        owner = await session.get(Partner, case.owner_id)
        ctype = await case_type(session=session, code=case.type)
        body = {"claim": claim.id, "kind": claim.kind, "totals": claim.totals,
                "answer_due": announce.stamp(claim.answer_due), "decider": case.owner_id}
        if claim.overdue_at is None:
            claim.overdue_at = now
            claim.watch_at = claim.answer_due + (ctype.claim_escalate_after or DEFAULT_ESCALATE_AFTER)
            append_event(session=session, case=case, type="claim.overdue", actor="system", visibility="parties",
                         body=body, now=now, partner_id=case.owner_id)
            await announce.webhooks(session=session, case=case, kind="claim.overdue", partner_ids=[case.owner_id],
                                    now=now, data=body, dedupe_key=f"claim.overdue:{claim.id}")
            if owner is not None:
                await announce.partner_email(session=session, case=case, kind="claim.overdue", partner=owner, now=now,
                                             dedupe_key=f"claim.overdue:{claim.id}",
                                             context={"claim": claim, "answer_due": announce.stamp(claim.answer_due)})
            continue
        claim.escalated_at = now
        claim.watch_at = None
        append_event(session=session, case=case, type="claim.escalated", actor="system", visibility="parties",
                     body=body, now=now, partner_id=case.owner_id)
        if owner is not None:
            await announce.supervisors_email(
                session=session, case=case, kind="claim.escalated", address=settings.supervisors_email,
                partner=owner, now=now, dedupe_key=f"claim.escalated:{claim.id}",
                context={"claim": claim, "answer_due": announce.stamp(claim.answer_due)},
            )
        await notify_customer(session=session, case=case, kind="escalation", now=now,
                              trigger={"waiting_on": owner.name if owner else case.owner_id,
                                       "chased_at": claim.overdue_at.isoformat() if claim.overdue_at else None})
    await session.flush()
    return len(rows)
