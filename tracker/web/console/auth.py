"""Signing in and out of the console (the cookie and CSRF machinery is in ``_session``)."""

from __future__ import annotations

from fastapi import Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import BatonError, TooManyRequests, Unauthorized
from tracker.principals import authenticate_staff, end_sign_in
from tracker.web.console._ctx import StaffCtx, staff_form
from tracker.web.console._pages import console_router, page, safe_back
from tracker.web.console._session import (
    check_sign_in_csrf,
    end_session,
    remember_sign_in_form,
    sign_in_csrf,
    sign_in_form_id,
    start_session,
)
from tracker.web.deps import db_session, runtime
from tracker.web.proxies import client_address

router = console_router()


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = Query(default=None, max_length=2000)) -> Response:
    return _login_form(request, next=next)


def _login_form(request: Request, *, next: str | None, error: BatonError | None = None) -> Response:
    form_id, new = sign_in_form_id(request)
    response = page(request, "login.html", {
        "csrf": sign_in_csrf(request, form_id), "next": safe_back(next) or "", "error": error,
        "sso": runtime(request).identity_provider is not None,
    }, status_code=error.status if error else 200)
    if new:
        remember_sign_in_form(response, request, form_id)
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    token: str = Form(default="", max_length=500),
    csrf: str = Form(default="", max_length=200),
    next: str = Form(default="", max_length=2000),
    session: AsyncSession = Depends(db_session),  # nobody is signed in yet: no StaffCtx, and nothing to commit
) -> Response:
    """Sign in with a staff token. Failures are counted per client address (``limits.sign_in``)."""
    check_sign_in_csrf(request, csrf)
    rt = runtime(request)
    limit, now, address = rt.limits.sign_in, rt.limits.now(), client_address(request)
    try:
        limit.check(address, now, detail="Too many failed sign-ins from your address; wait and try again.")
    except TooManyRequests as error:
        return _login_form(request, next=next, error=error)
    try:
        principal = await authenticate_staff(session=session, token=token.strip(), admin_token=rt.settings.admin_token)
    except Unauthorized:
        limit.hit(address, now)
        return _login_form(request, next=next, error=Unauthorized("That token is unknown or has been revoked."))
    response = RedirectResponse(safe_back(next, "/console/") or "/console/", status_code=303)
    start_session(response, request, principal=principal, token=token.strip())
    return response


@router.post("/logout")
async def logout(ctx: StaffCtx = Depends(staff_form)) -> Response:
    """Sign out: a session signed in through the identity provider is revoked for every replica, too."""

    async def signed_out(_: None) -> Response:
        response = RedirectResponse("/console/login", status_code=303)
        end_session(response, ctx.request, ctx.staff)
        return response

    return await ctx.write_and_show(
        lambda: end_sign_in(session=ctx.session, token_hash=ctx.staff.token_hash, now=ctx.now()), show=signed_out)
