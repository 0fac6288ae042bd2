"""The staff web console (``/console``): the complaint department's screens, server-rendered.

Every page and action calls the same service functions as the JSON API (``tracker.cases``,
``tracker.complaints``, ``partners.service``, ``notifications.dispatcher``); this module only
reads forms, checks the console's rules, and renders. Sign-in, the session cookie and CSRF live
in ``console_session``; the charts' geometry in ``charts``.

Rules on top of the services':
- every POST carries the session's CSRF token (403 otherwise, and nothing changes);
- supervisors close cases, release parties and re-send dead-lettered webhooks; admins manage
  partners and keys. Agents get 403 pages for those, and do not see the buttons;
- actions answer with a redirect back (POST-redirect-GET) and a fixed confirmation message,
  except creating a key or partner, whose page shows a secret once and is never redirected to.

Errors from the services become HTML pages with the same status codes as the API's problems.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine
from pathlib import Path as FilePath
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.dispatcher import resend
from partners import service as partners
from partners.schemas import KeyIn, PartnerIn, PartnerOut
from tracker import cases, complaints
from tracker.casetypes import case_type
from kernel.errors import BatonError, NotFound, TooManyRequests, Unauthorized, Unprocessable
from tracker.principals import authenticate_staff
from tracker.schemas import CloseIn, EventIn, HandoffIn, PartyIn, PartyPatch
from tracker.verify import verify_case
from tracker.watchdog import NUDGE_INTERVAL
from tracker.web import charts
from tracker.web.console_session import (
    SESSION_COOKIE,
    SignInRequired,
    Staff,
    check_sign_in_csrf,
    end_session,
    remember_sign_in_form,
    sign_in_csrf,
    sign_in_form_id,
    signed_in,
    signed_in_form,
    start_session,
)
from tracker.web.deps import base_url, db_session, runtime
from tracker.invitations import list_invitations
from tracker.web.proxies import client_address

PAGE = 50
QUEUE_REFRESH_SECONDS = 30
SEARCH_PAGE = 25
TIMELINE_PAGE = 500

templates = Jinja2Templates(directory=str(FilePath(__file__).parent / "templates"))

# Fixed confirmations after an action (``?done=...``): nothing the request says is echoed back.
DONE = {
    "nudged": "Nudged: a webhook and an email to the partner's operations contact are on their way.",
    "noted": "Internal note added to the timeline.",
    "party-added": "Party added.",
    "released": "Party released: the watchdog no longer watches it.",
    "handed-off": "Handoff requested: the receiver must accept it within the window.",
    "closed": "Case closed: the customer is asked to confirm the resolution.",
    "rotated": "New status link issued; the old one no longer works.",
    "resent": "Delivery queued again with a fresh retry schedule.",
    "revoked": "Key revoked: requests signed with it are refused from now on.",
}


# ---------------------------------------------------------------- rendering


def _span(value: float | dt.timedelta | None) -> str:
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


templates.env.filters.update(span=_span, when=_when, iso=_iso, pct=_pct)


def _page(request: Request, name: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
    staff: Staff | None = getattr(request.state, "console_staff", None)
    done = request.query_params.get("done")
    return templates.TemplateResponse(
        request,
        f"console/{name}",
        {"staff": staff, "now": _now(request), "flash": DONE.get(done or ""), "here": _with(request), **context},
        status_code=status_code,
    )


def _error_page(request: Request, error: BatonError) -> HTMLResponse:
    response = _page(request, "error.html", {"error": error, "back": _referer(request)},
                     status_code=error.status)
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
                return _error_page(request, error)
            except (RequestValidationError, ValidationError) as error:
                return _error_page(request, _validation_error(list(error.errors())))

        return guarded


router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


def _safe_back(target: str | None, default: str | None = None) -> str | None:
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
    return _safe_back(urlunsplit(("", "", parts.path, parts.query, "")))


def _done(back: str | None, default: str, done: str) -> RedirectResponse:
    parts = urlsplit(_safe_back(back, default) or default)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "done"] + [("done", done)]
    return RedirectResponse(urlunsplit(("", "", parts.path, urlencode(query), "")), status_code=303)


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _now(request: Request) -> dt.datetime:
    return runtime(request).clock.now()


def _base(request: Request) -> str:
    return base_url(request, runtime(request).settings)


def _cursor(value: str | None) -> int:
    return int(value) if value else 0


# ---------------------------------------------------------------- sign-in


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = Query(default=None, max_length=2000)) -> Response:
    return _login_form(request, next=next)


def _login_form(request: Request, *, next: str | None, error: BatonError | None = None) -> Response:
    form_id, new = sign_in_form_id(request)
    response = _page(request, "login.html", {
        "csrf": sign_in_csrf(request, form_id), "next": _safe_back(next) or "", "error": error,
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
    session: AsyncSession = Depends(db_session),
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
    response = RedirectResponse(_safe_back(next, "/console/") or "/console/", status_code=303)
    start_session(response, request, principal=principal, token=token.strip())
    return response


@router.post("/logout")
async def logout(request: Request, staff: Staff = Depends(signed_in_form)) -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    end_session(response, request, staff)
    return response


# ---------------------------------------------------------------- the overdue queue


@router.get("/", response_class=HTMLResponse)
async def queue(
    request: Request,
    partner: str | None = Query(default=None, max_length=64),
    state: str | None = Query(default=None, pattern="^(late|escalated)?$"),
    cursor: str | None = Query(default=None, pattern="^[0-9]{1,9}$"),
    refresh: str | None = Query(default=None, pattern="^(on|off)$"),
    staff: Staff = Depends(signed_in),
    session: AsyncSession = Depends(db_session),
) -> Response:
    """Late and escalated parties, escalated first then most overdue; the page reloads every 30 s
    unless the user turned that off (``refresh=off``, kept by the filters and the pager)."""
    partner, state = _blank(partner), _blank(state)
    offset = _cursor(cursor)
    items = await complaints.overdue(session=session, partner=partner, state=state, offset=offset, limit=PAGE)
    return _page(request, "queue.html", {
        "section": "queue",
        "items": items.items,
        "partners": await partners.list_partners(session=session),
        "partner": partner,
        "state": state,
        "offset": offset,
        "next_url": _with(request, cursor=items.next_cursor) if items.next_cursor else None,
        "first_url": _with(request, cursor=None) if offset else None,
        "nudge_interval": NUDGE_INTERVAL,
        "refresh": 0 if refresh == "off" else QUEUE_REFRESH_SECONDS,
        "refresh_toggle_url": _with(request, refresh=None if refresh == "off" else "off"),
        "invitations": (await list_invitations(session=session, limit=PAGE)).items,
    })


def _with(request: Request, **changes: str | None) -> str:
    """This page's URL with some query parameters changed (None drops one)."""
    params = {k: v for k, v in request.query_params.items() if k not in changes and k != "done"}
    params.update({k: v for k, v in changes.items() if v is not None})
    return request.url.path + (f"?{urlencode(params)}" if params else "")


