"""Synchronous and asynchronous clients for Baton's partner API.

Both clients share one description of each call (``_Call``) and one retry policy; they differ
only in how they send and how they wait. Every POST carries an ``Idempotency-Key`` that stays
the same across retries, so a retry after a lost answer returns the first response instead of
posting the update twice; the signer re-signs each attempt with a fresh nonce.

Uploads (attachments, proof of delivery as ``multipart/form-data``; files of bag scans as they
are) are bodies built once, when the call is described: each attempt sends those same bytes in
chunks, reporting progress, and the signer's ``Content-Digest`` is computed over them.

Money (claim items, decisions) travels as decimal strings such as ``"12.50"``: the client takes a
``Decimal`` or a ``str`` and refuses a ``float`` before anything is sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from ._exceptions import BatonTransportError, api_error
from ._multipart import (
    ChunkedBody,
    FileInput,
    FilePart,
    Progress,
    Upload,
    encode_multipart,
    file_part,
    read_file,
)

# Gateways and overloaded servers answer these while Baton itself may be fine a moment later.
RETRY_STATUSES = frozenset({502, 503, 504})
# Failures where the request may never have reached Baton, or its answer was lost on the way.
# Bad URLs, proxies and local protocol errors are not in the list: trying again cannot help.
_TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_BACKOFF_BASE_SECONDS = 0.5

# An amount of money: a Decimal, or a decimal string such as "12.50". Never a float.
Money = Decimal | str
# One item of a claim: a dict as Baton's API has it, or (description, amount, currency).
ClaimItem = Mapping[str, Any] | tuple[str, Money, str]

# The three forms POST /v1/scans reads, by file extension; anything else is IATA Type B text.
SCAN_CONTENT_TYPES = {".csv": "text/csv", ".json": "application/json"}
TYPE_B_CONTENT_TYPE = "text/plain"


@dataclass(frozen=True)
class _Call:
    """One API operation, described independently of how it is sent."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    upload: Upload | None = None
    progress: Progress | None = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def _segment(value: str) -> str:
    """A path segment, escaped so a reference or id can never change the path's shape."""
    return quote(value, safe="")


