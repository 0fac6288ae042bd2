"""Receiving a file upload: streamed to disk, size-limited, its body digest computed on the way.

The attachment and delivery-proof routes are the only ones whose bodies may exceed
``max_body_bytes`` (``BATON_ATTACHMENT_MAX_BYTES``, 10 MiB by default). Their bodies are never
held in memory:

1. The caller is authenticated from the headers alone before a byte of the body is read: a
   partner's signature (which must cover ``content-digest``) or a staff token, or the customer's
   status link. An anonymous sender costs Baton nothing but the headers.
2. The body is read in chunks: each chunk is added to a sha-256 of the whole body and fed to a
   streaming ``multipart/form-data`` parser that writes file parts straight to a temporary
   folder (hashing each) and keeps the few short text fields. Past the limit: 413 at once.
3. ``Upload.check_digest`` compares the body's sha-256 with the signed ``Content-Digest``
   (401 when they differ), so the signature covers every byte of every file.

The temporary folder is removed when the ``receive_upload`` block ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from kernel.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from partners.signatures import check_body_digest

MAX_FIELD_BYTES = 4096  # a text field (kind, note, pin, ...): anything longer is not one of ours
MAX_PARTS = 8
ENVELOPE_BYTES = 64 * 1024  # multipart headers and text fields, on top of the files


@dataclass
class UploadedFile:
    field: str
    path: Path
    filename: str | None
    content_type: str | None
    size: int
    sha256: str


@dataclass
class Upload:
    """A received multipart body: its text fields, its files on disk, and the whole body's sha-256."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)
    body_sha256: bytes = b""
    size: int = 0

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value if value is None or value.strip() else None

    def check_digest(self, header: str | None) -> None:
        """The signed Content-Digest must be this body's sha-256 (step 3)."""
        check_body_digest(header, self.body_sha256)


def upload_limit(attachment_max_bytes: int) -> int:
    """The largest body the upload routes read: the file (or, for a proof, two) plus the envelope."""
    return 2 * attachment_max_bytes + ENVELOPE_BYTES


class _Parts:
    """Callbacks of the streaming parser: file parts to disk, text parts to memory."""

    def __init__(self, folder: Path, *, file_fields: frozenset[str], max_file_bytes: int, max_parts: int) -> None:
        self.folder = folder
        self.max_parts = max_parts
        self.file_fields = file_fields
        self.max_file_bytes = max_file_bytes
        self.upload = Upload()
        self.parts = 0
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._filename: str | None = None
        self._ctype: str | None = None
        self._out: IO[bytes] | None = None
        self._hash: Any = None
        self._size = 0
        self._text = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin, "on_part_data": self._data, "on_part_end": self._end,
            "on_header_field": self._hfield, "on_header_value": self._hvalue, "on_header_end": self._hend,
            "on_headers_finished": self._headers_done,
        }

    def _begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise BadRequest(f"At most {self.max_parts} form fields.")
        self._headers, self._name, self._filename, self._ctype = {}, None, None, None
        self._out, self._hash, self._size, self._text = None, None, 0, bytearray()

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _hend(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise BadRequest("A form part has no name.")
        self._name = name.decode("utf-8", errors="replace")
        filename = options.get(b"filename")
        self._filename = filename.decode("utf-8", errors="replace") if filename is not None else None
        ctype = self._headers.get(b"content-type")
        self._ctype = ctype.decode("latin-1") if ctype else None
        if self._name in self.upload.fields or self._name in self.upload.files:
            raise BadRequest(f"The form field {self._name!r} is repeated.")
        if self._name in self.file_fields:
            self._out = open(self.folder / f"part-{self.parts}", "wb")  # noqa: SIM115 (closed in _end)
            self._hash = hashlib.sha256()

    def _data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        self._size += len(chunk)
        if self._out is not None:
            if self._size > self.max_file_bytes:
                raise PayloadTooLarge(f"A file is over {self.max_file_bytes // (1024 * 1024)} MiB.")
            self._out.write(chunk)
            self._hash.update(chunk)
        elif self._size > MAX_FIELD_BYTES:
            raise BadRequest(f"The form field {self._name!r} is too long.")
        else:
            self._text += chunk

    def _end(self) -> None:
        assert self._name is not None
        if self._out is not None:
            self._out.close()
            self.upload.files[self._name] = UploadedFile(
                field=self._name, path=Path(self._out.name), filename=self._filename, content_type=self._ctype,
                size=self._size, sha256=self._hash.hexdigest(),
            )
            self._out = None
        else:
            try:
                self.upload.fields[self._name] = self._text.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"The form field {self._name!r} is not UTF-8 text.") from None
            if "\x00" in self.upload.fields[self._name]:
                raise BadRequest("NUL characters are not allowed in the body.")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


@contextlib.asynccontextmanager
async def receive_upload(
    request: Request, *, file_fields: frozenset[str], max_file_bytes: int, max_parts: int = MAX_PARTS
) -> AsyncIterator[Upload]:
    """Steps 2 of the module docstring; the caller authenticated the request first (step 1)."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType("Send the file as multipart/form-data.")
    limit = upload_limit(max_file_bytes)
    with tempfile.TemporaryDirectory(prefix="baton-upload-") as folder:
        parts = _Parts(Path(folder), file_fields=file_fields, max_file_bytes=max_file_bytes, max_parts=max_parts)
        parser = MultipartParser(boundary, parts.callbacks())
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"The body is over {limit // (1024 * 1024)} MiB.")
                digest.update(chunk)
                written = parser.write(chunk)
                if written != len(chunk):
                    raise BadRequest("The multipart body is malformed.")
            parser.finalize()
        except ClientDisconnect:
            raise BadRequest("The upload was interrupted.") from None
        except (PayloadTooLarge, BadRequest):
            raise
        except Exception as error:  # the parser's own errors: a malformed body
            raise BadRequest("The multipart body is malformed.") from error
        finally:
            parts.close()
        upload = parts.upload
        upload.body_sha256, upload.size = digest.digest(), size
        yield upload
