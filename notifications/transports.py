"""Senders, one per channel. Each raises ``TransportError`` and says whether a retry can help.

    TransportError(permanent=False)  connection refused, timeout, 5xx, SMTP 4xx: retried with backoff
    TransportError(permanent=True)   invalid number, opted-out recipient, SMTP 5xx, HTTP 410: never retried
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from partners.webhook_urls import (
    BlockedWebhookURL,
    Resolver,
    normalize_allow_hosts,
    normalize_host,
    resolve_webhook_host,
    system_resolver,
)


class TransportError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, code: int | str | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What a transport needs of an outbox row (detached from the database session)."""

    id: int
    channel: str
    kind: str
    recipient: str
    message_id: str
    subject: str | None
    body_text: str | None
    body_html: str | None
    payload: dict[str, Any] | None
    secret: str | None = None  # webhooks: the partner's whsec_ secret, read at send time
    headers: dict[str, str] | None = None  # email: Reply-To, List-Unsubscribe


@dataclass(frozen=True, slots=True)
class Sent:
    provider_id: str | None = None
    delivered: bool = False  # a webhook's 2xx is its delivery; SMS and email learn it later
    status: int | None = None  # a webhook's HTTP status (onboarding's test shows it to the partner)


class Transport(Protocol):
    async def send(self, message: Outgoing) -> Sent: ...

    async def close(self) -> None: ...


class WebhookTransport:
    """Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,...``.

    The timestamp is the wall clock at the attempt, not Baton's injected clock: receivers check it
    against their own clocks to refuse replays.

    A receiver is another organization's server, so each delivery is fenced (SPEC.md, "Trust
    between organizations"):

    1. Where: the URL must be https unless its host is in ``allow_hosts``. The host is resolved
       once and every address checked (``partners.webhook_urls``); the request then goes to the
       checked address itself. The simplest way to do that with httpx is to put the address in
       the URL, keep the name in the ``Host`` header, and pass the name as the ``sni_hostname``
       extension, with which httpcore sends it as TLS SNI and verifies the certificate against
       it. Nothing resolves the name a second time, so an answer that changes after the check
       (DNS rebinding) is never connected to. Connections are not kept alive, since the pool
       keys them by address: a TLS connection set up for one name must not carry a request for
       another name on the same address. Proxies from the environment are ignored (a proxy
       would connect to the name itself).
    2. How long: one deadline (``timeout``, seconds) covers resolving, connecting, sending and
       reading; a receiver that trickles its answer is cut there.
    3. How much: at most ``max_answer_bytes`` of the answer's body are read, then the connection
       is dropped. Only the status matters; a 2xx with a huge body is a delivery.
    4. What staff see: a failure is raised as its class ("timeout", "connection refused", "tls
       error", "http 500", "blocked address", ...), never the network error's text, which can
       name internal addresses and ports.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        allow_hosts: str | Collection[str] = (),
        max_answer_bytes: int = 4096,
        resolver: Resolver = system_resolver,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.deadline = timeout
        self.allow_hosts = normalize_allow_hosts(allow_hosts)
        self.max_answer_bytes = max_answer_bytes
        self.resolver = resolver
        self._client = httpx.AsyncClient(
            timeout=timeout, transport=transport, follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def send(self, message: Outgoing) -> Sent:
        if not message.secret:
            raise TransportError("no webhook secret", permanent=True)
        body = json.dumps(message.payload, separators=(",", ":"))
        now = time.time()
        signature = Webhook(message.secret).sign(message.message_id, datetime.fromtimestamp(now, timezone.utc), body)
        headers = {
            "content-type": "application/json",
            "webhook-id": message.message_id,
            "webhook-timestamp": str(int(now)),
            "webhook-signature": signature,
            "user-agent": "Baton-Webhooks/1",
        }
        try:
            async with asyncio.timeout(self.deadline):
                status = await self._post(message.recipient, body.encode(), headers)
        except BlockedWebhookURL as exc:
            raise TransportError(str(exc)) from None
        except (TimeoutError, httpx.TimeoutException):
            raise TransportError("timeout") from None
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            raise TransportError(failure_class(exc)) from None
        if 200 <= status < 300:
            return Sent(delivered=True, status=status)
        raise TransportError(f"http {status}", permanent=status == 410, code=status)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """Check, connect to the checked address, send; the answer's status."""
        parts = httpx.URL(url)
        host = parts.raw_host.decode("ascii")
        if parts.scheme != "https" and not (parts.scheme == "http" and normalize_host(host) in self.allow_hosts):
            raise BlockedWebhookURL("not https")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = await resolve_webhook_host(host, port, allow_hosts=self.allow_hosts, resolver=self.resolver)
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        request = self._client.build_request(
            "POST", parts.copy_with(host=str(address)), content=body,
            headers={**headers, "host": parts.netloc.decode("ascii")}, extensions=extensions,
        )
        response = await self._client.send(request, stream=True)
        try:
            if self.max_answer_bytes > 0:
                seen = 0
                async with contextlib.aclosing(response.aiter_raw()) as chunks:
                    async for chunk in chunks:
                        seen += len(chunk)
                        if seen >= self.max_answer_bytes:
                            break
            return response.status_code
        finally:
            await response.aclose()  # unread answer: the connection is dropped, not drained

    async def close(self) -> None:
        await self._client.aclose()


def failure_class(exc: BaseException) -> str:
    """A network failure as staff may see it: its kind, without addresses, ports or library text."""
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return "tls error"
        if isinstance(cause, socket.gaierror):
            return "unknown host"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        # h11 refuses an answer head larger than its buffer ("Receive buffer too long").
        return "answer too large" if "too long" in str(exc).lower() else "protocol error"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "connection reset"
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "invalid url"
    return "connection failed"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it was raised from, exception groups opened (anyio groups connect errors)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 50:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


class EmailTransport:
    """Multipart plain text + HTML over SMTP (``smtp://user:pass@host:port``, ``smtps://`` for TLS)."""

    def __init__(self, *, url: str, sender: str, timeout: float = 15.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps", "smtp+starttls"):
            raise ValueError("BATON_SMTP_URL must be smtp://, smtp+starttls:// or smtps://")
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.use_tls = parts.scheme == "smtps"
        self.start_tls = parts.scheme == "smtp+starttls"
        self.sender = sender
        self.timeout = timeout

    def build(self, message: Outgoing) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.recipient
        email["Subject"] = message.subject or "Baton"
        email["Date"] = formatdate(localtime=False)
        domain = parseaddr(self.sender)[1].partition("@")[2] or "baton.local"
        email["Message-ID"] = f"<{message.message_id}@{domain}>"
        for name, value in (message.headers or {}).items():
            email[name] = value
        email.set_content(message.body_text or "")
        if message.body_html:
            email.add_alternative(message.body_html, subtype="html")
        return email

    async def send(self, message: Outgoing) -> Sent:
        import aiosmtplib

        email = self.build(message)
        try:
            await aiosmtplib.send(
                email,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.use_tls,
                start_tls=self.start_tls if self.start_tls else False,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise TransportError(f"recipient refused: {codes}", permanent=all(c >= 500 for c in codes),
                                 code=codes[0] if codes else None) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise TransportError(f"SMTP {exc.code}: {exc.message}", permanent=exc.code >= 500, code=exc.code) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransportError(f"SMTP connection failed: {type(exc).__name__}") from None
        return Sent(provider_id=str(email["Message-ID"]))

    async def close(self) -> None:
        return None

