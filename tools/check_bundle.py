#!/usr/bin/env python3
"""Check a Baton evidence bundle with Python's standard library and ``cryptography``, nothing of Baton.

    python3 check_bundle.py BAG-7KQ3X9T.baton-bundle.json [MORE.json ...]
    python3 check_bundle.py BAG-7KQ3X9T.baton-bundle.json --export 5 ev5/

The procedure is the one the bundle states in its ``chain`` and ``signatures`` members (and README.md,
"Evidence bundles"), written out again here on purpose: a third party should not have to trust
Baton's own code to check Baton's records.

1. ``seq`` runs 1, 2, 3, ...; each ``prev_hash`` is the previous event's ``hash`` (64 zeros first).
2. A body that is present hashes to ``body_digest``: sha-256 of canonical JSON (sorted keys, no
   whitespace, UTF-8). A null body (erased, or withheld from the owner partner) is not checked.
3. ``signature_digest`` is the digest of the kept signed request with its raw body replaced by the
   body's sha-256; the event's header (``case`` and ten fields) hashes to ``hash``.
4. A signed event's key is in ``keys`` and belongs to the event's partner. Its Content-Digest is the
   sha-256 of the raw body, and the RFC 9421 signature base verifies with the Ed25519 public key;
   an update's body says what the partner signed. HMAC keys are shared secrets a bundle never
   holds: those events are counted as not checkable offline, not failed.
5. ``head`` is the last event's ``seq`` and ``hash``: a bundle cut short shows, unless its head was
   rewritten too, which is why the head hash is printed: compare it with a copy you trust.

``--export SEQ DIR`` writes event SEQ's ``base.txt`` (the signature base), ``signature.bin``,
``key.pem`` and ``body.bin`` (the raw body), to check with OpenSSL 3 instead::

    openssl pkeyutl -verify -pubin -inkey DIR/key.pem -rawin -in DIR/base.txt -sigfile DIR/signature.bin

Exit status 0 when every bundle checks, 1 when one does not (naming the event and the reason), 2 on usage.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

GENESIS = "0" * 64
FORMAT, VERSION, CHAIN_VERSION = "baton-evidence-bundle", 1, 1
HEADER = ("seq", "type", "actor", "partner", "visibility", "occurred_at", "received_at", "body_digest",
          "signature_digest")
_SF_STRING = r'"(?:[^"\\]|\\.)*"'


class Failed(Exception):
    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.seq = reason, seq


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def raw_body(signature: dict[str, Any]) -> bytes | None:
    body = signature.get("body")
    return None if body is None else body.encode("utf-8", "surrogateescape")


def signature_digest(signature: dict[str, Any] | None) -> str | None:
    if not signature:
        return None
    core = {k: v for k, v in signature.items() if k not in ("body", "body_sha256")}
    body = raw_body(signature)
    core["body_sha256"] = sha256_hex(body) if body is not None else signature.get("body_sha256")
    return sha256_hex(canonical(core))


# ---------------------------------------------------------------- RFC 9421, the little Baton uses


def first_member(field: str, label: str | None = None) -> tuple[str, str]:
    """(label, value text) of a structured-field dictionary member: the first, or the one named ``label``."""
    i = 0
    while i < len(field):
        start = i
        while i < len(field) and field[i] not in "=,":
            i += 1
        name = field[start:i].strip()
        value_start = i + 1 if i < len(field) and field[i] == "=" else i
        i, depth, quoted = value_start, 0, False
        while i < len(field):
            ch = field[i]
            if quoted:
                if ch == "\\":
                    i += 1
                elif ch == '"':
                    quoted = False
            elif ch == '"':
                quoted = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 0:
                break
            i += 1
        if label is None or name == label:
            return name, field[value_start:i].strip()
        i += 1
    raise Failed(f"no signature labelled {label!r}")


def signature_base(signature: dict[str, Any], headers: dict[str, str]) -> tuple[bytes, str, dict[str, str]]:
    """The signature base, its label, and the signature parameters (``keyid``, ``alg``, ...)."""
    label, params_value = first_member(headers.get("signature-input", ""))
    match = re.fullmatch(r"\(([^)]*)\)(.*)", params_value)
    if not match:
        raise Failed("Signature-Input is not an inner list")
    components = [json.loads(c) for c in re.findall(_SF_STRING, match.group(1))]
    params = {k: v.strip('"') for k, v in re.findall(r";\s*([a-z*][a-z0-9_.*-]*)=(" + _SF_STRING + r"|[^;]*)",
                                                     match.group(2))}
    method, target = str(signature["method"]), str(signature["target_uri"])
    scheme, _, rest = target.partition("://")
    authority, slash, path_query = rest.partition("/")
    path, _, query = ("/" + path_query if slash else "/").partition("?")
    derived = {"@method": method.upper(), "@target-uri": target, "@authority": authority.lower(),
               "@scheme": scheme.lower(), "@path": path, "@query": "?" + query,
               "@request-target": path + ("?" + query if query else "")}
    lines = []
    for component in components:
        if component in derived:
            value = derived[component]
        elif component.startswith("@") or component not in headers:
            raise Failed(f"the covered component {component!r} is missing")
        else:
            value = headers[component].strip()
        lines.append(f'"{component}": {value}')
    lines.append(f'"@signature-params": {params_value}')
    # As Baton admitted it: a body is covered by its digest; a body not kept (erased, an upload) was too.
    body = raw_body(signature)
    required = {"@method", "@target-uri"} | ({"content-digest"} if body is None or body else set())
    if not required <= set(components):
        raise Failed(f"the signature does not cover {', '.join(sorted(required - set(components)))}")
    return "\n".join(lines).encode("utf-8"), label, params


def signature_bytes(headers: dict[str, str], label: str) -> bytes:
    _, value = first_member(headers.get("signature", ""), label)
    if not (len(value) >= 2 and value[0] == value[-1] == ":"):
        raise Failed("the Signature header is not a byte sequence")
    try:
        return base64.b64decode(value[1:-1], validate=True)
    except binascii.Error:
        raise Failed("the Signature header is not base64") from None


def check_content_digest(signature: dict[str, Any], headers: dict[str, str]) -> None:
    body = raw_body(signature)
    if body is not None:
        expected = hashlib.sha256(body).digest()
    elif isinstance(signature.get("body_sha256"), str):
        expected = bytes.fromhex(signature["body_sha256"])
    else:
        return  # an upload's multipart body: Baton keeps the files by digest, not the request body
    for member in headers.get("content-digest", "").split(","):
        name, _, value = member.strip().partition("=")
        if name == "sha-256":
            try:
                if base64.b64decode(value.strip(":"), validate=True) == expected:
                    return
            except binascii.Error:
                pass
            raise Failed("Content-Digest does not match the body")
    raise Failed("Content-Digest (sha-256) is missing")


def same(signed: Any, value: Any) -> bool:
    if signed == value:
        return True
    try:  # times may be written differently and mean the same instant
        return dt.datetime.fromisoformat(signed) == dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False


def check_signature(event: dict[str, Any], keys: dict[str, dict[str, Any]]) -> bool:
    """True when verified, False when it cannot be offline (HMAC); ``Failed`` otherwise."""
    signature = event["signature"]
    key = keys.get(signature.get("keyid"))
    if key is None:
        raise Failed(f"signing key {signature.get('keyid')!r} is unknown")
    if key.get("partner") != event.get("partner"):
        raise Failed("the signing key belongs to another partner")
    headers = {str(k).lower(): str(v) for k, v in (signature.get("headers") or {}).items()}
    base, label, params = signature_base(signature, headers)
    if params.get("alg", key["alg"]) != key["alg"]:
        raise Failed("the signature's alg is not its key's")
    check_content_digest(signature, headers)
    verified = False
    if key["alg"] == "ed25519":
        try:
            public_key = load_pem_public_key(str(key.get("public_key")).encode())
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise Failed(f"the public key of {key['keyid']!r} cannot be read") from None
        if not isinstance(public_key, Ed25519PublicKey):
            raise Failed(f"the public key of {key['keyid']!r} is not an Ed25519 key")
        try:
            public_key.verify(signature_bytes(headers, label), base)
        except InvalidSignature:
            raise Failed("the partner signature does not verify") from None
        verified = True
    elif key["alg"] != "hmac-sha256":
        raise Failed(f"unknown algorithm {key['alg']!r}")
    if event["type"] == "update" and event.get("body") is not None and raw_body(signature) is not None:
        sent = json.loads(raw_body(signature) or b"{}")
        for field, value in event["body"].items():
            if not same(sent.get(field), value):
                raise Failed(f"the event's {field!r} differs from what the partner signed")
    return verified


# ---------------------------------------------------------------- the chain


def check(bundle: dict[str, Any]) -> dict[str, Any]:
    if bundle.get("format") != FORMAT or bundle.get("version") != VERSION:
        raise Failed("not a Baton evidence bundle of a version this script knows")
    if (bundle.get("chain") or {}).get("version") != CHAIN_VERSION:
        raise Failed("the chain's format version is not one this script knows")
    ref = bundle["case"]["ref"]
    keys = {k["keyid"]: k for k in bundle["keys"]}
    prev, counts = GENESIS, {"events": 0, "signed": 0, "hmac": 0, "link": 0}
    for expected, event in enumerate(bundle["events"], start=1):
        seq = event.get("seq")
        try:
            if seq != expected:
                raise Failed(f"sequence gap: expected {expected}, found {seq}")
            if event["prev_hash"] != prev:
                raise Failed("prev_hash is not the previous event's hash")
            if event.get("body") is not None and sha256_hex(canonical(event["body"])) != event["body_digest"]:
                raise Failed("the body does not match its digest")
            if signature_digest(event.get("signature")) != event.get("signature_digest"):
                raise Failed("the kept signed request does not match its signature_digest")
            header = {name: event.get(name) for name in HEADER} | {"case": ref, "prev": event["prev_hash"]}
            if sha256_hex(canonical(header)) != event["hash"]:
                raise Failed("the hash does not recompute from the header")
            if event.get("signature"):
                counts["signed" if check_signature(event, keys) else "hmac"] += 1
            elif (event.get("body") or {}).get("via") == "link":
                counts["link"] += 1
        except Failed as failed:
            failed.seq = seq if isinstance(seq, int) else expected
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise Failed(f"malformed event ({exc.__class__.__name__}: {exc})", seq) from None
        prev = event["hash"]
        counts["events"] += 1
    if (bundle["head"]["last_seq"], bundle["head"]["last_hash"]) != (counts["events"], prev):
        raise Failed("the head is not the last event: events are missing at the end")
    return {"ref": ref, "head": prev, **counts}


def export(bundle: dict[str, Any], seq: int, out: Path) -> None:
    """Event ``seq``'s signature base, signature, public key and raw body, for OpenSSL."""
    event = next((e for e in bundle["events"] if e.get("seq") == seq and e.get("signature")), None)
    if event is None:
        raise Failed(f"event {seq} is not in the bundle, or not signed", seq)
    signature = event["signature"]
    key = next(k for k in bundle["keys"] if k["keyid"] == signature["keyid"])
    headers = {str(k).lower(): str(v) for k, v in signature["headers"].items()}
    base, label, _ = signature_base(signature, headers)
    out.mkdir(parents=True, exist_ok=True)
    (out / "base.txt").write_bytes(base)
    (out / "signature.bin").write_bytes(signature_bytes(headers, label))
    (out / "key.pem").write_text(key.get("public_key") or "")
    (out / "body.bin").write_bytes(raw_body(signature) or b"")


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[attr-defined]  # a hostile file's text
    if not argv or argv[0] in ("-h", "--help") or ("--export" in argv and len(argv) != 4):
        print(__doc__, file=sys.stderr)
        return 2
    if "--export" in argv:
        at = argv.index("--export")
        bundle = json.loads(Path(argv[0]).read_bytes())
        export(bundle, int(argv[at + 1]), Path(argv[at + 2]))
        return 0
    status = 0
    for name in argv:
        try:
            bundle = json.loads(Path(name).read_bytes())
            if not isinstance(bundle, dict):
                raise Failed("not a JSON object")
            result = check(bundle)
        except Failed as failed:
            where = f"event {failed.seq}" if failed.seq is not None else "the bundle"
            print(f"FAILED {name}: {where}: {failed.reason}")
            status = 1
            continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            print(f"FAILED {name}: the bundle: unreadable or malformed ({exc.__class__.__name__}: {exc})")
            status = 1
            continue
        print(f"ok {result['ref']}: {result['events']} events, chain intact, {result['signed']} Ed25519 signatures "
              f"verified, {result['hmac']} HMAC-signed not checkable offline (shared-secret key), "
              f"{result['link']} posted through one-tap links; head {result['head']}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
