"""The partner client uploads evidence and proof of delivery as signed multipart bodies.

The fake Baton reads each body from the request's stream, as a real connection would, so the
checks are on the bytes that went over the wire: they parse with ``python-multipart`` (the
parser Baton's web framework uses), their sha-256 is the ``Content-Digest``, and the signature
verifies with ``http_message_signatures``, an independent RFC 9421 implementation.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import InvalidSignature
from http_message_signatures.algorithms import ED25519, HMAC_SHA256
from python_multipart.multipart import MultipartParser, parse_options_header
from typer.testing import CliRunner

from partners.client import AsyncBatonClient, BatonAPIError, BatonClient, BatonNotFound, BatonSigner, load_private_key
from partners.client.cli import app
from tests.partners.test_client import BASE_URL, KEYID, REF, problem, signature_params, verify_independently

ATTACHMENT = {
    "id": "att_01",
    "sha256": "ab" * 32,
    "content_type": "image/jpeg",
    "size": 3,
    "kind": "photo",
    "visibility": "parties",
    "seq": 7,
}
PROOF = {"seq": 9, "state": "delivered", "attachments": ["att_02"]}
DELIVERY = {"state": "accepted", "window": {"start": "2026-11-04T09:00:00+01:00"}, "address": "Hauptstr. 1"}
CHUNK = 64 * 1024
# Bytes that would break a careless encoder: CRLFs, a boundary-like line, NULs, and more than one chunk.
PHOTO = b"\xff\xd8\xff\xe0\r\n--baton-\r\n\x00" + secrets.token_bytes(3 * CHUNK + 123) + b"\r\n"


# --- a Baton that reads the body off the wire ---------------------------------------------------


Answer = httpx.Response | Exception


class WireBaton:
    """Records each request and the body bytes its stream delivered; answers from a script."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers) or [httpx.Response(201, json=ATTACHMENT)]
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def _answer(self, request: httpx.Request, body: bytes) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(body)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            assert isinstance(request.stream, httpx.SyncByteStream)
            return self._answer(request, b"".join(request.stream))

        return httpx.MockTransport(handler)

    def async_transport(self) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            assert isinstance(request.stream, httpx.AsyncByteStream)
            return self._answer(request, b"".join([chunk async for chunk in request.stream]))

        return httpx.MockTransport(handler)


@dataclass
class Part:
    headers: dict[str, str]
    data: bytes

    def _disposition(self) -> dict[bytes, bytes]:
        _, options = parse_options_header(self.headers["content-disposition"])
        return options

    @property
    def name(self) -> str:
        return self._disposition()[b"name"].decode()

    @property
    def filename(self) -> str | None:
        filename = self._disposition().get(b"filename")
        return None if filename is None else filename.decode()

    @property
    def text(self) -> str:
        return self.data.decode()


def parse_form(request: httpx.Request, body: bytes) -> dict[str, Part]:
    """The parts of a ``multipart/form-data`` body by field name (each name must be unique)."""
    mime, options = parse_options_header(request.headers["Content-Type"])
    assert mime == b"multipart/form-data"
    parts: list[Part] = []
    header: list[bytes] = [b"", b""]

    def on_part_begin() -> None:
        parts.append(Part(headers={}, data=b""))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        parts[-1].headers[header[0].decode().lower()] = header[1].decode()
        header[:] = [b"", b""]

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    ended: list[bool] = []
    parser = MultipartParser(
        options[b"boundary"],
        callbacks={
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_end": lambda: ended.append(True),
        },
    )
    assert parser.write(body) == len(body)
    parser.finalize()
    assert ended, "the body has no closing boundary"
    by_name = {part.name: part for part in parts}
    assert len(by_name) == len(parts), "a field was sent twice"
    return by_name


