"""Bad client input: a 4xx RFC 9457 problem with a clear ``detail``, nothing written, never a 500.

Also: the "Minimal bodies" of SPEC.md work exactly as written there.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from partners.client import BatonSigner
from tests.conftest import ADMIN_TOKEN, BASE_URL, World, case_body, one_backend

MAX_BODY = 64 * 1024
PROBLEM_KEYS = {"type", "title", "status", "detail"}


@pytest.fixture
async def api(world: World, app: Any) -> AsyncIterator[World]:
    """The same world, but an app error comes back as the 500 a client would see, not as a raise."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield World(client=http, clock=world.clock, partners=world.partners)


@dataclass
class Bad:
    """One bad request: ``body`` is sent as JSON, ``raw`` as bytes; ``mentions`` must be in ``detail``."""

    method: str
    path: str
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    mentions: tuple[str, ...] = ()
    partner: str | None = None  # sign as this partner instead of using the admin token


async def _send(world: World, bad: Bad, ref: str, handoff_id: int = 0) -> httpx.Response:
    path = bad.path.format(ref=ref, handoff_id=handoff_id)
    if bad.partner is not None:
        return await world.as_partner(bad.partner, bad.method, path, json_body=bad.body, headers=bad.headers)
    if bad.raw is not None:
        headers = {**World.admin, "content-type": "application/json", **bad.headers}
        return await world.client.request(bad.method, path, content=bad.raw, headers=headers)
    return await world.as_admin(bad.method, path, json_body=bad.body, headers=bad.headers)


def _assert_problem(response: httpx.Response, status: int, mentions: tuple[str, ...] = ()) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/problem+json"
    problem = response.json()
    assert PROBLEM_KEYS <= problem.keys()
    assert problem["status"] == status
    assert problem["type"].startswith("https://") and problem["title"]
    for needle in mentions:
        assert needle in problem["detail"], f"{needle!r} not named in detail {problem['detail']!r}"
    return problem


async def _snapshot(world: World, ref: str) -> dict[str, Any]:
    """Everything a bad request could have written."""
    cases = (await world.as_admin("GET", "/v1/cases?limit=200")).json()["items"]
    case = next(c for c in cases if c["ref"] == ref)
    events = (await world.as_admin("GET", f"/v1/cases/{ref}/events?limit=500")).json()["items"]
    handoffs = (await world.as_admin("GET", f"/v1/cases/{ref}/handoffs")).json()
    partners = (await world.as_admin("GET", "/v1/partners")).json()["items"]
    return {
        "cases": sorted(c["ref"] for c in cases),
        "case": {k: case[k] for k in ("last_seq", "last_hash", "status", "parties", "closed_at", "status_url")},
        "events": len(events),
        "handoffs": handoffs,
        "partners": sorted((p["id"], len(p["keys"])) for p in partners),
    }


async def _refused_without_writing(world: World, bad: Bad, status: int) -> dict[str, Any]:
    case = await world.open_case()
    before = await _snapshot(world, case["ref"])
    problem = _assert_problem(await _send(world, bad, case["ref"]), status, bad.mentions)
    assert await _snapshot(world, case["ref"]) == before
    return problem


def _params(cases: dict[str, Bad]) -> list[Any]:
    return [
        pytest.param(bad, id=name)
        for name, bad in cases.items()
    ]


def _customer(**fields: Any) -> dict[str, Any]:
    return {**case_body()["customer"], **fields}


# ---------------------------------------------------------------- one category each

UNKNOWN_STATUS = {
    "open a case": Bad("POST", "/v1/cases", case_body(status="teleported"), mentions=("'teleported'",)),
    "open a parcel case with a baggage-only status": Bad(
        "POST", "/v1/cases", case_body(type="parcel", status="in_transit"), mentions=("'in_transit'", "parcel")
    ),
    "open a case of an unknown type": Bad("POST", "/v1/cases", case_body(type="spaceship"), mentions=("'spaceship'",)),
    "post an update": Bad("POST", "/v1/cases/{ref}/events", {"status": "teleported"}, mentions=("'teleported'",)),
    "post an update signed by a partner": Bad(
        "POST", "/v1/cases/{ref}/events", {"status": "teleported"}, mentions=("'teleported'",), partner="lh"
    ),
    "close with an unknown status": Bad(
        "POST", "/v1/cases/{ref}/close", {"resolution": "done", "status": "teleported"}, mentions=("'teleported'",)
    ),
    "close with a status that is not terminal": Bad(
        "POST", "/v1/cases/{ref}/close", {"resolution": "done", "status": "located"}, mentions=("'located'", "terminal")
    ),
}


