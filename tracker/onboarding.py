"""Onboarding by invitation: a new partner joins through a link, with no admin in the loop.

An invitation's life, moved only by this module (``InvitationState``)::

    open ──signing key registered──▶ joined ──Finish──▶ finished
      │                                │
      └──────── now ≥ expires_at ──────┴──▶ expired   (computed, never stored)

Decisions:

1. An admin invites with the body of ``POST /v1/partners``, validated as that route validates it
   (the schema, then the webhook URL against ``BATON_WEBHOOK_ALLOW_HOSTS``); an id that is already
   a partner is 409. The link is ``/join/{token}``, the token ``secrets.token_urlsafe(32)``, of
   which only the SHA-256 is stored; it expires 7 days later on the injected clock. Inviting the
   same id again retires an earlier open invitation (its link stops working): a lost email is
   replaced by inviting again, and two links for one id never both work.
2. With an ``ops_email`` the link is also emailed, through the outbox (``partner.invited``). The
   outbox keeps a copy of what it sent, link included, as for every email; the link is single
   use and short-lived, and the admin sees it once on screen too.
3. Single use: registering the signing key creates the partner (``register_partner``) and its key
   (``add_key``) in one transaction and consumes the emailed link: its hash is replaced by the
   hash of a new setup token. Only the browser or program that registered holds the setup link,
   which works for the remaining steps until the invitation expires or the partner presses
   Finish. A bad key (an unreadable PEM) is 422 and creates nothing.
4. Every link that opens no live invitation (unknown, used, finished, expired) gets one and the
   same 404; the web layer counts those against the client's address, as for status links.
   Lookups go by the token's SHA-256, then compare it in constant time.
5. The admin's ``webhook_url`` and ``webhook_secret`` are a proposal: the partner is registered
   without them, and its webhook step (prefilled with the proposed URL) sets both. So Baton never
   signs deliveries with a secret the partner has not seen. A secret left out is generated and
   shown once; setting the webhook again forgets the last test's result.
6. The webhook test is sent at once, from the request, not through the outbox (somebody is
   watching the page): the test event signed with the partner's secret, then the same event
   signed with a wrong secret. Verified means the first was answered 2xx and the second was
   refused with an HTTP error. Nothing is sent inside a transaction (SQLite's writer lock must
   not wait on another organization's server): the web layer reads the target, sends, records.
   A failure is shown as its class ("connection refused", "timeout"), never a 500. One test per
   invitation every ``TEST_INTERVAL`` (429 sooner): the link's holder chooses where Baton posts,
   and must not turn Baton into a sender of traffic at somebody else's server.
7. The sandbox case is opened by ``open_case`` like any case, by the staff principal
   ``onboarding``: a baggage case whose customer has no phone or email (nobody is messaged), the
   new partner its only party (owner, not responsible: the watchdog never chases it), marked
   ``sandbox`` and without a deadline, so the complaint department's figures leave it out. It is
   made once; asking again answers the same case.
8. Finish ends the setup link. Later keys are added with the signed API or by the admin.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import Conflict, NotFound, TooManyRequests, Unprocessable
from notifications.outbox import enqueue, new_message_id
from notifications.rendering import render_partner_email
from notifications.transports import Outgoing, Sent, TransportError
from partners import service as partners
from partners.models import Partner, PartnerKey
from partners.schemas import KeyIn, KeyOut, PartnerIn, PartnerOut, webhook_secret
from tracker.announce import stamp
from tracker.cases import open_case, status_url
from tracker.models import Case, PartnerInvitation
from tracker.principals import Principal
from tracker.schemas import CaseIn, CustomerIn, PartyIn

LIFETIME = dt.timedelta(days=7)
TEST_INTERVAL = dt.timedelta(seconds=5)
NOT_VALID = ("This invitation link is not valid: it is unknown, already used, finished or expired. "
             "Ask the person who invited you to Baton for a new one.")
# Who opens the sandbox case (``tracker.cases.open_case`` lets staff name any owner).
ONBOARDING = Principal(kind="staff", name="onboarding", role="admin")
SANDBOX_TITLE = "Sandbox case: try baton-partner here"
TEST_NOTE = ("A test event from Baton's onboarding. Verify its signature and answer 2xx; "
             "answer 401 to any request whose signature does not verify.")


class InvitationState(enum.StrEnum):
    OPEN = "open"  # sent; nothing registered yet
    JOINED = "joined"  # a signing key registered: the partner exists, the setup link works
    FINISHED = "finished"  # the partner pressed Finish: no link works any more
    EXPIRED = "expired"  # computed (now >= expires_at), never stored


LIVE = (InvitationState.OPEN, InvitationState.JOINED)


def state_of(invitation: PartnerInvitation, now: dt.datetime) -> InvitationState:
    """The invitation's state at ``now``: ``expired`` once its time is up, whatever it was."""
    if invitation.state != InvitationState.FINISHED and now >= invitation.expires_at:
        return InvitationState.EXPIRED
    return InvitationState(invitation.state)


