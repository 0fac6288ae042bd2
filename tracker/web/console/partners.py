"""Partners: their scorecards and the league of them all; for admins, registering or inviting partners, and keys."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Depends, Form, Path, Query
from fastapi.responses import HTMLResponse, Response

from kernel.errors import Unprocessable
from partners import service as partners
from partners.schemas import KeyIn, KeyOut, PartnerIn, PartnerOut, PartnerPatch
from tracker import complaints, onboarding
from tracker.onboarding import InvitationCreated, InvitationIn
from tracker.parties import PartyState
from tracker.web import charts
from tracker.web.console._ctx import StaffCtx, staff, staff_form
from tracker.web.console._pages import blank, console_router, span

WINDOWS = (7, 30, 90)

router = console_router()


# ---------------------------------------------------------------- scorecards


# How the league table sorts: best first; a partner without the figure comes last.
LEAGUE_ORDER: dict[str, tuple[str, Callable[[complaints.Scorecard], tuple[Any, ...]]]] = {
    "on_time": ("on-time rate, best first", lambda c: (c.on_time_rate is None, -(c.on_time_rate or 0), c.escalated_episodes,
                                           c.late_episodes, c.partner)),
    "promises": ("promises kept, best first", lambda c: (c.next_update_promises.kept_rate is None,
                                             -(c.next_update_promises.kept_rate or 0), c.partner)),
    "handoffs": ("handoff acceptance, fastest first", lambda c: (c.handoff_acceptance.p50 is None,
                                                          c.handoff_acceptance.p50 or 0, c.partner)),
    "custody": ("hours holding custody, most first", lambda c: (-c.custody_hours, c.partner)),
}


@router.get("/partners", response_class=HTMLResponse)
async def league(
    days: int = Query(default=30, ge=1, le=366), sort: str = Query(default="on_time", pattern="^[a-z_]{1,20}$"),
    ctx: StaffCtx = Depends(staff),
) -> Response:
    """Every partner's scorecard side by side, sorted by the chosen figure (best on-time rate first by default)."""
    cards = await complaints.scorecards(session=ctx.session, partner_ids=None, days=days, now=ctx.now())
    sort = sort if sort in LEAGUE_ORDER else "on_time"
    cards.sort(key=LEAGUE_ORDER[sort][1])
    return ctx.page("league.html", {"section": "partners", "cards": cards, "days": days, "windows": WINDOWS,
                                    "sort": sort, "orders": {k: v[0] for k, v in LEAGUE_ORDER.items()}})


@router.get("/partners/{partner_id}", response_class=HTMLResponse)
async def scorecard(
    partner_id: str = Path(max_length=64),
    days: int = Query(default=30, ge=1, le=366),
    ctx: StaffCtx = Depends(staff),
) -> Response:
    now = ctx.now()
    card = await complaints.scorecard(session=ctx.session, partner_id=partner_id, days=days, now=now)
    series = await complaints.activity(session=ctx.session, partner_id=partner_id, days=days, now=now)
    return ctx.page("scorecard.html", {
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
            series=[charts.Series(PartyState.LATE.value, "c-late", [b.late_episodes for b in buckets]),
                    charts.Series(PartyState.ESCALATED.value, "c-escalated", [b.escalated_episodes for b in buckets])],
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
            fmt=lambda v: span(v * 60), integers=False,
        ),
        "satisfaction": charts.bar_chart(
            id="chart-satisfaction", title="Customer verdicts on closed cases",
            categories=["satisfied", "dissatisfied"],
            series=[charts.Series("cases", "c-good", [verdicts.get("satisfied", 0), verdicts.get("dissatisfied", 0)])],
        ),
    }


# ---------------------------------------------------------------- partners and keys (admin)


async def _admin_page(
    ctx: StaffCtx, *, created: dict[str, str] | None = None, invited: InvitationCreated | None = None
) -> HTMLResponse:
    """The partners and their keys; ``created`` shows a new secret, ``invited`` a new invitation link, once
    (201, and never redirected to)."""
    context: dict[str, Any] = {"section": "admin", "partners": await partners.list_partners(session=ctx.session),
                               "created": created, "invited": invited}
    return ctx.page("admin_partners.html", context, status_code=201 if created or invited else 200)


@router.get("/admin/partners", response_class=HTMLResponse)
async def admin_partners(ctx: StaffCtx = Depends(staff)) -> Response:
    ctx.principal.require_staff("admin")
    return await _admin_page(ctx)


