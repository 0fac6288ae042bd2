"""The Twilio double and the partner's webhook receiver, exercised with the real clients.

These tests pin what the app's tests rely on: the real ``twilio`` client talks to the double as to
Twilio (answers, error codes, transport failures), Twilio's signatures validate with Twilio's own
validator, and the receiver verifies exactly what ``standardwebhooks`` verifies.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import requests
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.support.twilio_double import (
    RebasedTwilioHttpClient,
    TwilioDouble,
    async_twilio_client_for,
    rebase_twilio_url,
    sms_segments,
    twilio_client_for,
)
from tests.support.webhook_receiver import Received, WebhookReceiver

CUSTOMER = "+4915112345678"
CALLBACK_URL = "https://baton.test/twilio/status"


@pytest.fixture
def client(twilio: TwilioDouble) -> Client:
    return twilio_client_for(twilio)


def send(client: Client, twilio: TwilioDouble, body: str = "Your bag is with SwiftCourier.", **kwargs: Any) -> Any:
    kwargs.setdefault("to", CUSTOMER)
    kwargs.setdefault("from_", twilio.phone_number)
    return client.messages.create(body=body, **kwargs)


# --- Twilio: sending --------------------------------------------------------------------------


def test_real_client_sends_sms_and_gets_twilios_message_resource(twilio: TwilioDouble, client: Client) -> None:
    message = send(client, twilio, status_callback=CALLBACK_URL)

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert (message.status, message.to, message.from_) == ("queued", CUSTOMER, twilio.phone_number)
    assert message.body == "Your bag is with SwiftCourier."
    assert message.account_sid == twilio.account_sid
    assert message.num_segments == "1" and message.error_code is None
    assert message.uri == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages/{message.sid}.json"
    assert isinstance(message.date_created, datetime)
    [sent] = twilio.wait_for(1)
    assert sent["sid"] == message.sid
    assert (sent["to"], sent["from"], sent["status_callback"]) == (CUSTOMER, twilio.phone_number, CALLBACK_URL)
    assert sent["account_sid"] == twilio.account_sid and sent["received_at"].tzinfo is not None


def test_messaging_service_send_is_accepted_without_a_sender(twilio: TwilioDouble, client: Client) -> None:
    message = send(client, twilio, from_=None, messaging_service_sid="MG" + "0" * 32)

    assert (message.status, message.from_, message.messaging_service_sid) == ("accepted", None, "MG" + "0" * 32)


def test_wrong_auth_token_is_refused_like_twilio(twilio: TwilioDouble) -> None:
    intruder = Client(twilio.account_sid, "wrong-token", http_client=RebasedTwilioHttpClient(twilio.url, timeout=5))

    with pytest.raises(TwilioRestException) as raised:
        send(intruder, twilio)

    assert (raised.value.status, raised.value.code) == (401, 20003)
    assert twilio.messages == [] and twilio.rejected == 1


def test_region_and_edge_do_not_lead_the_client_away_from_the_double(twilio: TwilioDouble) -> None:
    client = Client(
        twilio.account_sid,
        twilio.auth_token,
        region="ie1",
        edge="dublin",
        http_client=RebasedTwilioHttpClient(twilio.url, timeout=5),
    )

    send(client, twilio)

    assert len(twilio.messages) == 1


def test_rebase_replaces_only_twilio_hosts_and_keeps_a_path_prefix() -> None:
    rebased = rebase_twilio_url("https://api.dublin.ie1.twilio.com/2010-04-01/A.json?x=1", "http://proxy:81/twilio/")

    assert rebased == "http://proxy:81/twilio/2010-04-01/A.json?x=1"
    assert rebase_twilio_url("https://example.com/a", "http://proxy") == "https://example.com/a"
    with pytest.raises(ValueError, match="BATON_TWILIO_API_BASE"):
        RebasedTwilioHttpClient("127.0.0.1:8000")


async def test_async_client_sends_through_the_double(twilio: TwilioDouble) -> None:
    client = async_twilio_client_for(twilio)
    try:
        message = await client.messages.create_async(to=CUSTOMER, from_=twilio.phone_number, body="async")
    finally:
        await client.http_client.close()  # type: ignore[attr-defined]

    assert message.status == "queued"
    [sent] = await twilio.wait_for_async(1)
    assert sent["sid"] == message.sid


def test_same_sms_twice_is_reported_as_a_duplicate(twilio: TwilioDouble, client: Client) -> None:
    send(client, twilio, body="Case BAG-1 opened")
    send(client, twilio, body="Case BAG-1 opened")
    send(client, twilio, body="Something else")

    assert twilio.count(CUSTOMER, "Case BAG-1 opened") == 2
    assert twilio.duplicates() == {(CUSTOMER, "Case BAG-1 opened"): 2}


def test_segments_are_counted_as_twilio_counts_them(twilio: TwilioDouble, client: Client) -> None:
    assert [sms_segments("a" * 160), sms_segments("a" * 161), sms_segments("a" * 306), sms_segments("a" * 307)] == [
        1,
        2,
        2,
        3,
    ]
    assert sms_segments("€" * 80) == 1 and sms_segments("€" * 81) == 2  # an extension char costs two septets
    assert sms_segments("д" * 70) == 1 and sms_segments("д" * 71) == 2  # outside GSM-7: UCS-2

    assert send(client, twilio, body="ä" * 161).num_segments == "2"


# --- Twilio: errors on demand -----------------------------------------------------------------


@pytest.mark.parametrize(("code", "words"), [(21610, "unsubscribed recipient"), (21211, "Invalid 'To' Phone Number")])
def test_fail_with_a_twilio_code_raises_it_in_the_client(
    twilio: TwilioDouble, client: Client, code: int, words: str
) -> None:
    twilio.fail_with(status=400, code=code)

    with pytest.raises(TwilioRestException) as raised:
        send(client, twilio)

    assert (raised.value.status, raised.value.code) == (400, code)
    assert words in raised.value.msg
    assert twilio.messages == []
    twilio.recover()
    send(client, twilio)
    assert len(twilio.messages) == 1


def test_server_error_is_a_twilio_rest_exception_with_status_500(twilio: TwilioDouble, client: Client) -> None:
    twilio.fail_with(status=500)

    with pytest.raises(TwilioRestException) as raised:
        send(client, twilio)

    assert (raised.value.status, raised.value.code) == (500, 20500)


def test_fail_next_fails_only_that_many_sends(twilio: TwilioDouble, client: Client) -> None:
    twilio.fail_next(2, status=503)

    statuses = []
    for _ in range(2):
        with pytest.raises(TwilioRestException) as raised:
            send(client, twilio)
        statuses.append(raised.value.status)
    send(client, twilio)

    assert statuses == [503, 503]
    assert (twilio.attempts, twilio.rejected, len(twilio.messages)) == (3, 2, 1)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"to": "0151 1234"}, 21211),
        ({"from_": None}, 21603),
        ({"body": "x" * 1601}, 21617),
    ],
)
def test_invalid_requests_get_twilios_validation_errors(
    twilio: TwilioDouble, client: Client, overrides: dict[str, Any], code: int
) -> None:
    with pytest.raises(TwilioRestException) as raised:
        send(client, twilio, **overrides)

    assert (raised.value.status, raised.value.code) == (400, code)


def test_opted_out_recipient_gets_21610_and_others_still_get_sms(twilio: TwilioDouble, client: Client) -> None:
    twilio.opt_out(CUSTOMER)

    with pytest.raises(TwilioRestException) as raised:
        send(client, twilio)
    send(client, twilio, to="+33612345678")

    assert raised.value.code == 21610
    assert [m["to"] for m in twilio.messages] == ["+33612345678"]


def test_hanging_provider_times_the_client_out_but_the_sms_was_sent(twilio: TwilioDouble) -> None:
    impatient = twilio_client_for(twilio, timeout=0.3)
    twilio.hang(5)

    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        send(impatient, twilio)

    assert time.monotonic() - started < 2
    assert len(twilio.wait_for(1)) == 1  # so a blind retry would send it twice
    twilio.recover()
    send(impatient, twilio)
    assert twilio.duplicates() == {(CUSTOMER, "Your bag is with SwiftCourier."): 2}


def test_default_http_client_waits_forever_which_is_why_the_recipe_sets_a_timeout() -> None:
    assert TwilioHttpClient().timeout is None


def test_stopped_double_refuses_connections_until_started_on_the_same_port(
    twilio: TwilioDouble, client: Client
) -> None:
    url = twilio.url
    twilio.stop()

    with pytest.raises(requests.ConnectionError):
        send(client, twilio)

    twilio.start()
    send(client, twilio)
    assert twilio.url == url and len(twilio.messages) == 1


def test_a_slow_client_does_not_hold_up_others(twilio: TwilioDouble) -> None:
    with _half_sent_request(twilio.messages_url):
        send(twilio_client_for(twilio, timeout=1), twilio)

    assert len(twilio.messages) == 1


# --- Twilio: webhooks -------------------------------------------------------------------------


def test_status_callback_is_signed_so_that_twilios_validator_accepts_it(twilio: TwilioDouble, client: Client) -> None:
    sid = send(client, twilio, status_callback=CALLBACK_URL).sid
    seen: list[httpx.Request] = []

    def app(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    response = twilio.deliver(sid, "undelivered", error_code=30003, transport=httpx.MockTransport(app))

    [request] = seen
    params = dict(parse_qsl(request.content.decode()))
    signature = request.headers["X-Twilio-Signature"]
    assert response.status_code == 204 and str(request.url) == CALLBACK_URL
    assert RequestValidator(twilio.auth_token).validate(str(request.url), params, signature)
    assert not RequestValidator("another-token").validate(str(request.url), params, signature)
    assert params["MessageSid"] == params["SmsSid"] == sid
    assert (params["MessageStatus"], params["ErrorCode"], params["To"]) == ("undelivered", "30003", CUSTOMER)
    assert params["AccountSid"] == twilio.account_sid and params["From"] == twilio.phone_number
    assert twilio.messages[0]["status"] == "undelivered"


async def test_status_callback_reaches_an_in_process_asgi_app(twilio: TwilioDouble, client: Client) -> None:
    sid = send(client, twilio, status_callback=CALLBACK_URL).sid

    async def status(request: Request) -> PlainTextResponse:
        form = dict(await request.form())
        valid = RequestValidator(twilio.auth_token).validate(
            str(request.url), form, request.headers.get("X-Twilio-Signature", "")
        )
        return PlainTextResponse(form["MessageStatus"], status_code=200 if valid else 403)

    app = Starlette(routes=[Route("/twilio/status", status, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as asgi:
        response = await twilio.adeliver(sid, "delivered", client=asgi)

    assert (response.status_code, response.text) == (200, "delivered")


def test_status_callback_needs_a_known_message_with_a_callback_url(twilio: TwilioDouble, client: Client) -> None:
    sid = send(client, twilio).sid  # no StatusCallback

    with pytest.raises(ValueError, match="without a StatusCallback"):
        twilio.deliver(sid)
    with pytest.raises(KeyError):
        twilio.deliver("SM" + "0" * 32)


def test_inbound_sms_is_signed_like_twilios(twilio: TwilioDouble) -> None:
    url = "https://baton.test/twilio/inbound"
    params, headers = twilio.inbound_sms(url, from_=CUSTOMER, body="STATUS BAG-1")
    validator = RequestValidator(twilio.auth_token)

    assert validator.validate(url, params, headers["X-Twilio-Signature"])
    assert not validator.validate(url, {**params, "Body": "STOP"}, headers["X-Twilio-Signature"])
    assert (params["From"], params["To"], params["Body"], params["NumMedia"]) == (
        CUSTOMER,
        twilio.phone_number,
        "STATUS BAG-1",
        "0",
    )
    assert params["MessageSid"].startswith("SM") and params["AccountSid"] == twilio.account_sid
    assert twilio.sign(url, params) == headers["X-Twilio-Signature"]


# --- the partner's webhook receiver -----------------------------------------------------------


SECRET = "whsec_" + base64.b64encode(b"partner-secret-0123456789abcdef!").decode()


@pytest.fixture
def partner() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as receiver:
        yield receiver


def signed(
    payload: dict[str, Any], *, secret: str = SECRET, webhook_id: str | None = None, at: datetime | None = None
) -> tuple[bytes, dict[str, str]]:
    """A Standard Webhooks request as Baton sends it, signed by the library itself."""
    webhook_id = webhook_id or f"msg_{secrets.token_hex(8)}"
    at = at or datetime.now(UTC)
    body = json.dumps(payload)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
        "content-type": "application/json",
    }
    return body.encode(), headers


# One client for all: building one costs an SSL context, tens of milliseconds a test.
_http = httpx.Client(trust_env=False)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 5.0) -> httpx.Response:
    return _http.post(url, content=body, headers=headers, timeout=timeout)


EVENT = {"type": "party.late", "data": {"case": "BAG-1", "party": "SwiftCourier"}}


def test_receiver_verifies_a_standard_webhook(partner: WebhookReceiver) -> None:
    body, headers = signed(EVENT, webhook_id="msg_1")

    response = post(partner.url, body, headers)

    assert response.status_code == 204
    [received] = partner.wait_for(1)
    assert received == Received("msg_1", EVENT, True, received.headers)
    assert received.headers["webhook-signature"] == headers["webhook-signature"]
    assert partner.url.endswith("/baton")


def test_receiver_rejects_and_records_a_wrongly_signed_webhook(partner: WebhookReceiver) -> None:
    other_secret = "whsec_" + base64.b64encode(b"not-the-partner-secret-at-all!!!").decode()
    body, headers = signed(EVENT, secret=other_secret, webhook_id="msg_forged")

    response = post(partner.url, body, headers)

    assert response.status_code == 401
    [(webhook_id, payload, verified, _)] = partner.received
    assert (webhook_id, payload, verified) == ("msg_forged", EVENT, False)
    assert partner.rejections == [("msg_forged", "No matching signature found")]


def test_receiver_rejects_a_tampered_body(partner: WebhookReceiver) -> None:
    body, headers = signed(EVENT)

    response = post(partner.url, body.replace(b"BAG-1", b"BAG-2"), headers)

    assert response.status_code == 401 and not partner.received[0].verified


def test_stale_timestamp_fails_unless_the_timestamp_check_is_off() -> None:
    long_ago = datetime.now(UTC) - timedelta(days=3)
    body, headers = signed(EVENT, at=long_ago)
    forged_body, forged_headers = signed(EVENT, at=long_ago, secret="whsec_" + base64.b64encode(b"x" * 32).decode())

    with WebhookReceiver(SECRET) as strict, WebhookReceiver(SECRET, check_timestamp=False) as frozen_clock_friendly:
        assert post(strict.url, body, headers).status_code == 401
        assert post(frozen_clock_friendly.url, body, headers).status_code == 204
        assert post(frozen_clock_friendly.url, forged_body, forged_headers).status_code == 401

        assert strict.rejections == [(headers["webhook-id"], "Message timestamp too old")]
        assert [item.verified for item in frozen_clock_friendly.received] == [True, False]


def test_same_webhook_id_twice_is_a_duplicate(partner: WebhookReceiver) -> None:
    body, headers = signed(EVENT, webhook_id="msg_again")
    post(partner.url, body, headers)
    post(partner.url, body, headers)
    post(partner.url, *signed(EVENT, webhook_id="msg_other"))

    assert partner.duplicates() == {"msg_again": 2}
    assert (partner.count("msg_again"), partner.count("msg_other")) == (2, 1)


def test_failing_receiver_answers_500_without_processing_until_recovered(partner: WebhookReceiver) -> None:
    partner.fail_with(500)
    body, headers = signed(EVENT, webhook_id="msg_retry")

    first = post(partner.url, body, headers)
    partner.recover()
    second = post(partner.url, body, headers)

    assert (first.status_code, second.status_code) == (500, 204)
    assert [item.webhook_id for item in partner.attempts] == ["msg_retry", "msg_retry"]
    assert len(partner.received) == 1 and partner.duplicates() == {}


def test_fail_next_fails_only_that_many_requests(partner: WebhookReceiver) -> None:
    partner.fail_next(2, status=503)

    statuses = [post(partner.url, *signed(EVENT)).status_code for _ in range(3)]

    assert statuses == [503, 503, 204]


def test_refused_receiver_listens_again_on_the_same_port(partner: WebhookReceiver) -> None:
    url = partner.url
    partner.refuse()

    with pytest.raises(httpx.ConnectError):
        post(url, *signed(EVENT))

    partner.accept()
    assert post(url, *signed(EVENT)).status_code == 204
    assert partner.url == url


def test_hanging_receiver_times_the_sender_out_after_processing(partner: WebhookReceiver) -> None:
    partner.hang(5)
    body, headers = signed(EVENT, webhook_id="msg_slow")

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        post(partner.url, body, headers, timeout=0.5)

    assert time.monotonic() - started < 2
    assert partner.wait_for(1)[0].webhook_id == "msg_slow"  # a retry will be a duplicate
    partner.recover()
    assert post(partner.url, body, headers, timeout=0.5).status_code == 204


def test_receiver_answers_404_elsewhere(partner: WebhookReceiver) -> None:
    response = post(partner.url.removesuffix("/baton") + "/elsewhere", *signed(EVENT))

    assert response.status_code == 404 and partner.attempts == []


def test_a_slow_sender_does_not_hold_up_others(partner: WebhookReceiver) -> None:
    with _half_sent_request(partner.url):
        assert post(partner.url, *signed(EVENT), timeout=1).status_code == 204


def test_stop_is_quick_even_with_an_answer_hanging() -> None:
    receiver = WebhookReceiver(SECRET).accept()
    receiver.hang(30)
    sender = threading.Thread(target=_post_quietly, args=(receiver.url,))
    sender.start()
    receiver.wait_for(1)

    started = time.monotonic()
    receiver.refuse()
    sender.join(timeout=2)

    assert time.monotonic() - started < 1 and not sender.is_alive()


# --- helpers ----------------------------------------------------------------------------------


@contextmanager
def _half_sent_request(url: str) -> Iterator[None]:
    """A client that sends headers and half a body, then stalls: one server thread is stuck
    reading it, so a server without a thread per request would answer nobody else."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as stalled:
        stalled.sendall(f"POST {parts.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf".encode())
        yield


def _post_quietly(url: str) -> None:
    try:
        post(url, *signed(EVENT), timeout=10)
    except httpx.HTTPError:
        pass