def _rfc3339(name: str, value: datetime) -> str:
    """Baton requires times with an offset; a naive datetime would be silently misread."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (RFC 3339 needs an offset)")
    return value.isoformat()


def _iso_duration(value: timedelta | str) -> str:
    """An ISO 8601 duration; strings such as ``PT2H`` pass through for the server to check."""
    if isinstance(value, str):
        return value
    if value <= timedelta(0) or value.microseconds:
        raise ValueError("accept_within must be a positive whole number of seconds")
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    date_part = f"{value.days}D" if value.days else ""
    time_part = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    return f"P{date_part}" + (f"T{time_part}" if time_part else "")


def _post(
    path: str, body: dict[str, Any] | Upload, idempotency_key: str | None, progress: Progress | None = None
) -> _Call:
    headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
    if isinstance(body, Upload):
        return _Call(method="POST", path=path, upload=body, progress=progress, headers=headers)
    return _Call(method="POST", path=path, json=body, headers=headers)


def _post_update_call(
    ref: str,
    *,
    status: str | None,
    message: str | None,
    internal_note: str | None,
    location: str | None,
    eta: datetime | None,
    occurred_at: datetime | None,
    next_update_by: datetime | None,
    idempotency_key: str | None,
) -> _Call:
    texts = {"status": status, "message": message, "internal_note": internal_note, "location": location}
    times = {"eta": eta, "occurred_at": occurred_at, "next_update_by": next_update_by}
    body: dict[str, Any] = {name: value for name, value in texts.items() if value is not None}
    body |= {name: _rfc3339(name, value) for name, value in times.items() if value is not None}
    return _post(f"/v1/cases/{_segment(ref)}/events", body, idempotency_key)


def _hand_off_call(
    ref: str, *, to: str, note: str | None, accept_within: timedelta | str | None, idempotency_key: str | None
) -> _Call:
    body: dict[str, Any] = {"to": to}
    if note is not None:
        body["note"] = note
    if accept_within is not None:
        body["accept_within"] = _iso_duration(accept_within)
    return _post(f"/v1/cases/{_segment(ref)}/handoffs", body, idempotency_key)


def _accept_handoff_call(ref: str, handoff_id: str, *, idempotency_key: str | None) -> _Call:
    path = f"/v1/cases/{_segment(ref)}/handoffs/{_segment(handoff_id)}/accept"
    return _post(path, {}, idempotency_key)


def _cases_call(*, status: str | None, cursor: str | None, limit: int | None) -> _Call:
    params = {"status": status, "cursor": cursor, "limit": limit}
    return _Call(method="GET", path="/v1/cases", params={k: v for k, v in params.items() if v is not None})


def _attach_call(
    ref: str,
    file: FileInput,
    *,
    kind: str,
    note: str | None,
    visibility: str | None,
    filename: str | None,
    content_type: str | None,
    progress: Progress | None,
    idempotency_key: str | None,
) -> _Call:
    texts = {"kind": kind, "note": note, "visibility": visibility}
    fields: dict[str, str | FilePart] = {name: value for name, value in texts.items() if value is not None}
    # The file goes last, so a server reading the stream knows what it is before it arrives.
    fields["file"] = file_part(file, filename=filename, content_type=content_type, default_name="attachment")
    return _post(f"/v1/cases/{_segment(ref)}/attachments", encode_multipart(fields), idempotency_key, progress)


def _attachments_call(ref: str, *, cursor: str | None) -> _Call:
    params = {} if cursor is None else {"cursor": cursor}
    return _Call(method="GET", path=f"/v1/cases/{_segment(ref)}/attachments", params=params)


def _attachment_call(ref: str, attachment_id: str) -> _Call:
    return _Call(method="GET", path=f"/v1/cases/{_segment(ref)}/attachments/{_segment(attachment_id)}")


def _bundle_call(ref: str) -> _Call:
    return _Call(method="GET", path=f"/v1/cases/{_segment(ref)}/bundle")


def _accept_delivery_call(ref: str, *, idempotency_key: str | None) -> _Call:
    return _post(f"/v1/cases/{_segment(ref)}/delivery/accept", {}, idempotency_key)


def _deliver_call(
    ref: str,
    *,
    photo: FileInput | None,
    signature: FileInput | None,
    pin: str | None,
    bag_tag: str | None,
    progress: Progress | None,
    idempotency_key: str | None,
) -> _Call:
    texts = {"pin": pin, "bag_tag": bag_tag}
    fields: dict[str, str | FilePart] = {name: value for name, value in texts.items() if value is not None}
    files = {"photo": photo, "signature": signature}
    fields |= {name: file_part(file, default_name=name) for name, file in files.items() if file is not None}
    if not fields:
        raise ValueError("proof of delivery needs at least one of photo, signature, pin or bag_tag")
    return _post(f"/v1/cases/{_segment(ref)}/delivery/proof", encode_multipart(fields), idempotency_key, progress)


def _upload_scans_call(
    data: FileInput, *, content_type: str | None, progress: Progress | None, idempotency_key: str | None
) -> _Call:
    """The file's bytes as they are; its type from its extension unless given (bytes: Type B)."""
    body, name = read_file(data)
    guessed = SCAN_CONTENT_TYPES.get(Path(name or "").suffix.lower(), TYPE_B_CONTENT_TYPE)
    return _post("/v1/scans", Upload(body=body, content_type=content_type or guessed), idempotency_key, progress)


