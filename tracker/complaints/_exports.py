"""Exports: the complaint department's data as files, streamed (``GET /v1/exports/{dataset}.{format}``).

For staff who take Baton's record into a spreadsheet or a warehouse: five datasets, each as CSV or
NDJSON, filtered by time and partner. This module is the one implementation: the API route, the
console's download (``tracker.web.exports``) and ``baton export`` all call ``prepare_export`` (every
check, before the first byte is sent) and then stream ``export_stream``.

    dataset        one row per                 ``from``/``to`` select by   ``partner`` selects
    cases          case                        opened_at                   cases it is a party to
    events         timeline event              received_at                 events on cases it is a party to
    parties        partner's role on a case    joined_at                   its parties
    notifications  outbox row                  created_at                  notifications to it
    scorecards     partner                     the scorecard's window      its scorecard

``from`` is inclusive, ``to`` exclusive. Events follow the cases, not only the partner's own
statements: an export of ``events?partner=lh`` is the whole story of every case ``lh`` is on (its
rows carry ``partner``, so the partner's own are one filter away).

Reading: each dataset is one query, read in batches of ``BATCH`` rows by keyset (``id > last``,
ordered by id), each batch in its own short session. Nothing loads a whole table, and no
transaction stays open while a slow client reads: on SQLite every transaction takes the write
lock (``kernel.db`` begins them IMMEDIATE), so one long read would stall every writer. So an
export is not a snapshot: a row written while it streams may come at its end (ids only grow).

What an export leaves out, on purpose:
- Personal data. No customer name, phone, email or address, in any column. Cases carry no
  customer block. Free text (titles, resolutions, external references, event bodies,
  notification errors) passes through ``tracker.redaction.Redactor`` for the case's customer
  (name, phone, email, and the delivery address and phone), which writes ``[erased]`` in their
  place. What the customer wrote themselves is withheld whole, as erasure does it
  (``tracker.erasure.CUSTOMER_AUTHORED`` bodies become ``{"_withheld": true}``, their attachment
  notes go, and the satisfaction comment is never exported). Notifications carry the masked
  recipient (``delivery_out``'s; a customer's, whatever the channel, down to a phone's last four
  digits or an email's top-level domain) and never their subject or content.
- Sandbox cases (``Case.sandbox``: a new partner's practice case), with their events, parties
  and notifications.

CSV: a header row of the fixed columns (``export_columns``), RFC 4180 quoting, UTF-8; nested
values (an event's body, external references) as JSON text; a cell that a spreadsheet would run
as a formula (one starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is prefixed
with ``'``. NDJSON: one JSON object per line, nested values as objects. Times are RFC 3339 in UTC.
Scorecards are ``tracker.complaints.Scorecard`` field by field, whatever fields it has: its nested
models become dotted CSV columns (``time_to_first_update.p50``). Their window is handed to
``scorecards`` as whole days back from ``to``, which counts nothing after ``to``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
import types
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, func, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.clock import as_utc
from kernel.errors import NotFound, Unprocessable
from kernel.validation import instant
from notifications.models import Notification
from partners.models import Partner
from tracker.complaints._deliveries import delivery_out
from tracker.complaints._scorecards import Scorecard, scorecards
from tracker.erasure import CUSTOMER_AUTHORED
from tracker.models import Case, Delivery, Event, Party
from tracker.redaction import Redactor

BATCH = 1000  # rows per query and per chunk sent
EXPORT_FORMATS = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
SCORECARD_DAYS = 30  # the scorecards' window when ``from`` is not given, as GET /v1/partners/{id}/scorecard
WITHHELD = {"_withheld": True}

Sessions = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@dataclass(frozen=True)
class Export:
    """One export, checked: what to read (``since`` inclusive, ``until`` exclusive) and how to write it."""

    dataset: str
    format: str
    since: dt.datetime | None
    until: dt.datetime | None
    partner: str | None
    now: dt.datetime

    @property
    def media_type(self) -> str:
        return EXPORT_FORMATS[self.format]

    @property
    def columns(self) -> tuple[str, ...]:
        return export_columns(self.dataset)

    @property
    def filename(self) -> str:
        """``baton-<dataset>-<from>-<to>.<ext>``: ``start`` without ``from``, the export's time without ``to``."""
        since = _compact(self.since) if self.since else "start"
        return f"baton-{self.dataset}-{since}-{_compact(self.until or self.now)}.{self.format}"

    @property
    def scorecard_days(self) -> int:
        """The scorecards' window in whole days, rounded up (the scorecard counts days back from ``until``)."""
        assert self.since is not None and self.until is not None
        return math.ceil((self.until - self.since) / dt.timedelta(days=1))


