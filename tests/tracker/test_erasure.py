"""``baton erase``: the customer's personal data leaves every table; the timeline still verifies."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from sqlalchemy import select

from tests.conftest import World, case_body
from tracker.db import Base
from tracker.worker import Worker

NAME, PHONE, EMAIL = "Ada Lovelace", "+14155550100", "ada@example.com"


async def _cli(db_url: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tracker.cli", *args, env={**os.environ, "BATON_DATABASE_URL": db_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def _personal_data_left(world: World) -> list[str]:
    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    found = []
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                text = " ".join(str(value) for value in row)
                for needle in (NAME, "Lovelace", PHONE, PHONE[1:], EMAIL):
                    if needle in text:
                        found.append(f"{table.name}: {needle}")
    return sorted(set(found))


async def test_erase_removes_the_customer_everywhere_and_the_chain_still_verifies(
    world: World, settings: Any
) -> None:
    # The owner partner opens the case itself, so its signed request carries the customer's data.
    response = await world.as_partner("ua", "POST", "/v1/cases", json_body=case_body(),
                                      headers={"Idempotency-Key": "open-1"})
    assert response.status_code == 201, response.text
    case = response.json()
    ref, token = case["ref"], case["status_url"].rsplit("/", 1)[1]
    await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events",
                           json_body={"status": "located", "message": "Found in FRA."})
    sent = await world.client.post(f"/s/{token}/messages", data={"message": f"I am {NAME}, call {PHONE}"})
    assert sent.status_code == 303
    app = world.client._transport.app  # type: ignore[attr-defined]
    worker = Worker(sessionmaker=app.state.runtime.sessionmaker, clock=world.clock, settings=settings)
    await worker.run_round()  # notifications rendered and stored as "logged" (no providers here)
    await worker.close()
    assert await _personal_data_left(world), "the scenario must have stored personal data to erase"

    code, out = await _cli(settings.database_url, "erase", ref, "--yes")
    assert code == 0, out

    assert await _personal_data_left(world) == []
    code, out = await _cli(settings.database_url, "verify", ref)
    assert code == 0, out
    detail = (await world.as_admin("GET", f"/v1/cases/{ref}")).json()
    assert detail["customer"]["name"] is None and detail["customer"]["phone"] is None
    events = (await world.as_admin("GET", f"/v1/cases/{ref}/events")).json()["items"]
    assert events[-1]["type"] == "customer.erased"
