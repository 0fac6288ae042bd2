"""The partner client files, decides and settles compensation claims with money as exact strings.

Amounts go over the wire as decimal strings, never JSON numbers, and a ``float`` never leaves the
client. Every POST is signed over its body, checked with ``http_message_signatures``, an
independent RFC 9421 implementation, and keeps its ``Idempotency-Key`` across retries.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Callable
from decimal import Decimal
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
from tests.partners.test_client import (
    BASE_URL,
    KEYID,
    REF,
    FakeBaton,
    client_for,
    problem,
    signature_params,
    verify_independently,
)
from tests.partners.test_client_evidence import cli_env

CLAIM: dict[str, Any] = {
    "id": 7,
    "kind": "interim_expenses",
    "state": "filed",
    "items": [{"description": "Toiletries", "amount": "12.50", "currency": "EUR", "attachment": None}],
    "totals": {"EUR": "12.50"},
    "filed_by": "ua",
    "filed_at": "2026-11-03T18:00:00+01:00",
    "answer_due": "2026-11-17T18:00:00+01:00",
    "overdue": False,
    "decision": None,
    "paid": None,
}
DECIDED = CLAIM | {
    "state": "partly_approved",
    "decision": {
        "decision": "partly_approved",
        "amount": "30.00",
        "currency": "EUR",
        "reason": "Receipts for two nights only",
        "decided_at": "2026-11-05T10:00:00+01:00",
        "decided_by": "ua",
    },
}
PAID = DECIDED | {"state": "paid", "paid": {"reference": "SEPA-2026-11-0042", "paid_at": "2026-11-06T09:00:00+01:00"}}
OVERDUE = CLAIM | {
    "id": 8,
    "kind": "damage",
    "totals": {"EUR": "30.00", "USD": "9.90"},
    "answer_due": "2026-11-01T18:00:00+01:00",
    "overdue": True,
}
PAGE = {"items": [CLAIM, OVERDUE], "next_cursor": None}
RIGHTS = {"items": [{"right": "interim_expenses", "basis": "Montreal Convention art. 19", "cap": "1288 SDR"}]}


def sha256_digest(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


# --- filing, deciding, paying: the bodies ------------------------------------------------------


def test_file_claim_sends_tuples_and_dicts_with_every_amount_as_the_exact_string(
    ed25519_key: Ed25519PrivateKey,
) -> None:
    fake = FakeBaton(httpx.Response(201, json=CLAIM))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        claim = baton.file_claim(
            REF,
            kind="interim_expenses",
            items=[
                ("Toiletries", Decimal("12.50"), "EUR"),
                {"description": "Taxi to the hotel", "amount": "30.00", "currency": "EUR", "attachment": 12},
                {"description": "Phone charger", "amount": Decimal("9.90"), "currency": "USD"},
            ],
        )

    [request] = fake.requests
    assert claim == CLAIM
    assert (request.method, request.url.path) == ("POST", f"/v1/cases/{REF}/claims")
    assert json.loads(request.content) == {
        "kind": "interim_expenses",
        "items": [
            {"description": "Toiletries", "amount": "12.50", "currency": "EUR", "attachment": None},
            {"description": "Taxi to the hotel", "amount": "30.00", "currency": "EUR", "attachment": 12},
            {"description": "Phone charger", "amount": "9.90", "currency": "USD", "attachment": None},
        ],
    }
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"]
    verify_independently(request, algorithm=ED25519, key=ed25519_key.public_key())


def test_decide_sends_the_decision_amount_currency_and_reason(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(httpx.Response(200, json=DECIDED))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        claim = baton.decide(
            REF,
            7,
            decision="partly_approved",
            amount=Decimal("30.00"),
            currency="EUR",
            reason="Receipts for two nights only",
        )

    [request] = fake.requests
    assert claim == DECIDED
    assert (request.method, request.url.path) == ("POST", f"/v1/cases/{REF}/claims/7/decision")
    assert json.loads(request.content) == {
        "decision": "partly_approved",
        "amount": "30.00",
        "currency": "EUR",
        "reason": "Receipts for two nights only",
    }


def test_a_rejection_sends_no_amount_or_currency(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(httpx.Response(200, json=CLAIM | {"state": "rejected"}))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        claim = baton.decide(REF, 7, decision="rejected", reason="Bought after the bag was delivered")

    assert claim["state"] == "rejected"
    assert json.loads(fake.requests[0].content) == {
        "decision": "rejected",
        "reason": "Bought after the bag was delivered",
    }


def test_mark_paid_sends_the_reference_with_the_given_idempotency_key(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(httpx.Response(200, json=PAID))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        claim = baton.mark_paid(REF, 7, reference="SEPA-2026-11-0042", idempotency_key="ua-paid-7")

    [request] = fake.requests
    assert claim == PAID
    assert (request.method, request.url.path) == ("POST", f"/v1/cases/{REF}/claims/7/paid")
    assert json.loads(request.content) == {"reference": "SEPA-2026-11-0042"}
    assert request.headers["Idempotency-Key"] == "ua-paid-7"


# --- money: exact strings, never floats --------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "sent"),
    [
        (Decimal("12.5"), "12.5"),
        (Decimal("12.50"), "12.50"),
        (Decimal("0.10"), "0.10"),
        (Decimal("1E+2"), "100"),  # written out, never in exponent form
        ("12.5", "12.5"),
        ("30.00", "30.00"),
    ],
)
def test_an_amount_is_sent_as_written(ed25519_key: Ed25519PrivateKey, amount: Decimal | str, sent: str) -> None:
    fake = FakeBaton(httpx.Response(201, json=CLAIM), httpx.Response(200, json=DECIDED))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.file_claim(REF, kind="damage", items=[("Torn zip", amount, "EUR")])
        baton.decide(REF, 7, decision="approved", amount=amount, currency="EUR", reason="ok")

    filed, decided = (json.loads(request.content) for request in fake.requests)
    assert filed["items"][0]["amount"] == sent
    assert decided["amount"] == sent
    assert f'"amount":"{sent}"'.encode() in fake.requests[1].content  # a JSON string, not a number


# Typed as Any, as a caller's untyped code would pass it.
A_FLOAT: Any = 12.5
FLOAT_CALLS: dict[str, Callable[[BatonClient], object]] = {
    "tuple item": lambda baton: baton.file_claim(REF, kind="damage", items=[("Torn zip", A_FLOAT, "EUR")]),
    "dict item": lambda baton: baton.file_claim(
        REF,
        kind="damage",
        items=[("Toiletries", Decimal("12.50"), "EUR"), {"description": "Taxi", "amount": 0.1, "currency": "EUR"}],
    ),
    "decision": lambda baton: baton.decide(REF, 7, decision="approved", amount=A_FLOAT, currency="EUR", reason="ok"),
}


@pytest.mark.parametrize("call", FLOAT_CALLS.values(), ids=FLOAT_CALLS.keys())
def test_a_float_amount_raises_type_error_and_sends_nothing(
    ed25519_key: Ed25519PrivateKey, call: Callable[[BatonClient], object]
) -> None:
    fake = FakeBaton()
    with (
        client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton,
        pytest.raises(TypeError, match="a float cannot represent money exactly"),
    ):
        call(baton)

    assert fake.requests == []


def test_the_type_error_names_the_item_with_the_float(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton()
    with (
        client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton,
        pytest.raises(TypeError, match=r"^items\[1\]\.amount must be a Decimal or a str, not float"),
    ):
        baton.file_claim(REF, kind="loss", items=[("Suitcase", Decimal("120.00"), "EUR"), ("Contents", A_FLOAT, "EUR")])

    assert fake.requests == []


@pytest.mark.parametrize(
    ("amount", "error", "message"),
    [
        (30, TypeError, "amount must be a Decimal or a str, not int"),
        (True, TypeError, "amount must be a Decimal or a str, not bool"),
        (Decimal("NaN"), ValueError, "amount must be a finite amount, not NaN"),
        (Decimal("Infinity"), ValueError, "amount must be a finite amount, not Infinity"),
    ],
)
def test_other_amounts_that_are_not_money_are_refused_before_sending(
    ed25519_key: Ed25519PrivateKey, amount: Any, error: type[Exception], message: str
) -> None:
    fake = FakeBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton, pytest.raises(error, match=message):
        baton.decide(REF, 7, decision="approved", amount=amount, currency="EUR", reason="ok")

    assert fake.requests == []


@pytest.mark.parametrize(
    "items",
    [
        [("Taxi", "30.00")],
        ["Taxi 30.00 EUR"],
        {"description": "Taxi", "amount": "30.00", "currency": "EUR"},
    ],
    ids=["short tuple", "string item", "one dict instead of a list"],
)
def test_malformed_items_are_refused_before_sending(ed25519_key: Ed25519PrivateKey, items: Any) -> None:
    fake = FakeBaton()
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton, pytest.raises(TypeError, match="items"):
        baton.file_claim(REF, kind="delay", items=items)

    assert fake.requests == []


def test_async_client_refuses_a_float_before_sending(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton()

    async def scenario() -> None:
        signer = BatonSigner.ed25519(KEYID, ed25519_key)
        async with AsyncBatonClient(BASE_URL, signer, transport=fake.async_transport()) as baton:
            await baton.file_claim(REF, kind="damage", items=[("Torn zip", A_FLOAT, "EUR")])

    with pytest.raises(TypeError, match="a float cannot represent money exactly"):
        asyncio.run(scenario())
    assert fake.requests == []


# --- signatures --------------------------------------------------------------------------------


POSTS: dict[str, tuple[Callable[[BatonClient], object], str]] = {
    "file_claim": (
        lambda baton: baton.file_claim(REF, kind="delay", items=[("Meal", Decimal("18.40"), "EUR")]),
        f"/v1/cases/{REF}/claims",
    ),
    "decide": (
        lambda baton: baton.decide(REF, 7, decision="approved", amount="18.40", currency="EUR", reason="ok"),
        f"/v1/cases/{REF}/claims/7/decision",
    ),
    "mark_paid": (
        lambda baton: baton.mark_paid(REF, 7, reference="SEPA-2026-11-0042"),
        f"/v1/cases/{REF}/claims/7/paid",
    ),
}


@pytest.mark.parametrize("alg", ["ed25519", "hmac-sha256"])
@pytest.mark.parametrize("name", POSTS)
def test_claim_posts_are_signed_over_their_bodies(
    name: str, alg: str, ed25519_key: Ed25519PrivateKey, hmac_secret: bytes
) -> None:
    if alg == "ed25519":
        signer, algorithm, key = BatonSigner.ed25519(KEYID, ed25519_key), ED25519, ed25519_key.public_key()
    else:
        signer, algorithm, key = BatonSigner.hmac(KEYID, base64.b64encode(hmac_secret)), HMAC_SHA256, hmac_secret
    call, path = POSTS[name]
    fake = FakeBaton(httpx.Response(200, json=CLAIM))
    with client_for(fake, signer) as baton:
        call(baton)

    [request] = fake.requests
    assert request.method == "POST"
    assert request.headers["Content-Digest"] == sha256_digest(request.content)
    result = verify_independently(request, algorithm=algorithm, key=key)
    assert result.parameters["alg"] == alg
    assert result.covered_components['"content-digest"'] == sha256_digest(request.content)
    assert result.covered_components['"@target-uri"'] == f"{BASE_URL}{path}"


def test_a_changed_amount_fails_verification(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(httpx.Response(200, json=DECIDED))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.decide(REF, 7, decision="partly_approved", amount="30.00", currency="EUR", reason="two nights")

    [request] = fake.requests
    tampered = request.content.replace(b'"30.00"', b'"300.00"')
    assert tampered != request.content
    with pytest.raises(InvalidSignature):
        verify_independently(request, algorithm=ED25519, key=ed25519_key.public_key(), body=tampered)


# --- idempotency and retries -------------------------------------------------------------------


def test_a_retried_claim_keeps_its_idempotency_key_and_body_and_is_signed_afresh(
    ed25519_key: Ed25519PrivateKey,
) -> None:
    fake = FakeBaton(
        problem(503, "Service Unavailable", "restarting"),
        httpx.ConnectError("connection refused"),
        httpx.Response(201, json=CLAIM),
    )
    sleeps: list[float] = []
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key), sleeps) as baton:
        claim = baton.file_claim(REF, kind="interim_expenses", items=[("Toiletries", Decimal("12.50"), "EUR")])

    assert claim == CLAIM
    assert len(fake.requests) == 3
    assert len({request.headers["Idempotency-Key"] for request in fake.requests}) == 1
    assert len({request.content for request in fake.requests}) == 1
    assert len({signature_params(request)["nonce"] for request in fake.requests}) == 3
    for request in fake.requests:
        verify_independently(request, algorithm=ED25519, key=ed25519_key.public_key())
    assert sleeps == [0.5, 1.0]


def test_a_given_idempotency_key_survives_the_retries_of_a_decision(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(problem(502, "Bad Gateway", "upstream"), httpx.Response(200, json=DECIDED))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        baton.decide(
            REF,
            7,
            decision="partly_approved",
            amount="30.00",
            currency="EUR",
            reason="two nights",
            idempotency_key="ua-decide-7",
        )
        baton.mark_paid(REF, 7, reference="SEPA-1")
        baton.mark_paid(REF, 7, reference="SEPA-1")

    keys = [request.headers["Idempotency-Key"] for request in fake.requests]
    assert keys[:2] == ["ua-decide-7", "ua-decide-7"]
    assert len(set(keys[2:])) == 2 and "ua-decide-7" not in keys[2:]  # each new call, its own key


def test_async_decide_retries_with_the_same_key_and_sends_the_same_body(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(problem(504, "Gateway Timeout", "slow"), httpx.Response(200, json=DECIDED))
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario() -> dict[str, Any]:
        signer = BatonSigner.ed25519(KEYID, ed25519_key)
        async with AsyncBatonClient(BASE_URL, signer, transport=fake.async_transport(), sleep=record) as baton:
            return await baton.decide(
                REF, 7, decision="partly_approved", amount=Decimal("30.00"), currency="EUR", reason="two nights"
            )

    assert asyncio.run(scenario()) == DECIDED
    first, second = fake.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert signature_params(first)["nonce"] != signature_params(second)["nonce"]
    assert first.content == second.content
    assert json.loads(second.content) == {
        "decision": "partly_approved",
        "amount": "30.00",
        "currency": "EUR",
        "reason": "two nights",
    }
    verify_independently(second, algorithm=ED25519, key=ed25519_key.public_key())
    assert sleeps == [0.5]


def test_async_client_files_pays_and_reads_on_the_same_paths(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(
        httpx.Response(201, json=CLAIM),
        httpx.Response(200, json=PAID),
        httpx.Response(200, json=PAGE),
        httpx.Response(200, json=RIGHTS),
    )

    async def scenario() -> list[dict[str, Any]]:
        signer = BatonSigner.ed25519(KEYID, ed25519_key)
        async with AsyncBatonClient(BASE_URL, signer, transport=fake.async_transport()) as baton:
            return [
                await baton.file_claim(
                    REF, kind="loss", items=[{"description": "Suitcase", "amount": "120.00", "currency": "EUR"}]
                ),
                await baton.mark_paid(REF, 7, reference="SEPA-1"),
                await baton.claims(REF),
                await baton.rights(REF),
            ]

    assert asyncio.run(scenario()) == [CLAIM, PAID, PAGE, RIGHTS]
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("POST", f"/v1/cases/{REF}/claims"),
        ("POST", f"/v1/cases/{REF}/claims/7/paid"),
        ("GET", f"/v1/cases/{REF}/claims"),
        ("GET", f"/v1/cases/{REF}/rights"),
    ]
    assert json.loads(fake.requests[0].content)["items"] == [
        {"description": "Suitcase", "amount": "120.00", "currency": "EUR", "attachment": None}
    ]


# --- reading claims and rights -----------------------------------------------------------------


def test_claims_and_rights_are_signed_gets_passed_through_as_received(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(httpx.Response(200, json=PAGE), httpx.Response(200, json=RIGHTS))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton:
        answers = [baton.claims("BAG/../1"), baton.rights(REF)]

    assert answers == [PAGE, RIGHTS]
    assert [(r.method, r.url.raw_path) for r in fake.requests] == [
        ("GET", b"/v1/cases/BAG%2F..%2F1/claims"),
        ("GET", f"/v1/cases/{REF}/rights".encode()),
    ]
    for request in fake.requests:
        assert "Content-Digest" not in request.headers
        verify_independently(
            request, algorithm=ED25519, key=ed25519_key.public_key(), require_components=("@method", "@target-uri")
        )


def test_a_403_is_the_clients_api_error_and_is_not_retried(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(problem(403, "Forbidden", "Only the case's owner reads its claims."))
    with client_for(fake, BatonSigner.ed25519(KEYID, ed25519_key)) as baton, pytest.raises(BatonAPIError) as raised:
        baton.claims(REF)

    assert type(raised.value) is BatonAPIError
    assert (raised.value.status, raised.value.detail) == (403, "Only the case's owner reads its claims.")
    assert len(fake.requests) == 1


# --- command line ------------------------------------------------------------------------------


def table_rows(output: str) -> list[list[str]]:
    """The header and body rows of a rich table as cells, without colours or borders."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    rows = [line for line in plain.splitlines() if line[:1] in ("┃", "│")]
    return [[cell.strip() for cell in re.split("[┃│]", row.strip("┃│"))] for row in rows]


