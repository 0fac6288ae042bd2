"""The ``/v1`` routes of evidence and delivery: attachments, the delivery request, its acceptance and proof.

Upload routes read their own bodies (``tracker.web.uploads``): the caller is authenticated from the
headers first, the body streams to disk with its digest checked against the signature, the file is
cleaned and stored (``tracker.evidence.keep``), and only then is a transaction opened to record it
through ``Ctx.write`` (idempotency and the commit in one place, as for every write).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import Conflict, Forbidden, NotFound, Unprocessable
from kernel.storage import BlobMissing, BlobStore
from tracker import delivery, evidence
from tracker.access import load_case, require_open
from tracker.admission import Verified, verify_partner
from tracker.delivery import DeliveryRequestIn, DeliveryRequestOut, SlotList
from tracker.evidence import AttachmentList, AttachmentOut
from tracker.models import Attachment, Case, Delivery
from tracker.principals import Principal
from tracker.web.api import PROBLEMS
from tracker.web.deps import Ctx, authenticate, caller, is_signed, open_session, runtime
from tracker.web.uploads import Upload, UploadedFile, receive_upload

router = APIRouter(prefix="/v1", responses=PROBLEMS)

_IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "maxLength": 255},
                "description": "A retry with the same key and body returns the first response."}


def _multipart(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "parameters": [_IDEMPOTENCY],
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "properties": properties, "required": required}}}},
    }


_FILE = {"type": "string", "format": "binary"}
ATTACH_BODY = _multipart({
    "file": {**_FILE, "description": "JPEG, PNG, WebP, HEIC or PDF, read from the content; at most "
                                     "BATON_ATTACHMENT_MAX_BYTES (10 MiB)."},
    "kind": {"type": "string", "enum": list(evidence.KINDS)},
    "note": {"type": "string", "maxLength": 2000},
    "visibility": {"type": "string", "enum": ["public", "parties", "internal"],
                   "description": "Default: parties (proof_of_delivery: public); internal is staff only."},
}, ["file", "kind"])
PROOF_BODY = _multipart({
    "photo": {**_FILE, "description": "The item at the door."},
    "signature": {**_FILE, "description": "An image of the customer's signature."},
    "pin": {"type": "string", "pattern": "^[0-9]{4}$", "description": "The PIN the customer gave the driver."},
    "bag_tag": {"type": "string", "description": "The scanned tag; must be the case's."},
}, [])


# ---------------------------------------------------------------- receiving an upload


@contextlib.asynccontextmanager
async def authenticated_upload(request: Request, *, ref: str, file_fields: frozenset[str]) -> AsyncIterator[
        tuple[Upload, Verified | None]]:
    """Authenticate from the headers, then stream the body in (``tracker.web.uploads``, steps 1-3).

    A caller who may not see the case gets its 404 before a byte of the body is read.
    """
    rt = runtime(request)
    verified = await verify_partner(request=request, rt=rt, body_follows=True) if is_signed(request) else None
    async with open_session(request) as session:
        principal = verified.principal if verified else (await authenticate(request, session)).principal
        await load_case(session=session, principal=principal, ref=ref)
    async with receive_upload(request, file_fields=file_fields,
                              max_file_bytes=rt.settings.attachment_max_bytes) as upload:
        if verified is not None:
            upload.check_digest(request.headers.get("content-digest"))
        yield upload, verified


def _choice(upload: Upload, name: str, allowed: tuple[str, ...], *, default: str | None = None) -> str | None:
    value = upload.text(name)
    if value is None:
        return default
    value = value.strip()
    if value not in allowed:
        raise Unprocessable(f"{name} must be one of {', '.join(allowed)}.")
    return value


def _note(upload: Upload) -> str | None:
    note = upload.text("note")
    if note is not None and len(note) > 2000:
        raise Unprocessable("note is at most 2000 characters.")
    return note.strip() if note else None


async def _keep(request: Request, file: UploadedFile) -> evidence.Kept:
    return await evidence.keep(store=runtime(request).store, path=file.path, original_sha256=file.sha256,
                               filename=file.filename)


# ---------------------------------------------------------------- attachments


@router.post("/cases/{ref}/attachments", status_code=201, response_model=AttachmentOut, openapi_extra=ATTACH_BODY,
             tags=["evidence"])
async def add_case_attachment(ref: str, request: Request) -> Response:
    """Attach a file (parties, signed over the whole multipart body; staff). Images lose their metadata."""
    async with authenticated_upload(request, ref=ref, file_fields=frozenset({"file"})) as (upload, verified):
        file = upload.files.get("file")
        if file is None or file.size == 0:
            raise Unprocessable("Send the file in the form field 'file'.")
        kind = _choice(upload, "kind", evidence.KINDS)
        if kind is None:
            raise Unprocessable(f"kind is required: one of {', '.join(evidence.KINDS)}.")
        visibility = _choice(upload, "visibility", ("public", "parties", "internal"))
        note = _note(upload)
        kept = await _keep(request, file)
        async with open_session(request) as session:
            ctx = await authenticate(request, session, verified=verified)

            async def produce() -> AttachmentOut:
                return await evidence.attach(session=session, principal=ctx.principal, ref=ref, kept=kept, kind=kind,
                                             visibility=visibility, note=note, now=ctx.now())

            return await ctx.write(produce, status_code=201, body_sha256=upload.body_sha256)


@router.get("/cases/{ref}/attachments", response_model=AttachmentList, tags=["evidence"])
async def list_case_attachments(ref: str, ctx: Ctx = Depends(caller)) -> AttachmentList:
    """The case's attachments the caller may see (parties: all but internal ones)."""
    return await evidence.list_attachments(session=ctx.session, principal=ctx.principal, ref=ref)