def sha256_digest(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


@pytest.fixture
def photo_file(tmp_path: Path) -> Path:
    path = tmp_path / "bag.jpg"
    path.write_bytes(PHOTO)
    return path


def client_for(fake: WireBaton, signer: BatonSigner, sleeps: list[float] | None = None) -> BatonClient:
    record = (sleeps if sleeps is not None else []).append
    return BatonClient(BASE_URL, signer, transport=fake.transport(), sleep=record)


# --- attach: the form ---------------------------------------------------------------------------


def test_attach_sends_a_form_with_kind_note_visibility_and_the_exact_file(
    ed25519_key: Ed25519PrivateKey, photo_file: Path
) -> None:
    fake = WireBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        attachment = baton.attach(
            REF, photo_file, kind="photo", note="Bag at FRA, belt 3 — zip torn", visibility="parties"
        )

    [request] = fake.requests
    [body] = fake.bodies
    assert attachment == ATTACHMENT
    assert request.method == "POST" and request.url.path == f"/v1/cases/{REF}/attachments"
    form = parse_form(request, body)
    assert list(form) == ["kind", "note", "visibility", "file"]
    assert (form["kind"].text, form["note"].text, form["visibility"].text) == (
        "photo",
        "Bag at FRA, belt 3 — zip torn",
        "parties",
    )
    assert form["file"].filename == "bag.jpg"
    assert form["file"].headers["content-type"] == "image/jpeg"
    assert form["file"].data == PHOTO
    assert int(request.headers["Content-Length"]) == len(body)


def test_attach_leaves_out_what_is_not_given_and_names_bytes_it_cannot_type(ed25519_key: Ed25519PrivateKey) -> None:
    fake = WireBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.attach(REF, b"%PDF-1.7 receipt", kind="receipt", filename="taxi.pdf")
        baton.attach(REF, b"\x00\x01raw", kind="document")
        baton.attach(REF, b"GIF89a", kind="photo", filename="scan.bin", content_type="image/gif")

    named, anonymous, typed = (parse_form(r, b) for r, b in zip(fake.requests, fake.bodies, strict=True))
    assert list(named) == ["kind", "file"]
    assert (named["file"].filename, named["file"].headers["content-type"]) == ("taxi.pdf", "application/pdf")
    assert named["file"].data == b"%PDF-1.7 receipt"
    assert (anonymous["file"].filename, anonymous["file"].headers["content-type"]) == (
        "attachment",
        "application/octet-stream",
    )
    assert typed["file"].headers["content-type"] == "image/gif"


def test_a_filename_cannot_break_out_of_its_header(ed25519_key: Ed25519PrivateKey) -> None:
    fake = WireBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.attach(REF, b"x", kind="photo", filename='evil".jpg\r\nX-Injected: 1')

    form = parse_form(fake.requests[0], fake.bodies[0])
    assert form["file"].filename == "evil%22.jpg%0D%0AX-Injected: 1"
    assert "x-injected" not in form["file"].headers
    assert form["file"].data == b"x"


# --- attach: digest and signature ---------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ed25519", "hmac-sha256"])
def test_upload_digest_is_over_the_bytes_on_the_wire_and_the_signature_covers_it(
    alg: str, ed25519_key: Ed25519PrivateKey, hmac_secret: bytes, photo_file: Path
) -> None:
    if alg == "ed25519":
        signer, algorithm, key = BatonSigner.ed25519(KEYID, ed25519_key), ED25519, ed25519_key.public_key()
    else:
        signer, algorithm, key = BatonSigner.hmac(KEYID, base64.b64encode(hmac_secret)), HMAC_SHA256, hmac_secret
    fake = WireBaton()
    with client_for(fake, signer) as baton:
        baton.attach(REF, photo_file, kind="photo")

    [request] = fake.requests
    [body] = fake.bodies
    assert len(body) > 3 * CHUNK  # sent in several chunks
    assert request.headers["Content-Digest"] == sha256_digest(body)
    result = verify_independently(request, algorithm=algorithm, key=key, body=body)
    assert result.parameters["alg"] == alg
    assert result.covered_components['"content-digest"'] == sha256_digest(body)
    assert result.covered_components['"@target-uri"'] == f"{BASE_URL}/v1/cases/{REF}/attachments"


def test_a_changed_byte_in_the_file_fails_verification(ed25519_key: Ed25519PrivateKey, photo_file: Path) -> None:
    fake = WireBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.attach(REF, photo_file, kind="photo")

    body = fake.bodies[0]
    at = body.index(PHOTO) + len(PHOTO) // 2
    tampered = body[:at] + bytes([body[at] ^ 1]) + body[at + 1 :]
    with pytest.raises(InvalidSignature):
        verify_independently(fake.requests[0], algorithm=ED25519, key=ed25519_key.public_key(), body=tampered)


# --- attach: retries and progress ---------------------------------------------------------------


def test_a_retried_upload_resends_identical_bytes_with_the_same_key_and_a_new_signature(
    ed25519_key: Ed25519PrivateKey, photo_file: Path
) -> None:
    fake = WireBaton(problem(503, "Service Unavailable", "restarting"), httpx.Response(201, json=ATTACHMENT))
    sleeps: list[float] = []
    seen: list[tuple[int, int]] = []
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key), sleeps) as baton:
        attachment = baton.attach(REF, photo_file, kind="photo", progress=lambda s, t: seen.append((s, t)))

    first, second = fake.requests
    assert attachment == ATTACHMENT
    assert fake.bodies[0] == fake.bodies[1]
    assert first.headers["Content-Type"] == second.headers["Content-Type"]  # same boundary
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert signature_params(first)["nonce"] != signature_params(second)["nonce"]
    for request, body in zip(fake.requests, fake.bodies, strict=True):
        verify_independently(request, algorithm=ED25519, key=ed25519_key.public_key(), body=body)
    total = len(fake.bodies[0])
    assert [sent for sent, _ in seen].count(total) == 2  # each attempt reports its whole upload
    assert sleeps == [0.5]


