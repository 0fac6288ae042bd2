"""Server-side verification of RFC 9421 HTTP Message Signatures on partner requests.

A request is accepted when:

1. ``Signature-Input`` and ``Signature`` carry the same label (any label; the first is used);
2. the covered components include ``@method`` and ``@target-uri``, and ``content-digest``
   whenever the request has a body; ``created``, ``keyid`` and ``nonce`` are present;
3. ``created`` is within the allowed skew of the server clock and ``expires`` (if any) is not past;
4. ``Content-Digest`` (RFC 9530, sha-256) matches the body byte for byte;
5. the key exists, is active, and its algorithm matches ``alg`` when that is given;
6. the signature over the reconstructed signature base verifies.

Parsing refuses oversized headers and parameters (label, ``keyid``, ``nonce``) before anything
is looked up, stored or echoed: a hostile caller must not make Baton remember or repeat megabytes.
``created`` may lie at most ``max_future`` seconds ahead: honest clocks drift by seconds, and a
request dated minutes ahead would stay usable for longer than the skew window intends.

Nonce uniqueness needs the database and is checked by the caller (see ``partners.auth``).
Key objects are built once per key and cached: PEM parsing is not free on the hot path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Mapping

import http_sf
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from http_sf.innerlist import ser_innerlist

from kernel.errors import Unauthorized

ALGORITHMS = ("ed25519", "hmac-sha256")
_DERIVED = {"@method", "@target-uri", "@authority", "@scheme", "@path", "@query", "@request-target"}
# Longer values are refused unread: a key id, nonce or label is an identifier, never a payload.
MAX_PARAM_CHARS = 256
# Room for a few labels of covered components and parameters each at MAX_PARAM_CHARS.
MAX_HEADER_CHARS = 4096


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    keyid: str
    partner_id: str
    alg: str
    public_key: str | None
    secret: str | None


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The parsed, not yet verified, signature of a request."""

    label: str
    keyid: str
    nonce: str
    created: int
    expires: int | None
    alg: str | None
    components: tuple[str, ...]
    params_value: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """What Baton keeps with an event so anyone can re-check it later."""

    keyid: str
    partner_id: str
    alg: str
    nonce: str
    created: int
    method: str
    target_uri: str
    headers: dict[str, str]

    def record(self, body: bytes) -> dict[str, Any]:
        return {
            "keyid": self.keyid,
            "alg": self.alg,
            "created": self.created,
            "nonce": self.nonce,
            "method": self.method,
            "target_uri": self.target_uri,
            "headers": self.headers,
            "body": body.decode("utf-8", errors="surrogateescape"),
        }


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def parse_signature_headers(headers: Mapping[str, str]) -> SignedRequest:
    """Step 1–2: parse the structured fields and check the required parameters."""
    raw_input = headers.get("signature-input")
    raw_sig = headers.get("signature")
    if not raw_input or not raw_sig:
        raise Unauthorized("The request is not signed: Signature-Input and Signature headers are required.")
    if len(raw_input) > MAX_HEADER_CHARS or len(raw_sig) > MAX_HEADER_CHARS:
        raise Unauthorized(f"Signature-Input and Signature are limited to {MAX_HEADER_CHARS} characters each.")
    try:
        inputs = http_sf.parse(raw_input.encode(), tltype="dictionary")
        signatures = http_sf.parse(raw_sig.encode(), tltype="dictionary")
    except Exception as exc:  # http_sf raises several types for malformed fields
        # The parser's message may quote a key of the field: repeat it only when it is short.
        reason = str(exc) if len(str(exc)) <= MAX_PARAM_CHARS else "not an RFC 8941 dictionary"
        raise Unauthorized(f"Malformed signature header: {reason}") from None
    if not inputs:
        raise Unauthorized("Signature-Input is empty.")
    label = next(iter(inputs))
    if len(label) > MAX_PARAM_CHARS:
        raise Unauthorized(f"The signature label is longer than {MAX_PARAM_CHARS} characters.")
    member = inputs[label]
    if label not in signatures:
        raise Unauthorized(f"No Signature for label {label!r}.")
    sig_value = signatures[label][0]
    if not isinstance(member[0], list) or not isinstance(sig_value, bytes):
        raise Unauthorized("Signature-Input must be an inner list and Signature a byte sequence.")
    components: list[str] = []
    for value, params in member[0]:
        if not isinstance(value, str) or params:
            raise Unauthorized("Only plain component identifiers are supported.")
        components.append(value)
    params = member[1]
    keyid, nonce, created = params.get("keyid"), params.get("nonce"), params.get("created")
    if not isinstance(keyid, str) or not isinstance(nonce, str) or not isinstance(created, int):
        raise Unauthorized("Signature parameters created, keyid and nonce are required.")
    if len(keyid) > MAX_PARAM_CHARS:
        raise Unauthorized(f"The signature keyid is longer than {MAX_PARAM_CHARS} characters.")
    if not nonce or len(nonce) > 200:
        raise Unauthorized("The nonce must be between 1 and 200 characters.")
    expires = params.get("expires")
    alg = params.get("alg")
    return SignedRequest(
        label=label,
        keyid=keyid,
        nonce=nonce,
        created=created,
        expires=expires if isinstance(expires, int) else None,
        alg=alg if isinstance(alg, str) else None,
        components=tuple(components),
        params_value=ser_innerlist(member),
        signature=sig_value,
    )


