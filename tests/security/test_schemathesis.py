"""Schemathesis against the app's own OpenAPI document: no 5xx, and every answer is documented.

The app runs in-process (ASGI). Schemathesis generates requests for every operation from the
document the app serves at ``/openapi.json``, and each answer must be

- no server error (``not_a_server_error``),
- a documented status code (``status_code_conformance``),
- of a documented content type (``content_type_conformance``),
- valid against the documented schema of that status (``response_schema_conformance``),
- and a request that breaks the schema is refused (``negative_data_rejection``).

Callers: every ``/v1`` operation is fuzzed twice, as an admin (staff Bearer token) and as the
partner ``lh`` (each request signed with RFC 9421 by ``partners.client.BatonSigner``, against the
app's FrozenClock); the customer's ``/v1/status/{token}``, the health and metrics endpoints
anonymously; Twilio's webhooks with a valid ``X-Twilio-Signature``. So the fuzzer gets past
authentication and reaches the handlers.

Each (operation, caller) gets a fixed budget of examples, all deterministic (``derandomize``):

    real     valid requests whose path parameters name real things (a case, a handoff, a dead
             webhook delivery, a partner's key), so handlers run to the end
    free     valid requests with generated path parameters
    invalid  requests that break the schema (negative mode): they must be refused, with a documented 4xx

Destructive operations get their own objects (closing and rotating the link use a spare case;
revoking a key uses a key nobody signs with). The FrozenClock moves 5 seconds per request, as time
passes between a real client's requests, so that per-address rate limits measure something real
instead of tripping on a frozen instant. Failures are collected over the whole run and reported
together, with a curl line to reproduce each; the number of requests made is printed.
"""

from __future__ import annotations

import collections
import datetime as dt
import io
import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

if os.environ.get("CI") == "true":
    import schemathesis  # in CI the suite must not skip it quietly
else:
    schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (see requirements.lock)")

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from twilio.request_validator import RequestValidator

from partners.client import BatonSigner
from tests.conftest import ADMIN_TOKEN, PARTNER_SPECS, Database
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from tracker.web.app import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
BUDGET = {"real": 8, "free": 5, "invalid": 5}  # examples per (operation, caller)
TWILIO_TOKEN = "twilio-auth-token-for-schemathesis"
STEP = dt.timedelta(seconds=5)  # the clock moves this much per request


class Signed(requests.auth.AuthBase):
    """Sign the request exactly as prepared (URL and body bytes), as a partner's client would."""

    def __init__(self, signer: BatonSigner) -> None:
        self.signer = signer

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        body = prepared.body or b""
        view = _Request(prepared.method or "GET", prepared.url or "", body.encode() if isinstance(body, str) else body)
        self.signer.sign_request(view)  # type: ignore[arg-type]  # duck-typed: method, url, content, headers
        prepared.headers.update(view.headers)
        return prepared


class TwilioSigned(requests.auth.AuthBase):
    """``X-Twilio-Signature`` over the URL and form fields, as Twilio signs its webhooks."""

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        body = prepared.body or ""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        form = dict(requests.compat.parse_qsl(text, keep_blank_values=True)) if "=" in text else {}
        prepared.headers["X-Twilio-Signature"] = RequestValidator(TWILIO_TOKEN).compute_signature(
            prepared.url or "", form
        )
        return prepared


class _Request:
    def __init__(self, method: str, url: str, content: bytes) -> None:
        self.method, self.url, self.content, self.headers = method, url, content, {}


class Client(asgi.ASGIClient):
    """Schemathesis's in-process client; counts what it sends and moves the clock between requests."""

    def __init__(self, app: Any, clock: FrozenClock, tally: collections.Counter[str]) -> None:
        super().__init__(app)
        self.clock = clock
        self.tally = tally

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.clock.advance(seconds=STEP.total_seconds())
        self.tally["requests"] += 1
        return super().send(request, **kwargs)


