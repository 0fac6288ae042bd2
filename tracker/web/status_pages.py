"""The customer's status link: ``/s/{token}`` (HTML, no JavaScript) and ``/v1/status/{token}`` (JSON).

The token is looked up first, then counted: an unknown token counts against its client address
(``tracker.web.proxies.client_address``), and past 20 unknown tokens in a minute the address gets
429 instead of 404 for the rest of the minute. A valid token is never refused by that limit:
behind a carrier NAT or a load balancer one address is every customer, and a guesser there must not
lock them all out. A valid link polled from one address more than 120 times a minute is limited
on its own (keyed by address and case). An unknown, malformed or erased token gets the same 404.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession

from pydantic import ValidationError

from tracker import claims
from tracker import delivery as delivery_service
from tracker import evidence
from tracker import status as customer_side
from kernel.errors import BatonError, Conflict, NotFound, PayloadTooLarge, TooManyRequests, Unprocessable
from tracker.claims import ClaimIn
from tracker.delivery import DeliveryRequestIn
from tracker.web.evidence import file_response
from tracker.web.uploads import receive_upload
from kernel.locales import LOCALES, STATUS_PAGE, Words
from tracker.models import Case
from tracker.parties import PartyState
from tracker.schemas import Problem
from tracker.status import StatusOut
from tracker.web.deps import Runtime, db_session, open_session, runtime, unknown_links_counted
from tracker.web.proxies import client_address

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["PartyState"] = PartyState
router = APIRouter(tags=["customer"])


class Lookup:
    """Find the case of a token under the per-address limits."""

    def __init__(self, request: Request, session: AsyncSession) -> None:
        self.request = request
        self.session = session
        self.rt: Runtime = runtime(request)
        self.address = client_address(request)

    async def case(self, token: str, *, for_update: bool = False) -> Case:
        limits, now = self.rt.limits, self.rt.limits.now()
        with unknown_links_counted(self.request, what="status links"):
            case = await customer_side.case_for_token(session=self.session, token=token, for_update=for_update)
        polled = f"{self.address} {case.id}"
        limits.status_lookups.check(polled, now, detail="Too many status requests from your address.")
        limits.status_lookups.hit(polled, now)
        return case


def _locale(request: Request, case: Case | None) -> str:
    return LOCALES.pick(preferred=case.customer_locale if case else None,
                        accept_language=request.headers.get("accept-language"))


def _words(request: Request, case: Case | None) -> Words:
    """The page's texts (``msgctxt "status page"`` in the catalogs) and times in the customer's zone."""
    return LOCALES.words(_locale(request, case), case.customer_timezone if case else "UTC", context=STATUS_PAGE)


def _item(t: Words, case: Case) -> str:
    return t("parcel") if case.type == "parcel" else t("bag")


def _problem_page(request: Request, error: BatonError) -> HTMLResponse:
    t = _words(request, None)
    if isinstance(error, TooManyRequests):
        title, text = t("Page not found"), t("Too many attempts from your connection. "
                                             "Please wait a minute and try again.")
    elif isinstance(error, NotFound):
        title, text = t("Page not found"), t("This link is not valid. Please use the latest link we sent you, or "
                                             "contact the airline or company that opened your case.")
    else:
        title, text = error.title, error.detail
    response = templates.TemplateResponse(
        request, "status/message.html", {"t": t, "title": title, "text": text, "form_action": None},
        status_code=error.status,
    )
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


async def _page(request: Request, session: AsyncSession, token: str, **flags: Any) -> HTMLResponse:
    case = await Lookup(request, session).case(token)
    t = _words(request, case)
    view = await customer_side.status_of(session=session, case=case, locale=t.locale,
                                         now=runtime(request).clock.now())
    return templates.TemplateResponse(
        request, "status/page.html",
        {"t": t, "s": view, "token": token, "item": _item(t, case), "currency": _currency(case), **flags},
    )


def _currency(case: Case) -> str:
    """The claim form's suggested currency, from where the customer is (they can change it)."""
    zone = case.customer_timezone or ""
    if zone.startswith(("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
                        "America/Phoenix", "America/Anchorage", "Pacific/Honolulu")):
        return "USD"
    return {"Europe/London": "GBP", "Europe/Zurich": "CHF", "Europe/Warsaw": "PLN"}.get(zone, "EUR")


