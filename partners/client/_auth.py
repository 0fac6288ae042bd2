"""RFC 9421 request signing as an ``httpx.Auth``, per Baton's partner-signature contract.

Signing lives in ``auth_flow`` so that httpx runs it for every request it sends, including each
retry: a retried request gets a fresh ``created`` and ``nonce``, which Baton's replay check
demands. ``auth_flow`` does no I/O, so the same signer serves ``httpx.Client`` and
``httpx.AsyncClient``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac as stdlib_hmac
import os
import secrets
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Literal

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._keys import is_pem, load_private_key

Algorithm = Literal["ed25519", "hmac-sha256"]
ALGORITHMS: tuple[Algorithm, ...] = ("ed25519", "hmac-sha256")
SIGNATURE_LABEL = "baton"


def new_nonce() -> str:
    """16 random bytes, url-safe base64 without padding, as the contract requires."""
    return secrets.token_urlsafe(16)


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` field value for a body."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode('ascii')}:"


def _sf_string(value: str) -> str:
    """Serialize an RFC 8941 String, refusing what the format cannot carry."""
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"{value!r} is not printable ASCII and cannot be a structured-field string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class BatonSigner(httpx.Auth):
    """Signs each request with ``Signature-Input``/``Signature`` (and ``Content-Digest`` for bodies).

    Build one with ``BatonSigner.ed25519(...)``, ``BatonSigner.hmac(...)`` or
    ``BatonSigner.from_key_file(...)``; pass it as ``auth=`` to an httpx client or to
    ``BatonClient``.
    """

    # The digest covers the body, so httpx must have it in memory before auth_flow runs.
    requires_request_body = True

    def __init__(
        self,
        *,
        keyid: str,
        alg: Algorithm,
        sign: Callable[[bytes], bytes],
        clock: Callable[[], float] = time.time,
        nonce_factory: Callable[[], str] = new_nonce,
    ) -> None:
        _sf_string(keyid)  # fail now, not on the first request
        self.keyid = keyid
        self.alg = alg
        self._sign = sign
        self._clock = clock
        self._nonce_factory = nonce_factory

    @classmethod
    def ed25519(
        cls,
        keyid: str,
        private_key: Ed25519PrivateKey | bytes | str,
        *,
        clock: Callable[[], float] = time.time,
        nonce_factory: Callable[[], str] = new_nonce,
    ) -> BatonSigner:
        """A signer holding an Ed25519 private key (a key object, or its PEM)."""
        key = private_key if isinstance(private_key, Ed25519PrivateKey) else load_private_key(private_key)
        return cls(keyid=keyid, alg="ed25519", sign=key.sign, clock=clock, nonce_factory=nonce_factory)

    @classmethod
    def hmac(
        cls,
        keyid: str,
        secret_b64: str | bytes,
        *,
        clock: Callable[[], float] = time.time,
        nonce_factory: Callable[[], str] = new_nonce,
    ) -> BatonSigner:
        """A signer for a shared HMAC-SHA256 secret, given base64 as Baton hands it out."""
        try:
            secret = base64.b64decode(secret_b64, validate=True)
        except ValueError as exc:
            raise ValueError("the HMAC secret is not valid base64 (standard alphabet)") from exc
        if not secret:
            raise ValueError("the HMAC secret is empty")

        def sign(base: bytes) -> bytes:
            return stdlib_hmac.new(secret, base, hashlib.sha256).digest()

        return cls(keyid=keyid, alg="hmac-sha256", sign=sign, clock=clock, nonce_factory=nonce_factory)

    @classmethod
    def from_key_file(
        cls,
        keyid: str,
        path: str | os.PathLike[str],
        *,
        alg: str | None = None,
        clock: Callable[[], float] = time.time,
        nonce_factory: Callable[[], str] = new_nonce,
    ) -> BatonSigner:
        """A signer from a file holding either an Ed25519 PEM private key or a base64 HMAC secret.

        The algorithm is read from the content; ``alg``, when given, must agree with it, so a
        misplaced file is reported instead of producing signatures Baton will reject.
        """
        material = Path(path).read_bytes()
        detected: Algorithm = "ed25519" if is_pem(material) else "hmac-sha256"
        if alg is not None and alg not in ALGORITHMS:
            raise ValueError(f"unsupported alg {alg!r}; expected one of {', '.join(ALGORITHMS)}")
        if alg is not None and alg != detected:
            raise ValueError(f"{path} holds a {detected} key, not {alg}")
        if detected == "ed25519":
            return cls.ed25519(keyid, material, clock=clock, nonce_factory=nonce_factory)
        return cls.hmac(keyid, material.strip(), clock=clock, nonce_factory=nonce_factory)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign the request as it is about to be sent; runs again for every retry."""
        self.sign_request(request)
        yield request

    def sign_request(self, request: httpx.Request) -> None:
        """Add the signature headers to a request whose body is already in memory.

        1. With a body, set ``Content-Digest`` and cover it; an empty body has nothing to cover.
        2. Serialize the signature parameters: components, ``created``, ``keyid``, ``nonce``, ``alg``.
        3. Build the RFC 9421 signature base: one ``"name": value`` line per component, then
           ``"@signature-params"``.
        4. Sign the base and set ``Signature-Input`` and ``Signature`` under the ``baton`` label.
        """
        components = {"@method": request.method, "@target-uri": str(request.url)}
        if request.content:
            digest = content_digest(request.content)
            request.headers["Content-Digest"] = digest
            components["content-digest"] = digest

        inner_list = "(" + " ".join(_sf_string(name) for name in components) + ")"
        params = (
            f";created={int(self._clock())}"
            f";keyid={_sf_string(self.keyid)}"
            f";nonce={_sf_string(self._nonce_factory())}"
            f";alg={_sf_string(self.alg)}"
        )
        signature_params = inner_list + params

        lines = [f"{_sf_string(name)}: {value}" for name, value in components.items()]
        lines.append(f'"@signature-params": {signature_params}')
        signature = self._sign("\n".join(lines).encode("ascii"))

        request.headers["Signature-Input"] = f"{SIGNATURE_LABEL}={signature_params}"
        request.headers["Signature"] = f"{SIGNATURE_LABEL}=:{base64.b64encode(signature).decode('ascii')}:"
