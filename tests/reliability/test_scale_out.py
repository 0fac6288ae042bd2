"""Scale-out (issue 8): two ``baton serve`` and two ``baton worker`` on one PostgreSQL, under load.

The providers are real local servers: a webhook receiver per partner (verifying Standard
Webhooks signatures), the Twilio double and an SMTP sink. Six cases; on four of them the ground
handler (responsible, silent) is made overdue by a day while the load runs, so both workers race
to flag it late and then escalate it. A separate load process posts signed updates from two
partners to both servers, round robin, retrying each unacknowledged request with its
Idempotency-Key. Every other update carries a customer-facing message, so the customer gets SMS
and email (coalesced over one second), which both workers race to send; the others are routine
notes, which each server's group commit writes in batches, both servers locking the same cases.

Afterwards:
- no lost update: every acknowledged update is in the timeline once, every chain verifies;
- no double flag: one ``party.late`` and one ``party.escalated`` per overdue party, none else;
- no double notification: every outbox row ended sent/delivered after exactly one attempt, and
  each provider received each row exactly once (webhook ids, Twilio SIDs and message bodies,
  email Message-IDs).
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import and_, select, update

from notifications.models import Notification
from partners.models import Partner
from tests.support.processes import Admin, BatonServer, BatonWorker, LoadPartner, SignedLoad, poll, run_db
from tests.support.smtp import SMTPSink
from tests.support.twilio_double import TwilioDouble
from tests.support.webhook_receiver import WebhookReceiver
from tracker.models import Case, Event, Party
from tracker.verify import verify_case

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ADMIN_TOKEN = "scale-out-admin-token-0123456789"
UPDATES = 240
CASES = 6
OVERDUE_CASES = 4  # the first four: the handler is a day overdue
HANDLER = "swissport-fra"


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _partners(receivers: dict[str, WebhookReceiver], secrets_by_id: dict[str, str]) -> list[dict[str, Any]]:
    common = {"default_cadence": "PT6H", "timezone": "Europe/Berlin"}
    specs = [
        {"id": "lh", "name": "Lufthansa", "kind": "airline", "ops_email": "baggage-ops@lh.example", **common},
        {"id": "ua", "name": "United Airlines", "kind": "airline", "ops_email": "baggage@ua.example", **common},
        {"id": HANDLER, "name": "Swissport Frankfurt", "kind": "ground_handler", "ops_email": "ops@swissport.example",
         **common},
    ]
    for spec in specs:
        spec["webhook_url"] = receivers[spec["id"]].url
        spec["webhook_secret"] = secrets_by_id[spec["id"]]
    return specs


def _case_body(n: int) -> dict[str, Any]:
    return {
        "type": "baggage",
        "title": f"Delayed bag {n}, LH400 FRA-JFK then UA123",
        "customer": {"name": "Ada Lovelace", "phone": f"+1415555{n:04d}", "email": f"ada{n}@example.com",
                     "locale": "en", "timezone": "America/New_York"},
        "owner": "ua",
        "parties": [
            {"partner": "lh", "role": "carrier", "responsible": True, "cadence": "PT6H"},
            {"partner": HANDLER, "role": "handler", "responsible": True, "cadence": "PT6H"},
            {"partner": "ua", "role": "owner"},
        ],
    }


def test_two_servers_two_workers_lose_nothing_and_double_nothing(pg_db: Any, tmp_path: Path) -> None:
    db = pg_db.url
    ids = ["lh", "ua", HANDLER]
    hook_secrets = {pid: _whsec() for pid in ids}
    receivers = {pid: WebhookReceiver(hook_secrets[pid]) for pid in ids}
    with TwilioDouble() as twilio, SMTPSink() as smtp:
        for receiver in receivers.values():
            receiver.accept()
        env = {
            "BATON_ADMIN_TOKEN": ADMIN_TOKEN,
            "BATON_TWILIO_ACCOUNT_SID": twilio.account_sid,
            "BATON_TWILIO_AUTH_TOKEN": twilio.auth_token,
            "BATON_TWILIO_FROM": twilio.phone_number,
            "BATON_TWILIO_API_BASE": twilio.url,
            "BATON_SMTP_URL": smtp.url,
            "BATON_SUPERVISORS_EMAIL": "complaints@baton.example",
            "BATON_COALESCE_SECONDS": "1",
            "BATON_QUIET_HOURS": "00:00-00:00",  # an empty window: SMS at any hour of the test
            "BATON_SMS_DAILY_CAP": "100000",
        }
        servers = [BatonServer(db, env=env, log_dir=tmp_path) for _ in range(2)]
        workers = [BatonWorker(db, env=env, log_dir=tmp_path) for _ in range(2)]
        processes = [*servers, *workers]
        load = SignedLoad.spawn(tmp_path, prefix="scale")
        try:
            for process in processes:  # all four start at once
                process.start(wait=False)
            for process in processes:
                process.ready()
            with Admin(servers[0].url, ADMIN_TOKEN) as admin:
                keys = {spec["id"]: admin.partner(spec) for spec in _partners(receivers, hook_secrets)}
            with Admin(servers[1].url, ADMIN_TOKEN) as admin:
                refs = [admin.post("/v1/cases", _case_body(n))["ref"] for n in range(CASES)]
            load.go(
                urls=[s.url for s in servers],
                partners=[LoadPartner(*keys["lh"], cases=refs), LoadPartner(*keys["ua"], cases=refs)],
                count=UPDATES, threads=8, timeout=90, notes=True,
            )
            load.wait_acknowledged(20, timeout=60)
            overdue = run_db(db, lambda session: _make_overdue(session, refs[:OVERDUE_CASES]))
            code = load.wait(timeout=90)
            assert code == 0, f"{load.log_tail()}\n{servers[0].log_tail()}\n{servers[1].log_tail()}"

            def settled() -> bool:
                for process in processes:
                    process.assert_running()
                return run_db(db, lambda session: _settled(session, overdue))

            poll(settled, timeout=60, interval=0.2, what="overdue parties escalated and the outbox drained")
        finally:
            load.kill()
            for process in processes:
                process.stop()
            for receiver in receivers.values():
                receiver.refuse()
        texts = twilio.messages
        mails = smtp.deliveries
        twilio_duplicates = twilio.duplicates()

    acks = load.acknowledged()
    state = run_db(db, lambda session: _state(session, refs))
    logs = "\n".join(p.log_tail(15) for p in processes)

    # No lost update: each acknowledged update is in the timeline once, as acknowledged.
    assert len(acks) == UPDATES and len({a.key for a in acks}) == UPDATES
    assert {a.url for a in acks} == {s.url for s in servers}, "the load did not reach both servers"
    stored = state["updates"]
    assert {m: n for m, n in Counter(m for m, _, _ in stored).items() if n > 1} == {}, "updates stored twice"
    where = {m: (ref, seq) for m, ref, seq in stored}
    assert {a.message: (a.ref, a.seq) for a in acks} == where, "stored updates differ from the acknowledged"
    for result in state["verified"]:
        assert result.ok, f"{result.ref}: event {result.failed_seq}: {result.reason}"

    # No double flag: the overdue handler was flagged late once and escalated once, per case.
    flags = Counter(state["flags"])
    expected = Counter({(ref, HANDLER, kind): 1 for ref in refs[:OVERDUE_CASES]
                        for kind in ("party.late", "party.escalated")})
    assert flags == expected, f"flags (case, partner, type): {dict(flags)}\n{logs}"
    assert state["handler_states"] == {ref: ("escalated" if ref in refs[:OVERDUE_CASES] else "on_track")
                                       for ref in refs}

    # No double notification: every outbox row sent once, each provider got each once.
    rows: list[Notification] = state["rows"]
    assert Counter(r.state for r in rows if r.state not in ("sent", "delivered")) == Counter(), logs
    assert [(r.id, r.channel, r.attempts) for r in rows if r.attempts != 1] == [], "rows claimed more than once"
    by_channel = Counter(r.channel for r in rows)
    assert by_channel["sms"] and by_channel["email"] and by_channel["webhook"], by_channel
    kinds = Counter(r.kind for r in rows)
    assert kinds["party.late"] >= OVERDUE_CASES and kinds["party.escalated"] >= OVERDUE_CASES, kinds

    for pid, receiver in receivers.items():
        assert receiver.duplicates() == {}, f"{pid} got webhooks twice: {receiver.duplicates()}"
        assert all(item.verified for item in receiver.received), receiver.rejections
        sent = {r.message_id for r in rows if r.channel == "webhook" and r.partner_id == pid}
        got = [item.webhook_id for item in receiver.received]
        assert sorted(got) == sorted(sent), f"{pid}: {len(got)} webhooks received, {len(sent)} rows"
    late_hooks = Counter(item.payload["data"]["case"]["ref"] for item in receivers[HANDLER].received
                         if item.payload.get("type") == "party.late")
    assert late_hooks == Counter(refs[:OVERDUE_CASES])

    assert twilio_duplicates == {}, f"SMS received twice: {twilio_duplicates}"
    sms_rows = [r for r in rows if r.channel == "sms"]
    assert sorted(m["sid"] for m in texts) == sorted(r.provider_id for r in sms_rows)
    assert Counter((m["to"], m["body"]) for m in texts) == Counter((r.recipient, r.body_text) for r in sms_rows)

    email_rows = [r for r in rows if r.channel == "email"]
    message_ids = [str(d.message["Message-ID"]) for d in mails]
    assert len(message_ids) == len(set(message_ids)), "an email was received twice"
    assert sorted(message_ids) == sorted(r.provider_id for r in email_rows)


async def _make_overdue(session: Any, refs: list[str]) -> list[int]:
    """The handler's party on these cases was due a day ago (and so escalates at once too)."""
    ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    party_ids = (await session.scalars(
        select(Party.id).join(Case, Case.id == Party.case_id).where(Case.ref.in_(refs), Party.partner_id == HANDLER)
    )).all()
    assert len(party_ids) == len(refs)
    await session.execute(update(Party).where(Party.id.in_(party_ids)).values(next_update_due=ago, watch_at=ago))
    return list(party_ids)


