"""Request hygiene: what a hostile caller sends costs Baton little and leaves nothing behind.

SPEC "Trust between organizations" → "Request hygiene":

- every body is limited to 64 KiB whatever the method, before any signature work (413), and a
  body is never read past the limit;
- signature parameters (``keyid``, ``nonce``, label) longer than 256 characters are refused (401)
  without being stored (rate limiter, nonce table, logs) or echoed;
- a JSON object with a repeated key is 400 on every JSON route, and nothing is written;
- a signature's ``created`` lies at most 60 s ahead of the server clock (300 s behind).

Every request goes through the app with real signatures (``world``), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from partners.client import BatonSigner
from partners.models import SignatureNonce
from tests.conftest import World, case_body
from tracker import admission
from tracker.ratelimit import Limit

LIMIT = 64 * 1024
CHUNK = 16 * 1024
UPDATE = {"status": "located", "message": "Found in FRA, loading on UA123."}


class CountingBody:
    """A streamed request body of ``total`` bytes that counts what the server pulled from it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            chunk = b" " * min(CHUNK, self.total - self.pulled)
            self.pulled += len(chunk)
            yield chunk


def signer(world: World, partner_id: str, *, keyid: str | None = None, nonce: str | None = None,
           ahead: dt.timedelta = dt.timedelta(0)) -> BatonSigner:
    """The partner's real Ed25519 signer; ``keyid``, ``nonce`` and the clock may be bent."""
    keys = world.partners[partner_id]
    extra: dict[str, Any] = {"nonce_factory": lambda: nonce} if nonce is not None else {}
    return BatonSigner.ed25519(keyid or keys.keyid, keys.private_key,
                               clock=lambda: (world.clock.now() + ahead).timestamp(), **extra)


def partner_limit(app: Any) -> Limit:
    return app.state.runtime.limits.partner_requests


async def nonce_rows(app: Any) -> int:
    async with app.state.runtime.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(SignatureNonce)) or 0)


async def event_count(world: World, ref: str) -> int:
    response = await world.as_admin("GET", f"/v1/cases/{ref}/events?limit=500")
    assert response.status_code == 200, response.text
    return len(response.json()["items"])


