"""One-tap update links: a party that is chased updates from a small page, with no key and no account.

    issued --72 hours pass--------> expired   (the page says the link is no longer valid)
           --the next reminder----> replaced  (only the newest link of a party works)

1. ``issue`` is called wherever Baton chases a party: late, escalated, nudged, invited. A party
   has one link row; a new reminder overwrites its hash and expiry, so an older email's link
   opens nothing.
2. A token is 32 random bytes, url-safe. Only its sha-256 is stored: the row is found by that
   hash (a lookup by a hash reveals nothing about other tokens), and the stored hash is compared
   again with ``hmac.compare_digest``.
3. The link may do what the party may do with its key, within one case: post a status (owner or
   responsible party only, as ``tracker.trust`` rules), a message for the customer, a location;
   accept or decline an invitation. The page (``tracker.web.links``) calls the same services
   as the signed API, with ``Opened.principal``.
4. What it writes is marked: actor ``partner:{id}`` and ``via: "link"`` in the body, no
   signature. ``baton verify`` counts such events apart and the console labels them "one-tap
   link, not key-signed", so nobody mistakes them for statements signed with the partner's key.
5. Limits (``tracker.ratelimit``): an unknown token counts against the client address as unknown
   status links do; a valid link posts at most ``link_posts`` times an hour.

The raw token exists only in the outgoing email or SMS (the outbox row keeps what was sent, as a
mail queue would). A closed or erased case's link opens nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import NotFound
from partners.models import Partner
from tracker.casetypes import CaseTypeDef, case_type
from tracker.models import Case, Party, PartyLink
from tracker.parties import PartyState
from tracker.principals import Principal

LINK_TTL = dt.timedelta(hours=72)
_MADE = "party_links.made"  # session.info key: the links this transaction added, by party id
VIA = "link"
REASONS = ("late", "escalated", "nudged", "invited")
_NOT_VALID = ("This update link is not valid any more: links last 72 hours and each reminder replaces the "
              "previous one. Use the link in the latest message from Baton.")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_shape_ok(token: str) -> bool:
    return 30 <= len(token) <= 64 and all(c.isalnum() or c in "-_" for c in token)


async def issue(
    *, session: AsyncSession, case: Case, party: Party, reason: str, now: dt.datetime, base_url: str | None
) -> str | None:
    """A new link for the party (replacing its previous one); its URL, or None when Baton has no address to give."""
    if not base_url:
        return None  # a bare script with no public address: chase without a link
    token = secrets.token_urlsafe(32)
    # Links made in this transaction and not flushed yet (a sweep can chase a party twice at once,
    # two ladder levels due together): kept on the session, so the sweep never flushes per party.
    made: dict[int, PartyLink] = session.info.setdefault(_MADE, {})
    link = made.get(party.id) or await session.scalar(select(PartyLink).where(PartyLink.party_id == party.id))
    if link is None:
        link = made[party.id] = PartyLink(case_id=case.id, party_id=party.id, partner_id=party.partner_id)
        session.add(link)
    link.token_hash = _hash(token)
    link.reason = reason
    link.created_at = now
    link.expires_at = now + LINK_TTL
    link.last_used_at = None
    return f"{base_url.rstrip('/')}/p/{token}"


@dataclass(frozen=True, slots=True)
class Opened:
    """A valid link: its case, party and partner, and what the page may offer."""

    link: PartyLink
    case: Case
    party: Party
    partner_name: str
    ctype: CaseTypeDef

    @property
    def principal(self) -> Principal:
        """The party itself, unsigned: what the link writes is marked ``via: "link"``."""
        return Principal(kind="partner", name=self.party.partner_id, partner_id=self.party.partner_id, via=VIA)

    @property
    def invited(self) -> bool:
        return self.party.state == PartyState.INVITED

    def statuses(self) -> list[tuple[str, str]]:
        """The statuses this party may set from the page: (code, label), in the case type's order."""
        if not (self.party.responsible or self.party.partner_id == self.case.owner_id):
            return []
        return [
            (code, self.ctype.label(code, "en"))
            for code, definition in self.ctype.statuses.items()
            if not definition.get("terminal") and code != self.ctype.deadline_status
        ]


async def open_link(*, session: AsyncSession, token: str, now: dt.datetime, for_update: bool = False) -> Opened:
    """The link's case and party; unknown, replaced, expired and closed-case links raise the same NotFound."""
    if not token_shape_ok(token):
        raise NotFound(_NOT_VALID)
    wanted = _hash(token)
    query = (
        select(PartyLink, Case, Party, Partner.name)
        .join(Case, Case.id == PartyLink.case_id)
        .join(Party, Party.id == PartyLink.party_id)
        .join(Partner, Partner.id == Party.partner_id)
        .where(PartyLink.token_hash == wanted)
    )
    if for_update:
        query = query.with_for_update(of=Case)
    row = (await session.execute(query)).first()
    if row is None or not hmac.compare_digest(row[0].token_hash, wanted):
        raise NotFound(_NOT_VALID)
    link, case, party, name = row
    if link.expires_at <= now or case.closed_at is not None or case.erased_at is not None \
            or party.state == PartyState.RELEASED:
        raise NotFound(_NOT_VALID)
    return Opened(link=link, case=case, party=party, partner_name=name,
                  ctype=await case_type(session=session, code=case.type))
