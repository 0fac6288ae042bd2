"""A signed load client in a separate process, as a partner would be: the test's side.

    load = SignedLoad.start(urls=[server.url], partners=[LoadPartner(keyid, pem, cases=[ref])],
                            count=100, workdir=tmp_path)   # python -m tests.support.processes.load_client ...
    load.wait_acknowledged(20)               # polls the file the load process writes
    assert load.wait() == 0                  # every update was acknowledged
    load.acknowledged()                      # [Acknowledged(key, ref, seq, message, ...), ...]

The process (``load_client``) posts signed updates with ``partners.client.BatonClient``
(Ed25519), each with its own ``Idempotency-Key`` and a unique marker in its message, retries an
unacknowledged request with the same key until it is acknowledged (through refused connections,
dropped connections, 409 in flight, 5xx), and appends one JSON line per acknowledged (2xx) update
to a file: key, case, seq, attempts, and whether the answer was replayed from the idempotency record.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import signal
import subprocess
import sys
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.support.processes.env import REPO, ProcessFailed, child_env, poll

__all__ = ["Acknowledged", "LoadPartner", "SignedLoad"]

_live_loads: weakref.WeakSet[SignedLoad] = weakref.WeakSet()


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
    """The load client as a separate process; see ``load_client.run_load`` for what it does.

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
                [sys.executable, "-m", "tests.support.processes.load_client", str(spec_path),
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
        notes: bool = False,
    ) -> SignedLoad:
        """Post ``count`` updates over ``threads`` threads, round robin over partners, their cases
        and ``urls``; give up (exit status 3) after ``timeout`` seconds. ``notes``: every other
        update is a routine internal note instead of a customer message."""
        self.spec = {
            "urls": list(urls),
            "partners": [dataclasses.asdict(p) for p in partners],
            "count": count,
            "threads": threads,
            "prefix": self.prefix,
            "out": str(self.out_path),
            "timeout": timeout,
            "notes": notes,
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


def _kill_at_exit() -> None:
    for load in list(_live_loads):
        load.kill()


atexit.register(_kill_at_exit)
