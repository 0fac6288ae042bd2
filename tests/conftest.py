"""Shared fixtures: real databases (SQLite and a throwaway PostgreSQL), the app, signed partners.

Each test that asks for ``db`` runs twice, once per backend. Databases are built by Alembic once
per run (a template), then copied per test: SQLite by file copy, PostgreSQL by
``CREATE DATABASE ... TEMPLATE``. In CI (``CI=true``) a missing PostgreSQL fails the run.

A test that asks for ``world`` gets a copy of a second template holding ``PARTNER_SPECS``, each
with an Ed25519 and an HMAC key, registered once per run through the API as each test used to
do (a dozen admin requests per test). The private halves stay in the session's
``SeededPartners``; ``world`` only builds the ``World`` around them. PostgreSQL copies are made
ahead by a background thread (``pg_copies``), and a test marked ``one_backend`` runs on SQLite only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
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
from tests.support.postgres import PostgresCluster, TemplateCopies, postgres_available
from tests.support.s3_server import S3Server, running_s3_server
from tests.support.smtp import SMTPSink
from tests.support.twilio_double import TwilioDouble
from tests.support.webhook_receiver import LOCAL_RECEIVERS
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from kernel.db import make_engine, make_sessionmaker
from partners.models import Partner, PartnerKey
from tracker.migrate import seed_case_types, upgrade

ADMIN_TOKEN = "test-admin-token-0123456789"
BASE_URL = "http://baton.test"
# The default Host allowlist and the test client's host (BATON_ALLOWED_HOSTS): apps without a public URL serve it.
ALLOWED_HOSTS = "127.0.0.1,localhost,[::1],baton.test"
IN_CI = os.environ.get("CI") == "true"
# The default clock's time, at which the seeded partners were registered.
SEEDED_AT = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    if not postgres_available():
        if IN_CI:
            pytest.fail("PostgreSQL (initdb/pg_ctl) is required in CI; install the postgresql package.")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: install the postgresql package")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3-protocol server on loopback (moto's server mode), one per run, for the S3 store's tests."""
    import contextlib

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_s3_server())
        except Exception as exc:  # ImportError (moto not installed), RuntimeError, OSError
            if IN_CI:
                pytest.fail(f"the S3 test server (moto) is required in CI and did not start: {exc!r}")
            pytest.skip(f"the S3 test server (moto) did not start: {exc!r}")
        yield server


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


@pytest.fixture(scope="session")
def pg_copies(pg_cluster: PostgresCluster, pg_template: str) -> TemplateCopies:
    """Copies of the template made while the test before runs: a copy costs the server ~0.1 s of CPU."""
    return pg_cluster.copies(pg_template, prefix=f"t{os.getpid()}")


@pytest.fixture(scope="session")
def pg_world_copies(pg_cluster: PostgresCluster, pg_world_template: str) -> TemplateCopies:
    return pg_cluster.copies(pg_world_template, prefix=f"w{os.getpid()}")


@dataclass
class Database:
    backend: str
    url: str


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, seeded: SeededPartners) -> Iterator[Database]:
    """A freshly migrated database, on each backend in turn; with the partners if the test has a ``world``."""
    with_world = "world" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "baton.db"
        template = "sqlite_world_template" if with_world else "sqlite_template"
        shutil.copy(request.getfixturevalue(template), path)
        database = Database("sqlite", f"sqlite+aiosqlite:///{path}")
        if with_world:
            seeded.databases[_where(database.url)] = "sqlite"
        yield database
        seeded.databases.pop(_where(database.url), None)
        return
    yield from _pg_database(request, seeded, with_world)


# For a test whose request is refused before any database is asked (body limits, JSON parsing, the
# schema): the answer cannot differ between backends, so SQLite alone gives it.
one_backend = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


@pytest.fixture
def pg_db(request: pytest.FixtureRequest, seeded: SeededPartners) -> Iterator[Database]:
    """A PostgreSQL database only, for what SQLite cannot show (concurrency across connections)."""
    yield from _pg_database(request, seeded, "world" in request.fixturenames)


def _pg_database(request: pytest.FixtureRequest, seeded: SeededPartners, with_world: bool) -> Iterator[Database]:
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    copies: TemplateCopies = request.getfixturevalue("pg_world_copies" if with_world else "pg_copies")
    name = copies.take()
    database = Database("postgres", cluster.dsn(name))
    if with_world:
        seeded.databases[_where(database.url)] = "postgres"
    yield database
    seeded.databases.pop(_where(database.url), None)
    # Nothing waits for the drop: the next test's database is a different name.
    cluster.drop_database(name, wait=False)


def _where(url: str) -> str:
    """A database URL without its driver: a test may reach the same database through psycopg."""
    return url.partition("://")[2]


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
                    allowed_hosts=ALLOWED_HOSTS, webhook_allow_hosts=LOCAL_RECEIVERS,
                    storage_url=f"file:{tmp_path / 'attachments'}")


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
    {"id": "fastcourier", "name": "FastCourier", "kind": "courier", "default_cadence": "PT4H",
     "delivery_slots": ["09:00-12:00", "18:00-20:00"]},
]