def test_cli_claims_shows_a_table_on_a_terminal(key_file: Path, runner: CliRunner) -> None:
    fake = FakeBaton(httpx.Response(200, json=PAGE))
    result = runner.invoke(
        app, ["claims", REF], env=cli_env(key_file, TTY_COMPATIBLE="1", COLUMNS="160"), obj=fake.transport()
    )

    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout) == [
        ["id", "kind", "state", "totals", "answer due", "overdue"],
        ["7", "interim_expenses", "filed", "12.50 EUR", "2026-11-17T18:00:00+01:00", "no"],
        ["8", "damage", "filed", "30.00 EUR", "2026-11-01T18:00:00+01:00", "yes"],
        ["", "", "", "9.90 USD", "", ""],
    ]
    [request] = fake.requests
    assert (request.method, request.url.path) == ("GET", f"/v1/cases/{REF}/claims")


def test_cli_claims_prints_json_off_a_terminal_and_with_json_on_one(key_file: Path, runner: CliRunner) -> None:
    fake = FakeBaton(httpx.Response(200, json=PAGE))
    piped = runner.invoke(app, ["claims", REF], env=cli_env(key_file), obj=fake.transport())
    asked = runner.invoke(
        app, ["claims", REF, "--json"], env=cli_env(key_file, TTY_COMPATIBLE="1"), obj=fake.transport()
    )

    assert piped.exit_code == 0, piped.output
    assert asked.exit_code == 0, asked.output
    assert json.loads(piped.stdout) == PAGE
    assert json.loads(asked.stdout) == PAGE
    assert [request.url.path for request in fake.requests] == [f"/v1/cases/{REF}/claims"] * 2


