"""Metrics at /metrics and one structured access line per request, keyed by a request id."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import World
from kernel.logs import JSONFormatter


async def test_metrics_count_updates_by_outcome_and_show_the_outbox(world: World) -> None:
    case = await world.open_case()
    accepted = await world.as_partner("lh", "POST", f"/v1/cases/{case['ref']}/events", json_body={"message": "x"})
    refused = await world.as_partner("fastcourier", "POST", f"/v1/cases/{case['ref']}/events",
                                     json_body={"message": "x"})
    assert (accepted.status_code, refused.status_code) == (201, 404)

    text = (await world.client.get("/metrics")).text

    assert 'baton_partner_updates_total{outcome="accepted",reason=""}' in text
    assert 'baton_partner_updates_total{outcome="rejected",reason="not_found"}' in text
    assert 'baton_outbox_depth{channel="sms"}' in text and 'baton_outbox_oldest_seconds{channel="email"}' in text
    assert 'route="/v1/cases/{ref}/events"' in text, "latency is labelled by route template, not raw path"
    assert case["ref"] not in text


async def test_every_response_carries_a_request_id_and_logs_one_json_line_without_the_token(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    case = await world.open_case()
    token = case["status_url"].rsplit("/", 1)[1]
    with caplog.at_level(logging.INFO, logger="baton.access"):
        response = await world.client.get(f"/s/{token}", headers={"X-Request-ID": "req-12345678"})
    assert response.headers["x-request-id"] == "req-12345678"
    [record] = [r for r in caplog.records if r.name == "baton.access"]
    line = json.loads(JSONFormatter().format(record))
    assert line["route"] == "/s/{token}" and line["status"] == 200 and "ms" in line
    assert line["request_id"] == "req-12345678"
    assert token not in json.dumps(line)
    generated = await world.client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
