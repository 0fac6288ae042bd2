"""A local Twilio REST API for tests: the real ``twilio`` client sends SMS to it over HTTP.

    with TwilioDouble() as twilio:
        settings = Settings(**twilio.settings())  # the four BATON_TWILIO_* values, base http://127.0.0.1:PORT
        ...  # code under test sends an SMS with the real twilio client
        [sms] = twilio.wait_for(1)
        assert sms["to"] == "+4915112345678"
        twilio.deliver(sms["sid"], "delivered")  # signed status callback to sms["status_callback"]

It answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` as Twilio does (Basic auth
checked, 201 with a Message resource, errors as Twilio's ``{"code", "message", "more_info",
"status"}`` JSON), so the code under test runs its real client, its real HTTP stack and its real
error handling. It also plays Twilio's side of webhooks: signed status callbacks (``deliver``,
``adeliver``) and signed inbound SMS (``inbound_sms``, ``sign``).

Pointing the real twilio client (9.x) at ``BATON_TWILIO_API_BASE``
-----------------------------------------------------------------
The client has no base-URL option. Every resource URL is built from a domain base hard-coded in
the generated code (``twilio.rest.api.ApiBase`` → ``"https://api.twilio.com"``), rewritten for
``edge``/``region`` (also read from ``TWILIO_EDGE``/``TWILIO_REGION``) by
``ClientBase.get_hostname``, and only then handed to ``client.http_client.request(method, url,
...)``. That ``http_client`` is the one seam the client offers (a constructor argument, documented
for proxies and custom transports), so the app should rebase the URL there::

        from twilio.rest import Client

    class RebasedTwilioHttpClient(TwilioHttpClient):   # as defined in this module
        def __init__(self, api_base, **kwargs): ...
        def request(self, method, url, *args, **kwargs):
            return super().request(method, rebase_twilio_url(url, self.api_base), *args, **kwargs)

    http_client = (
        RebasedTwilioHttpClient(settings.twilio_api_base, timeout=10)
        if settings.twilio_api_base
        else TwilioHttpClient(timeout=10)
    )
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=http_client)
    client.messages.create(to=..., from_=settings.twilio_from, body=..., status_callback=...)

``rebase_twilio_url("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
"http://127.0.0.1:8000")`` gives ``"http://127.0.0.1:8000/2010-04-01/Accounts/AC1/Messages.json"``;
any ``*.twilio.com`` host is replaced (so edge/region settings cannot leak a real host) and a path
prefix in the base is kept (``http://proxy/twilio`` → ``http://proxy/twilio/2010-04-01/...``).
For the async API (``messages.create_async``) subclass ``twilio.http.async_http_client.
AsyncTwilioHttpClient`` the same way (``AsyncRebasedTwilioHttpClient`` here).

Not recommended: ``client.api.base_url = api_base``. It works for ``api.twilio.com`` only, and
with an edge or region set ``get_hostname`` splits ``127.0.0.1:8000`` on dots and builds a
nonsense host. Always pass a ``timeout``: ``TwilioHttpClient`` waits forever by default, and a
hanging provider (``hang``) then blocks the sender. A timeout or a refused connection surfaces as a
``requests`` exception (``requests.Timeout``, ``requests.ConnectionError``), not as
``TwilioRestException``: both are transient. Twilio's answers surface as
``TwilioRestException`` with ``.status`` and ``.code``: 5xx and 429 are transient, 21610
(unsubscribed recipient) and 21211 (invalid 'To' number) are permanent.

Trouble on demand: ``fail_with(...)`` until ``recover()``; ``fail_next(n, ...)`` for the next
``n`` requests only; ``opt_out(number)`` makes sends to one number fail with 21610 as after a
STOP; ``hang(seconds)`` answers late (the message still counts as sent, as with a slow real
provider: this is how a retry after a timeout sends an SMS twice, see ``duplicates()``);
``stop()`` closes the port (connection refused) until ``start()`` opens it again.

WhatsApp
--------
The same endpoint takes WhatsApp messages: ``To``/``From`` as ``whatsapp:+E164`` (both or
neither, else 21910), and either a ``Body`` (free text) or a ``ContentSid`` with
``ContentVariables`` (an approved template; kept as ``content_sid``/``content_variables``).
Twilio's 24-hour rule is enforced: free text to a number that has not written in the last 24
hours is refused with 63016 (HTTP 400, Twilio's error shape), a template is always accepted.
"Has written" is what ``customer_wrote(number, at=...)`` says, and what ``inbound_sms`` with a
``whatsapp:`` sender records; "now" is ``clock()`` (give the test's injected clock's ``now`` so
the double and the code under test agree on the time)::

    with TwilioDouble(clock=world.clock.now) as twilio:
        settings = Settings(**twilio.settings(), **twilio.whatsapp_settings())
        twilio.customer_wrote("+4915112345678")  # or: params, headers = twilio.inbound_sms(url, "whatsapp:+49...", "STATUS")
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import math
import re
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, TypedDict
from urllib.parse import parse_qs, urlsplit

import httpx
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

# The app's own rebasing client is what Baton runs in production; the double uses the same one.
from notifications.sms import RebasedTwilioHttpClient, rebase_twilio_url
from tests.support._http import Reply, Server, free_port

__all__ = [
    "AsyncRebasedTwilioHttpClient",
    "RebasedTwilioHttpClient",
    "SentMessage",
    "TwilioDouble",
    "async_twilio_client_for",
    "rebase_twilio_url",
    "sms_segments",
    "twilio_client_for",
]

API_VERSION = "2010-04-01"
MESSAGE_STATUSES = frozenset(
    {"accepted", "scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "canceled"}
)

# Twilio error codes the double can answer with: code -> (HTTP status, message).
_ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource {path} was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "An internal server error has occurred"),
    20503: (503, "Service Unavailable"),
    21211: (400, "Invalid 'To' Phone Number: {to}"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21910: (400, "Invalid From and To pair. From and To should be of the same channel"),
    63016: (400, "Failed to send freeform message because you are outside the allowed window. If you are using "
                 "WhatsApp, please use a Message Template."),
}
# The code Twilio uses for a bare HTTP status, when a failure is asked for by status only.
_CODE_FOR_STATUS = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
WHATSAPP = "whatsapp:"
WHATSAPP_WINDOW = dt.timedelta(hours=24)
_MESSAGES_PATH = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages\.json$")


# One message the double accepted, as the client sent it plus what Twilio adds. The functional
# syntax because "from" is a keyword.
SentMessage = TypedDict(
    "SentMessage",
    {
        "sid": str,
        "account_sid": str,
        "to": str,
        "from": str | None,
        "messaging_service_sid": str | None,
        "body": str,
        "content_sid": str | None,
        "content_variables": str | None,
        "status_callback": str | None,
        "status": str,
        "num_segments": int,
        "received_at": dt.datetime,
    },
)


# --- pointing the real client at the double ---------------------------------------------------


def _checked_api_base(api_base: str) -> str:
    parts = urlsplit(api_base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"BATON_TWILIO_API_BASE must be an http(s) URL such as http://127.0.0.1:8000, not {api_base!r}"
        )
    return api_base


class AsyncRebasedTwilioHttpClient(AsyncTwilioHttpClient):
    """Twilio's aiohttp client, sending to ``api_base``, for ``messages.create_async``.

    Unlike the sync client, ``AsyncTwilioHttpClient`` ignores its own ``timeout`` and hands
    aiohttp ``timeout=None``, which means no timeout at all; this subclass applies it. It also
    sends the credentials as an ``Authorization`` header: aiohttp deprecates its ``auth``
    argument (a DeprecationWarning on every send). Create it inside the event loop and
    ``await http_client.close()`` when done.
    """

    def __init__(self, api_base: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_base = _checked_api_base(api_base)

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if auth is not None:
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers = {**(headers or {}), "Authorization": f"Basic {credentials}"}
        return await super().request(
            method,
            rebase_twilio_url(url, self.api_base),
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )


def twilio_client_for(double: TwilioDouble, *, timeout: float = 5.0) -> Client:
    """The real ``twilio.rest.Client`` with the double's credentials, sending to the double."""
    http_client = RebasedTwilioHttpClient(double.url, timeout=timeout)
    return Client(double.account_sid, double.auth_token, http_client=http_client)


