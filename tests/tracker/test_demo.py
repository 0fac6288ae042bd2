"""``baton demo`` seeds the lost-bag story, and every demo case's timeline verifies."""

from __future__ import annotations

import hashlib
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from tracker import demo
from kernel.clock import FrozenClock
from tracker.models import Attachment, Case, Delivery, Party
from tracker.verify import verify_case


async def test_demo_seeds_the_lost_bag_story_with_a_silent_courier(app, clock: FrozenClock, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sessionmaker = app.state.runtime.sessionmaker
    async with sessionmaker() as session:
        result = await demo.seed(session=session, now=clock.now(), base_url="http://127.0.0.1:8000", var_dir=tmp_path)
        await session.commit()

    assert result.admin_token and result.admin_token.startswith("bat_")
    assert result.status_url.startswith("http://127.0.0.1:8000/s/")
    assert (tmp_path / "demo-keys" / "fastcourier.key").stat().st_mode & 0o777 == 0o600
    async with sessionmaker() as session:
        case = await session.scalar(select(Case).where(Case.ref == result.ref))
        assert case is not None
        assert case.external_refs["worldtracer"] == "JFKUA12345"
        parties = {p.partner_id: p for p in await session.scalars(select(Party).where(Party.case_id == case.id))}
        assert set(parties) == {"ua", "lh", "swissport-fra", "fastcourier"}
        courier = parties["fastcourier"]
        assert courier.responsible and not parties["lh"].responsible
        assert courier.next_update_due is not None and courier.next_update_due < clock.now(), "the courier is silent"
        for ref in [result.ref, *result.extra_refs]:
            verified = await verify_case(session=session, ref=ref)
            assert verified.ok, (ref, verified.reason)
        story = await verify_case(session=session, ref=result.ref)
        assert story.signed >= 10


async def test_demo_delivers_adas_second_bag_in_her_evening_slot_with_a_photo_and_her_pin(  # type: ignore[no-untyped-def]
        app, clock: FrozenClock, tmp_path: Path) -> None:
    sessionmaker = app.state.runtime.sessionmaker
    async with sessionmaker() as session:
        result = await demo.seed(session=session, now=clock.now(), base_url="http://127.0.0.1:8000", var_dir=tmp_path)
        await session.commit()
    second = result.extra_refs[0]
    async with sessionmaker() as session:
        case = await session.scalar(select(Case).where(Case.ref == second))
        assert case is not None and case.status == "delivered" and case.eta_first is not None
        delivery = await session.scalar(select(Delivery).where(Delivery.case_id == case.id))
        assert delivery is not None and delivery.state == "delivered" and delivery.proof["pin"] is True
        window = delivery.window_start.astimezone(ZoneInfo("America/New_York"))
        assert (window.hour, delivery.window_end.astimezone(ZoneInfo("America/New_York")).hour) == (18, 20)
        assert delivery.accepted_at is not None and delivery.address["city"] == "Boston"
        [photo] = (await session.scalars(select(Attachment).where(Attachment.case_id == case.id))).all()
        assert (photo.kind, photo.visibility, photo.content_type) == ("proof_of_delivery", "public", "image/jpeg")
        stored = b"".join([chunk async for chunk in app.state.runtime.store.read(photo.sha256)])
        assert b"Courier phone" not in stored and hashlib.sha256(stored).hexdigest() == photo.sha256
        verified = await verify_case(session=session, ref=second)
        assert verified.ok and verified.signed >= 6, verified