def _amount(name: str, value: object) -> str:
    """An amount as the decimal string Baton expects, e.g. ``Decimal("12.50")`` as ``"12.50"``.

    A ``float`` is refused: 0.1 + 0.2 is not 0.3 in binary floating point, and a claim must be
    paid to the cent. A ``Decimal`` is written out in full, keeping its trailing zeros and never
    in exponent form (``Decimal("1E+2")`` goes as ``"100"``); a string passes through for the
    server to check.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{name} must be a finite amount, not {value}")
        return format(value, "f")
    hint = ": a float cannot represent money exactly" if isinstance(value, float) else ""
    raise TypeError(f"{name} must be a Decimal or a str, not {type(value).__name__}{hint}")


def _claim_item(index: int, item: object) -> dict[str, Any]:
    """One claim item as Baton's API has it, with its amount as a string."""
    name = f"items[{index}].amount"
    if isinstance(item, Mapping):
        body = dict(item)
        if "amount" in body:
            body["amount"] = _amount(name, body["amount"])
        body.setdefault("attachment", None)
        return body
    if isinstance(item, tuple) and len(item) == 3:
        description, amount, currency = item
        return {"description": description, "amount": _amount(name, amount), "currency": currency, "attachment": None}
    raise TypeError(f"items[{index}] must be a dict or a (description, amount, currency) tuple, not {item!r}")


def _claims_path(ref: str, *rest: str) -> str:
    return "/".join([f"/v1/cases/{_segment(ref)}/claims", *(_segment(part) for part in rest)])


def _file_claim_call(ref: str, *, kind: str, items: Sequence[ClaimItem], idempotency_key: str | None) -> _Call:
    if isinstance(items, (str, bytes, Mapping)):
        raise TypeError("items must be a list of claim items")
    body = {"kind": kind, "items": [_claim_item(index, item) for index, item in enumerate(items)]}
    return _post(_claims_path(ref), body, idempotency_key)


def _decide_call(
    ref: str,
    claim_id: int | str,
    *,
    decision: str,
    amount: Money | None,
    currency: str | None,
    reason: str,
    idempotency_key: str | None,
) -> _Call:
    body: dict[str, Any] = {"decision": decision}
    if amount is not None:
        body["amount"] = _amount("amount", amount)
    if currency is not None:
        body["currency"] = currency
    body["reason"] = reason
    return _post(_claims_path(ref, str(claim_id), "decision"), body, idempotency_key)


def _mark_paid_call(ref: str, claim_id: int | str, *, reference: str, idempotency_key: str | None) -> _Call:
    return _post(_claims_path(ref, str(claim_id), "paid"), {"reference": reference}, idempotency_key)


def _request(http: httpx.Client | httpx.AsyncClient, call: _Call) -> httpx.Request:
    """The request for one attempt at ``call``.

    An upload's request is built around its prebuilt bytes, so ``request.content`` (what the
    signer digests) is exactly those bytes; its stream is then swapped for one sending the same
    bytes in chunks with progress. httpx reads ``content`` without touching the stream, so the
    Content-Digest covers, byte for byte, what goes on the wire.
    """
    if call.upload is None:
        return http.build_request(call.method, call.path, json=call.json, params=call.params, headers=call.headers)
    headers = call.headers | {"Content-Type": call.upload.content_type}
    request = http.build_request(call.method, call.path, content=call.upload.body, params=call.params, headers=headers)
    request.stream = ChunkedBody(call.upload.body, call.progress)
    return request


def _backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt + 1``: 0.5, 1, 2, 4, ..."""
    return _BACKOFF_BASE_SECONDS * 2.0**attempt


def _result(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 2xx answer, or the problem it carries as an exception."""
    answer = _checked(response)
    return answer.json() if answer.content else {}


def _checked(response: httpx.Response) -> httpx.Response:
    """A 2xx answer as it is, or the problem it carries as an exception."""
    if response.is_success:
        return response
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        # A proxy's HTML error page, say: keep what little it tells.
        problem = {"title": response.reason_phrase or f"HTTP {response.status_code}", "status": response.status_code}
    raise api_error(status=response.status_code, problem=problem)