def test_progress_is_reported_chunk_by_chunk_up_to_the_total(ed25519_key: Ed25519PrivateKey, photo_file: Path) -> None:
    fake = WireBaton()
    seen: list[tuple[int, int]] = []
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.attach(REF, photo_file, kind="photo", progress=lambda sent, total: seen.append((sent, total)))

    total = len(fake.bodies[0])
    sent = [s for s, _ in seen]
    assert {t for _, t in seen} == {total}
    assert len(seen) == math.ceil(total / CHUNK)
    assert sent == sorted(sent) and sent[-1] == total
    assert all(0 < after - before <= CHUNK for before, after in zip([0, *sent], sent, strict=False))


def test_an_explicit_idempotency_key_is_sent_with_the_upload(ed25519_key: Ed25519PrivateKey) -> None:
    fake = WireBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.attach(REF, b"x", kind="photo", idempotency_key="lh-att-0001")
        baton.attach(REF, b"x", kind="photo")
        baton.attach(REF, b"x", kind="photo")

    keys = [request.headers["Idempotency-Key"] for request in fake.requests]
    assert keys[0] == "lh-att-0001"
    assert keys[1] != keys[2]


def test_async_upload_streams_signs_retries_and_reports_progress(
    ed25519_key: Ed25519PrivateKey, photo_file: Path
) -> None:
    fake = WireBaton(problem(502, "Bad Gateway", "upstream"), httpx.Response(201, json=ATTACHMENT))
    seen: list[tuple[int, int]] = []
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario() -> dict[str, Any]:
        signer = BatonSigner.ed25519(KEYID, ed25519_key)
        async with AsyncBatonClient(BASE_URL, signer, transport=fake.async_transport(), sleep=record) as baton:
            return await baton.attach(
                REF, photo_file, kind="photo", note="belt 3", progress=lambda s, t: seen.append((s, t))
            )

    assert asyncio.run(scenario()) == ATTACHMENT
    first, second = fake.requests
    assert fake.bodies[0] == fake.bodies[1]
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert signature_params(first)["nonce"] != signature_params(second)["nonce"]
    assert second.headers["Content-Digest"] == sha256_digest(fake.bodies[1])
    verify_independently(second, algorithm=ED25519, key=ed25519_key.public_key(), body=fake.bodies[1])
    assert parse_form(second, fake.bodies[1])["file"].data == PHOTO
    assert seen[-1] == (len(fake.bodies[1]), len(fake.bodies[1]))
    assert sleeps == [0.5]


