"""The partner client sends files of bag scans as they are, signed, and asks Baton whose key it holds.

As for evidence, the fake Baton reads each body off the request's stream, so the checks are on
the bytes that went over the wire; signatures verify with ``http_message_signatures``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import InvalidSignature
from http_message_signatures.algorithms import ED25519, HMAC_SHA256
from typer.testing import CliRunner

from partners.client import AsyncBatonClient, BatonAPIError, BatonClient, BatonSigner, load_private_key
from partners.client.cli import app
from tests.partners.test_client import BASE_URL, KEYID, REF, problem, signature_params, verify_independently
from tests.partners.test_client_evidence import WireBaton, cli_env, sha256_digest

CHUNK = 64 * 1024
TALLY = {"accepted": 3, "matched": 2, "unmatched": 1, "duplicates": 0, "errors": []}
REFUSED = {
    "accepted": 2,
    "matched": 1,
    "unmatched": 1,
    "duplicates": 4,
    "errors": [
        {"line": 3, "detail": "at: not a time with an offset"},
        {"line": 7, "detail": "point: [bold]unknown[/bold] 'belt'"},
    ],
}
ME = {"kind": "partner", "partner": "lh", "name": "Lufthansa", "role": None}
CSV = (
    "bag_tag,at,station,point,flight,note\r\n"
    "0220123456,2026-11-03T14:05:00+01:00,FRA,transfer,LH400,\r\n"
    '0220123457,2026-11-03T14:06:00+01:00,FRA,on_hand,,"Gepäck, zip torn"\r\n'
).encode()
JSON = json.dumps(
    {"scans": [{"bag_tag": "0220123456", "at": "2026-11-03T14:05:00+01:00", "station": "FRA", "point": "arrival"}]}
).encode()
TYPE_B = b"BSM\r\n.V/1LFRA\r\n.F/LH400/03NOV/JFK/Y\r\n.N/0220123456001\r\nENDBSM\r\n"
# Several chunks of CSV, so chunking, progress and the digest are tested over more than one.
BIG_CSV = CSV + b"".join(
    f"02201{n:05d},2026-11-03T14:05:00+01:00,FRA,transfer,LH400,{secrets.token_hex(8)}\r\n".encode()
    for n in range(4000)
)


def client_for(fake: WireBaton, key: Ed25519PrivateKey, sleeps: list[float] | None = None) -> BatonClient:
    record = (sleeps if sleeps is not None else []).append
    return BatonClient(BASE_URL, BatonSigner.ed25519(KEYID, key), transport=fake.transport(), sleep=record)


def scans_answer(tally: dict[str, Any] = TALLY) -> httpx.Response:
    return httpx.Response(200, json=tally)


# --- the body and its type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("scans.csv", CSV, "text/csv"),
        ("SCANS.CSV", CSV, "text/csv"),
        ("scans.json", JSON, "application/json"),
        ("bsm.txt", TYPE_B, "text/plain"),
        ("bsm", TYPE_B, "text/plain"),
        ("scans.csv.bak", CSV, "text/plain"),
    ],
)
def test_a_file_goes_byte_for_byte_with_the_type_its_extension_names(
    name: str, data: bytes, content_type: str, ed25519_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    fake = WireBaton(scans_answer())
    with client_for(fake, ed25519_key) as baton:
        tally = baton.upload_scans(path)

    [request] = fake.requests
    assert tally == TALLY
    assert (request.method, request.url.path) == ("POST", "/v1/scans")
    assert request.headers["Content-Type"] == content_type
    assert fake.bodies == [data]
    assert int(request.headers["Content-Length"]) == len(data)


def test_bytes_go_as_type_b_and_a_given_type_wins_over_the_extension(
    ed25519_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    misnamed = tmp_path / "export.txt"
    misnamed.write_bytes(CSV)
    fake = WireBaton(scans_answer())
    with client_for(fake, ed25519_key) as baton:
        baton.upload_scans(TYPE_B)
        baton.upload_scans(JSON, content_type="application/json")
        baton.upload_scans(str(misnamed), content_type="text/csv")

    assert [r.headers["Content-Type"] for r in fake.requests] == ["text/plain", "application/json", "text/csv"]
    assert fake.bodies == [TYPE_B, JSON, CSV]


# --- digest and signature -----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ed25519", "hmac-sha256"])
def test_the_signature_covers_the_digest_of_the_bytes_on_the_wire(
    alg: str, ed25519_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    secret = secrets.token_bytes(32)
    if alg == "ed25519":
        signer, algorithm, key = BatonSigner.ed25519(KEYID, ed25519_key), ED25519, ed25519_key.public_key()
    else:
        signer, algorithm, key = BatonSigner.hmac(KEYID, base64.b64encode(secret)), HMAC_SHA256, secret
    path = tmp_path / "scans.csv"
    path.write_bytes(BIG_CSV)
    fake = WireBaton(scans_answer())
    with BatonClient(BASE_URL, signer, transport=fake.transport()) as baton:
        baton.upload_scans(path)

    [request] = fake.requests
    [body] = fake.bodies
    assert body == BIG_CSV and len(body) > 3 * CHUNK
    assert request.headers["Content-Digest"] == sha256_digest(BIG_CSV)
    result = verify_independently(request, algorithm=algorithm, key=key, body=body)
    assert result.parameters["alg"] == alg
    assert result.covered_components['"content-digest"'] == sha256_digest(BIG_CSV)
    assert result.covered_components['"@target-uri"'] == f"{BASE_URL}/v1/scans"


def test_a_changed_byte_in_the_scans_fails_verification(ed25519_key: Ed25519PrivateKey) -> None:
    fake = WireBaton(scans_answer())
    with client_for(fake, ed25519_key) as baton:
        baton.upload_scans(CSV, content_type="text/csv")

    body = fake.bodies[0]
    tampered = body.replace(b"0220123457", b"0220123458")
    assert tampered != body
    with pytest.raises(InvalidSignature):
        verify_independently(fake.requests[0], algorithm=ED25519, key=ed25519_key.public_key(), body=tampered)


# --- retries and progress -----------------------------------------------------------------------


def test_a_retry_resends_identical_bytes_with_the_same_key_and_a_new_signature(
    ed25519_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    path = tmp_path / "scans.csv"
    path.write_bytes(BIG_CSV)
    fake = WireBaton(problem(503, "Service Unavailable", "restarting"), httpx.ReadTimeout("lost"), scans_answer())
    sleeps: list[float] = []
    seen: list[tuple[int, int]] = []
    with client_for(fake, ed25519_key, sleeps) as baton:
        tally = baton.upload_scans(path, progress=lambda sent, total: seen.append((sent, total)))

    assert tally == TALLY
    assert len(fake.requests) == 3
    assert fake.bodies == [BIG_CSV] * 3
    assert len({r.headers["Idempotency-Key"] for r in fake.requests}) == 1
    assert len({r.headers["Content-Type"] for r in fake.requests}) == 1
    assert len({signature_params(r)["nonce"] for r in fake.requests}) == 3
    for request, body in zip(fake.requests, fake.bodies, strict=True):
        verify_independently(request, algorithm=ED25519, key=ed25519_key.public_key(), body=body)
    assert [sent for sent, _ in seen].count(len(BIG_CSV)) == 3  # each attempt reports its whole upload
    assert sleeps == [0.5, 1.0]


def test_a_given_idempotency_key_is_sent_verbatim_and_each_upload_gets_its_own_otherwise(
    ed25519_key: Ed25519PrivateKey,
) -> None:
    fake = WireBaton(scans_answer())
    with client_for(fake, ed25519_key) as baton:
        baton.upload_scans(CSV, content_type="text/csv", idempotency_key="lh-scans-2026-11-03")
        baton.upload_scans(CSV, content_type="text/csv")
        baton.upload_scans(CSV, content_type="text/csv")

    keys = [request.headers["Idempotency-Key"] for request in fake.requests]
    assert keys[0] == "lh-scans-2026-11-03"
    assert keys[1] != keys[2]


def test_progress_is_reported_chunk_by_chunk_up_to_the_total(ed25519_key: Ed25519PrivateKey) -> None:
    fake = WireBaton(scans_answer())
    seen: list[tuple[int, int]] = []
    with client_for(fake, ed25519_key) as baton:
        baton.upload_scans(BIG_CSV, content_type="text/csv", progress=lambda sent, total: seen.append((sent, total)))

    sent = [s for s, _ in seen]
    assert {t for _, t in seen} == {len(BIG_CSV)}
    assert len(seen) == math.ceil(len(BIG_CSV) / CHUNK)
    assert sent == sorted(sent) and sent[-1] == len(BIG_CSV)


def test_refused_scans_are_an_api_error_and_not_retried(ed25519_key: Ed25519PrivateKey) -> None:
    fake = WireBaton(problem(413, "Content Too Large", "At most 10,000 scans or 4 MiB per request."))
    with client_for(fake, ed25519_key) as baton, pytest.raises(BatonAPIError) as raised:
        baton.upload_scans(BIG_CSV, content_type="text/csv")

    assert (raised.value.status, raised.value.detail) == (413, "At most 10,000 scans or 4 MiB per request.")
    assert len(fake.requests) == 1


def test_async_upload_sends_the_same_bytes_signed_retries_and_reports_progress(
    ed25519_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    path = tmp_path / "bsm.tlx"
    path.write_bytes(TYPE_B)
    fake = WireBaton(problem(502, "Bad Gateway", "upstream"), scans_answer(REFUSED))
    seen: list[tuple[int, int]] = []
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        signer = BatonSigner.ed25519(KEYID, ed25519_key)
        async with AsyncBatonClient(BASE_URL, signer, transport=fake.async_transport(), sleep=record) as baton:
            tally = await baton.upload_scans(path, progress=lambda s, t: seen.append((s, t)))
            fake.answers = [httpx.Response(200, json=ME)]
            return tally, await baton.whoami()

    tally, me = asyncio.run(scenario())
    assert (tally, me) == (REFUSED, ME)
    first, second, asked = fake.requests
    assert fake.bodies[:2] == [TYPE_B, TYPE_B]
    assert second.headers["Content-Type"] == "text/plain"
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert signature_params(first)["nonce"] != signature_params(second)["nonce"]
    verify_independently(second, algorithm=ED25519, key=ed25519_key.public_key(), body=TYPE_B)
    assert seen[-1] == (len(TYPE_B), len(TYPE_B))
    assert sleeps == [0.5]
    assert (asked.method, asked.url.path) == ("GET", "/v1/me")


# --- whoami -------------------------------------------------------------------------------------


def test_whoami_is_a_signed_get_of_me(ed25519_key: Ed25519PrivateKey) -> None:
    fake = WireBaton(httpx.Response(200, json=ME))
    with client_for(fake, ed25519_key) as baton:
        me = baton.whoami()

    [request] = fake.requests
    assert me == ME
    assert (request.method, request.url.path) == ("GET", "/v1/me")
    assert "Content-Digest" not in request.headers and "Idempotency-Key" not in request.headers
    verify_independently(
        request, algorithm=ED25519, key=ed25519_key.public_key(), require_components=("@method", "@target-uri")
    )


# --- command line -------------------------------------------------------------------------------


def shown(text: str) -> str:
    """What a terminal shows: the text without its escape sequences."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def table_rows(text: str) -> list[list[str]]:
    """A rich table's rows, its header first, as lists of stripped cells."""
    rows = (line.replace("┃", "│") for line in text.splitlines())
    return [[cell.strip() for cell in row.strip().strip("│").split("│")] for row in rows if row.startswith("│")]