@pytest.mark.parametrize("bad", _params(UNKNOWN_STATUS))
async def test_unknown_status_for_the_case_type_is_422(api: World, bad: Bad) -> None:
    await _refused_without_writing(api, bad, 422)


INVALID_PHONE = {
    "customer phone without a plus": Bad(
        "POST", "/v1/cases", case_body(customer=_customer(phone="4155550100")), mentions=("customer.phone",)
    ),
    "customer phone too short": Bad(
        "POST", "/v1/cases", case_body(customer=_customer(phone="+1415")), mentions=("customer.phone", "+1415")
    ),
    "customer phone made of letters": Bad(
        "POST", "/v1/cases", case_body(customer=_customer(phone="call me maybe")), mentions=("customer.phone",)
    ),
    "partner ops phone": Bad(
        "POST", "/v1/partners", {"id": "dhl", "name": "DHL", "ops_phone": "+49"}, mentions=("ops_phone",)
    ),
}


@one_backend
@pytest.mark.parametrize("bad", _params(INVALID_PHONE))
async def test_invalid_phone_number_is_422(api: World, bad: Bad) -> None:
    await _refused_without_writing(api, bad, 422)


INVALID_EMAIL = {
    "customer email without domain": Bad(
        "POST", "/v1/cases", case_body(customer=_customer(email="ada@")), mentions=("customer.email",)
    ),
    "customer email without at-sign": Bad(
        "POST", "/v1/cases", case_body(customer=_customer(email="ada.example.com")), mentions=("customer.email",)
    ),
    "customer email with a space": Bad(
        "POST", "/v1/cases", case_body(customer=_customer(email="ada@exa mple.com")), mentions=("customer.email",)
    ),
    "partner ops email": Bad(
        "POST", "/v1/partners", {"id": "dhl", "name": "DHL", "ops_email": "ops@@dhl"}, mentions=("ops_email",)
    ),
}


@one_backend
@pytest.mark.parametrize("bad", _params(INVALID_EMAIL))
async def test_invalid_email_address_is_422(api: World, bad: Bad) -> None:
    await _refused_without_writing(api, bad, 422)


UNKNOWN_PARTNER = {
    "case owner": Bad("POST", "/v1/cases", case_body(owner="nobody"), mentions=("nobody",)),
    "case party": Bad(
        "POST", "/v1/cases", case_body(parties=[{"partner": "nobody", "role": "carrier"}]), mentions=("nobody",)
    ),
    "added party": Bad(
        "POST", "/v1/cases/{ref}/parties", {"partner": "nobody", "role": "courier"}, mentions=("nobody",)
    ),
    "handoff receiver": Bad("POST", "/v1/cases/{ref}/handoffs", {"to": "nobody", "from": "lh"}, mentions=("nobody",)),
    "handoff sender (staff)": Bad(
        "POST", "/v1/cases/{ref}/handoffs", {"to": "ua", "from": "nobody"}, mentions=("nobody",)
    ),
}


@pytest.mark.parametrize("bad", _params(UNKNOWN_PARTNER))
async def test_unknown_partner_is_422(api: World, bad: Bad) -> None:
    await _refused_without_writing(api, bad, 422)


def _padded(prefix: bytes, size: int) -> bytes:
    """A syntactically valid JSON object of exactly ``size`` bytes."""
    body = prefix + b'"pad": "' + b"x" * size + b'"}'
    return body[: size - 2] + b'"}' if len(body) > size else body


OVERSIZED = {
    "open a case": Bad("POST", "/v1/cases", raw=_padded(b"{", MAX_BODY + 1), mentions=("64 KiB",)),
    "post an update": Bad(
        "POST", "/v1/cases/{ref}/events", raw=_padded(b'{"message": "x", ', MAX_BODY + 1), mentions=("64 KiB",)
    ),
    "register a partner": Bad("POST", "/v1/partners", raw=_padded(b"{", 10 * MAX_BODY), mentions=("64 KiB",)),
    "signed partner update": Bad(
        "POST", "/v1/cases/{ref}/events", {"message": "x" * (MAX_BODY + 1)}, mentions=("64 KiB",), partner="lh"
    ),
}


@one_backend
@pytest.mark.parametrize("bad", _params(OVERSIZED))
async def test_body_over_64_kib_is_413(api: World, bad: Bad) -> None:
    await _refused_without_writing(api, bad, 413)