def async_twilio_client_for(double: TwilioDouble, *, timeout: float = 5.0) -> Client:
    """Like ``twilio_client_for``, for ``create_async``; call it inside the running event loop
    and ``await client.http_client.close()`` afterwards."""
    http_client = AsyncRebasedTwilioHttpClient(double.url, timeout=timeout)
    return Client(double.account_sid, double.auth_token, http_client=http_client)


# --- the double -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Failure:
    """An error answer in Twilio's shape; ``message`` may name ``{to}`` and ``{path}``."""

    status: int
    code: int
    message: str

    @classmethod
    def of(cls, status: int | None, code: int | None, message: str | None) -> _Failure:
        if status is None and code is None:
            status = 500
        if code is None:
            assert status is not None
            code = _CODE_FOR_STATUS.get(status, 20000 + status)
        known_status, known_message = _ERRORS.get(code, (None, None))
        status = status or known_status or 400
        if not 400 <= status <= 599:
            raise ValueError(f"a Twilio failure is a 4xx or 5xx status, not {status}")
        return cls(status, code, message or known_message or f"Error {code} (Twilio double)")

    def reply(self, **context: str) -> Reply:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message.format_map(_Blank(context)),
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        headers: tuple[tuple[str, str], ...] = ()
        if self.code == 20003:
            body["detail"] = "Your AccountSid or AuthToken was incorrect."
            headers = (("WWW-Authenticate", 'Basic realm="Twilio API"'),)
        return Reply.json(self.status, body, headers)


