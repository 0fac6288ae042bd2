"""The authorization matrix: every documented operation × every kind of caller, one expected answer each.

``MATRIX`` below is the reviewed source of truth. Its rows are the operations of the committed
``openapi/openapi.json`` (by ``operationId``), its columns the callers. A new endpoint fails
``test_matrix_has_a_row_for_every_documented_operation_and_no_other`` until somebody writes its
row, so nothing ships without a decision about who may call it.

The callers, on a case ``C`` owned by ``ua``, with ``lh`` the responsible carrier and
``swissport-fra`` a ground handler that is neither owner nor responsible:

    anon    no credentials at all
    lh      partner party to C and responsible for it (signs with its own Ed25519 key)
    ua      partner party to C and its owner (holds the customer relationship)
    swiss   ``swissport-fra``: party to C, but neither owner nor responsible. It signs with its
            *own* key: "another partner's key used by its owner", i.e. the key of a partner other
            than the one an operation is about (``/v1/partners/lh/...``) or other than the
            responsible/owner party (handoffs, closing, parties)
    fast    ``fastcourier``: a registered partner that is not party to C
    forged  lh's private key presenting swissport-fra's key id: a signature that does not verify
    cust    C's customer: its status-link token. Customers authenticate only through the token in
            ``/v1/status/{token}``; on every other operation they send it as a Bearer token,
            which is not a credential there (401)
    cust2   the customer of another case D, with D's token (on ``get_status``: D's own status,
            which must say nothing of C)
    agent, sup, admin   staff Bearer tokens of each role
    inv     ``dhl``: named on C by its owner and not yet answering (party state ``invited``)
    rel     ``ups``: party to C, released by staff (party state ``released``): writes nothing

Callers that do not hold C's status link (everyone but ``cust``) call ``get_status`` with a
well-formed token that belongs to no case. Twilio's webhooks need an ``X-Twilio-Signature``
none of these callers has (their positive side is tested in tests/notifications).

Each cell is driven with real path parameters and a plausible valid body, so that a refusal can
only come from authorization. Besides the status code, every cell checks that the answer leaks
nothing the caller may not see (the customer's name, phone, email and status token; the case's
reference to callers that did not name it), and every refused write checks that the database is
unchanged. Allowed writes run on a fresh case each, so that one cell cannot change another's
outcome. The whole matrix runs in one test per database backend and reports every mismatch at once.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from partners.client import BatonSigner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import PartnerKeys, World
from kernel.clock import UTC
from kernel.config import Settings
from tracker.principals import create_staff_token
from tracker.ratelimit import RateLimits
from tracker.web.app import create_app

OPENAPI = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"

CALLERS = ("anon", "lh", "ua", "swiss", "fast", "forged", "cust", "cust2", "agent", "sup", "admin", "inv", "rel")

# ---------------------------------------------------------------- the matrix (reviewed: change with care)
#
# 200/201 allowed · 401 no valid credentials · 403 known caller, not allowed · 404 not visible to
# this caller (a non-party partner gets the same answer as for a case that does not exist).

MATRIX: dict[str, tuple[int, ...]] = {
    # operationId               anon  lh   ua  swiss fast forged cust cust2 agent sup admin  inv  rel
    # operations: open to all, credentials are ignored
    "healthz":                  (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "readyz":                   (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "prometheus_metrics":       (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    # Twilio's webhooks: only a valid X-Twilio-Signature gets in
    "twilio_inbound_sms":       (403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403),
    "twilio_status_callback":   (403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403),
    # the customer's status: the link's token is the only credential
    "get_status":               (404, 404, 404, 404, 404, 404, 200, 200, 404, 404, 404, 404, 404),
    # cases
    "list_cases":               (401, 200, 200, 200, 200, 401, 401, 401, 200, 200, 200, 200, 200),
    # a partner opens a case only as its owner (the body names ua)
    "create_case":              (401, 403, 201, 403, 403, 401, 401, 401, 201, 201, 201, 403, 403),
    "get_case":                 (401, 200, 200, 200, 404, 401, 401, 401, 200, 200, 200, 200, 200),
    "close_case":               (401, 403, 200, 403, 404, 401, 401, 401, 403, 200, 200, 403, 403),
    "rotate_case_status_link":  (401, 403, 403, 403, 404, 401, 401, 401, 200, 200, 200, 403, 403),
    "list_case_events":         (401, 200, 200, 200, 404, 401, 401, 401, 200, 200, 200, 200, 200),
    # the evidence bundle: staff and the owner (it is what the owner hands a regulator or the other airline)
    "get_case_bundle":          (401, 403, 200, 403, 404, 401, 401, 401, 200, 200, 200, 403, 403),
    # the body sets a status: only the owner, the responsible party and staff may
    "post_case_event":          (401, 201, 201, 403, 404, 401, 401, 401, 201, 201, 201, 403, 403),
    "list_case_notifications":  (401, 403, 403, 403, 404, 401, 401, 401, 200, 200, 200, 403, 403),
    # parties and custody
    "add_case_party":           (401, 403, 201, 403, 404, 401, 401, 401, 201, 201, 201, 403, 403),
    "update_case_party":        (401, 403, 200, 403, 404, 401, 401, 401, 200, 200, 200, 403, 403),
    "list_case_handoffs":       (401, 200, 200, 200, 404, 401, 401, 401, 200, 200, 200, 200, 200),
    "request_case_handoff":     (401, 201, 403, 403, 404, 401, 401, 401, 201, 201, 201, 403, 403),
    "accept_case_handoff":      (401, 403, 200, 403, 404, 401, 401, 401, 200, 200, 200, 403, 403),
    # the complaint department
    "nudge_case_party":         (401, 403, 403, 403, 404, 401, 401, 401, 201, 201, 201, 403, 403),
    # lh acknowledges for itself (staff for it); lh is not late on C, so those let in get 409
    "acknowledge_case_party":   (401, 409, 403, 403, 404, 401, 401, 401, 409, 409, 409, 403, 403),
    "list_overdue":             (401, 403, 403, 403, 403, 401, 401, 401, 200, 200, 200, 403, 403),
    "list_disputes":            (401, 403, 403, 403, 403, 401, 401, 401, 200, 200, 200, 403, 403),
    "list_webhook_deliveries":  (401, 403, 403, 403, 403, 401, 401, 401, 200, 200, 200, 403, 403),
    "resend_webhook_delivery":  (401, 403, 403, 403, 403, 401, 401, 401, 403, 200, 200, 403, 403),
    # partners: the paths name lh, so lh is "that partner" and may read its own record and scorecard;
    # revoke_partner_key names a spare key of fastcourier: no partner manages keys, not even its own
    "list_partners":            (401, 403, 403, 403, 403, 401, 401, 401, 200, 200, 200, 403, 403),
    "create_partner":           (401, 403, 403, 403, 403, 401, 401, 401, 403, 403, 201, 403, 403),
    "get_partner":              (401, 200, 403, 403, 403, 401, 401, 401, 200, 200, 200, 403, 403),
    "update_partner":           (401, 403, 403, 403, 403, 401, 401, 401, 403, 403, 200, 403, 403),
    "get_partner_scorecard":    (401, 200, 403, 403, 403, 401, 401, 401, 200, 200, 200, 403, 403),
    "add_partner_key":          (401, 403, 403, 403, 403, 401, 401, 401, 403, 403, 201, 403, 403),
    "revoke_partner_key":       (401, 403, 403, 403, 403, 401, 401, 401, 403, 403, 200, 403, 403),
    # invitations of parties named by another partner: the invited partner answers (staff for it)
    "accept_case_invitation":   (401, 403, 403, 403, 404, 401, 401, 401, 200, 200, 200, 200, 403),
    "decline_case_invitation":  (401, 403, 403, 403, 404, 401, 401, 401, 200, 200, 200, 200, 403),
    "list_party_invitations":   (401, 403, 403, 403, 403, 401, 401, 401, 200, 200, 200, 403, 403),
    # evidence: any party that may write attaches (an invited one joins by it), every party reads
    "add_case_attachment":      (401, 201, 201, 201, 404, 401, 401, 401, 201, 201, 201, 201, 403),
    "list_case_attachments":    (401, 200, 200, 200, 404, 401, 401, 401, 200, 200, 200, 200, 200),
    "get_case_attachment":      (401, 200, 200, 200, 404, 401, 401, 401, 200, 200, 200, 200, 200),
    "get_case_attachment_thumbnail": (401, 200, 200, 200, 404, 401, 401, 401, 200, 200, 200, 200, 200),
    # delivery: C's courier is dhl (invited); the owner and staff ask, the courier accepts. The
    # proof is the courier's (or staff's), and C's delivery is not out yet: 409 once they are let in
    "get_case_delivery":        (401, 200, 200, 200, 404, 401, 401, 401, 200, 200, 200, 200, 200),
    "put_case_delivery":        (401, 403, 200, 403, 404, 401, 401, 401, 200, 200, 200, 403, 403),
    "list_case_delivery_slots": (401, 200, 200, 200, 404, 401, 401, 401, 200, 200, 200, 200, 200),
    "accept_case_delivery":     (401, 403, 403, 403, 404, 401, 401, 401, 200, 200, 200, 200, 403),
    "post_case_delivery_proof": (401, 403, 403, 403, 404, 401, 401, 401, 409, 409, 409, 409, 403),
    # rights and claims: the owner and staff (they hold the customer relationship and the money)
    "get_case_rights":          (401, 403, 200, 403, 404, 401, 401, 401, 200, 200, 200, 403, 403),
    "list_case_claims":         (401, 403, 200, 403, 404, 401, 401, 401, 200, 200, 200, 403, 403),
    "file_case_claim":          (401, 403, 201, 403, 404, 401, 401, 401, 201, 201, 201, 403, 403),
    "decide_case_claim":        (401, 403, 200, 403, 404, 401, 401, 401, 200, 200, 200, 403, 403),
    "pay_case_claim":           (401, 403, 200, 403, 404, 401, 401, 401, 200, 200, 200, 403, 403),
    "list_claims":              (401, 403, 403, 403, 403, 401, 401, 401, 200, 200, 200, 403, 403),
    # exports: the complaint department's, every staff role; no partner
    "export_dataset":           (401, 403, 403, 403, 403, 401, 401, 401, 200, 200, 200, 403, 403),
    # scans: any partner reports the tags it scans (a tag no case has here: the scan waits), never staff
    "post_scans":               (401, 200, 200, 200, 200, 401, 401, 401, 403, 403, 403, 200, 200),
    "who_am_i":                 (401, 200, 200, 200, 200, 401, 401, 401, 200, 200, 200, 200, 200),
    # onboarding: an admin invites; after that the link is the only credential, and nobody here
    # holds a live one (its holder's side is tests/tracker/test_onboarding.py): the same 404 for all
    "create_partner_invitation": (401, 403, 403, 403, 403, 401, 401, 401, 403, 403, 201, 403, 403),
    "read_join_invitation":     (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "register_join_key":        (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "set_join_webhook":         (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "send_join_webhook_test":   (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "open_join_sandbox":        (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "finish_join":              (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
}  # fmt: skip

# Routes the app serves outside the OpenAPI document, reviewed: HTML for customers and staff, and
# the catch-all that gives a malformed status token the same 404 as an unknown one.
UNDOCUMENTED_PREFIXES = ("/s/", "/p/", "/join/", "/console", "/static", "/docs", "/redoc", "/openapi.json")
UNDOCUMENTED_ROUTES = {("GET", "/v1/status/{token:path}")}

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
PARTNER_CALLERS = {"lh": "lh", "ua": "ua", "swiss": "swissport-fra", "fast": "fastcourier",
                   "inv": "dhl", "rel": "ups"}
# Two more partners, party to C: dhl named by the owner and not yet answering (invited), ups
# released by a supervisor. Neither is owner or responsible.
EXTRA_PARTNERS = {"dhl": "DHL Express", "ups": "UPS"}
STAFF_CALLERS = ("agent", "sup", "admin")
# What each caller may see of case C: everything, the case but not its customer, or nothing.
SEES_ALL = {"ua", "agent", "sup", "admin"}
SEES_CASE = {"lh", "swiss", "cust", "inv", "rel"}

CUSTOMER = {"name": "Ada Lovelace", "phone": "+14155550100", "email": "ada@example.com",
            "locale": "en", "timezone": "America/New_York"}
OTHER_CUSTOMER = {"name": "Grace Hopper", "phone": "+14155550199", "email": "grace@example.net",
                  "locale": "en", "timezone": "America/New_York"}
UNKNOWN_TOKEN = "AAAAAAAA" + "x" * 24  # well-formed, belongs to no case
MULTIPART = object()  # the body of an upload route: built per request by ``_multipart_*``


def _multipart_photo() -> tuple[bytes, str]:
    from tests.tracker.test_evidence import multipart, photo_with_gps

    return multipart({"file": ("photo.jpg", photo_with_gps(size=(64, 48)), "image/jpeg")}, {"kind": "photo"})


def _multipart_proof() -> tuple[bytes, str]:
    from tests.tracker.test_evidence import multipart

    return multipart({"bag_tag": ("", b"", "text/plain")}, {"pin": "1234"})


# ---------------------------------------------------------------- the operations, from the committed document


def documented_operations() -> dict[str, tuple[str, str]]:
    """operationId -> (METHOD, path template), read from the committed openapi/openapi.json."""
    document = json.loads(OPENAPI.read_text())
    return {
        op["operationId"]: (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, op in operations.items()
    }


def _app_routes(app: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if hasattr(route, "effective_route_contexts"):
            pairs = [(c.path, getattr(c.original_route, "methods", None)) for c in route.effective_route_contexts()]
        else:
            pairs = [(getattr(route, "path", ""), getattr(route, "methods", None))]
        found |= {(m, p) for p, methods in pairs for m in methods or () if m != "HEAD"}
    return found


def _fresh_app() -> Any:
    return create_app(Settings(database_url="sqlite+aiosqlite:///:memory:", workers_in_process=False))


def test_matrix_has_a_row_for_every_documented_operation_and_no_other() -> None:
    documented = set(documented_operations())

    missing = sorted(documented - MATRIX.keys())
    stale = sorted(MATRIX.keys() - documented)

    assert not missing, f"operations without a row in MATRIX (decide who may call them): {missing}"
    assert not stale, f"MATRIX rows for operations that no longer exist: {stale}"


def test_every_matrix_row_has_one_expected_answer_per_caller() -> None:
    for operation, row in MATRIX.items():
        assert len(row) == len(CALLERS), f"{operation}: {len(row)} cells for {len(CALLERS)} callers"
        assert all(code in (200, 201, 204, 401, 403, 404, 409) for code in row), f"{operation}: {row}"


def test_committed_openapi_documents_exactly_the_operations_the_app_serves() -> None:
    # A route added without regenerating the document would otherwise escape the matrix.
    live = {op["operationId"]: (m.upper(), p) for p, ops in _fresh_app().openapi()["paths"].items()
            for m, op in ops.items()}

    assert live == documented_operations(), "openapi/openapi.json is stale: run `make openapi`"


def test_routes_outside_the_openapi_document_are_only_the_reviewed_html_and_catch_all_routes() -> None:
    app = _fresh_app()
    documented = set(documented_operations().values())

    hidden = {(m, p) for m, p in _app_routes(app) - documented
              if not p.startswith(UNDOCUMENTED_PREFIXES) and (m, p) not in UNDOCUMENTED_ROUTES}

    assert not hidden, f"routes missing from the OpenAPI document, hence from the matrix: {sorted(hidden)}"


# ---------------------------------------------------------------- driving the matrix


@dataclass
class Scene:
    """Case C with its handoff from lh to ua waiting to be accepted."""

    ref: str
    token: str
    handoff_id: int
    case: dict[str, Any]
    attachment_id: int
    claim_filed: int
    claim_approved: int


class Matrix:
    def __init__(self, world: World, app: Any) -> None:
        self.world = world
        self.app = app
        self.sessionmaker = app.state.runtime.sessionmaker
        self.staff: dict[str, str] = {}
        self.other_token = ""
        self.other_ref = ""
        self.counter = itertools.count(1)
        self.key_secrets: list[str] = []

    # ---- setup

    async def prepare(self) -> Scene:
        now = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        for partner_id, name in EXTRA_PARTNERS.items():
            await self.register(partner_id, name)
        async with self.sessionmaker() as session:
            for caller, role in (("agent", "agent"), ("sup", "supervisor"), ("admin", "admin")):
                self.staff[caller] = await create_staff_token(session=session, name=f"{caller}-1", role=role, now=now)
            await session.commit()
            secrets = (await session.execute(text("SELECT webhook_secret FROM partners"))).scalars().all()
        self.key_secrets = [*filter(None, secrets), *(p.hmac_secret for p in self.world.partners.values() if p.hmac_secret)]
        other = await self.world.open_case(customer=OTHER_CUSTOMER, title="Damaged parcel, other customer")
        self.other_ref, self.other_token = other["ref"], other["status_url"].rsplit("/", 1)[1]
        return await self.scene()

    async def register(self, partner_id: str, name: str) -> None:
        response = await self.world.as_admin("POST", "/v1/partners",
                                             json_body={"id": partner_id, "name": name, "kind": "courier"})
        assert response.status_code == 201, response.text
        private = Ed25519PrivateKey.generate()
        keys = PartnerKeys(partner_id, f"{partner_id}-ed", private, "", "", self.world.clock)
        response = await self.world.as_admin("POST", f"/v1/partners/{partner_id}/keys", json_body={
            "keyid": keys.keyid, "alg": "ed25519", "public_key": keys.public_pem})
        assert response.status_code == 201, response.text
        self.world.partners[partner_id] = keys

    async def scene(self) -> Scene:
        case = await self.world.open_case(
            customer=CUSTOMER,
            parties=[{"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
                     {"partner": "ua", "role": "owner"},
                     {"partner": "swissport-fra", "role": "handler"},
                     {"partner": "ups", "role": "courier"}],
        )
        invited = await self.world.as_partner("ua", "POST", f"/v1/cases/{case['ref']}/parties",
                                              json_body={"partner": "dhl", "role": "courier"})
        assert invited.status_code == 201 and invited.json()["state"] == "invited", invited.text
        released = await self.world.as_admin("PATCH", f"/v1/cases/{case['ref']}/parties/ups",
                                             json_body={"released": True})
        assert released.status_code == 200, released.text
        asked = await self.world.as_admin("PUT", f"/v1/cases/{case['ref']}/delivery", json_body={
            "address": {"line1": "1 Hotel Plaza", "city": "Boston", "postcode": "02110", "country": "US"},
            "phone": "+16175550142"})
        assert asked.status_code == 200 and asked.json()["courier"] == "dhl", asked.text
        body, ctype = _multipart_photo()
        attached = await self.world.client.post(f"/v1/cases/{case['ref']}/attachments", content=body,
                                                headers={**self.world.admin, "content-type": ctype})
        assert attached.status_code == 201, attached.text
        filed, approved = [(await self.world.as_admin("POST", f"/v1/cases/{case['ref']}/claims", json_body={
            "kind": "interim_expenses", "items": [{"description": "A shirt", "amount": "34.10", "currency": "USD"}]
        })).json()["id"] for _ in range(2)]
        decided = await self.world.as_admin("POST", f"/v1/cases/{case['ref']}/claims/{approved}/decision", json_body={
            "decision": "approved", "amount": "34.10", "currency": "USD", "reason": "Receipt seen"})
        assert decided.status_code == 200, decided.text
        handoff = await self.world.as_admin("POST", f"/v1/cases/{case['ref']}/handoffs",
                                            json_body={"to": "ua", "from": "lh", "note": "Forwarded on UA123"})
        assert handoff.status_code == 201, handoff.text
        return Scene(case["ref"], case["status_url"].rsplit("/", 1)[1], handoff.json()["id"], case,
                     attached.json()["id"], filed, approved)

    async def spare_key(self) -> str:
        keyid = f"fastcourier-spare-{next(self.counter)}"
        response = await self.world.as_admin("POST", "/v1/partners/fastcourier/keys",
                                              json_body={"keyid": keyid, "alg": "hmac-sha256"})
        assert response.status_code == 201, response.text
        return keyid

    async def dead_delivery(self, ref: str) -> int:
        """A webhook delivery of C, dead-lettered (as after 27 hours of failures)."""
        async with self.sessionmaker() as session:
            delivery = await session.scalar(text(
                "SELECT n.id FROM notifications n JOIN cases c ON c.id = n.case_id "
                "WHERE c.ref = :ref AND n.channel = 'webhook' AND n.state = 'pending' ORDER BY n.id LIMIT 1"
            ), {"ref": ref})
            assert delivery is not None, "the case should have queued a webhook to lh"
            await session.execute(text("UPDATE notifications SET state = 'dead', next_attempt_at = NULL "
                                       "WHERE id = :id"), {"id": delivery})
            await session.commit()
        return int(delivery)

    async def fingerprint(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row Baton keeps, except spent nonces (a refused signed write rightly spends its nonce)."""
        tables = ("cases", "parties", "handoffs", "events", "notifications", "partners", "partner_keys",
                  "staff_tokens", "case_external_refs", "idempotency_records", "attachments", "deliveries",
                  "claims", "case_deadlines", "bag_scans", "party_links", "partner_invitations", "due_moments")
        async with self.sessionmaker() as session:
            return {t: [tuple(r) for r in (await session.execute(text(f"SELECT * FROM {t} ORDER BY 1"))).all()]
                    for t in tables}

    # ---- one cell

    def target(self, operation: str, scene: Scene, caller: str, extra: dict[str, Any]) -> dict[str, Any]:
        token = {"cust": scene.token, "cust2": self.other_token}.get(caller, UNKNOWN_TOKEN)
        partner_id = {"revoke_partner_key": "fastcourier", "accept_case_invitation": "dhl",
                      "decline_case_invitation": "dhl"}.get(operation, "lh")
        return {"ref": scene.ref, "partner_id": partner_id, "handoff_id": scene.handoff_id, "token": token,
                "dataset": "events", "format": "csv",
                "attachment_id": scene.attachment_id,
                "claim_id": scene.claim_approved if operation == "pay_case_claim" else scene.claim_filed, **extra}

    def body(self, operation: str) -> tuple[Any, dict[str, str] | None]:
        """(JSON body, form) for a write: plausible and valid, so only authorization can refuse it."""
        n = next(self.counter)
        bodies: dict[str, Any] = {
            "create_case": {"type": "baggage", "title": "Delayed bag, LH400 then UA123", "customer": CUSTOMER,
                            "owner": "ua", "parties": [{"partner": "lh", "role": "carrier", "responsible": True},
                                                       {"partner": "ua", "role": "owner"}]},
            "close_case": {"resolution": "Bag delivered to the customer.", "message": "Your bag is home."},
            "post_case_event": {"status": "located", "message": "Your bag is in Frankfurt."},
            "add_case_party": {"partner": "fastcourier", "role": "courier"},
            "update_case_party": {"cadence": "PT3H"},
            "request_case_handoff": {"to": "ua", "note": "Forwarded on UA123"},
            "accept_case_handoff": {"note": "Got it"},
            "nudge_case_party": {"note": "Where is the bag?"},
            "acknowledge_case_party": {"reason": "Held in customs at JFK",
                                       "until": (self.world.clock.now() + dt.timedelta(hours=3)).isoformat()},
            "accept_case_invitation": {"note": "We will collect it."},
            "decline_case_invitation": {"note": "Not our bag."},
            "create_partner": {"id": f"dhl{n}", "name": "DHL", "kind": "courier"},
            "update_partner": {"duty_phone": "+4969123499", "account_email": "am-lh@baton.example"},
            "add_partner_key": {"keyid": f"lh-hmac-extra-{n}", "alg": "hmac-sha256"},
            "put_case_delivery": {"collect_at": "BOS"},
            "file_case_claim": {"kind": "delay", "items": [{"description": "Taxi", "amount": "22.50",
                                                            "currency": "EUR"}]},
            "decide_case_claim": {"decision": "partly_approved", "amount": "20.00", "currency": "USD",
                                  "reason": "The shirt, less wear"},
            "pay_case_claim": {"reference": "SEPA-0042"},
            "post_scans": {"scans": [{"bag_tag": f"0099{n:06d}", "at": "2026-11-02T08:00:00+00:00",
                                      "station": "FRA", "point": "transfer"}]},
            "accept_case_delivery": {},
            "create_partner_invitation": {"partner": {"id": f"joiner{n}", "name": "Joiner Ltd", "kind": "courier"}},
            "register_join_key": {"alg": "hmac-sha256"},
            "set_join_webhook": {"url": "https://hooks.joiner.example/baton"},
            "add_case_attachment": MULTIPART,
            "post_case_delivery_proof": MULTIPART,
        }
        forms = {
            "twilio_inbound_sms": {"From": CUSTOMER["phone"], "To": "+15005550006", "Body": "STATUS"},
            "twilio_status_callback": {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"},
        }
        return bodies.get(operation), forms.get(operation)

    async def send(self, caller: str, method: str, url: str, body: Any, form: dict[str, str] | None,
                   scene: Scene) -> httpx.Response:
        headers: dict[str, str] = {}
        kwargs: dict[str, Any] = {}
        if body is MULTIPART:
            kwargs["content"], headers["content-type"] = (_multipart_photo() if "attachments" in url
                                                          else _multipart_proof())
        elif body is not None:
            kwargs["content"] = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        elif form is not None:
            kwargs["data"] = form
        clock = self.world.clock
        if caller in PARTNER_CALLERS:
            kwargs["auth"] = self.world.partners[PARTNER_CALLERS[caller]].signer()
        elif caller == "forged":
            kwargs["auth"] = BatonSigner.ed25519("swissport-fra-ed", self.world.partners["lh"].private_key,
                                                 clock=lambda: clock.now().timestamp())
        elif caller in STAFF_CALLERS:
            headers["Authorization"] = f"Bearer {self.staff[caller]}"
        elif caller in ("cust", "cust2"):
            headers["Authorization"] = f"Bearer {scene.token if caller == 'cust' else self.other_token}"
        return await self.world.client.request(method, url, headers=headers, **kwargs)

    def leaks(self, caller: str, path: str, response: httpx.Response, scene: Scene) -> list[str]:
        """What the answer shows that this caller may not see (nobody sees a stored key or webhook secret)."""
        shown = [f"a key or webhook secret ({s[:6]}...)" for s in self.key_secrets if s in response.text]
        if caller in SEES_ALL:
            return shown
        secret = [CUSTOMER["phone"], CUSTOMER["phone"].lstrip("+"), CUSTOMER["email"], "Lovelace"]
        if caller != "cust":
            secret.append(scene.token)
        if caller not in SEES_CASE and "{ref}" not in path:  # a 404 may echo the reference the caller sent
            secret.append(scene.ref)
        return shown + [s for s in secret if s in response.text]


async def _run_matrix(world: World, app: Any) -> tuple[list[str], int]:
    m = Matrix(world, app)
    shared = await m.prepare()
    spare = await m.spare_key()
    dead = await m.dead_delivery(shared.ref)
    operations = documented_operations()
    mismatches: list[str] = []
    cells = 0
    for operation, (method, path) in sorted(operations.items()):
        row = MATRIX[operation]
        for caller, expected in zip(CALLERS, row, strict=True):
            cells += 1
            allowed = 200 <= expected < 300
            write = method in WRITE_METHODS
            scene = await m.scene() if (write and allowed) else shared
            extra: dict[str, Any] = {}
            if operation == "revoke_partner_key":
                extra["keyid"] = await m.spare_key() if allowed else spare
            if operation == "resend_webhook_delivery":
                extra["delivery_id"] = await m.dead_delivery(scene.ref) if allowed else dead
            url = path.format(**m.target(operation, scene, caller, extra))
            body, form = m.body(operation) if write else (None, None)
            before = await m.fingerprint() if write and not allowed else None

            if "{token}" in path:  # every caller here sends an unknown link: keep under the per-address limit
                app.state.runtime.limits = RateLimits(world.clock)
            response = await m.send(caller, method, url, body, form, scene)

            where = f"{operation:<26} {caller:<6} {method} {url}"
            if response.status_code != expected:
                mismatches.append(f"{where}: expected {expected}, got {response.status_code} {response.text[:160]}")
            leaked = m.leaks(caller, path, response, scene)
            if leaked:
                mismatches.append(f"{where}: the answer shows {leaked}")
            if before is not None and response.status_code >= 400:
                after = await m.fingerprint()
                changed = sorted(t for t in before if before[t] != after[t])
                if changed:
                    mismatches.append(f"{where}: refused ({response.status_code}) but changed {changed}")
            if (operation, caller, response.status_code) == ("get_status", "cust2", 200) and \
                    response.json()["ref"] != m.other_ref:
                mismatches.append(f"{where}: another customer's token showed {response.json()['ref']}")
    return mismatches, cells


async def test_every_operation_answers_every_caller_as_the_matrix_says(world: World, app: Any) -> None:
    mismatches, cells = await _run_matrix(world, app)

    assert cells == len(MATRIX) * len(CALLERS)
    assert not mismatches, f"{len(mismatches)} of {cells} cells disagree with MATRIX:\n" + "\n".join(mismatches)
