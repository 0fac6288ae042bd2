"""The one-tap update page: ``/p/{token}`` (HTML, works without JavaScript), from a reminder's link.

A party chased by email or SMS opens it, picks a status it may set, writes a message for the
customer, and posts; or accepts or declines an invitation. What it can do and how it is marked is
``tracker.party_links``'s docstring. Each form posts and redirects (303) back to the page, which
then says what was recorded. Every failure is the same small page with the problem in words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import BatonError, TooManyRequests, Unprocessable
from tracker import membership, party_links, updates
from tracker.party_links import Opened
from tracker.parties import PartyState
from kernel.locales import LOCALES, STATUS_PAGE
from tracker.schemas import AcceptIn, EventIn
from tracker.web.deps import db_session, runtime, unknown_links_counted

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["PartyState"] = PartyState
# The page is in English (partners' staff read the console's language); it shares the status page's frame.
templates.env.globals["t"] = LOCALES.words("en", "UTC", context=STATUS_PAGE)
router = APIRouter(tags=["partners"])


async def _open(request: Request, session: AsyncSession, token: str, *, posting: bool = False) -> Opened:
    """The link under the limits: unknown tokens count against the address, posts against the link."""
    rt = runtime(request)
    limits, now = rt.limits, rt.limits.now()
    with unknown_links_counted(request):
        opened = await party_links.open_link(session=session, token=token, now=rt.clock.now(), for_update=posting)
    if posting:
        key = str(opened.link.id)
        limits.link_posts.check(key, now, detail="This link has posted many times in the last hour; wait a little.")
        limits.link_posts.hit(key, now)
        opened.link.last_used_at = rt.clock.now()
    return opened


def _problem(request: Request, error: BatonError) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, "links/message.html", {"title": error.title, "text": error.detail}, status_code=error.status,
    )
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


@router.get("/p/{token}", response_class=HTMLResponse, include_in_schema=False)
async def link_page(
    request: Request, token: str, posted: str | None = None, answered: str | None = None,
    session: AsyncSession = Depends(db_session),
) -> HTMLResponse:
    try:
        opened = await _open(request, session, token)
    except BatonError as error:
        return _problem(request, error)
    context: dict[str, Any] = {
        "o": opened, "case": opened.case, "party": opened.party, "token": token,
        "status_label": opened.ctype.label(opened.case.status, "en"), "statuses": opened.statuses(),
        "posted": posted == "1", "answered": answered if answered in ("accepted", "declined") else None,
    }
    return templates.TemplateResponse(request, "links/page.html", context)


@router.post("/p/{token}/updates", include_in_schema=False)
async def link_update(
    request: Request, token: str, status: str = Form(default="", max_length=40),
    message: str = Form(default="", max_length=2000), location: str = Form(default="", max_length=100),
    session: AsyncSession = Depends(db_session),
) -> Response:
    """Post the party's update: the general update path, as the party, marked ``via: "link"``."""
    try:
        opened = await _open(request, session, token, posting=True)
        try:
            payload = EventIn(status=status.strip() or None, message=message.strip() or None,
                              location=location.strip() or None)
        except ValidationError:
            raise Unprocessable("Choose a new status or write a message, then post.") from None
        await updates.post_general_update(session=session, principal=opened.principal, ref=opened.case.ref,
                                          payload=payload, now=runtime(request).clock.now())
        await session.commit()
    except BatonError as error:
        return _problem(request, error)
    return RedirectResponse(f"/p/{token}?posted=1", status_code=303)


@router.post("/p/{token}/invitation", include_in_schema=False)
async def link_invitation(
    request: Request, token: str, answer: str = Form(pattern="^(accept|decline)$"),
    note: str = Form(default="", max_length=2000), session: AsyncSession = Depends(db_session),
) -> Response:
    """Accept or decline the party's invitation."""
    try:
        opened = await _open(request, session, token, posting=True)
        await membership.answer_invitation(
            session=session, principal=opened.principal, ref=opened.case.ref, partner_id=opened.party.partner_id,
            accept=answer == "accept", payload=AcceptIn(note=note.strip() or None), now=runtime(request).clock.now(),
        )
        await session.commit()
    except BatonError as error:
        return _problem(request, error)
    if answer == "decline":
        # A released party's link opens nothing more: say so here rather than redirect to a dead page.
        return templates.TemplateResponse(request, "links/message.html", {
            "title": "Invitation declined",
            "text": f"You declined case {opened.case.ref}. The case owner has been told; nothing more is asked of you.",
        })
    return RedirectResponse(f"/p/{token}?answered=accepted", status_code=303)
