"""Ed25519 key handling for partners.

Ed25519 is the recommended algorithm: the partner keeps the private key and Baton stores only
the public key, so nobody with access to Baton's database can forge a partner's update.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_PEM_MARKER = b"-----BEGIN"


def generate_ed25519_keypair() -> tuple[bytes, bytes]:
    """A fresh key pair as ``(private_pem, public_pem)``: PKCS#8 and SubjectPublicKeyInfo PEM."""
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    return private_pem, public_key_pem(private_key)


def is_pem(material: bytes) -> bool:
    """Whether key material is PEM, as opposed to a base64 HMAC secret."""
    return _PEM_MARKER in material


def load_private_key(path_or_pem: str | bytes | os.PathLike[str]) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM text, or from the path of a file holding it."""
    if isinstance(path_or_pem, bytes):
        pem = path_or_pem
    elif isinstance(path_or_pem, str) and path_or_pem.lstrip().startswith("-----BEGIN"):
        pem = path_or_pem.encode("ascii")
    else:
        pem = Path(path_or_pem).read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"expected an Ed25519 private key, got {type(key).__name__}")
    return key


def public_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    """The PEM public key to register with Baton (``POST /v1/partners/{id}/keys``)."""
    return private_key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
