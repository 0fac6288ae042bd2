"""Partner requests are authenticated by RFC 9421 signatures, and only by valid, fresh, unique ones.

Requests are signed with ``http_message_signatures`` — an independent RFC 9421 implementation —
so the server cannot pass merely by agreeing with Baton's own client. Each refusal is checked
for its status (401), its problem-details body, a detail that says what was wrong, and for the
absence of any write (the case's ``last_seq`` is read back as admin).

Every test runs on SQLite and on PostgreSQL (through ``world`` → ``db``).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver
from http_message_signatures.algorithms import ED25519, HMAC_SHA256

from sqlalchemy import text

from tests.conftest import BASE_URL, World
from kernel.config import Settings

PUBLIC_BASE_URL = "https://baton.example.com"
WITH_BODY = ("@method", "@target-uri", "content-digest")
WITHOUT_BODY = ("@method", "@target-uri")
UPDATE = {"status": "located", "message": "Found in FRA, loading on UA123."}
SKEW = 300
FUTURE = 60  # created may lie at most this far ahead of the server clock


# ---------------------------------------------------------------- signing with the independent library


@dataclass
class _MessageView:
    """What ``http_message_signatures`` reads and writes: method, absolute URL, live headers.

    ``headers`` is the ``httpx.Request``'s own ``Headers``, so what the signer writes
    (Content-Digest, Signature-Input, Signature) lands on the request that is sent.
    """

    method: str
    url: str
    headers: httpx.Headers


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, keyid: str, key: Any) -> None:
        self.keyid = keyid
        self.key = key

    def resolve_private_key(self, key_id: str) -> Any:
        assert key_id == self.keyid, f"asked for {key_id!r}, holding {self.keyid!r}"
        return self.key

    def resolve_public_key(self, key_id: str) -> Any:  # never verifies here
        return None


@dataclass(frozen=True)
class Credential:
    """One signing key as the partner holds it: keyid, algorithm class, private material."""

    keyid: str
    algorithm: type
    key: Any  # Ed25519PrivateKey, or the decoded HMAC secret bytes


def ed25519(world: World, partner_id: str) -> Credential:
    keys = world.partners[partner_id]
    return Credential(keys.keyid, ED25519, keys.private_key)


def hmac_sha256(world: World, partner_id: str) -> Credential:
    keys = world.partners[partner_id]
    return Credential(keys.hmac_keyid, HMAC_SHA256, base64.b64decode(keys.hmac_secret))


def digest_of(body: bytes) -> str:
    """RFC 9530 sha-256 Content-Digest, computed by hand (for forging and for uncovered digests)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def build(method: str, path: str, *, body: Any = None, base: str = BASE_URL,
          headers: dict[str, str] | None = None) -> httpx.Request:
    """An unsigned request; ``body`` is JSON-encoded when given."""
    all_headers = dict(headers or {})
    content = None
    if body is not None:
        content = json.dumps(body).encode()
        all_headers["content-type"] = "application/json"
    return httpx.Request(method, f"{base}{path}", headers=all_headers, content=content)


def sign(
    request: httpx.Request,
    credential: Credential,
    *,
    created: dt.datetime,
    expires: dt.datetime | None = None,
    nonce: str | None = "fresh",
    components: Sequence[str] | None = None,
    digest: bool = True,
) -> httpx.Request:
    """Sign ``request`` in place with ``HTTPMessageSigner`` (default label ``pyhms``, ``alg`` included).

    With ``digest`` and a body, the library generates Content-Digest and covers it.
    ``nonce="fresh"`` draws a new random nonce; ``None`` leaves the parameter out.
    """
    signer = HTTPMessageSigner(signature_algorithm=credential.algorithm,
                               key_resolver=_OneKey(credential.keyid, credential.key))
    has_body = bool(request.content)
    if components is None:
        components = WITH_BODY if has_body and digest else WITHOUT_BODY
    signer.sign(
        _MessageView(request.method, str(request.url), request.headers),
        key_id=credential.keyid,
        created=created,
        expires=expires,
        nonce=new_nonce() if nonce == "fresh" else nonce,
        covered_component_ids=components,
        body=request.content if has_body and digest else None,
    )
    return request