class _Blank(dict[str, str]):
    """Leaves unknown ``{placeholders}`` in a custom failure message empty instead of failing."""

    def __missing__(self, key: str) -> str:
        return ""


class TwilioDouble:
    """Twilio's Messages API on 127.0.0.1, keeping what it accepts; a context manager."""

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        phone_number: str = "+15005550006",
        callback_transport: httpx.BaseTransport | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        """Credentials are random unless given; ``phone_number`` is the account's own number
        (Twilio's magic test "From"), used as sender for Messaging Service sends and as the
        default recipient of ``inbound_sms``. ``callback_transport`` is where ``deliver`` sends
        status callbacks (e.g. ``httpx.WSGITransport``); by default over a real socket.
        ``clock`` is "now" for WhatsApp's 24-hour window (default: the wall clock); it may be
        replaced later (``twilio.clock = world.clock.now``)."""
        self.host = "127.0.0.1"
        self.port = free_port()
        self.account_sid = account_sid or f"AC{secrets.token_hex(16)}"
        self.auth_token = auth_token or secrets.token_hex(16)
        self.phone_number = phone_number
        self.callback_transport = callback_transport
        self._server: Server | None = None
        self._changed = threading.Condition()
        self._messages: list[SentMessage] = []
        self._attempts = 0
        self._rejected = 0
        self._failure: _Failure | None = None
        self._failures_next: list[_Failure] = []
        self._hang: tuple[float, threading.Event] | None = None
        self._opted_out: set[str] = set()
        self.clock: Callable[[], dt.datetime] = clock or (lambda: dt.datetime.now(dt.UTC))
        self._whatsapp_wrote: dict[str, dt.datetime] = {}

    @property
    def url(self) -> str:
        """The API base, ``http://127.0.0.1:PORT``: the value for ``BATON_TWILIO_API_BASE``."""
        return f"http://{self.host}:{self.port}"

    def settings(self) -> dict[str, str]:
        """The four ``BATON_TWILIO_*`` settings that point Baton's real client at this double."""
        return {"twilio_account_sid": self.account_sid, "twilio_auth_token": self.auth_token,
                "twilio_from": self.phone_number, "twilio_api_base": self.url}

    def whatsapp_settings(self) -> dict[str, str]:
        """``BATON_TWILIO_WHATSAPP_FROM``: the account's number as a WhatsApp sender."""
        return {"twilio_whatsapp_from": f"{WHATSAPP}{self.phone_number}"}

    def customer_wrote(self, number: str, at: dt.datetime | None = None) -> None:
        """``number`` (``+E164`` or ``whatsapp:+E164``) sent a WhatsApp message at ``at`` (default
        ``clock()``): free text to it is allowed for 24 hours from then."""
        with self._changed:
            self._whatsapp_wrote[number.removeprefix(WHATSAPP)] = at or self.clock()

    @property
    def messages_url(self) -> str:
        """Where the client POSTs messages for this account."""
        return f"{self.url}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Listen (again, on the same port). Does nothing if already listening."""
        if self._server is None:
            self._server = Server((self.host, self.port), self._respond, name="twilio-double")
        return self

    def stop(self) -> None:
        """Stop listening: clients get "connection refused". Hung answers are released and the
        hang ends."""
        with self._changed:
            if self._hang is not None:
                self._hang[1].set()
            self._hang = None
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<TwilioDouble {self.url} messages={len(self._messages)}>"

    # --- what arrived -------------------------------------------------------------------

    @property
    def messages(self) -> list[SentMessage]:
        """The messages accepted so far, oldest first (copies: status follows ``deliver``)."""
        with self._changed:
            return [message.copy() for message in self._messages]

    @property
    def attempts(self) -> int:
        """How many requests reached the Messages endpoint, accepted or not: retries show here."""
        with self._changed:
            return self._attempts

    @property
    def rejected(self) -> int:
        """How many of those were answered with an error (injected, invalid or unauthorized)."""
        with self._changed:
            return self._rejected

    def count(self, to: str, body: str) -> int:
        """How many times this exact SMS was accepted."""
        with self._changed:
            return sum(1 for m in self._messages if m["to"] == to and m["body"] == body)

    def duplicates(self) -> dict[tuple[str, str], int]:
        """``(to, body)`` accepted more than once, with how often: an SMS the customer got twice."""
        with self._changed:
            counts = Counter((m["to"], m["body"]) for m in self._messages)
        return {key: n for key, n in counts.items() if n > 1}

    def clear(self) -> None:
        """Forget the messages and the counts of attempts and rejections."""
        with self._changed:
            self._messages.clear()
            self._attempts = self._rejected = 0

    def wait_for(self, n: int = 1, timeout: float = 5.0) -> list[SentMessage]:
        """Block until at least ``n`` messages were accepted; return them all.

        Raises TimeoutError when fewer than ``n`` arrive within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._messages) >= n, timeout):
                raise TimeoutError(f"expected {n} SMS within {timeout}s, got {len(self._messages)}")
        return self.messages

    async def wait_for_async(self, n: int = 1, timeout: float = 5.0) -> list[SentMessage]:
        """``wait_for`` without blocking the event loop (the sender may run on it)."""
        return await asyncio.to_thread(self.wait_for, n, timeout)

    # --- trouble ------------------------------------------------------------------------

    def fail_with(self, status: int | None = None, *, code: int | None = None, message: str | None = None) -> None:
        """Answer every send with this Twilio error until ``recover()``.

        ``fail_with(500)`` is a transient server error (code 20500); ``fail_with(code=21610)``
        an unsubscribed recipient and ``fail_with(code=21211)`` an invalid 'To' number (both
        400, permanent). Status and code complete each other from Twilio's catalogue.
        """
        failure = _Failure.of(status, code, message)
        with self._changed:
            self._failure = failure

    def fail_next(
        self, n: int = 1, status: int | None = None, *, code: int | None = None, message: str | None = None
    ) -> None:
        """Answer only the next ``n`` sends with this error (see ``fail_with``), then as before."""
        failure = _Failure.of(status, code, message)
        with self._changed:
            self._failures_next.extend([failure] * n)

    def hang(self, seconds: float) -> None:
        """Answer every request ``seconds`` late until ``recover()`` (or ``stop()``).

        The message is accepted on arrival, as a slow provider would: a client that times out
        and retries sends it twice.
        """
        with self._changed:
            if self._hang is not None:
                self._hang[1].set()
            self._hang = (seconds, threading.Event())

    def opt_out(self, number: str) -> None:
        """Sends to ``number`` fail with 21610, as after the recipient texted STOP."""
        with self._changed:
            self._opted_out.add(number)

    def opt_in(self, number: str) -> None:
        """Undo ``opt_out``, as after START."""
        with self._changed:
            self._opted_out.discard(number)

    def recover(self) -> None:
        """Answer normally again; hung answers are released at once."""
        with self._changed:
            self._failure = None
            self._failures_next.clear()
            if self._hang is not None:
                self._hang[1].set()
            self._hang = None

    # --- Twilio's webhooks --------------------------------------------------------------

    def sign(self, url: str, params: dict[str, str]) -> str:
        """``X-Twilio-Signature`` for a form POST of ``params`` to ``url`` (the full public URL)."""
        return RequestValidator(self.auth_token).compute_signature(url, params)

    def status_callback_request(
        self, sid: str, status: str = "delivered", error_code: int | None = None
    ) -> tuple[str, dict[str, str], dict[str, str]]:
        """Move message ``sid`` to ``status`` and build Twilio's signed callback for it.

        Returns ``(url, params, headers)``; ``deliver`` and ``adeliver`` send it.
        """
        if status not in MESSAGE_STATUSES:
            raise ValueError(f"unknown message status {status!r}; one of {sorted(MESSAGE_STATUSES)}")
        with self._changed:
            message = next((m for m in self._messages if m["sid"] == sid), None)
            if message is None:
                raise KeyError(f"no message {sid} was accepted by {self!r}")
            url = message["status_callback"]
            if not url:
                raise ValueError(f"message {sid} was sent without a StatusCallback")
            message["status"] = status
            params = {
                "AccountSid": message["account_sid"],
                "ApiVersion": API_VERSION,
                "From": message["from"] or self.phone_number,
                "MessageSid": sid,
                "MessageStatus": status,
                "SmsSid": sid,
                "SmsStatus": status,
                "To": message["to"],
            }
            if message["messaging_service_sid"]:
                params["MessagingServiceSid"] = message["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return url, params, self._webhook_headers(url, params)

    def deliver(
        self,
        sid: str,
        status: str = "delivered",
        error_code: int | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 5.0,
    ) -> httpx.Response:
        """POST the signed status callback of message ``sid`` to its ``StatusCallback`` URL.

        Through ``transport`` or else ``callback_transport`` (e.g. ``httpx.MockTransport``),
        else over a real socket; for an ASGI app use ``adeliver``. Returns the app's answer;
        Twilio would not retry it.
        """
        url, params, headers = self.status_callback_request(sid, status, error_code)
        transport = transport or self.callback_transport
        with httpx.Client(transport=transport, timeout=timeout, trust_env=False) as client:
            return client.post(url, data=params, headers=headers)

    async def adeliver(
        self,
        sid: str,
        status: str = "delivered",
        error_code: int | None = None,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """``deliver`` on the event loop, through ``client`` if given, e.g.
        ``httpx.AsyncClient(transport=httpx.ASGITransport(app=app))`` for an in-process app."""
        url, params, headers = self.status_callback_request(sid, status, error_code)
        if client is not None:
            return await client.post(url, data=params, headers=headers)
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as own_client:
            return await own_client.post(url, data=params, headers=headers)

    def inbound_sms(
        self, url: str, from_: str, body: str, to: str | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The form fields and headers Twilio POSTs to ``url`` when ``from_`` texts ``body`` to
        ``to`` (default: the account's ``phone_number``), signed with the auth token. A
        ``whatsapp:`` sender writes over WhatsApp: to the account's WhatsApp address, and its
        24-hour window opens (``customer_wrote``)."""
        sid = f"SM{secrets.token_hex(16)}"
        if from_.startswith(WHATSAPP):
            to = to or f"{WHATSAPP}{self.phone_number}"
            self.customer_wrote(from_)
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "Body": body,
            "From": from_,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": str(sms_segments(body)),
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to or self.phone_number,
        }
        return params, self._webhook_headers(url, params)

    def _webhook_headers(self, url: str, params: dict[str, str]) -> dict[str, str]:
        return {
            "X-Twilio-Signature": self.sign(url, params),
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }

    # --- called from the server's threads -----------------------------------------------

    def _respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """1. Unknown path: 404; other method than POST: 405 (Twilio's codes).
        2. Basic auth must name this account and its token: else 401 (20003).
        3. An injected failure (``fail_next`` first, then ``fail_with``) answers instead.
        4. The request is validated as Twilio does (missing fields, 1600 characters, E.164
           'To', opted-out recipient), else accepted: recorded and answered 201.
        While ``hang`` is on, every answer is held back, the decision is not.
        """
        path = urlsplit(target).path
        match = _MESSAGES_PATH.match(path)
        with self._changed:
            delay = self._hang
            if match is None:
                return _Failure.of(404, None, None).reply(path=path).delayed(delay)
            if method != "POST":
                return _Failure(405, 20004, "Method not allowed").reply().delayed(delay)
            self._attempts += 1
            if not self._authorized(headers.get("authorization", ""), match["account"]):
                self._rejected += 1
                return _Failure.of(401, None, None).reply().delayed(delay)
            form = {
                key: values[0]
                for key, values in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items()
            }
            failure = self._failures_next.pop(0) if self._failures_next else self._failure
            failure = failure or self._invalid(form)
            if failure is not None:
                self._rejected += 1
                return failure.reply(to=form.get("To", ""), path=path).delayed(delay)
            message = self._accept(form)
            self._messages.append(message)
            self._changed.notify_all()
        return Reply.json(201, _resource(message)).delayed(delay)

    def _authorized(self, authorization: str, account_sid: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (
            scheme.lower() == "basic"
            and secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password, self.auth_token)
            and account_sid == self.account_sid
        )

    def _invalid(self, form: dict[str, str]) -> _Failure | None:
        to = form.get("To", "")
        if not to:
            return _Failure.of(None, 21604, None)
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return _Failure.of(None, 21603, None)
        if not form.get("Body") and not form.get("MediaUrl") and not form.get("ContentSid"):
            return _Failure.of(None, 21602, None)
        if len(form.get("Body", "")) > 1600:
            return _Failure.of(None, 21617, None)
        whatsapp = to.startswith(WHATSAPP)
        if not _E164.match(to.removeprefix(WHATSAPP)):
            return _Failure.of(None, 21211, None)
        sender = form.get("From", "")
        if sender and sender.startswith(WHATSAPP) != whatsapp:
            return _Failure.of(None, 21910, None)
        if to in self._opted_out:
            return _Failure.of(None, 21610, None)
        if whatsapp and not form.get("ContentSid"):
            wrote = self._whatsapp_wrote.get(to.removeprefix(WHATSAPP))
            if wrote is None or self.clock() - wrote >= WHATSAPP_WINDOW:
                return _Failure.of(None, 63016, None)
        return None

    def _accept(self, form: dict[str, str]) -> SentMessage:
        body = form.get("Body", "")
        service = form.get("MessagingServiceSid") or None
        sender = form.get("From") or None
        message: SentMessage = {
            "sid": f"SM{secrets.token_hex(16)}",
            "account_sid": self.account_sid,
            "to": form["To"],
            "from": sender,
            "messaging_service_sid": service,
            "body": body,
            "content_sid": form.get("ContentSid") or None,
            "content_variables": form.get("ContentVariables") or None,
            "status_callback": form.get("StatusCallback") or None,
            # Without a From, Twilio first "accepts" and picks a sender from the service's pool.
            "status": "queued" if sender else "accepted",
            "num_segments": sms_segments(body),
            "received_at": dt.datetime.now(dt.UTC),
        }
        return message


