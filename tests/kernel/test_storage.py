"""Attachment files by digest: the same tests against a local folder and a real S3-protocol server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import obstore
import pytest
from obstore.store import S3Store

from kernel.config import Settings
from kernel.storage import (
    CHUNK_BYTES,
    BlobMissing,
    BlobStore,
    LocalBlobStore,
    S3BlobStore,
    blob_key,
    check_digest,
    open_store,
)
from tests.support.s3_server import S3Server


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def read_all(store: BlobStore, digest: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(digest)])


@dataclass
class Backend:
    kind: str  # "file" or "s3"
    settings: Settings
    s3: S3Server | None = None

    async def raw_object(self, digest: str) -> tuple[bytes, str | None] | None:
        """The object's bytes and content type as stored, looked up by its full key behind the store's back."""
        if self.kind == "file":
            path = Path(self.settings.storage_url.removeprefix("file:")) / digest[:2] / digest
            return (path.read_bytes(), None) if path.exists() else None
        assert self.s3 is not None
        prefix = self.settings.storage_url.removeprefix(f"s3://{self.s3.bucket}")
        return await raw_s3_object(self.s3, self.s3.bucket, blob_key(prefix, digest))


async def raw_s3_object(s3: S3Server, bucket: str, key: str) -> tuple[bytes, str | None] | None:
    """The object at ``key`` in ``bucket``, through a client of its own with no prefix."""
    raw = S3Store(bucket, endpoint=s3.endpoint_url, region=s3.region, access_key_id=s3.access_key_id,
                  secret_access_key=s3.secret_access_key, client_options={"allow_http": True})
    try:
        result = await obstore.get_async(raw, key)
    except FileNotFoundError:
        return None
    content_type = result.attributes.get("Content-Type")
    return (await result.bytes_async()).to_bytes(), None if content_type is None else str(content_type)


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "file":
        return Backend("file", Settings(storage_url=f"file:{tmp_path / 'attachments'}"))
    s3: S3Server = request.getfixturevalue("s3_server")
    for name, value in s3.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    # One prefix per test: the server lives for the whole run.
    settings = Settings(storage_url=f"s3://{s3.bucket}/t-{uuid.uuid4().hex[:12]}", s3_endpoint_url=s3.endpoint_url)
    return Backend("s3", settings, s3)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[BlobStore]:
    opened = open_store(backend.settings)
    try:
        yield opened
    finally:
        await opened.close()


# ---------------------------------------------------------------- round trips


async def test_bytes_put_are_read_back_with_their_size(store: BlobStore, backend: Backend) -> None:
    data = b"a photo of the damaged suitcase"
    digest = sha256(data)
    assert await store.size(digest) is None

    await store.put_bytes(digest, data, content_type="image/jpeg")

    assert await read_all(store, digest) == data
    assert await store.size(digest) == len(data)
    stored = await backend.raw_object(digest)
    assert stored is not None and stored[0] == data
    if backend.kind == "s3":
        assert stored[1] == "image/jpeg"


async def test_a_file_put_is_read_back(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "delivery-proof.pdf"
    data = b"%PDF-1.7\n" + os.urandom(3 * CHUNK_BYTES + 17)
    source.write_bytes(data)
    digest = sha256(data)

    await store.put_file(digest, source, content_type="application/pdf")

    assert await read_all(store, digest) == data
    assert await store.size(digest) == len(data)
    assert source.read_bytes() == data  # the caller's file is copied, not moved


async def test_putting_the_same_digest_twice_is_fine(store: BlobStore, tmp_path: Path, backend: Backend) -> None:
    data = b"signature.png bytes"
    digest = sha256(data)
    source = tmp_path / "signature.png"
    source.write_bytes(data)

    await store.put_file(digest, source, content_type="image/png")
    await store.put_file(digest, source, content_type="image/png")
    await store.put_bytes(digest, data, content_type="image/png")

    assert await read_all(store, digest) == data
    assert await store.size(digest) == len(data)
    if backend.kind == "file":
        # One file under its digest, and no temporary file left beside it.
        root = Path(backend.settings.storage_url.removeprefix("file:"))
        assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
            f"{digest[:2]}/{digest}"
        ]


async def test_objects_are_laid_out_by_digest(store: BlobStore, backend: Backend) -> None:
    data = b"laid out"
    digest = sha256(data)
    assert await backend.raw_object(digest) is None

    await store.put_bytes(digest, data, content_type="text/plain")

    stored = await backend.raw_object(digest)  # at <prefix>/<digest[:2]>/<digest>
    assert stored is not None and stored[0] == data


# ---------------------------------------------------------------- absence and deletion


async def test_a_deleted_object_is_missing(store: BlobStore) -> None:
    data = b"erase me"
    digest = sha256(data)
    await store.put_bytes(digest, data, content_type="text/plain")
    assert await store.size(digest) == len(data)

    await store.delete(digest)

    assert await store.size(digest) is None
    chunks = store.read(digest)
    with pytest.raises(BlobMissing):
        await anext(chunks)  # raised before any chunk
    with pytest.raises(BlobMissing):
        await read_all(store, digest)


async def test_a_missing_digest_has_no_size_and_cannot_be_read(store: BlobStore) -> None:
    digest = sha256(b"never stored")
    assert await store.size(digest) is None
    with pytest.raises(BlobMissing) as caught:
        await read_all(store, digest)
    assert digest in str(caught.value)


async def test_deleting_an_absent_digest_is_fine(store: BlobStore) -> None:
    digest = sha256(b"never stored either")
    assert await store.delete(digest) is None
    await store.delete(digest)
    assert await store.size(digest) is None


async def test_deleting_one_digest_leaves_the_others(store: BlobStore) -> None:
    kept, erased = b"kept", b"erased"
    await store.put_bytes(sha256(kept), kept, content_type="text/plain")
    await store.put_bytes(sha256(erased), erased, content_type="text/plain")

    await store.delete(sha256(erased))

    assert await read_all(store, sha256(kept)) == kept
    assert await store.size(sha256(erased)) is None


# ---------------------------------------------------------------- big files


class Heartbeat:
    """Counts how often another task got the event loop while the block ran."""

    def __init__(self) -> None:
        self.beats = 0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(0)
            self.beats += 1

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_a_10_mib_file_goes_in_and_comes_back_in_chunks(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    size = 10 * 1024 * 1024
    with source.open("wb") as out:
        for _ in range(size // (1024 * 1024)):
            out.write(os.urandom(1024 * 1024))
    with source.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()

    async with Heartbeat() as during_put:
        await store.put_file(digest, source, content_type="application/octet-stream")

    assert await store.size(digest) == size
    hasher = hashlib.sha256()
    chunks = 0
    largest = 0
    async with Heartbeat() as during_read:
        async for chunk in store.read(digest):
            assert isinstance(chunk, bytes)
            hasher.update(chunk)
            chunks += 1
            largest = max(largest, len(chunk))
    assert hasher.hexdigest() == digest
    # The event loop kept serving other tasks while the file went in and came out, not just
    # once at the start: a read that blocked after opening would leave a beat or two.
    assert during_put.beats >= 10 and during_read.beats >= 10
    assert chunks >= size // CHUNK_BYTES  # streamed in chunks of at most CHUNK_BYTES, not one piece
    assert largest == CHUNK_BYTES


# ---------------------------------------------------------------- digests


BAD_DIGESTS = [
    "../../etc/passwd",
    "ab/../../" + "0" * 55,
    sha256(b"x").upper(),
    sha256(b"x")[:63],
    sha256(b"x") + "0",
    sha256(b"x") + "\n",
    "g" * 64,
    "",
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
async def test_a_bad_digest_is_refused(store: BlobStore, backend: Backend, tmp_path: Path, digest: str) -> None:
    source = tmp_path / "file.txt"
    source.write_bytes(b"content")
    with pytest.raises(ValueError):
        await store.put_bytes(digest, b"content", content_type="text/plain")
    with pytest.raises(ValueError):
        await store.put_file(digest, source, content_type="text/plain")
    with pytest.raises(ValueError):
        await read_all(store, digest)
    with pytest.raises(ValueError):
        await store.size(digest)
    with pytest.raises(ValueError):
        await store.delete(digest)
    if backend.kind == "file":
        assert not Path(backend.settings.storage_url.removeprefix("file:")).exists()  # nothing written anywhere


def test_a_digest_is_64_lowercase_hex_digits() -> None:
    digest = sha256(b"ok")
    assert check_digest(digest) == digest
    for bad in BAD_DIGESTS:
        with pytest.raises(ValueError):
            check_digest(bad)


def test_the_key_is_prefix_then_fan_out_then_digest() -> None:
    digest = sha256(b"key")
    assert blob_key("", digest) == f"{digest[:2]}/{digest}"
    assert blob_key("attachments", digest) == f"attachments/{digest[:2]}/{digest}"
    assert blob_key("/a/b/", digest) == f"a/b/{digest[:2]}/{digest}"


# ---------------------------------------------------------------- several processes


async def test_two_stores_from_the_same_settings_share_their_files(backend: Backend) -> None:
    # As two `baton serve` processes would: each opens its own store from the same settings.
    first, second = open_store(backend.settings), open_store(backend.settings)
    try:
        data = b"shared between processes"
        digest = sha256(data)
        await first.put_bytes(digest, data, content_type="text/plain")
        assert await read_all(second, digest) == data
        assert await second.size(digest) == len(data)

        await second.delete(digest)
        assert await first.size(digest) is None
        with pytest.raises(BlobMissing):
            await read_all(first, digest)
    finally:
        await first.close()
        await second.close()


# ---------------------------------------------------------------- storage URLs


def test_storage_urls_choose_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    local = open_store(Settings(storage_url="file:./var/attachments"))
    assert isinstance(local, LocalBlobStore)
    assert local.root == tmp_path / "var" / "attachments"  # fixed when opened, whatever the directory later
    absolute = open_store(Settings(storage_url=f"file://{tmp_path}/files"))
    assert isinstance(absolute, LocalBlobStore) and absolute.root == tmp_path / "files"

    remote = open_store(Settings(storage_url="s3://bucket/some/prefix/", s3_endpoint_url="http://127.0.0.1:9"))
    assert isinstance(remote, S3BlobStore)
    assert (remote.bucket, remote.prefix) == ("bucket", "some/prefix")
    bare = open_store(Settings(storage_url="s3://bucket"))
    assert isinstance(bare, S3BlobStore) and bare.prefix == ""

    for bad in ("s3:///prefix", "file:", "file://elsewhere/srv"):
        with pytest.raises(ValueError):
            open_store(Settings(storage_url=bad))


async def test_a_bucket_without_prefix_keeps_objects_at_the_fan_out(
        s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_server.environ().items():
        monkeypatch.setenv(name, value)
    bucket = f"bare-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    store = open_store(Settings(storage_url=f"s3://{bucket}", s3_endpoint_url=s3_server.endpoint_url))
    data = b"no prefix"
    digest = sha256(data)
    await store.put_bytes(digest, data, content_type="text/plain")
    assert await raw_s3_object(s3_server, bucket, f"{digest[:2]}/{digest}") == (data, "text/plain")
    assert await read_all(store, digest) == data
    await store.close()

