"""Onboarding by invitation over HTTP (``tracker.onboarding`` holds the rules and the state).

- ``POST /v1/partner-invitations`` (admin): the link to send.
- ``/join/{token}``: the partner's pages, server-rendered forms that POST and redirect (303),
  usable without JavaScript; a secret Baton generates (an HMAC key's, a webhook's) is shown on
  the answering page once and never redirected to.
- ``/v1/join/{token}/...``: the same steps as JSON, for a partner that automates its setup.

The link's token is the only credential. Every lookup goes through ``Lookup``: a token that opens
no live invitation counts against the client's address in ``limits.bad_tokens`` (shared with
status links), and past 20 in a minute the address gets 429 instead of 404; a live link is never
refused by that limit. JSON writes run through ``Ctx.write`` with the link's digest as the
principal, so an ``Idempotency-Key`` retry of a step gets its first answer even after the link
it used was consumed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import BatonError, NotFound, TooManyRequests, Unprocessable
from notifications.transports import WebhookTransport
from tracker import onboarding
from tracker.admission import Admission
from tracker.models import PartnerInvitation
from tracker.onboarding import (
    InvitationCreated,
    InvitationIn,
    InvitationOut,
    InvitationState,
    JoinKeyIn,
    JoinKeyOut,
    SandboxOut,
    WebhookIn,
    WebhookOut,
    WebhookTestOut,
)
from tracker.principals import Principal
from tracker.web.api import IDEMPOTENCY, PROBLEMS
from tracker.web.deps import (Ctx, Runtime, base_url, caller, db_session, open_session, runtime,
                              unknown_links_counted)

templates = Jinja2Templates(directory=str(FilePath(__file__).parent / "templates"))
templates.env.globals["InvitationState"] = InvitationState
templates.env.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"
router = APIRouter(responses=PROBLEMS, tags=["onboarding"])  # the pages are left out of the schema
TEST_TIMEOUT = 5.0  # seconds per test event: somebody is waiting in front of the page

# Fixed confirmations after a step (``?done=...``): nothing the request says is echoed back.
DONE = {
    "key": "Key registered. This page's address is now your setup link: keep it (the emailed link no longer works).",
    "webhook": "Webhook saved. Send a test event to check that your endpoint verifies Baton's signatures.",
    "sandbox": "Sandbox case ready.",
}


class Lookup:
    """Find the invitation a link opens, counting the links that open none against the client's address."""

    def __init__(self, request: Request, session: AsyncSession) -> None:
        self.request = request
        self.session = session
        self.rt: Runtime = runtime(request)

    async def invitation(self, token: str, *, for_update: bool = False) -> PartnerInvitation:
        with unknown_links_counted(self.request):
            return await onboarding.find_invitation(session=self.session, token=token, now=self.rt.clock.now(),
                                                    for_update=for_update)


async def joining(request: Request, token: str, session: AsyncSession = Depends(db_session)) -> Ctx:
    """The holder of an invitation link; the link's digest scopes its Idempotency-Keys."""
    principal = Principal(kind="invitation", name=onboarding.link_digest(token))
    return Ctx(request=request, session=session, admission=Admission(principal=principal), rt=runtime(request))


# ---------------------------------------------------------------- JSON


@router.post("/v1/partner-invitations", status_code=201, response_model=InvitationCreated,
             openapi_extra=IDEMPOTENCY)
async def create_partner_invitation(payload: InvitationIn, ctx: Ctx = Depends(caller)) -> Response:
    """Invite a partner (admin): the single-use link to send, valid 7 days; also emailed to its ops contact."""
    ctx.principal.require_staff("admin")
    return await ctx.write(
        lambda: onboarding.invite_partner(session=ctx.session, payload=payload, created_by=ctx.principal.actor,
                                          now=ctx.now(), base_url=ctx.base_url,
                                          allow_hosts=ctx.rt.settings.webhook_allow_hosts),
        status_code=201,
    )


@router.get("/v1/join/{token}", response_model=InvitationOut)
async def read_join_invitation(
    request: Request, token: str, session: AsyncSession = Depends(db_session)
) -> InvitationOut:
    """The invitation a link opens: the partner, its state and expiry, and the steps done."""
    invitation = await Lookup(request, session).invitation(token)
    return await onboarding.read_invitation(session=session, invitation=invitation, now=runtime(request).clock.now(),
                                            base_url=base_url(request, runtime(request).settings))


@router.post("/v1/join/{token}/keys", status_code=201, response_model=JoinKeyOut, openapi_extra=IDEMPOTENCY)
async def register_join_key(payload: JoinKeyIn, token: str, ctx: Ctx = Depends(joining)) -> Response:
    """Register the first signing key: the partner is created, and the emailed link is swapped for a setup link."""
    return await ctx.write(_step(ctx, token, lambda invitation: onboarding.register_key(
        session=ctx.session, invitation=invitation, payload=payload, now=ctx.now(), base_url=ctx.base_url)),
        status_code=201)


