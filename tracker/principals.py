"""Who is calling: a staff member (bearer token) or a partner (signed request)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import Forbidden, Unauthorized
from tracker.models import StaffToken

ROLES = ("agent", "supervisor", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "staff" | "partner"
    name: str
    role: str | None = None
    partner_id: str | None = None
    signature: Any = field(default=None, compare=False)

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
    session.add(StaffToken(name=name, role=role, token_hash=hash_token(token), created_at=now))
    await session.flush()
    return token


async def authenticate_staff(*, session: AsyncSession, token: str, admin_token: str | None) -> Principal:
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(kind="staff", name="admin", role="admin")
    return await authenticate_staff_hash(session=session, token_hash=hash_token(token), admin_token=None)


async def authenticate_staff_hash(*, session: AsyncSession, token_hash: str, admin_token: str | None) -> Principal:
    """The staff member whose token hashes to ``token_hash``, if that token is still valid.

    The console's session cookie carries only the hash, and asks again on every request, so
    revoking a token (or unsetting BATON_ADMIN_TOKEN) ends the sessions signed in with it.
    """
    if admin_token and hmac.compare_digest(token_hash.encode(), hash_token(admin_token).encode()):
        return Principal(kind="staff", name="admin", role="admin")
    row = (
        await session.execute(
            select(StaffToken.name, StaffToken.role).where(
                StaffToken.token_hash == token_hash, StaffToken.revoked_at.is_(None)
            )
        )
    ).first()
    if row is None:
        raise Unauthorized("Unknown or revoked staff token.")
    return Principal(kind="staff", name=row.name, role=row.role)