async def _settled(session: Any, overdue: list[int]) -> bool:
    escalated = (await session.scalars(select(Party.state).where(Party.id.in_(overdue)))).all()
    if set(escalated) != {"escalated"}:
        return False
    unfinished = await session.scalar(
        select(Notification.id).where(Notification.state.in_(("pending", "sending"))).limit(1)
    )
    return unfinished is None


async def _state(session: Any, refs: list[str]) -> dict[str, Any]:
    cases = {c.id: c.ref for c in (await session.scalars(select(Case).where(Case.ref.in_(refs)))).all()}
    events = (await session.execute(select(Event.case_id, Event.seq, Event.type, Event.partner_id, Event.body))).all()
    texts = [(body.get("message") or body.get("internal_note") or "", case_id, seq)
             for case_id, seq, _, _, body in events if body]
    updates = [(text, cases[case_id], seq) for text, case_id, seq in texts if text.startswith("[scale-")]
    flags = [(cases[case_id], partner_id, type_) for case_id, _, type_, partner_id, _ in events
             if type_ in ("party.late", "party.escalated")]
    handler_states = dict((await session.execute(
        select(Case.ref, Party.state).join(Party, and_(Party.case_id == Case.id, Party.partner_id == HANDLER))
        .where(Case.ref.in_(refs))
    )).all())
    rows = list((await session.scalars(select(Notification).order_by(Notification.id))).all())
    partners = (await session.scalars(select(Partner.id))).all()
    assert sorted(partners) == sorted(["lh", "ua", HANDLER])
    verified = [await verify_case(session=session, ref=ref) for ref in refs]
    return {"updates": updates, "flags": flags, "handler_states": handler_states, "rows": rows, "verified": verified}


