"""The evidence bundle (SPEC "The complaint department's tools"): one file that checks with no database.

The story behind every bundle here, on SQLite and PostgreSQL:

    1 case.opened        staff
    2 update             lh, Ed25519 (its raw body later dropped by erasure)
    3 customer.message   the customer, from the status page; erased
    4 customer.erased    internal
    5 update             lh, Ed25519, a message to the customer
    6 update             lh, HMAC
    7 update             staff, internal note
    8 attachment.added   lh, Ed25519, a photo (an upload: its multipart body is never kept)
    9 attachment.added   staff, an internal document

Each tampering below changes one thing in the file and must be reported naming the event; a forger
who also recomputes every digest and hash (anyone holding the file can) is stopped by lh's signature.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.conftest import World
from tests.tracker.test_evidence import photo_with_gps, upload
from tests.tracker.test_verify import _cli
from tracker.bundle import EvidenceBundle
from tracker.chain import GENESIS, digest, header, header_hash, signature_commitment
from tracker.erasure import erase_customer
from tracker.verify import verify_bundle, verify_case

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tools" / "check_bundle.py"
STAFF_NOTE = "Customer called twice; supervisor approved the courier"
# Nothing may be reached: `baton verify --bundle` must not open a database.
NO_DATABASE = "postgresql+asyncpg://nobody@127.0.0.1:9/nothing"


async def _story(world: World) -> str:
    case = await world.open_case()
    ref, token = case["ref"], case["status_url"].rsplit("/", 1)[1]

    async def lh(body: dict[str, Any], *, hmac: bool = False) -> None:
        response = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body=body, hmac=hmac)
        assert response.status_code == 201, response.text

    await lh({"status": "tracing", "internal_note": "checking FRA"})
    sent = await world.client.post(f"/s/{token}/messages", data={"message": "I am Ada, call me on +14155550100"})
    assert sent.status_code == 303, sent.text
    async with _sessions(world)() as session:
        await erase_customer(session=session, ref=ref, actor="staff:test", now=world.clock.now())
        await session.commit()
    await lh({"status": "located", "message": "Your bag is in Frankfurt.", "location": "FRA"})
    await lh({"internal_note": "signed with the HMAC key"}, hmac=True)
    note = await world.as_admin("POST", f"/v1/cases/{ref}/events",
                                json_body={"internal_note": STAFF_NOTE, "visibility": "internal"})
    assert note.status_code == 201, note.text
    photo = await upload(world, "lh", ref, content=photo_with_gps(), name="belt3.jpg")
    assert photo.status_code == 201, photo.text
    staff_file = await upload(world, None, ref, content=photo_with_gps(color="blue"), kind="document",
                              name="supervisor-approval.jpg", extra={"visibility": "internal"})
    assert staff_file.status_code == 201, staff_file.text
    return ref


def _sessions(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


async def _bundle(world: World, ref: str, *, partner: str | None = None) -> dict[str, Any]:
    path = f"/v1/cases/{ref}/bundle"
    response = await (world.as_partner(partner, "GET", path) if partner else world.as_admin("GET", path))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == f'attachment; filename="{ref}.baton-bundle.json"'
    return response.json()


async def _checker(*paths: Path) -> tuple[int, str]:
    """tools/check_bundle.py as a third party runs it: isolated mode, from another directory."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", str(CHECKER), *map(str, paths), cwd="/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


# ---------------------------------------------------------------- the whole bundle


