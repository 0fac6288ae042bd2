"""Sliding-window rate limits per key (client address, partner key), on the injected clock.

Counts live in the process. Behind several replicas each keeps its own count, so a client gets
at most (replicas × limit) attempts; that is the accepted trade for not needing a shared store.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from kernel.clock import Clock
from kernel.errors import TooManyRequests


@dataclass
class Limit:
    name: str
    limit: int
    window_seconds: float
    _hits: dict[str, deque[float]] = field(default_factory=dict, repr=False)

    def _prune(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window_seconds:
            hits.popleft()
        if len(self._hits) > 100_000:  # forget idle keys rather than grow without bound
            for stale in [k for k, v in self._hits.items() if not v][:50_000]:
                del self._hits[stale]
        return hits

    def __contains__(self, key: str) -> bool:
        """Whether a count is held for ``key``."""
        return key in self._hits

    def check(self, key: str, now: float, *, detail: str) -> None:
        """Raise 429 (with Retry-After) when ``key`` is at its limit; does not count.

        A key never hit is not stored: ``check`` runs before the caller is authenticated, and
        claimed keys must not fill the table.
        """
        if key not in self._hits:
            return
        hits = self._prune(key, now)
        if len(hits) >= self.limit:
            retry = max(1, math.ceil(hits[0] + self.window_seconds - now))
            raise TooManyRequests(detail, retry_after=retry)

    def hit(self, key: str, now: float) -> None:
        self._prune(key, now).append(now)


class RateLimits:
    """The limits Baton enforces, sharing one clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        # Unknown tokens only: counted after the lookup, so a valid token is never refused by it.
        # Unknown status links, one-tap update links and invitation links share this count.
        self.bad_tokens = Limit("unknown links per address", 20, 60)
        self.status_lookups = Limit("lookups of one status link per address", 120, 60)
        self.link_posts = Limit("posts through one one-tap update link", 30, 3600)
        self.inbound_sms = Limit("inbound SMS per sender", 30, 600)
        self.sign_in = Limit("console sign-in failures per address", 10, 600)
        self.partner_requests = Limit("requests per partner key", 6000, 60)

    def now(self) -> float:
        return self.clock.now().timestamp()