def sign_without_created(request: httpx.Request, credential: Credential, *, now: dt.datetime) -> httpx.Request:
    """Sign with the library but without ``created`` (which ``sign()`` always adds).

    ``prepare()`` builds the signature base; ``;created=N`` is cut from the base and from the
    parameters alike, the result is signed with the library's algorithm and attached by ``apply()``.
    """
    signer = HTTPMessageSigner(signature_algorithm=credential.algorithm,
                               key_resolver=_OneKey(credential.keyid, credential.key))
    message = _MessageView(request.method, str(request.url), request.headers)
    prepared = signer.prepare(message, key_id=credential.keyid, created=now, nonce=new_nonce(),
                              covered_component_ids=WITH_BODY, body=request.content)
    created_param = f";created={int(now.timestamp())}"
    assert created_param in prepared.signature_params
    prepared = dataclasses.replace(
        prepared,
        signature_base=prepared.signature_base.replace(created_param.encode(), b""),
        signature_params=prepared.signature_params.replace(created_param, ""),
    )
    signature = credential.algorithm(private_key=credential.key).sign(prepared.signature_base)
    signer.apply(message, prepared, signature)
    assert "created=" not in request.headers["signature-input"]
    return request


def resend(request: httpx.Request, *, url: str | None = None, content: bytes | None = None,
           drop: Sequence[str] = (), **replace_headers: str) -> httpx.Request:
    """A copy of a signed request, optionally to another URL, with another body or headers changed.

    The Host header is rebuilt from the (new) URL, as a client would; ``drop`` removes headers;
    keyword arguments replace headers (``signature_input=...`` → ``Signature-Input``).
    """
    headers = httpx.Headers(request.headers)
    del headers["host"]
    if content is not None:
        del headers["content-length"]
    for name in drop:
        del headers[name]
    for name, value in replace_headers.items():
        headers[name.replace("_", "-")] = value
    return httpx.Request(request.method, url or str(request.url), headers=headers,
                         content=request.content if content is None else content)


# ---------------------------------------------------------------- reading back and asserting


def events_path(ref: str) -> str:
    return f"/v1/cases/{ref}/events"


async def last_seq(world: World, ref: str) -> int:
    response = await world.as_admin("GET", f"/v1/cases/{ref}")
    assert response.status_code == 200, response.text
    return response.json()["last_seq"]


def assert_refused(response: httpx.Response, *mentions: str) -> None:
    """401 as RFC 9457 problem details whose ``detail`` names the reason."""
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 401
    assert problem["title"] == "Unauthorized"
    detail = problem["detail"]
    for mention in mentions:
        assert mention.lower() in detail.lower(), f"{mention!r} not in detail {detail!r}"


async def assert_refused_without_write(world: World, response: httpx.Response, refs: Sequence[str],
                                       before: Sequence[int], *mentions: str) -> None:
    assert_refused(response, *mentions)
    assert [await last_seq(world, ref) for ref in refs] == list(before), "a refused request wrote an event"


@pytest.fixture
async def case(world: World) -> dict[str, Any]:
    """A case where lh is the responsible carrier; it starts at last_seq 1."""
    opened = await world.open_case()
    assert opened["last_seq"] == 1
    return opened


# ---------------------------------------------------------------- accepted


@pytest.mark.parametrize("credential_of, keyid", [(ed25519, "lh-ed"), (hmac_sha256, "lh-hmac")],
                         ids=["ed25519", "hmac-sha256"])
async def test_update_signed_by_independent_implementation_is_accepted(
    world: World, case: dict[str, Any], credential_of: Any, keyid: str
) -> None:
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), credential_of(world, "lh"),
                   created=world.clock.now())
    assert request.headers["signature-input"].startswith("pyhms=")
    assert 'alg="' in request.headers["signature-input"]
    assert request.headers["content-digest"].startswith("sha-256=:")

    response = await world.client.send(request)

    assert response.status_code == 201, response.text
    event = response.json()
    assert event["seq"] == 2
    assert event["signed"] is True
    assert event["keyid"] == keyid
    assert event["actor"] == "partner:lh"
    assert await last_seq(world, case["ref"]) == 2