@router.get("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
async def status_page(
    request: Request, token: str, sent: str | None = None, answered: str | None = None,
    uploaded: str | None = None, delivery: str | None = None, claimed: str | None = None,
    session: AsyncSession = Depends(db_session),
) -> HTMLResponse:
    try:
        return await _page(request, session, token, sent=sent == "1",
                           answered=answered if answered in ("satisfied", "dissatisfied") else None,
                           uploaded=uploaded == "1", delivery_sent=delivery == "1", claimed=claimed == "1")
    except BatonError as error:
        return _problem_page(request, error)


@router.post("/s/{token}/messages", include_in_schema=False)
async def status_page_message(
    request: Request, token: str, message: str = Form(default="", max_length=2000),
    session: AsyncSession = Depends(db_session),
) -> Response:
    try:
        case = await Lookup(request, session).case(token, for_update=True)
        if not message.strip():
            raise Conflict("Your message was empty.")
        await customer_side.post_customer_message(session=session, case=case, text=message,
                                                  now=runtime(request).clock.now(), via="status page")
        await session.commit()
    except BatonError as error:
        return _problem_page(request, error)
    return RedirectResponse(f"/s/{token}?sent=1", status_code=303)


@router.post("/s/{token}/confirmation", include_in_schema=False)
async def status_page_confirmation(
    request: Request, token: str, satisfied: str = Form(pattern="^(yes|no)$"),
    comment: str = Form(default="", max_length=2000), session: AsyncSession = Depends(db_session),
) -> Response:
    try:
        await Lookup(request, session).case(token)
        case = await customer_side.confirm(session=session, token=token, satisfied=satisfied == "yes",
                                           comment=comment, now=runtime(request).clock.now())
        await session.commit()
    except BatonError as error:
        return _problem_page(request, error)
    return RedirectResponse(f"/s/{token}?answered={case.satisfaction}", status_code=303)


@router.get("/s/{token}/unsubscribe", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_page(request: Request, token: str, session: AsyncSession = Depends(db_session)) -> HTMLResponse:
    try:
        case = await Lookup(request, session).case(token)
    except BatonError as error:
        return _problem_page(request, error)
    t = _words(request, case)
    return templates.TemplateResponse(request, "status/message.html", {
        "t": t, "title": t("Stop emails about {ref}", ref=case.ref), "text": "",
        "form_action": f"/s/{token}/unsubscribe", "button": t("Stop emails"),
    })


@router.post("/s/{token}/unsubscribe", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe(request: Request, token: str, session: AsyncSession = Depends(db_session)) -> HTMLResponse:
    """One-click unsubscribe (RFC 8058) from the case's emails; the page stays available."""
    try:
        await Lookup(request, session).case(token)
        case = await customer_side.unsubscribe_email(session=session, token=token, now=runtime(request).clock.now())
        await session.commit()
    except BatonError as error:
        return _problem_page(request, error)
    t = _words(request, case)
    return templates.TemplateResponse(request, "status/message.html", {
        "t": t, "title": t("Stop emails about {ref}", ref=case.ref),
        "text": t("You will not receive further emails about this case. This page stays available."),
        "form_action": None,
    })


# ---------------------------------------------------------------- files and delivery

CUSTOMER_KINDS = ("photo", "receipt", "document")


@router.post("/s/{token}/attachments", include_in_schema=False)
async def status_page_attachment(request: Request, token: str) -> Response:
    """The customer adds a photo, a receipt or a document: streamed in like every upload, no account."""
    rt = runtime(request)
    try:
        async with open_session(request) as session:
            await Lookup(request, session).case(token)  # an unknown link is refused before the body is read
        async with receive_upload(request, file_fields=frozenset({"file"}),
                                  max_file_bytes=rt.settings.attachment_max_bytes) as upload:
            file = upload.files.get("file")
            if file is None or file.size == 0:
                raise Unprocessable("Choose a file to send.")
            kind = (upload.text("kind") or "photo").strip()
            if kind not in CUSTOMER_KINDS:
                raise Unprocessable("Choose what the file is: a photo, a receipt or a document.")
            note = (upload.text("note") or "").strip()[:2000] or None
            kept = await evidence.keep(store=rt.store, path=file.path, original_sha256=file.sha256,
                                       filename=file.filename)
        async with open_session(request) as session:
            case = await customer_side.case_for_token(session=session, token=token, for_update=True)
            await evidence.attach_for_customer(session=session, case=case, kept=kept, kind=kind, note=note,
                                               now=rt.clock.now())
            await session.commit()
    except BatonError as error:
        return _problem_page(request, error)
    return RedirectResponse(f"/s/{token}?uploaded=1#files", status_code=303)


@router.post("/s/{token}/claims", include_in_schema=False)
async def status_page_claim(request: Request, token: str) -> Response:
    """The customer files a claim: the page's form (up to three items and a receipt, streamed like every
    upload) or JSON (``tracker.claims.ClaimIn``, receipts named by their attachment ids)."""
    rt = runtime(request)
    try:
        async with open_session(request) as session:
            await Lookup(request, session).case(token)  # an unknown link is refused before the body is read
        kept = None
        if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
            payload = await _json_claim(request, rt.settings.max_body_bytes)
        else:
            async with receive_upload(request, file_fields=frozenset({"receipt"}), max_parts=16,
                                      max_file_bytes=rt.settings.attachment_max_bytes) as upload:
                payload = _form_claim(upload)
                receipt = upload.files.get("receipt")
                if receipt is not None and receipt.size > 0:
                    kept = await evidence.keep(store=rt.store, path=receipt.path, original_sha256=receipt.sha256,
                                               filename=receipt.filename)
        async with open_session(request) as session:
            now = rt.clock.now()
            case = await customer_side.case_for_token(session=session, token=token, for_update=True)
            if kept is not None:
                attachment = await evidence.attach_for_customer(session=session, case=case, kept=kept,
                                                                kind="receipt", note=None, now=now)
                payload.items[0].attachment = attachment.id
            await claims.file_claim(session=session, case=case, payload=payload, actor="customer", now=now,
                                    from_customer=True)
            await session.commit()
    except BatonError as error:
        if request.headers.get("content-type", "").startswith("application/json"):
            raise
        return _problem_page(request, error)
    if request.headers.get("content-type", "").startswith("application/json"):
        return Response(status_code=201)
    return RedirectResponse(f"/s/{token}?claimed=1#claims", status_code=303)


async def _json_claim(request: Request, limit: int) -> ClaimIn:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"The body is over {limit // 1024} KiB.")
    try:
        return ClaimIn.model_validate_json(body)
    except ValidationError as invalid:
        raise Unprocessable(_form_error(invalid)) from None


def _form_claim(upload: Any) -> ClaimIn:
    """The form's rows as a claim: empty rows skipped, "12,50" read as 12.50."""
    items = []
    for n in (1, 2, 3):
        description = (upload.text(f"description_{n}") or "").strip()
        amount = (upload.text(f"amount_{n}") or "").strip().replace(",", ".")
        if not description and not amount:
            continue
        items.append({"description": description, "amount": amount,
                      "currency": (upload.text(f"currency_{n}") or "").strip().upper()})
    try:
        return ClaimIn.model_validate({"kind": (upload.text("kind") or "").strip(), "items": items})
    except ValidationError as invalid:
        raise Unprocessable(_form_error(invalid)) from None


@router.get("/s/{token}/files/{attachment_id}", include_in_schema=False)
async def status_page_file(request: Request, token: str, attachment_id: int,
                           session: AsyncSession = Depends(db_session)) -> Response:
    return await _customer_file(request, session, token, attachment_id, thumbnail=False)


@router.get("/s/{token}/files/{attachment_id}/thumbnail", include_in_schema=False)
async def status_page_thumbnail(request: Request, token: str, attachment_id: int,
                                session: AsyncSession = Depends(db_session)) -> Response:
    return await _customer_file(request, session, token, attachment_id, thumbnail=True)


async def _customer_file(request: Request, session: AsyncSession, token: str, attachment_id: int, *,
                         thumbnail: bool) -> Response:
    """One of the files the customer may see (theirs, and the public ones), or the page's own 404."""
    try:
        case = await Lookup(request, session).case(token)
        found = await evidence.customer_file(session, case, attachment_id)
        return await file_response(runtime(request).store, found, thumbnail=thumbnail)
    except BatonError as error:
        return _problem_page(request, error)


@router.post("/s/{token}/delivery", include_in_schema=False)
async def status_page_delivery(
    request: Request, token: str, how: str = Form(default="deliver", pattern="^(deliver|collect)$"),
    line1: str = Form(default="", max_length=200), line2: str = Form(default="", max_length=200),
    city: str = Form(default="", max_length=100), postcode: str = Form(default="", max_length=20),
    country: str = Form(default="", max_length=2), phone: str = Form(default="", max_length=32),
    window: str = Form(default="any", max_length=80), instructions: str = Form(default="", max_length=500),
    collect_at: str = Form(default="", max_length=3), session: AsyncSession = Depends(db_session),
) -> Response:
    """The customer says where and when: an address and one of the courier's slots, or collection at an airport."""
    try:
        case = await Lookup(request, session).case(token, for_update=True)
        fields: dict[str, object] = {"instructions": instructions.strip() or None}
        if how == "collect":
            fields["collect_at"] = collect_at.strip() or None
        else:
            fields["address"] = {"line1": line1.strip(), "line2": line2.strip() or None, "city": city.strip(),
                                 "postcode": postcode.strip(), "country": country.strip()}
            fields["phone"] = phone.strip() or None
        if window != "any":
            start, _, end = window.partition("/")
            fields["window"] = {"start": start, "end": end}
        try:
            payload = DeliveryRequestIn.model_validate(fields)
        except ValidationError as invalid:
            raise Unprocessable(_form_error(invalid)) from None
        await delivery_service.request_delivery(session=session, case=case, payload=payload, actor="customer",
                                                now=runtime(request).clock.now())
        await session.commit()
    except BatonError as error:
        return _problem_page(request, error)
    return RedirectResponse(f"/s/{token}?delivery=1#delivery", status_code=303)


def _form_error(invalid: ValidationError) -> str:
    """The first problem with the form, in plain words (the page shows it above a link back)."""
    first = invalid.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("address",))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}