def test_cli_scans_upload_prints_the_summary_and_the_refused_lines_on_a_terminal(
    key_file: Path, tmp_path: Path, runner: CliRunner
) -> None:
    path = tmp_path / "scans.csv"
    path.write_bytes(BIG_CSV)
    fake = WireBaton(scans_answer(REFUSED))
    result = runner.invoke(
        app,
        ["scans", "upload", str(path)],
        env=cli_env(key_file, TTY_COMPATIBLE="1", COLUMNS="160"),
        obj=fake.transport(),
    )

    assert result.exit_code == 0, result.output
    out = shown(result.stdout)
    assert out.splitlines()[0] == "accepted 2, matched 1, unmatched 1, duplicates 4"
    assert table_rows(out) == [
        ["line", "detail"],
        ["3", "at: not a time with an offset"],
        ["7", "point: [bold]unknown[/bold] 'belt'"],
    ]
    size_kb = f"{len(BIG_CSV) / 1000:.1f}"
    assert re.search(rf"scans\.csv .*{re.escape(size_kb)}/{re.escape(size_kb)} kB", shown(result.stderr))
    [request] = fake.requests
    assert (request.url.path, request.headers["Content-Type"], fake.bodies[0]) == ("/v1/scans", "text/csv", BIG_CSV)
    verify_independently(request, algorithm=ED25519, key=load_private_key(key_file).public_key(), body=BIG_CSV)