async def test_signed_get_without_body_needs_no_content_digest(world: World, case: dict[str, Any]) -> None:
    request = sign(build("GET", f"/v1/cases/{case['ref']}"), ed25519(world, "lh"), created=world.clock.now())
    assert "content-digest" not in request.headers
    assert "content-digest" not in request.headers["signature-input"]

    response = await world.client.send(request)

    assert response.status_code == 200, response.text
    assert response.json()["ref"] == case["ref"]


async def test_signed_get_with_a_query_string_is_accepted(world: World, case: dict[str, Any]) -> None:
    request = sign(build("GET", "/v1/cases?limit=5"), ed25519(world, "lh"), created=world.clock.now())

    response = await world.client.send(request)

    assert response.status_code == 200, response.text
    assert case["ref"] in [item["ref"] for item in response.json()["items"]]


async def test_a_nonce_is_unique_per_key_not_across_keys(world: World, case: dict[str, Any]) -> None:
    nonce = new_nonce()
    responses = [
        await world.client.send(sign(build("POST", events_path(case["ref"]), body=UPDATE), credential,
                                     created=world.clock.now(), nonce=nonce))
        for credential in (ed25519(world, "lh"), hmac_sha256(world, "lh"), ed25519(world, "ua"))
    ]

    assert [r.status_code for r in responses] == [201, 201, 201], [r.text for r in responses]
    assert await last_seq(world, case["ref"]) == 4


@pytest.mark.parametrize("offset", [-SKEW + 1, FUTURE - 1], ids=["299s-behind", "59s-ahead"])
async def test_created_within_the_allowed_skew_is_accepted(world: World, case: dict[str, Any], offset: int) -> None:
    created = world.clock.now() + dt.timedelta(seconds=offset)
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"), created=created)

    response = await world.client.send(request)

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("use_hmac, keyid", [(False, "lh-ed"), (True, "lh-hmac")], ids=["ed25519", "hmac-sha256"])
async def test_update_signed_by_batons_own_client_is_accepted(
    world: World, case: dict[str, Any], use_hmac: bool, keyid: str
) -> None:
    response = await world.as_partner("lh", "POST", events_path(case["ref"]), hmac=use_hmac, json_body=UPDATE)

    assert response.status_code == 201, response.text
    assert response.request.headers["signature-input"].startswith("baton=")
    assert response.json()["signed"] is True
    assert response.json()["keyid"] == keyid
    assert await last_seq(world, case["ref"]) == 2


async def test_idempotent_retry_signed_afresh_returns_the_first_response(world: World, case: dict[str, Any]) -> None:
    headers = {"Idempotency-Key": "lh-retry-0001"}
    first = await world.as_partner("lh", "POST", events_path(case["ref"]), json_body=UPDATE, headers=headers)
    retry = await world.as_partner("lh", "POST", events_path(case["ref"]), json_body=UPDATE, headers=headers)

    assert first.status_code == 201, first.text
    assert first.request.headers["signature"] != retry.request.headers["signature"], "retry must be signed afresh"
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert retry.headers.get("idempotent-replayed") == "true"
    assert await last_seq(world, case["ref"]) == 2


# ---------------------------------------------------------------- refused: integrity


@pytest.mark.parametrize("recompute_digest", [False, True], ids=["digest-kept", "digest-recomputed"])
async def test_tampered_body_is_refused(world: World, case: dict[str, Any], recompute_digest: bool) -> None:
    signed = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                  created=world.clock.now())
    forged_body = json.dumps({"status": "delivered", "message": "Delivered to the customer."}).encode()
    replace: dict[str, str] = {}
    if recompute_digest:  # the attacker fixes the digest, but the signature covers it
        replace["content_digest"] = digest_of(forged_body)
    tampered = resend(signed, content=forged_body, **replace)

    response = await world.client.send(tampered)

    mention = "does not verify" if recompute_digest else "Content-Digest does not match"
    await assert_refused_without_write(world, response, [case["ref"]], [1], mention)


async def test_tampered_path_is_refused(world: World, case: dict[str, Any]) -> None:
    other = await world.open_case(title="Second bag, same passenger")
    signed = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                  created=world.clock.now())
    tampered = resend(signed, url=f"{BASE_URL}{events_path(other['ref'])}")

    response = await world.client.send(tampered)

    await assert_refused_without_write(world, response, [case["ref"], other["ref"]], [1, 1], "does not verify")