def _compact(at: dt.datetime) -> str:
    return as_utc(at).strftime("%Y%m%dT%H%M%SZ")


# ---------------------------------------------------------------- checking what was asked


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})")


def parse_instant(value: str | None, *, field: str) -> dt.datetime | None:
    """An RFC 3339 instant with its offset (``2026-11-01T00:00:00Z``); None when absent or blank; 422 otherwise."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    problem = f"{field} must be an RFC 3339 instant with an offset, such as 2026-11-01T00:00:00Z"
    if " " in text and "+" not in text:
        problem += " (a '+' in a URL reads as a space: write it %2B, or use Z)"
    if not _RFC3339.fullmatch(text):
        raise Unprocessable(f"{problem}.", errors=[{"field": field, "message": problem}])
    try:
        return instant(dt.datetime.fromisoformat(text.upper()))
    except ValueError as exc:
        raise Unprocessable(f"{field}: {exc}.", errors=[{"field": field, "message": str(exc)}]) from None


async def prepare_export(
    *, session: AsyncSession, dataset: str, format: str, since: str | None, until: str | None,
    partner: str | None, now: dt.datetime,
) -> Export:
    """Check an export before any byte is sent: 404 for an unknown dataset or format, 422 for a bad filter."""
    if dataset not in _DATASETS:
        raise NotFound(f"No dataset {dataset[:40]!r}; there are {', '.join(_DATASETS)}.")
    if format not in EXPORT_FORMATS:
        raise NotFound(f"No format {format[:20]!r}; there are {', '.join(EXPORT_FORMATS)}.")
    start, end = parse_instant(since, field="from"), parse_instant(until, field="to")
    if start is not None and end is not None and start >= end:
        raise Unprocessable("from must be before to.", errors=[{"field": "from", "message": "must be before to"}])
    partner = partner.strip() if partner is not None and partner.strip() else None
    # An unknown partner would export nothing, silently: a typo deserves an answer.
    if partner is not None and (len(partner) > 64 or await session.get(Partner, partner) is None):
        raise Unprocessable(f"No partner {partner[:64]!r}.", errors=[{"field": "partner", "message": "unknown partner"}])
    if dataset == "scorecards":
        end = end or now
        start = start or end - dt.timedelta(days=SCORECARD_DAYS)
    export = Export(dataset=dataset, format=format, since=start, until=end, partner=partner, now=now)
    if dataset == "scorecards" and not 1 <= export.scorecard_days <= 366:
        raise Unprocessable("A scorecards window spans 1 to 366 days.",
                            errors=[{"field": "from", "message": "the window spans 1 to 366 days"}])
    return export


# ---------------------------------------------------------------- the datasets


@dataclass(frozen=True)
class _Dataset:
    """One dataset: its columns, its query (the key it is ordered by first), and its rows from a batch."""

    columns: tuple[str, ...]
    query: Callable[[Export], Select[Any]]
    key: Any
    records: Callable[[AsyncSession, Sequence[Row[Any]], Export, _Redactors], Awaitable[list[dict[str, Any]]]]


class _Redactors:
    """One ``Redactor`` per case, compiled once per export: events arrive in id order, not case by case."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._by_case: dict[int, Redactor] = {}

    def of(self, case_id: int | None, customer: Sequence[Any]) -> Redactor:
        if case_id is None:
            return _NOBODY
        found = self._by_case.get(case_id)
        if found is None:
            if len(self._by_case) >= self.LIMIT:
                self._by_case.clear()
            name, phone, email, address, driver_phone = customer
            words = [str(address.get(k) or "") for k in ("line1", "line2", "postcode")] if isinstance(address, dict) else []
            found = self._by_case[case_id] = Redactor(name=name, phone=phone, email=email,
                                                      own_words=[w for w in (*words, driver_phone or "") if w.strip()])
        return found