@router.post("/admin/partners", response_class=HTMLResponse)
async def admin_add_partner(
    id: str = Form(max_length=63),
    name: str = Form(max_length=200),
    kind: str = Form(default="other", max_length=40),
    ops_email: str = Form(default="", max_length=320),
    ops_phone: str = Form(default="", max_length=30),
    webhook_url: str = Form(default="", max_length=2000),
    default_cadence: str = Form(default="PT6H", max_length=40),
    timezone: str = Form(default="UTC", max_length=64),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    """Register a partner; the generated webhook secret is shown on this page only."""
    ctx.principal.require_staff("admin")
    payload = PartnerIn.model_validate({
        "id": id.strip(), "name": name.strip(), "kind": blank(kind) or "other", "ops_email": blank(ops_email),
        "ops_phone": blank(ops_phone), "webhook_url": blank(webhook_url),
        "default_cadence": blank(default_cadence) or "PT6H", "timezone": blank(timezone) or "UTC",
    })

    async def show(created: PartnerOut) -> Response:
        return await _admin_page(ctx, created={
            "what": f"Partner {created.id} registered.", "label": "Webhook secret", "secret": created.webhook_secret,
        })

    return await ctx.write_and_show(
        lambda: partners.register_partner(session=ctx.session, payload=payload, now=ctx.now()), show=show
    )


@router.post("/admin/partner-invitations", response_class=HTMLResponse)
async def admin_invite_partner(
    id: str = Form(max_length=63),
    name: str = Form(max_length=200),
    kind: str = Form(default="other", max_length=40),
    ops_email: str = Form(default="", max_length=320),
    ops_phone: str = Form(default="", max_length=30),
    timezone: str = Form(default="UTC", max_length=64),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    """Invite a partner to set itself up (``tracker.onboarding``); the link is shown on this page only."""
    ctx.principal.require_staff("admin")
    payload = InvitationIn.model_validate({"partner": {
        "id": id.strip(), "name": name.strip(), "kind": blank(kind) or "other", "ops_email": blank(ops_email),
        "ops_phone": blank(ops_phone), "timezone": blank(timezone) or "UTC",
    }})

    async def show(invited: InvitationCreated) -> Response:
        return await _admin_page(ctx, invited=invited)

    return await ctx.write_and_show(
        lambda: onboarding.invite_partner(session=ctx.session, payload=payload, created_by=ctx.principal.actor,
                                          now=ctx.now(), base_url=ctx.base_url,
                                          allow_hosts=ctx.rt.settings.webhook_allow_hosts),
        show=show,
    )


@router.post("/admin/partners/{partner_id}/keys", response_class=HTMLResponse)
async def admin_add_key(
    partner_id: str = Path(max_length=64),
    keyid: str = Form(max_length=200),
    alg: str = Form(max_length=20),
    public_key: str = Form(default="", max_length=4000),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    """Add a signing key; an HMAC secret is shown on this page only."""
    ctx.principal.require_staff("admin")
    payload = KeyIn.model_validate({"keyid": keyid.strip(), "alg": alg, "public_key": blank(public_key)})

    async def show(key: KeyOut) -> Response:
        return await _admin_page(ctx, created={
            "what": f"Key {key.keyid} ({key.alg}) added to {partner_id}.", "label": "HMAC secret (base64)",
            "secret": key.secret,
        })

    return await ctx.write_and_show(
        lambda: partners.add_key(session=ctx.session, partner_id=partner_id, payload=payload, now=ctx.now()), show=show
    )


@router.post("/admin/partners/{partner_id}/contacts")
async def admin_partner_contacts(
    partner_id: str = Path(max_length=64),
    ops_email: str = Form(default="", max_length=320),
    ops_phone: str = Form(default="", max_length=30),
    duty_email: str = Form(default="", max_length=320),
    duty_phone: str = Form(default="", max_length=30),
    account_email: str = Form(default="", max_length=320),
    ladder: str = Form(default="", max_length=4000),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    """Set a partner's contact roster and escalation ladder (JSON; empty: the case type's)."""
    ctx.principal.require_staff("admin")
    try:
        levels = json.loads(ladder) if ladder.strip() else None
    except ValueError:
        raise Unprocessable("The ladder is not JSON: give {\"levels\": [...]}, or leave it empty.") from None
    payload = PartnerPatch.model_validate({
        "ops_email": blank(ops_email), "ops_phone": blank(ops_phone), "duty_email": blank(duty_email),
        "duty_phone": blank(duty_phone), "account_email": blank(account_email), "ladder": levels,
    })
    return await ctx.write(
        lambda: partners.update_partner(session=ctx.session, partner_id=partner_id, payload=payload),
        done="contacts", then="/console/admin/partners",
    )


@router.post("/admin/partners/{partner_id}/keys/{keyid}/revoke")
async def admin_revoke_key(
    partner_id: str = Path(max_length=64),
    keyid: str = Path(max_length=200),
    ctx: StaffCtx = Depends(staff_form),
) -> Response:
    ctx.principal.require_staff("admin")
    return await ctx.write(
        lambda: partners.revoke_key(session=ctx.session, partner_id=partner_id, keyid=keyid, now=ctx.now()),
        done="revoked", then="/console/admin/partners",
    )