async def test_tampered_query_string_is_refused(world: World, case: dict[str, Any]) -> None:
    signed = sign(build("GET", "/v1/cases?limit=5"), ed25519(world, "lh"), created=world.clock.now())

    response = await world.client.send(resend(signed, url=f"{BASE_URL}/v1/cases?limit=500"))

    assert_refused(response, "does not verify")


@pytest.mark.parametrize("credential_of", [ed25519, hmac_sha256], ids=["ed25519", "hmac-sha256"])
async def test_signature_by_another_partners_key_material_is_refused(
    world: World, case: dict[str, Any], credential_of: Any
) -> None:
    lh, ua = credential_of(world, "lh"), credential_of(world, "ua")
    impostor = Credential(lh.keyid, ua.algorithm, ua.key)  # claims lh's keyid, holds ua's key
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), impostor, created=world.clock.now())

    response = await world.client.send(request)

    await assert_refused_without_write(world, response, [case["ref"]], [1], "does not verify")


async def test_alg_parameter_that_contradicts_the_keys_algorithm_is_refused(world: World, case: dict[str, Any]) -> None:
    # lh-ed is an ed25519 key; this signature says alg="hmac-sha256" (keyed with lh's public PEM).
    pem = world.partners["lh"].public_pem.encode()
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), Credential("lh-ed", HMAC_SHA256, pem),
                   created=world.clock.now())

    response = await world.client.send(request)

    await assert_refused_without_write(world, response, [case["ref"]], [1], "alg")


# ---------------------------------------------------------------- refused: freshness and replay


@pytest.mark.parametrize("offset", [-(SKEW + 1), SKEW + 1], ids=["301s-behind", "301s-ahead"])
async def test_created_more_than_300s_off_the_server_clock_is_refused(
    world: World, case: dict[str, Any], offset: int
) -> None:
    created = world.clock.now() + dt.timedelta(seconds=offset)
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"), created=created)

    response = await world.client.send(request)

    await assert_refused_without_write(world, response, [case["ref"]], [1], "created", "300")


async def test_signature_past_its_expires_parameter_is_refused(world: World, case: dict[str, Any]) -> None:
    now = world.clock.now()
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                   created=now - dt.timedelta(seconds=60), expires=now - dt.timedelta(seconds=1))

    response = await world.client.send(request)

    await assert_refused_without_write(world, response, [case["ref"]], [1], "expired")


@pytest.mark.parametrize("credential_of", [ed25519, hmac_sha256], ids=["ed25519", "hmac-sha256"])
async def test_replayed_nonce_is_refused(world: World, case: dict[str, Any], credential_of: Any) -> None:
    signed = sign(build("POST", events_path(case["ref"]), body=UPDATE), credential_of(world, "lh"),
                  created=world.clock.now())

    first = await world.client.send(signed)
    replay = await world.client.send(resend(signed))

    assert first.status_code == 201, first.text
    await assert_refused_without_write(world, replay, [case["ref"]], [2], "nonce", "already used")