async def test_staff_bundle_holds_the_case_and_checks_offline_with_every_ed25519_signature(
    world: World, tmp_path: Path
) -> None:
    ref = await _story(world)
    revoked = await world.as_admin("DELETE", "/v1/partners/lh/keys/lh-ed")
    assert revoked.status_code == 200, revoked.text
    bundle = await _bundle(world, ref)

    EvidenceBundle.model_validate(bundle)  # what the OpenAPI document promises
    assert list(bundle) == ["format", "version", "generated_at", "generated_for", "case", "head", "chain",
                            "signatures", "events", "keys", "attachments"]
    assert (bundle["format"], bundle["version"], bundle["generated_for"]) == ("baton-evidence-bundle", 1, "staff:admin")
    assert bundle["case"]["ref"] == ref and bundle["case"]["owner"] == "ua"
    assert {(p["partner"], p["role"]) for p in bundle["case"]["parties"]} == {("lh", "carrier"), ("ua", "owner")}
    assert [e["type"] for e in bundle["events"]] == [
        "case.opened", "update", "customer.message", "customer.erased", "update", "update", "update",
        "attachment.added", "attachment.added"]
    events = {e["seq"]: e for e in bundle["events"]}
    assert bundle["head"] == {"last_seq": 9, "last_hash": events[9]["hash"]}
    assert bundle["chain"]["genesis"] == GENESIS and events[1]["prev_hash"] == GENESIS
    assert (events[3]["body"], events[3]["body_withheld"]) == (None, "erased")
    assert events[7]["body"] == {"internal_note": STAFF_NOTE}
    assert events[2]["signature"]["body"] is None and events[2]["signature"]["body_sha256"]  # erased raw body
    assert json.loads(events[5]["signature"]["body"])["message"] == "Your bag is in Frankfurt."
    keys = {k["keyid"]: k for k in bundle["keys"]}
    assert set(keys) == {"lh-ed", "lh-hmac"}
    assert keys["lh-ed"]["public_key"] == world.partners["lh"].public_pem
    assert keys["lh-ed"]["verifiable_offline"] is True
    assert keys["lh-ed"]["revoked_at"] is not None, "a revoked key still vouches for what it signed before"
    assert (keys["lh-hmac"]["public_key"], keys["lh-hmac"]["verifiable_offline"]) == (None, False)
    assert world.partners["lh"].hmac_secret not in json.dumps(bundle), "a shared secret never leaves Baton"
    files = {a["seq"]: a for a in bundle["attachments"]}
    assert set(files) == {8, 9}
    assert files[8]["sha256"] == events[8]["body"]["sha256"] and files[8]["filename"] == "belt3.jpg"

    offline = verify_bundle(bundle)
    assert offline.ok, offline.reason
    assert (offline.events, offline.signed, offline.hmac_unchecked, offline.via_link) == (9, 3, 1, 0)
    async with _sessions(world)() as session:
        online = await verify_case(session=session, ref=ref)
    assert (online.ok, online.signed, online.last_hash) == (True, 4, offline.last_hash)

    path = tmp_path / f"{ref}.baton-bundle.json"
    path.write_text(json.dumps(bundle))
    code, out = await _cli(NO_DATABASE, "verify", "--bundle", str(path))
    assert code == 0, out
    assert (f"ok {ref}: 9 events, chain intact, 3 partner signatures verified offline, "
            "1 HMAC-signed not checkable offline (shared-secret key), 0 posted through one-tap links") in out
    assert offline.last_hash in out
    code, out = await _checker(path)
    assert code == 0, out
    assert f"ok {ref}: 9 events, chain intact, 3 Ed25519 signatures verified, 1 HMAC-signed" in out


