"""Attachments: files kept as evidence on a case, by the digest of their cleaned bytes.

1. The web layer receives the upload (``tracker.web.uploads``: streamed, size-limited, the
   signature's Content-Digest checked over the whole body), and ``keep`` cleans it
   (``_content``: type from the content, images re-encoded without metadata), makes a thumbnail
   and puts both in the store (``kernel.storage``) before anything is written to the database:
   whatever is acknowledged is already stored. A file stored by a request that then fails is
   harmless: it is named by its digest, and a retry stores the same name.
2. ``record`` writes the row and the ``attachment.added`` event, which carries the stored file's
   ``sha256`` (what anyone can check the file against) and ``original_sha256`` (the bytes that
   arrived, covered by a partner's signed Content-Digest; the original itself is not kept, since it
   holds the metadata that was stripped).
3. Who sees a file: staff, every one; a party, what is not ``internal``; the customer, their own
   and the ``public`` ones. Anyone else gets the 404 of a case they cannot see.
4. Erasure (``tracker.erasure``) marks the customer's files and the delivery proof erased and
   deletes their objects once no live attachment shares the digest; the rows and events keep the
   digests, so the chain still verifies.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.errors import Forbidden, NotFound, UnsupportedMediaType
from kernel.pagination import Page
from kernel.storage import BlobStore
from tracker import trust
from tracker.access import load_case, require_open, signature_of
from tracker.evidence._content import ContentRefused, clean, thumbnail
from tracker.invitations import confirm_invitation
from tracker.models import Attachment, Case
from tracker.parties import PartyState
from tracker.principals import Principal
from tracker.timeline import append_event

Kind = Literal["photo", "receipt", "document", "proof_of_delivery"]
KINDS: tuple[str, ...] = ("photo", "receipt", "document", "proof_of_delivery")
VISIBILITIES = ("public", "parties", "internal")
# The customer's own files, and a delivery's proof (their door, their signature), go with them.
ERASED_WITH_CUSTOMER_KINDS = ("proof_of_delivery",)


@dataclass(frozen=True, slots=True)
class Kept:
    """A cleaned file and its thumbnail, already in the store."""

    sha256: str
    content_type: str
    size: int
    original_sha256: str
    filename: str | None
    width: int | None = None
    height: int | None = None
    thumbnail_sha256: str | None = None


class AttachmentOut(BaseModel):
    id: int
    sha256: str = Field(description="Of the stored file (images re-encoded without metadata).")
    content_type: str
    size: int
    kind: Kind
    visibility: Literal["public", "parties", "internal"]
    seq: int = Field(description="The attachment.added event.")
    original_sha256: str = Field(description="Of the bytes received (covered by a partner's signed Content-Digest).")
    note: str | None = None
    filename: str | None = None
    actor: str
    created_at: dt.datetime
    thumbnail: bool
    erased: bool = False


class AttachmentList(Page[AttachmentOut]):
    """The case's attachments the caller may see, oldest first."""


def attachment_out(attachment: Attachment) -> AttachmentOut:
    return AttachmentOut(
        id=attachment.id, sha256=attachment.sha256, content_type=attachment.content_type, size=attachment.size,
        kind=attachment.kind, visibility=attachment.visibility, seq=attachment.seq,  # type: ignore[arg-type]
        original_sha256=attachment.original_sha256, note=attachment.note, filename=attachment.filename,
        actor=attachment.actor, created_at=attachment.created_at,
        thumbnail=attachment.thumbnail_sha256 is not None, erased=attachment.erased_at is not None,
    )


# ---------------------------------------------------------------- step 1: keep the file


async def keep(*, store: BlobStore, path: Path, original_sha256: str, filename: str | None,
               max_pixels: int = 50_000_000) -> Kept:
    """Clean the received file, make its thumbnail, and put both in the store; 415 for what is not accepted."""
    with tempfile.TemporaryDirectory(prefix="baton-clean-") as workdir:
        try:
            cleaned = await asyncio.to_thread(clean, path, workdir=Path(workdir), max_pixels=max_pixels)
            thumb = await asyncio.to_thread(thumbnail, cleaned.path, cleaned.content_type, workdir=Path(workdir))
        except ContentRefused as refused:
            raise UnsupportedMediaType(str(refused.detail)) from None
        await store.put_file(cleaned.sha256, cleaned.path, content_type=cleaned.content_type)
        if thumb is not None:
            await store.put_file(thumb.sha256, thumb.path, content_type=thumb.content_type)
    return Kept(sha256=cleaned.sha256, content_type=cleaned.content_type, size=cleaned.size,
                original_sha256=original_sha256, filename=_filename(filename), width=cleaned.width,
                height=cleaned.height, thumbnail_sha256=thumb.sha256 if thumb else None)


def _filename(name: str | None) -> str | None:
    """Only the last path segment, printable, at most 200 characters: it is shown, never used as a path."""
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:200] or None


# ---------------------------------------------------------------- step 2: record it


