"""Bag scans: the updates partners already produce, turned into timeline events at no cost to them.

``POST /v1/scans`` takes JSON, CSV or IATA Type B bag messages (``tracker.scan_input`` reads
them). Then, in one transaction:

1. Each scan gets a fingerprint (partner, tag, time, point, station): one already kept, or twice
   in the body, counts as a duplicate and is dropped.
2. The new scans are kept (``bag_scans``), and their tags looked up among open cases'
   ``bag_tag`` references, all at once.
3. Per matched case, locked in id order, in the scans' time order: a ``scan`` event by the
   scanning partner. For a party on the case it counts as its update (back on track, next update
   due a cadence later); a partner not on the case is invited onto it as a ``handler`` (not watched,
   not named to the customer, until it accepts). A ``delivery`` scan by the case's courier marks the
   item delivered; a scan by the receiver of a pending handoff accepts it.
4. Unmatched scans stay 30 days (``UNMATCHED_DAYS``); ``match_waiting`` turns them into events when
   a case with their tag opens, and housekeeping forgets them after that.

The signed request is kept with each event by its Content-Digest only (like an upload): the
batch's body would repeat in every event it touches.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import Unprocessable, UnsupportedMediaType
from partners.models import Partner
from tracker import announce, handoffs, rights
from tracker.casetypes import case_type
from tracker.membership import announce_invitation, new_party
from tracker.models import BagScan, Case, ExternalRef, Handoff, Party
from tracker.parties import PartyState
from tracker.principals import Principal
from tracker.scan_input import Parsed, Scan, parse_scans
from tracker.schemas import PartyIn
from tracker.timeline import append_event
from tracker.updates import record_update

UNMATCHED_DAYS = 30
_CHUNK = 500  # values per IN (...) list: well under SQLite's limit


class ScanError(BaseModel):
    line: int
    detail: str


class ScansOut(BaseModel):
    accepted: int
    matched: int
    unmatched: int
    duplicates: int
    errors: list[ScanError]


def fingerprint(partner_id: str, scan: Scan) -> str:
    key = "|".join((partner_id, scan.bag_tag, scan.at.astimezone(dt.UTC).isoformat(), scan.point,
                    scan.station or ""))
    return hashlib.sha256(key.encode()).hexdigest()


CONTENT_TYPES = ("application/json", "text/csv", "text/plain")


def read(body: bytes, content_type: str, *, now: dt.datetime) -> Parsed:
    """The scans of a body (415 for another type; 422 for a body that is none of them as a whole)."""
    if content_type not in CONTENT_TYPES:
        raise UnsupportedMediaType("Send scans as application/json, text/csv or text/plain (IATA bag messages).")
    try:
        return parse_scans(body, content_type, received_at=now)
    except ValueError as bad:
        raise Unprocessable(str(bad)) from None


async def receive(
    *, session: AsyncSession, principal: Principal, parsed: Parsed, now: dt.datetime, base_url: str | None = None,
) -> ScansOut:
    """Steps 1-3 for one request's scans."""
    assert principal.partner_id is not None
    partner_id = principal.partner_id
    fresh: dict[str, Scan] = {}
    for scan in parsed.scans:
        fresh.setdefault(fingerprint(partner_id, scan), scan)
    duplicates = len(parsed.scans) - len(fresh)
    known: set[str] = set()
    prints = list(fresh)
    for start in range(0, len(prints), _CHUNK):
        known |= set((await session.scalars(
            select(BagScan.fingerprint).where(BagScan.fingerprint.in_(prints[start:start + _CHUNK])))).all())
    for key in known:
        fresh.pop(key, None)
    duplicates += len(known)
    if fresh:
        await session.execute(insert(BagScan), [
            {"partner_id": partner_id, "fingerprint": key, "bag_tag": s.bag_tag, "at": s.at, "station": s.station,
             "point": s.point, "flight": s.flight, "note": s.note, "received_at": now}
            for key, s in fresh.items()
        ])
    tags = sorted({s.bag_tag for s in fresh.values()})
    cases_by_tag = await _open_cases_by_tag(session, tags)
    matched = await _match(session, principal, list(fresh.items()), cases_by_tag, now, base_url)
    return ScansOut(accepted=len(fresh), matched=matched, unmatched=len(fresh) - matched, duplicates=duplicates,
                    errors=[ScanError(line=e.line, detail=e.detail) for e in parsed.errors])