# ---------------------------------------------------------------- search


@router.get("/search", response_class=HTMLResponse)
async def search(
    request: Request,
    q: str = Query(default="", max_length=200),
    cursor: str | None = Query(default=None, max_length=200),
    staff: Staff = Depends(signed_in),
    session: AsyncSession = Depends(db_session),
) -> Response:
    """Cases by reference, external reference (WorldTracer file, bag tag), customer phone or email,
    or title; without a query, the newest cases."""
    found = await cases.list_cases(session=session, principal=staff.principal, base_url=_base(request),
                                   text=_blank(q), cursor=_blank(cursor), limit=SEARCH_PAGE)
    return _page(request, "search.html", {
        "section": "search",
        "q": q.strip(),
        "items": found.items,
        "next_url": _with(request, cursor=found.next_cursor) if found.next_cursor else None,
        "first_url": _with(request, cursor=None) if cursor else None,
    })


# ---------------------------------------------------------------- the case page


@router.get("/cases/{ref}", response_class=HTMLResponse)
async def case_page(
    request: Request,
    ref: str = Path(max_length=40),
    after: str | None = Query(default=None, max_length=200),
    staff: Staff = Depends(signed_in),
    session: AsyncSession = Depends(db_session),
) -> Response:
    """The case's whole story: customer, parties, timeline (with verification), what was sent."""
    principal = staff.principal
    row, _ = await cases.load_case(session=session, principal=principal, ref=ref)
    case = await cases.read_case(session=session, principal=principal, ref=ref,
                                 base_url=_base(request))
    events = await cases.list_events(session=session, principal=principal, ref=ref, cursor=_blank(after),
                                     limit=TIMELINE_PAGE)
    handoffs = await cases.list_handoffs(session=session, principal=principal, ref=ref)
    sent = await complaints.deliveries(session=session, case_id=row.id, limit=200)
    known = await partners.list_partners(session=session)
    ctype = await case_type(session=session, code=case.type)
    on_case = {p.partner for p in case.parties}
    return _page(request, "case.html", {
        "section": "search",
        "case": case,
        "events": [_event_view(e.model_dump()) for e in events.items],
        "more_events_url": _with(request, after=events.next_cursor) if events.next_cursor else None,
        "handoffs": handoffs.items,
        "verified": await verify_case(session=session, ref=case.ref),
        "webhooks": [d for d in sent.items if d.channel == "webhook"],
        "messages": [d for d in sent.items if d.channel != "webhook"],
        "names": {p.id: p.name for p in known},
        "addable": [p for p in known if p.id not in on_case],
        "terminal": [(code, ctype.label(code, "en")) for code, s in ctype.statuses.items() if s.get("terminal")],
        "nudge_interval": NUDGE_INTERVAL,
    })


