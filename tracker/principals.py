"""Who is calling: a staff member (bearer token) or a partner (signed request)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.config import STAFF_ROLES
from kernel.errors import Forbidden, Unauthorized
from tracker.models import StaffToken

ROLES = STAFF_ROLES  # agent < supervisor < admin
# ``StaffToken.source``: a bearer token from ``baton staff add``, or a console session signed in
# through the organization's identity provider (``tracker.staff_sign_in``).
FROM_TOKEN = "token"
FROM_SIGN_IN = "oidc"
_RANK = {role: rank for rank, role in enumerate(ROLES)}


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "staff" | "partner"
    name: str
    role: str | None = None
    partner_id: str | None = None
    signature: Any = field(default=None, compare=False)
    # How an unsigned partner spoke: "link" for a one-tap update link (``tracker.party_links``).
    via: str | None = None
    # The person's name as the console greets them (staff signed in through the identity provider).
    display_name: str | None = field(default=None, compare=False)

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"

    @property
    def idempotency_scope(self) -> str:
        return self.actor

    def has_role(self, minimum: str = "agent") -> bool:
        """Staff with at least this role (the console hides what a role may not do)."""
        return self.is_staff and _RANK[self.role or "agent"] >= _RANK[minimum]

    def require_staff(self, minimum: str = "agent") -> None:
        if not self.is_staff:
            raise Forbidden("Only Baton staff may do this.")
        if not self.has_role(minimum):
            raise Forbidden(f"This needs the {minimum} role; your token has {self.role}.")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_staff_token() -> str:
    return "bat_" + secrets.token_urlsafe(32)


async def create_staff_token(*, session: AsyncSession, name: str, role: str, now: dt.datetime) -> str:
    """Create a staff token; only its hash is stored, the token is returned once."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = new_staff_token()
    session.add(StaffToken(name=name, role=role, token_hash=hash_token(token), created_at=now, source=FROM_TOKEN))
    await session.flush()
    return token


async def authenticate_staff(*, session: AsyncSession, token: str, admin_token: str | None) -> Principal:
    """The staff member a bearer token belongs to (no ``now``: a sign-in session's row is never a bearer token)."""
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(kind="staff", name="admin", role="admin")
    return await authenticate_staff_hash(session=session, token_hash=hash_token(token), admin_token=None)


async def authenticate_staff_hash(
    *, session: AsyncSession, token_hash: str, admin_token: str | None, now: dt.datetime | None = None
) -> Principal:
    """The staff member whose token hashes to ``token_hash``, if that token is still valid.

    The console's session cookie carries only the hash, and asks again on every request, so
    revoking a token (or unsetting BATON_ADMIN_TOKEN) ends the sessions signed in with it. Rows
    that expire are sign-in sessions: they count only before ``now``, and never without one.
    """
    if admin_token and hmac.compare_digest(token_hash.encode(), hash_token(admin_token).encode()):
        return Principal(kind="staff", name="admin", role="admin")
    unexpired = (StaffToken.expires_at.is_(None) if now is None
                 else or_(StaffToken.expires_at.is_(None), StaffToken.expires_at > now))
    row = (
        await session.execute(
            select(StaffToken.name, StaffToken.role, StaffToken.display_name).where(
                StaffToken.token_hash == token_hash, StaffToken.revoked_at.is_(None), unexpired
            )
        )
    ).first()
    if row is None:
        raise Unauthorized("Unknown or revoked staff token.")
    return Principal(kind="staff", name=row.name, role=row.role, display_name=row.display_name)


async def start_sign_in(
    *, session: AsyncSession, name: str, display_name: str, subject: str, role: str, now: dt.datetime,
    expires_at: dt.datetime,
) -> str:
    """Record a console session signed in through the identity provider; its token is for the cookie's hash only.

    Sessions that have expired or were signed out are deleted on the way: they can never count again.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    await session.execute(delete(StaffToken).where(
        StaffToken.source == FROM_SIGN_IN, or_(StaffToken.expires_at <= now, StaffToken.revoked_at.is_not(None))))
    token = new_staff_token()
    session.add(StaffToken(name=name, role=role, token_hash=hash_token(token), created_at=now, source=FROM_SIGN_IN,
                           expires_at=expires_at, display_name=display_name, subject=subject))
    await session.flush()
    return token


async def end_sign_in(*, session: AsyncSession, token_hash: str, now: dt.datetime) -> None:
    """Sign-out: revoke the session's row if it is a sign-in session (a staff token outlives its console sessions)."""
    await session.execute(update(StaffToken).where(
        StaffToken.token_hash == token_hash, StaffToken.source == FROM_SIGN_IN, StaffToken.revoked_at.is_(None),
    ).values(revoked_at=now))