def test_cli_decide_posts_the_exact_amount_and_prints_the_claim(key_file: Path, runner: CliRunner) -> None:
    fake = FakeBaton(httpx.Response(200, json=DECIDED))
    result = runner.invoke(
        app,
        [
            "decide",
            REF,
            "7",
            "--decision",
            "partly_approved",
            "--amount",
            "30.00",
            "--currency",
            "EUR",
            "--reason",
            "Receipts for two nights only",
        ],
        env=cli_env(key_file),
        obj=fake.transport(),
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == DECIDED
    [request] = fake.requests
    assert (request.method, request.url.path) == ("POST", f"/v1/cases/{REF}/claims/7/decision")
    assert json.loads(request.content) == {
        "decision": "partly_approved",
        "amount": "30.00",
        "currency": "EUR",
        "reason": "Receipts for two nights only",
    }
    assert "Idempotency-Key" in request.headers
    verify_independently(request, algorithm=ED25519, key=load_private_key(key_file).public_key())


def test_cli_decide_rejects_without_an_amount(key_file: Path, runner: CliRunner) -> None:
    fake = FakeBaton(httpx.Response(200, json=CLAIM | {"state": "rejected"}))
    result = runner.invoke(
        app,
        ["decide", REF, "7", "--decision", "rejected", "--reason", "No receipts"],
        env=cli_env(key_file),
        obj=fake.transport(),
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "rejected"
    assert json.loads(fake.requests[0].content) == {"decision": "rejected", "reason": "No receipts"}


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--decision", "approved", "--amount", "30,00", "--currency", "EUR"], "is not an amount like 30.00"),
        (["--decision", "approved", "--amount", "NaN", "--currency", "EUR"], "is not an amount like 30.00"),
        (["--decision", "maybe"], "maybe"),
    ],
    ids=["comma", "nan", "unknown decision"],
)
def test_cli_decide_refuses_bad_input_before_sending(
    key_file: Path, runner: CliRunner, args: list[str], complaint: str
) -> None:
    fake = FakeBaton()
    result = runner.invoke(
        app, ["decide", REF, "7", *args, "--reason", "ok"], env=cli_env(key_file), obj=fake.transport()
    )

    assert result.exit_code == 2
    assert complaint in result.stderr
    assert fake.requests == []


