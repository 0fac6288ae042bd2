"""Attachment files, kept by digest in a folder or an S3-compatible bucket.

A file is stored under the lowercase hex SHA-256 of its bytes, so several ``baton serve``
processes pointed at the same store share every file: what one process puts, the others read.
The same bytes put twice are one object. Erasure deletes a digest's object (``delete``); the
digest itself stays in the hash chain, which still verifies without the file.

``BATON_STORAGE_URL`` says where the files live (``open_store``):

- ``file:<folder>`` (default ``file:./var/attachments``): a local or mounted folder. Each file is
  written to a temporary file in its target folder, then renamed into place, so a reader never
  sees half a file. Enough for one machine, or several sharing a network file system.
- ``s3://bucket/prefix``: any S3-compatible store, with ``BATON_S3_ENDPOINT_URL`` for one other
  than AWS (plain ``http://`` endpoints are allowed). Credentials and region come from the usual
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` /
  ``AWS_DEFAULT_REGION`` (default ``us-east-1``); without keys, the client's own chain (web
  identity, container or instance role) is tried.

Either way an object's key is ``<prefix>/<digest[:2]>/<digest>`` (``<digest[:2]>/<digest>``
without a prefix): 256 fan-out folders keep any one folder small. Content types are kept as
object metadata in S3 only; the database row that names a digest is where the type is read from.

The S3 client is ``obstore`` (Rust's ``object_store``), chosen over ``aioboto3`` by measurement
against an S3 server on loopback: 15 MiB installed against 32 MiB (botocore alone is 28), no
downgrade of a pinned package (aiobotocore caps multidict below 7), 6 ms to import against
330 ms, 18 MiB resident after the import against 50 MiB, a 49 MiB peak over a 10 MiB put and
get against 103 MiB, and half the time for 200 small puts one after another.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import obstore
from obstore.store import S3Store

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config

    from kernel.config import Settings

__all__ = [
    "CHUNK_BYTES", "BlobMissing", "BlobStore", "LocalBlobStore", "S3BlobStore", "blob_key", "check_digest",
    "open_store",
]

CHUNK_BYTES = 64 * 1024
"""About how much ``read`` yields at a time."""

_DIGEST = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX = ".incoming-"  # never a digest, so never read as one


class BlobMissing(Exception):
    """No object is stored under that digest."""


class BlobStore(Protocol):
    """Files by digest: put, read in chunks, size, delete. Safe to share between processes."""

    async def put_file(self, digest: str, path: Path, *, content_type: str) -> None:
        """Store the file at ``path`` under ``digest``, streamed. Putting a digest that is already there is fine."""
        ...

    async def put_bytes(self, digest: str, data: bytes, *, content_type: str) -> None:
        """Store ``data`` under ``digest``. Putting a digest that is already there is fine."""
        ...

    def read(self, digest: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks of about ``CHUNK_BYTES`` (an async generator).

        Raises ``BlobMissing`` from the first ``__anext__``, before any chunk, when absent.
        """
        ...

    async def size(self, digest: str) -> int | None:
        """The object's size in bytes, or None when absent."""
        ...

    async def delete(self, digest: str) -> None:
        """Remove the object; nothing happens when it is absent."""
        ...

    async def close(self) -> None:
        """Release what the store holds open."""
        ...


def check_digest(digest: str) -> str:
    """``digest`` if it is 64 lowercase hex digits, else ValueError (no paths, no case games)."""
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
        raise ValueError(f"not a lowercase hex SHA-256 digest: {digest!r}")
    return digest


def blob_key(prefix: str, digest: str) -> str:
    """The object key of ``digest``: ``<prefix>/<digest[:2]>/<digest>``, or without the prefix when empty."""
    check_digest(digest)
    key = f"{digest[:2]}/{digest}"
    prefix = prefix.strip("/")
    return f"{prefix}/{key}" if prefix else key


# ---------------------------------------------------------------- a local folder


