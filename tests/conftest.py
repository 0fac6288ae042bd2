"""Shared fixtures: real databases (SQLite and a throwaway PostgreSQL), the app, signed partners.

Each test that asks for ``db`` runs twice, once per backend. Databases are built by Alembic once
per run (a template), then copied per test: SQLite by file copy, PostgreSQL by
``CREATE DATABASE ... TEMPLATE``. In CI (``CI=true``) a missing PostgreSQL fails the run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from partners.client import BatonSigner
from tests.support.postgres import PostgresCluster, postgres_available
from tests.support.smtp import SMTPSink
from tests.support.twilio_double import TwilioDouble
from tests.support.webhook_receiver import LOCAL_RECEIVERS
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from kernel.db import make_engine, make_sessionmaker
from tracker.migrate import seed_case_types, upgrade

ADMIN_TOKEN = "test-admin-token-0123456789"
BASE_URL = "http://baton.test"
# The default Host allowlist and the test client's host (BATON_ALLOWED_HOSTS): apps without a public URL serve it.
ALLOWED_HOSTS = "127.0.0.1,localhost,[::1],baton.test"
IN_CI = os.environ.get("CI") == "true"
_counter = itertools.count()


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    if not postgres_available():
        if IN_CI:
            pytest.fail("PostgreSQL (initdb/pg_ctl) is required in CI; install the postgresql package.")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: install the postgresql package")
    with PostgresCluster() as cluster:
        yield cluster


async def _migrate(url: str) -> None:
    engine = make_engine(Settings(database_url=url))
    try:
        await upgrade(engine)
        async with make_sessionmaker(engine)() as session:
            await seed_case_types(session)
            await session.commit()
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster) -> str:
    url = pg_cluster.create_database("baton_template")
    asyncio.run(_migrate(url))
    return "baton_template"


@dataclass
class Database:
    backend: str
    url: str


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A freshly migrated database, on each backend in turn."""
    if request.param == "sqlite":
        path = tmp_path / "baton.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield Database("sqlite", f"sqlite+aiosqlite:///{path}")
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    template = request.getfixturevalue("pg_template")
    name = f"t{os.getpid()}_{next(_counter)}"
    url = cluster.create_database(name, template=template)
    yield Database("postgres", url)
    cluster.drop_database(name)


@pytest.fixture
def pg_db(pg_cluster: PostgresCluster, pg_template: str) -> Iterator[Database]:
    """A PostgreSQL database only, for what SQLite cannot show (concurrency across connections)."""
    name = f"t{os.getpid()}_{next(_counter)}"
    url = pg_cluster.create_database(name, template=pg_template)
    yield Database("postgres", url)
    pg_cluster.drop_database(name)


# ---------------------------------------------------------------- the machine's edge: real servers on 127.0.0.1


@pytest.fixture
def twilio() -> Iterator[TwilioDouble]:
    """Twilio's REST API, spoken over HTTP to the real twilio client."""
    with TwilioDouble() as double:
        yield double


@pytest.fixture
def smtp() -> Iterator[SMTPSink]:
    """A real SMTP server that keeps what it receives."""
    with SMTPSink() as sink:
        yield sink


# ---------------------------------------------------------------- the app


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC))


@pytest.fixture
def settings(db: Database, tmp_path: Path) -> Settings:
    return Settings(database_url=db.url, admin_token=ADMIN_TOKEN, public_base_url=None, workers_in_process=False,
                    allowed_hosts=ALLOWED_HOSTS, webhook_allow_hosts=LOCAL_RECEIVERS)


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock) -> AsyncIterator[Any]:
    from tracker.web.app import create_app

    application = create_app(settings, clock=clock)
    yield application
    await application.state.engine.dispose()


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield http


# ---------------------------------------------------------------- partners with keys


