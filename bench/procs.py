"""Child processes of the benchmark: start, wait until they answer, measure, stop (only our own, by pid)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Child:
    """A process we started (in its own session, so its workers can be told apart from ours)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the process (uvicorn's master stops its own workers), SIGKILL if it hangs."""
        if not self.alive():
            return
        descendants = tree(self.pid)
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in [self.pid, *descendants]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.popen.wait(5)
        # Workers of a killed master: end those we know by pid.
        for pid in descendants:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start(name: str, argv: list[str], *, env: dict[str, str], log_dir: Path, port: int | None = None,
          cwd: str | None = None) -> Child:
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")
    popen = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=cwd, start_new_session=True)
    return Child(name=name, popen=popen, log_path=log_path, port=port)


def wait_http(child: Child, url: str, *, timeout: float = 60.0, ok: tuple[int, ...] = (200,)) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited ({child.popen.returncode}):\n{child.log_tail()}")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code in ok:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout:.0f}s ({last}):\n{child.log_tail()}")


# ---------------------------------------------------------------- /proc


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def tree(pid: int) -> list[int]:
    """All descendants of ``pid`` (not ``pid`` itself)."""
    out: list[int] = []
    todo = _children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(_children(child))
    return out


def status_kb(pid: int, field_name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def postgres_pids(data_dir: Path) -> list[int]:
    """The postmaster of our cluster (from postmaster.pid) and its backends."""
    try:
        master = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [master, *tree(master)]


Snapshot = tuple[float, float, dict[int, tuple[str, float]]]


class CpuMeter:
    """How much CPU our processes (by role) and everything else on the machine used over a window."""

    def __init__(self, roles: callable) -> None:  # type: ignore[valid-type]
        self.roles = roles  # () -> {pid: role}

    def snapshot(self) -> Snapshot:
        ours = {pid: (role, cpu_seconds(pid)) for pid, role in self.roles().items()}
        return time.monotonic(), machine_busy_seconds(), ours

    @staticmethod
    def delta(before: Snapshot, after: Snapshot) -> dict[str, float]:
        wall = max(after[0] - before[0], 1e-9)
        busy = after[1] - before[1]
        by_role: dict[str, float] = {}
        for pid, (role, seconds) in after[2].items():
            used = seconds - before[2].get(pid, (role, 0.0))[1]
            by_role[role] = by_role.get(role, 0.0) + max(used, 0.0)
        ours = sum(by_role.values())
        out = {
            "wall_s": round(wall, 2),
            "machine_busy_cores": round(busy / wall, 2),
            "bench_cores": round(ours / wall, 2),
            "other_cores": round(max(busy - ours, 0.0) / wall, 2),
        }
        for role, seconds in sorted(by_role.items()):
            out[f"{role}_cores"] = round(seconds / wall, 3)  # roles: server, postgres, loadgen, orchestrator, ...
        return out


def python() -> str:
    return sys.executable


def read_json_line(child: Child, timeout: float = 30.0) -> dict[str, object]:
    """The first line of a child's log that is a JSON object (the doubles announce themselves so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
        for line in child.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                return json.loads(line)
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not announce itself:\n{child.log_tail()}")


def reset_peak(pid: int) -> bool:
    """Reset a process's peak resident memory (VmHWM) to its current size (Linux ≥ 4.0); True if done."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def can_reset_peak() -> bool:
    return reset_peak(os.getpid())