# ---------------------------------------------------------------- bodies


class InvitationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partner: PartnerIn = Field(description="The body of POST /v1/partners; registered when the partner joins.")


class InvitationCreated(BaseModel):
    url: str = Field(description="The link to send to the partner: /join/{token}, single use.")
    expires_at: dt.datetime
    partner: str
    emailed: bool = Field(description="The link was also emailed to the partner's ops contact.")


class JoinKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alg: Literal["ed25519", "hmac-sha256"]
    public_key: str | None = Field(default=None, max_length=4000, description="PEM Ed25519 public key (ed25519 only).")
    keyid: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$",
                              description="Default: <partner>-1.")


class JoinKeyOut(BaseModel):
    partner: PartnerOut
    key: KeyOut = Field(description="An hmac-sha256 key's secret is in it, this once.")
    setup_url: str = Field(description="Works for the remaining steps until the invitation expires or Finish.")
    setup_token: str


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl
    secret: str | None = Field(default=None, description="Standard Webhooks whsec_... secret; generated when absent.")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return webhook_secret(value) if value is not None else value


class WebhookOut(BaseModel):
    url: str
    secret: str | None = Field(default=None, description="Returned once, when Baton generated it.")


class Attempt(BaseModel):
    status: int | None = Field(default=None, description="The HTTP status the endpoint answered.")
    error: str | None = Field(default=None, description="Why there was no answer: timeout, connection refused, ...")


class WebhookTestOut(BaseModel):
    url: str
    verified: bool = Field(description="The signed event was accepted (2xx) and the wrongly signed one refused.")
    signed: Attempt
    bad_signature: Attempt
    explanation: str
    tested_at: dt.datetime


class SandboxOut(BaseModel):
    ref: str
    status_url: str


class JoinSteps(BaseModel):
    keys: list[KeyOut] = Field(description="Registered signing keys (never their secrets).")
    webhook_url: str | None
    webhook_test: WebhookTestOut | None
    sandbox: SandboxOut | None


class InvitationOut(BaseModel):
    partner: str
    name: str
    state: InvitationState
    expires_at: dt.datetime
    joined_at: dt.datetime | None
    finished_at: dt.datetime | None
    proposed_webhook_url: str | None = Field(description="The URL the admin proposed, if any.")
    steps: JoinSteps


# ---------------------------------------------------------------- inviting and finding


def link_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _shape_ok(token: str) -> bool:
    return 20 <= len(token) <= 100 and all(c.isalnum() or c in "-_" for c in token)


