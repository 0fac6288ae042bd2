"""Baton's partner-side client: sign requests, post updates and bag scans, pass and accept
custody, attach evidence, deliver, file and answer compensation claims, and take evidence bundles.

It depends on nothing of the Baton server, so a partner can install and ship it alone::

    from decimal import Decimal

    from partners.client import BatonClient, BatonSigner

    signer = BatonSigner.from_key_file("lh-2026-11", "lh.key")
    with BatonClient("https://baton.example", signer) as baton:
        baton.post_update("BAG-7KQ3X9M", status="located", message="Your bag is in Frankfurt.")
        baton.attach("BAG-7KQ3X9M", "bag.jpg", kind="photo", note="Bag found at FRA belt 3")
        baton.upload_scans("scans-2026-11-03.csv")
        baton.file_claim("BAG-7KQ3X9M", kind="interim_expenses", items=[("Toiletries", Decimal("12.50"), "EUR")])
"""

from ._auth import BatonSigner
from ._client import AsyncBatonClient, BatonClient
from ._exceptions import (
    BatonAPIError,
    BatonAuthError,
    BatonConflict,
    BatonError,
    BatonNotFound,
    BatonTransportError,
)
from ._keys import generate_ed25519_keypair, load_private_key, public_key_pem

__all__ = [
    "AsyncBatonClient",
    "BatonAPIError",
    "BatonAuthError",
    "BatonClient",
    "BatonConflict",
    "BatonError",
    "BatonNotFound",
    "BatonSigner",
    "BatonTransportError",
    "generate_ed25519_keypair",
    "load_private_key",
    "public_key_pem",
]