class LocalBlobStore:
    """Files under ``root/<digest[:2]>/<digest>``; folders are made on demand.

    File work runs in worker threads (``asyncio.to_thread``), one chunk at a time for reads, so
    a big file never holds up the event loop.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, digest: str) -> Path:
        return self.root / blob_key("", digest)

    async def put_file(self, digest: str, path: Path, *, content_type: str) -> None:
        target = self.path_of(digest)

        def copy() -> None:
            with open(path, "rb") as source:
                self._write(target, lambda out: shutil.copyfileobj(source, out, CHUNK_BYTES))

        await asyncio.to_thread(copy)

    async def put_bytes(self, digest: str, data: bytes, *, content_type: str) -> None:
        target = self.path_of(digest)
        await asyncio.to_thread(self._write, target, lambda out: out.write(data))

    @staticmethod
    def _write(target: Path, fill: Any) -> None:
        if target.exists():
            return  # the same digest is the same bytes, already complete (it got there by rename)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    async def read(self, digest: str) -> AsyncIterator[bytes]:
        path = self.path_of(digest)
        try:
            file: IO[bytes] = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise BlobMissing(digest) from None
        try:
            while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
                yield chunk
        finally:
            file.close()

    async def size(self, digest: str) -> int | None:
        path = self.path_of(digest)
        try:
            return (await asyncio.to_thread(os.stat, path)).st_size
        except FileNotFoundError:
            return None

    async def delete(self, digest: str) -> None:
        path = self.path_of(digest)
        await asyncio.to_thread(path.unlink, missing_ok=True)

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------- an S3-compatible bucket


class S3BlobStore:
    """Objects under ``<prefix>/<digest[:2]>/<digest>`` in one bucket, through ``obstore``."""

    # A file larger than one part goes up as a multipart upload; at most this many parts are
    # in flight (and in memory) at once per upload.
    PART_BYTES = 5 * 1024 * 1024
    PARTS_IN_FLIGHT = 4
    REQUEST_TIMEOUT = "10m"

    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        """Credentials and region from ``environ`` (default ``os.environ``), by their usual AWS names."""
        if not bucket:
            raise ValueError("an S3 storage URL needs a bucket: s3://bucket/prefix")
        env = os.environ if environ is None else environ
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        config: S3Config = {
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        }
        if env.get("AWS_ACCESS_KEY_ID"):
            config["access_key_id"] = env["AWS_ACCESS_KEY_ID"]
        if env.get("AWS_SECRET_ACCESS_KEY"):
            config["secret_access_key"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            config["session_token"] = env["AWS_SESSION_TOKEN"]
        # The whole request, body included, must end within the timeout; a download streamed
        # to a slow reader takes as long as the reader does (obstore's default is 30 s).
        client_options: ClientConfig = {"timeout": self.REQUEST_TIMEOUT}
        if endpoint_url:
            config["endpoint"] = endpoint_url.rstrip("/")
            client_options["allow_http"] = endpoint_url.startswith("http://")
        self._store = S3Store(bucket, config=config, client_options=client_options)

    def key_of(self, digest: str) -> str:
        return blob_key(self.prefix, digest)

    async def put_file(self, digest: str, path: Path, *, content_type: str) -> None:
        # A Path is read in parts by obstore's own runtime, off the event loop and never whole.
        await obstore.put_async(self._store, self.key_of(digest), Path(path),
                                attributes={"Content-Type": content_type},
                                chunk_size=self.PART_BYTES, max_concurrency=self.PARTS_IN_FLIGHT)

    async def put_bytes(self, digest: str, data: bytes, *, content_type: str) -> None:
        await obstore.put_async(self._store, self.key_of(digest), data,
                                attributes={"Content-Type": content_type},
                                chunk_size=self.PART_BYTES, max_concurrency=self.PARTS_IN_FLIGHT)

    async def read(self, digest: str) -> AsyncIterator[bytes]:
        key = self.key_of(digest)
        try:
            result = await obstore.get_async(self._store, key)
        except FileNotFoundError:  # obstore's not-found error
            raise BlobMissing(digest) from None
        async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
            # What arrives from the network at once can be much more than a chunk.
            if len(chunk) <= CHUNK_BYTES:
                yield chunk
            else:
                with memoryview(chunk) as view:
                    for start in range(0, len(view), CHUNK_BYTES):
                        yield bytes(view[start:start + CHUNK_BYTES])

    async def size(self, digest: str) -> int | None:
        key = self.key_of(digest)
        try:
            meta = await obstore.head_async(self._store, key)
        except FileNotFoundError:  # obstore's not-found error
            return None
        return int(meta["size"])

    async def delete(self, digest: str) -> None:
        key = self.key_of(digest)
        try:
            await obstore.delete_async(self._store, key)
        except FileNotFoundError:  # obstore's not-found error
            pass

    async def close(self) -> None:
        return None  # obstore's connection pool goes with the store object


# ---------------------------------------------------------------- from the settings


def open_store(settings: Settings) -> BlobStore:
    """The store ``settings.storage_url`` names (``file:<folder>`` or ``s3://bucket/prefix``)."""
    url = settings.storage_url
    if url.startswith("file:"):
        rest = url.removeprefix("file:")
        if rest.startswith("//"):  # file:///srv/baton or file://localhost/srv/baton
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                raise ValueError(f"a file: storage URL names no other host: {url!r}")
            rest = parts.path
        if not rest:
            raise ValueError(f"a file: storage URL needs a folder: {url!r}")
        return LocalBlobStore(Path(rest).expanduser().absolute())
    if url.startswith("s3://"):
        parts = urlsplit(url)
        return S3BlobStore(parts.netloc, prefix=parts.path, endpoint_url=settings.s3_endpoint_url)
    raise ValueError(f"storage URL must start with file: or s3://, not {url!r}")
