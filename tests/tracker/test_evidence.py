"""Evidence (SPEC "Evidence: attachments"): who may attach, what is kept, who may read it, and erasure.

Every test runs on SQLite and PostgreSQL; the store is a local folder here, and the S3-protocol
server in ``test_evidence_s3.py`` (the same flows, and two servers sharing one bucket).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from kernel.config import Settings
from tests.conftest import World
from tracker.models import Attachment
from tracker.verify import verify_case

GPS_LATITUDE = (40.0, 44.0, 54.87)


def photo_with_gps(size: tuple[int, int] = (640, 480), color: str = "orange") -> bytes:
    """A JPEG whose EXIF says where it was taken (and with which phone)."""
    image = Image.new("RGB", size, color)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "PhoneModel X"  # Model
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", GPS_LATITUDE, "W", (73.0, 59.0, 12.34)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def multipart(files: dict[str, tuple[str, bytes, str]], data: dict[str, str]) -> tuple[bytes, str]:
    """The exact body and content type httpx would send (so a signer can digest it)."""
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.read(), request.headers["content-type"]


async def upload(world: World, partner: str | None, ref: str, *, content: bytes, kind: str = "photo",
                 name: str = "photo.jpg", ctype: str = "image/jpeg", extra: dict[str, str] | None = None,
                 path: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    body, content_type = multipart({"file": (name, content, ctype)}, {"kind": kind, **(extra or {})})
    target = path or f"/v1/cases/{ref}/attachments"
    all_headers = {"content-type": content_type, **(headers or {})}
    if partner is None:
        return await world.client.post(target, content=body, headers={**world.admin, **all_headers})
    return await world.client.post(target, content=body, headers=all_headers,
                                   auth=world.partners[partner].signer())


def _sessions(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


def _store(world: World) -> Any:
    return world.client._transport.app.state.runtime.store  # type: ignore[attr-defined]


async def _attachment_events(world: World, ref: str) -> list[dict[str, Any]]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}/events")
    assert response.status_code == 200, response.text
    return [e for e in response.json()["items"] if e["type"] == "attachment.added"]


async def _count_attachments(world: World) -> int:
    async with _sessions(world)() as session:
        return await session.scalar(select(func.count()).select_from(Attachment)) or 0


# ---------------------------------------------------------------- a party attaches


async def test_a_party_attaches_a_photo_signed_over_the_whole_body_and_its_gps_is_gone(world: World) -> None:
    case = await world.open_case()
    original = photo_with_gps()
    assert b"PhoneModel X" in original  # the fixture really carries metadata
    response = await upload(world, "lh", case["ref"], content=original, extra={"note": "Damaged corner"})
    assert response.status_code == 201, response.text
    answer = response.json()
    assert set(answer) >= {"id", "sha256", "content_type", "size", "kind", "visibility", "seq"}
    assert (answer["kind"], answer["visibility"], answer["content_type"]) == ("photo", "parties", "image/jpeg")
    assert answer["original_sha256"] == hashlib.sha256(original).hexdigest()

    stored = await world.as_partner("lh", "GET", f"/v1/cases/{case['ref']}/attachments/{answer['id']}")
    assert stored.status_code == 200
    assert hashlib.sha256(stored.content).hexdigest() == answer["sha256"] and len(stored.content) == answer["size"]
    assert stored.headers["x-content-type-options"] == "nosniff"
    image = Image.open(io.BytesIO(stored.content))
    assert not image.getexif() and "exif" not in image.info
    assert b"PhoneModel X" not in stored.content and b"Exif" not in stored.content
    assert image.size == (640, 480)

    [event] = await _attachment_events(world, case["ref"])
    assert event["seq"] == answer["seq"] and event["sha256"] == answer["sha256"]
    assert event["original_sha256"] == answer["original_sha256"] and event["signed"] is True
    thumb = await world.as_partner("lh", "GET", f"/v1/cases/{case['ref']}/attachments/{answer['id']}/thumbnail")
    assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) <= 320
    async with _sessions(world)() as session:
        verdict = await verify_case(session=session, ref=case["ref"])
    assert verdict.ok and verdict.signed >= 1, verdict


async def test_a_body_changed_after_signing_is_refused_and_nothing_is_kept(world: World) -> None:
    case = await world.open_case()
    body, content_type = multipart({"file": ("photo.jpg", photo_with_gps(), "image/jpeg")}, {"kind": "photo"})
    request = world.client.build_request("POST", f"/v1/cases/{case['ref']}/attachments", content=body,
                                         headers={"content-type": content_type})
    signed = next(world.partners["lh"].signer().auth_flow(request))
    tampered = body.replace(b"orange", b"orangf") if b"orange" in body else body[:-200] + b"X" + body[-199:]
    forged = world.client.build_request("POST", str(signed.url), content=tampered, headers=dict(signed.headers))
    response = await world.client.send(forged)
    assert response.status_code == 401, response.text
    assert "Content-Digest" in response.json()["detail"]
    assert await _count_attachments(world) == 0


async def test_the_type_comes_from_the_content_so_a_zip_named_jpg_is_refused(world: World) -> None:
    case = await world.open_case()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("secret.txt", "not a photo")
    response = await upload(world, "lh", case["ref"], content=archive.getvalue(), name="photo.jpg")
    assert response.status_code == 415, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await _count_attachments(world) == 0


async def test_a_kind_outside_the_list_is_422_and_a_missing_file_too(world: World) -> None:
    case = await world.open_case()
    response = await upload(world, "lh", case["ref"], content=photo_with_gps(), kind="selfie")
    assert response.status_code == 422 and "kind" in response.json()["detail"]
    body, content_type = multipart({"note": ("", b"", "text/plain")}, {"kind": "photo"})  # no "file" part
    response = await world.client.post(f"/v1/cases/{case['ref']}/attachments", content=body,
                                       headers={"content-type": content_type}, auth=world.partners["lh"].signer())
    assert response.status_code == 422
    assert await _count_attachments(world) == 0


async def test_an_anonymous_upload_is_refused_before_its_body_is_read(world: World) -> None:
    case = await world.open_case()
    body, content_type = multipart({"file": ("p.jpg", photo_with_gps(), "image/jpeg")}, {"kind": "photo"})
    response = await world.client.post(f"/v1/cases/{case['ref']}/attachments", content=body,
                                       headers={"content-type": content_type})
    assert response.status_code == 401
    response = await world.client.post(f"/v1/cases/{case['ref']}/attachments", content=b"{}",
                                       headers={**world.admin, "content-type": "application/json"})
    assert response.status_code == 415


async def test_a_non_party_gets_404_for_the_file_the_list_and_the_upload(world: World) -> None:
    case = await world.open_case()
    answer = (await upload(world, "lh", case["ref"], content=photo_with_gps())).json()
    for path in (f"/v1/cases/{case['ref']}/attachments/{answer['id']}", f"/v1/cases/{case['ref']}/attachments",
                 f"/v1/cases/{case['ref']}/attachments/{answer['id']}/thumbnail"):
        response = await world.as_partner("swissport-fra", "GET", path)
        assert response.status_code == 404, path
    response = await upload(world, "swissport-fra", case["ref"], content=photo_with_gps())
    assert response.status_code == 404
    assert await _count_attachments(world) == 1


async def test_visibility_is_per_attachment_and_internal_is_staff_only(world: World) -> None:
    case = await world.open_case()
    refused = await upload(world, "lh", case["ref"], content=photo_with_gps(), extra={"visibility": "internal"})
    assert refused.status_code == 403
    internal = (await upload(world, None, case["ref"], content=photo_with_gps(), extra={"visibility": "internal"}))
    assert internal.status_code == 201, internal.text
    public = await upload(world, "lh", case["ref"], content=photo_with_gps(color="blue"),
                          extra={"visibility": "public"})
    assert public.status_code == 201
    seen = await world.as_partner("ua", "GET", f"/v1/cases/{case['ref']}/attachments")
    assert [a["id"] for a in seen.json()["items"]] == [public.json()["id"]]
    hidden = await world.as_partner("ua", "GET", f"/v1/cases/{case['ref']}/attachments/{internal.json()['id']}")
    assert hidden.status_code == 404
    staff = await world.as_admin("GET", f"/v1/cases/{case['ref']}/attachments")
    assert len(staff.json()["items"]) == 2
    status = (await world.client.get(f"/v1/status/{_token(case)}")).json()
    assert [f["id"] for f in status["files"]] == [public.json()["id"]]  # the customer: public ones (and theirs)


async def test_a_retry_with_the_same_idempotency_key_returns_the_first_answer(world: World) -> None:
    case = await world.open_case()
    body, content_type = multipart({"file": ("p.jpg", photo_with_gps(), "image/jpeg")}, {"kind": "photo"})

    async def send(content: bytes, ctype: str = content_type) -> httpx.Response:  # signed afresh, as a retry is
        return await world.client.post(f"/v1/cases/{case['ref']}/attachments", content=content,
                                       headers={"content-type": ctype, "Idempotency-Key": "photo-1"},
                                       auth=world.partners["lh"].signer())

    first, again = await send(body), await send(body)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers.get("idempotent-replayed") == "true"
    assert len(await _attachment_events(world, case["ref"])) == 1
    other, other_type = multipart({"file": ("p.jpg", photo_with_gps(color="red"), "image/jpeg")}, {"kind": "photo"})
    assert (await send(other, other_type)).status_code == 422  # the same key with another body


async def test_a_pdf_is_kept_byte_for_byte_and_served_as_a_download(world: World) -> None:
    case = await world.open_case()
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    answer = (await upload(world, "ua", case["ref"], content=pdf, kind="receipt", name="r.pdf",
                           ctype="application/pdf")).json()
    assert answer["sha256"] == hashlib.sha256(pdf).hexdigest() and answer["content_type"] == "application/pdf"
    got = await world.as_partner("ua", "GET", f"/v1/cases/{case['ref']}/attachments/{answer['id']}")
    assert got.content == pdf and got.headers["content-disposition"].startswith("attachment")
    thumb = await world.as_partner("ua", "GET", f"/v1/cases/{case['ref']}/attachments/{answer['id']}/thumbnail")
    assert thumb.status_code == 404


# ---------------------------------------------------------------- the customer attaches


def _token(case: dict[str, Any]) -> str:
    return case["status_url"].rsplit("/", 1)[1]


async def customer_upload(world: World, case: dict[str, Any], content: bytes, *, kind: str = "photo",
                          note: str = "") -> httpx.Response:
    body, content_type = multipart({"file": ("IMG_0001.HEIC", content, "image/heic")}, {"kind": kind, "note": note})
    return await world.client.post(f"/s/{_token(case)}/attachments", content=body,
                                   headers={"content-type": content_type})


async def test_the_customer_adds_a_photo_from_the_status_page_and_the_parties_see_it(world: World) -> None:
    case = await world.open_case()
    response = await customer_upload(world, case, photo_with_gps(), note="The handle is broken")
    assert response.status_code == 303, response.text
    status = (await world.client.get(f"/v1/status/{_token(case)}")).json()
    [mine] = status["files"]
    assert mine["by_customer"] and mine["thumbnail"]
    page_file = await world.client.get(f"/s/{_token(case)}/files/{mine['id']}")
    assert page_file.status_code == 200 and b"PhoneModel X" not in page_file.content
    listed = (await world.as_partner("lh", "GET", f"/v1/cases/{case['ref']}/attachments")).json()["items"]
    assert [(a["actor"], a["visibility"], a["note"]) for a in listed] == [("customer", "parties",
                                                                           "The handle is broken")]
    other = await world.open_case(customer={"name": "Bob", "email": "bob@example.com", "locale": "en",
                                            "timezone": "UTC"})
    crossed = await world.client.get(f"/s/{_token(other)}/files/{mine['id']}")
    assert crossed.status_code == 404  # another customer's link opens none of this case's files


async def test_a_customer_upload_with_an_unknown_link_is_404(world: World) -> None:
    body, content_type = multipart({"file": ("p.jpg", photo_with_gps(), "image/jpeg")}, {"kind": "photo"})
    response = await world.client.post("/s/" + "x" * 32 + "/attachments", content=body,
                                       headers={"content-type": content_type})
    assert response.status_code == 404
    assert await _count_attachments(world) == 0


async def test_erasure_deletes_the_customers_files_keeps_their_digests_and_the_chain_verifies(world: World) -> None:
    from tracker.erasure import delete_erased_files, erase_customer

    case = await world.open_case()
    await customer_upload(world, case, photo_with_gps(), note="Ada's broken bag")
    partner_file = (await upload(world, "lh", case["ref"], content=photo_with_gps(color="green"))).json()
    [mine, _] = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/attachments")).json()["items"]
    store = _store(world)
    assert await store.size(mine["sha256"]) is not None
    async with _sessions(world)() as session:
        await erase_customer(session=session, ref=case["ref"], actor="staff:test", now=world.clock.now())
        await session.commit()
    async with _sessions(world)() as session:
        assert await delete_erased_files(session=session, store=store, ref=case["ref"]) == 2  # file + thumbnail
    assert await store.size(mine["sha256"]) is None
    assert await store.size(partner_file["sha256"]) is not None  # a party's own file stays
    gone = await world.as_admin("GET", f"/v1/cases/{case['ref']}/attachments/{mine['id']}")
    assert gone.status_code == 404
    events = (await world.as_admin("GET", f"/v1/cases/{case['ref']}/events")).json()["items"]
    customer_event = next(e for e in events if e["type"] == "attachment.added" and e["actor"] == "customer")
    assert customer_event["sha256"] == mine["sha256"] and "note" not in customer_event
    async with _sessions(world)() as session:
        verdict = await verify_case(session=session, ref=case["ref"])
    assert verdict.ok, verdict


async def test_a_closed_case_takes_no_more_files(world: World) -> None:
    case = await world.open_case()
    closed = await world.as_admin("POST", f"/v1/cases/{case['ref']}/close", json_body={"resolution": "Found"})
    assert closed.status_code == 200, closed.text
    response = await upload(world, "lh", case["ref"], content=photo_with_gps())
    assert response.status_code == 409
    assert await _count_attachments(world) == 0


# ---------------------------------------------------------------- limits on these routes only


async def _chunks(data: bytes, size: int = 64 * 1024) -> Any:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"attachment_max_bytes": 256 * 1024})


async def test_a_file_over_the_limit_is_413_and_the_limit_is_only_on_these_routes(world: World) -> None:
    case = await world.open_case()
    big = photo_with_gps() + b"\xff" * (300 * 1024)
    response = await upload(world, "lh", case["ref"], content=big)
    assert response.status_code == 413, response.text
    assert await _count_attachments(world) == 0
    # Every other route keeps the 64 KiB limit, whatever it is.
    huge = {"message": "x" * (70 * 1024)}
    response = await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/events", json_body=huge)
    assert response.status_code == 413
    body, content_type = multipart({"file": ("big.jpg", big * 2, "image/jpeg")}, {"kind": "photo"})
    streamed = await world.client.post(
        f"/v1/cases/{case['ref']}/attachments", headers={**world.admin, "content-type": content_type},
        content=_chunks(body),  # chunked: no Content-Length to refuse it by
    )
    assert streamed.status_code == 413


# ---------------------------------------------------------------- hostile multipart bodies

BOUNDARY = "b0undary"
_PART = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nphoto\r\n").encode()
HOSTILE_UPLOADS = [
    ("no boundary", "multipart/form-data", _PART),
    ("other boundary", "multipart/form-data; boundary=zzz", _PART + f"--{BOUNDARY}--\r\n".encode()),
    ("truncated", f"multipart/form-data; boundary={BOUNDARY}", _PART[:30]),
    ("garbage", f"multipart/form-data; boundary={BOUNDARY}", b"\x00\xff" * 500),
    ("nameless part", f"multipart/form-data; boundary={BOUNDARY}",
     f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode()),
    ("repeated field", f"multipart/form-data; boundary={BOUNDARY}", _PART * 2 + f"--{BOUNDARY}--\r\n".encode()),
    ("long field", f"multipart/form-data; boundary={BOUNDARY}",
     _PART.replace(b"photo", b"p" * 10_000) + f"--{BOUNDARY}--\r\n".encode()),
    ("NUL in a field", f"multipart/form-data; boundary={BOUNDARY}",
     _PART.replace(b"photo", b"ph\x00oto") + f"--{BOUNDARY}--\r\n".encode()),
    ("too many parts", f"multipart/form-data; boundary={BOUNDARY}",
     b"".join(_PART.replace(b'"kind"', f'"f{i}"'.encode()) for i in range(12)) + f"--{BOUNDARY}--\r\n".encode()),
    ("not UTF-8", f"multipart/form-data; boundary={BOUNDARY}",
     _PART.replace(b"photo", b"\xff\xfe") + f"--{BOUNDARY}--\r\n".encode()),
    ("JSON", "application/json", b'{"kind": "photo"}'),
]


@pytest.mark.parametrize(("label", "ctype", "body"), HOSTILE_UPLOADS, ids=[h[0] for h in HOSTILE_UPLOADS])
async def test_hostile_upload_bodies_get_a_problem_and_change_nothing(world: World, label: str, ctype: str,
                                                                      body: bytes) -> None:
    case = await world.open_case()
    for target in (f"/v1/cases/{case['ref']}/attachments", f"/v1/cases/{case['ref']}/delivery/proof"):
        response = await world.client.post(target, content=body, headers={**world.admin, "content-type": ctype})
        assert 400 <= response.status_code < 500, (label, target, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    signed = await world.client.post(f"/v1/cases/{case['ref']}/attachments", content=body,
                                     headers={"content-type": ctype}, auth=world.partners["lh"].signer())
    assert 400 <= signed.status_code < 500, (label, signed.text)
    page = await world.client.post(f"/s/{_token(case)}/attachments", content=body, headers={"content-type": ctype})
    assert 400 <= page.status_code < 500, (label, page.status_code)
    assert await _count_attachments(world) == 0
