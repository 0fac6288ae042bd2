"""How the console answers: its templates and filters, the page frame, error pages, redirects and URLs.

Every console route is a ``ConsoleRoute``: a missing session becomes a redirect to the sign-in page,
and a service's error an HTML page with the status code the API's problem would have.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine
from pathlib import Path as FilePath
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from kernel.errors import BatonError, TooManyRequests, Unprocessable
from kernel.pagination import decode_cursor
from tracker.parties import PartyState
from tracker.web.console._session import SESSION_COOKIE, SignInRequired, Staff, end_session
from tracker.web.deps import runtime

templates = Jinja2Templates(directory=str(FilePath(__file__).parent.parent / "templates"))
templates.env.globals["PartyState"] = PartyState  # templates compare party states with the enum's members

# Fixed confirmations after an action (``?done=...``): nothing the request says is echoed back.
DONE = {
    "nudged": "Nudged: a webhook and an email to the partner's operations contact are on their way.",
    "noted": "Internal note added to the timeline.",
    "party-added": "Party added.",
    "party-released": "Party released: the watchdog no longer watches it.",
    "handed-off": "Handoff requested: the receiver must accept it within the window.",
    "closed": "Case closed: the customer is asked to confirm the resolution.",
    "rotated": "New status link issued; the old one no longer works.",
    "resent": "Delivery queued again with a fresh retry schedule.",
    "revoked": "Key revoked: requests signed with it are refused from now on.",
    "contacts": "Contacts and escalation ladder saved.",
    "attached": "File attached: its digest is on the timeline; images were re-encoded without their metadata.",
}


# ---------------------------------------------------------------- template filters


def span(value: float | dt.timedelta | None) -> str:
    """A duration as staff read it at a glance: "1 d 14 h", "3 h 5 min", "12 min", "40 s"."""
    if value is None:
        return "—"
    seconds = int(abs(value.total_seconds() if isinstance(value, dt.timedelta) else value))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{secs} s"


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _iso(value: dt.datetime | None) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if value else ""


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


templates.env.filters.update(span=span, when=_when, iso=_iso, pct=_pct)


# ---------------------------------------------------------------- pages


def page(request: Request, name: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
    """``console/<name>`` in the console's frame: who is signed in, the clock, the flash of ``?done=``."""
    staff: Staff | None = getattr(request.state, "console_staff", None)
    done = request.query_params.get("done")
    return templates.TemplateResponse(
        request,
        f"console/{name}",
        {"staff": staff, "now": runtime(request).clock.now(), "flash": DONE.get(done or ""),
         "here": with_query(request), **context},
        status_code=status_code,
    )


def error_page(request: Request, error: BatonError) -> HTMLResponse:
    response = page(request, "error.html", {"error": error, "back": _referer(request)}, status_code=error.status)
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _validation_error(errors: list[Any]) -> Unprocessable:
    parts = []
    for err in errors[:6]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}" if where
                     else str(err.get("msg", "invalid")))
    return Unprocessable("; ".join(parts) or "The form has invalid values.")


class ConsoleRoute(APIRoute):
    """Console routes answer in HTML: a redirect to sign in, or an error page, never problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                target = "/console/login" + (f"?{urlencode({'next': wanted})}" if request.method == "GET" else "")
                response: Response = RedirectResponse(target, status_code=303)
                if SESSION_COOKIE in request.cookies:
                    end_session(response, request, None)
                return response
            except BatonError as error:
                return error_page(request, error)
            except (RequestValidationError, ValidationError) as error:
                return error_page(request, _validation_error(list(error.errors())))

        return guarded


def console_router() -> APIRouter:
    """A router for one part of the console.

    The ``/console`` prefix is the part's own, not the package router's: FastAPI hands the access
    log the route as declared, and its path must be the whole template (``/console/cases/{ref}``).
    """
    return APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


# ---------------------------------------------------------------- URLs


def safe_back(target: str | None, default: str | None = None) -> str | None:
    """``target`` if it is a path of the console on this site (no open redirects), else ``default``."""
    if target:
        parts = urlsplit(target)
        if (not parts.scheme and not parts.netloc and parts.path.startswith("/console")
                and "\\" not in target and not parts.path.startswith("/console/login")):
            return urlunsplit(("", "", parts.path, parts.query, ""))
    return default


def _referer(request: Request) -> str | None:
    """Where the browser came from, when that was a console page of this site (the error page links back)."""
    parts = urlsplit(request.headers.get("referer", ""))
    if parts.netloc and parts.netloc != request.headers.get("host"):
        return None
    return safe_back(urlunsplit(("", "", parts.path, parts.query, "")))


def redirect_done(back: str | None, default: str, done: str) -> RedirectResponse:
    """POST-redirect-GET: back to ``back`` (when a console page) or ``default``, with ``?done=`` for the flash."""
    parts = urlsplit(safe_back(back, default) or default)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "done"] + [("done", done)]
    return RedirectResponse(urlunsplit(("", "", parts.path, urlencode(query), "")), status_code=303)


def with_query(request: Request, **changes: str | None) -> str:
    """This page's URL with some query parameters changed (None drops one)."""
    params = {k: v for k, v in request.query_params.items() if k not in changes and k != "done"}
    params.update({k: v for k, v in changes.items() if v is not None})
    return request.url.path + (f"?{urlencode(params)}" if params else "")


def blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def offset(cursor: str | None) -> int:
    """Where a page of an offset-ordered list starts (for "from number N"), from its cursor."""
    return decode_cursor(cursor) or 0
