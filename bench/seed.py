"""Bulk data for the benchmark, written with asyncpg's binary COPY (a million cases in about a minute).

Rows have the shapes ``tracker.cases.open_case`` gives them (a ``BAG-`` reference with a valid
check symbol, a 192-bit status token and its 8-character locator, an owner party and a
responsible carrier party with ``next_update_due``/``watch_at`` as ``watchdog.schedule`` sets
them) and hash-chained events built with ``tracker.chain``, so the app reads them like any
other case. References are drawn from a bijection of the row index, so a million of them never
collide; status tokens are random.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tracker.chain import GENESIS, digest, event_hash
from tracker.refs import ALPHABET, _check_symbol

FLIGHTS = ("LH400", "UA123", "AF1234", "BA286", "KL641", "IB6251", "LX14", "OS87", "SK925", "AY5")
AIRPORTS = ("FRA", "JFK", "BOS", "CDG", "LHR", "AMS", "MAD", "ZRH", "VIE", "CPH", "HEL", "MUC")
CADENCE = 6 * 3600
_SCRAMBLE = 0x2C9277B5  # odd, so i -> i * K mod 2**30 is a bijection


def case_ref(index: int) -> str:
    """A valid, unique ``BAG-`` reference for row ``index`` (< 2**30)."""
    value = (index * _SCRAMBLE + 0x155555) % (1 << 30)
    data = "".join(ALPHABET[(value >> shift) & 31] for shift in (25, 20, 15, 10, 5, 0))
    return f"BAG-{data}{_check_symbol('BAG', data)}"


def worldtracer(index: int) -> str:
    return f"{AIRPORTS[index % len(AIRPORTS)]}BP{index % 100000:05d}"


def status_tokens(count: int) -> list[str]:
    """``secrets.token_urlsafe(24)``, ``count`` times, from one urandom call."""
    raw = os.urandom(24 * count)
    return [base64.urlsafe_b64encode(raw[i * 24:(i + 1) * 24]).decode() for i in range(count)]


@dataclass
class SeedPartner:
    id: str
    name: str


@dataclass
class CaseSet:
    """What the benchmark needs to know about seeded cases afterwards."""

    first_id: int
    count: int
    refs: list[str] = field(default_factory=list)            # only when asked (hot/open sets)
    carriers: list[str] = field(default_factory=list)        # partner id of the responsible carrier
    tokens: list[str] = field(default_factory=list)          # a sample of status tokens
    worldtracer: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    due_party_ids: list[int] = field(default_factory=list)   # sweep set: parties due at ``now``
    due_case_ids: list[int] = field(default_factory=list)


CASE_COLUMNS = (
    "id", "ref", "type", "title", "status", "owner_id", "customer_name", "customer_phone", "customer_email",
    "customer_locale", "customer_timezone", "customer_channels", "sms_opted_out", "email_opted_out",
    "status_token", "status_token_locator", "external_refs", "opened_at", "closed_at", "resolution",
    "deadline_at", "last_seq", "last_hash", "updated_at",
)
PARTY_COLUMNS = (
    "id", "case_id", "partner_id", "role", "responsible", "cadence_seconds", "state", "joined_at",
    "last_update_at", "next_update_due", "overdue_since", "escalated_at", "reminders_sent", "watch_at",
)
EVENT_COLUMNS = (
    "case_id", "seq", "type", "actor", "partner_id", "visibility", "occurred_at", "received_at", "body",
    "body_digest", "signature", "prev_hash", "hash",
)


async def next_id(conn: asyncpg.Connection, table: str) -> int:
    return int(await conn.fetchval(f"SELECT coalesce(max(id), 0) + 1 FROM {table}"))


async def fix_sequences(conn: asyncpg.Connection) -> None:
    for table in ("cases", "parties", "events", "case_external_refs", "notifications"):
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
        )


async def seed_cases(
    conn: asyncpg.Connection,
    *,
    count: int,
    start_index: int,
    partners: Sequence[SeedPartner],
    now: dt.datetime,
    closed_fraction: float = 0.0,
    late_fraction: float = 0.0,
    escalated_fraction: float = 0.0,
    calm_first: int = 0,
    due: int = 0,
    events: bool = True,
    external_refs: bool = True,
    keep: str = "sample",
    sample: int = 20_000,
    chunk: int = 25_000,
    progress: Callable[[int], None] | None = None,
    rng: random.Random | None = None,
) -> CaseSet:
    """Insert ``count`` cases with an owner party and a carrier party each (and their events).

    - ``closed_fraction`` of them are closed (``delivered``), the rest open (``tracing``);
    - of the open ones after the first ``calm_first``, ``late_fraction`` have a late carrier and
      ``escalated_fraction`` an escalated one; all other carriers are on track, due 1–6 h ahead;
    - ``due`` open cases (random) have a carrier whose ``watch_at`` has just passed at ``now``
      (the watchdog's work); their party ids are returned.
    - ``keep="all"`` returns every ref/carrier (the working set), else a sample of tokens.
    """
    rng = rng or random.Random(start_index)
    first_case = await next_id(conn, "cases")
    first_party = await next_id(conn, "parties")
    first_ref = await next_id(conn, "case_external_refs")
    out = CaseSet(first_id=first_case, count=count)
    due_at = set(rng.sample(range(count), due)) if due else set()
    keep_every = max(1, count // sample) if keep == "sample" else 1
    n_partners = len(partners)
    done = 0
    while done < count:
        n = min(chunk, count - done)
        tokens = status_tokens(n)
        cases: list[tuple[Any, ...]] = []
        parties: list[tuple[Any, ...]] = []
        evs: list[tuple[Any, ...]] = []
        xrefs: list[tuple[Any, ...]] = []
        for k in range(n):
            local = done + k
            index = start_index + local
            cid = first_case + local
            owner = partners[index % n_partners]
            carrier = partners[(index % n_partners + 1 + (index // n_partners) % (n_partners - 1)) % n_partners]
            ref = case_ref(index)
            token = tokens[k]
            opened = now - dt.timedelta(seconds=rng.randint(600, 10 * 86400))
            closed = rng.random() < closed_fraction
            flight = FLIGHTS[index % len(FLIGHTS)]
            a, b = AIRPORTS[index % 12], AIRPORTS[(index // 12 + 5) % 12]
            title = f"Delayed bag {flight} {a}-{b}, tag 0016{index:06d}"
            wt = worldtracer(index)
            email = f"c{index}@example.com"
            externals = {"worldtracer": wt, "bag_tag": f"0016{index:06d}"} if external_refs else {}
            seq, last_hash = 0, GENESIS
            if events:
                opened_body = {"title": title, "case_type": "baggage", "status": "reported", "owner": owner.id,
                               "parties": [{"partner": owner.id, "role": "owner", "responsible": False},
                                           {"partner": carrier.id, "role": "carrier", "responsible": True}],
                               "external_refs": externals}
                steps = [("case.opened", f"partner:{owner.id}", owner.id, "public", opened_body, opened)]
                if closed:
                    steps.append(("case.closed", f"partner:{owner.id}", owner.id, "public",
                                  {"status": "delivered", "resolution": "Delivered to the customer"},
                                  opened + dt.timedelta(days=2)))
                else:
                    steps.append(("update", f"partner:{carrier.id}", carrier.id, "public",
                                  {"status": "tracing", "location": a, "message": "We are tracing your bag."},
                                  opened + dt.timedelta(minutes=30)))
                for type_, actor, pid, vis, body, at in steps:
                    seq += 1
                    body_digest = digest(body)
                    hashed = event_hash(case_ref=ref, seq=seq, type=type_, actor=actor, partner_id=pid,
                                        visibility=vis, occurred_at=at, received_at=at, body_digest=body_digest,
                                        signature=None, prev_hash=last_hash)
                    evs.append((cid, seq, type_, actor, pid, vis, at, at, json.dumps(body), body_digest, None,
                                last_hash, hashed))
                    last_hash = hashed
            cases.append((
                cid, ref, "baggage", title, "delivered" if closed else "tracing", owner.id, f"Customer {index}",
                f"+1415{index % 10_000_000:07d}", email, "en", "UTC", '["sms", "email"]', False, False,
                token, token[:8], json.dumps(externals), opened, opened + dt.timedelta(days=2) if closed else None,
                "Delivered to the customer" if closed else None, opened + dt.timedelta(days=21), seq, last_hash,
                opened,
            ))
            pid0 = first_party + 2 * local
            parties.append((pid0, cid, owner.id, "owner", False, CADENCE, "on_track", opened, None, None, None, None,
                            0, None))
            # The carrier: closed (nobody watched), due now (sweep), late, escalated, or on track.
            last = opened + dt.timedelta(minutes=30)
            state, next_due, overdue, escalated, reminders, watch = "on_track", None, None, None, 0, None
            calm = local < calm_first
            roll = rng.random()
            if closed:
                pass  # close_case clears next_update_due and watch_at; nobody is watched any more
            elif local in due_at:
                next_due = watch = now - dt.timedelta(seconds=rng.randint(1, 7200))
            elif not calm and roll < escalated_fraction:
                state, reminders = "escalated", 1
                overdue = now - dt.timedelta(seconds=rng.randint(CADENCE, 2 * CADENCE))
                next_due, escalated = overdue, overdue + dt.timedelta(seconds=CADENCE)
            elif not calm and roll < escalated_fraction + late_fraction:
                state, reminders = "late", 1
                overdue = now - dt.timedelta(seconds=rng.randint(600, CADENCE - 3600))
                next_due = overdue
                watch = overdue + dt.timedelta(seconds=CADENCE)
            else:
                next_due = watch = now + dt.timedelta(seconds=rng.randint(3600, CADENCE))
            parties.append((pid0 + 1, cid, carrier.id, "carrier", not closed, CADENCE, state, opened, last,
                            next_due, overdue, escalated, reminders, watch))
            if local in due_at:
                out.due_party_ids.append(pid0 + 1)
                out.due_case_ids.append(cid)
            if external_refs:
                rid = first_ref + 2 * local
                xrefs.append((rid, cid, "worldtracer", wt))
                xrefs.append((rid + 1, cid, "bag_tag", f"0016{index:06d}"))
            if keep == "all":
                out.refs.append(ref)
                out.carriers.append(carrier.id)
                out.tokens.append(token)
                out.worldtracer.append(wt)
                out.emails.append(email)
            elif local % keep_every == 0:
                out.tokens.append(token)
        async with conn.transaction():
            await conn.copy_records_to_table("cases", records=cases, columns=CASE_COLUMNS)
            await conn.copy_records_to_table("parties", records=parties, columns=PARTY_COLUMNS)
            if evs:
                await conn.copy_records_to_table("events", records=evs, columns=EVENT_COLUMNS)
            if xrefs:
                await conn.copy_records_to_table("case_external_refs", records=xrefs,
                                                 columns=("id", "case_id", "kind", "value"))
        done += n
        if progress is not None:
            progress(n)
    await fix_sequences(conn)
    return out


async def insert_partners(conn: asyncpg.Connection, partners: Sequence[SeedPartner], now: dt.datetime,
                          *, webhook_url: str | None) -> None:
    """Partners written directly (the sweep's own database, where no API runs)."""
    await conn.copy_records_to_table(
        "partners",
        records=[(p.id, p.name, "airline", f"ops@{p.id}.example", "+4969123456", webhook_url,
                  "whsec_" + base64.b64encode(os.urandom(32)).decode(), CADENCE, None, "UTC", None, now)
                 for p in partners],
        columns=("id", "name", "kind", "ops_email", "ops_phone", "webhook_url", "webhook_secret",
                 "default_cadence_seconds", "escalate_after_seconds", "timezone", "calendar", "created_at"),
    )


async def queue_sms(conn: asyncpg.Connection, *, count: int, case_ids: Sequence[int], at: dt.datetime) -> None:
    """``count`` customer SMS, rendered already (``body_text``), due at ``at``."""
    body = ("Baton: your bag BAG-7KQ3X9M has been located in Frankfurt and is on its way. "
            "Next update by 18:00. Status: https://baton.example/s/abc")
    rows = [
        (case_ids[i % len(case_ids)], "sms", "customer", "update", f"+1415{5550000 + i % 10000:07d}", None, body,
         None, None, os.urandom(16).hex(), None, "pending", 0, at, at, at)
        for i in range(count)
    ]
    await conn.copy_records_to_table(
        "notifications", records=rows,
        columns=("case_id", "channel", "audience", "kind", "recipient", "subject", "body_text", "body_html",
                 "payload", "message_id", "dedupe_key", "state", "attempts", "next_attempt_at", "created_at",
                 "updated_at"),
    )


# ---------------------------------------------------------------- server-side bulk generation

def _ref_tables(prefix: str = "BAG") -> tuple[int, list[list[int]]]:
    """The check symbol is affine in the six data symbols over GF(2): check = c0 ^ T0[s0] ^ ... ^ T5[s5]."""
    zero = "0" * 6
    c0 = ALPHABET.index(_check_symbol(prefix, zero))
    tables = []
    for position in range(6):
        row = []
        for symbol in range(32):
            data = zero[:position] + ALPHABET[symbol] + zero[position + 1:]
            row.append(ALPHABET.index(_check_symbol(prefix, data)) ^ c0)
        tables.append(row)
    return c0, tables


def _ref_sql(index: str) -> str:
    """SQL computing ``case_ref(index)`` (same value as the Python function)."""
    c0, tables = _ref_tables()
    value = f"(({index})::bigint * {_SCRAMBLE} + {0x155555}) % 1073741824"
    symbols = [f"((({value}) >> {shift}) & 31)::int" for shift in (25, 20, 15, 10, 5, 0)]
    check = " # ".join([str(c0)] + [f"('{{{','.join(map(str, t))}}}'::int[])[{s} + 1]" for t, s in zip(tables, symbols)])
    letters = " || ".join(f"substr('{ALPHABET}', {s} + 1, 1)" for s in symbols)
    return f"('BAG-' || {letters} || substr('{ALPHABET}', ({check}) + 1, 1))"


_PLAIN_INDEXES = """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relname = ANY($1::text[]) AND NOT i.indisprimary AND NOT i.indisunique
"""


async def bulk_cases(
    conn: asyncpg.Connection,
    *,
    count: int,
    start_index: int,
    partners: Sequence[SeedPartner],
    now: dt.datetime,
    closed_fraction: float,
    events: int,
    chunk: int = 50_000,
    progress: Callable[[int], None] | None = None,
) -> None:
    """``count`` more cases (an owner and a carrier party each, ``events`` public events each),
    generated inside PostgreSQL: the same shapes as ``seed_cases``, at C speed.

    Bulk-load technique only, the end state is the app's schema: foreign-key triggers are off
    for this session (the generated rows are consistent by construction), and the plain
    (non-unique) indexes of the three tables are dropped first and rebuilt at the end. Event
    hashes here are placeholders (sha-256 of ref and seq): the timeline reads like any other,
    but ``baton verify`` would not accept these bulk cases' chains.
    """
    first_case = await next_id(conn, "cases")
    first_party = await next_id(conn, "parties")
    tables = ["cases", "parties"] + (["events"] if events else [])
    dropped = await conn.fetch(_PLAIN_INDEXES, tables)
    await conn.execute("SET session_replication_role = replica")
    for name, _ in dropped:
        await conn.execute(f"DROP INDEX {name}")
    ids = ",".join(f"'{p.id}'" for p in partners)
    n = len(partners)
    ref = _ref_sql("g")
    h = "encode(sha256(convert_to(c.ref || ':' || {seq}, 'UTF8')), 'hex')"
    cases_sql = f"""
    INSERT INTO cases (id, ref, type, title, status, owner_id, customer_name, customer_phone, customer_email,
        customer_locale, customer_timezone, customer_channels, sms_opted_out, email_opted_out, status_token,
        status_token_locator, external_refs, opened_at, closed_at, resolution, deadline_at, last_seq, last_hash,
        updated_at)
    SELECT $1::bigint + g - $2::bigint, r.ref, 'baggage',
        'Delayed bag ' || (ARRAY['LH400','UA123','AF1234','BA286','KL641','IB6251','LX14','OS87','SK925','AY5'])[g % 10 + 1]
            || ' FRA-JFK, tag 0016' || lpad(g::text, 6, '0'),
        CASE WHEN x.closed THEN 'delivered' ELSE 'tracing' END,
        (ARRAY[{ids}])[g % {n} + 1], 'Customer ' || g, '+1415' || lpad((g % 10000000)::text, 7, '0'),
        'c' || g || '@example.com', 'en', 'UTC', '["sms", "email"]'::jsonb, false, false,
        x.token, left(x.token, 8), '{{}}'::jsonb, x.opened,
        CASE WHEN x.closed THEN x.opened + interval '2 days' END,
        CASE WHEN x.closed THEN 'Delivered to the customer' END, x.opened + interval '21 days',
        {events},
        {f"encode(sha256(convert_to(r.ref || ':{events}', 'UTF8')), 'hex')" if events else f"'{GENESIS}'"}, x.opened
    FROM generate_series($3::bigint, $4::bigint) AS g
    CROSS JOIN LATERAL (SELECT {ref} AS ref) r
    CROSS JOIN LATERAL (SELECT random() < $5::float8 AS closed,
                               $6::timestamptz - (600 + random() * 863400) * interval '1 second' AS opened,
                               left(translate(encode(sha256(convert_to(random()::text || g, 'UTF8')), 'base64'),
                                              '+/', '-_'), 32) AS token) x
    """
    parties_sql = f"""
    INSERT INTO parties (id, case_id, partner_id, role, responsible, cadence_seconds, state, joined_at,
        last_update_at, next_update_due, overdue_since, escalated_at, reminders_sent, watch_at)
    SELECT $1::bigint + 2 * (c.id - $2::bigint) + k, c.id,
        CASE WHEN k = 0 THEN c.owner_id
             ELSE (ARRAY[{ids}])[((c.id - $2::bigint + $3::bigint) % {n} + 1
                                 + ((c.id - $2::bigint + $3::bigint) / {n}) % {n - 1}) % {n} + 1] END,
        CASE WHEN k = 0 THEN 'owner' ELSE 'carrier' END, k = 1, {CADENCE}, 'on_track', c.opened_at,
        CASE WHEN k = 1 THEN c.opened_at + interval '30 minutes' END,
        d.due, NULL, NULL, 0, d.due
    FROM cases c CROSS JOIN (VALUES (0), (1)) AS kk(k)
    CROSS JOIN LATERAL (SELECT CASE WHEN k = 1 AND c.closed_at IS NULL
                                    THEN $4::timestamptz + (3600 + random() * {CADENCE - 3600}) * interval '1 second'
                               END AS due) d
    WHERE c.id BETWEEN $5::bigint AND $6::bigint
    """
    kind = "CASE WHEN s < {e} OR ({e} = 1 AND c.closed_at IS NULL) THEN 'opened' WHEN c.closed_at IS NULL THEN 'update' ELSE 'closed' END"
    kind = kind.format(e=events)
    events_sql = f"""
    INSERT INTO events (case_id, seq, type, actor, partner_id, visibility, occurred_at, received_at, body,
        body_digest, signature, prev_hash, hash)
    SELECT c.id, s, CASE b.kind WHEN 'opened' THEN 'case.opened' WHEN 'update' THEN 'update' ELSE 'case.closed' END,
        'partner:' || c.owner_id, c.owner_id, 'public', c.opened_at + (s - 1) * interval '30 minutes',
        c.opened_at + (s - 1) * interval '30 minutes', b.body, md5(b.body::text) || md5(c.ref || s),
        NULL, CASE WHEN s = 1 THEN '{GENESIS}' ELSE {h.format(seq='(s - 1)')} END, {h.format(seq='s')}
    FROM cases c CROSS JOIN generate_series(1, {events}) AS s
    CROSS JOIN LATERAL (SELECT {kind} AS kind) k
    CROSS JOIN LATERAL (SELECT k.kind, CASE
        WHEN k.kind = 'opened' THEN jsonb_build_object('title', c.title, 'case_type', 'baggage', 'status', 'reported',
                                                       'owner', c.owner_id)
        WHEN k.kind = 'update' THEN jsonb_build_object('status', 'tracing', 'location', 'FRA',
                                                       'message', 'We are tracing your bag.')
        ELSE jsonb_build_object('status', 'delivered', 'resolution', 'Delivered to the customer') END AS body) b
    WHERE c.id BETWEEN $1::bigint AND $2::bigint
    """
    done = 0
    try:
        while done < count:
            size = min(chunk, count - done)
            lo, hi = start_index + done, start_index + done + size - 1
            id_lo, id_hi = first_case + done, first_case + done + size - 1
            async with conn.transaction():
                await conn.execute(cases_sql, first_case, start_index, lo, hi, closed_fraction, now)
                await conn.execute(parties_sql, first_party, first_case, start_index, now, id_lo, id_hi)
                if events:
                    await conn.execute(events_sql, id_lo, id_hi)
            done += size
            if progress is not None:
                progress(size)
    finally:
        await conn.execute("SET session_replication_role = DEFAULT")
        for _, definition in dropped:
            await conn.execute(definition)
    await fix_sequences(conn)


async def sample_tokens(conn: asyncpg.Connection, count: int) -> list[str]:
    """Status tokens of ``count`` existing cases spread over the whole table."""
    rows = await conn.fetch(
        "SELECT status_token FROM cases WHERE id IN "
        "(SELECT (1 + floor(random() * (SELECT max(id) FROM cases)))::bigint FROM generate_series(1, $1))",
        count,
    )
    return [r[0] for r in rows]


def big_pdf(size: int) -> bytes:
    """A PDF-shaped file of ``size`` bytes (kept byte for byte by Baton: no decoding)."""
    head, tail = b"%PDF-1.4\n% bench upload\n", b"\n%%EOF\n"
    return head + os.urandom(size - len(head) - len(tail)) + tail


def big_jpeg(limit: int) -> bytes:
    """A photo-sized JPEG just under ``limit`` bytes: noise at high quality (as big as a phone's 12 MP shot)."""
    import io

    from PIL import Image

    side = 4200
    while True:
        bands = [Image.effect_noise((side, side * 3 // 4), 64) for _ in range(3)]
        out = io.BytesIO()
        Image.merge("RGB", bands).save(out, "JPEG", quality=92)
        if out.tell() <= limit:
            return out.getvalue()
        side = int(side * (limit / out.tell()) ** 0.5 * 0.98)
