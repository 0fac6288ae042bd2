"""Single sign-on: the console's side of ``tracker.staff_sign_in`` (the organization's OpenID Connect provider).

    GET /console/oidc/login      303 to the provider's authorization endpoint; the attempt waits in a cookie
    GET /console/oidc/callback   the provider's answer: a session, or a page saying why not

The callback answers with a page that moves on by itself, not with a redirect: its request is a
navigation that began on the provider's site, and browsers send no SameSite=Strict cookie on any
request of such a chain, so a redirect's next request would arrive without the session cookie
just set. The page's own refresh is a navigation of this site, and carries it.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import BadRequest, BatonError, NotFound
from tracker.principals import Principal, start_sign_in
from tracker.staff_sign_in import IdentityProvider, provider_answer
from tracker.web.console._pages import console_router, error_page, page, safe_back
from tracker.web.console._session import (
    ATTEMPT_TTL,
    forget_attempt,
    recall_attempt,
    remember_attempt,
    start_session,
)
from tracker.web.deps import base_url, db_session, runtime

router = console_router()
log = logging.getLogger("baton.console")
CALLBACK = "/console/oidc/callback"


@router.get("/oidc/login")
async def sso_login(request: Request, next: str | None = Query(default=None, max_length=2000)) -> Response:
    """Send the browser to the organization's provider, remembering the attempt (state, nonce, PKCE verifier)."""
    provider = _provider(request)
    rt = runtime(request)
    landing = safe_back(next) or "/console/"
    # Back here after signing in would only start over; a very long page would not fit the cookie.
    if landing.startswith("/console/oidc/") or len(landing) > 1000:
        landing = "/console/"
    url, attempt = await provider.begin(redirect_uri=_callback_url(request), next=landing, now=rt.clock.now(),
                                        lasts=ATTEMPT_TTL)
    response = RedirectResponse(url, status_code=303)
    remember_attempt(response, request, attempt)
    return response


@router.get(CALLBACK.removeprefix("/console"), response_class=HTMLResponse)
async def sso_callback(
    request: Request,
    code: str | None = Query(default=None, max_length=2000),
    state: str | None = Query(default=None, max_length=500),
    error: str | None = Query(default=None, max_length=200),
    session: AsyncSession = Depends(db_session),  # nobody is signed in yet: no StaffCtx
) -> Response:
    """Finish the attempt: the ID token verified and a Baton role found, start a console session."""
    provider = _provider(request)
    rt = runtime(request)
    attempt = recall_attempt(request)
    try:
        # The state is checked first, even on an error answer: only this browser's attempt is answered.
        if attempt is None or not state or not hmac.compare_digest(state.encode(), attempt.state.encode()):
            raise BadRequest("This sign-in did not start in this browser, or took longer than "
                             f"{int(ATTEMPT_TTL.total_seconds() // 60)} minutes; start again.")
        identity = await provider.finish(code=provider_answer(code=code, error=error), attempt=attempt,
                                         redirect_uri=_callback_url(request), now=rt.clock.now())
    except BatonError as refusal:
        log.info("single sign-on refused", extra={"status": refusal.status, "reason": refusal.detail})
        response: Response = error_page(request, refusal)
        forget_attempt(response, request)
        return response
    now = rt.clock.now()
    token = await start_sign_in(session=session, name=identity.name, display_name=identity.display_name,
                                subject=identity.subject, role=identity.role, now=now,
                                expires_at=now + provider.session_length)
    await session.commit()  # the sign-in's one write, before the cookie that points at it goes out
    log.info("staff signed in through the identity provider", extra={"staff": identity.name, "role": identity.role})
    response = page(request, "signed_in.html", {"next": attempt.next, "display_name": identity.display_name})
    start_session(response, request, principal=Principal(kind="staff", name=identity.name, role=identity.role),
                  token=token, lasts=provider.session_length)
    forget_attempt(response, request)
    return response


def _provider(request: Request) -> IdentityProvider:
    provider = runtime(request).identity_provider
    if provider is None:
        raise NotFound("Single sign-on is not configured here; sign in with a staff token.")
    return provider


def _callback_url(request: Request) -> str:
    """Where the provider sends the browser back: registered with the provider as Baton's redirect URI."""
    return base_url(request, runtime(request).settings) + CALLBACK
