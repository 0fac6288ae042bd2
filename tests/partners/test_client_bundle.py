"""The partner client takes a case's evidence bundle, byte for byte, and ``baton-partner bundle`` saves it.

The fake Baton checks each request's signature with ``http_message_signatures`` (an independent
RFC 9421 implementation); the last test fetches a real bundle from the real app, as its owner, and
checks it with no database.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures.algorithms import ED25519
from typer.testing import CliRunner

from partners.client import AsyncBatonClient, BatonAPIError, BatonClient, BatonNotFound, BatonSigner
from partners.client.cli import app
from tests.conftest import BASE_URL as APP_URL
from tests.conftest import World
from tests.partners.test_client import BASE_URL, KEYID, REF, FakeBaton, cli_env, problem, verify_independently

# Indented, with an escaped non-ASCII character: a client that re-serialized it would change the bytes.
BUNDLE = b'{\n  "format": "baton-evidence-bundle",\n  "version": 1,\n  "case": {"title": "Gep\\u00e4ck"}\n}\n'


def _answer() -> httpx.Response:
    return httpx.Response(200, content=BUNDLE, headers={
        "Content-Type": "application/json",
        "Content-Disposition": f'attachment; filename="{REF}.baton-bundle.json"'})


def test_bundle_is_a_signed_get_and_comes_back_byte_for_byte(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(_answer())
    with BatonClient(BASE_URL, BatonSigner.ed25519(KEYID, ed25519_key), transport=fake.transport()) as baton:
        document = baton.bundle(REF)

    assert document == BUNDLE
    [request] = fake.requests
    assert (request.method, request.url.path) == ("GET", f"/v1/cases/{REF}/bundle")
    verify_independently(request, algorithm=ED25519, key=ed25519_key.public_key(),
                         require_components=("@method", "@target-uri"))


async def test_async_bundle_raises_the_problem_baton_answers(ed25519_key: Ed25519PrivateKey) -> None:
    fake = FakeBaton(problem(403, "Forbidden", "Only staff and the case's owner partner may take its evidence bundle."))
    async with AsyncBatonClient(BASE_URL, BatonSigner.ed25519(KEYID, ed25519_key),
                                transport=fake.async_transport()) as baton:
        with pytest.raises(BatonAPIError) as raised:
            await baton.bundle(REF)
    assert raised.value.status == 403 and "owner" in str(raised.value)


def test_cli_writes_the_bundle_as_it_came(runner: CliRunner, key_file: Path, tmp_path: Path) -> None:
    fake = FakeBaton(_answer())
    out = tmp_path / "case.json"
    result = runner.invoke(app, ["bundle", REF, "--out", str(out)], env=cli_env(key_file), obj=fake.transport())

    assert result.exit_code == 0, result.output
    assert out.read_bytes() == BUNDLE
    assert f"wrote {out}" in result.stderr


def test_cli_prints_the_bundle_to_stdout_with_out_dash(runner: CliRunner, key_file: Path) -> None:
    fake = FakeBaton(_answer())
    result = runner.invoke(app, ["bundle", REF, "--out", "-"], env=cli_env(key_file), obj=fake.transport())

    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == BUNDLE


def test_cli_reports_a_case_it_may_not_see_and_writes_nothing(
    runner: CliRunner, key_file: Path, tmp_path: Path
) -> None:
    fake = FakeBaton(problem(404, "Not found", f"No case {REF!r}."))
    out = tmp_path / "case.json"
    result = runner.invoke(app, ["bundle", REF, "--out", str(out)], env=cli_env(key_file), obj=fake.transport())

    assert result.exit_code == 1
    assert "No case" in result.stderr and "Traceback" not in result.output
    assert not out.exists()


async def test_the_owner_fetches_a_real_bundle_that_checks_offline(world: World, app: object) -> None:
    from tracker.verify import verify_bundle

    case = await world.open_case()
    ref = case["ref"]
    posted = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body={"status": "located"})
    assert posted.status_code == 201, posted.text
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with AsyncBatonClient(APP_URL, world.partners["ua"].signer(), transport=transport) as baton:
        document = await baton.bundle(ref.lower())
        with pytest.raises(BatonNotFound):
            await baton.bundle("BAG-7KQ3X9T")

    result = verify_bundle(json.loads(document))
    assert (result.ok, result.ref, result.events, result.signed) == (True, ref, 2, 1), result.reason