def assert_problem(response: httpx.Response, status: int, *mentions: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    for mention in mentions:
        assert mention.lower() in problem["detail"].lower(), problem["detail"]
    return problem


@pytest.fixture
async def case(world: World) -> dict[str, Any]:
    """A case where lh is the responsible carrier."""
    return await world.open_case()


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[tuple[Any, ...]]:
    """Record every call of ``owner.name`` (which still runs); the list is what the test asserts on."""
    calls: list[tuple[Any, ...]] = []
    original = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


# ---------------------------------------------------------------- body limit, every method


async def test_get_with_a_48_mib_streamed_body_and_fake_signature_is_413_after_reading_at_most_the_limit(
    world: World, app: Any, case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = count_calls(monkeypatch, admission, "parse_signature_headers")
    body = CountingBody(48 * 1024 * 1024)
    created = int(world.clock.now().timestamp())
    fake = {
        "content-type": "application/json",
        # Parses, and names a real key: without the limit, authentication would read the body whole.
        "signature-input": f'baton=("@method" "@target-uri" "content-digest");created={created};'
                           'keyid="lh-ed";nonce="n0nce";alg="ed25519"',
        "signature": "baton=:" + "A" * 86 + "==:",
        "content-digest": "sha-256=:" + "A" * 43 + "=:",
    }

    response = await world.client.request("GET", f"/v1/cases/{case['ref']}", content=body, headers=fake)

    assert "content-length" not in response.request.headers  # streamed (chunked), size unknown up front
    assert_problem(response, 413, "64 KiB")
    assert body.pulled <= LIMIT + CHUNK, f"the app read {body.pulled} bytes"
    assert parsed == [], "refused before any signature work"


@pytest.mark.parametrize("method, path", [
    ("DELETE", "/v1/partners/lh/keys/lh-ed"),
    ("GET", "/v1/partners/lh"),
    ("HEAD", "/v1/partners/lh"),
])
async def test_declared_content_length_over_the_limit_is_413_before_reading(
    world: World, method: str, path: str
) -> None:
    body = CountingBody(LIMIT + 1)

    response = await world.client.request(
        method, path, content=body,
        headers={**World.admin, "content-type": "application/json", "content-length": str(LIMIT + 1)},
    )

    assert response.status_code == 413, response.text
    if method != "HEAD":
        assert_problem(response, 413, "64 KiB")
    assert body.pulled == 0
    keys = (await world.as_admin("GET", "/v1/partners/lh")).json()["keys"]
    assert {k["keyid"]: k["revoked_at"] for k in keys}["lh-ed"] is None  # the DELETE did nothing


async def test_get_with_a_body_within_the_limit_is_still_served(world: World, case: dict[str, Any]) -> None:
    response = await world.client.request(
        "GET", f"/v1/cases/{case['ref']}", content=b"{}", headers={**World.admin, "content-type": "application/json"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["ref"] == case["ref"]


# ---------------------------------------------------------------- oversized signature parameters


@pytest.mark.parametrize("length", [257, 2 * 1024 * 1024], ids=["257-chars", "2-MiB"])
async def test_long_keyid_is_401_and_neither_stored_nor_echoed(
    world: World, app: Any, case: dict[str, Any], caplog: pytest.LogCaptureFixture, length: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    looked_up = count_calls(monkeypatch, admission.partner_service, "key_material")
    keyid = "k" * length
    before = await event_count(world, case["ref"])

    response = await world.client.post(f"/v1/cases/{case['ref']}/events", json=UPDATE,
                                       auth=signer(world, "lh", keyid=keyid))

    problem = assert_problem(response, 401)
    assert "k" * 64 not in response.text, problem["detail"][:200]
    assert looked_up == [], "refused before the key id reached the database"
    assert keyid not in partner_limit(app)
    assert await nonce_rows(app) == 0
    assert "k" * 64 not in caplog.text
    assert await event_count(world, case["ref"]) == before


async def test_nonce_of_300_chars_is_401_and_nothing_is_stored(
    world: World, app: Any, case: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    nonce = "n" * 300
    before = await event_count(world, case["ref"])

    response = await world.client.post(f"/v1/cases/{case['ref']}/events", json=UPDATE,
                                       auth=signer(world, "lh", nonce=nonce))

    assert_problem(response, 401, "nonce")
    assert nonce not in response.text
    assert await nonce_rows(app) == 0
    assert "lh-ed" not in partner_limit(app)  # refused before the key's quota was touched
    assert nonce not in caplog.text
    assert await event_count(world, case["ref"]) == before


async def test_signature_label_of_300_chars_is_401_without_echo(
    world: World, app: Any, case: dict[str, Any]
) -> None:
    # The label is not part of the signature base: relabelled, the signature stays valid.
    label = "l" * 300
    request = world.client.build_request("POST", f"/v1/cases/{case['ref']}/events", json=UPDATE)
    signer(world, "lh").sign_request(request)
    for name in ("signature-input", "signature"):
        assert request.headers[name].startswith("baton=")
        request.headers[name] = label + request.headers[name].removeprefix("baton")
    before = await event_count(world, case["ref"])

    response = await world.client.send(request)

    assert_problem(response, 401, "label")
    assert "l" * 64 not in response.text
    assert await nonce_rows(app) == 0
    assert await event_count(world, case["ref"]) == before


async def test_malformed_signature_header_is_401_without_echoing_a_long_parameter_name(
    world: World, case: dict[str, Any]
) -> None:
    created = int(world.clock.now().timestamp())
    name = "p" * 300  # a parameter with no valid value: the parser's own message quotes its name
    headers = {"signature-input": f'baton=("@method" "@target-uri");created={created};keyid="lh-ed";{name}=?x',
               "signature": "baton=:" + "A" * 86 + "==:"}

    response = await world.client.get(f"/v1/cases/{case['ref']}", headers=headers)

    assert_problem(response, 401, "malformed")
    assert "p" * 64 not in response.text


async def test_signature_headers_over_4096_characters_are_401_unparsed(
    world: World, app: Any, case: dict[str, Any]
) -> None:
    request = world.client.build_request("POST", f"/v1/cases/{case['ref']}/events", json=UPDATE)
    signer(world, "lh").sign_request(request)
    # An unknown parameter is ignored by verification: only the header's size can refuse it.
    request.headers["signature-input"] += ';pad="' + "x" * 5000 + '"'

    response = await world.client.send(request)

    assert_problem(response, 401, "4096")
    assert "x" * 64 not in response.text
    assert "lh-ed" not in partner_limit(app)


async def test_forged_keyid_of_normal_length_leaves_no_rate_limit_entry(
    world: World, app: Any, case: dict[str, Any]
) -> None:
    response = await world.client.post(f"/v1/cases/{case['ref']}/events", json=UPDATE,
                                       auth=signer(world, "lh", keyid="forged-ed"))

    assert_problem(response, 401, "forged-ed")
    assert "forged-ed" not in partner_limit(app)


# ---------------------------------------------------------------- repeated JSON keys


def _repeat(first: bytes, key: bytes) -> bytes:
    """The case body with ``"key": first`` written just before the key's own (first) entry."""
    raw = json.dumps(case_body()).encode()
    assert raw.count(b'"' + key + b'": ') >= 1
    return raw.replace(b'"' + key + b'": ', b'"' + key + b'": ' + first + b', "' + key + b'": ', 1)


@pytest.mark.parametrize("key, first", [(b"title", b'"Other title"'), (b"phone", b'"+14155550199"')],
                         ids=["top-level", "nested in customer"])
async def test_case_with_a_repeated_json_key_is_400_and_not_opened(world: World, key: bytes, first: bytes) -> None:
    before = (await world.as_admin("GET", "/v1/cases?limit=200")).json()["items"]

    response = await world.client.post("/v1/cases", content=_repeat(first, key),
                                       headers={**World.admin, "content-type": "application/json"})

    problem = assert_problem(response, 400, "repeats", key.decode())
    assert problem["type"].endswith("/malformed-json")
    assert (await world.as_admin("GET", "/v1/cases?limit=200")).json()["items"] == before


async def test_signed_update_with_a_repeated_json_key_is_400_and_writes_nothing(
    world: World, case: dict[str, Any]
) -> None:
    before = await event_count(world, case["ref"])
    raw = b'{"status": "located", "message": "Found in FRA.", "status": "delivered"}'

    response = await world.client.post(f"/v1/cases/{case['ref']}/events", content=raw,
                                       headers={"content-type": "application/json"}, auth=signer(world, "lh"))

    assert "signature-input" in response.request.headers
    assert_problem(response, 400, "repeats", "status")
    assert await event_count(world, case["ref"]) == before


# ---------------------------------------------------------------- created in the future


@pytest.mark.parametrize("ahead", [61, 120], ids=["61s", "2min"])
async def test_signature_created_more_than_60_seconds_ahead_is_401(
    world: World, case: dict[str, Any], ahead: int
) -> None:
    before = await event_count(world, case["ref"])

    response = await world.client.post(f"/v1/cases/{case['ref']}/events", json=UPDATE,
                                       auth=signer(world, "lh", ahead=dt.timedelta(seconds=ahead)))

    assert_problem(response, 401, "created", "60 s")
    assert await event_count(world, case["ref"]) == before


@pytest.mark.parametrize("ahead", [30, 60], ids=["30s", "60s"])
async def test_signature_created_up_to_60_seconds_ahead_is_accepted(
    world: World, case: dict[str, Any], ahead: int
) -> None:
    before = await event_count(world, case["ref"])

    response = await world.client.post(f"/v1/cases/{case['ref']}/events", json=UPDATE,
                                       auth=signer(world, "lh", ahead=dt.timedelta(seconds=ahead)))

    assert response.status_code == 201, response.text
    assert await event_count(world, case["ref"]) == before + 1