_NOBODY = Redactor()
# What identifies the case's customer: selected beside each row, never exported.
_CUSTOMER = (Case.customer_name, Case.customer_phone, Case.customer_email, Delivery.address, Delivery.phone)


def _iso(value: dt.datetime | None) -> str | None:
    return as_utc(value).isoformat().replace("+00:00", "Z") if value is not None else None


def _on_partners_cases(partner: str) -> Any:
    return select(Party.case_id).where(Party.partner_id == partner)


def _within(column: Any, export: Export) -> list[Any]:
    return ([column >= export.since] if export.since is not None else []) + (
        [column < export.until] if export.until is not None else [])


CASE_COLUMNS = ("id", "ref", "type", "status", "owner", "title", "opened_at", "closed_at", "resolution",
                "deadline_at", "deadline_passed_at", "eta", "eta_first", "delivered_at", "satisfaction",
                "satisfaction_at", "erased_at", "events", "external_refs")


def _cases_query(export: Export) -> Select[Any]:
    query = (select(Case.id, Case, *_CUSTOMER).outerjoin(Delivery, Delivery.case_id == Case.id)
             .where(Case.sandbox.is_(False), *_within(Case.opened_at, export)))
    return query.where(Case.id.in_(_on_partners_cases(export.partner))) if export.partner else query


async def _case_records(
    _: AsyncSession, batch: Sequence[Row[Any]], export: Export, redactors: _Redactors
) -> list[dict[str, Any]]:
    out = []
    for case_id, case, *customer in batch:
        redact = redactors.of(case_id, customer)
        out.append({
            "id": case.id, "ref": case.ref, "type": case.type, "status": case.status, "owner": case.owner_id,
            "title": redact.text(case.title), "opened_at": _iso(case.opened_at), "closed_at": _iso(case.closed_at),
            "resolution": redact.text(case.resolution), "deadline_at": _iso(case.deadline_at),
            "deadline_passed_at": _iso(case.deadline_passed_at), "eta": _iso(case.eta),
            "eta_first": _iso(case.eta_first), "delivered_at": _iso(case.delivered_at),
            "satisfaction": case.satisfaction, "satisfaction_at": _iso(case.satisfaction_at),
            "erased_at": _iso(case.erased_at), "events": case.last_seq,
            "external_refs": redact.value(case.external_refs or {}),
        })
    return out


EVENT_COLUMNS = ("id", "case", "seq", "type", "actor", "partner", "visibility", "occurred_at", "received_at",
                 "signed", "keyid", "via", "hash", "prev_hash", "body")


def _events_query(export: Export) -> Select[Any]:
    query = (select(Event.id, Event, Case.ref, *_CUSTOMER).join(Case, Case.id == Event.case_id)
             .outerjoin(Delivery, Delivery.case_id == Case.id)
             .where(Case.sandbox.is_(False), *_within(Event.received_at, export)))
    return query.where(Event.case_id.in_(_on_partners_cases(export.partner))) if export.partner else query


async def _event_records(
    _: AsyncSession, batch: Sequence[Row[Any]], export: Export, redactors: _Redactors
) -> list[dict[str, Any]]:
    out = []
    for _id, event, ref, *customer in batch:
        body = event.body if isinstance(event.body, dict) else {}
        via = body.get("via")
        out.append({
            "id": event.id, "case": ref, "seq": event.seq, "type": event.type, "actor": event.actor,
            "partner": event.partner_id, "visibility": event.visibility, "occurred_at": _iso(event.occurred_at),
            "received_at": _iso(event.received_at), "signed": event.signature is not None,
            "keyid": (event.signature or {}).get("keyid"), "via": via if isinstance(via, str) else None,
            "hash": event.hash, "prev_hash": event.prev_hash,
            "body": _event_body(event, body, redactors.of(event.case_id, customer)),
        })
    return out


