"""The customer's status link: what it shows (and never shows), how it is guarded, what the customer may say.

``/v1/status/{token}`` (JSON) and ``/s/{token}`` (HTML) on both backends, through the real app.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from notifications.models import Notification
from tests.conftest import BASE_URL, World
from tracker.watchdog import Watchdog, WatchdogConfig

PHONE = "+14155550100"
EMAIL = "ada@example.com"
# Contact data of the partners, which a customer never sees.
PARTNER_CONTACTS = ("baggage-ops@lh.example", "+4969123456", "4969123456", "baggage@ua.example", "hooks.lh.example")
PERSONAL = (PHONE, "4155550100", EMAIL, "Lovelace")


def token_of(case: dict[str, Any]) -> str:
    url = case["status_url"]
    assert url.startswith(f"{BASE_URL}/s/"), url
    return url.rsplit("/s/", 1)[1]


def sessionmaker_of(world: World) -> Any:
    return world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]


async def update(world: World, ref: str, partner: str = "lh", **body: Any) -> None:
    response = await world.as_partner(partner, "POST", f"/v1/cases/{ref}/events", json_body=body)
    assert response.status_code == 201, response.text


async def events(world: World, ref: str, *, partner: str | None = None) -> list[dict[str, Any]]:
    if partner is None:
        response = await world.as_admin("GET", f"/v1/cases/{ref}/events")
    else:
        response = await world.as_partner(partner, "GET", f"/v1/cases/{ref}/events")
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def set_webhook_url(world: World, partner_id: str, url: str) -> None:
    from partners.models import Partner

    async with sessionmaker_of(world)() as session:
        partner = await session.get(Partner, partner_id)
        assert partner is not None
        partner.webhook_url = url
        await session.commit()


async def webhook_rows(world: World, kind: str) -> list[Notification]:
    async with sessionmaker_of(world)() as session:
        query = (select(Notification).where(Notification.channel == "webhook", Notification.kind == kind)
                 .order_by(Notification.id))
        return list((await session.scalars(query)).all())


async def case_detail(world: World, ref: str) -> dict[str, Any]:
    response = await world.as_admin("GET", f"/v1/cases/{ref}")
    assert response.status_code == 200, response.text
    return response.json()


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


@pytest.fixture
async def other_client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """The same app seen from another client address than the default 127.0.0.1."""
    app = world.client._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=("10.0.0.2", 123))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield http


@pytest.fixture
def watchdog(world: World) -> Watchdog:
    return Watchdog(sessionmaker=sessionmaker_of(world), clock=world.clock, config=WatchdogConfig())


# ---------------------------------------------------------------- what the JSON shows


async def test_status_json_shows_status_holder_next_update_and_the_public_timeline(world: World) -> None:
    case = await world.open_case()
    await update(world, case["ref"], status="located", message="Your bag is in Frankfurt.", location="FRA")

    response = await world.client.get(f"/v1/status/{token_of(case)}")

    assert response.status_code == 200, response.text
    status = response.json()
    assert status["ref"] == case["ref"]
    assert status["status"] == "located"
    assert status["status_label"] == "Found: your bag has been located"
    assert status["holder"] == {"name": "Lufthansa", "role": "carrier"}
    lh = next(p for p in (await case_detail(world, case["ref"]))["parties"] if p["partner"] == "lh")
    assert status["next_update_due"] is not None
    assert dt.datetime.fromisoformat(status["next_update_due"]) == dt.datetime.fromisoformat(lh["next_update_due"])
    assert status["first_name"] == "Ada"
    assert status["notices"] == []
    assert status["closed"] is False and status["can_confirm"] is False
    kinds = [entry["kind"] for entry in status["timeline"]]
    assert kinds == ["update", "case.opened"], "newest first"
    assert status["timeline"][0]["message"] == "Your bag is in Frankfurt."
    assert status["timeline"][0]["location"] == "FRA"


async def test_status_json_leaks_no_internal_notes_partner_only_events_or_contact_data(world: World) -> None:
    case = await world.open_case()
    ref = case["ref"]
    await update(world, ref, status="located", message="Found in Frankfurt.", internal_note="SECRET-NOTE-1 ramp blamed")
    await update(world, ref, message="PARTNER-ONLY-2 between us", visibility="parties")
    await update(world, ref, internal_note="SECRET-NOTE-3 just a note")
    staff_view = await events(world, ref)
    assert any(e.get("internal_note", "").startswith("SECRET-NOTE-1") for e in staff_view), "the notes exist"
    assert any(e.get("message") == "PARTNER-ONLY-2 between us" for e in staff_view)

    response = await world.client.get(f"/v1/status/{token_of(case)}")

    assert response.status_code == 200
    raw = response.text
    assert "Found in Frankfurt." in raw
    for secret in ("SECRET-NOTE", "PARTNER-ONLY", "internal_note", *PERSONAL, *PARTNER_CONTACTS):
        assert secret not in raw, f"{secret!r} leaked into the status JSON"
    body = response.json()
    assert "customer" not in body and "phone" not in raw and "email" not in raw
    assert all(entry["kind"] != "update" or entry["message"] == "Found in Frankfurt." for entry in body["timeline"])


# ---------------------------------------------------------------- the HTML page


async def test_status_page_shows_status_holder_and_next_update_in_the_customers_time_zone(world: World) -> None:
    case = await world.open_case()
    await update(world, case["ref"], status="located", message="Your bag is in Frankfurt.")
    status = (await world.client.get(f"/v1/status/{token_of(case)}")).json()

    response = await world.client.get(f"/s/{token_of(case)}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="en">' in html
    assert re.search(r'data-field="status">\s*' + re.escape(status["status_label"]), html)
    assert re.search(r'data-field="holder">\s*Lufthansa', html)
    due = dt.datetime.fromisoformat(status["next_update_due"])
    local = due.astimezone(dt.timezone(dt.timedelta(hours=-5)))  # New York in November
    assert f'datetime="{local.isoformat(timespec="minutes")}"' in html
    assert local.strftime("%H:%M") in html
    assert "Your bag is in Frankfurt." in html
    assert "Hello Ada," in html


async def test_status_page_carries_strict_security_headers(world: World) -> None:
    case = await world.open_case()

    for path in (f"/s/{token_of(case)}", f"/s/{secrets.token_urlsafe(24)}"):
        response = await world.client.get(path)
        assert response.headers["referrer-policy"] == "no-referrer", path
        assert "noindex" in response.headers["x-robots-tag"], path
        csp = response.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp, csp
        directives = csp_directives(csp)
        assert directives["default-src"] == ["'none'"]
        assert directives["frame-ancestors"] == ["'none'"]
        assert all(source in ("'self'", "'none'", "data:") for sources in directives.values() for source in sources)


async def test_status_page_loads_no_third_party_assets(world: World) -> None:
    case = await world.open_case()
    html = (await world.client.get(f"/s/{token_of(case)}")).text
    links = re.findall(r'(?:src|href|action)="([^"]*)"', html)
    assert links, "the page links its stylesheet and forms"
    assert all(link.startswith("/") and not link.startswith("//") for link in links), links
    assert "<script" not in html


async def test_status_page_shows_the_first_name_and_no_other_personal_data(world: World) -> None:
    case = await world.open_case()
    await update(world, case["ref"], status="located", message="Found.", internal_note="SECRET-NOTE")

    html = (await world.client.get(f"/s/{token_of(case)}")).text

    assert "Ada" in html
    for secret in ("SECRET-NOTE", *PERSONAL, *PARTNER_CONTACTS):
        assert secret not in html, f"{secret!r} is on the status page"


async def test_german_customer_gets_a_german_page(world: World) -> None:
    case = await world.open_case(customer={"name": "Grete Müller", "phone": "+4915112345678",
                                           "locale": "de", "timezone": "Europe/Berlin"})

    response = await world.client.get(f"/s/{token_of(case)}", headers={"Accept-Language": "en-US,en;q=0.9"})

    html = response.text
    assert '<html lang="de">' in html
    assert "Hallo Grete," in html
    assert "Wer es gerade hat" in html and "Nächste Meldung fällig" in html
    assert "Who has it now" not in html
    assert "Müller" not in html


async def test_unknown_customer_locale_falls_back_to_accept_language(world: World) -> None:
    case = await world.open_case(customer={"name": "Hana Sato", "phone": "+819012345678", "locale": "ja",
                                           "timezone": "Asia/Tokyo"})

    french = await world.client.get(f"/s/{token_of(case)}", headers={"Accept-Language": "ja;q=1, fr;q=0.8, en;q=0.5"})
    plain = await world.client.get(f"/s/{token_of(case)}")

    assert '<html lang="fr">' in french.text and "Prochaine nouvelle attendue" in french.text
    assert '<html lang="en">' in plain.text and "Who has it now" in plain.text


# ---------------------------------------------------------------- bad tokens (criterion 4)


@pytest.mark.parametrize("prefix", ["/s/", "/v1/status/"])
async def test_unknown_and_malformed_tokens_get_byte_identical_answers(world: World, prefix: str) -> None:
    case = await world.open_case()
    valid = token_of(case)
    unknown = secrets.token_urlsafe(24)
    same_locator = valid[:8] + secrets.token_urlsafe(24)[8:]  # finds the row, fails the comparison
    malformed = ["x", "..%2F..%2Fetc", "a" * 200, "....", "%20" * 30, valid + "!"]

    answers = []
    for token in [unknown, same_locator, *malformed]:
        response = await world.client.get(prefix + token)
        answers.append((token, response.status_code, response.headers["content-type"], response.content))

    assert answers[0][1] == 404
    first = answers[0][1:]
    for token, *answer in answers[1:]:
        assert tuple(answer) == first, f"{token!r} answers differently from an unknown token"
    assert (await world.client.get(prefix + valid)).status_code == 200


async def test_twenty_bad_tokens_in_a_minute_lock_the_address_out_for_the_rest_of_the_minute(
    world: World, other_client: httpx.AsyncClient
) -> None:
    case = await world.open_case()
    valid = token_of(case)

    bodies = set()
    for _ in range(20):
        response = await world.client.get(f"/s/{secrets.token_urlsafe(24)}")
        assert response.status_code == 404
        bodies.add(response.content)
        world.clock.advance(seconds=1)
    assert len(bodies) == 1, "every unknown token gets the same page"

    for path in (f"/s/{secrets.token_urlsafe(24)}", f"/v1/status/{secrets.token_urlsafe(24)}"):
        limited = await world.client.get(path)
        assert limited.status_code == 429, path
        assert limited.headers["retry-after"] == "40"  # the first bad token, 20 s ago, leaves the window in 40 s
        assert valid not in limited.text and case["ref"] not in limited.text
    # The valid link is looked up before anything is counted: a guesser behind the same address
    # (a carrier NAT) does not lock the customer out.
    assert (await world.client.get(f"/s/{valid}")).status_code == 200
    assert (await world.client.get(f"/v1/status/{valid}")).json()["ref"] == case["ref"]

    # Another address is not affected.
    assert (await other_client.get(f"/s/{valid}")).status_code == 200
    assert (await other_client.get(f"/v1/status/{valid}")).json()["ref"] == case["ref"]

    # One second before the first bad token leaves the window: still locked out.
    world.clock.advance(seconds=39)
    still = await world.client.get(f"/s/{secrets.token_urlsafe(24)}")
    assert still.status_code == 429 and still.headers["retry-after"] == "1"
    world.clock.advance(seconds=1)
    again = await world.client.get(f"/s/{secrets.token_urlsafe(24)}")
    assert again.status_code == 404, "unknown again, not locked out"


async def test_rotated_status_link_works_and_the_old_one_is_dead(world: World) -> None:
    case = await world.open_case()
    old = token_of(case)
    assert (await world.client.get(f"/s/{old}")).status_code == 200

    by_owner = await world.as_partner("ua", "POST", f"/v1/cases/{case['ref']}/status-link")
    assert by_owner.status_code == 403, "only staff rotate the link"
    assert (await world.client.get(f"/s/{old}")).status_code == 200

    response = await world.as_admin("POST", f"/v1/cases/{case['ref']}/status-link")
    assert response.status_code == 200, response.text
    new_url = response.json()["status_url"]
    new = new_url.rsplit("/s/", 1)[1]
    assert new != old and len(new) >= 22

    assert (await world.client.get(f"/s/{new}")).status_code == 200
    assert (await world.client.get(f"/v1/status/{new}")).json()["ref"] == case["ref"]
    dead = await world.client.get(f"/s/{old}")
    unknown = await world.client.get(f"/s/{secrets.token_urlsafe(24)}")
    assert dead.status_code == 404 and dead.content == unknown.content
    assert (await world.client.get(f"/v1/status/{old}")).status_code == 404
    assert (await case_detail(world, case["ref"]))["status_url"] == new_url


# ---------------------------------------------------------------- late and escalated (criterion 3)


async def test_late_partner_shows_the_honest_notice_and_escalated_one_the_apology(
    world: World, watchdog: Watchdog
) -> None:
    case = await world.open_case()
    ref, token = case["ref"], token_of(case)
    opened = world.clock.now()

    world.clock.advance(hours=6, minutes=1)
    assert (await watchdog.sweep()).late == 1
    late = (await world.client.get(f"/v1/status/{token}")).json()
    [notice] = late["notices"]
    assert notice["kind"] == "late" and notice["waiting_on"] == "Lufthansa"
    assert dt.datetime.fromisoformat(notice["since"]) >= opened + dt.timedelta(hours=6)
    assert notice["chased_at"] is not None
    html = (await world.client.get(f"/s/{token}")).text
    assert "We are waiting on Lufthansa" in html
    assert 'class="notice notice-late"' in html

    # A nudge by the complaint department is the latest chase the customer is told about.
    world.clock.advance(hours=1)
    nudged = await world.as_admin("POST", f"/v1/cases/{ref}/parties/lh/nudges", json_body={})
    assert nudged.status_code == 201, nudged.text
    [notice] = (await world.client.get(f"/v1/status/{token}")).json()["notices"]
    assert dt.datetime.fromisoformat(notice["chased_at"]) == world.clock.now()

    world.clock.advance(hours=5)  # 12h01 after opening
    assert (await watchdog.sweep()).escalated == 1
    [notice] = (await world.client.get(f"/v1/status/{token}")).json()["notices"]
    assert notice["kind"] == "escalated" and notice["waiting_on"] == "Lufthansa"
    html = (await world.client.get(f"/s/{token}")).text
    assert "sorry" in html and "Lufthansa has not answered" in html
    assert 'class="notice notice-escalated"' in html

    await update(world, ref, status="located", message="Found it.")
    assert (await world.client.get(f"/v1/status/{token}")).json()["notices"] == []
    html = (await world.client.get(f"/s/{token}")).text
    assert "We are waiting on" not in html and "sorry" not in html


async def test_a_partner_on_time_gives_no_notice(world: World, watchdog: Watchdog) -> None:
    case = await world.open_case()
    world.clock.advance(hours=5, minutes=59)
    assert (await watchdog.sweep()).late == 0
    assert (await world.client.get(f"/v1/status/{token_of(case)}")).json()["notices"] == []
    assert "We are waiting on" not in (await world.client.get(f"/s/{token_of(case)}")).text


# ---------------------------------------------------------------- the customer writes


async def test_customer_message_reaches_staff_parties_the_page_and_the_owner_by_webhook(world: World) -> None:
    await set_webhook_url(world, "ua", "https://hooks.ua.example/baton")
    case = await world.open_case()
    ref, token = case["ref"], token_of(case)

    response = await world.client.post(f"/s/{token}/messages", data={"message": "Please deliver after 6 pm."},
                                       follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == f"/s/{token}?sent=1"
    for viewer in (None, "lh", "ua"):
        [message] = [e for e in await events(world, ref, partner=viewer) if e["type"] == "customer.message"]
        assert message["message"] == "Please deliver after 6 pm."
        assert message["actor"] == "customer" and message["visibility"] == "parties"
    page = (await world.client.get(f"/s/{token}?sent=1")).text
    assert "You wrote" in page and "Please deliver after 6 pm." in page
    assert "your message was sent" in page
    hooks = await webhook_rows(world, "customer.message")
    assert [(row.partner_id, row.recipient) for row in hooks] == [("ua", "https://hooks.ua.example/baton")]
    assert hooks[0].payload["data"]["message"] == "Please deliver after 6 pm."
    assert hooks[0].payload["data"]["case"]["ref"] == ref


@pytest.mark.parametrize("text", ["", "   \n  "])
async def test_an_empty_message_posts_nothing(world: World, text: str) -> None:
    await set_webhook_url(world, "ua", "https://hooks.ua.example/baton")
    case = await world.open_case()
    before = await events(world, case["ref"])

    response = await world.client.post(f"/s/{token_of(case)}/messages", data={"message": text},
                                       follow_redirects=False)

    assert response.status_code != 303
    assert await events(world, case["ref"]) == before
    assert await webhook_rows(world, "customer.message") == []


async def test_a_message_to_an_unknown_link_posts_nothing(world: World) -> None:
    case = await world.open_case()
    before = await events(world, case["ref"])
    response = await world.client.post(f"/s/{secrets.token_urlsafe(24)}/messages", data={"message": "Hello?"},
                                       follow_redirects=False)
    assert response.status_code == 404
    assert await events(world, case["ref"]) == before


# ---------------------------------------------------------------- satisfaction (criterion 6)


async def test_dissatisfied_customer_is_listed_for_the_complaint_department_apart_from_closure(
    world: World,
) -> None:
    case = await world.open_case()
    ref, token = case["ref"], token_of(case)
    closed = await world.as_admin("POST", f"/v1/cases/{ref}/close", json_body={"resolution": "Delivered to the hotel."})
    assert closed.status_code == 200, closed.text
    detail = await case_detail(world, ref)
    assert detail["closed_at"] is not None and detail["satisfaction"] is None
    page = (await world.client.get(f"/s/{token}")).text
    assert 'name="satisfied" value="no"' in page and 'name="satisfied" value="yes"' in page

    response = await world.client.post(f"/s/{token}/confirmation",
                                       data={"satisfied": "no", "comment": "The bag came back torn."},
                                       follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == f"/s/{token}?answered=dissatisfied"
    disputes = (await world.as_admin("GET", "/v1/disputes")).json()["items"]
    [dispute] = [d for d in disputes if d["case"] == ref]
    assert dispute["comment"] == "The bag came back torn."
    detail = await case_detail(world, ref)
    assert detail["closed_at"] == closed.json()["closed_at"] and detail["closed_at"] is not None
    assert detail["satisfaction"] == "dissatisfied"
    status = (await world.client.get(f"/v1/status/{token}")).json()
    assert status["satisfaction"] == "dissatisfied" and status["closed"] is True and status["can_confirm"] is False
    confirmation = [e for e in await events(world, ref, partner="ua") if e["type"] == "customer.confirmation"]
    assert [e["satisfaction"] for e in confirmation] == ["dissatisfied"]


async def test_satisfied_customer_is_not_a_dispute(world: World) -> None:
    case = await world.open_case()
    ref = case["ref"]
    assert (await world.as_admin("POST", f"/v1/cases/{ref}/close", json_body={"resolution": "Delivered."})).status_code == 200

    response = await world.client.post(f"/s/{token_of(case)}/confirmation", data={"satisfied": "yes"},
                                       follow_redirects=False)

    assert response.status_code == 303
    assert (await case_detail(world, ref))["satisfaction"] == "satisfied"
    assert [d["case"] for d in (await world.as_admin("GET", "/v1/disputes")).json()["items"]] == []


async def test_confirming_before_closure_is_refused_and_stores_nothing(world: World) -> None:
    case = await world.open_case()
    ref = case["ref"]
    before = await events(world, ref)

    response = await world.client.post(f"/s/{token_of(case)}/confirmation", data={"satisfied": "no", "comment": "?"},
                                       follow_redirects=False)

    assert response.status_code == 409
    assert response.headers["content-type"].startswith("text/html")
    assert "not resolved yet" in response.text
    detail = await case_detail(world, ref)
    assert detail["satisfaction"] is None and detail["closed_at"] is None
    assert await events(world, ref) == before
    assert (await world.as_admin("GET", "/v1/disputes")).json()["items"] == []


async def test_answering_twice_is_refused_and_keeps_the_first_answer(world: World) -> None:
    case = await world.open_case()
    ref, token = case["ref"], token_of(case)
    assert (await world.as_admin("POST", f"/v1/cases/{ref}/close", json_body={"resolution": "Delivered."})).status_code == 200
    first = await world.client.post(f"/s/{token}/confirmation", data={"satisfied": "no"}, follow_redirects=False)
    assert first.status_code == 303

    second = await world.client.post(f"/s/{token}/confirmation", data={"satisfied": "yes"}, follow_redirects=False)

    assert second.status_code == 409
    assert (await case_detail(world, ref))["satisfaction"] == "dissatisfied"
    assert len([e for e in await events(world, ref) if e["type"] == "customer.confirmation"]) == 1


# ---------------------------------------------------------------- unsubscribe


async def test_unsubscribe_stops_the_cases_emails_only(world: World) -> None:
    case = await world.open_case()
    ref, token = case["ref"], token_of(case)
    assert (await case_detail(world, ref))["customer"]["email_opted_out"] is False

    response = await world.client.post(f"/s/{token}/unsubscribe")

    assert response.status_code == 200
    customer = (await case_detail(world, ref))["customer"]
    assert customer["email_opted_out"] is True
    assert customer["sms_opted_out"] is False
    assert (await world.client.get(f"/s/{token}")).status_code == 200, "the page stays available"