@router.put("/v1/join/{token}/webhook", response_model=WebhookOut)
async def set_join_webhook(payload: WebhookIn, token: str, ctx: Ctx = Depends(joining)) -> Response:
    """Set the webhook URL and secret (setup link); a generated secret is returned once."""
    return await ctx.write(_step(ctx, token, lambda invitation: onboarding.set_webhook(
        session=ctx.session, invitation=invitation, payload=payload,
        allow_hosts=ctx.rt.settings.webhook_allow_hosts)))


@router.post("/v1/join/{token}/webhook-tests", response_model=WebhookTestOut)
async def send_join_webhook_test(request: Request, token: str) -> WebhookTestOut:
    """Send a test event now, signed, then wrongly signed: verified if the first is accepted and the second refused."""
    return await _webhook_test(request, token)


@router.post("/v1/join/{token}/sandbox", response_model=SandboxOut, openapi_extra=IDEMPOTENCY)
async def open_join_sandbox(token: str, ctx: Ctx = Depends(joining)) -> Response:
    """The partner's sandbox case to try the API on (opened once; asking again answers the same case)."""
    return await ctx.write(_step(ctx, token, lambda invitation: onboarding.open_sandbox(
        session=ctx.session, invitation=invitation, now=ctx.now(), base_url=ctx.base_url)))


@router.post("/v1/join/{token}/finish", response_model=InvitationOut, openapi_extra=IDEMPOTENCY)
async def finish_join(token: str, ctx: Ctx = Depends(joining)) -> Response:
    """End the onboarding: the setup link stops working."""
    return await ctx.write(_step(ctx, token, lambda invitation: onboarding.finish(
        session=ctx.session, invitation=invitation, now=ctx.now(), base_url=ctx.base_url)))


def _step(ctx: Ctx, token: str, service: Callable[[PartnerInvitation], Awaitable[BaseModel]]) -> Callable[
        [], Awaitable[BaseModel]]:
    """A step for ``Ctx.write``: the link is looked up inside it, after an Idempotency-Key replay had its chance."""

    async def produce() -> BaseModel:
        return await service(await Lookup(ctx.request, ctx.session).invitation(token, for_update=True))

    return produce


async def _webhook_test(request: Request, token: str) -> WebhookTestOut:
    """Read the target, send with no transaction open, then record the result (``tracker.onboarding``, 6)."""
    rt = runtime(request)
    async with open_session(request) as session:
        invitation = await Lookup(request, session).invitation(token)
        target = await onboarding.webhook_target(session=session, invitation=invitation, now=rt.clock.now())
    transport = WebhookTransport(timeout=TEST_TIMEOUT, allow_hosts=rt.settings.webhook_allow_hosts)
    try:
        result = await onboarding.send_webhook_test(target=target, send=transport.send, now=rt.clock.now())
    finally:
        await transport.close()
    async with open_session(request) as session:
        invitation = await Lookup(request, session).invitation(token, for_update=True)
        await onboarding.record_webhook_test(session=session, invitation=invitation, result=result)
        await session.commit()
    return result


# ---------------------------------------------------------------- the pages


def _problem_page(request: Request, error: BatonError, token: str | None = None) -> HTMLResponse:
    if isinstance(error, NotFound):
        title, text = "Page not found", onboarding.NOT_VALID
    else:
        title, text = ("Please wait" if isinstance(error, TooManyRequests) else error.title), error.detail
    back = f"/join/{token}" if token and not isinstance(error, NotFound) else None
    response = templates.TemplateResponse(request, "join/message.html", {"title": title, "text": text, "back": back},
                                          status_code=error.status)
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


async def _page(request: Request, session: AsyncSession, invitation: PartnerInvitation, token: str, *,
                status_code: int = 200, shown: dict[str, str] | None = None) -> HTMLResponse:
    """The join page for the link ``token``: the steps done, the next ones, and a secret shown once."""
    rt = runtime(request)
    base = base_url(request, rt.settings)
    view = await onboarding.read_invitation(session=session, invitation=invitation, now=rt.clock.now(), base_url=base)
    return templates.TemplateResponse(request, "join/page.html", {
        "v": view, "token": token, "base_url": base, "setup_url": f"{base}/join/{token}", "shown": shown,
        "flash": DONE.get(request.query_params.get("done") or ""),
        "key": view.steps.keys[0] if view.steps.keys else None,
    }, status_code=status_code)