def _event_body(event: Event, body: dict[str, Any], redact: Redactor) -> dict[str, Any]:
    """The body as staff may take it away: the customer's own words withheld, their details ``[erased]``."""
    if event.type in CUSTOMER_AUTHORED:
        return dict(WITHHELD)
    if event.type == "attachment.added" and event.actor == "customer" and "note" in body:
        body = {**{k: v for k, v in body.items() if k != "note"}, **WITHHELD}
    return redact.value(body)


PARTY_COLUMNS = ("id", "case", "partner", "role", "responsible", "state", "cadence_seconds", "joined_at",
                 "last_update_at", "next_update_due", "promised_by", "overdue_since", "escalated_at",
                 "reminders_sent", "last_nudged_at", "last_reminded_at", "customer_told_at", "released_at")


def _parties_query(export: Export) -> Select[Any]:
    query = (select(Party.id, Party, Case.ref).join(Case, Case.id == Party.case_id)
             .where(Case.sandbox.is_(False), *_within(Party.joined_at, export)))
    return query.where(Party.partner_id == export.partner) if export.partner else query


async def _party_records(
    _: AsyncSession, batch: Sequence[Row[Any]], export: Export, redactors: _Redactors
) -> list[dict[str, Any]]:
    return [{
        "id": party.id, "case": ref, "partner": party.partner_id, "role": party.role,
        "responsible": party.responsible, "state": party.state, "cadence_seconds": party.cadence_seconds,
        "joined_at": _iso(party.joined_at), "last_update_at": _iso(party.last_update_at),
        "next_update_due": _iso(party.next_update_due), "promised_by": _iso(party.promised_by),
        "overdue_since": _iso(party.overdue_since), "escalated_at": _iso(party.escalated_at),
        "reminders_sent": party.reminders_sent, "last_nudged_at": _iso(party.last_nudged_at),
        "last_reminded_at": _iso(party.last_reminded_at), "customer_told_at": _iso(party.customer_told_at),
        "released_at": _iso(party.released_at),
    } for _id, party, ref in batch]


NOTIFICATION_COLUMNS = ("id", "case", "channel", "audience", "partner", "kind", "recipient", "state", "attempts",
                        "next_attempt_at", "last_error", "message_id", "provider_id", "created_at", "sent_at",
                        "delivered_at")


def _notifications_query(export: Export) -> Select[Any]:
    query = (select(Notification.id, Notification, Case.ref, *_CUSTOMER)
             .outerjoin(Case, Case.id == Notification.case_id).outerjoin(Delivery, Delivery.case_id == Case.id)
             .where(or_(Notification.case_id.is_(None), Case.sandbox.is_(False)),
                    *_within(Notification.created_at, export)))
    return query.where(Notification.partner_id == export.partner) if export.partner else query


async def _notification_records(
    _: AsyncSession, batch: Sequence[Row[Any]], export: Export, redactors: _Redactors
) -> list[dict[str, Any]]:
    out = []
    for _id, row, ref, *customer in batch:
        # The console's own view of the row (recipient masked, no content), then what an export needs more.
        seen = delivery_out(row, ref).model_dump()
        if row.audience == "customer":
            seen["recipient"] = _masked(row.recipient)
        seen["last_error"] = redactors.of(row.case_id, customer).text(row.last_error)
        out.append({column: _iso(seen[column]) if isinstance(seen[column], dt.datetime) else seen[column]
                    for column in NOTIFICATION_COLUMNS})
    return out


def _masked(recipient: str) -> str:
    """A customer's address, whatever the channel: a phone's last four digits, an email's top-level domain.

    Not the email's domain: a personal domain (``ada@lovelace.example``) names its owner.
    """
    if "@" in recipient:
        return "•••@•••." + recipient.rsplit(".", 1)[-1] if "." in recipient.rsplit("@", 1)[1] else "•••@•••"
    return "•" * max(len(recipient) - 4, 0) + recipient[-4:] if len(recipient) > 4 else "•" * len(recipient)


