"""SMS through the real ``twilio`` client, optionally pointed at another base URL.

``BATON_TWILIO_API_BASE`` (a local test double, a regional proxy) is applied at the one seam the
client offers, its ``http_client``: every request URL on a ``*.twilio.com`` host is rebased onto
the configured base before it is sent. Twilio's client is synchronous (``requests``), so sends
run in a small thread pool of their own, each with a timeout (its default is to wait forever).

WhatsApp goes through the same client from a ``whatsapp:+E164`` sender to ``whatsapp:+E164``
recipients; a message the renderer gave an approved template (``payload["content_sid"]`` and
``payload["content_variables"]``, JSON) is sent as ``ContentSid``/``ContentVariables`` instead of
a ``Body``, as Twilio requires outside WhatsApp's 24-hour window (else error 63016).

Errors: ``TwilioRestException`` 21610 (recipient unsubscribed, i.e. replied STOP) and 21211 (not
a valid number) and other 4xx are permanent; 5xx, 429, timeouts and refused connections are
transient and retried.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from notifications.transports import Outgoing, Sent, TransportError

OPTED_OUT = 21610
INVALID_NUMBER = 21211


def rebase_twilio_url(url: str, api_base: str) -> str:
    target = urlsplit(url)
    host = target.hostname or ""
    if host != "twilio.com" and not host.endswith(".twilio.com"):
        return url
    base = urlsplit(api_base)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + target.path, target.query, ""))


class RebasedTwilioHttpClient(TwilioHttpClient):
    """Twilio's own HTTP client, sending to ``api_base`` instead of twilio.com."""

    def __init__(self, api_base: str, **kwargs: Any) -> None:
        parts = urlsplit(api_base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("BATON_TWILIO_API_BASE must be an http(s) URL such as http://127.0.0.1:8081")
        super().__init__(**kwargs)
        self.api_base = api_base

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().request(method, rebase_twilio_url(url, self.api_base), *args, **kwargs)


class TwilioTransport:
    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        status_callback: str | None,
        api_base: str | None = None,
        timeout: float = 10.0,
        threads: int = 16,
    ) -> None:
        http_client = (
            RebasedTwilioHttpClient(api_base, timeout=timeout) if api_base else TwilioHttpClient(timeout=timeout)
        )
        session = http_client.session
        if session is not None:
            # One kept-alive connection per sender thread: twilio's client pools https connections
            # for at most cpu_count + 4 threads, and plain http (a local API base) not at all.
            for scheme in ("https://", "http://"):
                session.mount(scheme, HTTPAdapter(pool_connections=1, pool_maxsize=threads))
            # The environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE) is read once, here,
            # rather than scanned again for every message as requests does by default.
            target = api_base or "https://api.twilio.com"
            http_client.proxy = requests.utils.get_environ_proxies(target)
            session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            session.trust_env = False
        self._client = Client(account_sid, auth_token, http_client=http_client)
        self._sender = sender
        self._status_callback = status_callback
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="twilio")

    def _send_blocking(self, message: Outgoing) -> str:
        options: dict[str, Any] = {"to": message.recipient}
        payload = message.payload or {}
        if payload.get("content_sid"):
            options["content_sid"] = payload["content_sid"]
            options["content_variables"] = payload.get("content_variables") or "{}"
        else:
            options["body"] = message.body_text or ""
        if self._sender.startswith("MG"):
            options["messaging_service_sid"] = self._sender
        else:
            options["from_"] = self._sender
        if self._status_callback:
            options["status_callback"] = self._status_callback
        return self._client.messages.create(**options).sid

    async def send(self, message: Outgoing) -> Sent:
        loop = asyncio.get_running_loop()
        try:
            sid = await loop.run_in_executor(self._pool, self._send_blocking, message)
        except TwilioRestException as exc:
            status = exc.status or 0
            transient = status >= 500 or status == 429
            raise TransportError(f"Twilio {status} code {exc.code}: {exc.msg}", permanent=not transient,
                                 code=exc.code) from None
        except requests.RequestException as exc:
            raise TransportError(f"Twilio unreachable: {type(exc).__name__}") from None
        return Sent(provider_id=sid)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
