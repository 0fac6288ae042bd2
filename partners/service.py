"""The partner registry: partners, their keys (rotation), and nonce bookkeeping."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Collection

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from partners.models import Partner, PartnerKey, SignatureNonce
from partners.schemas import KeyIn, KeyOut, PartnerIn, PartnerOut, PartnerPatch
from partners.signatures import KeyMaterial
from partners.webhook_urls import BlockedWebhookURL, check_webhook_url
from kernel.db import Statement, UTCDateTime, caches_of, settings_of
from kernel.errors import Conflict, NotFound, Unprocessable


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def register_partner(*, session: AsyncSession, payload: PartnerIn, now: dt.datetime) -> PartnerOut:
    """Register a partner; a webhook secret is generated (and returned once) when none is given.

    Its webhook URL is checked against the allow-list of the settings the session carries.
    """
    if payload.webhook_url is not None:
        check_url(url=str(payload.webhook_url), allow_hosts=_allow_hosts(session))
    if await session.get(Partner, payload.id) is not None:
        raise Conflict(f"Partner {payload.id!r} already exists.")
    generated = None if payload.webhook_secret else new_webhook_secret()
    partner = Partner(
        id=payload.id,
        name=payload.name,
        kind=payload.kind,
        ops_email=payload.ops_email,
        ops_phone=payload.ops_phone,
        duty_email=payload.duty_email,
        duty_phone=payload.duty_phone,
        account_email=payload.account_email,
        ladder=payload.ladder.model_dump(mode="json") if payload.ladder else None,
        webhook_url=str(payload.webhook_url) if payload.webhook_url else None,
        webhook_secret=payload.webhook_secret or generated,
        default_cadence_seconds=int(payload.default_cadence.total_seconds()),
        escalate_after_seconds=int(payload.escalate_after.total_seconds()) if payload.escalate_after else None,
        timezone=payload.timezone,
        calendar=payload.calendar.model_dump(mode="json") if payload.calendar else None,
        delivery_slots=payload.delivery_slots,
        created_at=now,
    )
    session.add(partner)
    await session.flush()
    out = partner_out(partner, [])
    out.webhook_secret = generated
    return out


def _allow_hosts(session: AsyncSession) -> tuple[str, ...]:
    try:
        return settings_of(session).webhook_allow_hosts
    except LookupError:  # a session made without settings (a bare script): nothing is exempt
        return ()


def check_url(*, url: str, allow_hosts: str | Collection[str]) -> None:
    """A webhook URL as SPEC.md allows it (https, public address), else 422 naming the field."""
    try:
        check_webhook_url(url, allow_hosts=allow_hosts)
    except BlockedWebhookURL as exc:
        raise Unprocessable(f"webhook_url: {exc}", errors=[{"field": "webhook_url", "message": str(exc)}]) from None


async def update_partner(*, session: AsyncSession, partner_id: str, payload: PartnerPatch) -> PartnerOut:
    """Change a partner's contact roster or escalation ladder (only the fields sent; null clears one).

    This process forgets its cached copy at once; other replicas read the new ladder within the
    30 s their cache of partners' rules keeps it (``tracker.watchdog.partner_rules``).
    """
    partner = await session.get(Partner, partner_id)
    if partner is None:
        raise NotFound(f"No partner {partner_id!r}.")
    for field in payload.model_fields_set:
        value = getattr(payload, field)
        setattr(partner, field, value.model_dump(mode="json") if field == "ladder" and value is not None else value)
    await session.flush()
    try:
        caches_of(session).partner_rules.clear()
    except LookupError:  # a session made without the runtime's caches: nothing cached to forget
        pass
    keys = (await session.scalars(select(PartnerKey).where(PartnerKey.partner_id == partner_id))).all()
    return partner_out(partner, list(keys))


async def get_partner(*, session: AsyncSession, partner_id: str) -> PartnerOut:
    partner = await session.get(Partner, partner_id)
    if partner is None:
        raise NotFound(f"No partner {partner_id!r}.")
    keys = (await session.scalars(select(PartnerKey).where(PartnerKey.partner_id == partner_id))).all()
    return partner_out(partner, list(keys))


async def list_partners(*, session: AsyncSession) -> list[PartnerOut]:
    partners = (await session.scalars(select(Partner).order_by(Partner.id))).all()
    keys = (await session.scalars(select(PartnerKey).order_by(PartnerKey.id))).all()
    by_partner: dict[str, list[PartnerKey]] = {}
    for key in keys:
        by_partner.setdefault(key.partner_id, []).append(key)
    return [partner_out(p, by_partner.get(p.id, [])) for p in partners]


async def add_key(*, session: AsyncSession, partner_id: str, payload: KeyIn, now: dt.datetime) -> KeyOut:
    """Add a signing key. Several may be active at once, so partners rotate without downtime."""
    if await session.get(Partner, partner_id) is None:
        raise NotFound(f"No partner {partner_id!r}.")
    existing = await session.scalar(select(PartnerKey.id).where(PartnerKey.keyid == payload.keyid))
    if existing is not None:
        raise Conflict(f"Key id {payload.keyid!r} is already taken; key ids are never reused.")
    public_pem = secret = None
    if payload.alg == "ed25519":
        public_pem = _normalize_ed25519_public_key(payload.public_key)
    else:
        if payload.public_key:
            raise Unprocessable("An hmac-sha256 key takes no public_key: Baton generates the secret.")
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
    key = PartnerKey(
        partner_id=partner_id,
        keyid=payload.keyid,
        alg=payload.alg,
        public_key=public_pem,
        secret=secret,
        created_at=now,
        active=True,
    )
    session.add(key)
    await session.flush()
    out = key_out(key)
    out.secret = secret
    return out


async def revoke_key(*, session: AsyncSession, partner_id: str, keyid: str, now: dt.datetime) -> KeyOut:
    """Revoke a key. Its material is kept so that events it signed can still be verified."""
    key = await session.scalar(
        select(PartnerKey).where(PartnerKey.partner_id == partner_id, PartnerKey.keyid == keyid)
    )
    if key is None or not key.active:
        raise NotFound(f"No active key {keyid!r} for partner {partner_id!r}.")
    key.active = False
    key.revoked_at = now
    await session.flush()
    return key_out(key)


async def key_material(*, session: AsyncSession, keyid: str, active_only: bool = True) -> KeyMaterial | None:
    query = select(PartnerKey.keyid, PartnerKey.partner_id, PartnerKey.alg, PartnerKey.public_key, PartnerKey.secret)
    query = query.where(PartnerKey.keyid == keyid)
    if active_only:
        query = query.where(PartnerKey.active.is_(True))
    row = (await session.execute(query)).first()
    return KeyMaterial(*row) if row else None


async def key_materials(*, session: AsyncSession, keyids: Collection[str]) -> dict[str, KeyMaterial]:
    """Material of these keys by key id, revoked ones too: a kept signature is re-checked with the key that made it."""
    if not keyids:
        return {}
    query = select(PartnerKey.keyid, PartnerKey.partner_id, PartnerKey.alg, PartnerKey.public_key, PartnerKey.secret)
    rows = (await session.execute(query.where(PartnerKey.keyid.in_(sorted(keyids))))).all()
    return {row.keyid: KeyMaterial(*row) for row in rows}


async def signing_keys(*, session: AsyncSession, keyids: Collection[str]) -> list[KeyOut]:
    """The public view of these keys (never an HMAC secret), revoked ones too, by key id."""
    if not keyids:
        return []
    query = select(PartnerKey).where(PartnerKey.keyid.in_(sorted(keyids))).order_by(PartnerKey.keyid)
    return [key_out(key) for key in await session.scalars(query)]


# The nonce is recorded only while the key is active; PostgreSQL needs the select list typed.
_CONSUME_NONCE_PG = (
    "INSERT INTO signature_nonces (keyid, nonce, expires_at) "
    "SELECT CAST(:keyid AS VARCHAR), CAST(:nonce AS VARCHAR), CAST(:expires_at AS TIMESTAMPTZ) "
    "WHERE EXISTS (SELECT 1 FROM partner_keys WHERE keyid = :keyid AND active) "
    "ON CONFLICT DO NOTHING RETURNING keyid"
)
_CONSUME_NONCE = Statement(
    "INSERT INTO signature_nonces (keyid, nonce, expires_at) SELECT :keyid, :nonce, :expires_at "
    "WHERE EXISTS (SELECT 1 FROM partner_keys WHERE keyid = :keyid AND active) "
    "ON CONFLICT DO NOTHING RETURNING keyid",
    pg=_CONSUME_NONCE_PG,
    expires_at=UTCDateTime(),
)


# The same for many nonces at once, read from a CTE ``input`` (keyid, nonce, expires_at): it answers
# the nonces recorded (tracker.admission.spend_many, one statement for a whole group commit batch).
CONSUME_NONCES_PG = (
    "INSERT INTO signature_nonces (keyid, nonce, expires_at) SELECT i.keyid, i.nonce, i.expires_at "
    "FROM input AS i WHERE EXISTS (SELECT 1 FROM partner_keys AS k WHERE k.keyid = i.keyid AND k.active) "
    "ON CONFLICT DO NOTHING RETURNING keyid, nonce"
)


async def consume_nonce(*, session: AsyncSession, keyid: str, nonce: str, expires_at: dt.datetime) -> bool:
    """Record a nonce while the key is active; False for a replayed nonce or a revoked key.

    One statement does both, so that callers may verify with cached key material (see
    ``KeyCache``) and still refuse a key revoked a moment ago by another process.
    """
    # A returned row, not rowcount: psycopg's async adapter reports -1 for INSERT ... ON CONFLICT.
    row = await _CONSUME_NONCE.first(session, {"keyid": keyid, "nonce": nonce, "expires_at": expires_at})
    return row is not None


async def key_is_active(*, session: AsyncSession, keyid: str) -> bool:
    found = await session.scalar(select(PartnerKey.id).where(PartnerKey.keyid == keyid, PartnerKey.active.is_(True)))
    return found is not None


async def purge_nonces(*, session: AsyncSession, now: dt.datetime) -> int:
    result = await session.execute(delete(SignatureNonce).where(SignatureNonce.expires_at < now))
    return result.rowcount or 0


def _normalize_ed25519_public_key(pem: str | None) -> str:
    if not pem:
        raise Unprocessable("An ed25519 key needs public_key: a PEM 'BEGIN PUBLIC KEY' block.")
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise Unprocessable("public_key is not a PEM public key.") from None
    if not isinstance(key, Ed25519PublicKey):
        raise Unprocessable("public_key is not an Ed25519 key.")
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def partner_out(partner: Partner, keys: list[PartnerKey]) -> PartnerOut:
    return PartnerOut(
        id=partner.id,
        name=partner.name,
        kind=partner.kind,
        ops_email=partner.ops_email,
        ops_phone=partner.ops_phone,
        duty_email=partner.duty_email,
        duty_phone=partner.duty_phone,
        account_email=partner.account_email,
        ladder=partner.ladder,
        webhook_url=partner.webhook_url,
        default_cadence=dt.timedelta(seconds=partner.default_cadence_seconds),
        escalate_after=dt.timedelta(seconds=partner.escalate_after_seconds) if partner.escalate_after_seconds else None,
        timezone=partner.timezone,
        calendar=partner.calendar,
        delivery_slots=partner.delivery_slots,
        created_at=partner.created_at,
        keys=[key_out(k) for k in keys],
    )


def key_out(key: PartnerKey) -> KeyOut:
    return KeyOut(
        keyid=key.keyid,
        alg=key.alg,
        partner=key.partner_id,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
        public_key=key.public_key,
    )