async def test_owner_bundle_withholds_internal_bodies_and_still_verifies(world: World, tmp_path: Path) -> None:
    ref = await _story(world)
    response = await world.as_partner("ua", "GET", f"/v1/cases/{ref}/bundle")
    assert response.status_code == 200, response.text
    assert STAFF_NOTE not in response.text and "supervisor-approval" not in response.text
    bundle = response.json()

    assert bundle["generated_for"] == "partner:ua"
    events = {e["seq"]: e for e in bundle["events"]}
    assert len(events) == 9, "every event's header stays, or the chain could not be checked"
    for seq in (4, 7):
        assert (events[seq]["visibility"], events[seq]["body"], events[seq]["body_withheld"]) == (
            "internal", None, "internal")
    assert events[5]["body"]["message"] == "Your bag is in Frankfurt."
    assert [a["seq"] for a in bundle["attachments"]] == [8], "the internal document is not the owner's to see"
    staff = await _bundle(world, ref)
    assert [e["hash"] for e in bundle["events"]] == [e["hash"] for e in staff["events"]]
    again = await world.as_partner("ua", "GET", f"/v1/cases/{ref}/bundle")
    assert again.content == response.content, "the same case, at the same instant, gives the same bytes"

    result = verify_bundle(bundle)
    assert (result.ok, result.signed, result.hmac_unchecked) == (True, 3, 1), result.reason
    path = tmp_path / "owner.json"
    path.write_bytes(response.content)
    assert (await _checker(path))[0] == 0


async def test_only_staff_and_the_owner_take_the_bundle(world: World) -> None:
    ref = await _story(world)
    carrier = await world.as_partner("lh", "GET", f"/v1/cases/{ref}/bundle")
    assert carrier.status_code == 403, carrier.text
    assert carrier.headers["content-type"] == "application/problem+json"
    stranger = await world.as_partner("swissport-fra", "GET", f"/v1/cases/{ref}/bundle")
    unknown = await world.as_partner("swissport-fra", "GET", "/v1/cases/BAG-7KQ3X9T/bundle")
    assert (stranger.status_code, unknown.status_code) == (404, 404)
    assert stranger.json()["title"] == unknown.json()["title"], "a stranger learns nothing of the case"
    anonymous = await world.client.get(f"/v1/cases/{ref}/bundle")
    assert anonymous.status_code == 401
    assert (await world.as_admin("GET", "/v1/cases/not-a-ref/bundle")).status_code == 404


# ---------------------------------------------------------------- tampering


def _rechain(bundle: dict[str, Any]) -> None:
    """What anyone holding the file can do after an edit: recompute every digest, hash and the head."""
    prev = GENESIS
    for event in bundle["events"]:
        if event["body"] is not None:
            event["body_digest"] = digest(event["body"])
        event["signature_digest"] = signature_commitment(event["signature"])
        event["prev_hash"] = prev
        event["hash"] = prev = header_hash(header(
            case_ref=bundle["case"]["ref"], seq=event["seq"], type=event["type"], actor=event["actor"],
            partner_id=event["partner"], visibility=event["visibility"], occurred_at=event["occurred_at"],
            received_at=event["received_at"], body_digest=event["body_digest"],
            signature_digest=event["signature_digest"], prev_hash=event["prev_hash"]))
    bundle["head"] = {"last_seq": len(bundle["events"]), "last_hash": prev}


def _one_byte(text: str, at: int = -1) -> str:
    """``text`` with one character changed (within base64, a PEM or plain text alike)."""
    index = at % len(text)
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


def _event(bundle: dict[str, Any], seq: int) -> dict[str, Any]:
    return bundle["events"][seq - 1]


def _key(bundle: dict[str, Any], keyid: str) -> dict[str, Any]:
    return next(k for k in bundle["keys"] if k["keyid"] == keyid)


def _sig_header(bundle: dict[str, Any], seq: int) -> dict[str, str]:
    return _event(bundle, seq)["signature"]["headers"]


def _other_key() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def _edit_body(bundle: dict[str, Any]) -> None:
    _event(bundle, 5)["body"]["message"] = "Your bag is in Frankfurt!"


def _edit_header(bundle: dict[str, Any]) -> None:
    _event(bundle, 6)["occurred_at"] = _one_byte(_event(bundle, 6)["occurred_at"], -3)


def _edit_signature_value(bundle: dict[str, Any]) -> None:
    _sig_header(bundle, 5)["signature"] = _one_byte(_sig_header(bundle, 5)["signature"], -5)


def _edit_signed_body(bundle: dict[str, Any]) -> None:
    signature = _event(bundle, 5)["signature"]
    signature["body"] = signature["body"].replace("Frankfurt.", "Frankfurt!")


