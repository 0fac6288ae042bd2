"""Real Baton processes for tests: ``baton serve``, ``baton worker``, a signed load client.

    with BatonServer(db_url, env={"BATON_ADMIN_TOKEN": token}) as server:  # waits for /readyz
        ...                                  # talk to server.url (http://127.0.0.1:PORT)
        server.kill()                        # SIGKILL to the whole process group (uvicorn workers too)
        server.restart()                     # same port, waits for /readyz again

    with BatonWorker(db_url, env={...}) as worker:                         # baton worker --interval 0.2
        worker.kill()
        worker.restart(env={"BATON_PUBLIC_BASE_URL": ...})                # env changes for the new process

    load = SignedLoad.start(urls=[server.url], partners=[LoadPartner(keyid, pem, cases=[ref])],
                            count=100, workdir=tmp_path)   # python -m tests.support.processes load ...
    load.wait_acknowledged(20)               # polls the file the load process writes
    assert load.wait() == 0                  # every update was acknowledged
    load.acknowledged()                      # [Acknowledged(key, ref, seq, message, ...), ...]

Every process runs ``python -m tracker.cli ...`` with this interpreter, in its own session (so
its own process group), on 127.0.0.1 and a free port, with its output captured to a log file
whose tail goes into every failure message (``log_tail()``). Whatever is still running is killed
at interpreter exit. Several processes start at once with ``start(wait=False)`` then ``ready()``.

The environment of a process is this one without any ``BATON_*`` variable (a developer's shell
must not point a test at another database), plus ``BATON_DATABASE_URL``, ``BATON_WEBHOOK_ALLOW_HOSTS``
(webhook receivers on 127.0.0.1) and what ``env`` adds.

The load client (``SignedLoad``) is a separate process, as a partner would be: it posts signed
updates with ``partners.client.BatonClient`` (Ed25519), each with its own ``Idempotency-Key`` and
a unique marker in its message, retries an unacknowledged request with the same key until it is
acknowledged (through refused connections, dropped connections, 409 in flight, 5xx), and appends
one JSON line per acknowledged (2xx) update to a file: key, case, seq, attempts, and whether the
answer was replayed from the idempotency record.

``Link`` is a TCP hop in front of a server (as a load balancer) that delays answers and can drop
its connections, answers in transit included. ``Admin`` registers partners and opens cases with
the admin token. ``run_db`` runs a query against a database on a fresh event loop.

On this project's small machines ``--workers 2`` is best avoided in tests: uvicorn's supervisor
(0.54) kills and restarts a worker that does not answer its health check within 5 s, which a
worker still importing the app on a starved CPU does not.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import dataclasses
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx

__all__ = [
    "Acknowledged",
    "Admin",
    "BatonProcess",
    "BatonServer",
    "BatonWorker",
    "Link",
    "LoadPartner",
    "ProcessFailed",
    "SignedLoad",
    "free_port",
    "poll",
    "run_db",
]

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

_live: weakref.WeakSet[BatonProcess] = weakref.WeakSet()
_live_loads: weakref.WeakSet[SignedLoad] = weakref.WeakSet()


class ProcessFailed(AssertionError):
    """A process did not start, died, or did not finish in time; the message has its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def poll(check: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str = "condition") -> T:
    """Call ``check`` until it returns something truthy; raise TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f}s")
        time.sleep(interval)


def run_db(db_url: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(session)`` against ``db_url`` on a fresh event loop with its own engine."""
    from kernel.config import Settings
    from kernel.db import make_engine, make_sessionmaker

    async def main() -> T:
        engine = make_engine(Settings(database_url=db_url, db_pool_size=2))
        try:
            async with make_sessionmaker(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(main())


def child_env(db_url: str | None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without ``BATON_*``, with the repository importable and output unbuffered."""
    out = {key: value for key, value in os.environ.items() if not key.startswith("BATON_")}
    out["PYTHONUNBUFFERED"] = "1"
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    if db_url is not None:
        out["BATON_DATABASE_URL"] = db_url
    out["BATON_WEBHOOK_ALLOW_HOSTS"] = "127.0.0.1,localhost"  # test receivers listen on 127.0.0.1
    out.update(env or {})
    return out


# --------------------------------------------------------------------------- processes


class BatonProcess:
    """One ``python -m tracker.cli ...`` in its own process group, with a log file."""

    name = "baton"

    def __init__(
        self, db_url: str, *, env: Mapping[str, str] | None = None, log_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.db_url = db_url
        self.env = dict(env or {})
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix=f"baton-{self.name}-"))
        self.log_path = self.log_dir / f"{self.name}-{id(self):x}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # --- what to run: subclasses ------------------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> None:
        """Block until the process serves; the default is "it was started"."""

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0, wait: bool = True) -> Self:
        """Spawn the process; with ``wait`` (the default) block until ``ready``. To start
        several at once, ``start(wait=False)`` each, then ``ready()`` each."""
        if self.running:
            return self
        self._spawn()
        return self.ready(timeout=timeout) if wait else self

    def ready(self, *, timeout: float = 60.0) -> Self:
        """Block until the process serves; on failure it is killed and ProcessFailed says why."""
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _spawn(self) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n----- start #{self.starts}: {' '.join(self.command()[1:])}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.command(),
                cwd=REPO,
                env=child_env(self.db_url, self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches uvicorn's workers too
            )
        _live.add(self)

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self!r} was never started"
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL, *, timeout: float = 15.0) -> None:
        """Send ``sig`` to the whole process group and wait until every member is gone."""
        if self.popen is None:
            return
        pgid = self.popen.pid  # start_new_session: the leader's pid is the group id
        exited = self.popen.poll() is not None
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.popen.wait(timeout=timeout)
        # uvicorn's worker processes are the leader's children: with the leader reaped they are
        # orphans (maybe zombies no one reaps in a container), so look at their state, not pids.
        try:
            poll(lambda: not _group_members(pgid), timeout=timeout, interval=0.02,
                 what=f"every process of group {pgid} gone")
        except TimeoutError:
            os.killpg(pgid, signal.SIGKILL)
            raise
        with open(self.log_path, "ab") as log:
            what = "had exited" if exited else f"got {signal.Signals(sig).name}"
            log.write(f"----- the process {what}; exit status {self.popen.returncode}\n".encode())

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL if it is still there after ``timeout``."""
        if not self.running:
            if self.popen is not None:
                self.kill()  # reap stragglers of the group
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def restart(self, *, env: Mapping[str, str] | None = None, timeout: float = 60.0) -> Self:
        """Start again (killing first if needed), on the same port; ``env`` updates the environment."""
        if self.running:
            self.kill()
        if env:
            self.env.update(env)
        self.popen = None
        return self.start(timeout=timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = self.log().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path}:\n" + "\n".join(tail)

    def assert_running(self) -> None:
        if not self.running:
            code = self.popen.returncode if self.popen else None
            raise ProcessFailed(f"{self!r} is not running (exit status {code})\n{self.log_tail()}")

    def __repr__(self) -> str:
        state = f"pid {self.popen.pid}" if self.running and self.popen else "stopped"
        return f"<{type(self).__name__} {state}>"


class BatonServer(BatonProcess):
    """``baton serve --host 127.0.0.1 --port PORT --workers N``, ready when ``/readyz`` says so.

    ``BATON_WORKERS_IN_PROCESS`` defaults to false here: these tests run ``baton worker``
    processes for the background work; pass it in ``env`` to override.
    """

    name = "serve"

    def __init__(
        self,
        db_url: str,
        *,
        port: int | None = None,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(db_url, env={"BATON_WORKERS_IN_PROCESS": "false", **(env or {})}, log_dir=log_dir)
        self._port_chosen = port is None
        self.port = port or free_port()
        self.workers = workers

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tracker.cli", "serve", "--host", HOST, "--port", str(self.port),
                "--workers", str(self.workers)]

    def ready(self, *, timeout: float = 60.0) -> Self:
        # A free port may be taken by someone else before uvicorn binds it: pick another, but
        # only for a first start on a port we chose (a restart must keep its address).
        for attempt in range(3):
            try:
                return super().ready(timeout=timeout)
            except ProcessFailed:
                if not (self._port_chosen and self.starts == 1 and attempt < 2
                        and "address already in use" in self.log().lower()):
                    raise
                self.starts = 0
                self.port = free_port()
                self._spawn()
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if not self.running:
                    raise ProcessFailed(f"baton serve exited ({self.popen.returncode if self.popen else None}) "
                                        f"before it was ready\n{self.log_tail()}")
                try:
                    response = http.get(f"{self.url}/readyz")
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.05)
        raise ProcessFailed(f"baton serve on {self.url} not ready within {timeout:.0f}s ({last})\n{self.log_tail()}")


class BatonWorker(BatonProcess):
    """``baton worker --interval 0.2``: the watchdog, the dispatcher and housekeeping."""

    name = "worker"

    def __init__(
        self,
        db_url: str,
        *,
        interval: float = 0.2,
        env: Mapping[str, str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(db_url, env=env, log_dir=log_dir)
        self.interval = interval

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tracker.cli", "worker", "--interval", str(self.interval)]

    def wait_ready(self, timeout: float) -> None:
        # No port to ask: a worker is "up" once it did not fail at once (bad settings, imports).
        if self.popen is not None:
            try:
                code = self.popen.wait(timeout=0.3)
            except subprocess.TimeoutExpired:
                return
            raise ProcessFailed(f"baton worker exited at once ({code})\n{self.log_tail()}")


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in group ``pgid``, from /proc; [] once they are all gone."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


# --------------------------------------------------------------------------- a network hop


class Link:
    """A TCP hop on 127.0.0.1 in front of a server, as a load balancer would be.

    Answers (server to client) are held ``delay`` seconds on the way; requests pass at once.
    ``cut()`` drops every open connection at once, with whatever answer it still holds: what a
    client sees when the machine behind the balancer dies, answers in transit included. New
    connections are passed on as long as the server accepts them (refused while it is down).
    ``holding()`` says how many answers are on their way right now: a request committed by the
    server whose client does not know it yet.
    """

    def __init__(self, target_port: int, *, delay: float = 0.05) -> None:
        self.target_port = target_port
        self.delay = delay
        self._listener = socket.create_server((HOST, 0), backlog=256)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []
        self._closed = False
        threading.Thread(target=self._accept, name="link-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def holding(self) -> int:
        """Connections with an answer on its way (one request at a time on a connection)."""
        with self._lock:
            return sum(1 for connection in self._connections if connection.held)

    def cut(self) -> int:
        """Drop every open connection (a reset for the client); returns the answers dropped."""
        with self._lock:
            connections, self._connections = self._connections, []
            dropped = sum(1 for connection in connections if connection.held)
        for connection in connections:
            connection.drop()
        return dropped

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="link-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((HOST, self.target_port), timeout=5)
        except OSError:
            _reset(client)  # the server is down: the client's connection fails, as without us
            return
        upstream.settimeout(None)
        connection = _Connection(client, upstream)
        with self._lock:
            self._connections.append(connection)
        threading.Thread(target=self._pump, args=(connection, client, upstream, False), daemon=True).start()
        self._pump(connection, upstream, client, True)

    def _pump(self, connection: _Connection, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if answers and self.delay:
                    with self._lock:
                        connection.held += 1
                    try:
                        time.sleep(self.delay)  # latency on the wire, not a wait of the test
                    finally:
                        with self._lock:
                            connection.held -= 1
                if connection.dropped:
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            if not connection.dropped:
                try:
                    sink.shutdown(socket.SHUT_WR)  # pass the end of the stream on
                except OSError:
                    pass
            if connection.finished():
                with self._lock:
                    if connection in self._connections:
                        self._connections.remove(connection)


class _Connection:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.dropped = False
        self.held = 0  # chunks of an answer being delayed
        self._ends = 0
        self._lock = threading.Lock()

    def finished(self) -> bool:
        """One direction ended; after both, the sockets are closed and True is returned."""
        with self._lock:
            self._ends += 1
            if self._ends < 2:
                return False
        self.client.close()
        self.upstream.close()
        return True

    def drop(self) -> None:
        self.dropped = True
        _reset(self.client)
        _reset(self.upstream)


def _reset(sock: socket.socket) -> None:
    """Close with a reset (no orderly FIN), waking any thread blocked on the socket."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


# --------------------------------------------------------------------------- signed load


@dataclasses.dataclass(frozen=True)
class LoadPartner:
    """A partner the load process signs as: an Ed25519 key and the cases it posts to."""

    keyid: str
    private_key_pem: str
    cases: list[str]


@dataclasses.dataclass(frozen=True)
class Acknowledged:
    key: str
    ref: str
    seq: int
    message: str
    url: str
    attempts: int  # requests sent for it, the acknowledged one included
    no_answer: int = 0  # of which got no answer at all (refused, dropped, timed out)
    replayed: bool = False  # the acknowledgement was the stored answer of an earlier attempt


class SignedLoad:
    """The load client as a separate process; see ``_load_main`` for what it does.

    ``SignedLoad.start(...)`` spawns it with its orders. To hide the interpreter's start-up (a
    second or so) behind other work, ``SignedLoad.spawn(workdir)`` starts it first, waiting for
    its orders, and ``load.go(...)`` gives them once the servers and cases exist.
    """

    def __init__(self, popen: subprocess.Popen[bytes], workdir: Path, prefix: str) -> None:
        self.popen = popen
        self.spec_path = workdir / f"{prefix}-load.json"
        self.out_path = workdir / f"{prefix}-acknowledged.jsonl"
        self.log_path = workdir / f"{prefix}-load.log"
        self.prefix = prefix
        self.spec: dict[str, Any] | None = None
        _live_loads.add(self)

    @classmethod
    def spawn(
        cls, workdir: str | os.PathLike[str], *, prefix: str = "upd", wait_for_orders: float = 120.0
    ) -> SignedLoad:
        """Start the process; it imports what it needs, then waits for ``go``."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        spec_path = workdir / f"{prefix}-load.json"
        spec_path.unlink(missing_ok=True)
        (workdir / f"{prefix}-acknowledged.jsonl").write_text("")
        with open(workdir / f"{prefix}-load.log", "ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "tests.support.processes", "load", str(spec_path),
                 "--wait", str(wait_for_orders)],
                cwd=REPO, env=child_env(None), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(popen, workdir, prefix)

    def go(
        self,
        *,
        urls: Iterable[str],
        partners: Iterable[LoadPartner],
        count: int,
        threads: int = 8,
        timeout: float = 120.0,
    ) -> SignedLoad:
        """Post ``count`` updates over ``threads`` threads, round robin over partners, their cases
        and ``urls``; give up (exit status 3) after ``timeout`` seconds."""
        self.spec = {
            "urls": list(urls),
            "partners": [dataclasses.asdict(p) for p in partners],
            "count": count,
            "threads": threads,
            "prefix": self.prefix,
            "out": str(self.out_path),
            "timeout": timeout,
        }
        staged = self.spec_path.with_suffix(".tmp")
        staged.write_text(json.dumps(self.spec))
        staged.replace(self.spec_path)  # atomic: the process never reads half a file
        return self

    @classmethod
    def start(
        cls,
        *,
        urls: Iterable[str],
        partners: Iterable[LoadPartner],
        count: int,
        workdir: str | os.PathLike[str],
        prefix: str = "upd",
        threads: int = 8,
        timeout: float = 120.0,
    ) -> SignedLoad:
        """``spawn`` and ``go`` in one."""
        return cls.spawn(workdir, prefix=prefix).go(urls=urls, partners=partners, count=count, threads=threads,
                                                    timeout=timeout)

    def acknowledged(self) -> list[Acknowledged]:
        """The updates acknowledged so far (complete lines only)."""
        text = self.out_path.read_text()
        lines = text.split("\n")[:-1]  # the last piece is "" or a line still being written
        return [Acknowledged(**json.loads(line)) for line in lines if line]

    def wait_acknowledged(self, n: int, *, timeout: float = 30.0) -> list[Acknowledged]:
        def enough() -> list[Acknowledged] | None:
            if self.popen.poll() is not None:
                done = self.acknowledged()
                if len(done) >= n:
                    return done
                raise ProcessFailed(f"the load process ended ({self.popen.returncode}) after {len(done)} "
                                    f"acknowledged updates, before {n}\n{self.log_tail()}")
            done = self.acknowledged()
            return done if len(done) >= n else None

        return poll(enough, timeout=timeout, interval=0.01, what=f"{n} acknowledged updates")

    def wait(self, *, timeout: float = 120.0) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ProcessFailed(f"the load process did not finish within {timeout:.0f}s "
                                f"({len(self.acknowledged())} acknowledged)\n{self.log_tail()}") from None

    def kill(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            tail = []
        return f"--- last {len(tail)} lines of {self.log_path}:\n" + "\n".join(tail)


class _Witness(httpx.HTTPTransport):
    """Remembers whether the last answer was a replay of a stored response (``Idempotent-Replayed``):
    the sign that an earlier attempt had been committed although its answer never arrived.
    Being the client's transport, it also keeps proxies from the environment out of the way."""

    replayed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.replayed = response.headers.get("idempotent-replayed") == "true"
        return response


def _load_main(spec_path: str, *, wait_for_orders: float = 0.0) -> int:
    """Post signed updates until each is acknowledged; one JSON line per acknowledgement.

    Update ``i`` has the idempotency key ``{prefix}-{i:05d}`` and the message
    ``[KEY] ...``, so the test can find it in the timeline. A request that got no 2xx answer
    (connection refused or dropped, timeout, 409 twin in flight, 429, 5xx) is sent again with
    the same key and body, newly signed, until it is acknowledged; any other answer is a bug
    and ends the process with status 2.
    """
    from partners.client import BatonAPIError, BatonClient, BatonSigner, BatonTransportError

    orders = Path(spec_path)
    poll(orders.exists, timeout=wait_for_orders, interval=0.01, what=f"orders in {orders}")
    spec = json.loads(orders.read_text())
    urls: list[str] = spec["urls"]
    partners: list[dict[str, Any]] = spec["partners"]
    deadline = time.monotonic() + float(spec["timeout"])
    jobs: list[tuple[int, dict[str, Any], str]] = []
    for i in range(int(spec["count"])):
        partner = partners[i % len(partners)]
        cases = partner["cases"]
        jobs.append((i, partner, cases[(i // len(partners)) % len(cases)]))
    pending = list(reversed(jobs))
    lock = threading.Lock()
    failures: list[str] = []
    out = open(spec["out"], "a", encoding="utf-8")  # noqa: SIM115 - closed below

    def take() -> tuple[int, dict[str, Any], str] | None:
        with lock:
            return pending.pop() if pending and not failures else None

    def run() -> None:
        rng = random.Random()
        clients: dict[tuple[str, str], BatonClient] = {}
        witnesses: dict[tuple[str, str], _Witness] = {}
        try:
            while (job := take()) is not None:
                i, partner, ref = job
                key = f"{spec['prefix']}-{i:05d}"
                message = f"[{key}] Your bag is on its way (update {i})."
                url = urls[i % len(urls)]
                client = clients.get((url, partner["keyid"]))
                if client is None:
                    signer = BatonSigner.ed25519(partner["keyid"], partner["private_key_pem"])
                    witness = witnesses[(url, partner["keyid"])] = _Witness()
                    client = clients[(url, partner["keyid"])] = BatonClient(
                        url, signer, timeout=10.0, retries=0, transport=witness)
                witness = witnesses[(url, partner["keyid"])]
                attempts = no_answer = 0
                while True:
                    attempts += 1
                    try:
                        event = client.post_update(ref, message=message, location="FRA", idempotency_key=key)
                    except BatonTransportError:
                        no_answer += 1  # the server may have it or not; the key makes the retry safe
                    except BatonAPIError as exc:
                        if exc.status not in (409, 429, 500, 502, 503, 504):
                            with lock:
                                failures.append(f"{key} on {ref}: {exc} {exc.problem}")
                            return
                    else:
                        line = json.dumps({"key": key, "ref": ref, "seq": event["seq"], "message": message,
                                           "url": url, "attempts": attempts, "no_answer": no_answer,
                                           "replayed": witness.replayed})
                        with lock:
                            out.write(line + "\n")
                            out.flush()
                        break
                    if time.monotonic() > deadline:
                        with lock:
                            failures.append(f"{key} on {ref}: not acknowledged after {attempts} attempts")
                        return
                    time.sleep(min(0.5, 0.02 * 2 ** min(attempts, 5)) * rng.uniform(0.5, 1.0))
        finally:
            for client in clients.values():
                client.close()

    threads = [threading.Thread(target=run, name=f"load-{n}") for n in range(int(spec["threads"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.close()
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    if failures:
        return 2 if any("not acknowledged" not in f for f in failures) else 3
    return 0


# --------------------------------------------------------------------------- seeding over HTTP


class Admin:
    """Staff calls to a running server with the ``BATON_ADMIN_TOKEN`` it was given."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=15.0, trust_env=False,
                                 headers={"Authorization": f"Bearer {token}"})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.http.close()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        if response.status_code not in (200, 201):
            raise AssertionError(f"POST {path}: {response.status_code} {response.text}")
        return response.json()

    def partner(self, spec: dict[str, Any]) -> tuple[str, str]:
        """Register a partner with an Ed25519 key; returns ``(keyid, private key PEM)``."""
        from partners.client import generate_ed25519_keypair

        self.post("/v1/partners", spec)
        private_pem, public_pem = generate_ed25519_keypair()
        keyid = f"{spec['id']}-ed-1"
        self.post(f"/v1/partners/{spec['id']}/keys",
                  {"keyid": keyid, "alg": "ed25519", "public_key": public_pem.decode()})
        return keyid, private_pem.decode()


def _cleanup_at_exit() -> None:
    for load in list(_live_loads):
        load.kill()
    for process in list(_live):
        try:
            if process.popen is not None and process.popen.poll() is None:
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


atexit.register(_cleanup_at_exit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.processes")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="post signed updates as described by a JSON spec file")
    load.add_argument("spec")
    load.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the spec file to appear")
    args = parser.parse_args(argv)
    if args.command == "load":
        return _load_main(args.spec, wait_for_orders=args.wait)
    return 2


if __name__ == "__main__":
    sys.exit(main())