async def invite_partner(
    *, session: AsyncSession, payload: InvitationIn, created_by: str, now: dt.datetime, base_url: str,
    allow_hosts: tuple[str, ...],
) -> InvitationCreated:
    """Invite a partner: the link to send (returned once), and an email to its ops contact if it has one."""
    body = payload.partner
    if body.webhook_url is not None:
        partners.check_url(url=str(body.webhook_url), allow_hosts=allow_hosts)
    if await session.get(Partner, body.id) is not None:
        raise Conflict(f"Partner {body.id!r} already exists.")
    await session.execute(
        update(PartnerInvitation)
        .where(PartnerInvitation.partner_id == body.id, PartnerInvitation.state == InvitationState.OPEN,
               PartnerInvitation.expires_at > now)
        .values(expires_at=now)
    )
    token = secrets.token_urlsafe(32)
    invitation = PartnerInvitation(
        partner_id=body.id, partner=body.model_dump(mode="json", exclude_unset=True), token_hash=link_digest(token),
        state=InvitationState.OPEN, created_by=created_by, created_at=now, expires_at=now + LIFETIME,
    )
    session.add(invitation)
    await session.flush()
    url = f"{base_url}/join/{token}"
    emailed = False
    if body.ops_email:
        subject, text, html = render_partner_email("partner.invited", {
            "partner_name": body.name, "partner_id": body.id, "url": url,
            "expires_at": invitation.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        })
        emailed = await enqueue(session=session, channel="email", audience="partner", kind="partner.invited",
                                recipient=body.ops_email, now=now, partner_id=body.id, subject=subject,
                                body_text=text, body_html=html)
    return InvitationCreated(url=url, expires_at=invitation.expires_at, partner=body.id, emailed=emailed)


async def find_invitation(
    *, session: AsyncSession, token: str, now: dt.datetime, for_update: bool = False
) -> PartnerInvitation:
    """The live invitation a link opens, else ``NotFound`` with one text whatever the reason."""
    if not _shape_ok(token):
        raise NotFound(NOT_VALID)
    digest = link_digest(token)
    query = select(PartnerInvitation).where(PartnerInvitation.token_hash == digest)
    if for_update:
        # Two requests through one link are serialized: the second sees the first's outcome
        # (a consumed link, a case already opened) instead of doing the step twice.
        query = query.with_for_update()
    invitation = await session.scalar(query)
    if (invitation is None or not hmac.compare_digest(invitation.token_hash.encode(), digest.encode())
            or state_of(invitation, now) not in LIVE):
        raise NotFound(NOT_VALID)
    return invitation


def _require_joined(invitation: PartnerInvitation) -> None:
    if invitation.state != InvitationState.JOINED:
        raise Conflict("Register your signing key first: the other steps need the partner it creates.")


async def _partner(session: AsyncSession, invitation: PartnerInvitation) -> Partner:
    partner = await session.get(Partner, invitation.partner_id)
    if partner is None:  # deleted behind the invitation's back: nothing sensible to set up
        raise NotFound(NOT_VALID)
    return partner


async def read_invitation(
    *, session: AsyncSession, invitation: PartnerInvitation, now: dt.datetime, base_url: str
) -> InvitationOut:
    """What the link's holder sees: the partner, the state, the expiry and the steps done so far."""
    keys: list[KeyOut] = []
    webhook_url = None
    name = str(invitation.partner.get("name", invitation.partner_id))
    if invitation.state != InvitationState.OPEN:
        partner = await session.get(Partner, invitation.partner_id)
        if partner is not None:
            name, webhook_url = partner.name, partner.webhook_url
            rows = await session.scalars(select(PartnerKey).where(PartnerKey.partner_id == partner.id)
                                         .order_by(PartnerKey.id))
            keys = [partners.key_out(k) for k in rows.all()]
    return InvitationOut(
        partner=invitation.partner_id,
        name=name,
        state=state_of(invitation, now),
        expires_at=invitation.expires_at,
        joined_at=invitation.joined_at,
        finished_at=invitation.finished_at,
        proposed_webhook_url=invitation.partner.get("webhook_url"),
        steps=JoinSteps(
            keys=keys,
            webhook_url=webhook_url,
            webhook_test=(WebhookTestOut.model_validate(invitation.webhook_result) if invitation.webhook_result
                          else None),
            sandbox=await _sandbox_of(session, invitation, base_url),
        ),
    )


# ---------------------------------------------------------------- the steps


