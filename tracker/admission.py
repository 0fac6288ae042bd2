"""Admitting a signed partner request: signature, nonce and idempotency claim as one typed step.

1. Parse the signature headers (``partners.signatures``; over-long parameters are refused unstored).
2. Check the key's rate limit; the request counts only once its signature verifies (key ids are
   public: a request that merely claims one must not use up the real partner's quota).
3. Verify the signature with the key's material (cached per key id; material never changes).
4. Spend the nonce, only while the key is active, so that a revocation by another process
   takes effect at once despite the cache. On PostgreSQL a write with an ``Idempotency-Key``
   spends it and claims the key's idempotency lock and stored response in one statement.
5. Answer an ``Admission``: who is calling, the write's nonce (kept even if the request later
   fails: a captured request must not become replayable), and the idempotency claim that
   ``Ctx.write`` continues from.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from kernel.clock import Clock
from kernel.config import Settings
from kernel.db import Statement
from kernel.errors import Unauthorized
from partners import service as partner_service
from partners.signatures import KeyCache, parse_signature_headers, verify_request
from tracker import idempotency
from tracker.idempotency import Claim
from tracker.principals import Principal
from tracker.ratelimit import RateLimits

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Runtime(Protocol):
    """What admission needs of the app's runtime."""

    settings: Settings
    clock: Clock
    keys: KeyCache
    limits: RateLimits


@dataclass(frozen=True, slots=True)
class SpentNonce:
    keyid: str
    nonce: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Admission:
    """Who is calling, and what admitting the request already did in its transaction."""

    principal: Principal
    nonce: SpentNonce | None = None  # a write's nonce: kept even when the request fails
    claim: Claim | None = None  # the Idempotency-Key's lock and stored response, when taken here


async def admit_partner(*, request: Request, session: AsyncSession, rt: Runtime) -> Admission:
    """Steps 1-5 above for one signed request; 401 (or 429) when it may not be admitted."""
    headers = request.headers
    signed = parse_signature_headers(headers)
    limit, at = rt.limits.partner_requests, rt.limits.now()
    limit.check(signed.keyid, at, detail=f"Too many requests for key {signed.keyid}; slow down.")
    body = await request.body()
    material = rt.keys.material(signed.keyid)
    if material is None:
        material = await partner_service.key_material(session=session, keyid=signed.keyid)
        if material is None:
            raise Unauthorized(f"Unknown or revoked key id {signed.keyid!r}.")
        rt.keys.remember(material)
    now = rt.clock.now()
    verified = verify_request(
        method=request.method, target_uri=target_uri(request, rt.settings), headers=headers, body=body,
        signed=signed, material=material, now=now.timestamp(), max_skew=rt.settings.signature_max_skew_seconds,
        max_future=rt.settings.signature_max_future_seconds, keys=rt.keys,
    )
    limit.hit(signed.keyid, at)
    write = request.method not in SAFE_METHODS
    principal = Principal(kind="partner", name=material.partner_id, partner_id=material.partner_id,
                          signature=verified.record(body) if write else None)
    nonce = SpentNonce(signed.keyid, signed.nonce, now + dt.timedelta(seconds=2 * rt.settings.signature_max_skew_seconds))
    params = {"keyid": nonce.keyid, "nonce": nonce.nonce, "expires_at": nonce.expires_at}
    key = headers.get("idempotency-key")
    claim = None
    if write and key is not None and idempotency.valid_key(key) and _postgres(session):
        scope = principal.idempotency_scope
        row = await _ADMIT_PG.first(session, {**params, "principal": scope, "key": key,
                                               "lock": idempotency.lock_id(scope, key)})
        assert row is not None  # the statement always answers one row
        fresh, claim = bool(row["fresh"]), Claim.of(row)
    else:
        fresh = await partner_service.consume_nonce(session=session, **params)
    if not fresh:
        if not await partner_service.key_is_active(session=session, keyid=signed.keyid):
            raise Unauthorized(f"Unknown or revoked key id {signed.keyid!r}.")
        raise Unauthorized("This nonce was already used with this key (replayed request).")
    if not write:
        await session.commit()  # a read keeps its nonce now; a write keeps it with its effects
        return Admission(principal=principal)
    return Admission(principal=principal, nonce=nonce, claim=claim)


async def keep_nonce(*, session: AsyncSession, admission: Admission | None) -> None:
    """After a failed write was rolled back: spend its nonce again, on its own, and commit that."""
    if admission is None or admission.nonce is None:
        return
    spent = admission.nonce
    try:
        await partner_service.consume_nonce(session=session, keyid=spent.keyid, nonce=spent.nonce,
                                            expires_at=spent.expires_at)
        await session.commit()
    except Exception:
        await session.rollback()


def target_uri(request: Request, settings: Settings) -> str:
    """The URI the partner signed: rebuilt from BATON_PUBLIC_BASE_URL when Baton sits behind a proxy."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    path = raw_path.decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    base = settings.public_base_url
    if not base:
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        base = f"{request.url.scheme}://{host}"
    return f"{base}{path}" + (f"?{query}" if query else "")


# The one statement of step 4 on PostgreSQL: the nonce (partners' statement, spent only while the
# key is active) and the idempotency claim (tracker.idempotency's), each written once by its owner.
_ADMIT_PG = Statement(
    f"WITH nonce AS ({partner_service.CONSUME_NONCE_PG}) "
    f"SELECT EXISTS (SELECT 1 FROM nonce) AS fresh, claim.* FROM ({idempotency.CLAIM_PG}) AS claim"
)


def _postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"

