"""``StaffCtx``: one signed-in console request, and the one way a console action writes.

The console's counterpart of ``tracker.web.deps.Ctx``. A route takes ``Depends(staff)`` to read
and ``Depends(staff_form)`` to act (the form's CSRF token is then already checked), and an action
is one call: ``ctx.write(lambda: service(...), done="noted", then=case_url(ref))`` runs the
service, commits once, and answers with the redirect whose ``?done=`` shows the confirmation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tracker.principals import Principal
from tracker.web.console._pages import page, redirect_done, with_query
from tracker.web.console._session import Staff, check_form_csrf, signed_in
from tracker.web.deps import Runtime, base_url, db_session, runtime

T = TypeVar("T")


class StaffCtx:
    """The signed-in staff member of one console request, with its session, clock and ways to answer."""

    def __init__(self, *, request: Request, session: AsyncSession, staff: Staff, rt: Runtime) -> None:
        self.request = request
        self.session = session
        self.staff = staff
        self.rt = rt

    @property
    def principal(self) -> Principal:
        return self.staff.principal

    def now(self) -> dt.datetime:
        return self.rt.clock.now()

    @property
    def base_url(self) -> str:
        return base_url(self.request, self.rt.settings)

    def page(self, name: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
        return page(self.request, name, context, status_code=status_code)

    def here(self, **changes: str | None) -> str:
        """This page's URL with some query parameters changed (None drops one)."""
        return with_query(self.request, **changes)

    async def write(
        self, produce: Callable[[], Awaitable[object]], *, done: str, then: str, back: str | None = None
    ) -> Response:
        """Run the service, commit, and redirect to ``back`` (when a console page) or ``then``, flashing ``done``."""
        await self._commit(produce)
        return redirect_done(back, then, done)

    async def write_and_show(
        self, produce: Callable[[], Awaitable[T]], *, show: Callable[[T], Awaitable[Response]]
    ) -> Response:
        """Run the service, commit, and answer with a page showing its result (a secret, shown this once)."""
        return await show(await self._commit(produce))

    async def _commit(self, produce: Callable[[], Awaitable[T]]) -> T:
        # The one commit of the console: services only flush, and a failure leaves nothing behind.
        result = await produce()
        await self.session.commit()
        return result


async def staff(request: Request, session: AsyncSession = Depends(db_session)) -> StaffCtx:
    """The signed-in staff member's context, or ``SignInRequired`` (a redirect to the sign-in page)."""
    return StaffCtx(request=request, session=session, staff=await signed_in(request, session), rt=runtime(request))


async def staff_form(ctx: StaffCtx = Depends(staff)) -> StaffCtx:
    """``staff``, for a form POST: its CSRF token must match the session's (403 before anything is read or written)."""
    await check_form_csrf(ctx.request, ctx.staff)
    return ctx