# --- reading attachments and deliveries ---------------------------------------------------------


def test_reads_are_signed_gets_on_the_right_paths(ed25519_key: Ed25519PrivateKey) -> None:
    page = {"items": [ATTACHMENT], "next_cursor": "c2"}
    slots = {"items": [{"start": "2026-11-04T09:00:00+01:00", "end": "2026-11-04T12:00:00+01:00"}]}
    fake = WireBaton(
        httpx.Response(200, json=page),
        httpx.Response(200, json=page | {"next_cursor": None}),
        httpx.Response(200, content=PHOTO, headers={"Content-Type": "image/jpeg"}),
        httpx.Response(200, json=DELIVERY),
        httpx.Response(200, json=slots),
    )
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        answers = [
            baton.attachments(REF),
            baton.attachments(REF, cursor="c2"),
            baton.attachment(REF, "att/01"),
            baton.delivery(REF),
            baton.delivery_slots(REF),
        ]

    assert answers == [page, page | {"next_cursor": None}, PHOTO, DELIVERY, slots]
    assert [(r.method, r.url.raw_path) for r in fake.requests] == [
        ("GET", f"/v1/cases/{REF}/attachments".encode()),
        ("GET", f"/v1/cases/{REF}/attachments?cursor=c2".encode()),
        ("GET", f"/v1/cases/{REF}/attachments/att%2F01".encode()),
        ("GET", f"/v1/cases/{REF}/delivery".encode()),
        ("GET", f"/v1/cases/{REF}/delivery/slots".encode()),
    ]
    for request in fake.requests:
        assert "Content-Digest" not in request.headers
        verify_independently(
            request, algorithm=ED25519, key=ed25519_key.public_key(), require_components=("@method", "@target-uri")
        )


def test_a_missing_attachment_raises_not_found_instead_of_returning_the_problem_as_bytes(
    ed25519_key: Ed25519PrivateKey,
) -> None:
    fake = WireBaton(problem(404, "Not Found", "No attachment att_99 on this case."))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton, pytest.raises(BatonNotFound) as raised:
        baton.attachment(REF, "att_99")

    assert raised.value.detail == "No attachment att_99 on this case."


def test_accept_delivery_posts_an_empty_object_with_an_idempotency_key(ed25519_key: Ed25519PrivateKey) -> None:
    fake = WireBaton(httpx.Response(200, json=DELIVERY))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        delivery = baton.accept_delivery(REF, idempotency_key="fc-accept-1")

    [request] = fake.requests
    assert delivery == DELIVERY
    assert (request.method, request.url.path) == ("POST", f"/v1/cases/{REF}/delivery/accept")
    assert json.loads(fake.bodies[0]) == {}
    assert request.headers["Idempotency-Key"] == "fc-accept-1"
    verify_independently(request, algorithm=ED25519, key=ed25519_key.public_key(), body=fake.bodies[0])


# --- proof of delivery --------------------------------------------------------------------------


def test_deliver_sends_only_the_given_fields_keeping_leading_zeros(ed25519_key: Ed25519PrivateKey) -> None:
    fake = WireBaton(httpx.Response(201, json=PROOF))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        proof = baton.deliver(REF, pin="0042", bag_tag="0016123456")

    [request] = fake.requests
    assert proof == PROOF
    assert (request.method, request.url.path) == ("POST", f"/v1/cases/{REF}/delivery/proof")
    form = parse_form(request, fake.bodies[0])
    assert {name: part.text for name, part in form.items()} == {"pin": "0042", "bag_tag": "0016123456"}
    assert all(part.filename is None for part in form.values())
    verify_independently(request, algorithm=ED25519, key=ed25519_key.public_key(), body=fake.bodies[0])


