"""Profiling a server worker with py-spy while the load runs, and a plain-text summary of the stacks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start(pid: int, *, seconds: float, out: Path, fmt: str, rate: int = 200) -> subprocess.Popen[bytes]:
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate), "--format", fmt,
         "--output", str(out), "--nonblocking"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def _module(file: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in file:
            tail = file.split(marker, 1)[1]
            return tail.split("/")[0] if marker == "site-packages/" else "stdlib:" + tail.split("/")[1].removesuffix(".py")
    for package in ("tracker", "partners", "notifications", "bench"):
        if file.startswith(f"{package}/"):
            return file
        if f"/{package}/" in file:
            return package + "/" + file.split(f"/{package}/", 1)[1]
    return file


def summarize(collapsed: Path, top: int = 45) -> str:
    """Inclusive and self time per function and per library, from py-spy's ``--format raw`` output."""
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if "Connection._recv" in frames[-1] or "Connection._recv_bytes" in frames[-1]:
            continue  # uvicorn's health-check thread blocked on its pipe, not work
        total += count
        seen: set[str] = set()
        seen_ours: set[str] = set()
        for frame in frames:
            name = _name(frame)
            if name not in seen:
                inclusive[name] += count
                seen.add(name)
            match = _FRAME.match(frame.strip())
            file = match.group("file") if match else ""
            if _is_ours(file):
                if name not in seen_ours:
                    ours[name] += count
                    seen_ours.add(name)
        leaf = frames[-1]
        self_time[_name(leaf)] += count
        match = _FRAME.match(leaf.strip())
        libraries[_module(match.group("file")) if match else leaf] += count
    if not total:
        return "no samples\n"
    pct = lambda n: f"{100 * n / total:5.1f}%"  # noqa: E731
    out = [f"{total} samples (CPU only, idle excluded)", "", "## by library (self time of the leaf frame)"]
    out += [f"{pct(n)}  {name}" for name, n in _group_libraries(libraries).most_common(25)]
    out += ["", "## Baton's own functions (inclusive)"]
    out += [f"{pct(n)}  {name}" for name, n in ours.most_common(top)]
    out += ["", "## all functions (inclusive)"]
    out += [f"{pct(n)}  {name}" for name, n in inclusive.most_common(top)]
    out += ["", "## self time"]
    out += [f"{pct(n)}  {name}" for name, n in self_time.most_common(top)]
    return "\n".join(out) + "\n"


def _is_ours(file: str) -> bool:
    return any(file.startswith(f"{p}/") or f"/{p}/" in file for p in ("tracker", "partners", "notifications")) \
        and "site-packages" not in file


def _group_libraries(libraries: Counter[str]) -> Counter[str]:
    grouped: Counter[str] = Counter()
    for name, n in libraries.items():
        grouped[name.split("/")[0] if not name.startswith(("tracker", "partners", "notifications")) else name.split("/")[0] + "/" + name.split("/")[1]] += n
    return grouped


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match.group("file")
    return f"{match.group('func')} ({_module(file)})"
