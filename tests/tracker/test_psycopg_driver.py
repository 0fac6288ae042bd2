"""Baton also runs on psycopg 3 (``postgresql+psycopg://``), not only on asyncpg."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, ALLOWED_HOSTS, World
from kernel.config import Settings


@pytest.fixture
def settings(pg_db: Any) -> Settings:
    url = pg_db.url.replace("postgresql+asyncpg://", "postgresql+psycopg://")
    return Settings(database_url=url, admin_token=ADMIN_TOKEN, workers_in_process=False, allowed_hosts=ALLOWED_HOSTS)


async def test_signed_update_replay_and_dedupe_work_on_psycopg(world: World) -> None:
    case = await world.open_case()
    ref = case["ref"]
    first = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", json_body={"status": "located"})
    assert first.status_code == 201, first.text

    # The same signed request again: its nonce is spent (the insert-or-nothing must be read right).
    request = world.client.build_request("POST", f"/v1/cases/{ref}/events", content=b'{"message":"x"}',
                                         headers={"content-type": "application/json"})
    world.partners["lh"].signer().sign_request(request)
    assert (await world.client.send(request)).status_code == 201
    replay = world.client.build_request("POST", f"/v1/cases/{ref}/events", content=b'{"message":"x"}',
                                        headers=dict(request.headers))
    assert (await world.client.send(replay)).status_code == 401
