"""Fixtures every partner-client test file shares: keys, and a CLI runner with a key file."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from partners.client.cli import app


@pytest.fixture
def ed25519_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def hmac_secret() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def key_file(tmp_path: Path, runner: CliRunner) -> Path:
    """A fresh Ed25519 private key written by ``baton-partner keygen``."""
    path = tmp_path / "partner.key"
    result = runner.invoke(app, ["keygen", "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path