async def test_concurrent_replays_of_one_request_write_once(world: World, case: dict[str, Any]) -> None:
    signed = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                  created=world.clock.now())

    responses = await asyncio.gather(*(world.client.send(resend(signed)) for _ in range(3)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 401, 401], [r.text for r in responses]
    for refused in (r for r in responses if r.status_code == 401):
        assert_refused(refused, "nonce")
    assert await last_seq(world, case["ref"]) == 2


async def test_replayed_signed_get_is_refused(world: World, case: dict[str, Any]) -> None:
    signed = sign(build("GET", f"/v1/cases/{case['ref']}"), ed25519(world, "lh"), created=world.clock.now())

    first = await world.client.send(signed)
    replay = await world.client.send(resend(signed))

    assert first.status_code == 200, first.text
    assert_refused(replay, "nonce")


async def test_same_nonce_with_a_new_body_is_still_a_replay(world: World, case: dict[str, Any]) -> None:
    nonce = new_nonce()
    first = await world.client.send(sign(build("POST", events_path(case["ref"]), body=UPDATE),
                                         ed25519(world, "lh"), created=world.clock.now(), nonce=nonce))
    second = await world.client.send(sign(build("POST", events_path(case["ref"]), body={"message": "Another"}),
                                          ed25519(world, "lh"), created=world.clock.now(), nonce=nonce))

    assert first.status_code == 201, first.text
    await assert_refused_without_write(world, second, [case["ref"]], [2], "nonce")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_replay_of_a_request_that_failed_is_still_refused(
    world: World, case: dict[str, Any], method: str
) -> None:
    # swissport-fra is no party to the case: it gets 404, and its nonce is spent all the same.
    path = f"/v1/cases/{case['ref']}" if method == "GET" else events_path(case["ref"])
    signed = sign(build(method, path, body=UPDATE if method == "POST" else None),
                  ed25519(world, "swissport-fra"), created=world.clock.now())

    first = await world.client.send(signed)
    replay = await world.client.send(resend(signed))

    assert first.status_code == 404, first.text
    await assert_refused_without_write(world, replay, [case["ref"]], [1], "nonce")


REJECTED_UPDATES = {
    "unknown-status": {"status": "no-such-status"},  # refused by the case type (in the route)
    "unknown-field": {"status": "located", "colour": "red"},  # refused by the schema (before the route)
    "nothing-to-say": {},
}


@pytest.mark.parametrize("body", REJECTED_UPDATES.values(), ids=REJECTED_UPDATES.keys())
async def test_replay_of_an_update_refused_by_validation_is_still_refused(
    world: World, case: dict[str, Any], body: dict[str, Any]
) -> None:
    # The first attempt is authenticated but rejected (422); replaying it must not get another chance.
    signed = sign(build("POST", events_path(case["ref"]), body=body), ed25519(world, "lh"), created=world.clock.now())

    first = await world.client.send(signed)
    replay = await world.client.send(resend(signed))

    assert first.status_code == 422, first.text
    await assert_refused_without_write(world, replay, [case["ref"]], [1], "nonce")


async def test_missing_nonce_is_refused(world: World, case: dict[str, Any]) -> None:
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                   created=world.clock.now(), nonce=None)
    assert "nonce=" not in request.headers["signature-input"]

    response = await world.client.send(request)

    await assert_refused_without_write(world, response, [case["ref"]], [1], "nonce", "required")


async def test_missing_created_is_refused(world: World, case: dict[str, Any]) -> None:
    request = sign_without_created(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                                   now=world.clock.now())

    response = await world.client.send(request)

    await assert_refused_without_write(world, response, [case["ref"]], [1], "created", "required")


# ---------------------------------------------------------------- refused: keys


async def test_unknown_keyid_is_refused(world: World, case: dict[str, Any]) -> None:
    stranger = Credential("nobody-ed", ED25519, Ed25519PrivateKey.generate())
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), stranger, created=world.clock.now())

    response = await world.client.send(request)

    await assert_refused_without_write(world, response, [case["ref"]], [1], "unknown", "nobody-ed")


async def test_deleted_key_is_refused(world: World, case: dict[str, Any]) -> None:
    revoked = await world.as_admin("DELETE", "/v1/partners/lh/keys/lh-ed")
    assert revoked.status_code == 200, revoked.text
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                   created=world.clock.now())

    response = await world.client.send(request)

    await assert_refused_without_write(world, response, [case["ref"]], [1], "lh-ed", "revoked")


async def test_key_revoked_by_another_process_is_refused_although_this_one_has_it_cached(
    world: World, case: dict[str, Any], app: Any
) -> None:
    first = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"), created=world.clock.now())
    assert (await world.client.send(first)).status_code == 201
    # Another server process revokes the key: this one's cache of key material is not told.
    async with app.state.engine.begin() as conn:
        await conn.execute(text("UPDATE partner_keys SET active = false WHERE keyid = 'lh-ed'"))
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                   created=world.clock.now())

    response = await world.client.send(request)

    await assert_refused_without_write(world, response, [case["ref"]], [2], "lh-ed", "revoked")


async def test_deleting_one_key_leaves_the_partners_other_key_working(world: World, case: dict[str, Any]) -> None:
    revoked = await world.as_admin("DELETE", "/v1/partners/lh/keys/lh-ed")
    assert revoked.status_code == 200, revoked.text
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), hmac_sha256(world, "lh"),
                   created=world.clock.now())

    response = await world.client.send(request)

    assert response.status_code == 201, response.text


# ---------------------------------------------------------------- refused: content-digest