async def register_key(
    *, session: AsyncSession, invitation: PartnerInvitation, payload: JoinKeyIn, now: dt.datetime, base_url: str
) -> JoinKeyOut:
    """Create the partner and its first key, and swap the emailed link for a setup link (returned once)."""
    if invitation.state == InvitationState.JOINED:
        raise Conflict("A key is already registered through this invitation; Baton's admin adds more "
                       f"(POST /v1/partners/{invitation.partner_id}/keys).")
    proposal = {k: v for k, v in invitation.partner.items() if k not in ("webhook_url", "webhook_secret")}
    try:
        body = PartnerIn.model_validate(proposal)
        key = KeyIn(keyid=payload.keyid or f"{invitation.partner_id}-1", alg=payload.alg,
                    public_key=payload.public_key)
    except ValidationError as invalid:
        raise Unprocessable(str(invalid.errors()[0].get("msg", "invalid"))) from None
    await partners.register_partner(session=session, payload=body, now=now)
    added = await partners.add_key(session=session, partner_id=body.id, payload=key, now=now)
    setup_token = secrets.token_urlsafe(32)
    invitation.token_hash = link_digest(setup_token)
    invitation.state = InvitationState.JOINED
    invitation.joined_at = now
    await session.flush()
    return JoinKeyOut(partner=await partners.get_partner(session=session, partner_id=body.id), key=added,
                      setup_url=f"{base_url}/join/{setup_token}", setup_token=setup_token)


async def set_webhook(
    *, session: AsyncSession, invitation: PartnerInvitation, payload: WebhookIn, allow_hosts: tuple[str, ...]
) -> WebhookOut:
    """Set the partner's webhook URL and secret (a generated secret is returned once)."""
    _require_joined(invitation)
    url = str(payload.url)
    partners.check_url(url=url, allow_hosts=allow_hosts)
    partner = await _partner(session, invitation)
    generated = None if payload.secret else partners.new_webhook_secret()
    partner.webhook_url = url
    partner.webhook_secret = payload.secret or generated
    invitation.webhook_result = None  # a test of the old URL or secret says nothing of the new one
    invitation.webhook_tested_at = None
    await session.flush()
    return WebhookOut(url=url, secret=generated)


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where the test goes, read before sending so that no transaction waits on the partner's server."""

    partner_id: str
    url: str
    secret: str


async def webhook_target(*, session: AsyncSession, invitation: PartnerInvitation, now: dt.datetime) -> WebhookTarget:
    """The partner's webhook URL and secret, or 409 while it has none (429 right after another test)."""
    _require_joined(invitation)
    if invitation.webhook_tested_at is not None and now < invitation.webhook_tested_at + TEST_INTERVAL:
        wait = invitation.webhook_tested_at + TEST_INTERVAL - now
        raise TooManyRequests("Wait a few seconds before sending another test.",
                              retry_after=max(1, math.ceil(wait.total_seconds())))
    partner = await _partner(session, invitation)
    if not partner.webhook_url or not partner.webhook_secret:
        raise Conflict("Set your webhook URL first.")
    return WebhookTarget(partner_id=partner.id, url=partner.webhook_url, secret=partner.webhook_secret)


Send = Callable[[Outgoing], Awaitable[Sent]]


async def send_webhook_test(*, target: WebhookTarget, send: Send, now: dt.datetime) -> WebhookTestOut:
    """Send the test event signed with the partner's secret, then with a wrong one, and judge the answers."""
    event = {"type": "baton.test", "timestamp": stamp(now), "data": {"partner": target.partner_id, "note": TEST_NOTE}}
    signed = await _attempt(send, target, event, secret=target.secret)
    # Without an answer to the signed event there is nothing to compare the wrongly signed one with.
    bad = (await _attempt(send, target, event, secret=partners.new_webhook_secret())
           if signed.status is not None else Attempt(error="not sent"))
    verified = _ok(signed) and bad.status is not None and not _ok(bad)
    return WebhookTestOut(url=target.url, verified=verified, signed=signed, bad_signature=bad,
                          explanation=_explain(signed, bad), tested_at=now)


async def _attempt(send: Send, target: WebhookTarget, event: dict[str, Any], *, secret: str) -> Attempt:
    # Each attempt has its own webhook-id, so a receiver that drops duplicates still judges both.
    message = Outgoing(id=0, channel="webhook", kind="baton.test", recipient=target.url,
                       message_id=new_message_id(), subject=None, body_text=None, body_html=None, payload=event,
                       secret=secret)
    try:
        sent = await send(message)
    except TransportError as failure:
        return Attempt(status=failure.code) if isinstance(failure.code, int) else Attempt(error=str(failure))
    return Attempt(status=sent.status)


