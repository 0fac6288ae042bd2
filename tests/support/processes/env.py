"""What every process of the rig shares: the loopback host, free ports, a child's environment,
polling for a condition, and a one-off database session.

The environment of a process is this one without any ``BATON_*`` variable (a developer's shell
must not point a test at another database), plus ``BATON_DATABASE_URL``, ``BATON_WEBHOOK_ALLOW_HOSTS``
(webhook receivers on 127.0.0.1) and what ``env`` adds.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["HOST", "REPO", "ProcessFailed", "child_env", "free_port", "poll", "run_db"]

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[3]
T = TypeVar("T")


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