@router.get("/cases/{ref}/attachments/{attachment_id}", tags=["evidence"],
            responses={200: {"content": {t: {} for t in ("image/jpeg", "image/png", "image/webp", "application/pdf")},
                             "description": "The stored file."}})
async def get_case_attachment(ref: str, attachment_id: int, ctx: Ctx = Depends(caller)) -> Response:
    """The stored file (re-encoded images, PDFs as downloads); 404 unless the caller may see it."""
    found = await evidence.find(session=ctx.session, principal=ctx.principal, ref=ref, attachment_id=attachment_id)
    return await file_response(ctx.rt.store, found)


@router.get("/cases/{ref}/attachments/{attachment_id}/thumbnail", tags=["evidence"],
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}},
                             "description": "A small image of the file."}})
async def get_case_attachment_thumbnail(ref: str, attachment_id: int, ctx: Ctx = Depends(caller)) -> Response:
    found = await evidence.find(session=ctx.session, principal=ctx.principal, ref=ref, attachment_id=attachment_id)
    return await file_response(ctx.rt.store, found, thumbnail=True)


async def file_response(store: BlobStore, attachment: Attachment, *, thumbnail: bool = False) -> Response:
    """Stream a stored file with headers that keep a browser from running or sniffing it."""
    digest = attachment.thumbnail_sha256 if thumbnail else attachment.sha256
    if digest is None:
        raise NotFound("This file has no thumbnail.")
    chunks = store.read(digest)
    try:
        first = await anext(chunks)
    except (BlobMissing, StopAsyncIteration):
        raise NotFound("The file is no longer stored.") from None

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    if thumbnail:
        ctype = "image/png" if attachment.content_type == "image/png" else "image/jpeg"
    else:
        ctype = attachment.content_type
    download = ctype == "application/pdf"
    name = f"{attachment.kind}-{attachment.id}" + _EXTENSIONS.get(ctype, "")
    headers = {
        "Content-Disposition": f'{"attachment" if download else "inline"}; filename="{name}"',
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=3600",
        "ETag": f'"{digest}"',
    }
    if not thumbnail:
        headers["Content-Length"] = str(attachment.size)
    return StreamingResponse(body(), media_type=ctype, headers=headers)


_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "application/pdf": ".pdf"}


# ---------------------------------------------------------------- delivery


@router.get("/cases/{ref}/delivery", response_model=DeliveryRequestOut, tags=["delivery"])
async def get_case_delivery(ref: str, ctx: Ctx = Depends(caller)) -> DeliveryRequestOut:
    """The delivery request and its state; the address only for staff, the owner and the courier."""
    return await delivery.read_delivery(session=ctx.session, principal=ctx.principal, ref=ref)


@router.put("/cases/{ref}/delivery", response_model=DeliveryRequestOut, openapi_extra={"parameters": [_IDEMPOTENCY]},
            tags=["delivery"])
