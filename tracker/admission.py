"""Admitting a signed partner request: signature, nonce and idempotency claim as one typed step.

1. Parse the signature headers (``partners.signatures``; over-long parameters are refused unstored).
2. Check the key's rate limit; the request counts only once its signature verifies (key ids are
   public: a request that merely claims one must not use up the real partner's quota).
3. Verify the signature with the key's material (cached per key id; material never changes).
   Steps 1-3 are ``verify_partner`` and need no session unless the material is not cached, so a
   signed update is verified before it waits for a database connection.
4. Spend the nonce, only while the key is active, so that a revocation by another process
   takes effect at once despite the cache. On PostgreSQL a write with an ``Idempotency-Key``
   spends it and claims the key's idempotency lock and stored response in one statement
   (``spend``; ``spend_many`` does it for a whole group commit batch, ``tracker.groupcommit``).
5. Answer an ``Admission``: who is calling, the write's nonce (kept even if the request later
   fails: a captured request must not become replayable), and the idempotency claim that
   ``Ctx.write`` continues from.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from kernel.clock import Clock
from kernel.config import Settings
from kernel.db import Statement, is_postgres
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

    sessionmaker: async_sessionmaker[AsyncSession]
    gate: AbstractAsyncContextManager[Any]
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


@dataclass(frozen=True, slots=True)
class Verified:
    """A signed request whose signature verified (steps 1-3); its nonce is not spent yet."""

    principal: Principal
    nonce: SpentNonce
    write: bool


async def verify_partner(
    *, request: Request, rt: Runtime, session: AsyncSession | None = None, body_follows: bool = False
) -> Verified:
    """Steps 1-3 for one signed request: 401 (or 429) unless its signature verifies.

    Needs the database only for key material it has not cached: through ``session`` when
    given, else through a short session of its own (behind the runtime's connection gate).
    ``body_follows``: an upload, verified before its body is read; the signature must cover
    ``content-digest``, which the caller checks against the body as it streams in
    (``tracker.web.uploads``). The kept signature then has no body, like an erased one.
    """
    headers = request.headers
    signed = parse_signature_headers(headers)
    limit, at = rt.limits.partner_requests, rt.limits.now()
    limit.check(signed.keyid, at, detail=f"Too many requests for key {signed.keyid}; slow down.")
    body = b"" if body_follows else await request.body()
    material = rt.keys.material(signed.keyid)
    if material is None:
        if session is not None:
            material = await partner_service.key_material(session=session, keyid=signed.keyid)
        else:
            async with rt.gate, rt.sessionmaker() as own:
                material = await partner_service.key_material(session=own, keyid=signed.keyid)
        if material is None:
            raise Unauthorized(f"Unknown or revoked key id {signed.keyid!r}.")
        rt.keys.remember(material)
    now = rt.clock.now()
    verified = verify_request(
        method=request.method, target_uri=target_uri(request, rt.settings), headers=headers, body=body,
        signed=signed, material=material, now=now.timestamp(), max_skew=rt.settings.signature_max_skew_seconds,
        max_future=rt.settings.signature_max_future_seconds, keys=rt.keys, digest_checked=body_follows,
    )
    limit.hit(signed.keyid, at)
    write = request.method not in SAFE_METHODS
    kept = verified.record(body) if write else None
    if kept is not None and body_follows:
        kept["body"] = None  # an upload: its Content-Digest is kept, its bytes are not (files are kept by digest)
    principal = Principal(kind="partner", name=material.partner_id, partner_id=material.partner_id, signature=kept)
    nonce = SpentNonce(signed.keyid, signed.nonce, now + dt.timedelta(seconds=2 * rt.settings.signature_max_skew_seconds))
    return Verified(principal=principal, nonce=nonce, write=write)


async def admit_partner(*, request: Request, session: AsyncSession, rt: Runtime) -> Admission:
    """Steps 1-5 above for one signed request; 401 (or 429) when it may not be admitted."""
    return await spend(request=request, session=session, verified=await verify_partner(request=request, rt=rt,
                                                                                          session=session))


async def spend(*, request: Request, session: AsyncSession, verified: Verified) -> Admission:
    """Steps 4-5 for a verified request, in ``session``'s transaction (``spend_many`` for one)."""
    principal, nonce, write = verified.principal, verified.nonce, verified.write
    key = request.headers.get("idempotency-key") if write else None
    key = key if key is not None and idempotency.valid_key(key) else None  # a bad key is Ctx.write's 422
    [spent] = await spend_many(session, [(nonce, principal.idempotency_scope, key)])
    if not spent.fresh:
        raise refused(spent, nonce.keyid)
    if not write:
        await session.commit()  # a read keeps its nonce now; a write keeps it with its effects
        return Admission(principal=principal)
    return Admission(principal=principal, nonce=nonce, claim=spent.claim)


def replayed() -> Unauthorized:
    return Unauthorized("This nonce was already used with this key (replayed request).")


@dataclass(frozen=True, slots=True)
class Spent:
    """What spending one of many nonces found (``spend_many``)."""

    fresh: bool  # the nonce was new and its key active: the request is admitted
    active: bool  # the key is active (a stale nonce is then a replay, else the key was revoked)
    claim: Claim | None  # the Idempotency-Key's lock and stored response, for a request with one


def refused(spent: Spent, keyid: str) -> Unauthorized:
    """Why a nonce that was not fresh refuses its request."""
    return replayed() if spent.active else Unauthorized(f"Unknown or revoked key id {keyid!r}.")


async def spend_many(
    session: AsyncSession, entries: Sequence[tuple[SpentNonce, str | None, str | None]]
) -> list[Spent]:
    """Step 4 for verified requests in one transaction (one, or a group commit batch): (nonce,
    idempotency scope, Idempotency-Key or None) each, answered in order, one statement on
    PostgreSQL. The caller makes sure no nonce appears twice among ``entries`` (the second would
    be a replay of the first)."""
    if is_postgres(session):
        rows = await _ADMIT_MANY_PG.rows(session, {"entries": json.dumps([
            {"ord": i, "keyid": n.keyid, "nonce": n.nonce, "expires_at": n.expires_at.isoformat(),
             "principal": scope, "key": key,
             "lock": idempotency.lock_id(scope, key) if key is not None and scope is not None else None}
            for i, (n, scope, key) in enumerate(entries)], separators=(",", ":"))})
        return [Spent(fresh=bool(row["fresh"]), active=bool(row["active"]),
                      claim=Claim.of(row) if key is not None else None)
                for row, (_, _, key) in zip(rows, entries, strict=True)]
    spent = []
    for nonce, scope, key in entries:
        fresh = await partner_service.consume_nonce(session=session, keyid=nonce.keyid, nonce=nonce.nonce,
                                                    expires_at=nonce.expires_at)
        active = fresh or await partner_service.key_is_active(session=session, keyid=nonce.keyid)
        claim = await idempotency.lookup(session, scope, key) if key is not None and scope is not None else None
        spent.append(Spent(fresh=fresh, active=active, claim=claim))
    return spent


async def keep_nonce(*, session: AsyncSession, nonce: SpentNonce) -> Unauthorized | None:
    """Spend a write's nonce on its own and commit (after its write was rolled back, or refused
    before it reached the database): None, or the 401 a nonce already spent earns."""
    [spent] = await spend_many(session, [(nonce, None, None)])
    await session.commit()
    return None if spent.fresh else refused(spent, nonce.keyid)


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


# Step 4 on PostgreSQL, for one write or many: each nonce spent while its key is active (partners'
# statement), each Idempotency-Key's lock tried and its stored response read, one row per entry in
# the entries' order.
_ADMIT_MANY_PG = Statement(
    "WITH input AS (SELECT * FROM json_to_recordset(CAST(:entries AS json)) AS i(ord int, keyid text, "
    "nonce text, expires_at timestamptz, principal text, key text, lock bigint)), "
    f"nonce AS ({partner_service.CONSUME_NONCES_PG}) "
    "SELECT i.ord, EXISTS (SELECT 1 FROM nonce AS n WHERE n.keyid = i.keyid AND n.nonce = i.nonce) AS fresh, "
    "EXISTS (SELECT 1 FROM partner_keys AS k WHERE k.keyid = i.keyid AND k.active) AS active, "
    "CASE WHEN i.key IS NULL THEN true ELSE pg_try_advisory_xact_lock(i.lock) END AS locked, "
    "r.request_digest, r.status_code, r.response_body FROM input AS i "
    'LEFT JOIN idempotency_records AS r ON r.principal = i.principal AND r."key" = i.key ORDER BY i.ord'
)



