"""Who may see and touch what.

A partner that is not party to a case gets exactly the answer it would get for a case that does
not exist (404), on every case-scoped path; partners never see ``internal`` events; only staff
and the owner partner see the customer; staff roles gate the admin routes; and no /v1 route
answers without credentials.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from tests.conftest import World
from kernel.clock import UTC
from kernel.config import Settings
from tracker.principals import create_staff_token
from tracker.refs import new_ref
from tracker.web.app import create_app

OUTSIDER = "fastcourier"  # registered, but not party to the cases opened below
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves, read from the app itself.

    FastAPI >= 0.165 keeps an included router as one entry of ``app.routes`` whose routes are
    reached through ``effective_route_contexts()``; older versions flatten them into APIRoutes.
    """
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if hasattr(route, "effective_route_contexts"):
            pairs = [
                (ctx.path, getattr(ctx.original_route, "methods", None)) for ctx in route.effective_route_contexts()
            ]
        else:
            pairs = [(getattr(route, "path", ""), getattr(route, "methods", None))]
        found |= {(method, path) for path, methods in pairs for method in methods or () if method != "HEAD"}
    return found


_APP = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:", workers_in_process=False))


def _routes(prefix: str) -> list[tuple[str, str]]:
    return sorted((r for r in _app_routes(_APP) if r[1].startswith(prefix)), key=lambda r: (r[1], r[0]))


CASE_ROUTES = _routes("/v1/cases/{ref}")
# The customer's status JSON and a joining partner's steps are reached with a link's token alone
# (no credentials): tested in tests/tracker/test_status.py and tests/tracker/test_onboarding.py.
V1_ROUTES = [(m, p) for m, p in _routes("/v1") if not p.startswith(("/v1/status/", "/v1/join/"))]

# A plausible, valid body per write route, so that a refusal can only come from authorization.
PLAUSIBLE_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/cases/{ref}/events"): {"status": "located", "message": "Your bag is in Frankfurt."},
    ("POST", "/v1/cases/{ref}/parties"): {"partner": "swissport-fra", "role": "handler"},
    ("PATCH", "/v1/cases/{ref}/parties/{partner_id}"): {"cadence": "PT3H"},
    ("POST", "/v1/cases/{ref}/handoffs"): {"to": "ua", "note": "Forwarded on UA123"},
    ("POST", "/v1/cases/{ref}/handoffs/{handoff_id}/accept"): {},
    ("POST", "/v1/cases/{ref}/close"): {"resolution": "Bag delivered to the customer."},
    ("POST", "/v1/cases/{ref}/status-link"): None,
    ("POST", "/v1/cases/{ref}/parties/{partner_id}/nudges"): {"note": "Where is the bag?"},
    ("POST", "/v1/cases/{ref}/parties/{partner_id}/accept"): {},
    ("POST", "/v1/cases/{ref}/parties/{partner_id}/decline"): {"note": "Not our bag."},
    # Whether the time is within a day of now is checked after who may acknowledge.
    ("POST", "/v1/cases/{ref}/parties/{partner_id}/ack"): {"reason": "Held in customs", "until": "2026-11-02T12:00:00Z"},
    # Upload routes take multipart bodies (tests/tracker/test_evidence.py); whom they admit is decided first.
    ("POST", "/v1/cases/{ref}/attachments"): {},
    ("POST", "/v1/cases/{ref}/delivery/proof"): {},
    ("PUT", "/v1/cases/{ref}/delivery"): {"collect_at": "JFK"},
    ("POST", "/v1/cases/{ref}/delivery/accept"): {},
    ("POST", "/v1/cases/{ref}/claims"): {"kind": "delay", "items": [{"description": "Taxi", "amount": "22.50",
                                                                    "currency": "EUR"}]},
    ("POST", "/v1/cases/{ref}/claims/{claim_id}/decision"): {"decision": "rejected", "reason": "No receipt"},
    ("POST", "/v1/cases/{ref}/claims/{claim_id}/paid"): {"reference": "SEPA-0042"},
}