async def record(
    *, session: AsyncSession, case: Case, kept: Kept, kind: str, visibility: str, note: str | None, actor: str,
    now: dt.datetime, partner_id: str | None = None, from_customer: bool = False,
    signature: dict[str, Any] | None = None,
) -> Attachment:
    """The attachment row and its ``attachment.added`` event, on a case whose row the caller holds locked."""
    attachment = Attachment(
        case_id=case.id, seq=case.last_seq + 1, kind=kind, visibility=visibility, actor=actor, partner_id=partner_id,
        from_customer=from_customer, sha256=kept.sha256, original_sha256=kept.original_sha256,
        content_type=kept.content_type, size=kept.size, width=kept.width, height=kept.height,
        thumbnail_sha256=kept.thumbnail_sha256, filename=kept.filename, note=note, created_at=now,
    )
    session.add(attachment)
    await session.flush()
    body: dict[str, Any] = {"attachment": attachment.id, "kind": kind, "sha256": kept.sha256,
                            "original_sha256": kept.original_sha256, "content_type": kept.content_type,
                            "size": kept.size}
    if note:
        body["note"] = note
    event = append_event(session=session, case=case, type="attachment.added", actor=actor, partner_id=partner_id,
                         visibility=visibility, body=body, now=now, signature=signature)
    assert event.seq == attachment.seq
    return attachment


def default_visibility(kind: str) -> str:
    return "public" if kind == "proof_of_delivery" else "parties"


async def attach(
    *, session: AsyncSession, principal: Principal, ref: str, kept: Kept, kind: str, visibility: str | None,
    note: str | None, now: dt.datetime,
) -> AttachmentOut:
    """A party (signed) or staff attaches a file to a case it may write to."""
    case, own = await load_case(session=session, principal=principal, ref=ref, for_update=True)
    require_open(case)
    chosen = visibility or default_visibility(kind)
    if chosen == "internal" and not principal.is_staff:
        raise Forbidden("Only staff may attach internal files.")
    if not principal.is_staff:
        trust.check_may_write(own)
        if own is not None and own.state == PartyState.INVITED:
            await confirm_invitation(session=session, case=case, party=own, principal=principal, now=now)
    attachment = await record(session=session, case=case, kept=kept, kind=kind, visibility=chosen, note=note,
                              actor=principal.actor, partner_id=principal.partner_id, now=now,
                              signature=signature_of(principal))
    return attachment_out(attachment)


async def attach_for_customer(
    *, session: AsyncSession, case: Case, kept: Kept, kind: str, note: str | None, now: dt.datetime
) -> Attachment:
    """The customer attaches a file from their status page: the parties see it, and so do they."""
    require_open(case)
    return await record(session=session, case=case, kept=kept, kind=kind, visibility="parties", note=note,
                        actor="customer", from_customer=True, now=now)


# ---------------------------------------------------------------- step 3: who sees what


def party_sees(principal: Principal, attachment: Attachment) -> bool:
    return principal.is_staff or attachment.visibility != "internal"


def customer_sees(attachment: Attachment) -> bool:
    return attachment.erased_at is None and (attachment.visibility == "public" or attachment.from_customer)


async def list_attachments(*, session: AsyncSession, principal: Principal, ref: str) -> AttachmentList:
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    rows = await session.scalars(select(Attachment).where(Attachment.case_id == case.id).order_by(Attachment.id))
    return AttachmentList(items=[attachment_out(a) for a in rows if party_sees(principal, a)], next_cursor=None)


async def find(*, session: AsyncSession, principal: Principal, ref: str, attachment_id: int) -> Attachment:
    """An attachment the caller may read; the same 404 whether it is absent, erased or not theirs to see."""
    case, _ = await load_case(session=session, principal=principal, ref=ref)
    attachment = await session.scalar(
        select(Attachment).where(Attachment.id == attachment_id, Attachment.case_id == case.id)
    )
    if attachment is None or attachment.erased_at is not None or not party_sees(principal, attachment):
        raise NotFound(f"No attachment {attachment_id} on {case.ref}.")
    return attachment


async def for_customer(session: AsyncSession, case: Case) -> list[Attachment]:
    rows = await session.scalars(select(Attachment).where(Attachment.case_id == case.id).order_by(Attachment.id))
    return [a for a in rows if customer_sees(a)]


async def customer_file(session: AsyncSession, case: Case, attachment_id: int) -> Attachment:
    attachment = await session.scalar(
        select(Attachment).where(Attachment.id == attachment_id, Attachment.case_id == case.id)
    )
    if attachment is None or not customer_sees(attachment):
        raise NotFound("No such file.")
    return attachment


# ---------------------------------------------------------------- step 4: erasure


async def erase_for_customer(*, session: AsyncSession, case: Case, now: dt.datetime) -> list[str]:
    """Mark the customer's files (and the delivery proof) erased; the digests whose objects may go."""
    rows = (await session.scalars(select(Attachment).where(Attachment.case_id == case.id))).all()
    digests: list[str] = []
    for attachment in rows:
        if attachment.from_customer or attachment.kind in ERASED_WITH_CUSTOMER_KINDS:
            attachment.erased_at = attachment.erased_at or now
            attachment.note = None
            attachment.filename = None
            digests += [d for d in (attachment.sha256, attachment.thumbnail_sha256) if d]
    return digests


async def delete_unreferenced(*, session: AsyncSession, store: BlobStore, digests: list[str]) -> int:
    """After the erasure commits: delete each object no live attachment (of any case) still uses."""
    if not digests:
        return 0
    live = set((await session.scalars(
        select(Attachment.sha256).where(Attachment.sha256.in_(digests), Attachment.erased_at.is_(None))
    )).all()) | set((await session.scalars(
        select(Attachment.thumbnail_sha256).where(Attachment.thumbnail_sha256.in_(digests),
                                                  Attachment.erased_at.is_(None))
    )).all())
    deleted = 0
    for digest in sorted(set(digests) - live):
        await store.delete(digest)
        deleted += 1
    return deleted
