"""``baton erase``: the customer's personal data leaves every table; the timeline still verifies."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from typing import Any

import pytest
from sqlalchemy import select, text, update

from notifications.models import Notification
from tests.conftest import World, case_body, one_backend
from kernel.db import Base
from tracker.erasure import erase_customer, forget_old_pages
from tracker.models import Event
from tracker.verify import verify_case
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


# ---------------------------------------------------------------- however the text spells them

JOSE = {"name": "José Müller", "phone": "+15125550115", "email": "jose.mueller@example.com", "locale": "en",
        "timezone": "America/Chicago"}
JOSE_SAYS = "Please hurry, my insulin is in that suitcase"
# How the customer may be written anywhere, folded (lower-case, no accents), and the phone's digits.
JOSE_TOKENS = ("jose", "muller", "mueller", "jose.mueller@example.com", "insulin")
JOSE_DIGITS = "5125550115"


def _fold(value: str) -> str:
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _texts(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value if isinstance(value, str) else ""


async def _customer_left(world: World) -> list[str]:
    """Every text column of every table, searched for the customer's name tokens, email, words and digits."""
    sessionmaker = world.client._transport.app.state.runtime.sessionmaker  # type: ignore[attr-defined]
    found = []
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).mappings().all():
                for column, value in row.items():
                    text = _fold(_texts(value))
                    digits = re.sub(r"[\s().+\-/]", "", text)
                    found += [f"{table.name}.{column}: {needle}" for needle in JOSE_TOKENS if needle in text]
                    if JOSE_DIGITS in digits:
                        found.append(f"{table.name}.{column}: {JOSE_DIGITS}")
    return sorted(set(found))


RAW_NEEDLES = ("müller".encode(), b"m\\u00fcller", b"mueller", b"5125550115", b"555-0115", b"insulin")
_READ_RAW = """
import sys
from pathlib import Path
path = Path(sys.argv[1])
raw = b"".join(p.read_bytes().lower() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
print([needle.decode() for needle in map(str.encode, sys.argv[2:]) if needle in raw])
"""