def _resource(message: SentMessage) -> dict[str, Any]:
    """The Message resource as Twilio's API returns it (strings where Twilio has strings)."""
    uri = f"/{API_VERSION}/Accounts/{message['account_sid']}/Messages/{message['sid']}.json"
    created = message["received_at"].strftime("%a, %d %b %Y %H:%M:%S +0000")
    return {
        "account_sid": message["account_sid"],
        "api_version": API_VERSION,
        "body": message["body"],
        "date_created": created,
        "date_sent": None,
        "date_updated": created,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": message["from"],
        "messaging_service_sid": message["messaging_service_sid"],
        "num_media": "0",
        "num_segments": str(message["num_segments"]),
        "price": None,
        "price_unit": "USD",
        "sid": message["sid"],
        "status": message["status"],
        "subresource_uris": {"media": uri.removesuffix(".json") + "/Media.json"},
        "to": message["to"],
        "uri": uri,
    }


# GSM 03.38: the basic set costs one septet a character, the extension table two (escape + char).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


def sms_segments(body: str) -> int:
    """How many segments an SMS of ``body`` takes: GSM-7 160 alone / 153 concatenated, else
    UCS-2 70 / 67 UTF-16 units. Lets tests check the "within two segments" rule as Twilio counts."""
    if all(char in _GSM_BASIC or char in _GSM_EXTENSION for char in body):
        units, single, multi = sum(2 if char in _GSM_EXTENSION else 1 for char in body), 160, 153
    else:
        units, single, multi = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / multi)
