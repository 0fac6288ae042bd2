"""Senders, one per channel. Each raises ``TransportError`` and says whether a retry can help.

    TransportError(permanent=False)  connection refused, timeout, 5xx, SMTP 4xx: retried with backoff
    TransportError(permanent=True)   invalid number, opted-out recipient, SMTP 5xx, HTTP 410: never retried
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx
from standardwebhooks.webhooks import Webhook


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


class Transport(Protocol):
    async def send(self, message: Outgoing) -> Sent: ...

    async def close(self) -> None: ...


class WebhookTransport:
    """Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,...``.

    The timestamp is the wall clock at the attempt, not Baton's injected clock: receivers check it
    against their own clocks to refuse replays.
    """

    def __init__(self, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)

    async def send(self, message: Outgoing) -> Sent:
        if not message.secret:
            raise TransportError("the partner has no webhook secret", permanent=True)
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
            response = await self._client.post(message.recipient, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}".strip(": ")) from None
        if 200 <= response.status_code < 300:
            return Sent(delivered=True)
        raise TransportError(f"receiver answered {response.status_code}", permanent=response.status_code == 410,
                             code=response.status_code)

    async def close(self) -> None:
        await self._client.aclose()


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