@router.get("/v1/status/{token}", response_model=StatusOut,
            responses={404: {**_PROBLEM, "description": "No case has this status link (unknown or rotated)."},
                       429: {**_PROBLEM, "description": "Too many lookups or unknown links from this address."}})
async def get_status(request: Request, token: str, session: AsyncSession = Depends(db_session)) -> StatusOut:
    """The status page as JSON, for the customer's link holder (no other credentials)."""
    case = await Lookup(request, session).case(token)
    return await customer_side.status_of(session=session, case=case, locale=_locale(request, case),
                                         now=runtime(request).clock.now())


# Registered last, so that only paths no route above takes end here: a "token" with a slash in it
# (``/s/..%2F..%2Fetc``) is malformed, and gets the same 404 as an unknown token, counted like one.
@router.get("/s/{token:path}", response_class=HTMLResponse, include_in_schema=False)
async def status_page_malformed(
    request: Request, token: str, session: AsyncSession = Depends(db_session)
) -> HTMLResponse:
    return await status_page(request, token, session=session)


@router.get("/v1/status/{token:path}", response_model=StatusOut, include_in_schema=False)
async def get_status_malformed(request: Request, token: str, session: AsyncSession = Depends(db_session)) -> StatusOut:
    return await get_status(request, token, session=session)