def _case_route_param(method: str, path: str) -> Any:
    return pytest.param(method, path, id=f"{method} {path}")


def _body_for(method: str, path: str) -> Any:
    return PLAUSIBLE_BODIES.get((method, path), {} if method in WRITE_METHODS else None)


async def _admin_case(world: World, ref: str) -> dict[str, Any]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}")
    assert response.status_code == 200, response.text
    return response.json()


async def _request_handoff(world: World, ref: str) -> int:
    response = await world.as_admin("POST", f"/v1/cases/{ref}/handoffs", json_body={"to": "ua", "from": "lh"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _timeline(world: World, ref: str, partner: str | None = None) -> list[dict[str, Any]]:
    if partner is None:
        response = await world.as_admin("GET", f"/v1/cases/{ref}/events")
    else:
        response = await world.as_partner(partner, "GET", f"/v1/cases/{ref}/events")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    return body


# ---------------------------------------------------------------- non-party partners


def test_route_enumeration_sees_every_documented_operation() -> None:
    # Guards the enumeration itself: if it missed routes, the tests below would prove nothing.
    documented = {
        (method.upper(), path) for path, operations in _APP.openapi()["paths"].items() for method in operations
    }
    assert documented <= _app_routes(_APP)


def test_case_scoped_routes_are_enumerated_from_the_app() -> None:
    known = {
        ("GET", "/v1/cases/{ref}"),
        ("GET", "/v1/cases/{ref}/events"),
        ("POST", "/v1/cases/{ref}/events"),
        ("POST", "/v1/cases/{ref}/parties"),
        ("PATCH", "/v1/cases/{ref}/parties/{partner_id}"),
        ("POST", "/v1/cases/{ref}/handoffs"),
        ("POST", "/v1/cases/{ref}/handoffs/{handoff_id}/accept"),
        ("POST", "/v1/cases/{ref}/close"),
    }
    assert known <= set(CASE_ROUTES)
    for method, path in CASE_ROUTES:
        if method in WRITE_METHODS:
            assert (method, path) in PLAUSIBLE_BODIES, f"add a plausible valid body for {method} {path}"


@pytest.mark.parametrize(("method", "path"), [_case_route_param(m, p) for m, p in CASE_ROUTES])
async def test_non_party_partner_gets_the_same_404_as_for_a_case_that_does_not_exist(
    world: World, method: str, path: str
) -> None:
    case = await world.open_case()
    ref = case["ref"]
    handoff_id = await _request_handoff(world, ref)
    before = await _admin_case(world, ref)
    missing = new_ref("BAG")
    body = _body_for(method, path)

    async def send(target_ref: str) -> httpx.Response:
        url = path.format(ref=target_ref, partner_id="lh", handoff_id=handoff_id, attachment_id=1, claim_id=1)
        return await world.as_partner(OUTSIDER, method, url, json_body=body)

    hidden = _assert_problem(await send(ref), 404)
    absent = _assert_problem(await send(missing), 404)

    assert {k: v for k, v in hidden.items() if k != "detail"} == {k: v for k, v in absent.items() if k != "detail"}
    assert hidden["detail"].replace(ref, "<ref>") == absent["detail"].replace(missing, "<ref>")
    after = await _admin_case(world, ref)
    assert after["last_seq"] == before["last_seq"]
    assert after["parties"] == before["parties"]
    assert after["status"] == before["status"] and after["closed_at"] is None
    assert after["status_url"] == before["status_url"]


async def test_case_list_shows_a_case_to_its_parties_only(world: World) -> None:
    case = await world.open_case()

    outsider = await world.as_partner(OUTSIDER, "GET", "/v1/cases")
    party = await world.as_partner("lh", "GET", "/v1/cases")

    assert outsider.status_code == 200 and party.status_code == 200
    assert case["ref"] not in [c["ref"] for c in outsider.json()["items"]]
    assert case["ref"] in [c["ref"] for c in party.json()["items"]]


@pytest.mark.parametrize("query", ["text=JFKUA12345", "text=jfkua12345", "partner=lh", "status=reported"])
async def test_case_search_finds_nothing_for_a_non_party_partner(world: World, query: str) -> None:
    case = await world.open_case()

    outsider = await world.as_partner(OUTSIDER, "GET", f"/v1/cases?{query}")
    party = await world.as_partner("lh", "GET", f"/v1/cases?{query}")

    assert outsider.status_code == 200, outsider.text
    assert outsider.json()["items"] == []
    assert [c["ref"] for c in party.json()["items"]] == [case["ref"]]


async def test_case_search_by_reference_finds_nothing_for_a_non_party_partner(world: World) -> None:
    case = await world.open_case()

    outsider = await world.as_partner(OUTSIDER, "GET", f"/v1/cases?text={case['ref']}")
    staff = await world.as_admin("GET", f"/v1/cases?text={case['ref']}")

    assert outsider.json()["items"] == []
    assert [c["ref"] for c in staff.json()["items"]] == [case["ref"]]


# ---------------------------------------------------------------- internal events


async def test_partners_never_see_internal_events_and_staff_do(world: World) -> None:
    case = await world.open_case()
    ref = case["ref"]
    posted = await world.as_admin(
        "POST",
        f"/v1/cases/{ref}/events",
        json_body={"visibility": "internal", "internal_note": "Customer threatened to go to the press"},
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["visibility"] == "internal"
    seq = posted.json()["seq"]

    for partner in ("lh", "ua"):
        seen = await _timeline(world, ref, partner)
        assert seq not in [e["seq"] for e in seen]
        assert all(e["visibility"] != "internal" for e in seen)
        assert "Customer threatened" not in str(seen)
    staff = await _timeline(world, ref)
    assert next(e for e in staff if e["seq"] == seq)["internal_note"] == "Customer threatened to go to the press"


async def test_system_internal_events_are_hidden_from_partners_too(world: World) -> None:
    case = await world.open_case()
    rotated = await world.as_admin("POST", f"/v1/cases/{case['ref']}/status-link")
    assert rotated.status_code == 200, rotated.text

    staff_types = [e["type"] for e in await _timeline(world, case["ref"])]
    partner_types = [e["type"] for e in await _timeline(world, case["ref"], "ua")]

    assert "status_link.rotated" in staff_types
    assert "status_link.rotated" not in partner_types


async def test_partner_cannot_post_an_internal_event(world: World) -> None:
    case = await world.open_case()
    before = await _admin_case(world, case["ref"])

    response = await world.as_partner(
        "lh",
        "POST",
        f"/v1/cases/{case['ref']}/events",
        json_body={"visibility": "internal", "internal_note": "hide this from the others"},
    )

    body = _assert_problem(response, 403)
    assert "internal" in body["detail"]
    assert (await _admin_case(world, case["ref"]))["last_seq"] == before["last_seq"]


# ---------------------------------------------------------------- the customer's data


async def test_non_owner_party_sees_neither_customer_nor_status_link(world: World) -> None:
    case = await world.open_case()

    read = await world.as_partner("lh", "GET", f"/v1/cases/{case['ref']}")
    listed = await world.as_partner("lh", "GET", "/v1/cases")

    assert read.status_code == 200, read.text
    for seen in (read.json(), listed.json()["items"][0]):
        assert seen["ref"] == case["ref"]
        assert seen.get("customer") is None
        assert seen.get("status_url") is None
    assert "Ada Lovelace" not in read.text and "+14155550100" not in read.text and "/s/" not in read.text


@pytest.mark.parametrize("who", ["owner", "staff"])
async def test_owner_and_staff_see_customer_and_status_link(world: World, who: str) -> None:
    case = await world.open_case()

    if who == "owner":
        read = await world.as_partner("ua", "GET", f"/v1/cases/{case['ref']}")
    else:
        read = await world.as_admin("GET", f"/v1/cases/{case['ref']}")

    assert read.status_code == 200, read.text
    assert read.json()["customer"]["name"] == "Ada Lovelace"
    assert read.json()["customer"]["phone"] == "+14155550100"
    assert read.json()["status_url"] == case["status_url"]
    assert "/s/" in read.json()["status_url"]


# ---------------------------------------------------------------- staff roles and credentials


async def _agent_headers(app: Any) -> dict[str, str]:
    async with app.state.runtime.sessionmaker() as session:
        token = await create_staff_token(
            session=session, name="agent-alice", role="agent", now=dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        )
        await session.commit()
    return {"Authorization": f"Bearer {token}"}


async def test_agent_can_read_cases(world: World, app: Any) -> None:
    case = await world.open_case()
    agent = await _agent_headers(app)

    read = await world.client.get(f"/v1/cases/{case['ref']}", headers=agent)
    listed = await world.client.get("/v1/cases", headers=agent)

    assert read.status_code == 200, read.text
    assert read.json()["ref"] == case["ref"]
    assert [c["ref"] for c in listed.json()["items"]] == [case["ref"]]


async def test_agent_cannot_register_partners_or_manage_keys(world: World, app: Any) -> None:
    agent = await _agent_headers(app)
    new_partner = {"id": "dhl", "name": "DHL", "kind": "courier"}

    register = await world.client.post("/v1/partners", json=new_partner, headers=agent)
    add_key = await world.client.post(
        "/v1/partners/lh/keys", json={"keyid": "lh-hmac-2", "alg": "hmac-sha256"}, headers=agent
    )
    revoke = await world.client.delete("/v1/partners/lh/keys/lh-ed", headers=agent)

    for response in (register, add_key, revoke):
        body = _assert_problem(response, 403)
        assert "admin" in body["detail"]
    assert (await world.as_admin("GET", "/v1/partners/dhl")).status_code == 404
    keys = {k["keyid"]: k for k in (await world.as_admin("GET", "/v1/partners/lh")).json()["keys"]}
    assert set(keys) == {"lh-ed", "lh-hmac"}
    assert keys["lh-ed"]["revoked_at"] is None
    still_signs = await world.as_partner("lh", "GET", "/v1/cases")
    assert still_signs.status_code == 200


async def test_admin_can_revoke_a_key_that_an_agent_could_not(world: World) -> None:
    # The positive twin of the test above: the 403 comes from the role, not from the route.
    revoke = await world.as_admin("DELETE", "/v1/partners/lh/keys/lh-ed")

    assert revoke.status_code == 200, revoke.text
    assert revoke.json()["revoked_at"] is not None


@pytest.mark.parametrize(("method", "path"), [pytest.param(m, p, id=f"{m} {p}") for m, p in V1_ROUTES])
async def test_every_v1_route_answers_401_without_credentials(world: World, method: str, path: str) -> None:
    case = await world.open_case()
    url = path.format(ref=case["ref"], partner_id="lh", handoff_id=1, keyid="lh-ed", delivery_id=1, attachment_id=1,
                      claim_id=1, dataset="cases", format="csv")
    kwargs: dict[str, Any] = {"json": {}} if method in WRITE_METHODS else {}

    response = await world.client.request(method, url, **kwargs)

    body = _assert_problem(response, 401)
    assert "Bearer" in response.headers.get("www-authenticate", "")
    assert "Sign the request" in body["detail"]
    assert (await _admin_case(world, case["ref"]))["last_seq"] == case["last_seq"]


@pytest.mark.parametrize("authorization", ["Bearer not-a-real-token", "Basic YWRtaW46YWRtaW4=", "Bearer "])
async def test_wrong_credentials_are_401(world: World, authorization: str) -> None:
    response = await world.client.get("/v1/cases", headers={"Authorization": authorization})

    _assert_problem(response, 401)
