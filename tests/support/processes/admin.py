"""Staff calls to a running server: register partners and open cases with the admin token."""

from __future__ import annotations

from typing import Any, Self

import httpx

__all__ = ["Admin"]


class Admin:
    """Staff calls to a running server with the ``BATON_ADMIN_TOKEN`` it was given."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=15.0, trust_env=False,
                                 headers={"Authorization": f"Bearer {token}"})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.http.close()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        if response.status_code not in (200, 201):
            raise AssertionError(f"POST {path}: {response.status_code} {response.text}")
        return response.json()

    def partner(self, spec: dict[str, Any]) -> tuple[str, str]:
        """Register a partner with an Ed25519 key; returns ``(keyid, private key PEM)``."""
        from partners.client import generate_ed25519_keypair

        self.post("/v1/partners", spec)
        private_pem, public_pem = generate_ed25519_keypair()
        keyid = f"{spec['id']}-ed-1"
        self.post(f"/v1/partners/{spec['id']}/keys",
                  {"keyid": keyid, "alg": "ed25519", "public_key": public_pem.decode()})
        return keyid, private_pem.decode()