def test_deliver_uploads_photo_and_signature_images(
    ed25519_key: Ed25519PrivateKey, photo_file: Path, tmp_path: Path
) -> None:
    signature_file = tmp_path / "signature.png"
    signature_file.write_bytes(b"\x89PNG\r\n\x1a\n signed")
    fake = WireBaton(httpx.Response(201, json=PROOF))
    seen: list[tuple[int, int]] = []
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.deliver(REF, photo=photo_file, signature=signature_file, progress=lambda s, t: seen.append((s, t)))
        baton.deliver(REF, photo=b"\xff\xd8 raw photo")

    both, only_photo = (parse_form(r, b) for r, b in zip(fake.requests, fake.bodies, strict=True))
    assert list(both) == ["photo", "signature"]
    assert (both["photo"].filename, both["photo"].headers["content-type"], both["photo"].data) == (
        "bag.jpg",
        "image/jpeg",
        PHOTO,
    )
    assert (both["signature"].filename, both["signature"].headers["content-type"]) == ("signature.png", "image/png")
    assert both["signature"].data == signature_file.read_bytes()
    assert list(only_photo) == ["photo"]
    assert (only_photo["photo"].filename, only_photo["photo"].data) == ("photo", b"\xff\xd8 raw photo")
    assert seen[-1] == (len(fake.bodies[0]), len(fake.bodies[0]))


def test_deliver_with_nothing_to_prove_is_refused_before_anything_is_sent(ed25519_key: Ed25519PrivateKey) -> None:
    fake = WireBaton()
    with (
        client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton,
        pytest.raises(ValueError, match="at least one of photo, signature, pin or bag_tag"),
    ):
        baton.deliver(REF)

    assert fake.requests == []


def test_a_wrong_pin_is_an_api_error_with_the_problem_detail_and_is_not_retried(
    ed25519_key: Ed25519PrivateKey,
) -> None:
    fake = WireBaton(
        problem(422, "Unprocessable Content", "The PIN does not match.", "https://baton.example/problems/wrong-pin")
    )
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton, pytest.raises(BatonAPIError) as raised:
        baton.deliver(REF, pin="1111")

    assert (raised.value.status, raised.value.detail) == (422, "The PIN does not match.")
    assert raised.value.type == "https://baton.example/problems/wrong-pin"
    assert len(fake.requests) == 1


# --- command line -------------------------------------------------------------------------------


def cli_env(key_file: Path, **extra: str | None) -> dict[str, str | None]:
    # No terminal unless a test says so: the runner's streams are not one, whatever the shell's are.
    terminal = {"TTY_COMPATIBLE": None, "FORCE_COLOR": None, "TTY_INTERACTIVE": None}
    return {"BATON_URL": BASE_URL, "BATON_KEYID": KEYID, "BATON_KEY_FILE": str(key_file)} | terminal | extra