async def test_body_without_content_digest_is_refused(world: World, case: dict[str, Any]) -> None:
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                   created=world.clock.now(), digest=False)
    assert "content-digest" not in request.headers

    response = await world.client.send(request)

    await assert_refused_without_write(world, response, [case["ref"]], [1], "content-digest")


async def test_content_digest_present_but_not_covered_is_refused(world: World, case: dict[str, Any]) -> None:
    request = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                   created=world.clock.now(), components=WITHOUT_BODY, digest=False)
    request.headers["Content-Digest"] = digest_of(request.content)  # correct, but outside the signature

    response = await world.client.send(request)

    await assert_refused_without_write(world, response, [case["ref"]], [1], "must cover content-digest")


async def test_covered_content_digest_stripped_in_transit_is_refused(world: World, case: dict[str, Any]) -> None:
    signed = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                  created=world.clock.now())

    response = await world.client.send(resend(signed, drop=["content-digest"]))

    await assert_refused_without_write(world, response, [case["ref"]], [1], "content-digest")


# ---------------------------------------------------------------- refused: malformed headers


MALFORMED = {
    "unparseable-input": ("signature_input", 'pyhms=("@method" "@target-uri";created=', "malformed"),
    "input-not-inner-list": ("signature_input", 'pyhms=1;created=1;keyid="lh-ed";nonce="abcdefgh"', "inner list"),
    "label-mismatch": ("signature", "other=:AAAA:", "no signature for label"),
    "signature-not-bytes": ("signature", 'pyhms="not-bytes"', "byte sequence"),
}


@pytest.mark.parametrize("header, value, mention", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_signature_headers_are_refused(
    world: World, case: dict[str, Any], header: str, value: str, mention: str
) -> None:
    signed = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                  created=world.clock.now())

    response = await world.client.send(resend(signed, **{header: value}))

    await assert_refused_without_write(world, response, [case["ref"]], [1], mention)


async def test_signature_without_signature_input_is_refused(world: World, case: dict[str, Any]) -> None:
    signed = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                  created=world.clock.now())

    response = await world.client.send(resend(signed, drop=["signature-input"]))

    await assert_refused_without_write(world, response, [case["ref"]], [1], "Signature-Input")


# ---------------------------------------------------------------- behind a proxy (BATON_PUBLIC_BASE_URL)


@pytest.fixture
async def proxied(app: Any, settings: Settings, world: World) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database, configured with BATON_PUBLIC_BASE_URL."""
    from tracker.web.app import create_app

    behind_proxy = create_app(settings.model_copy(update={"public_base_url": PUBLIC_BASE_URL}),
                              clock=world.clock, engine=app.state.engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=behind_proxy), base_url=BASE_URL) as http:
        yield http


async def test_behind_proxy_a_request_signed_for_the_public_url_is_accepted(
    world: World, case: dict[str, Any], proxied: httpx.AsyncClient
) -> None:
    signed = sign(build("POST", events_path(case["ref"]), body=UPDATE, base=PUBLIC_BASE_URL),
                  ed25519(world, "lh"), created=world.clock.now())
    delivered = resend(signed, url=f"{BASE_URL}{events_path(case['ref'])}")  # what the proxy forwards
    assert delivered.headers["host"] == "baton.test"

    response = await proxied.send(delivered)

    assert response.status_code == 201, response.text
    assert response.json()["signed"] is True
    assert await last_seq(world, case["ref"]) == 2


async def test_behind_proxy_a_request_signed_for_the_internal_url_is_refused(
    world: World, case: dict[str, Any], proxied: httpx.AsyncClient
) -> None:
    signed = sign(build("POST", events_path(case["ref"]), body=UPDATE), ed25519(world, "lh"),
                  created=world.clock.now())

    response = await proxied.send(signed)

    await assert_refused_without_write(world, response, [case["ref"]], [1], "does not verify")


async def test_without_public_base_url_a_request_signed_for_another_host_is_refused(
    world: World, case: dict[str, Any]
) -> None:
    signed = sign(build("POST", events_path(case["ref"]), body=UPDATE, base=PUBLIC_BASE_URL),
                  ed25519(world, "lh"), created=world.clock.now())

    response = await world.client.send(resend(signed, url=f"{BASE_URL}{events_path(case['ref'])}"))

    await assert_refused_without_write(world, response, [case["ref"]], [1], "does not verify")
