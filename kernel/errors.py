"""Baton's errors. Free of web imports; the web layer renders them once as RFC 9457 problems.

    BatonError                      500  base: carries status, a problem type slug and a detail
    ├── BadRequest                  400  malformed input that is not a validation problem
    │   └── MalformedJSON           400
    ├── Unauthorized                401  missing, invalid, stale or replayed credentials
    ├── Forbidden                   403  authenticated, but the role may not do this
    ├── NotFound                    404  absent, or not visible to this caller (never tells which)
    ├── Conflict                    409  state forbids it now (closed case, in-flight idempotent twin)
    ├── PayloadTooLarge             413
    ├── UnsupportedMediaType        415
    ├── Unprocessable               422  well-formed but invalid (unknown status, bad phone, ...)
    │   └── IdempotencyMismatch     422  same Idempotency-Key, other body
    ├── TooManyRequests             429  carries retry_after seconds
    └── BadGateway                  502  a service Baton relies on (the identity provider) failed
"""

from __future__ import annotations

from typing import Any


class BatonError(Exception):
    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal error"

    def __init__(self, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://baton.dev/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


class BadRequest(BatonError):
    status, slug, title = 400, "bad-request", "Bad request"


class MalformedJSON(BadRequest):
    slug, title = "malformed-json", "Malformed JSON"


class Unauthorized(BatonError):
    status, slug, title = 401, "unauthorized", "Unauthorized"


class Forbidden(BatonError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(BatonError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(BatonError):
    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(BatonError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(BatonError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class Unprocessable(BatonError):
    status, slug, title = 422, "validation-error", "Invalid request"


class IdempotencyMismatch(Unprocessable):
    slug, title = "idempotency-key-reused", "Idempotency-Key reused with a different request"


class TooManyRequests(BatonError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 60) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class BadGateway(BatonError):
    status, slug, title = 502, "bad-gateway", "Bad gateway"