class Rig:
    """The app, its data, and one client per caller, all on schemathesis's event loop."""

    def __init__(self, database: Database) -> None:
        self.clock = FrozenClock(dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
        settings = Settings(database_url=database.url, admin_token=ADMIN_TOKEN, workers_in_process=False,
                            twilio_account_sid="AC" + "0" * 32, twilio_auth_token=TWILIO_TOKEN,
                            twilio_from="+15005550006", allowed_hosts="testserver,localhost",
                            webhook_allow_hosts="127.0.0.1")
        self.app = create_app(settings, clock=self.clock)
        self.tally: collections.Counter[str] = collections.Counter()
        self.keys: dict[str, Ed25519PrivateKey] = {}
        self.clients: dict[str, Client] = {}

    def client(self, caller: str) -> Client:
        if caller not in self.clients:
            client = Client(self.app, self.clock, self.tally)
            client.__enter__()
            if caller == "admin":
                client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
            elif caller == "lh":
                client.auth = Signed(BatonSigner.ed25519("lh-ed", self.keys["lh"],
                                                         clock=lambda: self.clock.now().timestamp()))
            elif caller == "twilio":
                client.auth = TwilioSigned()
            self.clients[caller] = client
        return self.clients[caller]

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self.client("admin").request(method, path, json=body)
        assert response.status_code in (200, 201), f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def seed(self) -> dict[str, Any]:
        """Partners with keys, two cases, a handoff, a dead webhook delivery: real path parameters."""
        for spec in PARTNER_SPECS:
            self.admin("POST", "/v1/partners", spec)
            key = self.keys[spec["id"]] = Ed25519PrivateKey.generate()
            pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
            self.admin("POST", f"/v1/partners/{spec['id']}/keys",
                       {"keyid": f"{spec['id']}-ed", "alg": "ed25519", "public_key": pem})
        body = {"type": "baggage", "title": "Delayed bag, LH400 FRA-JFK then UA123", "owner": "ua",
                "customer": {"name": "Ada Lovelace", "phone": "+14155550100", "email": "ada@example.com",
                             "locale": "en", "timezone": "America/New_York"},
                "parties": [{"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
                            {"partner": "ua", "role": "owner"}, {"partner": "swissport-fra", "role": "handler"}],
                "external_refs": {"worldtracer": "JFKUA12345"}}
        case = self.admin("POST", "/v1/cases", body)
        spare = self.admin("POST", "/v1/cases", body)
        handoff = self.admin("POST", f"/v1/cases/{case['ref']}/handoffs", {"to": "ua", "from": "lh"})
        # lh opens a case of its own and names two partners, who are invited until they answer.
        invites = {**body, "owner": "lh", "parties": [{"partner": "ua", "role": "carrier"},
                                                      {"partner": "swissport-fra", "role": "handler"}]}
        opened = self.client("lh").request("POST", "/v1/cases", json=invites)
        assert opened.status_code == 201, opened.text
        image = io.BytesIO()
        Image.new("RGB", (64, 48), "teal").save(image, "PNG")
        attached = self.client("admin").request("POST", f"/v1/cases/{case['ref']}/attachments",
                                                files={"file": ("p.png", image.getvalue(), "image/png")},
                                                data={"kind": "photo"})
        assert attached.status_code == 201, attached.text
        # Two cases with FastCourier as courier: one whose delivery is asked (to read, change and
        # accept), one out for delivery (its proof, with the PIN the customer was given).
        couriered = {**body, "parties": [*body["parties"], {"partner": "fastcourier", "role": "courier"}]}
        delivery_ref = self.admin("POST", "/v1/cases", couriered)["ref"]
        self.admin("PUT", f"/v1/cases/{delivery_ref}/delivery", {"collect_at": "JFK"})
        proof_ref = self.admin("POST", "/v1/cases", couriered)["ref"]
        self.admin("PUT", f"/v1/cases/{proof_ref}/delivery", {"collect_at": "JFK"})
        self.admin("POST", f"/v1/cases/{proof_ref}/delivery/accept", {})
        self.admin("POST", f"/v1/cases/{proof_ref}/events", {"status": "out_for_delivery"})
        SEEDED_PIN["pin"] = asgi._get_portal().call(self._pin, proof_ref)
        shirt = {"kind": "interim_expenses", "items": [{"description": "A shirt", "amount": "34.10", "currency": "USD"}]}
        claim = self.admin("POST", f"/v1/cases/{case['ref']}/claims", shirt)
        approved = self.admin("POST", f"/v1/cases/{case['ref']}/claims", shirt)
        self.admin("POST", f"/v1/cases/{case['ref']}/claims/{approved['id']}/decision",
                   {"decision": "approved", "amount": "34.10", "currency": "USD", "reason": "Receipt seen"})
        # Joining partners: a fresh invitation link (its key is registered once), and two setup
        # links past that step (one to finish), their webhook a closed loopback port (refused at once).
        fresh = self._invitation()
        setups = [self.client("admin").request("POST", f"/v1/join/{self._invitation()}/keys",
                                               json={"alg": "hmac-sha256"}).json()["setup_token"] for _ in range(2)]
        for setup in setups:
            self.client("admin").request("PUT", f"/v1/join/{setup}/webhook", json={"url": "http://127.0.0.1:9/baton"})
        # A case whose carrier lh is late (a cadence passed, the watchdog ran): it may acknowledge.
        late_ref = self.admin("POST", "/v1/cases", {**body, "parties": [
            {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT1H"},
            {"partner": "ua", "role": "owner"}]})["ref"]
        self.clock.advance(hours=1, minutes=1)
        asgi._get_portal().call(self._sweep)
        SEEDED_CLOCK["clock"] = self.clock
        dead = self.admin("GET", "/v1/webhook-deliveries?partner=lh")["items"][0]["id"]
        asgi._get_portal().call(self._dead_letter, dead)
        return {
            "ref": case["ref"], "token": case["status_url"].rsplit("/", 1)[1], "handoff_id": handoff["id"],
            "partner_id": "lh", "delivery_id": dead, "spare_ref": spare["ref"], "invite_ref": opened.json()["ref"],
            "attachment_id": attached.json()["id"], "delivery_ref": delivery_ref, "proof_ref": proof_ref,
            "claim_id": claim["id"], "approved_claim_id": approved["id"],
            "late_ref": late_ref, "join_token": fresh, "setup_token": setups[0],
            "finish_token": setups[1],
        }

    def _invitation(self) -> str:
        invited = self.admin("POST", "/v1/partner-invitations",
                             {"partner": {"id": f"joiner-{next(_serial)}", "name": "Joiner Ltd", "kind": "courier"}})
        return invited["url"].rsplit("/", 1)[1]

    async def _pin(self, ref: str) -> str:
        from sqlalchemy import select

        from tracker.models import Case, Delivery

        async with self.app.state.runtime.sessionmaker() as session:
            return await session.scalar(select(Delivery.pin).join(Case, Case.id == Delivery.case_id)
                                        .where(Case.ref == ref))

    async def _sweep(self) -> None:
        from tracker.watchdog import Watchdog, WatchdogConfig

        await Watchdog(sessionmaker=self.app.state.runtime.sessionmaker, clock=self.clock,
                       config=WatchdogConfig()).sweep()

    async def _dead_letter(self, delivery_id: int) -> None:
        from sqlalchemy import update

        from notifications.models import Notification

        async with self.app.state.runtime.sessionmaker() as session:
            await session.execute(update(Notification).where(Notification.id == delivery_id)
                                  .values(state="dead", next_attempt_at=None))
            await session.commit()

    def close(self) -> None:
        for client in self.clients.values():
            client.__exit__(None, None, None)
        asgi.shutdown_lifespans()  # the app's lifespan disposes its engine, on the loop that made it


def callers_of(path: str) -> list[str]:
    if path.startswith("/hooks/twilio/"):
        return ["twilio"]
    if path.startswith("/v1/") and not path.startswith("/v1/status/"):
        return ["admin", "lh"]
    return ["anonymous"]


def real_parameters(operation: Any, seeded: dict[str, Any]) -> dict[str, Any]:
    names = {p.name for p in operation.path_parameters}
    values = dict(seeded)
    if operation.label in ("POST /v1/cases/{ref}/close", "POST /v1/cases/{ref}/status-link"):
        values["ref"] = seeded["spare_ref"]  # the main case stays open and keeps its link
    if operation.label == "PATCH /v1/cases/{ref}/parties/{partner_id}":
        values["partner_id"] = "swissport-fra"  # may release it; lh stays to be nudged
    if operation.label.startswith("POST /v1/cases/{ref}/parties/{partner_id}/") and \
            operation.label.endswith(("/accept", "/decline")):
        values.update(ref=seeded["invite_ref"], partner_id="ua" if operation.label.endswith("/accept") else
                      "swissport-fra")
    values.update(dataset="events", format="csv")  # GET /v1/exports/{dataset}.{format}
    if operation.label == "POST /v1/cases/{ref}/parties/{partner_id}/ack":
        values.update(ref=seeded["late_ref"], partner_id="lh")
    if operation.label.endswith("/paid"):
        values["claim_id"] = seeded["approved_claim_id"]
    if "/delivery" in operation.label:
        values["ref"] = seeded["proof_ref" if operation.label.endswith("/proof") else "delivery_ref"]
    if operation.label.startswith(("GET /v1/join/", "PUT /v1/join/", "POST /v1/join/")):
        values["token"] = seeded["join_token" if operation.label.endswith("/keys") else
                                 "finish_token" if operation.label.endswith("/finish") else "setup_token"]
    if operation.label == "DELETE /v1/partners/{partner_id}/keys/{keyid}":
        values.update(partner_id="swissport-fra", keyid="swissport-fra-ed")  # nobody here signs with it
    return {name: values[name] for name in names}


_serial = itertools.count(1)
SEEDED_PIN: dict[str, str] = {}  # the PIN of the seeded case out for delivery
SEEDED_CLOCK: dict[str, FrozenClock] = {}  # the app's clock, for bodies that name a time ahead of it
_PNG = io.BytesIO()
Image.new("RGB", (32, 24), "teal").save(_PNG, "PNG")


def real_body(label: str) -> Any:
    """For the "real" run: name real partners and a real case type in generated bodies, so that
    more than validation runs. Everything else in the body stays generated."""

    def fix(case: Any) -> Any:
        body = case.body
        if not isinstance(body, dict):
            return case
        if label == "POST /v1/cases":
            body.update(type="baggage", owner="ua")
            parties = [p for p in body.get("parties", []) if isinstance(p, dict)]
            body["parties"] = [{**p, "partner": partner} for p, partner in zip(parties, ("lh", "swissport-fra"))]
            body.pop("status", None)
            if isinstance(body.get("customer"), dict):
                body["customer"].update(phone="+14155550100", email="ada@example.com", timezone="Europe/Berlin")
        elif label == "POST /v1/cases/{ref}/parties":
            body["partner"] = "fastcourier"
        elif label == "POST /v1/cases/{ref}/events":
            body.pop("occurred_at", None)  # a generated instant is as likely in the future as not
            body.pop("next_update_by", None)
            if "status" in body:
                body["status"] = "located"
        elif label == "POST /v1/cases/{ref}/close":
            body.pop("status", None)  # default: closed
        elif label == "POST /v1/partners":
            body.update(id=f"fuzz-{next(_serial)}", timezone="Europe/Berlin")
            for field, value in (("ops_email", "ops@partner.example"), ("ops_phone", "+4969123456"),
                                 ("webhook_url", "https://hooks.partner.example/baton")):
                if body.get(field) is not None:
                    body[field] = value
            body.pop("webhook_secret", None)
            body.pop("calendar", None)
        elif label == "PATCH /v1/partners/{partner_id}":
            body.clear()
            body.update(duty_email="duty@partner.example", duty_phone="+4969123499")
        elif label == "POST /v1/partners/{partner_id}/keys":
            body.update(keyid=f"fuzz-key-{next(_serial)}", alg="hmac-sha256")
            body.pop("public_key", None)
        elif label == "POST /v1/cases/{ref}/attachments":
            body.update(file=_PNG.getvalue(), kind="photo")
            body.pop("visibility", None)
        elif label == "PUT /v1/cases/{ref}/delivery":
            body.clear()
            body["collect_at"] = "JFK"
        elif label == "POST /v1/cases/{ref}/delivery/proof":
            body.clear()
            body["pin"] = SEEDED_PIN.get("pin", "0000")
        elif label == "POST /v1/scans":
            body.clear()
            body["scans"] = [{"bag_tag": f"0098{next(_serial):06d}", "at": "2026-11-02T08:00:00+00:00",
                              "station": "FRA", "point": "transfer"}]
        elif label == "POST /v1/cases/{ref}/claims":
            body["kind"] = "delay"
            body["items"] = [{"description": "Taxi", "amount": "22.50", "currency": "EUR"}]
        elif label == "POST /v1/cases/{ref}/claims/{claim_id}/decision":
            body.clear()
            body.update(decision="rejected", reason="No receipt")
        elif label == "POST /v1/cases/{ref}/parties/{partner_id}/ack":
            body.clear()
            body.update(reason="Held in customs at JFK",
                        until=(SEEDED_CLOCK["clock"].now() + dt.timedelta(hours=3)).isoformat())
        elif label == "POST /v1/partner-invitations":
            body.clear()
            body["partner"] = {"id": f"fuzz-joiner-{next(_serial)}", "name": "Fuzz Joiner", "kind": "courier"}
        elif label == "POST /v1/join/{token}/keys":
            body.clear()
            body["alg"] = "hmac-sha256"
        elif label == "PUT /v1/join/{token}/webhook":
            body.clear()
            body["url"] = "http://127.0.0.1:9/baton"
        elif label == "POST /v1/cases/{ref}/handoffs":
            body["to"] = "ua"  # from the staff caller: no sender; from lh: its own custody
            body.pop("from", None)
        return case

    return fix


def _fuzz(strategy: Any, examples: int, client: Client, label: str,
          statuses: collections.Counter[tuple[str, int]], failures: dict[str, str]) -> None:
    """Send ``examples`` generated requests; keep every check failure (with its curl line) under ``label``."""

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        response = case.call(session=client)
        statuses[(label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as failure:  # schemathesis raises a FailureGroup (an ExceptionGroup)
            if isinstance(failure, (KeyboardInterrupt, SystemExit)):
                raise
            failures.setdefault(f"{label}: {type(failure).__name__}", str(failure)[:1500])

    fuzz()


@pytest.fixture
def rig(db: Database) -> Iterator[Rig]:
    rig = Rig(db)
    try:
        yield rig
    finally:
        rig.close()


def test_fuzzed_requests_to_every_operation_get_documented_answers_and_never_a_5xx(
    rig: Rig, capsys: pytest.CaptureFixture[str], db: Database
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", rig.app)
    seeded = rig.seed()
    operations = [result.ok() for result in schema.get_all_operations()]
    failures: dict[str, str] = {}
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()  # (operation as caller (run), code)
    fuzzed = 0

    for operation in operations:
        for caller in callers_of(operation.path):
            client = rig.client(caller)
            real = operation.as_strategy(path_parameters=real_parameters(operation, seeded))
            runs = {"real": real.map(real_body(operation.label)),
                    "free": operation.as_strategy(),
                    "invalid": operation.as_strategy(GenerationMode.NEGATIVE)}
            if not operation.path_parameters and operation.label not in ("POST /v1/cases", "POST /v1/partners",
                                                                         "POST /v1/scans",
                                                                         "POST /v1/partner-invitations"):
                del runs["real"]
            for run, strategy in runs.items():
                before = rig.tally["requests"]
                try:
                    _fuzz(strategy, BUDGET[run], client, f"{operation.label} as {caller} ({run})", statuses, failures)
                except Unsatisfiable:
                    # Nothing to break: no parameters and no body (e.g. GET /healthz).
                    assert run == "invalid", f"{operation.label} ({run}) generated nothing"
                fuzzed += 1 if rig.tally["requests"] > before else 0

    requests_made = rig.tally["requests"]
    with capsys.disabled():
        print(f"\nschemathesis [{db.backend}]: {requests_made} requests to {len(operations)} operations "
              f"({fuzzed} fuzzed runs), {len(failures)} failing")

    unauthenticated = {label: n for (label, code), n in statuses.items()
                       if code == 401 and " as anonymous " not in label}
    documented = {f"{m.upper()} {p}" for p, ops in rig.app.openapi()["paths"].items() for m in ops}
    assert {operation.label for operation in operations} == documented
    assert requests_made >= 15 * len(operations), "the fuzzer barely ran"
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in sorted(failures.items()))
    assert not unauthenticated, f"signed or staff requests refused as unauthenticated: {unauthenticated}"
    reached = {label.partition(" as ")[0] for (label, code) in statuses if 200 <= code < 300}
    missed = {k: n for k, n in statuses.items() if k[0].partition(" as ")[0] in documented - reached}
    assert reached == documented, f"never got past validation or authorization: {missed}"
