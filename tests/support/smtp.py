"""A real SMTP server for tests: what is sent to it is parsed and kept.

    with SMTPSink() as sink:
        settings = Settings(smtp_url=sink.url)  # smtp://127.0.0.1:PORT
        ...  # code under test sends mail
        [message] = sink.wait_for(1)
        assert message["To"] == "ada@example.com"

It speaks SMTP on a loopback socket (``aiosmtpd`` in a thread), so the code under test uses its
real mail transport. To simulate trouble: ``fail_with(451)`` answers a temporary error (or a
permanent one, with a 5xx code) until ``recover()``; ``stop()`` closes the port (connection
refused) until ``start()`` opens the same port again.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Self
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support._http import free_port

__all__ = ["Delivery", "SMTPSink"]

_STAGES = ("MAIL", "RCPT", "DATA")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One accepted message with its envelope, as the server saw it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes


class SMTPSink:
    """An SMTP server on 127.0.0.1 that keeps what it receives; a context manager."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        """With ``credentials`` (user, password), clients must log in (AUTH without TLS)."""
        self.host = "127.0.0.1"
        self.port = free_port()
        self.credentials = credentials
        self._controller: Controller | None = None
        self._changed = threading.Condition()
        self._deliveries: list[Delivery] = []
        self._refusal: tuple[str, str] | None = None  # (stage, reply)
        self._rejected = 0

    @property
    def url(self) -> str:
        """``smtp://[user:password@]127.0.0.1:PORT``"""
        userinfo = ""
        if self.credentials:
            user, password = self.credentials
            userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"smtp://{userinfo}{self.host}:{self.port}"

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Listen (again, on the same port). Does nothing if already listening."""
        if self._controller is None:
            auth: dict[str, Any] = {}
            if self.credentials:
                # Login is enforced in handle_MAIL: aiosmtpd's own auth_required warns, from
                # its server thread, about AUTH without TLS, which is the point here.
                auth = {"authenticator": self._authenticate, "auth_require_tls": False}
            controller = Controller(
                _Handler(self),
                hostname=self.host,
                port=self.port,
                server_hostname="localhost",  # spares a slow FQDN lookup on every start
                enable_SMTPUTF8=True,
                **auth,
            )
            controller.start()
            self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening: clients get "connection refused". Received messages are kept."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SMTPSink {self.url} messages={len(self._deliveries)}>"

    # --- what arrived -------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        with self._changed:
            return list(self._deliveries)

    @property
    def messages(self) -> list[EmailMessage]:
        """The messages received so far, oldest first."""
        return [delivery.message for delivery in self.deliveries]

    @property
    def rejected(self) -> int:
        """How many MAIL, RCPT or DATA commands were refused because of ``fail_with``."""
        with self._changed:
            return self._rejected

    def clear(self) -> None:
        """Forget the messages received so far and the count of refusals."""
        with self._changed:
            self._deliveries.clear()
            self._rejected = 0

    def wait_for(self, n: int = 1, timeout: float = 5.0) -> list[EmailMessage]:
        """Block until at least ``n`` messages have arrived; return them all.

        Raises TimeoutError when fewer than ``n`` arrive within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._deliveries) >= n, timeout):
                raise TimeoutError(f"expected {n} message(s) within {timeout}s, got {len(self._deliveries)}")
            return [delivery.message for delivery in self._deliveries]

    async def wait_for_async(self, n: int = 1, timeout: float = 5.0) -> list[EmailMessage]:
        """``wait_for`` without blocking the event loop (the sender may run on it)."""
        return await asyncio.to_thread(self.wait_for, n, timeout)

    # --- trouble ------------------------------------------------------------------------

    def fail_with(self, code: int = 451, *, message: str | None = None, at: str = "MAIL") -> None:
        """Answer ``code`` to every ``at`` command ("MAIL", "RCPT" or "DATA") until
        ``recover()``. 4xx is a temporary failure, 5xx a permanent one."""
        if not 400 <= code <= 599:
            raise ValueError(f"an SMTP failure is a 4xx or 5xx code, not {code}")
        if at not in _STAGES:
            raise ValueError(f"at must be one of {_STAGES}, not {at!r}")
        if message is None:
            message = "4.3.0 Try again later (test sink)" if code < 500 else "5.7.1 Refused (test sink)"
        with self._changed:
            self._refusal = (at, f"{code} {message}")

    def recover(self) -> None:
        """Accept mail again."""
        with self._changed:
            self._refusal = None

    # --- called from the server's thread ------------------------------------------------

    def _refuse(self, stage: str) -> str | None:
        with self._changed:
            if self._refusal is None or self._refusal[0] != stage:
                return None
            self._rejected += 1
            return self._refusal[1]

    def _deliver(self, delivery: Delivery) -> None:
        with self._changed:
            self._deliveries.append(delivery)
            self._changed.notify_all()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:  # type: ignore[no-untyped-def]
        expected = tuple(part.encode() for part in self.credentials or ())
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == expected
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd replies 535


class _Handler:
    def __init__(self, sink: SMTPSink) -> None:
        self._sink = sink

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        if self._sink.credentials and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if refusal := self._sink._refuse("MAIL"):
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if refusal := self._sink._refuse("RCPT"):
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if refusal := self._sink._refuse("DATA"):
            return refusal
        raw = envelope.original_content
        # On the wire lines end in CRLF; in memory an EmailMessage's lines end in "\n".
        message = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
        self._sink._deliver(
            Delivery(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=message,  # type: ignore[arg-type]  # policy.default makes EmailMessage
                raw=raw,
            )
        )
        return "250 Message accepted for delivery"
