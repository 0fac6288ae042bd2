"""``POST /v1/cases/{ref}/events``: group commit first, the general path when it must.

A signed update is verified in its request (no session yet), then handed to the process's
``GroupCommit`` (``tracker.groupcommit``), which answers it after its batch committed. The
general path, in a transaction of the request's own, takes staff updates, updates that are not
routine (group commit spent their nonce already), and the few requests group commit does not
take: with group commit off, with an Idempotency-Key that is malformed or whose twin is in
flight in this process (the general path answers those as it always has).
"""

from __future__ import annotations

from fastapi import Request, Response

from kernel.errors import BatonError
from tracker import idempotency, updates
from tracker.admission import Verified, keep_nonce, verify_partner
from tracker.routine import RoutineUpdate
from tracker.schemas import EventIn
from tracker.web.deps import authenticate, is_signed, json_response, open_session, runtime, unauthenticated


async def signed_write(request: Request) -> Verified | None:
    """Dependency: a signed request, verified before any session is opened; None for staff."""
    if is_signed(request):
        verified = await verify_partner(request=request, rt=runtime(request))
        # Its body is validated after this: a body refused (422) spends the nonce all the same, and
        # a replayed request is refused as a replay (401) whatever its body.
        request.state.on_refused = lambda: _spend_alone(request, verified)
        return verified
    if not request.headers.get("authorization"):
        raise unauthenticated()
    return None


async def post_event(*, request: Request, ref: str, payload: EventIn, verified: Verified | None) -> Response:
    rt = runtime(request)
    spent = False
    if verified is not None and rt.group_commit is not None:
        key = request.headers.get("idempotency-key")
        scope = verified.principal.idempotency_scope
        if key is None or (idempotency.valid_key(key) and idempotency.hold(scope, key)):
            digest = idempotency.request_digest(request.method, request.url.path, await request.body()) if key else None
            update = RoutineUpdate(principal=verified.principal, ref=ref, payload=payload, now=rt.clock.now())
            try:
                answer = await rt.group_commit.submit(verified=verified, update=update, key=key, digest=digest)
            except BatonError:
                raise  # answered by its batch, which kept its nonce
            except Exception:
                await _spend_alone(request, verified)  # the batch failed, nothing of it was kept
                raise
            finally:
                if key is not None:
                    idempotency.release(scope, key)
            if answer is not None:
                return json_response(answer.body, answer.status_code, replayed=answer.replayed)
            spent = True
    # Group commit found the update not routine: straight to the general path (trying the routine
    # statements again would lock and read the case once more for nothing).
    post = updates.post_general_update if spent else updates.post_update
    async with open_session(request) as session:
        ctx = await authenticate(request, session, verified=verified, spent=spent)
        return await ctx.write(
            lambda: post(session=ctx.session, principal=ctx.principal, ref=ref, payload=payload, now=ctx.now()),
            status_code=201,
        )


async def _spend_alone(request: Request, verified: Verified) -> BatonError | None:
    """Spend a verified request's nonce in a transaction of its own: None, or the 401 it earns."""
    rt = runtime(request)
    async with rt.gate, rt.sessionmaker() as session:
        return await keep_nonce(session=session, nonce=verified.nonce)