class KeyCache:
    """Key material per key id, and cryptographic key objects built once per (keyid, material).

    Material is safe to keep for the life of the process: a key id is never reused and its
    material never changes. Whether the key is still *active* is not cached: the request's nonce
    is recorded only while the key is active (``partners.service.consume_nonce``), so a revoked
    key is refused at once by every process.
    """

    MAX = 10_000

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], Any] = {}
        self._materials: dict[str, KeyMaterial] = {}

    def material(self, keyid: str) -> KeyMaterial | None:
        return self._materials.get(keyid)

    def remember(self, material: KeyMaterial) -> None:
        if len(self._materials) >= self.MAX:
            self._materials.clear()
        self._materials[material.keyid] = material

    def key_for(self, material: KeyMaterial) -> Any:
        source = material.public_key if material.alg == "ed25519" else material.secret
        cache_key = (material.keyid, source or "")
        key = self._keys.get(cache_key)
        if key is None:
            key = _build_key(material)
            if len(self._keys) >= self.MAX:
                self._keys.clear()
            self._keys[cache_key] = key
        return key


def _build_key(material: KeyMaterial) -> Any:
    if material.alg == "ed25519":
        key = load_pem_public_key((material.public_key or "").encode())
        if not isinstance(key, Ed25519PublicKey):
            raise Unauthorized("The stored key is not an Ed25519 public key.")
        return key
    return base64.b64decode(material.secret or "")


def verify_request(
    *,
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    body: bytes,
    signed: SignedRequest,
    material: KeyMaterial,
    now: float,
    max_skew: int,
    keys: KeyCache,
    max_future: int | None = None,
    digest_checked: bool = False,
) -> VerifiedSignature:
    """Steps 2–6. ``headers`` must be a case-insensitive mapping (lower-case lookups).

    ``created`` may be up to ``max_skew`` seconds in the past and ``max_future`` (default: ``max_skew``)
    seconds in the future.
    """
    required = ["@method", "@target-uri"]
    if body or digest_checked:
        required.append("content-digest")
    missing = [c for c in required if c not in signed.components]
    if missing:
        raise Unauthorized(f"The signature must cover {', '.join(missing)}.")
    if abs(now - signed.created) > max_skew:
        raise Unauthorized(f"Signature 'created' is more than {max_skew} s away from the server clock.")
    if max_future is not None and signed.created - now > max_future:
        raise Unauthorized(f"Signature 'created' is more than {max_future} s ahead of the server clock.")
    if signed.expires is not None and signed.expires < now:
        raise Unauthorized("The signature has expired.")
    if signed.alg is not None and signed.alg != material.alg:
        raise Unauthorized(f"Signature 'alg' {signed.alg!r} does not match the key's algorithm.")
    if ("content-digest" in signed.components or body) and not digest_checked:
        _check_digest(headers.get("content-digest"), body)

    covered: dict[str, str] = {}
    lines = []
    for component in signed.components:
        value = _component_value(component, method=method, target_uri=target_uri, headers=headers)
        covered[component] = value
        lines.append(f'"{component}": {value}')
    lines.append(f'"@signature-params": {signed.params_value}')
    base = "\n".join(lines).encode()

    key = keys.key_for(material)
    if material.alg == "ed25519":
        try:
            key.verify(signed.signature, base)
        except InvalidSignature:
            raise Unauthorized("The signature does not verify.") from None
    else:
        expected = hmac.new(key, base, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signed.signature):
            raise Unauthorized("The signature does not verify.")

    kept = {name: headers[name] for name in ("signature-input", "signature", "content-digest") if name in headers}
    kept.update({k: v for k, v in covered.items() if not k.startswith("@")})
    return VerifiedSignature(
        keyid=material.keyid,
        partner_id=material.partner_id,
        alg=material.alg,
        nonce=signed.nonce,
        created=signed.created,
        method=method,
        target_uri=target_uri,
        headers=kept,
    )