def _model_columns(model: type[BaseModel], prefix: str = "") -> list[str]:
    """The model's fields in order, a nested model's as ``field.sub`` (for CSV; NDJSON keeps the nesting)."""
    columns: list[str] = []
    for name, field in model.model_fields.items():
        inner = _submodel(field.annotation)
        columns += _model_columns(inner, f"{prefix}{name}.") if inner is not None else [prefix + name]
    return columns


def _submodel(annotation: Any) -> type[BaseModel] | None:
    options = [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(options) == 1 and isinstance(options[0], type) and issubclass(options[0], BaseModel):
        return options[0]
    return None


def _scorecards_query(export: Export) -> Select[Any]:
    query = select(Partner.id)
    return query.where(Partner.id == export.partner) if export.partner else query


async def _scorecard_records(
    session: AsyncSession, batch: Sequence[Row[Any]], export: Export, redactors: _Redactors
) -> list[dict[str, Any]]:
    assert export.until is not None
    cards = await scorecards(session=session, partner_ids=[pid for (pid,) in batch], days=export.scorecard_days,
                             now=export.until)
    return [card.model_dump(mode="json") for card in cards]


_DATASETS: dict[str, _Dataset] = {
    "cases": _Dataset(CASE_COLUMNS, _cases_query, Case.id, _case_records),
    "events": _Dataset(EVENT_COLUMNS, _events_query, Event.id, _event_records),
    "parties": _Dataset(PARTY_COLUMNS, _parties_query, Party.id, _party_records),
    "notifications": _Dataset(NOTIFICATION_COLUMNS, _notifications_query, Notification.id, _notification_records),
    "scorecards": _Dataset(tuple(_model_columns(Scorecard)), _scorecards_query, Partner.id, _scorecard_records),
}
EXPORT_DATASETS = tuple(_DATASETS)


def export_columns(dataset: str) -> tuple[str, ...]:
    """The fixed columns of a dataset, in order (the CSV header; the keys of each NDJSON object)."""
    return _DATASETS[dataset].columns


# ---------------------------------------------------------------- reading and writing


async def count_export(*, session: AsyncSession, export: Export) -> int:
    """How many rows the export will have (one COUNT over the same query), for a progress bar."""
    query = _DATASETS[export.dataset].query(export)
    return int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)


async def export_records(*, sessions: Sessions, export: Export) -> AsyncIterator[list[dict[str, Any]]]:
    """The export's rows, batch by batch: ``BATCH`` rows by keyset, each batch in a session of its own."""
    spec = _DATASETS[export.dataset]
    base = spec.query(export)
    redactors = _Redactors()
    last: Any = None
    while True:
        query = base if last is None else base.where(spec.key > last)
        async with sessions() as session:
            batch = (await session.execute(query.order_by(spec.key).limit(BATCH))).all()
            records = await spec.records(session, batch, export, redactors) if batch else []
        if records:
            yield records
        if len(batch) < BATCH:
            return
        last = batch[-1][0]


async def export_stream(
    *, sessions: Sessions, export: Export, progress: Callable[[int], None] | None = None
) -> AsyncIterator[bytes]:
    """The export's bytes, one chunk per batch; ``progress`` hears how many rows each chunk carried."""
    columns = export.columns
    if export.format == "csv":
        yield _csv_chunk([list(columns)])
    async for records in export_records(sessions=sessions, export=export):
        if export.format == "csv":
            yield _csv_chunk([[_cell(_lookup(record, column)) for column in columns] for record in records])
        else:
            yield "".join(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
                          for record in records).encode("utf-8", "replace")
        if progress is not None:
            progress(len(records))


def _csv_chunk(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)  # RFC 4180: CRLF, quotes doubled, QUOTE_MINIMAL
    # "replace": a lone surrogate a partner smuggled into a JSON body must not cut the download short.
    return buffer.getvalue().encode("utf-8", "replace")


def _lookup(record: dict[str, Any], column: str) -> Any:
    """A column's value; ``a.b`` reaches into a nested object (scorecards' flattened models)."""
    if column in record:
        return record[column]
    value: Any = record
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


# A spreadsheet runs a cell starting with these as a formula (OWASP "CSV injection"); tab and CR too.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)  # Baton's own numbers: a negative one is a number, not a formula
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":")) if isinstance(value, dict | list) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
