"""The ``/v1`` routes of rights and claims (``tracker.rights``, ``tracker.claims``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response

from tracker import claims, rights
from tracker.claims import ClaimIn, ClaimList, ClaimOut, DecisionIn, PaidIn
from tracker.rights import RightsOut
from tracker.web.api import IDEMPOTENCY, PROBLEMS
from tracker.web.deps import Ctx, caller

router = APIRouter(prefix="/v1", responses=PROBLEMS)


@router.get("/cases/{ref}/rights", response_model=RightsOut, tags=["rights"])
async def get_case_rights(ref: str, ctx: Ctx = Depends(caller)) -> RightsOut:
    """Each rule that applies to the case, dated in the customer's time zone (staff, the owner)."""
    return await rights.read_rights(session=ctx.session, principal=ctx.principal, ref=ref, now=ctx.now())


@router.get("/cases/{ref}/claims", response_model=ClaimList, tags=["claims"])
async def list_case_claims(ref: str, ctx: Ctx = Depends(caller)) -> ClaimList:
    """The customer's claims on the case (staff, the owner)."""
    return await claims.list_claims(session=ctx.session, principal=ctx.principal, ref=ref)


@router.post("/cases/{ref}/claims", status_code=201, response_model=ClaimOut, openapi_extra=IDEMPOTENCY,
             tags=["claims"])
async def file_case_claim(ref: str, payload: ClaimIn, ctx: Ctx = Depends(caller)) -> Response:
    """File a claim on the customer's behalf (staff, the owner). Amounts are decimal strings."""
    return await ctx.write(lambda: claims.file_for_customer(session=ctx.session, principal=ctx.principal, ref=ref,
                                                            payload=payload, now=ctx.now()), status_code=201)


@router.post("/cases/{ref}/claims/{claim_id}/decision", response_model=ClaimOut, openapi_extra=IDEMPOTENCY,
             tags=["claims"])
async def decide_case_claim(ref: str, claim_id: int, payload: DecisionIn, ctx: Ctx = Depends(caller)) -> Response:
    """Approve, approve in part, or reject a filed claim, with a reason (the owner, signed; staff)."""
    return await ctx.write(lambda: claims.decide(session=ctx.session, principal=ctx.principal, ref=ref,
                                                 claim_id=claim_id, payload=payload, now=ctx.now()))


@router.post("/cases/{ref}/claims/{claim_id}/paid", response_model=ClaimOut, openapi_extra=IDEMPOTENCY,
             tags=["claims"])
async def pay_case_claim(ref: str, claim_id: int, payload: PaidIn, ctx: Ctx = Depends(caller)) -> Response:
    """Mark an approved claim paid, with the payment's reference (the owner, signed; staff)."""
    return await ctx.write(lambda: claims.mark_paid(session=ctx.session, principal=ctx.principal, ref=ref,
                                                    claim_id=claim_id, payload=payload, now=ctx.now()))


@router.get("/claims", response_model=ClaimList, tags=["claims"])
async def list_claims(overdue: bool = Query(default=False, description="Only undecided claims past their answer "
                                                                      "time."),
                      ctx: Ctx = Depends(caller)) -> ClaimList:
    """Claims across cases (staff): the complaint department's list of who is late paying."""
    return await claims.overdue_claims(session=ctx.session, principal=ctx.principal, overdue=overdue)