async def _open_cases_by_tag(session: AsyncSession, tags: Sequence[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = defaultdict(list)
    for start in range(0, len(tags), _CHUNK):
        rows = await session.execute(
            select(ExternalRef.value, ExternalRef.case_id).join(Case, Case.id == ExternalRef.case_id)
            .where(ExternalRef.kind == "bag_tag", ExternalRef.value.in_(tags[start:start + _CHUNK]),
                   Case.closed_at.is_(None), Case.erased_at.is_(None))
        )
        for tag, case_id in rows.all():
            found[tag].append(case_id)
    return found


async def _match(session: AsyncSession, principal: Principal, scans: list[tuple[str, Scan]],
                 cases_by_tag: dict[str, list[int]], now: dt.datetime, base_url: str | None) -> int:
    """Step 3: events on the matched cases, each case locked once, in id order."""
    by_case: dict[int, list[tuple[str, Scan]]] = defaultdict(list)
    for key, scan in scans:
        for case_id in cases_by_tag.get(scan.bag_tag, ()):
            by_case[case_id].append((key, scan))
    matched_keys: set[str] = set()
    for case_id in sorted(by_case):
        case = await session.scalar(select(Case).where(Case.id == case_id).with_for_update())
        if case is None:
            continue
        for key, scan in sorted(by_case[case_id], key=lambda pair: pair[1].at):
            await record_scan(session=session, case=case, partner_id=principal.partner_id or "", scan=scan,
                              principal=principal, now=now, base_url=base_url)
            matched_keys.add(key)
        await session.execute(BagScan.__table__.update()
                              .where(BagScan.fingerprint.in_([k for k, _ in by_case[case_id]]))
                              .values(case_id=case_id, matched_at=now))
    return len(matched_keys)


async def record_scan(*, session: AsyncSession, case: Case, partner_id: str, scan: Scan, principal: Principal | None,
                      now: dt.datetime, base_url: str | None = None) -> None:
    """One scan on one case whose row the caller holds locked (step 3)."""
    party = await session.scalar(select(Party).where(Party.case_id == case.id, Party.partner_id == partner_id))
    if party is None:
        party = await _invite(session, case, partner_id, principal, now, base_url)
    body: dict[str, Any] = {"bag_tag": scan.bag_tag, "point": scan.point, "at": announce.stamp(scan.at)}
    for name in ("station", "flight", "note"):
        if getattr(scan, name):
            body[name] = getattr(scan, name)
    signature = None
    if principal is not None and principal.signature is not None:
        signature = {**principal.signature, "body": None}  # the batch's digest, not its body
    append_event(session=session, case=case, type="scan", actor=f"partner:{partner_id}", partner_id=partner_id,
                 visibility="parties", body=body, now=now, occurred_at=min(scan.at, now), signature=signature)
    if party.state not in (PartyState.INVITED, PartyState.RELEASED):
        await record_update(session=session, case=case, party=party, now=now, promised=None)
        await _handoff_received(session, case, party, principal, now)
        if scan.point == "delivery" and party.role == "courier" and case.delivered_at is None:
            await _delivered(session, case, now)


async def _invite(session: AsyncSession, case: Case, partner_id: str, principal: Principal | None,
                  now: dt.datetime, base_url: str | None) -> Party:
    """A partner not on the case scanned its bag: it is invited as a handler, and the owner sees it."""
    partner = await session.get(Partner, partner_id)
    assert partner is not None
    ctype = await case_type(session=session, code=case.type)
    party = await new_party(session, case, PartyIn(partner=partner_id, role="handler"), partner, ctype, now,
                            invited=True)
    session.add(party)
    append_event(session=session, case=case, type="party.added", actor="system", visibility="parties", now=now,
                 partner_id=partner_id,
                 body={"partner": partner_id, "role": "handler", "responsible": False, "state": party.state,
                       "reason": "scanned the bag"})
    await announce_invitation(session=session, case=case, party=party, partner=partner,
                              invited_by=principal or Principal(kind="staff", name="scan", role="agent"), now=now,
                              base_url=base_url)
    await session.flush()
    return party


async def _handoff_received(session: AsyncSession, case: Case, party: Party, principal: Principal | None,
                            now: dt.datetime) -> None:
    """The receiver of a pending handoff scanned the bag: it has it, so the handoff is accepted."""
    pending = await session.scalar(select(Handoff).where(
        Handoff.case_id == case.id, Handoff.to_partner_id == party.partner_id, Handoff.state == "requested"))
    if pending is not None and principal is not None:
        await handoffs.complete(session=session, case=case, handoff=pending, receiver=party, principal=principal,
                                note="by scan", now=now)


async def _delivered(session: AsyncSession, case: Case, now: dt.datetime) -> None:
    ctype = await case_type(session=session, code=case.type)
    case.delivered_at = now
    if "delivered" in ctype.statuses:
        case.status = "delivered"
    await rights.refresh(session=session, case=case, now=now)


async def match_waiting(*, session: AsyncSession, case: Case, now: dt.datetime, base_url: str | None = None) -> int:
    """Step 4: a case just opened takes the scans of its tag kept from the last 30 days."""
    tags = [v for k, v in (case.external_refs or {}).items() if k.startswith("bag_tag") and v]
    if not tags:
        return 0
    rows = (await session.scalars(select(BagScan).where(
        BagScan.bag_tag.in_(["".join(t.split()) for t in tags]), BagScan.case_id.is_(None),
        BagScan.received_at >= now - dt.timedelta(days=UNMATCHED_DAYS)).order_by(BagScan.at))).all()
    for row in rows:
        scan = Scan(line=0, bag_tag=row.bag_tag, at=row.at, station=row.station, point=row.point, flight=row.flight,
                    note=row.note)
        await record_scan(session=session, case=case, partner_id=row.partner_id, scan=scan, principal=None, now=now,
                          base_url=base_url)
        row.case_id, row.matched_at = case.id, now
    return len(rows)


async def purge_unmatched(*, session: AsyncSession, now: dt.datetime) -> int:
    """Housekeeping: unmatched scans older than 30 days are forgotten."""
    result = await session.execute(delete(BagScan).where(
        BagScan.case_id.is_(None), BagScan.received_at < now - dt.timedelta(days=UNMATCHED_DAYS)))
    return result.rowcount or 0