def _swap_public_key(bundle: dict[str, Any]) -> None:
    _key(bundle, "lh-ed")["public_key"] = _other_key()


def _garble_public_key(bundle: dict[str, Any]) -> None:
    _key(bundle, "lh-ed")["public_key"] = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n"


def _one_byte_of_public_key(bundle: dict[str, Any]) -> None:
    pem = _key(bundle, "lh-ed")["public_key"]
    _key(bundle, "lh-ed")["public_key"] = _one_byte(pem, pem.index("\n-----END") - 3)


def _key_to_another_partner(bundle: dict[str, Any]) -> None:
    _key(bundle, "lh-ed")["partner"] = "ua"


def _drop_key(bundle: dict[str, Any]) -> None:
    bundle["keys"] = [k for k in bundle["keys"] if k["keyid"] != "lh-ed"]


def _drop_middle_event(bundle: dict[str, Any]) -> None:
    del bundle["events"][5]


def _drop_last_event(bundle: dict[str, Any]) -> None:
    bundle["events"].pop()


def _rechained(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def both(bundle: dict[str, Any]) -> None:
        edit(bundle)
        _rechain(bundle)
    return both


def _forged_statement(bundle: dict[str, Any]) -> None:
    """lh's update rewritten, its signed request left as lh sent it, the whole chain recomputed."""
    _event(bundle, 5)["body"]["message"] = "Your bag was never checked in."
    _rechain(bundle)


TAMPERING: list[tuple[str, Callable[[dict[str, Any]], None], int | None, str]] = [
    ("event body", _edit_body, 5, "body does not match its digest"),
    ("header field", _edit_header, 6, "hash does not recompute"),
    ("signature value", _edit_signature_value, 5, "signature_digest"),
    ("signed body", _edit_signed_body, 5, "signature_digest"),
    ("signature value, chain recomputed", _rechained(_edit_signature_value), 5, "signature does not verify"),
    ("signed body, chain recomputed", _rechained(_edit_signed_body), 5, "Content-Digest does not match"),
    ("event body, chain recomputed", _forged_statement, 5, "differs from what the partner signed"),
    ("another valid public key", _swap_public_key, 2, "signature does not verify"),
    ("garbage public key", _garble_public_key, 2, "not a readable Ed25519 public key"),
    ("one byte of the public key", _one_byte_of_public_key, 2, ""),
    ("key of another partner", _key_to_another_partner, 2, "belongs to another partner"),
    ("key left out", _drop_key, 2, "'lh-ed' is unknown"),
    ("middle event removed", _drop_middle_event, 7, "sequence gap"),
    ("last event removed", _drop_last_event, None, "events were removed"),
]


async def test_each_tampering_is_reported_naming_the_event_by_both_checkers(world: World, tmp_path: Path) -> None:
    ref = await _story(world)
    original = await _bundle(world, ref)
    files = []
    for name, tamper, seq, reason in TAMPERING:
        bundle = copy.deepcopy(original)
        tamper(bundle)
        result = verify_bundle(bundle)
        assert (result.ok, result.failed_seq) == (False, seq), f"{name}: {result}"
        assert reason in (result.reason or ""), f"{name}: {result.reason}"
        files.append(tmp_path / f"{len(files):02d}.json")
        files[-1].write_text(json.dumps(bundle))

    code, out = await _checker(*files)
    lines = out.splitlines()
    assert code == 1 and len(lines) == len(TAMPERING), out
    for line, (name, _, seq, _) in zip(lines, TAMPERING):
        assert line.startswith("FAILED "), f"{name}: {line}"
        assert f": event {seq}:" in line if seq else ": the bundle:" in line, f"{name}: {line}"

    code, out = await _cli(NO_DATABASE, "verify", "--bundle", str(files[0]))
    assert code == 1 and f"{ref}: event 5: body does not match its digest" in out, out
    code, out = await _cli(NO_DATABASE, "verify", "--bundle", str(files[-1]))
    assert code == 1 and "events were removed" in out, out


async def test_a_bundle_cut_short_with_its_head_rewritten_checks_but_its_head_hash_differs(world: World) -> None:
    """Why the head is printed: only a head obtained elsewhere (an earlier copy) shows a consistent truncation."""
    ref = await _story(world)
    bundle = await _bundle(world, ref)
    full = verify_bundle(bundle)
    bundle["events"].pop()
    bundle["head"] = {"last_seq": 8, "last_hash": bundle["events"][-1]["hash"]}
    cut = verify_bundle(bundle)
    assert cut.ok and cut.last_hash != full.last_hash


async def test_a_withheld_body_hides_words_but_forges_nothing(world: World) -> None:
    ref = await _story(world)
    bundle = await _bundle(world, ref)
    _event(bundle, 5)["body"], _event(bundle, 5)["body_withheld"] = None, "internal"
    assert verify_bundle(bundle).ok, "the digest and lh's signature still stand for the words"
    _event(bundle, 5)["signature"]["headers"]["content-digest"] = "sha-256=:" + "A" * 43 + "=:"
    _rechain(bundle)
    result = verify_bundle(bundle)
    assert (result.ok, result.failed_seq) == (False, 5), result


@pytest.mark.parametrize("document", [
    [], {"format": "something-else"}, {"format": "baton-evidence-bundle", "version": 2},
    {"format": "baton-evidence-bundle", "version": 1, "chain": {"version": 9}},
])
def test_what_is_not_a_bundle_is_refused_without_a_traceback(document: Any) -> None:
    result = verify_bundle(document)
    assert not result.ok and result.failed_seq is None and result.reason


async def test_a_malformed_event_is_named(world: World) -> None:
    ref = await _story(world)
    bundle = await _bundle(world, ref)
    _event(bundle, 6)["body"] = None  # no body_withheld: not a bundle Baton writes
    result = verify_bundle(bundle)
    assert (result.ok, result.failed_seq) == (False, 6) and "body_withheld" in (result.reason or "")
    bundle = await _bundle(world, ref)
    _event(bundle, 3)["type"] = "\ud800"  # valid JSON, not valid UTF-8
    assert verify_bundle(bundle).failed_seq == 3


async def test_baton_verify_needs_a_reference_or_a_bundle(tmp_path: Path) -> None:
    code, out = await _cli(NO_DATABASE, "verify")
    assert code == 2 and "--bundle" in out, out
    code, out = await _cli(NO_DATABASE, "verify", "BAG-7KQ3X9T", "--bundle", str(tmp_path / "x.json"))
    assert code == 2 and "not both" in out, out
    (tmp_path / "x.json").write_text("not json")
    code, out = await _cli(NO_DATABASE, "verify", "--bundle", str(tmp_path / "x.json"))
    assert code == 1 and "not a JSON file" in out and "Traceback" not in out, out


async def test_the_readme_procedure_checks_the_chain_with_the_standard_library_alone(
    world: World, tmp_path: Path
) -> None:
    section = (ROOT / "README.md").read_text().split("## Evidence bundles", 1)[1].split("\n## ", 1)[0]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    ref = await _story(world)
    bundle = (await world.as_partner("ua", "GET", f"/v1/cases/{ref}/bundle")).json()
    path = tmp_path / "bundle.json"

    async def run(document: dict[str, Any]) -> tuple[int, str]:
        path.write_text(json.dumps(document))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-c", snippet.replace("BAG-7KQ3X9T.baton-bundle.json", str(path)), cwd="/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    code, out = await run(bundle)
    assert code == 0 and f"chain intact, head {bundle['head']['last_hash']}" in out, out
    _edit_header(bundle)
    code, out = await run(bundle)
    assert code == 1 and "AssertionError: 6" in out, out


def test_the_checker_script_uses_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(CHECKER.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}