async def _raw_needles(settings: Any) -> str:
    """Which needles the bytes of the .db and .db-wal files hold, read by another process: closing a
    file descriptor of the database in this one would drop SQLite's POSIX locks of every connection here."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _READ_RAW, str(settings.sqlite_path()), *(n.decode() for n in RAW_NEEDLES),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return out.decode().strip()


async def _jose_case(world: World, settings: Any) -> tuple[str, str]:
    """1. lh opens the case (signed, so its kept request carries José's data) and gets webhooks.
    2. lh writes a note naming him as "Jose Mueller" with "(512) 555-0115"; José writes on the status page.
    3. The worker renders and tries every notification; one delivery error names him."""
    opened = await world.as_partner("lh", "POST", "/v1/cases", json_body=case_body(
        customer=JOSE, owner="lh", title="Bag of José Müller, LH400",
        parties=[{"partner": "lh", "role": "owner", "responsible": True, "cadence": "PT6H"}],
    ), headers={"Idempotency-Key": "open-jose"})
    assert opened.status_code == 201, opened.text
    ref, token = opened.json()["ref"], opened.json()["status_url"].rsplit("/", 1)[1]
    note = await world.as_partner("lh", "POST", f"/v1/cases/{ref}/events", headers={"Idempotency-Key": "note-1"},
                                  json_body={"status": "located", "message": "Found in FRA, on its way.",
                                             "internal_note": "Spoke to Jose Mueller on (512) 555-0115; "
                                                              "MÜLLER, josé wants it at jose.mueller@example.com"})
    assert note.status_code == 201, note.text
    assert (await world.client.post(f"/s/{token}/messages", data={"message": JOSE_SAYS})).status_code == 303
    app = world.client._transport.app  # type: ignore[attr-defined]
    worker = Worker(sessionmaker=app.state.runtime.sessionmaker, clock=world.clock, settings=settings)
    await worker.run_round()
    await worker.close()
    async with app.state.runtime.sessionmaker() as session:  # a receiver's error echoed the customer back
        await session.execute(update(Notification).where(Notification.kind == "customer.message")
                              .values(last_error="HTTP 422: unknown passenger José Müller +1 512 555 0115"))
        await session.commit()
    return ref, token


async def test_erase_finds_the_customer_in_partners_free_text_however_it_is_spelled(
    world: World, settings: Any, db: Any
) -> None:
    """``baton erase`` (a real process): nothing of José is left in any text column, the chain verifies,
    the status link is dead as an unknown one, lh got ``customer.erased``, SQLite's files hold no trace."""
    ref, token = await _jose_case(world, settings)
    app = world.client._transport.app  # type: ignore[attr-defined]
    unknown = await world.client.get("/v1/status/AAAAAAAAnever-issued-000000000")
    before = await _customer_left(world)
    for where in ("cases.customer_name", "cases.title", "events.body", "events.signature", "notifications.payload",
                  "notifications.last_error", "idempotency_records.response_body"):
        assert any(f.startswith(where) for f in before), f"the scenario must store José in {where}: {before}"
    if db.backend == "sqlite":
        assert await _raw_needles(settings) != "[]", "the files must hold José before the erasure"

    # The app's pooled connections stay open, as a running server's would: the CLI's connection
    # closing is then no checkpoint of its own, and the old pages stay unless the erasure removes them.
    code, out = await _cli(settings.database_url, "erase", ref, "--yes")
    assert code == 0, out
    if db.backend == "sqlite":
        assert await _raw_needles(settings) == "[]"

    assert await _customer_left(world) == []
    async with app.state.runtime.sessionmaker() as session:
        verified = await verify_case(session=session, ref=ref)
        assert verified.ok, verified.reason
        told = (await session.scalars(select(Notification).where(Notification.kind == "customer.erased"))).all()
        events = (await session.scalars(select(Event).order_by(Event.seq)
                                        .where(Event.type == "update"))).all()
    assert [(n.partner_id, n.payload["type"], n.payload["data"]["case"]["ref"]) for n in told] == \
        [("lh", "customer.erased", ref)]
    assert events[-1].body["internal_note"] == "Spoke to [erased] on [erased]; [erased] wants it at [erased]"
    assert events[-1].body["message"] == "Found in FRA, on its way.", "what was not about him stays"
    for path in (f"/s/{token}", f"/v1/status/{token}"):
        gone = await world.client.get(path)
        assert gone.status_code == 404, gone.text
    gone = await world.client.get(f"/v1/status/{token}")
    assert gone.json() == unknown.json(), "an erased link says no more than one never issued"


async def test_erase_asks_for_confirmation_without_yes(world: World, settings: Any) -> None:
    case = await world.open_case()
    code, out = await _cli(settings.database_url, "erase", case["ref"])  # no terminal to say yes: aborted

    assert code != 0 and "Erase the customer" in out and "Aborted" in out, out
    detail = (await world.as_admin("GET", f"/v1/cases/{case['ref']}")).json()
    assert detail["customer"]["name"] == NAME


@one_backend  # SQLite's file format only
async def test_erasure_zeroes_what_it_frees_even_where_sqlite_keeps_deleted_bytes_by_default(
    world: World, settings: Any, db: Any
) -> None:
    ref, _ = await _jose_case(world, settings)
    app = world.client._transport.app  # type: ignore[attr-defined]
    async with app.state.runtime.sessionmaker() as session:
        # Debian builds SQLite with SECURE_DELETE on; the stock default is off. Be the stock build.
        await session.execute(text("PRAGMA secure_delete=OFF"))
        await erase_customer(session=session, ref=ref, actor="staff:test", now=world.clock.now())
        await session.commit()
    assert await forget_old_pages(engine=app.state.engine)

    assert await _raw_needles(settings) == "[]"


@pytest.mark.parametrize(("written", "left"), [
    ("Spoke to Jose Mueller on (512) 555-0115", "Spoke to [erased] on [erased]"),
    ("MÜLLER, josé: 512.555.0115 / +1 512 555 0115", "[erased]: [erased] / [erased]"),
    ("dialled 001-512-555-0115 from FRA, then 011 1 512 555 0115", "dialled [erased] from FRA, then [erased]"),
    ("Herr Muller (JOSE) at jose.mueller@example.com", "Herr [erased] ([erased]) at [erased]"),
    ("ｊｏｓｅ ｍüｌｌｅｒ", "[erased]"),
    ("bag tag 0016123456, file JFKUA12345, desk 555-0199", "bag tag 0016123456, file JFKUA12345, desk 555-0199"),
])
def test_the_redactor_finds_the_customer_however_the_text_spells_them(written: str, left: str) -> None:
    from tracker.redaction import Redactor

    redact = Redactor(name=JOSE["name"], phone=JOSE["phone"], email=JOSE["email"])
    assert redact.text(written) == left