def test_cli_scans_upload_without_errors_prints_only_the_summary(
    key_file: Path, tmp_path: Path, runner: CliRunner
) -> None:
    path = tmp_path / "scans.json"
    path.write_bytes(JSON)
    fake = WireBaton(scans_answer())
    result = runner.invoke(
        app, ["scans", "upload", str(path)], env=cli_env(key_file, TTY_COMPATIBLE="1"), obj=fake.transport()
    )

    assert result.exit_code == 0, result.output
    assert shown(result.stdout).strip() == "accepted 3, matched 2, unmatched 1, duplicates 0"
    assert fake.requests[0].headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("option", "content_type"), [("typeb", "text/plain"), ("csv", "text/csv"), ("json", "application/json")]
)
def test_cli_scans_upload_prints_json_off_a_terminal_with_the_type_given(
    option: str, content_type: str, key_file: Path, tmp_path: Path, runner: CliRunner
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(TYPE_B)
    fake = WireBaton(scans_answer(REFUSED))
    result = runner.invoke(
        app, ["scans", "upload", str(path), "--type", option], env=cli_env(key_file), obj=fake.transport()
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == REFUSED
    assert result.stderr == ""  # no progress bar off a terminal
    assert fake.requests[0].headers["Content-Type"] == content_type
    assert fake.bodies == [TYPE_B]


def test_cli_scans_upload_prints_json_on_a_terminal_when_asked(
    key_file: Path, tmp_path: Path, runner: CliRunner
) -> None:
    path = tmp_path / "scans.csv"
    path.write_bytes(CSV)
    fake = WireBaton(scans_answer(REFUSED))
    result = runner.invoke(
        app, ["scans", "upload", str(path), "--json"], env=cli_env(key_file, TTY_COMPATIBLE="1"), obj=fake.transport()
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == REFUSED


def test_cli_scans_upload_refuses_an_unknown_type_or_a_missing_file_before_sending(
    key_file: Path, tmp_path: Path, runner: CliRunner
) -> None:
    path = tmp_path / "scans.csv"
    path.write_bytes(CSV)
    fake = WireBaton(scans_answer())
    unknown = runner.invoke(
        app, ["scans", "upload", str(path), "--type", "xml"], env=cli_env(key_file), obj=fake.transport()
    )
    missing = runner.invoke(
        app, ["scans", "upload", str(tmp_path / "nope.csv")], env=cli_env(key_file), obj=fake.transport()
    )

    assert (unknown.exit_code, missing.exit_code) == (2, 2)
    assert "xml" in unknown.stderr and "nope.csv" in missing.stderr
    assert fake.requests == []


def test_cli_scans_upload_reports_a_problem_like_other_errors(
    key_file: Path, tmp_path: Path, runner: CliRunner
) -> None:
    path = tmp_path / "scans.csv"
    path.write_bytes(CSV)
    fake = WireBaton(problem(403, "Forbidden", "Scans come from partners (signed requests)."))
    result = runner.invoke(app, ["scans", "upload", str(path)], env=cli_env(key_file), obj=fake.transport())

    assert result.exit_code == 1
    assert result.stderr.strip() == "error: 403 Forbidden: Scans come from partners (signed requests)."
    assert result.stdout == ""


def test_cli_whoami_prints_whose_key_it_is(key_file: Path, runner: CliRunner) -> None:
    fake = WireBaton(httpx.Response(200, json=ME))
    piped = runner.invoke(app, ["whoami"], env=cli_env(key_file), obj=fake.transport())
    on_terminal = runner.invoke(app, ["whoami"], env=cli_env(key_file, TTY_COMPATIBLE="1"), obj=fake.transport())

    assert piped.exit_code == 0, piped.output
    assert json.loads(piped.stdout) == ME
    assert on_terminal.exit_code == 0, on_terminal.output
    assert shown(on_terminal.stdout).strip() == "Lufthansa (partner lh)"
    assert [(r.method, r.url.path) for r in fake.requests] == [("GET", "/v1/me")] * 2
    verify_independently(
        fake.requests[0],
        algorithm=ED25519,
        key=load_private_key(key_file).public_key(),
        require_components=("@method", "@target-uri"),
    )


class RoutedBaton:
    """Answers by path, so a test does not depend on the order of the calls; records each request."""

    def __init__(self, routes: dict[str, httpx.Response]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return self.routes[request.url.path]

        return httpx.MockTransport(handler)


CASE = {
    "ref": REF,
    "status": "located",
    "type": "baggage",
    "parties": [
        {"partner": "ua", "role": "owner", "state": "on_track"},
        {"partner": "lh", "role": "carrier", "state": "late"},
    ],
}


def test_cli_cases_without_a_partner_asks_baton_once_and_shows_the_role(key_file: Path, runner: CliRunner) -> None:
    page = {"items": [CASE, CASE | {"ref": "BAG-2"}], "next_cursor": None}
    fake = RoutedBaton({"/v1/me": httpx.Response(200, json=ME), "/v1/cases": httpx.Response(200, json=page)})
    result = runner.invoke(app, ["cases"], env=cli_env(key_file, BATON_PARTNER=None), obj=fake.transport())

    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout) == [
        ["ref", "status", "type", "role", "state"],
        [REF, "located", "baggage", "carrier", "late"],
        ["BAG-2", "located", "baggage", "carrier", "late"],
    ]
    assert sorted(r.url.path for r in fake.requests) == ["/v1/cases", "/v1/me"]


def test_cli_cases_with_a_partner_does_not_ask_baton_who_it_is(key_file: Path, runner: CliRunner) -> None:
    fake = RoutedBaton({"/v1/cases": httpx.Response(200, json={"items": [CASE], "next_cursor": None})})
    result = runner.invoke(app, ["cases"], env=cli_env(key_file, BATON_PARTNER="ua"), obj=fake.transport())

    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout)[1:] == [[REF, "located", "baggage", "owner", "on_track"]]
    assert [r.url.path for r in fake.requests] == ["/v1/cases"]


def test_cli_cases_for_staff_leaves_the_role_empty(key_file: Path, runner: CliRunner) -> None:
    staff = {"kind": "staff", "partner": None, "name": "Ada Ops", "role": "agent"}
    fake = RoutedBaton(
        {
            "/v1/me": httpx.Response(200, json=staff),
            "/v1/cases": httpx.Response(200, json={"items": [CASE], "next_cursor": None}),
        }
    )
    result = runner.invoke(app, ["cases"], env=cli_env(key_file, BATON_PARTNER=None), obj=fake.transport())

    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout)[1:] == [[REF, "located", "baggage", "", ""]]