@dataclass
class SeededPartners:
    """The partners' keys for the whole run, and which databases already hold them.

    Ed25519 keys are derived from the partner id, so every run (and every backend) uses the same
    ones; HMAC secrets are Baton's to generate, so they are kept per backend as registration
    answered them.
    """

    private_keys: dict[str, Ed25519PrivateKey]
    hmac_secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # backend -> partner -> secret
    databases: dict[str, str] = field(default_factory=dict)  # database URL without driver -> backend

    def keys(self, backend: str, clock: FrozenClock) -> dict[str, PartnerKeys]:
        return {
            spec["id"]: PartnerKeys(spec["id"], f"{spec['id']}-ed", self.private_keys[spec["id"]],
                                    f"{spec['id']}-hmac", self.hmac_secrets[backend][spec["id"]], clock)
            for spec in PARTNER_SPECS
        }


async def register_partners(w: World, private_keys: dict[str, Ed25519PrivateKey]) -> None:
    """Register ``PARTNER_SPECS`` through the API, each with an Ed25519 and an HMAC key, into ``w.partners``."""
    for spec in PARTNER_SPECS:
        response = await w.as_admin("POST", "/v1/partners", json_body=spec)
        assert response.status_code == 201, response.text
        keys = PartnerKeys(spec["id"], f"{spec['id']}-ed", private_keys[spec["id"]], f"{spec['id']}-hmac", "", w.clock)
        response = await w.as_admin("POST", f"/v1/partners/{spec['id']}/keys",
                                    json_body={"keyid": keys.keyid, "alg": "ed25519", "public_key": keys.public_pem})
        assert response.status_code == 201, response.text
        response = await w.as_admin("POST", f"/v1/partners/{spec['id']}/keys",
                                    json_body={"keyid": keys.hmac_keyid, "alg": "hmac-sha256"})
        assert response.status_code == 201, response.text
        keys.hmac_secret = response.json()["secret"]
        w.partners[spec["id"]] = keys


async def _seed(url: str, private_keys: dict[str, Ed25519PrivateKey]) -> dict[str, str]:
    from tracker.web.app import create_app

    settings = Settings(database_url=url, admin_token=ADMIN_TOKEN, public_base_url=None, workers_in_process=False,
                        allowed_hosts=ALLOWED_HOSTS, webhook_allow_hosts=LOCAL_RECEIVERS)
    application = create_app(settings, clock=FrozenClock(SEEDED_AT))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE_URL) as http:
            w = World(client=http, clock=FrozenClock(SEEDED_AT))
            await register_partners(w, private_keys)
    finally:
        # A template must have no connections left, or PostgreSQL refuses to copy it.
        await application.state.engine.dispose()
    return {partner_id: keys.hmac_secret for partner_id, keys in w.partners.items()}


@pytest.fixture(scope="session")
def seeded() -> SeededPartners:
    return SeededPartners({
        spec["id"]: Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"baton-test:{spec['id']}".encode()).digest())
        for spec in PARTNER_SPECS
    })


@pytest.fixture(scope="session")
def sqlite_world_template(sqlite_template: Path, seeded: SeededPartners) -> Path:
    path = sqlite_template.with_name("world.db")
    shutil.copy(sqlite_template, path)
    seeded.hmac_secrets["sqlite"] = asyncio.run(_seed(f"sqlite+aiosqlite:///{path}", seeded.private_keys))
    return path


@pytest.fixture(scope="session")
def pg_world_template(pg_cluster: PostgresCluster, pg_template: str, seeded: SeededPartners) -> str:
    url = pg_cluster.create_database("baton_world", template=pg_template)
    seeded.hmac_secrets["postgres"] = asyncio.run(_seed(url, seeded.private_keys))
    return "baton_world"


@pytest.fixture
async def world(app: Any, client: httpx.AsyncClient, clock: FrozenClock, seeded: SeededPartners) -> World:
    w = World(client=client, clock=clock)
    backend = seeded.databases.get(_where(app.state.runtime.settings.database_url))
    if backend is None:  # a database the db fixtures did not make
        await register_partners(w, seeded.private_keys)
        return w
    w.partners = seeded.keys(backend, clock)
    if clock.now() != SEEDED_AT:  # as if registered by this test, on its own clock
        async with app.state.engine.begin() as connection:
            await connection.execute(Partner.__table__.update().values(created_at=clock.now()))
            await connection.execute(PartnerKey.__table__.update().values(created_at=clock.now()))
    return w


def worker_for(world: World, settings: Settings) -> Any:
    """A worker (watchdog + dispatcher) on the app under test's database and clock, sending with
    ``settings``' transports (a test's own settings: its Twilio double, its SMTP sink)."""
    from tracker.worker import Worker

    app = world.client._transport.app  # type: ignore[attr-defined]
    return Worker(sessionmaker=app.state.runtime.sessionmaker, clock=world.clock, settings=settings)


@pytest.fixture
async def worker(world: World, settings: Settings) -> AsyncIterator[Any]:
    w = worker_for(world, settings)
    yield w
    await w.close()
