"""``baton serve`` and ``baton worker`` as real processes, each in its own process group.

    with BatonServer(db_url, env={"BATON_ADMIN_TOKEN": token}) as server:  # waits for /readyz
        ...                                  # talk to server.url (http://127.0.0.1:PORT)
        server.kill()                        # SIGKILL to the whole process group (uvicorn workers too)
        server.restart()                     # same port, waits for /readyz again

    with BatonWorker(db_url, env={...}) as worker:                         # baton worker --interval 0.2
        worker.kill()
        worker.restart(env={"BATON_PUBLIC_BASE_URL": ...})                # env changes for the new process

Every process runs ``python -m tracker.cli ...`` with this interpreter, in its own session (so
its own process group), on 127.0.0.1 and a free port, with its output captured to a log file
whose tail goes into every failure message (``log_tail()``). Whatever is still running is killed
at interpreter exit. Several processes start at once with ``start(wait=False)`` then ``ready()``.

On this project's small machines ``--workers 2`` is best avoided in tests: uvicorn's supervisor
(0.54) kills and restarts a worker that does not answer its health check within 5 s, which a
worker still importing the app on a starved CPU does not.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import httpx

from tests.support.processes.env import HOST, REPO, ProcessFailed, child_env, free_port, poll

__all__ = ["BatonProcess", "BatonServer", "BatonWorker"]

_live: weakref.WeakSet[BatonProcess] = weakref.WeakSet()


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


def _kill_at_exit() -> None:
    for process in list(_live):
        try:
            if process.popen is not None and process.popen.poll() is None:
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


atexit.register(_kill_at_exit)
