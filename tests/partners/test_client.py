"""The partner client signs what Baton's contract says, retries safely, and reports problems.

Signatures are checked with ``http_message_signatures``, an independent RFC 9421
implementation, so the client cannot pass by agreeing only with itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, InvalidSignature
from http_message_signatures.algorithms import ED25519, HMAC_SHA256
from typer.testing import CliRunner

from partners.client import (
    AsyncBatonClient,
    BatonAPIError,
    BatonAuthError,
    BatonClient,
    BatonConflict,
    BatonNotFound,
    BatonSigner,
    BatonTransportError,
    generate_ed25519_keypair,
    load_private_key,
    public_key_pem,
)
from partners.client.cli import app

BASE_URL = "https://baton.example"
REF = "BAG-7KQ3X9M"
KEYID = "lh-2026-11"
EVENT = {"seq": 4, "hash": "9f2c", "type": "status", "status": "located"}
WITH_BODY = ("@method", "@target-uri", "content-digest")


# --- independent verification -------------------------------------------------------------


@dataclass
class _MessageView:
    """What http_message_signatures reads from a request: method, absolute URL, headers."""

    method: str
    url: str
    headers: httpx.Headers


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, keyid: str, key: Any) -> None:
        self.keyid = keyid
        self.key = key

    def resolve_public_key(self, key_id: str) -> Any:
        return self.key if key_id == self.keyid else None


def verify_independently(
    request: httpx.Request,
    *,
    algorithm: type,
    key: Any,
    body: bytes | None = None,
    require_components: tuple[str, ...] = WITH_BODY,
) -> Any:
    """Verify a request the client sent, with the third-party verifier; returns its one result."""
    verifier = HTTPMessageVerifier(signature_algorithm=algorithm, key_resolver=_OneKey(KEYID, key))
    message = _MessageView(method=request.method, url=str(request.url), headers=request.headers)
    [result] = verifier.verify(
        message,
        require_components=require_components,
        body=request.content if body is None else body,
    )
    return result


def signature_params(request: httpx.Request) -> dict[str, str]:
    """The parameters of the ``baton`` signature, e.g. ``{"nonce": "...", "keyid": "..."}``."""
    _, _, params = request.headers["Signature-Input"].partition(");")
    pairs = (param.split("=", 1) for param in params.split(";"))
    return {name: value.strip('"') for name, value in pairs}


# --- fakes at the edge: an httpx transport that answers like Baton ----------------------------


Answer = httpx.Response | Exception


class FakeBaton:
    """Records every request and answers from a script (the last answer repeats)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers) or [httpx.Response(201, json=EVENT)]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def async_transport(self) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            await request.aread()
            return self(request)

        return httpx.MockTransport(handler)


def problem(status: int, title: str, detail: str, type_: str = "about:blank") -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": type_, "title": title, "status": status, "detail": detail},
        headers={"Content-Type": "application/problem+json"},
    )


def client_for(fake: FakeBaton, signer: BatonSigner, sleeps: list[float] | None = None) -> BatonClient:
    record = (sleeps if sleeps is not None else []).append
    return BatonClient(BASE_URL, signer, transport=fake.transport(), sleep=record)


# --- signing ----------------------------------------------------------------------------------