@one_backend
async def test_body_of_exactly_64_kib_is_not_refused_for_its_size(api: World) -> None:
    case = await api.open_case()
    raw = _padded(b'{"message": "x", ', MAX_BODY)
    assert len(raw) == MAX_BODY

    response = await _send(api, Bad("POST", "/v1/cases/{ref}/events", raw=raw), case["ref"])

    assert response.status_code == 422, response.text  # refused for its unknown field, not its size
    assert "pad" in response.json()["detail"]


@one_backend
async def test_streamed_body_over_64_kib_without_content_length_is_413(api: World) -> None:
    case = await api.open_case()
    before = await _snapshot(api, case["ref"])

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"message": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    response = await api.client.post(
        f"/v1/cases/{case['ref']}/events", content=chunks(), headers={**World.admin, "content-type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    _assert_problem(response, 413, ("64 KiB",))
    assert await _snapshot(api, case["ref"]) == before


WRONG_CONTENT_TYPE = {
    name: Bad("POST", path, raw=raw, headers=headers, mentions=("application/json",))
    for name, path, raw, headers in [
        ("text/plain", "/v1/cases/{ref}/events", b'{"message": "x"}', {"content-type": "text/plain"}),
        ("form", "/v1/cases/{ref}/events", b"message=x", {"content-type": "application/x-www-form-urlencoded"}),
        ("multipart", "/v1/cases", b"--b\r\n\r\nx\r\n--b--", {"content-type": "multipart/form-data; boundary=b"}),
        ("xml", "/v1/partners", b"<partner id='dhl'/>", {"content-type": "application/xml"}),
        ("json in disguise", "/v1/cases", json.dumps(case_body()).encode(), {"content-type": "text/json"}),
    ]
}


@one_backend
@pytest.mark.parametrize("bad", _params(WRONG_CONTENT_TYPE))
async def test_wrong_content_type_is_415(api: World, bad: Bad) -> None:
    await _refused_without_writing(api, bad, 415)


@one_backend
async def test_body_without_content_type_is_415(api: World) -> None:
    case = await api.open_case()
    before = await _snapshot(api, case["ref"])

    response = await api.client.post(
        f"/v1/cases/{case['ref']}/events", content=b'{"message": "x"}', headers=World.admin
    )

    assert "content-type" not in response.request.headers
    _assert_problem(response, 415, ("application/json",))
    assert await _snapshot(api, case["ref"]) == before


async def test_json_with_charset_parameter_is_accepted(api: World) -> None:
    case = await api.open_case()

    response = await _send(
        api,
        Bad(
            "POST",
            "/v1/cases/{ref}/events",
            raw=b'{"message": "x"}',
            headers={"content-type": "application/json; charset=utf-8"},
        ),
        case["ref"],
    )

    assert response.status_code == 201, response.text


MALFORMED_JSON = {
    name: Bad("POST", "/v1/cases/{ref}/events", raw=raw, mentions=("JSON",))
    for name, raw in [
        ("truncated", b'{"message": '),
        ("single quotes", b"{'message': 'x'}"),
        ("trailing comma", b'{"message": "x",}'),
        ("trailing garbage", b'{"message": "x"} and more'),
        ("unquoted key", b"{message: 1}"),
        ("not UTF-8", b'{"message": "\xff\xfe"}'),
        ("nested beyond the parser's recursion limit", b"[" * 30000 + b"]" * 30000),
    ]
}


@one_backend
@pytest.mark.parametrize(
    "bad",
    _params(MALFORMED_JSON),
)
async def test_malformed_json_is_400(api: World, bad: Bad) -> None:
    problem = await _refused_without_writing(api, bad, 400)
    assert problem["type"].endswith("/malformed-json")


BAD_DURATIONS = {
    "cadence in words": Bad(
        "POST",
        "/v1/cases",
        case_body(parties=[{"partner": "lh", "cadence": "6 hours"}]),
        mentions=("parties.0.cadence", "6 hours"),
    ),
    "cadence in months": Bad(
        "POST",
        "/v1/cases",
        case_body(parties=[{"partner": "lh", "cadence": "P1M"}]),
        mentions=("parties.0.cadence", "P1M"),
    ),
    "cadence of zero": Bad(
        "POST",
        "/v1/cases/{ref}/parties",
        {"partner": "fastcourier", "cadence": "PT0S"},
        mentions=("cadence",),  # the field; the wording of the rule is the app's
    ),
    "cadence as seconds": Bad(
        "POST",
        "/v1/cases/{ref}/parties",
        {"partner": "fastcourier", "cadence": 21600},
        mentions=("cadence", "ISO 8601"),
    ),
    "cadence over a year": Bad(
        "PATCH", "/v1/cases/{ref}/parties/lh", {"cadence": "P400D"}, mentions=("cadence", "year")
    ),
    "empty cadence": Bad("PATCH", "/v1/cases/{ref}/parties/lh", {"cadence": "PT"}, mentions=("cadence", "PT")),
    "negative accept window": Bad(
        "POST",
        "/v1/cases/{ref}/handoffs",
        {"to": "ua", "from": "lh", "accept_within": "PT-1H"},
        mentions=("accept_within", "PT-1H"),
    ),
    "partner cadence in years": Bad(
        "POST",
        "/v1/partners",
        {"id": "dhl", "name": "DHL", "default_cadence": "P1Y"},
        mentions=("default_cadence", "P1Y"),
    ),
    "partner escalation in words": Bad(
        "POST",
        "/v1/partners",
        {"id": "dhl", "name": "DHL", "escalate_after": "forever"},
        mentions=("escalate_after", "forever"),
    ),
    "sub-second cadence": Bad(
        "POST", "/v1/cases/{ref}/parties", {"partner": "fastcourier", "cadence": "PT0.4S"}, mentions=("cadence",)
    ),
    "days beyond timedelta": Bad(
        "POST",
        "/v1/cases/{ref}/handoffs",
        {"to": "ua", "from": "lh", "accept_within": "P99999999999D"},
        mentions=("accept_within",),
    ),
    "weeks beyond timedelta": Bad(
        "POST",
        "/v1/cases",
        case_body(parties=[{"partner": "lh", "cadence": "P9999999999W"}]),
        mentions=("parties.0.cadence",),
    ),
    "seconds beyond float": Bad(
        "PATCH", "/v1/cases/{ref}/parties/lh", {"cadence": "PT" + "9" * 400 + "S"}, mentions=("cadence",)
    ),
}


@one_backend
@pytest.mark.parametrize(
    "bad",
    _params(BAD_DURATIONS),
)
async def test_bad_duration_is_422(api: World, bad: Bad) -> None:
    await _refused_without_writing(api, bad, 422)


HANDOFF_TO_NON_PARTY = {
    "partner hands off to a registered non-party": Bad(
        "POST",
        "/v1/cases/{ref}/handoffs",
        {"to": "fastcourier", "note": "courier takes it", "accept_within": "PT2H"},
        mentions=("fastcourier", "not a party"),
        partner="lh",
    ),
    "staff hands off to a registered non-party": Bad(
        "POST",
        "/v1/cases/{ref}/handoffs",
        {"to": "swissport-fra", "from": "lh"},
        mentions=("swissport-fra", "not a party"),
    ),
    "partner hands off to itself": Bad(
        "POST", "/v1/cases/{ref}/handoffs", {"to": "lh"}, mentions=("itself",), partner="lh"
    ),
}


@pytest.mark.parametrize("bad", _params(HANDOFF_TO_NON_PARTY))
async def test_handoff_to_a_partner_that_is_not_a_party_is_422(api: World, bad: Bad) -> None:
    await _refused_without_writing(api, bad, 422)


async def test_handoff_to_a_released_party_is_422(api: World) -> None:
    case = await api.open_case()
    released = await api.as_admin("PATCH", f"/v1/cases/{case['ref']}/parties/ua", json_body={"released": True})
    assert released.status_code == 200, released.text
    before = await _snapshot(api, case["ref"])

    response = await api.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/handoffs", json_body={"to": "ua"})

    _assert_problem(response, 422, ("'ua'",))
    assert await _snapshot(api, case["ref"]) == before


@one_backend
@pytest.mark.parametrize("partner_id", ["LH", "lh!", "-lh", "l" * 64, "lh\n"])
async def test_partner_id_that_is_not_a_slug_is_422(api: World, partner_id: str) -> None:
    await _refused_without_writing(
        api, Bad("POST", "/v1/partners", {"id": partner_id, "name": "X"}, mentions=("id",)), 422
    )


# ---------------------------------------------------------------- no client input yields a 500


@dataclass
class Crash:
    method: str
    path: str
    body: Any = None


# Each of these once reached the database unchecked and answered 500.
NO_500 = {
    "NUL in a case title": Crash("POST", "/v1/cases", case_body(title="Bag\x00")),
    "NUL in an update message": Crash("POST", "/v1/cases/{ref}/events", {"message": "x\x00y"}),
    "NUL in a partner name": Crash("POST", "/v1/partners", {"id": "dhl", "name": "D\x00HL"}),
    "NUL in an added party": Crash("POST", "/v1/cases/{ref}/parties", {"partner": "l\x00h"}),
    "NUL in a handoff receiver": Crash("POST", "/v1/cases/{ref}/handoffs", {"to": "u\x00a", "from": "lh"}),
    "NUL in a resolution": Crash("POST", "/v1/cases/{ref}/close", {"resolution": "done\x00"}),
    "NUL in a party path": Crash("PATCH", "/v1/cases/{ref}/parties/l%00h", {"responsible": False}),
    "NUL in a partner path": Crash("GET", "/v1/partners/l%00h"),
    "NUL in a key path": Crash("DELETE", "/v1/partners/lh/keys/lh%00ed"),
    "NUL in a search": Crash("GET", "/v1/cases?text=%00"),
    "handoff id beyond 64 bits": Crash("POST", "/v1/cases/{ref}/handoffs/99999999999999999999/accept", {}),
    "case cursor beyond 64 bits": Crash("GET", "/v1/cases?cursor=" + base64.urlsafe_b64encode(b"9" * 30).decode()),
    "event cursor beyond 64 bits": Crash(
        "GET", "/v1/cases/{ref}/events?cursor=" + base64.urlsafe_b64encode(b"9" * 30).decode()
    ),
    "occurred_at before year 1 in UTC": Crash(
        "POST", "/v1/cases/{ref}/events", {"message": "x", "occurred_at": "0001-01-01T00:00:00+14:00"}
    ),
    "time zone path too long": Crash("POST", "/v1/cases", case_body(customer=_customer(timezone="A/" * 300 + "B"))),
    "time zone path too long for a partner": Crash(
        "POST", "/v1/partners", {"id": "dhl", "name": "DHL", "timezone": "A/" * 300 + "B"}
    ),
    "external ref longer than 100 once upper-cased": Crash(
        "POST", "/v1/cases", case_body(external_refs={"note": "\u00df" * 100})
    ),
    "unicode everywhere": Crash(
        "POST",
        "/v1/cases",
        case_body(title="Koffer 🧳 в пути — في الطريق \u202e", customer=_customer(name="Zoë Ünal 李")),
    ),
}


@pytest.mark.parametrize("crash", [pytest.param(c, id=n) for n, c in NO_500.items()])
async def test_no_client_input_yields_a_500(api: World, crash: Crash) -> None:
    case = await api.open_case()
    path = crash.path.format(ref=case["ref"])

    response = await api.as_admin(crash.method, path, json_body=crash.body)

    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        _assert_problem(response, response.status_code)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _nested(depth: int) -> bytes:
    return b'{"a": ' * depth + b"1" + b"}" * depth


HOSTILE_BODIES: list[tuple[str, bytes]] = [
    ("empty object", b"{}"),
    ("empty body", b""),
    ("null", b"null"),
    ("true", b"true"),
    ("a number", b"12345"),
    ("a string", b'"hello"'),
    ("an array", b"[]"),
    ("an array of objects", b"[{}, {}]"),
    ("nested 100 deep", _nested(100)),
    ("nested beyond recursion", b"[" * 20000 + b"]" * 20000),
    ("huge integer", b'{"to": 1' + b"0" * 5000 + b"}"),
    ("huge float", b'{"cadence": 1e999, "accept_within": -1e999}'),
    ("NaN", b'{"message": NaN, "resolution": NaN}'),
    ("lone surrogate", b'{"message": "\\ud800", "title": "\\udfff", "name": "\\ud800"}'),
    ("invalid UTF-8", b'{"message": "\xc3\x28"}'),
    ("BOM", b'\xef\xbb\xbf{"message": "x"}'),
    ("duplicate keys", b'{"to": "ua", "to": "lh", "from": "lh", "from": "ua"}'),
    ("operator injection", _json({"to": {"$ne": None}, "partner": {"$gt": ""}, "title": {"$where": "1"}})),
    (
        "sql in strings",
        _json(
            {
                "to": "ua' OR '1'='1",
                "partner": "lh'; DROP TABLE cases;--",
                "keyid": "x'--",
                "id": "x'--",
                "resolution": "'; DELETE FROM events;--",
            }
        ),
    ),
    (
        "wrong types",
        _json(
            {
                "type": 1,
                "title": [],
                "customer": "ada",
                "owner": None,
                "parties": {},
                "external_refs": [],
                "status": 7,
                "to": 5,
                "note": {},
                "responsible": "yes",
            }
        ),
    ),
    ("booleans as strings", _json({"responsible": "maybe", "released": "no", "alg": True})),
    ("prototype pollution", _json({"__proto__": {"admin": True}, "constructor": {"prototype": {}}})),
    ("unknown fields only", _json({"hacker": True, "admin": True})),
    ("very long strings", _json({"message": "m" * 30000, "title": "t" * 30000})),
    ("many parties", _json({**case_body(), "parties": [{"partner": "lh"}] * 2000})),
    ("many external refs", _json({**case_body(), "external_refs": {str(i): "x" for i in range(2000)}})),
    (
        "unicode and control characters",
        _json(
            {"message": "🧳\u202e\u200b\x07\x1b[31m", "title": "\u0301" * 50, "resolution": "ok\r\n\r\nX-Injected: 1"}
        ),
    ),
    (
        "timezone traversal",
        _json({**case_body(customer=_customer(timezone="../../../../etc/passwd")), "timezone": "/etc/localtime"}),
    ),
    (
        "naive and impossible times",
        _json(
            {
                "message": "x",
                "occurred_at": "2026-11-02T09:00:00",
                "eta": "2026-13-45T25:61:61Z",
                "next_update_by": "yesterday",
            }
        ),
    ),
    (
        "far future promise",
        _json({"message": "x", "next_update_by": "9999-12-31T23:59:59Z", "occurred_at": "9999-12-31T23:59:59Z"}),
    ),
    ("far past occurrence west of UTC", _json({"message": "x", "occurred_at": "0001-01-01T00:00:00-14:00"})),
    (
        "pathological durations",
        _json({"cadence": "P", "accept_within": "PT1.S", "default_cadence": "P1DT", "escalate_after": "PPPP"}),
    ),
    ("bad visibility", _json({"message": "x", "visibility": "everyone"})),
    ("hand off to self", _json({"to": "lh", "from": "lh"})),
    (
        "bad public key",
        _json(
            {
                "keyid": "k-1",
                "alg": "ed25519",
                "public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            }
        ),
    ),
    ("rsa-ish alg", _json({"keyid": "../../etc", "alg": "rsa-pss-sha512"})),
    (
        "hostile partner",
        _json(
            {
                "id": "a" * 10000,
                "name": "x",
                "webhook_url": "javascript:alert(1)",
                "webhook_secret": "whsec_!!!",
                "calendar": {"start": "25:00", "days": ["funday"]},
            }
        ),
    ),
    (
        "empty strings",
        _json(
            {"to": "", "partner": "", "title": "", "resolution": "", "id": "", "name": "", "keyid": "", "status": ""}
        ),
    ),
    ("non-terminal closure", _json({"resolution": "x", "status": "reported"})),
    (
        "phone and email junk",
        _json(
            {
                **case_body(customer=_customer(phone="+" + "9" * 300, email="@" * 300)),
                "ops_phone": "+",
                "ops_email": "a@b",
            }
        ),
    ),
]


async def _write_routes(world: World, app: Any) -> list[tuple[str, str]]:
    case = await world.open_case()
    handoff = await world.as_admin("POST", f"/v1/cases/{case['ref']}/handoffs", json_body={"to": "ua", "from": "lh"})
    assert handoff.status_code == 201, handoff.text
    routes = []
    for template, operations in app.openapi()["paths"].items():
        for method in operations:
            if method.upper() in ("POST", "PATCH") and template.startswith("/v1"):
                path = template.format(ref=case["ref"], partner_id="lh", handoff_id=handoff.json()["id"], delivery_id=1,
                                       claim_id=1,
                                       token=await _live_join_token(world) if "{token}" in template else "")
                routes.append((method.upper(), path))
    return routes


_JOINERS = itertools.count(1)


async def _live_join_token(world: World) -> str:
    """A joining partner's live setup link (its key registered), so the join steps read the body too."""
    invited = await world.as_admin("POST", "/v1/partner-invitations", json_body={
        "partner": {"id": f"hostile-{next(_JOINERS)}", "name": "Hostile Ltd"}})
    assert invited.status_code == 201, invited.text
    joined = await world.client.post(f"/v1/join/{invited.json()['url'].rsplit('/', 1)[1]}/keys",
                                     json={"alg": "hmac-sha256"})
    assert joined.status_code == 201, joined.text
    return joined.json()["setup_token"]


async def test_hostile_bodies_never_yield_a_500(api: World, app: Any) -> None:
    routes = await _write_routes(api, app)
    assert len(routes) >= 9 and len(HOSTILE_BODIES) >= 40
    crashes = []
    for method, path in routes:
        for label, raw in HOSTILE_BODIES:
            response = await api.client.request(
                method, path, content=raw, headers={**World.admin, "content-type": "application/json"}
            )
            if response.status_code >= 500:
                crashes.append((method, path, label, response.status_code))
            elif response.status_code >= 400:
                assert response.headers["content-type"].startswith("application/problem+json"), (path, label)
    assert crashes == []


HOSTILE_REFS = [
    "../../etc",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "B" * 5000,
    "BAG-" + "Z" * 300,
    "bag-0000000",
    "BAG-%00000000",
    "%F0%9F%A7%B3",
    "ＢＡＧ－７ＫＱ３Ｘ９Ｍ",
    "'; DROP TABLE cases;--",
    "%25",
    "%20",
    "BAG%0D%0AX: 1",
]
HOSTILE_IDS = ["-1", "0", "1.5", "abc", "1e3", "9223372036854775807", "%00"]


async def test_hostile_paths_never_yield_a_500(api: World, app: Any) -> None:
    real = (await _write_routes(api, app))[0]  # just to have a case and a handoff in the database
    assert real
    crashes = []
    templates = [t for t in app.openapi()["paths"] if t.startswith("/v1/cases/{ref}")]
    for template in templates:
        for method in app.openapi()["paths"][template]:
            for ref in HOSTILE_REFS:
                ids = HOSTILE_IDS if any(f"{{{n}}}" in template for n in ("handoff_id", "attachment_id", "claim_id")) \
                    else ["1"]
                for some_id in ids:
                    path = template.format(ref=ref, partner_id="lh", handoff_id=some_id, attachment_id=some_id,
                                           claim_id=some_id)
                    response = await api.as_admin(method.upper(), path, json_body={} if method != "get" else None)
                    if response.status_code >= 500:
                        crashes.append((method, path[:80], response.status_code))
                    else:
                        assert response.status_code >= 400, (method, path)
    assert crashes == []


# ---------------------------------------------------------------- SPEC.md "Minimal bodies", as written

SPEC_PARTNER = {
    "id": "lh",
    "name": "Lufthansa",
    "kind": "airline",
    "ops_email": "baggage-ops@lh.example",
    "ops_phone": "+4969123456",
    "webhook_url": "https://hooks.lh.example/baton",
    "default_cadence": "PT6H",
    "timezone": "Europe/Berlin",
}


async def test_minimal_partner_and_key_bodies_work_as_written(client: httpx.AsyncClient, clock: Any) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    pem = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    partner = await client.post("/v1/partners", json=SPEC_PARTNER, headers=admin)
    ed = await client.post(
        "/v1/partners/lh/keys",
        headers=admin,
        json={"keyid": "lh-2026-11", "alg": "ed25519", "public_key": pem.decode()},
    )
    hmac = await client.post("/v1/partners/lh/keys", headers=admin, json={"keyid": "lh-hmac-1", "alg": "hmac-sha256"})

    assert partner.status_code == 201, partner.text
    assert {k: partner.json()[k] for k in SPEC_PARTNER} == SPEC_PARTNER
    assert partner.json()["webhook_secret"].startswith("whsec_")
    assert len(base64.b64decode(partner.json()["webhook_secret"].removeprefix("whsec_"), validate=True)) >= 24
    assert ed.status_code == 201, ed.text
    assert ed.json()["keyid"] == "lh-2026-11" and ed.json()["alg"] == "ed25519"
    assert ed.json().get("secret") is None
    assert hmac.status_code == 201, hmac.text
    secret = hmac.json()["secret"]
    assert len(base64.b64decode(secret, validate=True)) == 32
    signer = BatonSigner.hmac("lh-hmac-1", secret, clock=lambda: clock.now().timestamp())
    assert (await client.get("/v1/cases", auth=signer)).status_code == 200
    listed = await client.get("/v1/partners/lh", headers=admin)
    assert all(k.get("secret") is None for k in listed.json()["keys"])  # returned once, never again


async def test_given_webhook_secret_is_kept_and_not_echoed(client: httpx.AsyncClient) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()

    response = await client.post("/v1/partners", json={**SPEC_PARTNER, "webhook_secret": secret}, headers=admin)

    assert response.status_code == 201, response.text
    assert response.json().get("webhook_secret") is None


async def test_minimal_case_body_opens_a_case(world: World) -> None:
    response = await world.as_admin("POST", "/v1/cases", json_body=case_body())

    assert response.status_code == 201, response.text
    case = response.json()
    assert re.fullmatch(r"BAG-[0-9A-Z]{7}", case["ref"])
    assert case["type"] == "baggage" and case["status"] == "reported" and case["owner"] == "ua"
    assert case["status_url"].startswith(f"{BASE_URL}/s/")
    assert len(case["status_url"].rsplit("/", 1)[1]) >= 22  # at least 128 bits, base64url
    parties = {p["partner"]: p for p in case["parties"]}
    assert set(parties) == {"lh", "ua"}
    for party in case["parties"]:
        assert {"partner", "role", "responsible", "state", "last_update_at", "next_update_due"} <= party.keys()
        assert party["state"] == "on_track"
    assert parties["lh"]["role"] == "carrier" and parties["lh"]["responsible"] is True
    assert parties["lh"]["next_update_due"] is not None
    assert parties["ua"]["role"] == "owner" and parties["ua"]["responsible"] is False


async def test_minimal_event_body_posts_an_update(world: World) -> None:
    case = await world.open_case()
    now = world.clock.now()
    body = {
        "status": "located",
        "message": "Your bag is in Frankfurt and flies to JFK tonight.",
        "internal_note": "Rerouted via LH400",
        "location": "FRA",
        "eta": (now + dt.timedelta(days=1)).isoformat(),
        "occurred_at": (now - dt.timedelta(hours=1)).isoformat(),
        "next_update_by": (now + dt.timedelta(hours=4)).isoformat(),
    }

    response = await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/events", json_body=body)

    assert response.status_code == 201, response.text
    event = response.json()
    assert event["seq"] == case["last_seq"] + 1
    assert re.fullmatch(r"[0-9a-f]{64}", event["hash"])
    assert {"seq", "type", "actor", "visibility", "occurred_at", "received_at", "hash"} <= event.keys()
    assert {k: event[k] for k in ("status", "message", "internal_note", "location")} == {
        k: body[k] for k in ("status", "message", "internal_note", "location")
    }
    assert dt.datetime.fromisoformat(event["occurred_at"]) == now - dt.timedelta(hours=1)
    read = (await world.as_admin("GET", f"/v1/cases/{case['ref']}")).json()
    assert read["status"] == "located"
    lh = next(p for p in read["parties"] if p["partner"] == "lh")
    assert dt.datetime.fromisoformat(lh["next_update_due"]) == now + dt.timedelta(hours=4)


async def test_minimal_handoff_and_accept_bodies_pass_custody(world: World) -> None:
    case = await world.open_case()
    ref = case["ref"]
    added = await world.as_admin(
        "POST", f"/v1/cases/{ref}/parties", json_body={"partner": "fastcourier", "role": "courier"}
    )
    assert added.status_code == 201, added.text

    handoff = await world.as_partner(
        "lh",
        "POST",
        f"/v1/cases/{ref}/handoffs",
        json_body={"to": "fastcourier", "note": "Bag on the van at JFK", "accept_within": "PT2H"},
    )
    assert handoff.status_code == 201, handoff.text
    out = handoff.json()
    assert {"id", "from", "to", "state", "accept_by"} <= out.keys()
    assert (out["from"], out["to"], out["state"]) == ("lh", "fastcourier", "requested")
    assert dt.datetime.fromisoformat(out["accept_by"]) == world.clock.now() + dt.timedelta(hours=2)

    accepted = await world.as_partner(
        "fastcourier", "POST", f"/v1/cases/{ref}/handoffs/{out['id']}/accept", json_body={}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "accepted" and accepted.json()["id"] == out["id"]
    parties = {p["partner"]: p for p in (await world.as_admin("GET", f"/v1/cases/{ref}")).json()["parties"]}
    assert parties["fastcourier"]["responsible"] is True and parties["lh"]["responsible"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/v1/cases",
        "/v1/cases/{ref}/events",
        "/v1/partners",
        "/v1/cases/{ref}/handoffs",
    ],
)
async def test_lists_answer_items_and_next_cursor(world: World, path: str) -> None:
    case = await world.open_case()
    await world.as_admin("POST", f"/v1/cases/{case['ref']}/handoffs", json_body={"to": "ua", "from": "lh"})

    response = await world.as_admin("GET", path.format(ref=case["ref"]))

    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"items", "next_cursor"}
    assert isinstance(body["items"], list) and body["items"]
    assert body["next_cursor"] is None or isinstance(body["next_cursor"], str)


async def test_list_cursor_walks_every_item_once(world: World) -> None:
    opened = [(await world.open_case())["ref"] for _ in range(3)]

    seen, cursor = [], None
    for _ in range(5):
        query = "/v1/cases?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await world.as_admin("GET", query)).json()
        seen += [c["ref"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == list(reversed(opened))
