"""Prometheus metrics. Counters live in the process; outbox gauges are read from the database at scrape.

With several ``baton serve`` workers each process answers its own ``/metrics``; scrape each one
(or front them with one scrape target per process).
"""

from __future__ import annotations


from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

REQUEST_SECONDS = Histogram(
    "baton_http_request_duration_seconds", "Request latency by route template.",
    ["method", "route", "status"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
UPDATES = Counter(
    "baton_partner_updates_total", "Partner updates, accepted or rejected, by reason.",
    ["outcome", "reason"], registry=REGISTRY,
)
WATCHDOG = Counter(
    "baton_watchdog_transitions_total", "Parties flagged by the watchdog.", ["kind"], registry=REGISTRY,
)
DELIVERIES = Counter(
    "baton_deliveries_total", "Outbox delivery attempts by channel and outcome.", ["channel", "outcome"],
    registry=REGISTRY,
)
WRITE_BATCH = Histogram(
    "baton_write_batch_size", "Signed updates committed together by group commit, per transaction.",
    registry=REGISTRY, buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
OUTBOX_DEPTH = Gauge("baton_outbox_depth", "Outbox rows waiting, by channel.", ["channel"], registry=REGISTRY)
OUTBOX_AGE = Gauge(
    "baton_outbox_oldest_seconds", "Age of the oldest waiting outbox row, by channel.", ["channel"],
    registry=REGISTRY,
)

REJECTION_REASONS = {401: "signature", 403: "forbidden", 404: "not_found", 409: "conflict", 413: "too_large",
                     415: "content_type", 422: "invalid", 429: "rate_limited"}


def record_update(status: int) -> None:
    if 200 <= status < 300:
        UPDATES.labels("accepted", "").inc()
    else:
        UPDATES.labels("rejected", REJECTION_REASONS.get(status, f"http_{status}")).inc()


def render() -> bytes:
    """The whole exposition (callers refresh the gauges that read the database first)."""
    return generate_latest(REGISTRY)