@dataclass
class PartnerKeys:
    partner_id: str
    keyid: str
    private_key: Ed25519PrivateKey
    hmac_keyid: str
    hmac_secret: str
    clock: FrozenClock

    @property
    def public_pem(self) -> str:
        return self.private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()

    def signer(self) -> BatonSigner:
        return BatonSigner.ed25519(self.keyid, self.private_key, clock=lambda: self.clock.now().timestamp())

    def hmac_signer(self) -> BatonSigner:
        return BatonSigner.hmac(self.hmac_keyid, self.hmac_secret, clock=lambda: self.clock.now().timestamp())


@dataclass
class World:
    """Partners registered through the API, each with an Ed25519 and an HMAC key."""

    client: httpx.AsyncClient
    clock: FrozenClock
    partners: dict[str, PartnerKeys] = field(default_factory=dict)

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def as_partner(self, partner_id: str, method: str, path: str, *, hmac: bool = False,
                         json_body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
        keys = self.partners[partner_id]
        auth = keys.hmac_signer() if hmac else keys.signer()
        kwargs: dict[str, Any] = {"auth": auth, "headers": headers or {}}
        if json_body is not None:
            kwargs["content"] = json.dumps(json_body).encode()
            kwargs["headers"] = {"content-type": "application/json", **kwargs["headers"]}
        return await self.client.request(method, path, **kwargs)

    async def as_admin(self, method: str, path: str, *, json_body: Any = None,
                       headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.request(method, path, json=json_body, headers={**self.admin, **(headers or {})})

    async def open_case(self, **overrides: Any) -> dict[str, Any]:
        body = case_body(**overrides)
        response = await self.as_admin("POST", "/v1/cases", json_body=body)
        assert response.status_code == 201, response.text
        return response.json()


def case_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "type": "baggage",
        "title": "Delayed bag, LH400 FRA-JFK then UA123",
        "customer": {"name": "Ada Lovelace", "phone": "+14155550100", "email": "ada@example.com",
                     "locale": "en", "timezone": "America/New_York"},
        "owner": "ua",
        "parties": [
            {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
            {"partner": "ua", "role": "owner"},
        ],
        "external_refs": {"worldtracer": "JFKUA12345", "bag_tag": "0016123456"},
    }
    body.update(overrides)
    return body


PARTNER_SPECS = [
    {"id": "lh", "name": "Lufthansa", "kind": "airline", "ops_email": "baggage-ops@lh.example",
     "ops_phone": "+4969123456", "webhook_url": "https://hooks.lh.example/baton", "default_cadence": "PT6H",
     "timezone": "Europe/Berlin"},
    {"id": "ua", "name": "United Airlines", "kind": "airline", "ops_email": "baggage@ua.example",
     "default_cadence": "PT6H", "timezone": "America/Chicago"},
    {"id": "swissport-fra", "name": "Swissport Frankfurt", "kind": "ground_handler", "timezone": "Europe/Berlin"},
    {"id": "fastcourier", "name": "FastCourier", "kind": "courier", "default_cadence": "PT4H"},
]


@pytest.fixture
async def world(client: httpx.AsyncClient, clock: FrozenClock) -> World:
    w = World(client=client, clock=clock)
    for spec in PARTNER_SPECS:
        response = await w.as_admin("POST", "/v1/partners", json_body=spec)
        assert response.status_code == 201, response.text
        private = Ed25519PrivateKey.generate()
        keys = PartnerKeys(spec["id"], f"{spec['id']}-ed", private, f"{spec['id']}-hmac", "", clock)
        response = await w.as_admin("POST", f"/v1/partners/{spec['id']}/keys",
                                    json_body={"keyid": keys.keyid, "alg": "ed25519", "public_key": keys.public_pem})
        assert response.status_code == 201, response.text
        response = await w.as_admin("POST", f"/v1/partners/{spec['id']}/keys",
                                    json_body={"keyid": keys.hmac_keyid, "alg": "hmac-sha256"})
        assert response.status_code == 201, response.text
        keys.hmac_secret = response.json()["secret"]
        w.partners[spec["id"]] = keys
    return w