def _form(model: type[BaseModel], fields: dict[str, Any]) -> Any:
    """A form's fields as the JSON step's body (blank fields left out), or 422 in plain words."""
    try:
        return model.model_validate({k: v.strip() for k, v in fields.items() if v and v.strip()})
    except ValidationError as invalid:
        first = invalid.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise Unprocessable(f"{where}: {message}" if where else message) from None


@router.get("/join/{token}", response_class=HTMLResponse, include_in_schema=False)
async def join_page(request: Request, token: str, session: AsyncSession = Depends(db_session)) -> HTMLResponse:
    try:
        invitation = await Lookup(request, session).invitation(token)
        return await _page(request, session, invitation, token)
    except BatonError as error:
        return _problem_page(request, error)


@router.post("/join/{token}/keys", response_class=HTMLResponse, include_in_schema=False)
async def join_page_keys(
    request: Request, token: str, alg: str = Form(default=""), public_key: str = Form(default=""),
    keyid: str = Form(default=""), session: AsyncSession = Depends(db_session),
) -> Response:
    """Register the key; an Ed25519 key redirects to the setup link, an HMAC key's secret is shown here once."""
    try:
        payload = _form(JoinKeyIn, {"alg": alg, "public_key": public_key if alg == "ed25519" else "", "keyid": keyid})
        invitation = await Lookup(request, session).invitation(token, for_update=True)
        joined = await onboarding.register_key(session=session, invitation=invitation, payload=payload,
                                               now=runtime(request).clock.now(),
                                               base_url=base_url(request, runtime(request).settings))
        await session.commit()
    except BatonError as error:
        return _problem_page(request, error, token)
    if joined.key.secret is None:
        return RedirectResponse(f"/join/{joined.setup_token}?done=key", status_code=303)
    return await _page(request, session, invitation, joined.setup_token, status_code=201, shown={
        "label": f"HMAC secret of key {joined.key.keyid} (base64)", "value": joined.key.secret,
        "what": "Key registered. Baton generated its secret: copy it now, it is shown this once. The address below "
                "is now your setup link (the emailed link no longer works).",
    })


@router.post("/join/{token}/webhook", response_class=HTMLResponse, include_in_schema=False)
async def join_page_webhook(
    request: Request, token: str, url: str = Form(default=""), secret: str = Form(default=""),
    session: AsyncSession = Depends(db_session),
) -> Response:
    try:
        payload = _form(WebhookIn, {"url": url, "secret": secret})
        invitation = await Lookup(request, session).invitation(token, for_update=True)
        saved = await onboarding.set_webhook(session=session, invitation=invitation, payload=payload,
                                             allow_hosts=runtime(request).settings.webhook_allow_hosts)
        await session.commit()
    except BatonError as error:
        return _problem_page(request, error, token)
    if saved.secret is None:
        return RedirectResponse(f"/join/{token}?done=webhook#webhook", status_code=303)
    return await _page(request, session, invitation, token, shown={
        "label": "Webhook secret", "value": saved.secret,
        "what": "Webhook saved. Baton generated its signing secret: copy it into your endpoint's configuration "
                "now, it is shown this once.",
    })


@router.post("/join/{token}/webhook-tests", include_in_schema=False)
async def join_page_webhook_test(request: Request, token: str) -> Response:
    try:
        await _webhook_test(request, token)
    except BatonError as error:
        return _problem_page(request, error, token)
    return RedirectResponse(f"/join/{token}#webhook-test", status_code=303)


@router.post("/join/{token}/sandbox", include_in_schema=False)
async def join_page_sandbox(request: Request, token: str, session: AsyncSession = Depends(db_session)) -> Response:
    rt = runtime(request)
    try:
        invitation = await Lookup(request, session).invitation(token, for_update=True)
        await onboarding.open_sandbox(session=session, invitation=invitation, now=rt.clock.now(),
                                      base_url=base_url(request, rt.settings))
        await session.commit()
    except BatonError as error:
        return _problem_page(request, error, token)
    return RedirectResponse(f"/join/{token}?done=sandbox#sandbox", status_code=303)


@router.post("/join/{token}/finish", response_class=HTMLResponse, include_in_schema=False)
async def join_page_finish(request: Request, token: str, session: AsyncSession = Depends(db_session)) -> Response:
    """Finish: the answer is a page of its own, since the setup link it came from no longer opens anything."""
    rt = runtime(request)
    try:
        invitation = await Lookup(request, session).invitation(token, for_update=True)
        view = await onboarding.finish(session=session, invitation=invitation, now=rt.clock.now(),
                                       base_url=base_url(request, rt.settings))
        await session.commit()
    except BatonError as error:
        return _problem_page(request, error, token)
    return templates.TemplateResponse(request, "join/finished.html", {"v": view})
