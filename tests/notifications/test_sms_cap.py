"""The SMS daily cap: ``sms_daily_cap`` (default 6) SMS per case per customer-local day.

``tracker/customer.py`` counts the case's customer SMS sent since midnight *in the customer's
time zone*; at the cap, the next one waits for the next local morning (the end of quiet hours).
The real twilio client talks to the local Twilio double; updates are posted by staff so that no
partner quota is involved, each after the coalescing window so that each is its own SMS.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from notifications.models import Notification
from tests.conftest import ADMIN_TOKEN, World, worker_for
from tests.support.twilio_double import TwilioDouble
from kernel.clock import UTC, FrozenClock
from kernel.config import Settings
from tracker.worker import Worker

PHONE = "+14155550100"
PUBLIC = "http://baton.test"
NEW_YORK = dt.timezone(dt.timedelta(hours=-5))  # EST on these dates (DST ended on 1 November 2026)
TOKYO = dt.timezone(dt.timedelta(hours=9))
COALESCE = dt.timedelta(minutes=10)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime(2026, 11, 2, 16, 0, tzinfo=NEW_YORK).astimezone(UTC))


@pytest.fixture
def settings(db: Any, twilio: TwilioDouble) -> Settings:
    return Settings(
        database_url=db.url, admin_token=ADMIN_TOKEN, public_base_url=PUBLIC, workers_in_process=False,
        **twilio.settings(),
    )


async def _sms_rows(world: World) -> list[Notification]:
    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        query = (select(Notification)
                 .where(Notification.audience == "customer", Notification.channel == "sms")
                 .order_by(Notification.id))
        return list((await session.scalars(query)).all())


async def _open(world: World, timezone: str) -> str:
    case = await world.open_case(customer={"name": "Ada Lovelace", "phone": PHONE, "locale": "en",
                                           "timezone": timezone, "channels": ["sms"]})
    return case["ref"]


async def _tell(world: World, worker: Worker, ref: str, at: dt.datetime, message: str) -> None:
    """A customer-visible update at ``at``; the dispatcher runs once its coalescing window is over."""
    world.clock.set(at.astimezone(UTC))
    response = await world.as_admin("POST", f"/v1/cases/{ref}/events",
                                    json_body={"message": message, "visibility": "public"})
    assert response.status_code == 201, response.text
    world.clock.advance(COALESCE)
    await worker.dispatcher.drain()


async def test_cap_sms_go_out_on_one_local_day_and_the_next_waits_for_the_local_morning(
    world: World, worker: Worker, settings: Settings, twilio: TwilioDouble
) -> None:
    assert settings.sms_daily_cap == 6
    ref = await _open(world, "America/New_York")  # 16:00 in New York
    await worker.dispatcher.drain()
    assert len(twilio.messages) == 1

    # Five more, the last two after midnight UTC but still on 2 November in New York.
    for n, (hour, minute) in enumerate([(16, 30), (17, 30), (18, 30), (19, 0), (19, 30)], start=2):
        await _tell(world, worker, ref, dt.datetime(2026, 11, 2, hour, minute, tzinfo=NEW_YORK), f"Update {n}.")
        assert len(twilio.messages) == n, f"SMS {n} of the day should go out"
    assert world.clock.now().date() == dt.date(2026, 11, 3), "the day is over in UTC, not in New York"

    # The seventh on the same local day waits. (Counted per UTC day, only two would be today's.)
    await _tell(world, worker, ref, dt.datetime(2026, 11, 2, 20, 0, tzinfo=NEW_YORK), "Update 7: the seventh.")
    assert len(twilio.messages) == 6
    waiting = (await _sms_rows(world))[-1]
    morning = dt.datetime(2026, 11, 3, 8, 0, tzinfo=NEW_YORK).astimezone(UTC)
    assert waiting.state == "pending" and "daily SMS cap" in (waiting.last_error or "")
    assert waiting.next_attempt_at == morning

    world.clock.set(morning - dt.timedelta(microseconds=1))
    await worker.dispatcher.drain()
    assert len(twilio.messages) == 6

    world.clock.set(morning)
    await worker.dispatcher.drain()
    assert len(twilio.messages) == 7
    assert "seventh" in twilio.messages[-1]["body"]
    assert [row.state for row in await _sms_rows(world)] == ["sent"] * 7
    assert twilio.duplicates() == {}


async def test_count_resets_at_local_midnight_not_utc_midnight(
    world: World, settings: Settings, twilio: TwilioDouble
) -> None:
    # Quiet hours away from midnight, so that a message may go out just after it.
    worker = worker_for(world, settings.model_copy(update={"quiet_hours": "02:00-06:00"}))
    try:
        world.clock.set(dt.datetime(2026, 11, 3, 10, 0, tzinfo=TOKYO).astimezone(UTC))  # 01:00 UTC
        ref = await _open(world, "Asia/Tokyo")
        await worker.dispatcher.drain()
        # Six on 3 November in Tokyo, all of them also on 3 November in UTC (01:00-13:10 UTC).
        for n, hour in enumerate([11, 13, 15, 17, 22], start=2):
            await _tell(world, worker, ref, dt.datetime(2026, 11, 3, hour, 0, tzinfo=TOKYO), f"Update {n}.")
        assert len(twilio.messages) == 6

        # 00:20 on 4 November in Tokyo is 15:20 on 3 November in UTC: a new local day.
        await _tell(world, worker, ref, dt.datetime(2026, 11, 4, 0, 20, tzinfo=TOKYO), "A new day: seventh.")
        assert len(twilio.messages) == 7, "the count restarts at midnight in the customer's time zone"
        assert "seventh" in twilio.messages[-1]["body"]
        sent = (await _sms_rows(world))[-1]
        assert sent.state == "sent" and sent.sent_at == dt.datetime(2026, 11, 4, 0, 30, tzinfo=TOKYO)
    finally:
        await worker.close()
