"""Upload bodies (multipart forms, files of bag scans), built once and sent in chunks.

Baton's signature covers ``Content-Digest``, a hash of the whole body, so an upload is not left
for httpx to encode on the fly: the client encodes the form (or reads the file) to bytes once, the
signer digests those bytes, and every attempt (a retry included) sends exactly them again, in
64 KiB chunks so that progress can be reported as the upload goes.
"""

from __future__ import annotations

import mimetypes
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

CHUNK_SIZE = 64 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# ``progress(sent_bytes, total_bytes)``, called after each chunk is handed to the connection.
Progress = Callable[[int, int], None]
# A file to upload: a path to read, or its bytes.
FileInput = bytes | str | os.PathLike[str]


@dataclass(frozen=True)
class FilePart:
    """A file field of a form: its name as the server will see it, its type and its bytes."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Upload:
    """A body built once, sent as it is on every attempt, and its ``Content-Type``."""

    body: bytes
    content_type: str


# An encoded ``multipart/form-data`` body: an upload whose ``Content-Type`` names its boundary.
Multipart = Upload


def read_file(file: FileInput) -> tuple[bytes, str | None]:
    """A file's bytes and its name: a path lends its own name, bytes have none."""
    if isinstance(file, bytes):
        return file, None
    path = Path(file)
    return path.read_bytes(), path.name


def file_part(
    file: FileInput, *, filename: str | None = None, content_type: str | None = None, default_name: str
) -> FilePart:
    """Read a file for upload; its type is guessed from its name unless given.

    A path lends its own name; bytes without a ``filename`` are sent as ``default_name``. The
    guess is only a hint: Baton decides the type from the content.
    """
    data, own_name = read_file(file)
    name = filename or own_name or default_name
    guessed, _ = mimetypes.guess_type(name)
    return FilePart(filename=name, content_type=content_type or guessed or DEFAULT_CONTENT_TYPE, data=data)


def _quoted(value: str) -> str:
    """A name or filename as browsers quote it in ``Content-Disposition`` (the WHATWG form rules)."""
    return '"' + value.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22") + '"'


def _new_boundary(contents: list[bytes]) -> str:
    """A random boundary that occurs in none of the parts, as RFC 2046 requires."""
    while True:
        boundary = f"baton-{secrets.token_hex(16)}"
        delimiter = b"--" + boundary.encode("ascii")
        if not any(delimiter in content for content in contents):
            return boundary


def encode_multipart(fields: Mapping[str, str | FilePart]) -> Multipart:
    """Encode text and file fields, in the given order, as one ``multipart/form-data`` body."""
    parts: list[tuple[bytes, bytes]] = []
    for name, value in fields.items():
        disposition = f"form-data; name={_quoted(name)}"
        if isinstance(value, FilePart):
            head = f"Content-Disposition: {disposition}; filename={_quoted(value.filename)}\r\n"
            head += f"Content-Type: {value.content_type}\r\n"
            parts.append((head.encode("utf-8"), value.data))
        else:
            parts.append((f"Content-Disposition: {disposition}\r\n".encode(), value.encode("utf-8")))
    boundary = _new_boundary([content for _, content in parts])
    delimiter = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for head, content in parts:
        chunks += [delimiter, b"\r\n", head, b"\r\n", content, b"\r\n"]
    chunks += [delimiter, b"--\r\n"]
    return Multipart(body=b"".join(chunks), content_type=f"multipart/form-data; boundary={boundary}")


class ChunkedBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Prebuilt bytes sent in chunks, reporting progress after each; one instance per attempt."""

    def __init__(self, body: bytes, progress: Progress | None = None, chunk_size: int = CHUNK_SIZE) -> None:
        self._body = body
        self._progress = progress
        self._chunk_size = chunk_size

    def __iter__(self) -> Iterator[bytes]:
        total = len(self._body)
        for start in range(0, total, self._chunk_size):
            end = min(start + self._chunk_size, total)
            yield self._body[start:end]
            # Resumed: the connection has taken the chunk.
            if self._progress is not None:
                self._progress(end, total)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk
