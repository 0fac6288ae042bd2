"""The rules every status update or note meets, whichever way it is written.

``checked_update`` refuses what the case cannot take and says what the update will write and
whether the customer hears of it. The general path (``tracker.updates``), the routine path and
group commit (``tracker.routine``) all call it, on fully loaded rows, before they change anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kernel.errors import Conflict, Forbidden, Unprocessable
from tracker import trust
from tracker.access import check_status
from tracker.casetypes import CaseTypeDef
from tracker.models import Case, Party
from tracker.principals import Principal
from tracker.schemas import EventIn

FUTURE_TOLERANCE = dt.timedelta(minutes=5)
MAX_PROMISE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Update:
    body: dict[str, Any]
    visibility: str
    occurred_at: dt.datetime
    promised: dt.datetime | None
    tells_customer: bool


def checked_update(
    *, case: Case, party: Party | None, ctype: CaseTypeDef, principal: Principal, payload: EventIn, now: dt.datetime
) -> Update:
    """Refuse an update the case cannot take; what it will write, and whether the customer hears of it."""
    if case.closed_at is not None:
        raise Conflict(f"Case {case.ref} is closed; updates are no longer accepted.")
    trust.check_may_write(party)
    if payload.status is not None:
        check_status(ctype, payload.status)
        trust.check_status_change(case=case, party=party, status=payload.status, ctype=ctype,
                                  staff=principal.is_staff)
    if payload.visibility == "internal" and not principal.is_staff:
        raise Forbidden("Only staff may post internal events.")
    occurred = payload.occurred_at or now
    if occurred > now + FUTURE_TOLERANCE:
        raise Unprocessable("occurred_at is in the future.")
    promised = payload.next_update_by
    if promised is not None and not (now < promised <= now + MAX_PROMISE):
        raise Unprocessable("next_update_by must be in the future and within 30 days.")
    visibility = payload.visibility or _default_visibility(ctype, payload)
    changed = payload.status is not None and payload.status != case.status
    status = payload.status or case.status
    tells = visibility == "public" and bool(payload.message or (changed and ctype.statuses[status].get("notify")))
    body = payload.model_dump(mode="json", exclude_none=True, exclude={"visibility", "occurred_at"})
    if principal.via:
        body["via"] = principal.via  # not key-signed: the timeline says how it came
    return Update(body=body, visibility=visibility, occurred_at=occurred, promised=promised, tells_customer=tells)


def apply_to_case(case: Case, payload: EventIn) -> None:
    """What an update changes on the case row: its status, and the expected arrival.

    ``eta`` is the latest promise; ``eta_first`` keeps the first one, which scorecards hold the
    party to (an ETA moved later is a promise not kept).
    """
    if payload.status is not None:
        case.status = payload.status
    if payload.eta is not None:
        case.eta = payload.eta
        if case.eta_first is None:
            case.eta_first = payload.eta


def _default_visibility(ctype: CaseTypeDef, payload: EventIn) -> str:
    if payload.message:
        return "public"
    if payload.status and ctype.statuses[payload.status].get("notify"):
        return "public"
    return "parties"