async def put_case_delivery(ref: str, payload: DeliveryRequestIn, ctx: Ctx = Depends(caller)) -> Response:
    """Staff or the owner ask for delivery for the customer; the courier is asked to accept."""
    return await ctx.write(lambda: delivery.put_delivery(session=ctx.session, principal=ctx.principal, ref=ref,
                                                         payload=payload, now=ctx.now()))


@router.get("/cases/{ref}/delivery/slots", response_model=SlotList, tags=["delivery"])
async def list_case_delivery_slots(ref: str, ctx: Ctx = Depends(caller)) -> SlotList:
    """The windows the courier party publishes, for the next days."""
    return await delivery.list_slots(session=ctx.session, principal=ctx.principal, ref=ref, now=ctx.now())


@router.post("/cases/{ref}/delivery/accept", response_model=DeliveryRequestOut, openapi_extra={"parameters": [_IDEMPOTENCY]},
             tags=["delivery"])
async def accept_case_delivery(ref: str, ctx: Ctx = Depends(caller)) -> Response:
    """The courier accepts the delivery and becomes responsible for the case."""
    return await ctx.write(lambda: delivery.accept_delivery(session=ctx.session, principal=ctx.principal, ref=ref,
                                                            now=ctx.now()))


class ProofOut(BaseModel):
    seq: int
    hash: str
    state: delivery.DeliveryState
    attachments: list[dict[str, Any]]


@router.post("/cases/{ref}/delivery/proof", status_code=201, response_model=ProofOut, openapi_extra=PROOF_BODY,
             tags=["delivery"])
async def post_case_delivery_proof(ref: str, request: Request) -> Response:
    """The courier's proof: PIN and bag tag checked (422 when wrong), photo and signature kept; delivered."""
    async with authenticated_upload(request, ref=ref, file_fields=frozenset({"photo", "signature"})) as (upload,
                                                                                                      verified):
        pin, tag = upload.text("pin"), upload.text("bag_tag")
        files = {name: f for name, f in upload.files.items() if f.size > 0}
        if pin is None and tag is None and not files:
            raise Unprocessable("Send at least one proof: photo, signature, pin or bag_tag.")
        # Checked before any file is kept (and before the nonce is spent): a wrong PIN or tag changes nothing.
        async with open_session(request) as session:
            principal = verified.principal if verified else (await authenticate(request, session)).principal
            try:
                await _check_proof(session, principal, ref, pin=pin, tag=tag)
            except delivery.WrongPin:
                await session.commit()  # the wrong PIN counts (and nothing else changed)
                raise
            await session.rollback()
        kept = {name: await _keep(request, f) for name, f in sorted(files.items())}
        async with open_session(request) as session:
            ctx = await authenticate(request, session, verified=verified)

            async def produce() -> dict[str, Any]:
                return await _record_proof(ctx, ref, pin=pin, tag=tag, kept=kept)

            return await ctx.write(produce, status_code=201, body_sha256=upload.body_sha256)


async def _check_proof(session: AsyncSession, principal: Principal, ref: str, *, pin: str | None,
                       tag: str | None) -> tuple[Case, Delivery]:
    case, _ = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    require_open(case)
    current = await delivery.of_case(session, case)
    if current is None:
        raise Conflict(f"No delivery has been requested on {case.ref}.")
    if not principal.is_staff and principal.partner_id != current.courier_id:
        raise Forbidden("Only the courier taking the delivery (or staff) may record its proof.")
    delivery.check_proof(current, case, pin=pin, bag_tag=tag)
    return case, current


async def _record_proof(ctx: Ctx, ref: str, *, pin: str | None, tag: str | None,
                        kept: dict[str, evidence.Kept]) -> dict[str, Any]:
    case, current = await _check_proof(ctx.session, ctx.principal, ref, pin=pin, tag=tag)  # again, under the lock
    recorded = []
    for role, file in kept.items():
        attachment = await evidence.record(
            session=ctx.session, case=case, kept=file, kind="proof_of_delivery",
            visibility="public" if role == "photo" else "parties", note=None, actor=ctx.principal.actor,
            partner_id=ctx.principal.partner_id, now=ctx.now(), signature=None,
        )
        recorded.append({"role": role, "id": attachment.id, "sha256": attachment.sha256})
    return await delivery.complete(session=ctx.session, case=case, delivery=current, principal=ctx.principal,
                                   pin=pin, bag_tag=tag, attachments=recorded, now=ctx.now())