EVENT_META = ("seq", "type", "actor", "visibility", "occurred_at", "received_at", "hash", "prev_hash", "signed",
              "keyid")


def _event_view(event: dict[str, Any]) -> dict[str, Any]:
    """An event for the timeline: its header, and its posted fields as (name, text) pairs."""
    fields = [(key.replace("_", " "), _plain_text(value)) for key, value in event.items()
              if key not in EVENT_META and value not in (None, "", [], {})]
    return {**{k: event.get(k) for k in EVENT_META}, "fields": fields}


def _plain_text(value: Any) -> str:
    """A posted value as one line of text: objects as "key: value", lists joined by semicolons."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_plain_text(item) for item in value)
    return str(value)


def _case_url(ref: str) -> str:
    return f"/console/cases/{ref}"


@router.post("/cases/{ref}/notes")
async def add_note(
    request: Request,
    ref: str = Path(max_length=40),
    note: str = Form(min_length=1, max_length=8000),
    staff: Staff = Depends(signed_in_form),
    session: AsyncSession = Depends(db_session),
) -> Response:
    """An internal note: on the timeline for staff only, never shown to partners or the customer."""
    await cases.post_update(session=session, principal=staff.principal, ref=ref,
                            payload=EventIn(internal_note=note, visibility="internal"), now=_now(request))
    await session.commit()
    return _done(None, _case_url(ref), "noted")


@router.post("/cases/{ref}/parties/{partner_id}/nudge")
async def nudge(
    request: Request,
    ref: str = Path(max_length=40),
    partner_id: str = Path(max_length=64),
    note: str = Form(default="", max_length=2000),
    back: str = Form(default="", max_length=2000),
    staff: Staff = Depends(signed_in_form),
    session: AsyncSession = Depends(db_session),
) -> Response:
    await cases.nudge_party(session=session, principal=staff.principal, ref=ref, partner_id=partner_id,
                            note=_blank(note), now=_now(request))
    await session.commit()
    return _done(back, _case_url(ref), "nudged")


@router.post("/cases/{ref}/parties")
async def add_party(
    request: Request,
    ref: str = Path(max_length=40),
    partner: str = Form(max_length=64),
    role: str = Form(default="party", max_length=40),
    responsible: str | None = Form(default=None, max_length=10),
    cadence: str = Form(default="", max_length=40),
    staff: Staff = Depends(signed_in_form),
    session: AsyncSession = Depends(db_session),
) -> Response:
    payload = PartyIn.model_validate({"partner": partner, "role": _blank(role) or "party",
                                      "responsible": responsible is not None, "cadence": _blank(cadence)})
    await cases.add_party(session=session, principal=staff.principal, ref=ref, payload=payload,
                          now=_now(request), base_url=_base(request), limits=request.app.state.runtime.trust)
    await session.commit()
    return _done(None, _case_url(ref), "party-added")


@router.post("/cases/{ref}/parties/{partner_id}/release")
async def release_party(
    request: Request,
    ref: str = Path(max_length=40),
    partner_id: str = Path(max_length=64),
    staff: Staff = Depends(signed_in_form),
    session: AsyncSession = Depends(db_session),
) -> Response:
    staff.principal.require_staff("supervisor")
    await cases.patch_party(session=session, principal=staff.principal, ref=ref, partner_id=partner_id,
                            payload=PartyPatch(released=True), now=_now(request))
    await session.commit()
    return _done(None, _case_url(ref), "released")


@router.post("/cases/{ref}/handoffs")
async def hand_off(
    request: Request,
    ref: str = Path(max_length=40),
    to: str = Form(max_length=64),
    from_: str = Form(default="", alias="from", max_length=64),
    note: str = Form(default="", max_length=2000),
    accept_within: str = Form(default="", max_length=40),
    staff: Staff = Depends(signed_in_form),
    session: AsyncSession = Depends(db_session),
) -> Response:
    payload = HandoffIn.model_validate({"to": to, "from": _blank(from_), "note": _blank(note),
                                        "accept_within": _blank(accept_within)})
    await cases.request_handoff(session=session, principal=staff.principal, ref=ref, payload=payload,
                                now=_now(request))
    await session.commit()
    return _done(None, _case_url(ref), "handed-off")


@router.post("/cases/{ref}/close")
async def close(
    request: Request,
    ref: str = Path(max_length=40),
    resolution: str = Form(min_length=1, max_length=2000),
    status: str = Form(default="", max_length=40),
    message: str = Form(default="", max_length=2000),
    staff: Staff = Depends(signed_in_form),
    session: AsyncSession = Depends(db_session),
) -> Response:
    staff.principal.require_staff("supervisor")
    payload = CloseIn(resolution=resolution, status=_blank(status), message=_blank(message))
    await cases.close_case(session=session, principal=staff.principal, ref=ref, payload=payload,
                           now=_now(request), base_url=_base(request))
    await session.commit()
    return _done(None, _case_url(ref), "closed")


@router.post("/cases/{ref}/status-link")
async def rotate_status_link(
    request: Request,
    ref: str = Path(max_length=40),
    staff: Staff = Depends(signed_in_form),
    session: AsyncSession = Depends(db_session),
) -> Response:
    await cases.rotate_status_link(session=session, principal=staff.principal, ref=ref,
                                   now=_now(request), base_url=_base(request))
    await session.commit()
    return _done(None, _case_url(ref), "rotated")


# ---------------------------------------------------------------- scorecards


WINDOWS = (7, 30, 90)


@router.get("/partners", response_class=HTMLResponse)
async def league(
    request: Request,
    days: int = Query(default=30, ge=1, le=366),
    staff: Staff = Depends(signed_in),
    session: AsyncSession = Depends(db_session),
) -> Response:
    """Every partner's scorecard side by side, best on-time rate first."""
    cards = await complaints.scorecards(session=session, partner_ids=None, days=days, now=_now(request))
    cards.sort(key=lambda c: (c.on_time_rate is None, -(c.on_time_rate or 0), c.escalated_episodes, c.late_episodes,
                              c.partner))
    return _page(request, "league.html", {"section": "partners", "cards": cards, "days": days, "windows": WINDOWS})


