"""``python -m bench`` (``make bench``): Baton against the bare stack, on a throwaway PostgreSQL.

Steps (each bounded in time; ``--quick`` scales the data and the windows down):

1.  a durable PostgreSQL (fsync on), Baton (``baton serve --workers 2`` + one ``baton worker``),
    the Twilio double and an SMTP sink (their own process), the bare-stack baseline;
2.  partners and their ed25519 and hmac-sha256 keys through the admin API; 10,000 open cases
    (COPY) and the baseline's parties;
3.  signed partner updates, ed25519 and hmac, against the bare stack, at 16, 64 and 256 clients
    (a separate load process); in the full run also Baton on psycopg 3 at 64 clients;
4.  (``--profile``) py-spy on one server worker during one more 64-client ed25519 run;
5.  the complaint department's queue and search with 10,000 open cases (the console when it
    exists, else the JSON API, labelled so);
6.  the dispatcher sending pre-rendered SMS to the Twilio double;
7.  a million cases (generated inside PostgreSQL), then the status page on random tokens;
8.  the watchdog sweep, 1,000 due parties among 10,000 and among 1,000,000 (its own database);
9.  10 MiB attachments (a PDF, a JPEG photo), one and four at a time, against the server workers'
    resident memory (uploads stream to disk; an image is decoded once to re-encode it);
10. peak RSS of every process; JSON, markdown and PNG under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench import procs, report, seed
from bench import profile as profiling

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ADMIN_TOKEN = "bench-admin-" + os.urandom(12).hex()
console = Console()


@dataclass
class Plan:
    quick: bool
    concurrencies: tuple[int, ...] = (1, 16, 64, 256)  # 1: a lone client on an idle server (latency)
    warmup: float = 3.0
    duration: float = 10.0
    partners: int = 16
    open_cases: int = 10_000
    hot_cases: int = 2_000
    status_cases: int = 1_000_000
    status_concurrency: tuple[int, ...] = (4, 32)
    status_headline: int = 4
    sweep_small: int = 10_000
    sweep_large: int = 1_000_000
    sweep_due: int = 1_000
    sweep_reps: int = 3
    sms: int = 5_000
    console_clients: int = 2
    console_duration: float = 5.0
    drivers: bool = True

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if not quick:
            return cls(quick=False)
        return cls(quick=True, warmup=1.0, duration=3.0, status_cases=60_000, sweep_large=60_000, sweep_due=250,
                   sweep_reps=1, sms=1_000, console_duration=2.0, status_concurrency=(4,), drivers=False)


class Bench:
    def __init__(self, plan: Plan, args: argparse.Namespace) -> None:
        self.plan = plan
        self.args = args
        self.started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        RESULTS.mkdir(parents=True, exist_ok=True)
        # Logs and load specs; bench/results/*.tmp is git-ignored.
        self.work = Path(tempfile.mkdtemp(prefix=f"run-{self.started:%Y%m%dT%H%M%SZ}-", suffix=".tmp", dir=RESULTS))
        self.children: dict[str, procs.Child] = {}
        self.rss: dict[str, dict[str, Any]] = {}
        self.results: dict[str, Any] = {"meta": {}, "updates": {"bare": [], "ed25519": [], "hmac": []}, "notes": []}
        self.cluster: Any = None
        self.cpu = procs.CpuMeter(self._roles)
        self.other_cores: list[float] = []

    # ------------------------------------------------------------ plumbing

    def step(self, text: str) -> None:
        console.rule(f"[bold]{text}")

    def _roles(self) -> dict[int, str]:
        """Every process of ours, by role: server (Baton's or the bare stack's), postgres, loadgen, other."""
        roles = {os.getpid(): "orchestrator"}
        for key, child in self.children.items():
            if child.alive():
                role = {"serve": "server", "bare": "server", "load": "loadgen", "worker": "baton_worker"}.get(key, "doubles")
                for pid in (child.pid, *procs.tree(child.pid)):
                    roles[pid] = role
        if self.cluster is not None and self.cluster.base_dir is not None:
            for pid in procs.postgres_pids(self.cluster.data_dir):
                roles[pid] = "postgres"
        return roles

    def dsn(self, db: str) -> str:
        return self.cluster.dsn(db, driver=None)

    def url(self, db: str, driver: str = "asyncpg") -> str:
        return self.cluster.dsn(db, driver=driver)

    def baton_env(self, driver: str = "asyncpg") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        env.update({
            "BATON_DATABASE_URL": self.url("baton", driver),
            "BATON_WORKERS_IN_PROCESS": "false",
            "BATON_ADMIN_TOKEN": ADMIN_TOKEN,
            "BATON_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.port}",
            "BATON_SECRET_KEY": "bench-secret-" + "0" * 32,
            "BATON_TWILIO_ACCOUNT_SID": self.doubles["twilio_account_sid"],
            "BATON_TWILIO_AUTH_TOKEN": self.doubles["twilio_auth_token"],
            "BATON_TWILIO_FROM": self.doubles["twilio_from"],
            "BATON_TWILIO_API_BASE": self.doubles["twilio_api_base"],
            "BATON_SMTP_URL": self.doubles["smtp_url"],
            "BATON_SUPERVISORS_EMAIL": "complaints@bench.example",
            # The partners' webhook receivers in the bench are on loopback (nobody listens: the
            # dispatcher records the failure, as for a receiver that is down).
            "BATON_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
            "BATON_GROUP_COMMIT": "false" if self.args.no_group_commit else "true",
            "PYTHONPATH": str(ROOT),
        })
        return env

    def settings(self) -> Any:
        from kernel.config import Settings

        env = self.baton_env()
        return Settings(**{k.removeprefix("BATON_").lower(): v for k, v in env.items() if k.startswith("BATON_")})

    def start_server(self, driver: str = "asyncpg") -> None:
        log = self.work / f"baton-serve-{driver}.log"
        offset = log.stat().st_size if log.exists() else 0
        child = procs.start(
            f"baton-serve-{driver}",
            [procs.python(), "-m", "tracker.cli", "serve", "--workers", "2", "--host", "127.0.0.1", "--port",
             str(self.port)],
            env=self.baton_env(driver), log_dir=self.work, port=self.port, cwd=str(ROOT),
        )
        self.children["serve"] = child
        procs.wait_http(child, f"http://127.0.0.1:{self.port}/healthz", timeout=90)
        # Both workers are up before we go on. On a busy machine uvicorn's supervisor may kill a
        # worker that is slow to start (its 5 s health check) and start another: wait for two.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with open(log, "rb") as handle:
                handle.seek(offset)
                started = handle.read().count(b"Application startup complete")
            if started >= 2 and len(self.server_workers()) >= 2:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"Baton's two workers did not start:\n{child.log_tail()}")
        self._warm(self.port)

    def start_bare(self, driver: str = "asyncpg") -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_BARE_DATABASE_URL": self.url("bare", driver),
               "BENCH_BARE_SECRET": self.bare_secret, "BENCH_BARE_POOL_SIZE": str(self.settings().db_pool_size)}
        bare = procs.start(f"bare-stack-{driver}", [procs.python(), "-m", "uvicorn", "bench.baseline_app:app", "--host",
                                                   "127.0.0.1", "--port", str(self.bare_port), "--workers", "2",
                                                   "--no-access-log", "--log-level", "warning"],
                           env=env, log_dir=self.work, port=self.bare_port, cwd=str(ROOT))
        self.children["bare"] = bare
        procs.wait_http(bare, f"http://127.0.0.1:{self.bare_port}/healthz", timeout=90)
        self._warm(self.bare_port)

    def _warm(self, port: int) -> None:
        """A few requests on fresh connections, so both workers are past their first-request work
        (FastAPI builds its route state lazily) before anything is measured."""
        for _ in range(40):
            try:
                httpx.get(f"http://127.0.0.1:{port}/bench-warm-up-404", timeout=30)
            except httpx.HTTPError:
                pass
        time.sleep(0.5)

    def server_workers(self) -> list[int]:
        child = self.children.get("serve")
        if child is None:
            return []
        return [pid for pid in procs.tree(child.pid) if "resource_tracker" not in procs.cmdline(pid)]

    def snapshot_rss(self) -> None:
        """Peak RSS (VmHWM) of every process of ours, by role; kept across restarts (max)."""
        roles: list[tuple[str, int, bool]] = []
        labels = {"serve": ("baton serve", True), "worker": ("baton worker", True),
                  "bare": ("bare stack", False), "doubles": ("Twilio double + SMTP sink", False)}
        for key, child in self.children.items():
            if not child.alive() or key not in labels:
                continue
            label, baton = labels[key]
            roles.append((f"{label} (master)" if key in ("serve", "bare") else label, child.pid, baton))
            if key in ("serve", "bare"):
                workers = [p for p in procs.tree(child.pid) if "resource_tracker" not in procs.cmdline(p)]
                for n, pid in enumerate(sorted(workers), 1):
                    roles.append((f"{label} worker {n}", pid, baton))
        roles.append(("benchmark process (seeding, sweep, dispatcher)", os.getpid(), False))
        for role, pid, baton in roles:
            hwm = procs.status_kb(pid, "VmHWM")
            if hwm is None:
                continue
            entry = self.rss.setdefault(role, {"vmhwm_mb": 0.0, "baton": baton})
            entry["vmhwm_mb"] = max(entry["vmhwm_mb"], round(hwm / 1024, 1))
            entry["vmrss_mb"] = round((procs.status_kb(pid, "VmRSS") or 0) / 1024, 1)

    def metered(self, work: Any) -> tuple[Any, dict[str, float]]:
        """Run ``work()`` and say how much CPU our processes and everyone else's used meanwhile."""
        before = self.cpu.snapshot()
        result = work()
        return result, procs.CpuMeter.delta(before, self.cpu.snapshot())

    def load(self, spec: dict[str, Any], label: str, on_window: Any = None) -> dict[str, Any]:
        """One load point from a separate process; CPU use of everything on the machine alongside.

        ``on_window()`` is called when the measured window starts (after the warm-up)."""
        spec = {"host": "127.0.0.1", "warmup": self.plan.warmup, "duration": self.plan.duration, "grace": 40, **spec}
        spec_path = self.work / f"load-{label}.json"
        out_path = self.work / f"load-{label}.out.json"
        spec_path.write_text(json.dumps(spec))
        loader = procs.start(f"load-{label}", [procs.python(), "-m", "bench.loadgen", str(spec_path), str(out_path)],
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, log_dir=self.work, cwd=str(ROOT))
        self.children["load"] = loader
        # CPU is metered over the measured window only, which the load process marks in its log.
        before = after = None
        xids = 0
        limit = time.monotonic() + spec["warmup"] + spec["duration"] + spec["grace"] + 300
        while loader.alive() and time.monotonic() < limit:
            if before is None or after is None:
                text = loader.log_path.read_text(errors="replace")
                if before is None and "WINDOW START" in text:
                    before = self.cpu.snapshot()
                    xids = self._next_xid()
                    if on_window is not None:
                        on_window()
                if before is not None and after is None and "WINDOW END" in text:
                    after = self.cpu.snapshot()
                    xids = self._next_xid() - xids
            time.sleep(0.02)
        if loader.alive():
            loader.stop()
            raise RuntimeError(f"load generator {label} did not finish:\n{loader.log_tail()}")
        if loader.popen.returncode != 0:
            raise RuntimeError(f"load generator {label} failed:\n{loader.log_tail()}")
        result = json.loads(out_path.read_text())
        if before is not None and after is not None:
            cpu = procs.CpuMeter.delta(before, after)
            requests = max(result["completed"], 1)
            for role in ("server", "postgres"):
                if f"{role}_cores" in cpu:
                    cpu[f"{role}_ms_per_request"] = round(1000 * cpu[f"{role}_cores"] * cpu["wall_s"] / requests, 2)
            result["cpu"] = cpu
            # Writing transactions in the window (xids assigned): with group commit, updates per
            # transaction is the mean batch size (the worker's few writes included).
            result["transactions"] = xids
            result["updates_per_transaction"] = round(result["ok"] / xids, 1) if xids > 0 else None
        del self.children["load"]
        return result

    def show(self, label: str, point: dict[str, Any], base: dict[str, Any] | None = None) -> None:
        ratio = f"  = {point['rps'] / base['rps']:.2f}× bare" if base and base.get("rps") else ""
        bad = report._errors(point)
        cpu = point.get("cpu", {})
        console.print(
            f"  {label:<34} {point['rps']:>8.1f} req/s  p50 {point['p50_ms'] or 0:>8.1f} ms  "
            f"p99 {point['p99_ms'] or 0:>8.1f} ms{ratio}"
            + (f"  [red]{bad}[/red]" if bad else "")
            + (f"  [dim](CPU/request: server {cpu.get('server_ms_per_request', 0):.1f} ms, PostgreSQL "
               f"{cpu.get('postgres_ms_per_request', 0):.1f} ms; others {cpu.get('other_cores', 0):.2f} cores, "
               f"loadgen {cpu.get('loadgen_cores', 0):.2f})[/dim]" if cpu else "")
        )

    # ------------------------------------------------------------ 1. the stack

    def start_stack(self) -> None:
        from tests.support.postgres import PostgresCluster

        self.step("1. PostgreSQL (durable), Baton, worker, Twilio double, SMTP sink, bare stack")
        self.cluster = PostgresCluster(durable=True).start()
        for db in ("baton", "bare", "sweep"):
            self.cluster.create_database(db)
        asyncio.run(self._migrate())
        self.results["meta"]["postgres_version"] = asyncio.run(self._pg_version())
        doubles = procs.start("doubles", [procs.python(), "-m", "bench.doubles"],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, log_dir=self.work, cwd=str(ROOT))
        self.children["doubles"] = doubles
        self.doubles = procs.read_json_line(doubles)
        self.port = procs.free_port()
        self.start_server()
        self.children["worker"] = procs.start("baton-worker", [procs.python(), "-m", "tracker.cli", "worker"],
                                              env=self.baton_env(), log_dir=self.work, cwd=str(ROOT))
        self.bare_port = procs.free_port()
        self.bare_secret = os.urandom(16).hex()
        self.start_bare()
        if not self.children["worker"].alive():
            raise RuntimeError(f"baton worker exited:\n{self.children['worker'].log_tail()}")
        console.print(f"  PostgreSQL on port {self.cluster.port}, Baton on {self.port}, bare stack on {self.bare_port}, "
                      f"logs in {self.work}")

    async def _migrate(self) -> None:
        from kernel.config import Settings
        from kernel.db import make_engine, make_sessionmaker
        from tracker.migrate import seed_case_types, upgrade

        for db in ("baton", "sweep"):
            engine = make_engine(Settings(database_url=self.url(db)))
            try:
                await upgrade(engine)
                async with make_sessionmaker(engine)() as session:
                    await seed_case_types(session)
                    await session.commit()
            finally:
                await engine.dispose()
        from bench.baseline_app import SCHEMA

        conn = await asyncpg.connect(self.dsn("bare"))
        try:
            for statement in SCHEMA:
                await conn.execute(statement)
        finally:
            await conn.close()

    def _next_xid(self) -> int:
        """The cluster's next transaction id: it grows by one per transaction that writes."""
        async def read() -> int:
            conn = await asyncpg.connect(self.dsn("baton"))
            try:
                return int(await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))
            finally:
                await conn.close()

        return asyncio.run(read())

    async def _pg_version(self) -> str:
        conn = await asyncpg.connect(self.dsn("baton"))
        try:
            return str(await conn.fetchval("SHOW server_version")) + (
                ", fsync " + str(await conn.fetchval("SHOW fsync")))
        finally:
            await conn.close()

    # ------------------------------------------------------------ 2. seeding

    def seed(self) -> None:
        from partners.client import generate_ed25519_keypair

        plan = self.plan
        self.step(f"2. Seeding: {plan.partners} partners (admin API), {plan.open_cases:,} open cases")
        self.partners = [seed.SeedPartner(f"bp{i:02d}", f"Bench Airline {i:02d}") for i in range(plan.partners)]
        self.keys: dict[str, dict[str, tuple[str, str]]] = {}
        base = f"http://127.0.0.1:{self.port}"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as api, \
                self._progress() as progress:
            task = progress.add_task("partners and keys", total=plan.partners)
            for p in self.partners:
                response = api.post("/v1/partners", json={
                    "id": p.id, "name": p.name, "kind": "airline", "ops_email": f"ops@{p.id}.example",
                    "ops_phone": "+4969123456", "default_cadence": "PT6H", "timezone": "UTC"})
                response.raise_for_status()
                private, public = generate_ed25519_keypair()
                response = api.post(f"/v1/partners/{p.id}/keys", json={
                    "keyid": f"{p.id}-ed", "alg": "ed25519", "public_key": public.decode()})
                response.raise_for_status()
                response = api.post(f"/v1/partners/{p.id}/keys", json={"keyid": f"{p.id}-hmac", "alg": "hmac-sha256"})
                response.raise_for_status()
                self.keys[p.id] = {"ed25519": (f"{p.id}-ed", private.decode()),
                                   "hmac": (f"{p.id}-hmac", response.json()["secret"])}
                progress.advance(task)
        self.open_set = asyncio.run(self._seed_open())

    def _progress(self) -> Progress:
        return Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console, transient=False)

    async def _seed_open(self) -> seed.CaseSet:
        plan = self.plan
        now = dt.datetime.now(dt.timezone.utc)
        conn = await asyncpg.connect(self.dsn("baton"))
        bare = await asyncpg.connect(self.dsn("bare"))
        try:
            with self._progress() as progress:
                task = progress.add_task("open cases (2 parties, 2 events each)", total=plan.open_cases)
                cases = await seed.seed_cases(
                    conn, count=plan.open_cases, start_index=0, partners=self.partners, now=now,
                    late_fraction=0.10, escalated_fraction=0.05, calm_first=plan.hot_cases, keep="all",
                    chunk=2_000, progress=lambda n: progress.advance(task, n))
                task = progress.add_task("bare-stack parties", total=plan.open_cases)
                await bare.copy_records_to_table(
                    "bare_parties", records=[(i + 1, now + dt.timedelta(hours=6), now) for i in range(plan.open_cases)],
                    columns=("id", "next_due", "last_update_at"))
                progress.advance(task, plan.open_cases)
            for c in (conn, bare):
                await c.execute("VACUUM ANALYZE")
                await c.execute("CHECKPOINT")
        finally:
            await conn.close()
            await bare.close()
        return cases

    # ------------------------------------------------------------ 3. signed updates

    def updates(self) -> None:
        plan = self.plan
        self.step(f"3. Signed partner updates vs bare stack at {', '.join(map(str, plan.concurrencies))} clients "
                  f"({plan.warmup:g} s warm-up + {plan.duration:g} s each)")
        window = plan.warmup + plan.duration
        for c in plan.concurrencies:
            bare = self.load({"kind": "bare", "port": self.bare_port, "concurrency": c, "secret": self.bare_secret,
                              "party_ids": list(range(1, plan.hot_cases + 1)), "presign": int(2500 * window),
                              "tag": f"bare-{c}"}, f"bare-{c}")
            self.results["updates"]["bare"].append(bare)
            self.show(f"bare stack, {c} clients", bare)
            self.other_cores.append(bare.get("cpu", {}).get("other_cores", 0.0))
            for alg in ("ed25519", "hmac"):
                point = self.load(self._signed_spec(alg, c, bare["rps"]), f"{alg}-{c}")
                self.results["updates"][alg].append(point)
                self.show(f"Baton {alg}, {c} clients", point, bare)
                self.other_cores.append(point.get("cpu", {}).get("other_cores", 0.0))
            self.snapshot_rss()

    def _signed_spec(self, alg: str, concurrency: int, bare_rps: float, tag: str | None = None) -> dict[str, Any]:
        window = self.plan.warmup + self.plan.duration
        targets = []
        for ref, carrier in zip(self.open_set.refs[: self.plan.hot_cases], self.open_set.carriers):
            keyid, material = self.keys[carrier][alg]
            targets.append([ref, keyid, alg, material])
        presign = min(60_000, max(4_000, int(1.5 * max(bare_rps, 200) * window)))
        return {"kind": "signed", "port": self.port, "concurrency": concurrency, "base_url": f"http://127.0.0.1:{self.port}",
                "targets": targets, "presign": presign, "idempotency": not self.args.no_idempotency_key,
                "tag": tag or f"{alg}-{concurrency}"}

    def drivers(self) -> None:
        """Baton on psycopg 3 against asyncpg, ed25519 at 64 clients (the issue: choose by measurement)."""
        if not (self.plan.drivers or self.args.drivers) or self.args.skip_drivers:
            return
        self.step("3b. PostgreSQL driver: psycopg 3 vs asyncpg, bare stack and Baton ed25519, 64 clients")
        bare = next((p for p in self.results["updates"]["bare"] if p["concurrency"] == 64), None)
        asy = next((p for p in self.results["updates"]["ed25519"] if p["concurrency"] == 64), None)
        self.snapshot_rss()
        window = self.plan.warmup + self.plan.duration
        self.children.pop("bare").stop()
        self.start_bare("psycopg")
        bare_psycopg = self.load({"kind": "bare", "port": self.bare_port, "concurrency": 64, "secret": self.bare_secret,
                                  "party_ids": list(range(1, self.plan.hot_cases + 1)), "presign": int(2500 * window),
                                  "tag": "bare-psycopg-64"}, "bare-psycopg-64")
        bare_psycopg.update(driver="psycopg 3", stack="bare stack",
                            ratio_to_bare=round(bare_psycopg["rps"] / bare["rps"], 2) if bare and bare["rps"] else None)
        self.show("bare stack on psycopg 3, 64", bare_psycopg, bare)
        self.snapshot_rss()
        self.children.pop("bare").stop()
        self.start_bare("asyncpg")
        self.children.pop("serve").stop()
        try:
            self.start_server("psycopg")
            point = self.load(self._signed_spec("ed25519", 64, bare["rps"] if bare else 500, tag="psycopg-64"),
                              "psycopg-64")
            point["driver"] = "psycopg 3"
            point["stack"] = "Baton ed25519"
            point["ratio_to_bare"] = round(point["rps"] / bare["rps"], 2) if bare and bare["rps"] else None
            self.show("Baton ed25519 on psycopg 3, 64", point, bare)
            self.snapshot_rss()
        finally:
            self.children.pop("serve").stop()
            self.start_server("asyncpg")
        self.results["drivers"] = [
            {**bare, "driver": "asyncpg", "stack": "bare stack", "ratio_to_bare": 1.0} if bare else None,
            bare_psycopg,
            {**asy, "driver": "asyncpg", "stack": "Baton ed25519",
             "ratio_to_bare": round(asy["rps"] / bare["rps"], 2) if bare else None} if asy else None,
            point,
        ]
        self.results["drivers"] = [d for d in self.results["drivers"] if d]

    # ------------------------------------------------------------ 4. profile

    def profile(self) -> None:
        if not self.args.profile:
            return
        self.step("4. Profile: py-spy on the server workers during a 64-client ed25519 run")
        exe = profiling.py_spy()
        if exe is None:
            self.results["notes"].append("--profile: py-spy not installed; no profile taken.")
            console.print("  [red]py-spy not installed[/red]")
            return
        workers = sorted(self.server_workers())
        stamp = self.results["meta"]["stamp"]
        raw = RESULTS / f"profile-{stamp}-ed25519-64.txt"
        svg = RESULTS / f"profile-{stamp}-ed25519-64.svg"
        # py-spy attaches when the measured window opens (after the warm-up: the first requests
        # after a start build FastAPI's route state lazily) and samples for the window.
        seconds = self.plan.duration
        spies: list[Any] = []

        def attach() -> None:
            spies.append(profiling.start(workers[0], seconds=seconds, out=raw, fmt="raw"))
            if len(workers) > 1:
                spies.append(profiling.start(workers[1], seconds=seconds, out=svg, fmt="flamegraph"))

        bare = next((p for p in self.results["updates"]["bare"] if p["concurrency"] == 64), {"rps": 500})
        point = self.load(self._signed_spec("ed25519", 64, bare["rps"], tag="profiled-64"), "profiled-64",
                          on_window=attach)
        self.show("Baton ed25519, 64 (profiled)", point, bare)
        for spy in spies:
            try:
                spy.wait(seconds + 30)
            except Exception:
                spy.kill()
        summary = RESULTS / f"profile-{stamp}-ed25519-64-summary.txt"
        if raw.exists():
            summary.write_text(profiling.summarize(raw))
            for name in ("latest-profile.txt", "latest-profile-summary.txt", "latest-profile.svg"):
                (RESULTS / name).unlink(missing_ok=True)
            shutil.copy(raw, RESULTS / "latest-profile.txt")
            shutil.copy(summary, RESULTS / "latest-profile-summary.txt")
            if svg.exists():
                shutil.copy(svg, RESULTS / "latest-profile.svg")
            console.print(f"  profile: {raw.name}, {summary.name}" + (f", {svg.name}" if svg.exists() else ""))
        else:
            out = b"".join(s.stdout.read() for s in spies if s.stdout)  # type: ignore[union-attr]
            console.print(f"  [red]py-spy wrote nothing[/red]: {out.decode(errors='replace')[-800:]}")
        self.results["profile"] = {"run": point, "raw": raw.name, "summary": summary.name,
                                   "flamegraph": svg.name if svg.exists() else None, "pids": workers[:2],
                                   "note": "a separate run from the figures above: py-spy (non-blocking, 200 Hz) "
                                           "on both server workers during its measured window"}

    # ------------------------------------------------------------ 5. console

    def console_pages(self) -> None:
        plan = self.plan
        base = f"http://127.0.0.1:{self.port}"
        probe = httpx.get(f"{base}/console/", follow_redirects=False, timeout=10)
        terms = self._search_terms()
        if probe.status_code == 404:
            label = "JSON API (console not built yet):"
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            pages = {"queue": ["/v1/overdue"], "search": [f"/v1/cases?text={quote(t)}" for t in terms]}
        else:
            label = "console"
            headers = {"Cookie": self._console_cookie(base)}
            pages = {"queue": ["/console/"], "search": [f"/console/search?q={quote(t)}" for t in terms]}
        self.step(f"5. Complaint department: {label.rstrip(':')} queue and search, {plan.open_cases:,} open cases, "
                  f"{plan.console_clients} clients")
        out: dict[str, Any] = {"label": label, "open_cases": plan.open_cases, "clients": plan.console_clients, "pages": {}}
        for name, paths in pages.items():
            point = self.load({"kind": "get", "port": self.port, "concurrency": plan.console_clients, "paths": paths,
                               "headers": headers, "warmup": 1.0, "duration": plan.console_duration}, f"console-{name}")
            point["path_example"] = paths[0].split("?")[0] + ("?…" if "?" in paths[0] else "")
            out["pages"][name] = point
            self.show(f"{name} {point['path_example']}", point)
        self.results["console"] = out

    def _search_terms(self) -> list[str]:
        rng = random.Random(7)
        cases = self.open_set
        terms = []
        for _ in range(400):
            i = rng.randrange(len(cases.refs))
            kind = rng.random()
            if kind < 0.4:
                terms.append(cases.refs[i])
            elif kind < 0.7:
                terms.append(cases.worldtracer[i])
            elif kind < 0.85:
                terms.append(cases.emails[i])
            else:
                terms.append(rng.choice(seed.FLIGHTS))
        return terms

    def _console_cookie(self, base: str) -> str:
        """Sign in as a browser would: the sign-in form (with its CSRF field), the admin token, the cookie."""
        with httpx.Client(base_url=base, timeout=15, follow_redirects=True) as client:
            page = client.get("/console/login")
            form = re.search(r"<form[^>]*>(.*?)</form>", page.text, re.S | re.I)
            action = re.search(r'<form[^>]*action="([^"]*)"', page.text, re.I)
            fields: dict[str, str] = {}
            token_field = "token"
            for tag in re.findall(r"<input[^>]*>", form.group(1) if form else page.text, re.I):
                name = re.search(r'name="([^"]+)"', tag)
                if not name:
                    continue
                value = re.search(r'value="([^"]*)"', tag)
                kind = re.search(r'type="([^"]+)"', tag)
                if (kind and kind.group(1).lower() == "password") or "token" in name.group(1).lower():
                    token_field = name.group(1)
                    continue
                fields[name.group(1)] = value.group(1) if value else ""
            fields[token_field] = ADMIN_TOKEN
            target = action.group(1) if action and action.group(1) else "/console/login"
            client.post(target, data=fields)
            check = client.get("/console/", follow_redirects=False)
            if check.status_code != 200:
                raise RuntimeError(f"console sign-in failed: GET /console/ answered {check.status_code}")
            return "; ".join(f"{name}={value}" for name, value in client.cookies.items())

    # ------------------------------------------------------------ 6. dispatcher

    def dispatcher(self) -> None:
        from bench.measure import dispatcher_rate

        self.step(f"6. Dispatcher: {self.plan.sms:,} pre-rendered customer SMS to the Twilio double")
        case_ids = list(range(self.open_set.first_id, self.open_set.first_id + self.plan.open_cases))
        result, cpu = self.metered(lambda: asyncio.run(dispatcher_rate(
            settings=self.settings(), libpq_dsn=self.dsn("baton"), count=self.plan.sms, case_ids=case_ids)))
        result["cpu"] = cpu
        self.results["dispatcher"] = result
        console.print(f"  {result['per_second']} notifications/s ({result['seconds']} s; states {result['states']}"
                      + (f"; errors {result['errors']}" if result.get("errors") else "") + ")"
                      + f"  [dim](other load {cpu['other_cores']:.2f} cores)[/dim]")

    # ------------------------------------------------------------ 7. status page

    def status_page(self) -> None:
        plan = self.plan
        more = plan.status_cases - plan.open_cases
        self.step(f"7. Status page with {plan.status_cases:,} cases (+{more:,} generated in PostgreSQL)")
        tokens = asyncio.run(self._bulk_main(more))
        paths = [f"/s/{t}" for t in tokens]
        points = []
        for c in plan.status_concurrency:
            point = self.load({"kind": "get", "port": self.port, "concurrency": c, "paths": paths,
                               "headers": {"Accept-Language": "en"}, "forwarded_for": True}, f"status-{c}")
            points.append(point)
            self.show(f"GET /s/{{token}}, {c} clients", point)
        self.results["status_page"] = {"cases": plan.status_cases, "tokens_sampled": len(tokens),
                                       "headline_concurrency": plan.status_headline, "points": points}
        self.snapshot_rss()

    async def _bulk_main(self, count: int) -> list[str]:
        conn = await asyncpg.connect(self.dsn("baton"))
        try:
            with self._progress() as progress:
                task = progress.add_task("cases (80 % closed), 2 parties + 1 event each", total=count)
                started = time.perf_counter()
                await seed.bulk_cases(conn, count=count, start_index=self.plan.open_cases, partners=self.partners,
                                      now=dt.datetime.now(dt.timezone.utc), closed_fraction=0.8, events=1,
                                      progress=lambda n: progress.advance(task, n))
                task2 = progress.add_task("VACUUM ANALYZE, CHECKPOINT", total=1)
                for table in ("cases", "parties", "events"):
                    await conn.execute(f"VACUUM ANALYZE {table}")
                await conn.execute("CHECKPOINT")
                progress.advance(task2)
            self.results["meta"]["bulk_seed_seconds"] = round(time.perf_counter() - started, 1)
            counts = {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in ("cases", "parties", "events")}
            self.results["meta"]["main_db_rows"] = counts
            console.print(f"  rows: {counts}")
            return await seed.sample_tokens(conn, 20_000)
        finally:
            await conn.close()

    # ------------------------------------------------------------ 8. watchdog

    def sweep(self) -> None:
        plan = self.plan
        self.step(f"8. Watchdog sweep: {plan.sweep_due:,} due among {plan.sweep_small:,} and among "
                  f"{plan.sweep_large:,} parties")
        self.results["sweep"], cpu = self.metered(lambda: asyncio.run(self._sweep()))
        self.results["sweep"]["cpu"] = cpu
        s = self.results["sweep"]
        console.print(f"  {s['small']['parties_total']:,} parties: {s['small']['median_s'] * 1000:.0f} ms; "
                      f"{s['large']['parties_total']:,} parties: {s['large']['median_s'] * 1000:.0f} ms; "
                      f"ratio {s['ratio']}")

    async def _sweep(self) -> dict[str, Any]:
        from bench.measure import SweepBench

        plan = self.plan
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        conn = await asyncpg.connect(self.dsn("sweep"))
        try:
            await seed.insert_partners(conn, self.partners, now, webhook_url="http://127.0.0.1:9/baton-hook")
            with self._progress() as progress:
                task = progress.add_task("sweep db: cases (owner + carrier)", total=plan.sweep_small // 2)
                small = await seed.seed_cases(conn, count=plan.sweep_small // 2, start_index=0, partners=self.partners,
                                              now=now, due=plan.sweep_due, events=False, external_refs=False,
                                              keep="none", chunk=5_000, progress=lambda n: progress.advance(task, n))
        finally:
            await conn.close()
        bench = SweepBench(url=self.url("sweep"), libpq_dsn=self.dsn("sweep"), now=now,
                           due_party_ids=small.due_party_ids, due_case_ids=small.due_case_ids, meter=self.cpu)
        first = await bench.run(reps=plan.sweep_reps, parties_total=plan.sweep_small)
        first["cpu"] = bench.cpu
        console.print(f"  {first['parties_total']:,} parties: {first['seconds']} s")
        conn = await asyncpg.connect(self.dsn("sweep"))
        try:
            more = (plan.sweep_large - plan.sweep_small) // 2
            with self._progress() as progress:
                task = progress.add_task("sweep db: more cases (half closed)", total=more)
                await seed.bulk_cases(conn, count=more, start_index=plan.sweep_small // 2, partners=self.partners,
                                      now=now, closed_fraction=0.5, events=0,
                                      progress=lambda n: progress.advance(task, n))
        finally:
            await conn.close()
        profile_to = None
        if self.args.profile and profiling.py_spy():
            profile_to = RESULTS / f"profile-{self.results['meta']['stamp']}-sweep.txt"
        second = await bench.run(reps=plan.sweep_reps, parties_total=plan.sweep_large, profile_to=profile_to)
        second["cpu"] = bench.cpu
        if profile_to is not None and profile_to.exists():
            summary = profile_to.with_name(profile_to.stem + "-summary.txt")
            summary.write_text(profiling.summarize(profile_to))
            shutil.copy(summary, RESULTS / "latest-profile-sweep-summary.txt")
            self.results["profile_sweep"] = {"raw": profile_to.name, "summary": summary.name}
        console.print(f"  {second['parties_total']:,} parties: {second['seconds']} s")
        return {"small": first, "large": second, "ratio": round(second["median_s"] / first["median_s"], 2),
                "batch": 500, "how": "Watchdog(...).sweep() in the benchmark process on a FrozenClock; due parties "
                                      "reset (and VACUUM, CHECKPOINT) before each run; median of the runs"}

    # ------------------------------------------------------------ all

    def run(self) -> int:
        plan = self.plan
        meta = self.results["meta"]
        meta.update({
            "started_at": self.started.isoformat().replace("+00:00", "Z"),
            "stamp": self.started.strftime("%Y%m%dT%H%M%SZ"),
            "quick": plan.quick,
            "plan": plan.__dict__,
            "machine": f"{os.cpu_count()} CPUs ({_cpu_model()}), {platform.system()} {platform.release()}, "
                       f"Python {platform.python_version()}",
            "loadavg_start": procs.loadavg(),
            "idempotency_key": not self.args.no_idempotency_key,
            "warmup_s": plan.warmup,
            "duration_s": plan.duration,
        })
        load = procs.loadavg()[0]
        if load > 1.0:
            console.print(f"[yellow]The machine is busy (load average {load:.1f} on {os.cpu_count()} CPUs): figures "
                          f"will be lower and noisier than on an idle machine.[/yellow]")
        started = time.monotonic()
        failed = None
        try:
            self.start_stack()
            self.seed()
            for name, phase in self.phases():
                if self.args.only is None or name in self.args.only:
                    phase()
            self.snapshot_rss()
        except KeyboardInterrupt:
            failed = "interrupted"
        except Exception as exc:  # report what we have, with the logs that explain it
            failed = f"{type(exc).__name__}: {exc}"
            console.print(f"[red]failed:[/red] {failed}")
            traceback.print_exc()
            for child in self.children.values():
                console.print(f"[dim]--- {child.name} log ({child.log_path}) ---[/dim]\n{child.log_tail(15)}")
        finally:
            self.snapshot_rss()
            self.shutdown()
        meta["loadavg_end"] = procs.loadavg()
        meta["wall_seconds"] = round(time.monotonic() - started, 1)
        meta["other_cores_during_updates"] = round(sum(self.other_cores) / len(self.other_cores), 2) if self.other_cores else None
        self.results["rss"] = self.rss
        self.results["notes"] += self._notes()
        if failed:
            meta["failed"] = failed
            self.results["notes"].append(f"The run did not complete: {failed}")
        path, table = report.write(self.results, RESULTS, latest=self.args.only is None)
        console.rule("[bold]Results")
        console.print(table, markup=False, highlight=False)
        written = "" if self.args.only else ", bench/results/latest.json, latest.md, latest.png"
        console.print(f"written: {path.relative_to(ROOT)}{written} ({meta['wall_seconds']:.0f} s in all)")
        if not self.args.keep_logs and not failed:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            console.print(f"logs kept in {self.work}")
        return 1 if failed else 0

    def phases(self) -> list[tuple[str, Any]]:
        return [("updates", self.updates), ("drivers", self.drivers), ("profile", self.profile),
                ("console", self.console_pages), ("dispatcher", self.dispatcher), ("status", self.status_page),
                ("sweep", self.sweep), ("uploads", self.uploads), ("scans", self.scans)]

    def scans(self) -> None:
        """A batch of 10,000 bag scans (CSV) in one signed request, three times: new, then all duplicates."""
        from partners.client import BatonSigner

        self.step("10. Scans: 10,000 bag scans in one signed CSV request")
        base = f"http://127.0.0.1:{self.port}"
        keyid, private = self.keys[self.partners[0].id]["ed25519"]
        signer = BatonSigner.ed25519(keyid, private.encode())
        at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        runs = []
        for label, offset in (("new", 0), ("new", 10_000), ("duplicates", 10_000)):
            rows = "".join(f"{3000000000 + offset + n:010d},{at.isoformat()},FRA,transfer,LH400,\n"
                           for n in range(10_000))
            body = ("bag_tag,at,station,point,flight,note\n" + rows).encode()
            started = time.perf_counter()
            answer = httpx.post(f"{base}/v1/scans", content=body, auth=signer, timeout=120,
                                headers={"content-type": "text/csv"})
            seconds = time.perf_counter() - started
            result = answer.json() if answer.status_code == 200 else {"status": answer.status_code}
            runs.append({"label": label, "seconds": round(seconds, 2), "body_kib": len(body) // 1024, **result})
            console.print(f"  {label}: {seconds:.2f} s, {len(body) // 1024} KiB, answer {result}")
        self.results["scans"] = {"runs": runs}

    def uploads(self) -> None:
        """10 MiB uploads: how far a server worker's resident memory grows while they stream in."""
        from concurrent.futures import ThreadPoolExecutor

        self.step("9. Attachments: 10 MiB uploads, resident memory of the server workers")
        base = f"http://127.0.0.1:{self.port}"
        ref = self.open_set.refs[0]
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        files = {"pdf": ("scan.pdf", seed.big_pdf(10 * 1024 * 1024 - 4096), "application/pdf"),
                 "jpeg": ("photo.jpg", seed.big_jpeg(10 * 1024 * 1024 - 4096), "image/jpeg")}
        workers = [p for p in procs.tree(self.children["serve"].pid) if "resource_tracker" not in procs.cmdline(p)]
        out: dict[str, Any] = {"files_mib": {k: round(len(v[1]) / 2**20, 2) for k, v in files.items()}, "runs": []}

        def send(kind: str) -> tuple[int, float]:
            name, data, ctype = files[kind]
            started = time.perf_counter()
            answer = httpx.post(f"{base}/v1/cases/{ref}/attachments", headers=headers, timeout=120,
                                files={"file": (name, data, ctype)}, data={"kind": "document" if kind == "pdf" else "photo"})
            return answer.status_code, time.perf_counter() - started

        for kind in ("pdf", "jpeg"):
            for parallel in (1, 4):
                rss = {pid: procs.status_kb(pid, "VmRSS") or 0 for pid in workers}
                # Peaks are per process lifetime: reset them so this run's own peak is read.
                for pid in workers:
                    procs.reset_peak(pid)
                with ThreadPoolExecutor(max_workers=parallel) as pool:
                    results = list(pool.map(send, [kind] * (parallel * 3)))
                peak = {pid: procs.status_kb(pid, "VmHWM") or 0 for pid in workers}
                growth = max((peak[pid] - rss[pid]) / 1024 for pid in workers)
                run = {"kind": kind, "parallel": parallel, "uploads": len(results),
                       "ok": sum(1 for code, _ in results if code == 201),
                       "seconds_median": round(sorted(s for _, s in results)[len(results) // 2], 2),
                       "rss_growth_mb": round(growth, 1), "peak_reset": procs.can_reset_peak()}
                out["runs"].append(run)
                console.print(f"  {kind} ×{parallel} at a time: {run['ok']}/{run['uploads']} stored, "
                              f"median {run['seconds_median']} s, worker RSS +{run['rss_growth_mb']} MB")
        self.results["uploads"] = out

    def _notes(self) -> list[str]:
        plan = self.plan
        notes = [
            f"Signed updates: `POST /v1/cases/{{ref}}/events` with `{{status, location, internal_note}}` (no customer "
            f"message, so no outbox row), signed by the case's responsible partner, round robin over {plan.hot_cases:,} "
            f"cases of {plan.partners} partners"
            + (", with an `Idempotency-Key` as the shipped partner client sends." if not self.args.no_idempotency_key
               else ", without `Idempotency-Key` (--no-idempotency-key)."),
            "Bare stack: FastAPI + SQLAlchemy Core + asyncpg, 2 uvicorn workers, HMAC-SHA256 header check, one "
            "transaction with an UPDATE of one party's due time and an INSERT of one event row (bench/baseline_app.py).",
            "Status page: random tokens of existing cases; each request carries its own X-Forwarded-For, as customers "
            "behind Baton's proxy would (the per-address lookup limit is 120/min).",
            f"Console: {plan.console_clients} concurrent staff clients; search terms mix case refs, WorldTracer refs, "
            "e-mail addresses and flight numbers.",
            "Peak RSS is VmHWM from /proc; the psycopg run restarts the server workers (their peaks are kept).",
        ]
        psycopg = next((d for d in self.results.get("drivers", []) if d.get("stack") == "Baton ed25519"
                        and d.get("driver") == "psycopg 3"), None)
        if psycopg and psycopg.get("statuses", {}).get("401", 0) > psycopg.get("ok", 0):
            notes.append("Baton on psycopg 3 refuses signed updates with 401 \"nonce already used\": "
                         "partners/service.py consume_nonce() tests `result.rowcount == 1`, and SQLAlchemy's psycopg "
                         "async adapter reports rowcount -1 for INSERT ... ON CONFLICT DO NOTHING (asyncpg reports 1). "
                         "notifications/outbox.py enqueue() has the same test. A Baton bug, not the benchmark's; "
                         "`... RETURNING` and checking for a row would work on both drivers.")
        if plan.quick:
            notes.append(f"Quick run: {plan.status_cases:,} cases for the status page and {plan.sweep_large:,} parties "
                         "for the large sweep, shorter windows; the targets speak of 1,000,000.")
        return notes

    def shutdown(self) -> None:
        for name in ("load", "serve", "worker", "bare", "doubles"):
            child = self.children.get(name)
            if child is not None:
                try:
                    child.stop()
                except Exception:
                    pass
        if self.cluster is not None:
            self.cluster.stop()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~3 minute smoke run: less data, shorter windows")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy on the server workers during one more 64-client ed25519 run")
    parser.add_argument("--no-idempotency-key", action="store_true",
                        help="signed updates without Idempotency-Key (the shipped client always sends one)")
    parser.add_argument("--no-group-commit", action="store_true",
                        help="one transaction per signed update, as before group commit (for comparison)")
    parser.add_argument("--skip-drivers", action="store_true", help="skip the psycopg 3 comparison")
    parser.add_argument("--drivers", action="store_true", help="run the psycopg 3 comparison in a --quick run too")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument("--only", type=lambda v: set(v.split(",")), metavar="PHASES",
                        help="run only these phases (comma-separated: updates, drivers, profile, console, dispatcher, "
                             "status, sweep, uploads, scans); the results go to bench/results/partial-*.json, latest.* is left alone")
    args = parser.parse_args(argv)
    known = {"updates", "drivers", "profile", "console", "dispatcher", "status", "sweep", "uploads", "scans"}
    if args.only is not None and not args.only <= known:
        parser.error(f"unknown phase(s): {', '.join(sorted(args.only - known))}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    return Bench(Plan.make(args.quick), args).run()


if __name__ == "__main__":
    sys.exit(main())