class BatonClient:
    """A partner's synchronous connection to Baton; use it as a context manager.

    ``auth`` is a ``BatonSigner``. ``retries`` is how many times a request is tried again after
    a transient network failure or a 502/503/504, with exponential backoff through ``sleep``.
    """

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = httpx.Client(base_url=base_url, auth=auth, timeout=timeout, transport=transport)
        self._retries = retries
        self._sleep = sleep

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def post_update(
        self,
        ref: str,
        *,
        status: str | None = None,
        message: str | None = None,
        internal_note: str | None = None,
        location: str | None = None,
        eta: datetime | None = None,
        occurred_at: datetime | None = None,
        next_update_by: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Post a status update or note on a case; returns the created event (``seq``, ``hash``)."""
        return self._perform(
            _post_update_call(
                ref,
                status=status,
                message=message,
                internal_note=internal_note,
                location=location,
                eta=eta,
                occurred_at=occurred_at,
                next_update_by=next_update_by,
                idempotency_key=idempotency_key,
            )
        )

    def hand_off(
        self,
        ref: str,
        *,
        to: str,
        note: str | None = None,
        accept_within: timedelta | str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Pass custody to another partner, who must accept within ``accept_within``; returns the handoff."""
        return self._perform(
            _hand_off_call(ref, to=to, note=note, accept_within=accept_within, idempotency_key=idempotency_key)
        )

    def accept_handoff(self, ref: str, handoff_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Accept custody handed to this partner; returns the handoff."""
        return self._perform(_accept_handoff_call(ref, handoff_id, idempotency_key=idempotency_key))

    def cases(
        self, *, status: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """One page of the cases this partner is party to: ``{"items": [...], "next_cursor": ...}``."""
        return self._perform(_cases_call(status=status, cursor=cursor, limit=limit))

    def iter_cases(self, *, status: str | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every case this partner is party to, fetching further pages as they are needed."""
        cursor: str | None = None
        while True:
            page = self.cases(status=status, cursor=cursor, limit=limit)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def case(self, ref: str) -> dict[str, Any]:
        """One case with its parties."""
        return self._perform(_Call(method="GET", path=f"/v1/cases/{_segment(ref)}"))

    def events(self, ref: str) -> dict[str, Any]:
        """A case's timeline as this partner may see it (no ``internal`` events)."""
        return self._perform(_Call(method="GET", path=f"/v1/cases/{_segment(ref)}/events"))

    def attach(
        self,
        ref: str,
        file: FileInput,
        *,
        kind: str,
        note: str | None = None,
        visibility: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        progress: Progress | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Upload a file (a path, or bytes) as evidence on a case; returns the attachment.

        ``kind`` is ``photo``, ``receipt``, ``document`` or ``proof_of_delivery``; ``visibility``
        is ``public``, ``parties`` or ``internal``, Baton's default when omitted. The content type
        is guessed from the file name unless given. ``progress(sent_bytes, total_bytes)`` is called
        as the body goes out, from zero again if a retry sends it again.
        """
        return self._perform(
            _attach_call(
                ref,
                file,
                kind=kind,
                note=note,
                visibility=visibility,
                filename=filename,
                content_type=content_type,
                progress=progress,
                idempotency_key=idempotency_key,
            )
        )

    def attachments(self, ref: str, *, cursor: str | None = None) -> dict[str, Any]:
        """One page of a case's attachments this partner may see: ``{"items": [...], "next_cursor": ...}``."""
        return self._perform(_attachments_call(ref, cursor=cursor))

    def attachment(self, ref: str, attachment_id: str) -> bytes:
        """The bytes of one attachment."""
        return _checked(self._send(_attachment_call(ref, attachment_id))).content

    def bundle(self, ref: str) -> bytes:
        """The evidence bundle of a case this partner owns, as Baton wrote it (keep the bytes: they are evidence).

        Check it with ``baton verify --bundle FILE`` or ``tools/check_bundle.py``; no database needed.
        """
        return _checked(self._send(_bundle_call(ref))).content

    def delivery(self, ref: str) -> dict[str, Any]:
        """The case's delivery request: ``state``, ``window``, ``collect_at``, ``address``..."""
        return self._perform(_Call(method="GET", path=f"/v1/cases/{_segment(ref)}/delivery"))

    def delivery_slots(self, ref: str) -> dict[str, Any]:
        """The delivery windows on offer: ``{"items": [{"start": ..., "end": ...}]}``."""
        return self._perform(_Call(method="GET", path=f"/v1/cases/{_segment(ref)}/delivery/slots"))

    def accept_delivery(self, ref: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Take on a delivery, as its courier; returns the delivery."""
        return self._perform(_accept_delivery_call(ref, idempotency_key=idempotency_key))

    def deliver(
        self,
        ref: str,
        *,
        photo: FileInput | None = None,
        signature: FileInput | None = None,
        pin: str | None = None,
        bag_tag: str | None = None,
        progress: Progress | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Record proof of delivery, as the courier; returns ``seq``, ``state`` and ``attachments``.

        Give any of ``photo`` and ``signature`` (an image of it), each a path or bytes, ``pin`` and
        ``bag_tag``; only those given are sent. A wrong PIN or tag is a ``BatonAPIError`` (422).
        """
        return self._perform(
            _deliver_call(
                ref,
                photo=photo,
                signature=signature,
                pin=pin,
                bag_tag=bag_tag,
                progress=progress,
                idempotency_key=idempotency_key,
            )
        )

    def claims(self, ref: str) -> dict[str, Any]:
        """A case's compensation claims: ``{"items": [...], "next_cursor": ...}``.

        Each claim has its ``state`` (``filed``, ``approved``, ``partly_approved``, ``rejected``,
        ``paid``), its ``items``, ``totals`` per currency, ``answer_due`` and ``overdue``, and the
        ``decision`` and ``paid`` records once there are any. The case's owner and Baton's staff may
        read them; another party gets a 403 ``BatonAPIError``.
        """
        return self._perform(_Call(method="GET", path=_claims_path(ref)))

    def file_claim(
        self, ref: str, *, kind: str, items: Sequence[ClaimItem], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """File a claim on the customer's behalf, as the case's owner; returns the claim.

        ``kind`` is ``interim_expenses``, ``damage``, ``loss`` or ``delay``. Each item is a dict
        (``description``, ``amount``, ``currency``, ``attachment``) or a ``(description, amount,
        currency)`` tuple; amounts are ``Decimal`` or ``str``, and a ``float`` raises ``TypeError``.
        """
        return self._perform(_file_claim_call(ref, kind=kind, items=items, idempotency_key=idempotency_key))

    def decide(
        self,
        ref: str,
        claim_id: int | str,
        *,
        decision: str,
        amount: Money | None = None,
        currency: str | None = None,
        reason: str,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Decide a claim: ``approved``, ``partly_approved`` or ``rejected``; returns the claim.

        ``amount`` (a ``Decimal`` or ``str``) and ``currency`` are what is granted, required unless
        the claim is rejected; only those given are sent.
        """
        return self._perform(
            _decide_call(
                ref,
                claim_id,
                decision=decision,
                amount=amount,
                currency=currency,
                reason=reason,
                idempotency_key=idempotency_key,
            )
        )

    def mark_paid(
        self, ref: str, claim_id: int | str, *, reference: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Record that a decided claim was paid, with the payment's ``reference``; returns the claim."""
        return self._perform(_mark_paid_call(ref, claim_id, reference=reference, idempotency_key=idempotency_key))

    def rights(self, ref: str) -> dict[str, Any]:
        """What the customer is entitled to on a case: ``{"items": [...], ...}``, as Baton has it."""
        return self._perform(_Call(method="GET", path=f"/v1/cases/{_segment(ref)}/rights"))

    def upload_scans(
        self,
        data: FileInput,
        *,
        content_type: str | None = None,
        progress: Progress | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Send a batch of bag scans (a path, or bytes); returns Baton's tally of them.

        The file goes as it is: JSON (``{"scans": [...]}``), CSV with the header
        ``bag_tag,at,station,point,flight,note``, or IATA Type B bag messages (BSM, BPM). Its type
        comes from the extension unless given: ``.csv`` is ``text/csv``, ``.json`` is
        ``application/json``, anything else (and bytes) ``text/plain``. The answer has
        ``accepted``, ``matched``, ``unmatched``, ``duplicates`` and ``errors`` (``line``,
        ``detail``): bad lines are reported and the good ones kept. ``progress(sent_bytes,
        total_bytes)`` is called as the body goes out, from zero again if a retry sends it again.
        """
        return self._perform(
            _upload_scans_call(data, content_type=content_type, progress=progress, idempotency_key=idempotency_key)
        )

    def whoami(self) -> dict[str, Any]:
        """Who Baton takes the key to be: ``kind`` (``partner``), ``partner`` (its id) and ``name``."""
        return self._perform(_Call(method="GET", path="/v1/me"))

    def _perform(self, call: _Call) -> dict[str, Any]:
        """Send ``call`` and return its JSON answer, or raise the problem it carries."""
        return _result(self._send(call))

    def _send(self, call: _Call) -> httpx.Response:
        """Send ``call``, retrying transient failures; each attempt is a new, newly signed request."""
        attempt = 0
        while True:
            try:
                response = self._http.send(_request(self._http, call))
            except _TRANSIENT_ERRORS as exc:
                if attempt >= self._retries:
                    raise BatonTransportError(f"{call.method} {call.path}: {exc}") from exc
            except httpx.TransportError as exc:
                raise BatonTransportError(f"{call.method} {call.path}: {exc}") from exc
            else:
                if response.status_code not in RETRY_STATUSES or attempt >= self._retries:
                    return response
            self._sleep(_backoff(attempt))
            attempt += 1


class AsyncBatonClient:
    """The asynchronous twin of ``BatonClient``: same methods, awaited; use ``async with``."""

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, auth=auth, timeout=timeout, transport=transport)
        self._retries = retries
        self._sleep = sleep

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connection pool."""
        await self._http.aclose()

    async def post_update(
        self,
        ref: str,
        *,
        status: str | None = None,
        message: str | None = None,
        internal_note: str | None = None,
        location: str | None = None,
        eta: datetime | None = None,
        occurred_at: datetime | None = None,
        next_update_by: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Post a status update or note on a case; returns the created event (``seq``, ``hash``)."""
        return await self._perform(
            _post_update_call(
                ref,
                status=status,
                message=message,
                internal_note=internal_note,
                location=location,
                eta=eta,
                occurred_at=occurred_at,
                next_update_by=next_update_by,
                idempotency_key=idempotency_key,
            )
        )

    async def hand_off(
        self,
        ref: str,
        *,
        to: str,
        note: str | None = None,
        accept_within: timedelta | str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Pass custody to another partner, who must accept within ``accept_within``; returns the handoff."""
        return await self._perform(
            _hand_off_call(ref, to=to, note=note, accept_within=accept_within, idempotency_key=idempotency_key)
        )

    async def accept_handoff(self, ref: str, handoff_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Accept custody handed to this partner; returns the handoff."""
        return await self._perform(_accept_handoff_call(ref, handoff_id, idempotency_key=idempotency_key))

    async def cases(
        self, *, status: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """One page of the cases this partner is party to: ``{"items": [...], "next_cursor": ...}``."""
        return await self._perform(_cases_call(status=status, cursor=cursor, limit=limit))

    async def iter_cases(self, *, status: str | None = None, limit: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every case this partner is party to, fetching further pages as they are needed."""
        cursor: str | None = None
        while True:
            page = await self.cases(status=status, cursor=cursor, limit=limit)
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def case(self, ref: str) -> dict[str, Any]:
        """One case with its parties."""
        return await self._perform(_Call(method="GET", path=f"/v1/cases/{_segment(ref)}"))

    async def events(self, ref: str) -> dict[str, Any]:
        """A case's timeline as this partner may see it (no ``internal`` events)."""
        return await self._perform(_Call(method="GET", path=f"/v1/cases/{_segment(ref)}/events"))

    async def attach(
        self,
        ref: str,
        file: FileInput,
        *,
        kind: str,
        note: str | None = None,
        visibility: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        progress: Progress | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Upload a file (a path, or bytes) as evidence on a case; returns the attachment.

        ``kind`` is ``photo``, ``receipt``, ``document`` or ``proof_of_delivery``; ``visibility``
        is ``public``, ``parties`` or ``internal``, Baton's default when omitted. The content type
        is guessed from the file name unless given. ``progress(sent_bytes, total_bytes)`` is called
        as the body goes out, from zero again if a retry sends it again.
        """
        return await self._perform(
            _attach_call(
                ref,
                file,
                kind=kind,
                note=note,
                visibility=visibility,
                filename=filename,
                content_type=content_type,
                progress=progress,
                idempotency_key=idempotency_key,
            )
        )

    async def attachments(self, ref: str, *, cursor: str | None = None) -> dict[str, Any]:
        """One page of a case's attachments this partner may see: ``{"items": [...], "next_cursor": ...}``."""
        return await self._perform(_attachments_call(ref, cursor=cursor))

    async def attachment(self, ref: str, attachment_id: str) -> bytes:
        """The bytes of one attachment."""
        return _checked(await self._send(_attachment_call(ref, attachment_id))).content

    async def bundle(self, ref: str) -> bytes:
        """The evidence bundle of a case this partner owns, as Baton wrote it (keep the bytes: they are evidence)."""
        return _checked(await self._send(_bundle_call(ref))).content

    async def delivery(self, ref: str) -> dict[str, Any]:
        """The case's delivery request: ``state``, ``window``, ``collect_at``, ``address``..."""
        return await self._perform(_Call(method="GET", path=f"/v1/cases/{_segment(ref)}/delivery"))

    async def delivery_slots(self, ref: str) -> dict[str, Any]:
        """The delivery windows on offer: ``{"items": [{"start": ..., "end": ...}]}``."""
        return await self._perform(_Call(method="GET", path=f"/v1/cases/{_segment(ref)}/delivery/slots"))

    async def accept_delivery(self, ref: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Take on a delivery, as its courier; returns the delivery."""
        return await self._perform(_accept_delivery_call(ref, idempotency_key=idempotency_key))

    async def deliver(
        self,
        ref: str,
        *,
        photo: FileInput | None = None,
        signature: FileInput | None = None,
        pin: str | None = None,
        bag_tag: str | None = None,
        progress: Progress | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Record proof of delivery, as the courier; returns ``seq``, ``state`` and ``attachments``.

        Give any of ``photo`` and ``signature`` (an image of it), each a path or bytes, ``pin`` and
        ``bag_tag``; only those given are sent. A wrong PIN or tag is a ``BatonAPIError`` (422).
        """
        return await self._perform(
            _deliver_call(
                ref,
                photo=photo,
                signature=signature,
                pin=pin,
                bag_tag=bag_tag,
                progress=progress,
                idempotency_key=idempotency_key,
            )
        )

    async def claims(self, ref: str) -> dict[str, Any]:
        """A case's compensation claims: ``{"items": [...], "next_cursor": ...}``.

        Each claim has its ``state`` (``filed``, ``approved``, ``partly_approved``, ``rejected``,
        ``paid``), its ``items``, ``totals`` per currency, ``answer_due`` and ``overdue``, and the
        ``decision`` and ``paid`` records once there are any. The case's owner and Baton's staff may
        read them; another party gets a 403 ``BatonAPIError``.
        """
        return await self._perform(_Call(method="GET", path=_claims_path(ref)))

    async def file_claim(
        self, ref: str, *, kind: str, items: Sequence[ClaimItem], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """File a claim on the customer's behalf, as the case's owner; returns the claim.

        ``kind`` is ``interim_expenses``, ``damage``, ``loss`` or ``delay``. Each item is a dict
        (``description``, ``amount``, ``currency``, ``attachment``) or a ``(description, amount,
        currency)`` tuple; amounts are ``Decimal`` or ``str``, and a ``float`` raises ``TypeError``.
        """
        return await self._perform(_file_claim_call(ref, kind=kind, items=items, idempotency_key=idempotency_key))

    async def decide(
        self,
        ref: str,
        claim_id: int | str,
        *,
        decision: str,
        amount: Money | None = None,
        currency: str | None = None,
        reason: str,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Decide a claim: ``approved``, ``partly_approved`` or ``rejected``; returns the claim.

        ``amount`` (a ``Decimal`` or ``str``) and ``currency`` are what is granted, required unless
        the claim is rejected; only those given are sent.
        """
        return await self._perform(
            _decide_call(
                ref,
                claim_id,
                decision=decision,
                amount=amount,
                currency=currency,
                reason=reason,
                idempotency_key=idempotency_key,
            )
        )

    async def mark_paid(
        self, ref: str, claim_id: int | str, *, reference: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Record that a decided claim was paid, with the payment's ``reference``; returns the claim."""
        return await self._perform(_mark_paid_call(ref, claim_id, reference=reference, idempotency_key=idempotency_key))

    async def rights(self, ref: str) -> dict[str, Any]:
        """What the customer is entitled to on a case: ``{"items": [...], ...}``, as Baton has it."""
        return await self._perform(_Call(method="GET", path=f"/v1/cases/{_segment(ref)}/rights"))

    async def upload_scans(
        self,
        data: FileInput,
        *,
        content_type: str | None = None,
        progress: Progress | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Send a batch of bag scans (a path, or bytes); returns Baton's tally of them.

        The file goes as it is: JSON (``{"scans": [...]}``), CSV with the header
        ``bag_tag,at,station,point,flight,note``, or IATA Type B bag messages (BSM, BPM). Its type
        comes from the extension unless given: ``.csv`` is ``text/csv``, ``.json`` is
        ``application/json``, anything else (and bytes) ``text/plain``. The answer has
        ``accepted``, ``matched``, ``unmatched``, ``duplicates`` and ``errors`` (``line``,
        ``detail``): bad lines are reported and the good ones kept. ``progress(sent_bytes,
        total_bytes)`` is called as the body goes out, from zero again if a retry sends it again.
        """
        return await self._perform(
            _upload_scans_call(data, content_type=content_type, progress=progress, idempotency_key=idempotency_key)
        )

    async def whoami(self) -> dict[str, Any]:
        """Who Baton takes the key to be: ``kind`` (``partner``), ``partner`` (its id) and ``name``."""
        return await self._perform(_Call(method="GET", path="/v1/me"))

    async def _perform(self, call: _Call) -> dict[str, Any]:
        """Send ``call`` and return its JSON answer, or raise the problem it carries."""
        return _result(await self._send(call))

    async def _send(self, call: _Call) -> httpx.Response:
        """Send ``call``, retrying transient failures; each attempt is a new, newly signed request."""
        attempt = 0
        while True:
            try:
                response = await self._http.send(_request(self._http, call))
            except _TRANSIENT_ERRORS as exc:
                if attempt >= self._retries:
                    raise BatonTransportError(f"{call.method} {call.path}: {exc}") from exc
            except httpx.TransportError as exc:
                raise BatonTransportError(f"{call.method} {call.path}: {exc}") from exc
            else:
                if response.status_code not in RETRY_STATUSES or attempt >= self._retries:
                    return response
            await self._sleep(_backoff(attempt))
            attempt += 1
