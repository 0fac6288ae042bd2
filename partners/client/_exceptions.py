"""What can go wrong when a partner talks to Baton.

    BatonError                  base of everything this client raises on purpose
    ├── BatonTransportError     the network failed, and kept failing after the retries
    └── BatonAPIError           Baton answered with a non-2xx status and an RFC 9457 problem
        ├── BatonAuthError      401: the signature, key id, clock or nonce was rejected
        ├── BatonNotFound       404: no such case, handoff or attachment, or not visible to this partner
        └── BatonConflict       409: the case's state forbids it now, or an idempotent twin is in flight

Any other status (400, 403, 422, 429, 5xx once retries are spent) is a plain ``BatonAPIError``;
its ``status`` and ``problem`` say the rest.
"""

from __future__ import annotations

from typing import Any


class BatonError(Exception):
    """Base class, so callers can catch everything the client raises in one clause."""


class BatonTransportError(BatonError):
    """The request never got an answer from Baton, even after retrying."""


class BatonAPIError(BatonError):
    """Baton refused the request; ``problem`` is the RFC 9457 body exactly as received."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(f"{status} {self.title}" + (f": {self.detail}" if self.detail else ""))

    @property
    def title(self) -> str:
        """Short, human-readable summary of the problem type."""
        return str(self.problem.get("title") or f"HTTP {self.status}")

    @property
    def detail(self) -> str | None:
        """Explanation specific to this occurrence, when Baton gave one."""
        detail = self.problem.get("detail")
        return None if detail is None else str(detail)

    @property
    def type(self) -> str:
        """URI identifying the problem type; ``about:blank`` when absent, as RFC 9457 says."""
        return str(self.problem.get("type") or "about:blank")


class BatonAuthError(BatonAPIError):
    """401: Baton did not accept the request's signature."""


class BatonNotFound(BatonAPIError):
    """404: the case, handoff or attachment does not exist, or this partner is not a party to it."""


class BatonConflict(BatonAPIError):
    """409: the request clashes with the case's current state or a concurrent duplicate."""


_BY_STATUS: dict[int, type[BatonAPIError]] = {
    401: BatonAuthError,
    404: BatonNotFound,
    409: BatonConflict,
}


def api_error(*, status: int, problem: dict[str, Any]) -> BatonAPIError:
    """The most specific exception for an error answer, so callers can catch by meaning."""
    return _BY_STATUS.get(status, BatonAPIError)(status, problem)