def test_cli_paid_posts_the_reference_and_prints_the_claim(key_file: Path, runner: CliRunner) -> None:
    fake = FakeBaton(httpx.Response(200, json=PAID))
    result = runner.invoke(
        app,
        ["paid", REF, "7", "--reference", "SEPA-2026-11-0042", "--idempotency-key", "ua-paid-7"],
        env=cli_env(key_file),
        obj=fake.transport(),
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == PAID
    [request] = fake.requests
    assert (request.method, request.url.path) == ("POST", f"/v1/cases/{REF}/claims/7/paid")
    assert json.loads(request.content) == {"reference": "SEPA-2026-11-0042"}
    assert request.headers["Idempotency-Key"] == "ua-paid-7"
    verify_independently(request, algorithm=ED25519, key=load_private_key(key_file).public_key())


def test_cli_reports_a_403_like_other_errors(key_file: Path, runner: CliRunner) -> None:
    fake = FakeBaton(problem(403, "Forbidden", "Only the case's owner reads its claims."))
    result = runner.invoke(app, ["claims", REF], env=cli_env(key_file), obj=fake.transport())

    assert result.exit_code == 1
    assert result.stderr.strip() == "error: 403 Forbidden: Only the case's owner reads its claims."
    assert result.stdout == ""
    assert "Traceback" not in result.output