@router.get("/partners/{partner_id}", response_class=HTMLResponse)
async def scorecard(
    request: Request,
    partner_id: str = Path(max_length=64),
    days: int = Query(default=30, ge=1, le=366),
    staff: Staff = Depends(signed_in),
    session: AsyncSession = Depends(db_session),
) -> Response:
    now = runtime(request).clock.now()
    card = await complaints.scorecard(session=session, partner_id=partner_id, days=days, now=now)
    series = await complaints.activity(session=session, partner_id=partner_id, days=days, now=now)
    return _page(request, "scorecard.html", {
        "section": "partners", "card": card, "activity": series, "days": days, "windows": WINDOWS,
        "charts": _scorecard_charts(card, series),
    })


def _scorecard_charts(card: complaints.Scorecard, series: complaints.Activity) -> dict[str, Any]:
    """The scorecard's five charts (see ``charts``)."""
    buckets = series.buckets
    per = "day" if series.bucket_days == 1 else "week"
    names = [b.start.strftime("%d %b") for b in buckets]
    minutes = [card.handoff_acceptance.p50, card.handoff_acceptance.p90]
    verdicts = card.satisfaction
    return {
        "on_time": charts.meter(id="chart-on-time", title=f"On-time rate over {card.window_days} days",
                                share=card.on_time_rate),
        "episodes": charts.bar_chart(
            id="chart-episodes", title=f"Late and escalated episodes per {per}", categories=names,
            series=[charts.Series("late", "c-late", [b.late_episodes for b in buckets]),
                    charts.Series("escalated", "c-escalated", [b.escalated_episodes for b in buckets])],
        ),
        "updates": charts.bar_chart(
            id="chart-updates", title=f"Updates per {per}", categories=names,
            series=[charts.Series("updates", "c-updates", [b.updates for b in buckets])],
        ),
        "intervals": charts.bar_chart(
            id="chart-intervals", title="Time between consecutive updates on a case",
            categories=[b.label for b in series.update_intervals],
            series=[charts.Series("intervals", "c-updates", [b.count for b in series.update_intervals])],
        ),
        "handoffs": charts.bar_chart(
            id="chart-handoffs", title=f"Handoff acceptance time ({card.handoff_acceptance.count} accepted)",
            categories=["median", "90th percentile"],
            series=[charts.Series("acceptance", "c-handoff", [m / 60 if m is not None else None for m in minutes])],
            fmt=lambda v: _span(v * 60), integers=False,
        ),
        "satisfaction": charts.bar_chart(
            id="chart-satisfaction", title="Customer verdicts on closed cases",
            categories=["satisfied", "dissatisfied"],
            series=[charts.Series("cases", "c-good", [verdicts.get("satisfied", 0), verdicts.get("dissatisfied", 0)])],
        ),
    }