def _check_digest(header: str | None, body: bytes) -> None:
    check_body_digest(header, hashlib.sha256(body).digest())


def check_body_digest(header: str | None, sha256: bytes) -> None:
    """The Content-Digest header (RFC 9530) must carry ``sha-256`` equal to the body's ``sha256``
    (401 otherwise): a body read whole, or one hashed as it streamed in (``tracker.web.uploads``)."""
    if not header:
        raise Unauthorized("Content-Digest is required when the request has a body.")
    try:
        parsed = http_sf.parse(header.encode(), tltype="dictionary")
    except Exception:
        raise Unauthorized("Malformed Content-Digest.") from None
    value = parsed.get("sha-256")
    if value is None:
        raise Unauthorized("Content-Digest must include sha-256.")
    if not isinstance(value[0], bytes) or not hmac.compare_digest(value[0], sha256):
        raise Unauthorized("Content-Digest does not match the body.")


def _component_value(component: str, *, method: str, target_uri: str, headers: Mapping[str, str]) -> str:
    if component not in _DERIVED:
        if component.startswith("@"):
            raise Unauthorized(f"Unsupported derived component {component}.")
        value = headers.get(component)
        if value is None:
            raise Unauthorized(f"Covered header {component!r} is missing.")
        return value.strip()
    if component == "@method":
        return method.upper()
    if component == "@target-uri":
        return target_uri
    scheme, _, rest = target_uri.partition("://")
    authority, slash, path_query = rest.partition("/")
    path, _, query = ("/" + path_query if slash else "/").partition("?")
    if component == "@authority":
        return authority.lower()
    if component == "@scheme":
        return scheme.lower()
    if component == "@path":
        return path
    if component == "@query":
        return "?" + query
    return path + ("?" + query if query else "")


def verify_stored(record: Mapping[str, Any], material: KeyMaterial, keys: KeyCache) -> None:
    """Re-check a signature kept with an event (``baton verify``); raises Unauthorized if it fails."""
    headers = {k.lower(): v for k, v in record["headers"].items()}
    signed = parse_signature_headers(headers)
    if record.get("body") is None:
        # The raw body was erased (GDPR): the signature still covers its Content-Digest, which stays.
        verify_request(
            method=record["method"], target_uri=record["target_uri"], headers=headers, body=b"",
            signed=signed, material=material, now=float(signed.created), max_skew=0, keys=keys, digest_checked=True,
        )
        return
    body = record["body"].encode("utf-8", errors="surrogateescape")
    verify_request(
        method=record["method"],
        target_uri=record["target_uri"],
        headers=headers,
        body=body,
        signed=signed,
        material=material,
        now=float(signed.created),
        max_skew=0,
        keys=keys,
    )


def decode_secret(secret_b64: str) -> bytes:
    try:
        return base64.b64decode(secret_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret must be base64") from None