def test_signature_verifies_with_independent_implementation_ed25519(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.post_update(REF, status="located", message="Your bag is in Frankfurt.")

    [request] = fake.requests
    result = verify_independently(request, algorithm=ED25519, key=ed25519_key.public_key())

    assert result.parameters["keyid"] == KEYID
    assert result.parameters["alg"] == "ed25519"
    assert result.covered_components['"@target-uri"'] == f"{BASE_URL}/v1/cases/{REF}/events"
    assert result.body == request.content


def test_signature_verifies_with_independent_implementation_hmac(hmac_secret: bytes) -> None:
    fake = FakeBaton()
    signer = BatonSigner.hmac(KEYID, base64.b64encode(hmac_secret).decode())
    with client_for(fake, signer) as baton:
        baton.post_update(REF, status="located")

    [request] = fake.requests
    result = verify_independently(request, algorithm=HMAC_SHA256, key=hmac_secret)

    assert result.parameters["alg"] == "hmac-sha256"


def test_hmac_signature_made_with_another_secret_does_not_verify(hmac_secret: bytes) -> None:
    fake = FakeBaton()
    signer = BatonSigner.hmac(KEYID, base64.b64encode(secrets.token_bytes(32)))
    with client_for(fake, signer) as baton:
        baton.post_update(REF, status="located")

    with pytest.raises(InvalidSignature):
        verify_independently(fake.requests[0], algorithm=HMAC_SHA256, key=hmac_secret)


def test_signature_headers_and_base_follow_the_contract_exactly(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton()
    nonce = "n" * 22
    signer = BatonSigner.ed25519(KEYID, ed25519_key, clock=lambda: 1_767_225_600.9, nonce_factory=lambda: nonce)
    with client_for(fake, signer) as baton:
        baton.post_update(REF, status="located")

    [request] = fake.requests
    params = (
        f'("@method" "@target-uri" "content-digest");created=1767225600;keyid="{KEYID}";nonce="{nonce}";alg="ed25519"'
    )
    assert request.headers["Signature-Input"] == f"baton={params}"
    base = "\n".join(
        [
            '"@method": POST',
            f'"@target-uri": {BASE_URL}/v1/cases/{REF}/events',
            f'"content-digest": {request.headers["Content-Digest"]}',
            f'"@signature-params": {params}',
        ]
    ).encode()
    label, _, value = request.headers["Signature"].partition("=")
    assert label == "baton" and value.startswith(":") and value.endswith(":")
    ed25519_key.public_key().verify(base64.b64decode(value.strip(":")), base)  # raises if it differs


def test_content_digest_is_sha256_of_the_exact_body_sent(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.post_update(REF, message="Zürich → Frankfurt")

    [request] = fake.requests
    expected = base64.b64encode(hashlib.sha256(request.content).digest()).decode()
    assert request.headers["Content-Digest"] == f"sha-256=:{expected}:"


def test_tampered_body_fails_independent_verification(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.post_update(REF, status="located")

    tampered = fake.requests[0].content.replace(b"located", b"delivered")
    with pytest.raises(InvalidSignature):
        verify_independently(fake.requests[0], algorithm=ED25519, key=ed25519_key.public_key(), body=tampered)


def test_get_request_is_signed_without_content_digest_and_covers_the_query(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(httpx.Response(200, json={"items": [], "next_cursor": None}))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.cases(status="late", limit=10)

    [request] = fake.requests
    assert "Content-Digest" not in request.headers
    result = verify_independently(
        request, algorithm=ED25519, key=ed25519_key.public_key(), require_components=("@method", "@target-uri")
    )
    assert '"content-digest"' not in result.covered_components
    assert result.covered_components['"@target-uri"'] == f"{BASE_URL}/v1/cases?status=late&limit=10"


def test_accepting_a_handoff_sends_an_empty_json_object_and_covers_its_digest(
    ed25519_key: Ed25519PrivateKey,
) -> None:
    fake = FakeBaton(httpx.Response(200, json={"id": "h1", "state": "accepted"}))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        handoff = baton.accept_handoff(REF, "h1")

    [request] = fake.requests
    assert handoff["state"] == "accepted"
    assert request.url.path == f"/v1/cases/{REF}/handoffs/h1/accept"
    assert json.loads(request.content) == {}
    verify_independently(request, algorithm=ED25519, key=ed25519_key.public_key())


def test_nonces_are_unique_url_safe_and_carry_at_least_16_random_bytes(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        for _ in range(5):
            baton.post_update(REF, status="located")

    nonces = [signature_params(request)["nonce"] for request in fake.requests]
    assert len(set(nonces)) == 5
    for nonce in nonces:
        assert "=" not in nonce and "+" not in nonce and "/" not in nonce
        assert len(base64.urlsafe_b64decode(nonce + "==")) >= 16


def test_signer_accepts_a_pem_private_key() -> None:
    private_pem, _ = generate_ed25519_keypair()
    key = load_private_key(private_pem)
    fake = FakeBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, private_pem.decode())) as baton:
        baton.post_update(REF, status="located")

    verify_independently(fake.requests[0], algorithm=ED25519, key=key.public_key())


def test_hmac_secret_must_be_standard_base64() -> None:
    with pytest.raises(ValueError, match="base64"):
        BatonSigner.hmac(KEYID, "not base64 at all!")


def test_key_file_content_decides_the_algorithm(tmp_path: Path, hmac_secret: bytes) -> None:
    pem_file = tmp_path / "lh.key"
    pem_file.write_bytes(generate_ed25519_keypair()[0])
    secret_file = tmp_path / "lh.secret"
    secret_file.write_text(base64.b64encode(hmac_secret).decode() + "\n")

    assert BatonSigner.from_key_file(KEYID, pem_file).alg == "ed25519"
    assert BatonSigner.from_key_file(KEYID, secret_file).alg == "hmac-sha256"
    with pytest.raises(ValueError, match="holds a ed25519 key, not hmac-sha256"):
        BatonSigner.from_key_file(KEYID, pem_file, alg="hmac-sha256")


# --- request bodies ---------------------------------------------------------------------------


def test_post_update_sends_only_given_fields_with_rfc3339_offsets(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton()
    eta = datetime(2026, 11, 3, 18, 0, tzinfo=timezone(timedelta(hours=1)))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        event = baton.post_update(REF, status="located", location="FRA", eta=eta)

    [request] = fake.requests
    assert event == EVENT
    assert request.method == "POST" and request.url.path == f"/v1/cases/{REF}/events"
    assert json.loads(request.content) == {
        "status": "located",
        "location": "FRA",
        "eta": "2026-11-03T18:00:00+01:00",
    }


def test_naive_datetime_is_refused_before_anything_is_sent(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton()
    naive = datetime(2026, 11, 3, 18, 0)
    with (
        client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton,
        pytest.raises(ValueError, match="next_update_by must be timezone-aware"),
    ):
        baton.post_update(REF, status="located", next_update_by=naive)

    assert fake.requests == []


def test_hand_off_sends_receiver_note_and_window_as_iso_duration(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(httpx.Response(201, json={"id": "h1", "to": "fastcourier", "state": "offered"}))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.hand_off(REF, to="fastcourier", note="Bag on belt 3", accept_within=timedelta(hours=2, minutes=30))

    [request] = fake.requests
    assert request.url.path == f"/v1/cases/{REF}/handoffs"
    assert json.loads(request.content) == {"to": "fastcourier", "note": "Bag on belt 3", "accept_within": "PT2H30M"}


def test_case_reference_cannot_escape_its_path_segment(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(httpx.Response(200, json={"ref": REF}))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.case("../partners")

    assert fake.requests[0].url.raw_path == b"/v1/cases/..%2Fpartners"


def test_iter_cases_follows_next_cursor_until_it_is_null(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(
        httpx.Response(200, json={"items": [{"ref": "BAG-1"}, {"ref": "BAG-2"}], "next_cursor": "c2"}),
        httpx.Response(200, json={"items": [{"ref": "BAG-3"}], "next_cursor": None}),
    )
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        refs = [case["ref"] for case in baton.iter_cases(status="open")]

    assert refs == ["BAG-1", "BAG-2", "BAG-3"]
    assert [request.url.params.get("cursor") for request in fake.requests] == [None, "c2"]
    assert all(request.url.params["status"] == "open" for request in fake.requests)


# --- idempotency and retries ------------------------------------------------------------------


def test_retries_reuse_the_idempotency_key_and_are_signed_afresh(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(
        problem(503, "Service Unavailable", "restarting"),
        httpx.ConnectError("connection refused"),
        httpx.Response(201, json=EVENT),
    )
    sleeps: list[float] = []
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key), sleeps) as baton:
        event = baton.post_update(REF, status="located")

    assert event == EVENT
    assert len(fake.requests) == 3
    assert len({request.headers["Idempotency-Key"] for request in fake.requests}) == 1
    assert len({signature_params(request)["nonce"] for request in fake.requests}) == 3
    assert len({request.content for request in fake.requests}) == 1
    for request in fake.requests:
        verify_independently(request, algorithm=ED25519, key=ed25519_key.public_key())
    assert sleeps == [0.5, 1.0]


def test_a_given_idempotency_key_is_sent_verbatim(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.post_update(REF, status="located", idempotency_key="lh-msg-20261103-0001")

    assert fake.requests[0].headers["Idempotency-Key"] == "lh-msg-20261103-0001"


def test_each_update_gets_its_own_idempotency_key(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.post_update(REF, status="located")
        baton.post_update(REF, status="located")

    assert fake.requests[0].headers["Idempotency-Key"] != fake.requests[1].headers["Idempotency-Key"]


def test_network_failures_beyond_the_retries_raise_transport_error(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(httpx.ReadTimeout("no answer"))
    sleeps: list[float] = []
    with (
        BatonClient(
            BASE_URL,
            BatonSigner.ed25519(KEYID, ed25519_key),
            retries=2,
            transport=fake.transport(),
            sleep=sleeps.append,
        ) as baton,
        pytest.raises(BatonTransportError, match="no answer"),
    ):
        baton.post_update(REF, status="located")

    assert len(fake.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_gateway_errors_beyond_the_retries_surface_as_the_last_problem(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(problem(502, "Bad Gateway", "upstream down"))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton, pytest.raises(BatonAPIError) as raised:
        baton.post_update(REF, status="located")

    assert raised.value.status == 502
    assert len(fake.requests) == 4  # the first try and three retries


def test_client_errors_are_not_retried(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(problem(422, "Unprocessable", "unknown status 'lost-ish'"))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton, pytest.raises(BatonAPIError):
        baton.post_update(REF, status="lost-ish")

    assert len(fake.requests) == 1


# --- problem details --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exception"),
    [(401, BatonAuthError), (404, BatonNotFound), (409, BatonConflict), (403, BatonAPIError), (422, BatonAPIError)],
)
def test_problem_details_map_to_exceptions(
    ed25519_key: Ed25519PrivateKey, status: int, exception: type[BatonAPIError]
) -> None:
    fake = FakeBaton(problem(status, "Refused", f"because {status}", "https://baton.example/problems/refused"))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton, pytest.raises(BatonAPIError) as raised:
        baton.post_update(REF, status="located")

    error = raised.value
    assert type(error) is exception
    assert (error.status, error.title, error.detail) == (status, "Refused", f"because {status}")
    assert error.type == "https://baton.example/problems/refused"
    assert str(error) == f"{status} Refused: because {status}"


def test_an_error_without_problem_json_still_raises_with_the_reason_phrase(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(httpx.Response(404, text="<html>not here</html>", headers={"Content-Type": "text/html"}))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton, pytest.raises(BatonNotFound) as raised:
        baton.case(REF)

    assert raised.value.title == "Not Found"
    assert raised.value.type == "about:blank"


# --- async ------------------------------------------------------------------------------------


def test_async_client_signs_and_retries_like_the_sync_one(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(problem(504, "Gateway Timeout", "slow"), httpx.Response(201, json=EVENT))
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario() -> dict[str, Any]:
        signer = BatonSigner.ed25519(KEYID, ed25519_key)
        async with AsyncBatonClient(BASE_URL, signer, transport=fake.async_transport(), sleep=record) as baton:
            return await baton.post_update(REF, status="located")

    assert asyncio.run(scenario()) == EVENT
    first, second = fake.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert signature_params(first)["nonce"] != signature_params(second)["nonce"]
    verify_independently(second, algorithm=ED25519, key=ed25519_key.public_key())
    assert sleeps == [0.5]


def test_async_iter_cases_follows_next_cursor(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(
        httpx.Response(200, json={"items": [{"ref": "BAG-1"}], "next_cursor": "c2"}),
        httpx.Response(200, json={"items": [{"ref": "BAG-2"}], "next_cursor": None}),
    )

    async def scenario() -> list[str]:
        signer = BatonSigner.ed25519(KEYID, ed25519_key)
        async with AsyncBatonClient(BASE_URL, signer, transport=fake.async_transport()) as baton:
            return [case["ref"] async for case in baton.iter_cases()]

    assert asyncio.run(scenario()) == ["BAG-1", "BAG-2"]


# --- keys -------------------------------------------------------------------------------------


def test_generated_keypair_pem_round_trips() -> None:
    private_pem, public_pem = generate_ed25519_keypair()

    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert public_key_pem(load_private_key(private_pem)) == public_pem


# --- command line -----------------------------------------------------------------------------


def cli_env(key_file: Path) -> dict[str, str]:
    return {"BATON_URL": BASE_URL, "BATON_KEYID": KEYID, "BATON_KEY_FILE": str(key_file)}


def test_cli_keygen_writes_a_private_key_only_you_can_read_and_prints_its_public_key(
    tmp_path: Path, runner: CliRunner
) -> None:
    out = tmp_path / "lh.key"
    result = runner.invoke(app, ["--keyid", KEYID, "keygen", "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert result.stdout.encode() == public_key_pem(load_private_key(out))
    assert "/v1/partners/" in result.stderr and KEYID in result.stderr


def test_cli_keygen_refuses_to_overwrite_an_existing_key(key_file: Path, runner: CliRunner) -> None:
    before = key_file.read_bytes()
    result = runner.invoke(app, ["keygen", "--out", str(key_file)])

    assert result.exit_code == 1
    assert "--force" in result.stderr
    assert key_file.read_bytes() == before


def test_cli_post_update_signs_with_the_key_file_and_prints_the_event(key_file: Path, runner: CliRunner) -> None:
    fake = FakeBaton()
    result = runner.invoke(
        app,
        ["post-update", REF, "--status", "located", "--message", "In Frankfurt", "--eta", "2026-11-03T18:00:00Z"],
        env=cli_env(key_file),
        obj=fake.transport(),
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["seq"] == 4
    [request] = fake.requests
    assert json.loads(request.content) == {
        "status": "located",
        "message": "In Frankfurt",
        "eta": "2026-11-03T18:00:00+00:00",
    }
    verify_independently(request, algorithm=ED25519, key=load_private_key(key_file).public_key())


def test_cli_signs_with_an_hmac_secret_file(tmp_path: Path, runner: CliRunner, hmac_secret: bytes) -> None:
    secret_file = tmp_path / "lh.secret"
    secret_file.write_text(base64.b64encode(hmac_secret).decode())
    fake = FakeBaton(httpx.Response(200, json={"id": "h1", "state": "accepted"}))
    result = runner.invoke(app, ["accept-handoff", REF, "h1"], env=cli_env(secret_file), obj=fake.transport())

    assert result.exit_code == 0, result.output
    assert fake.requests[0].url.path == f"/v1/cases/{REF}/handoffs/h1/accept"
    verify_independently(fake.requests[0], algorithm=HMAC_SHA256, key=hmac_secret)


def test_cli_hand_off_passes_the_iso_duration_through(key_file: Path, runner: CliRunner) -> None:
    fake = FakeBaton(httpx.Response(201, json={"id": "h1", "to": "fastcourier"}))
    result = runner.invoke(
        app,
        ["hand-off", REF, "--to", "fastcourier", "--accept-within", "PT2H"],
        env=cli_env(key_file),
        obj=fake.transport(),
    )

    assert result.exit_code == 0, result.output
    assert json.loads(fake.requests[0].content) == {"to": "fastcourier", "accept_within": "PT2H"}


def test_cli_prints_the_problem_on_stderr_and_exits_1(key_file: Path, runner: CliRunner) -> None:
    fake = FakeBaton(problem(404, "Not Found", f"No case {REF}"))
    result = runner.invoke(
        app, ["post-update", REF, "--status", "located"], env=cli_env(key_file), obj=fake.transport()
    )

    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: 404 Not Found: No case {REF}"
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_cli_without_a_key_id_names_the_missing_setting(key_file: Path, runner: CliRunner) -> None:
    env = cli_env(key_file) | {"BATON_KEYID": ""}
    result = runner.invoke(app, ["cases"], env=env, obj=FakeBaton().transport())

    assert result.exit_code == 2
    assert "BATON_KEYID" in result.stderr


def test_cli_refuses_a_time_without_offset(key_file: Path, runner: CliRunner) -> None:
    fake = FakeBaton()
    result = runner.invoke(
        app, ["post-update", REF, "--eta", "2026-11-03T18:00:00"], env=cli_env(key_file), obj=fake.transport()
    )

    assert result.exit_code == 2
    assert "offset" in result.stderr
    assert fake.requests == []


def test_cli_cases_shows_your_role_and_state_on_each_case(key_file: Path, runner: CliRunner) -> None:
    case = {
        "ref": REF,
        "status": "located",
        "type": "baggage",
        "parties": [
            {"partner": "ua", "role": "owner", "state": "on_track"},
            {"partner": "lh", "role": "carrier", "state": "late"},
        ],
    }
    fake = FakeBaton(httpx.Response(200, json={"items": [case], "next_cursor": None}))
    result = runner.invoke(
        app, ["--partner", "lh", "cases", "--status", "located"], env=cli_env(key_file), obj=fake.transport()
    )

    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if REF in line]
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == [REF, "located", "baggage", "carrier", "late"]
    assert fake.requests[0].url.params["status"] == "located"