# ---------------------------------------------------------------- webhook deliveries


DELIVERY_STATES = ("pending", "sending", "delivered", "failed", "dead")


@router.get("/deliveries", response_class=HTMLResponse)
async def deliveries(
    request: Request,
    state: str | None = Query(default=None, pattern="^(pending|sending|delivered|failed|dead)?$"),
    partner: str | None = Query(default=None, max_length=64),
    cursor: str | None = Query(default=None, pattern="^[0-9]{1,18}$"),
    staff: Staff = Depends(signed_in),
    session: AsyncSession = Depends(db_session),
) -> Response:
    """Webhook deliveries, newest first; ``state=dead`` is the dead-letter queue."""
    state, partner = _blank(state), _blank(partner)
    found = await complaints.deliveries(session=session, channel="webhook", state=state, partner=partner,
                                        before=int(cursor) if cursor else None, limit=PAGE)
    return _page(request, "deliveries.html", {
        "section": "deliveries", "items": found.items, "state": state, "partner": partner, "states": DELIVERY_STATES,
        "partners": await partners.list_partners(session=session),
        "next_url": _with(request, cursor=found.next_cursor) if found.next_cursor else None,
        "first_url": _with(request, cursor=None) if cursor else None,
    })


@router.post("/deliveries/{delivery_id}/resend")
async def resend_delivery(
    request: Request,
    delivery_id: int = Path(ge=1, le=2**63 - 1),
    back: str = Form(default="", max_length=2000),
    staff: Staff = Depends(signed_in_form),
    session: AsyncSession = Depends(db_session),
) -> Response:
    staff.principal.require_staff("supervisor")
    if await resend(session=session, notification_id=delivery_id, now=_now(request)) is None:
        raise NotFound(f"No dead or failed delivery {delivery_id}.")
    await session.commit()
    return _done(back, "/console/deliveries?state=dead", "resent")


