"""A partner's webhook endpoint for tests: it verifies Baton's Standard Webhooks and keeps them.

    with WebhookReceiver("whsec_...") as partner:
        ...  # register partner.url (http://127.0.0.1:PORT/baton) as the partner's webhook URL
        [(webhook_id, payload, verified, headers)] = partner.wait_for(1)
        assert verified and payload["type"] == "party.late"
        assert not partner.duplicates()

Every POST is checked with the ``standardwebhooks`` package, as a partner would check it
(``Webhook(secret).verify(body, headers)``): the signature in ``webhook-signature`` over
``webhook-id``, ``webhook-timestamp`` and the raw body, and a timestamp within five minutes of
now. A verified delivery is answered 204, a failed one 401, and both are kept in ``received``.
A sender whose clock is frozen in the past fails that timestamp check; for such tests pass
``check_timestamp=False`` to check the signature alone.

Retries of one event carry the same ``webhook-id``: ``duplicates()`` lists the ids the receiver
processed more than once, which a sender causes by retrying after an answer it did not wait for.

To simulate trouble: ``fail_with(500)`` answers an error without processing until
``recover()`` (``fail_next(n)`` for the next ``n`` requests only); ``hang(seconds)`` processes
at once but answers late, so a sender with a shorter timeout gives up on a delivery that did
arrive; ``refuse()`` closes the port (connection refused) until ``accept()`` listens again on it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any, NamedTuple, Self
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support._http import Reply, Server, free_port

__all__ = ["LOCAL_RECEIVERS", "Received", "WebhookReceiver"]

# BATON_WEBHOOK_ALLOW_HOSTS for tests: receivers listen on 127.0.0.1, which Baton otherwise refuses.
LOCAL_RECEIVERS = "127.0.0.1,localhost"


class Received(NamedTuple):
    """One request the endpoint processed. ``payload`` is the JSON body ({} if it is not a
    JSON object); ``headers`` have lower-case names."""

    webhook_id: str | None
    payload: dict[str, Any]
    verified: bool
    headers: dict[str, str]


class WebhookReceiver:
    """An HTTP endpoint on 127.0.0.1 that verifies and keeps Standard Webhooks; a context manager."""

    def __init__(self, secret: str, *, path: str = "/baton", check_timestamp: bool = True) -> None:
        """``secret`` is the partner's ``whsec_...`` signing secret; requests to other paths
        than ``path`` get 404, as from a misconfigured URL."""
        self.host = "127.0.0.1"
        self.port = free_port()
        self.path = path
        self.check_timestamp = check_timestamp
        self._webhook = Webhook(secret)
        self._server: Server | None = None
        self._changed = threading.Condition()
        self._received: list[Received] = []
        self._attempts: list[Received] = []
        self._rejections: list[tuple[str | None, str]] = []
        self._failure: int | None = None
        self._failures_next: list[int] = []
        self._hang: tuple[float, threading.Event] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/baton``: the partner's webhook URL."""
        return f"http://{self.host}:{self.port}{self.path}"

    # --- lifecycle ----------------------------------------------------------------------

    def accept(self) -> Self:
        """Listen (again, on the same port). Does nothing if already listening."""
        if self._server is None:
            self._server = Server((self.host, self.port), self._respond, name="webhook-receiver")
        return self

    def refuse(self) -> None:
        """Stop listening: senders get "connection refused". What was received is kept; hung
        answers are released and the hang ends."""
        with self._changed:
            self._release_hung()
            self._hang = None
        if self._server is not None:
            self._server.close()
            self._server = None

    start, stop = accept, refuse  # the names SMTPSink uses

    def __enter__(self) -> Self:
        return self.accept()

    def __exit__(self, *exc_info: object) -> None:
        self.refuse()

    def __repr__(self) -> str:
        return f"<WebhookReceiver {self.url} received={len(self._received)}>"

    # --- what arrived -------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """The requests processed (verified or not), oldest first; not those answered by
        ``fail_with``/``fail_next``, which a real partner would not have processed either."""
        with self._changed:
            return list(self._received)

    @property
    def attempts(self) -> list[Received]:
        """Every request that reached the endpoint, including those answered with a failure:
        how often the sender tried."""
        with self._changed:
            return list(self._attempts)

    @property
    def rejections(self) -> list[tuple[str | None, str]]:
        """``(webhook_id, reason)`` for each request that failed verification, e.g.
        "Message timestamp too old": the first place to look when ``verified`` is False."""
        with self._changed:
            return list(self._rejections)

    def count(self, webhook_id: str) -> int:
        """How many times the delivery ``webhook_id`` was processed."""
        with self._changed:
            return sum(1 for item in self._received if item.webhook_id == webhook_id)

    def duplicates(self) -> dict[str, int]:
        """Webhook ids processed more than once, with how often."""
        with self._changed:
            counts = Counter(item.webhook_id for item in self._received if item.webhook_id is not None)
        return {webhook_id: n for webhook_id, n in counts.items() if n > 1}

    def clear(self) -> None:
        """Forget what was received."""
        with self._changed:
            self._received.clear()
            self._attempts.clear()
            self._rejections.clear()

    def wait_for(self, n: int = 1, timeout: float = 5.0) -> list[Received]:
        """Block until at least ``n`` requests were processed; return them all.

        Raises TimeoutError when fewer than ``n`` arrive within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received) >= n, timeout):
                raise TimeoutError(f"expected {n} webhook(s) within {timeout}s, got {len(self._received)}")
            return list(self._received)

    async def wait_for_async(self, n: int = 1, timeout: float = 5.0) -> list[Received]:
        """``wait_for`` without blocking the event loop (the sender may run on it)."""
        return await asyncio.to_thread(self.wait_for, n, timeout)

    # --- trouble ------------------------------------------------------------------------

    def fail_with(self, status: int = 500) -> None:
        """Answer every request with ``status`` until ``recover()``, without processing it."""
        with self._changed:
            self._failure = _error_status(status)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer only the next ``n`` requests with ``status``, then as before."""
        with self._changed:
            self._failures_next.extend([_error_status(status)] * n)

    def hang(self, seconds: float) -> None:
        """Answer every request ``seconds`` late until ``recover()``; it is processed on arrival."""
        with self._changed:
            self._release_hung()
            self._hang = (seconds, threading.Event())

    def recover(self) -> None:
        """Back to normal: listening, answering at once, no failures. Hung answers are released."""
        with self._changed:
            self._failure = None
            self._failures_next.clear()
            self._release_hung()
            self._hang = None
        self.accept()

    def _release_hung(self) -> None:
        with self._changed:
            if self._hang is not None:
                self._hang[1].set()

    # --- called from the server's threads -----------------------------------------------

    def _respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """1. Not ``path``: 404; not POST: 405.
        2. Verify; an injected failure answers instead of processing (kept in ``attempts``).
        3. Otherwise keep the request in ``received``: 204 if verified, else 401.
        While ``hang`` is on, the answer is held back, the processing is not.
        """
        with self._changed:
            delay = self._hang
        if urlsplit(target).path != self.path:
            return Reply(404, delay=delay)
        if method != "POST":
            return Reply(405, delay=delay)
        webhook_id = headers.get("webhook-id")
        payload, error = self._verify(body, headers)
        item = Received(webhook_id, payload, error is None, headers)
        with self._changed:
            self._attempts.append(item)
            failure = self._failures_next.pop(0) if self._failures_next else self._failure
            if failure is not None:
                return Reply(failure, delay=delay)
            self._received.append(item)
            if error is not None:
                self._rejections.append((webhook_id, error))
            self._changed.notify_all()
        return Reply(204 if error is None else 401, delay=delay)

    def _verify(self, body: bytes, headers: dict[str, str]) -> tuple[dict[str, Any], str | None]:
        """The payload and ``None``, or the payload as far as it parses and why it failed."""
        try:
            if self.check_timestamp:
                payload = self._webhook.verify(body, headers)
            else:
                payload = self._verify_signature_only(body, headers)
        except WebhookVerificationError as error:
            return _json_object(body), str(error) or type(error).__name__
        except (ValueError, UnicodeDecodeError) as error:  # a malformed header or body
            return _json_object(body), f"malformed: {error}"
        return (payload if isinstance(payload, dict) else {}), None

    def _verify_signature_only(self, body: bytes, headers: dict[str, str]) -> Any:
        """What ``Webhook.verify`` checks except the timestamp's age (it compares with the real
        "now"): the library signs the received id, timestamp and body, and one ``v1``
        signature must match."""
        webhook_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        signatures = headers.get("webhook-signature")
        if not (webhook_id and timestamp and signatures):
            raise WebhookVerificationError("Missing required headers")
        try:
            sent_at = datetime.fromtimestamp(float(timestamp), tz=UTC)
        except (ValueError, OverflowError, OSError) as error:
            raise WebhookVerificationError("Invalid Signature Headers") from error
        expected = self._webhook.sign(webhook_id, sent_at, body.decode()).partition(",")[2].encode()
        candidates = [sig.partition(",")[2].encode() for sig in signatures.split(" ") if sig.startswith("v1,")]
        if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            raise WebhookVerificationError("No matching signature found")
        return json.loads(body)


def _error_status(status: int) -> int:
    if not 400 <= status <= 599:
        raise ValueError(f"a failure is a 4xx or 5xx status, not {status}")
    return status


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