def test_cli_attach_uploads_the_file_signed_and_prints_only_the_answer(
    key_file: Path, photo_file: Path, runner: CliRunner
) -> None:
    fake = WireBaton()
    result = runner.invoke(
        app,
        ["attach", REF, str(photo_file), "--kind", "photo", "--note", "belt 3", "--visibility", "public"],
        env=cli_env(key_file),
        obj=fake.transport(),
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ATTACHMENT
    assert result.stderr == ""  # no progress bar off a terminal
    [request] = fake.requests
    assert request.url.path == f"/v1/cases/{REF}/attachments"
    form = parse_form(request, fake.bodies[0])
    assert {name: form[name].text for name in ("kind", "note", "visibility")} == {
        "kind": "photo",
        "note": "belt 3",
        "visibility": "public",
    }
    assert form["file"].data == PHOTO
    verify_independently(
        request, algorithm=ED25519, key=load_private_key(key_file).public_key(), body=fake.bodies[0]
    )


def test_cli_attach_shows_bytes_and_speed_on_a_terminal(key_file: Path, photo_file: Path, runner: CliRunner) -> None:
    fake = WireBaton()
    result = runner.invoke(
        app,
        ["attach", REF, str(photo_file), "--kind", "photo"],
        env=cli_env(key_file, TTY_COMPATIBLE="1"),
        obj=fake.transport(),
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ATTACHMENT  # the bar stays on stderr
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr)
    size_kb = f"{len(fake.bodies[0]) / 1000:.1f}"
    assert re.search(rf"bag\.jpg .*{re.escape(size_kb)}/{re.escape(size_kb)} kB .*B/s", shown), shown


def test_cli_attach_refuses_a_missing_file_before_sending(key_file: Path, tmp_path: Path, runner: CliRunner) -> None:
    fake = WireBaton()
    result = runner.invoke(
        app, ["attach", REF, str(tmp_path / "nope.jpg"), "--kind", "photo"], env=cli_env(key_file), obj=fake.transport()
    )

    assert result.exit_code == 2
    assert "nope.jpg" in result.stderr
    assert fake.requests == []


def test_cli_delivery_prints_the_delivery(key_file: Path, runner: CliRunner) -> None:
    fake = WireBaton(httpx.Response(200, json=DELIVERY))
    result = runner.invoke(app, ["delivery", REF], env=cli_env(key_file), obj=fake.transport())

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == DELIVERY
    assert (fake.requests[0].method, fake.requests[0].url.path) == ("GET", f"/v1/cases/{REF}/delivery")


def test_cli_accept_delivery_posts_to_accept_and_prints_the_delivery(key_file: Path, runner: CliRunner) -> None:
    fake = WireBaton(httpx.Response(200, json=DELIVERY | {"state": "accepted"}))
    result = runner.invoke(app, ["accept-delivery", REF], env=cli_env(key_file), obj=fake.transport())

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "accepted"
    [request] = fake.requests
    assert (request.method, request.url.path) == ("POST", f"/v1/cases/{REF}/delivery/accept")
    assert json.loads(fake.bodies[0]) == {}
    assert "Idempotency-Key" in request.headers


def test_cli_deliver_sends_the_given_proof_and_prints_the_answer(
    key_file: Path, photo_file: Path, runner: CliRunner
) -> None:
    fake = WireBaton(httpx.Response(201, json=PROOF))
    result = runner.invoke(
        app,
        ["deliver", REF, "--photo", str(photo_file), "--pin", "0042", "--tag", "0016123456"],
        env=cli_env(key_file),
        obj=fake.transport(),
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == PROOF
    [request] = fake.requests
    assert request.url.path == f"/v1/cases/{REF}/delivery/proof"
    form = parse_form(request, fake.bodies[0])
    assert sorted(form) == ["bag_tag", "photo", "pin"]
    assert (form["pin"].text, form["bag_tag"].text, form["photo"].data) == ("0042", "0016123456", PHOTO)
    verify_independently(
        request, algorithm=ED25519, key=load_private_key(key_file).public_key(), body=fake.bodies[0]
    )


def test_cli_deliver_without_any_proof_is_a_usage_error(key_file: Path, runner: CliRunner) -> None:
    fake = WireBaton()
    result = runner.invoke(app, ["deliver", REF], env=cli_env(key_file), obj=fake.transport())

    assert result.exit_code == 2
    assert "--pin" in result.stderr
    assert fake.requests == []


def test_cli_deliver_reports_a_wrong_pin_like_other_errors(key_file: Path, runner: CliRunner) -> None:
    fake = WireBaton(problem(422, "Unprocessable Content", "The PIN does not match."))
    result = runner.invoke(app, ["deliver", REF, "--pin", "1111"], env=cli_env(key_file), obj=fake.transport())

    assert result.exit_code == 1
    assert result.stderr.strip() == "error: 422 Unprocessable Content: The PIN does not match."
    assert result.stdout == ""
    assert "Traceback" not in result.output