# ---------------------------------------------------------------- partners and keys (admin)


async def _admin_page(request: Request, session: AsyncSession, **context: Any) -> HTMLResponse:
    return _page(request, "admin_partners.html", {
        "section": "admin", "partners": await partners.list_partners(session=session), **context,
    }, status_code=201 if context.get("created") else 200)


@router.get("/admin/partners", response_class=HTMLResponse)
async def admin_partners(
    request: Request, staff: Staff = Depends(signed_in), session: AsyncSession = Depends(db_session)
) -> Response:
    staff.principal.require_staff("admin")
    return await _admin_page(request, session)


@router.post("/admin/partners", response_class=HTMLResponse)
async def admin_add_partner(
    request: Request,
    id: str = Form(max_length=63),
    name: str = Form(max_length=200),
    kind: str = Form(default="other", max_length=40),
    ops_email: str = Form(default="", max_length=320),
    ops_phone: str = Form(default="", max_length=30),
    webhook_url: str = Form(default="", max_length=2000),
    default_cadence: str = Form(default="PT6H", max_length=40),
    timezone: str = Form(default="UTC", max_length=64),
    staff: Staff = Depends(signed_in_form),
    session: AsyncSession = Depends(db_session),
) -> Response:
    """Register a partner; the generated webhook secret is shown on this page only."""
    staff.principal.require_staff("admin")
    payload = PartnerIn.model_validate({
        "id": id.strip(), "name": name.strip(), "kind": _blank(kind) or "other", "ops_email": _blank(ops_email),
        "ops_phone": _blank(ops_phone), "webhook_url": _blank(webhook_url),
        "default_cadence": _blank(default_cadence) or "PT6H", "timezone": _blank(timezone) or "UTC",
    })
    created: PartnerOut = await partners.register_partner(session=session, payload=payload,
                                                          now=_now(request))
    await session.commit()
    return await _admin_page(request, session, created={
        "what": f"Partner {created.id} registered.", "label": "Webhook secret", "secret": created.webhook_secret,
    })


@router.post("/admin/partners/{partner_id}/keys", response_class=HTMLResponse)
async def admin_add_key(
    request: Request,
    partner_id: str = Path(max_length=64),
    keyid: str = Form(max_length=200),
    alg: str = Form(max_length=20),
    public_key: str = Form(default="", max_length=4000),
    staff: Staff = Depends(signed_in_form),
    session: AsyncSession = Depends(db_session),
) -> Response:
    """Add a signing key; an HMAC secret is shown on this page only."""
    staff.principal.require_staff("admin")
    payload = KeyIn.model_validate({"keyid": keyid.strip(), "alg": alg, "public_key": _blank(public_key)})
    key = await partners.add_key(session=session, partner_id=partner_id, payload=payload,
                                 now=_now(request))
    await session.commit()
    return await _admin_page(request, session, created={
        "what": f"Key {key.keyid} ({key.alg}) added to {partner_id}.", "label": "HMAC secret (base64)",
        "secret": key.secret,
    })


@router.post("/admin/partners/{partner_id}/keys/{keyid}/revoke")
async def admin_revoke_key(
    request: Request,
    partner_id: str = Path(max_length=64),
    keyid: str = Path(max_length=200),
    staff: Staff = Depends(signed_in_form),
    session: AsyncSession = Depends(db_session),
) -> Response:
    staff.principal.require_staff("admin")
    await partners.revoke_key(session=session, partner_id=partner_id, keyid=keyid, now=_now(request))
    await session.commit()
    return _done(None, "/console/admin/partners", "revoked")