def _ok(attempt: Attempt) -> bool:
    return attempt.status is not None and 200 <= attempt.status < 300


def _explain(signed: Attempt, bad: Attempt) -> str:
    """The test's outcome in words, with what to do next."""
    if signed.status is None:
        why = {
            "connection refused": "nothing listens at that address and port",
            "timeout": "it did not answer within 5 seconds",
            "tls error": "its TLS certificate was not accepted (it must be valid for the URL's host name)",
            "unknown host": "its host name does not resolve",
        }.get(signed.error or "", "")
        return (f"We could not deliver the signed test event ({signed.error}"
                + (f": {why}" if why else "") + "). Check that the URL is right and reachable from the internet.")
    if not _ok(signed):
        hint = ("Check that it verifies with the secret set here, and that its clock is right (a timestamp more "
                "than five minutes off is refused)." if signed.status in (401, 403)
                else "Check the URL's path." if signed.status in (404, 405)
                else "Your server failed while handling it: look at its logs." if signed.status >= 500
                else "It should answer 2xx to an event it accepts.")
        return f"Your endpoint refused the signed test event (HTTP {signed.status}). {hint}"
    if bad.status is None:
        return (f"Your endpoint accepted the signed test event (HTTP {signed.status}), but the one with a wrong "
                f"signature got no answer ({bad.error}), so we cannot tell whether it checks signatures. Answer 401 "
                "when verification fails, then send the test again.")
    if _ok(bad):
        return (f"Your endpoint accepted the signed test event (HTTP {signed.status}), but it also accepted one "
                f"with a wrong signature (HTTP {bad.status}): it does not check signatures, so anybody who knows "
                "its URL could send it events. Verify every request as shown below and answer 401 when "
                "verification fails.")
    return (f"Your endpoint accepted the signed test event (HTTP {signed.status}) and refused one with a wrong "
            f"signature (HTTP {bad.status}): it verifies Baton's signatures.")


async def record_webhook_test(
    *, session: AsyncSession, invitation: PartnerInvitation, result: WebhookTestOut
) -> WebhookTestOut:
    """Keep the test's result on the invitation (the page shows the latest)."""
    _require_joined(invitation)
    invitation.webhook_result = result.model_dump(mode="json")
    invitation.webhook_tested_at = result.tested_at
    await session.flush()
    return result


async def open_sandbox(
    *, session: AsyncSession, invitation: PartnerInvitation, now: dt.datetime, base_url: str
) -> SandboxOut:
    """The partner's sandbox case, opened the first time it is asked for."""
    _require_joined(invitation)
    existing = await _sandbox_of(session, invitation, base_url)
    if existing is not None:
        return existing
    partner = await _partner(session, invitation)
    opened = await open_case(
        session=session, principal=ONBOARDING, now=now, base_url=base_url,
        payload=CaseIn(type="baggage", title=SANDBOX_TITLE, owner=partner.id,
                       customer=CustomerIn(name="Sandbox customer", timezone=partner.timezone),
                       parties=[PartyIn(partner=partner.id, role="owner", responsible=False)]),
    )
    case = await session.scalar(select(Case).where(Case.ref == opened.ref))
    assert case is not None  # just opened in this transaction
    case.sandbox = True
    case.deadline_at = None  # no deadline status is ever set on it: nobody is waiting for this bag
    invitation.sandbox_case_id = case.id
    await session.flush()
    return SandboxOut(ref=case.ref, status_url=status_url(base_url, case))


async def _sandbox_of(session: AsyncSession, invitation: PartnerInvitation, base_url: str) -> SandboxOut | None:
    if invitation.sandbox_case_id is None:
        return None
    case = await session.get(Case, invitation.sandbox_case_id)
    return SandboxOut(ref=case.ref, status_url=status_url(base_url, case)) if case is not None else None


async def finish(
    *, session: AsyncSession, invitation: PartnerInvitation, now: dt.datetime, base_url: str
) -> InvitationOut:
    """End the onboarding: the setup link stops working."""
    _require_joined(invitation)
    invitation.state = InvitationState.FINISHED
    invitation.finished_at = now
    await session.flush()
    return await read_invitation(session=session, invitation=invitation, now=now, base_url=base_url)
