"""``python -m bench.loadgen SPEC.json OUT.json``: a closed-loop HTTP/1.1 load generator.

It runs in its own process on 127.0.0.1. ``concurrency`` keep-alive connections each send a
request, wait for the whole response, and send the next, for ``warmup`` + ``duration``
seconds; only responses that complete inside the measured window count. Requests are raw bytes
written to asyncio streams (uvloop when installed), and signed requests are all signed before
the clock starts (RFC 9421 via Baton's own partner signer, a fresh nonce and Idempotency-Key
each, ``created`` a few seconds before sending), so the client's own work per request is a
write and a read. Should a run outlast the pre-signed requests, the rest are signed on the fly
and the result says so (``signed_on_the_fly``).

Kinds of load:
- ``signed``: ``POST /v1/cases/{ref}/events`` signed by the case's responsible partner, round robin
  over ``targets`` (one case each, so a row lock is contended only by requests to the same case);
- ``bare``: the bare-stack baseline's ``POST /update/{party_id}`` with an ``X-Signature`` HMAC;
- ``get``: ``GET`` of ``paths`` at random, with fixed ``headers``; with ``forwarded_for`` each
  request carries its own ``X-Forwarded-For`` address, as customers behind a proxy would (Baton's
  per-address status-link limits then apply per customer, not to the benchmark as a whole).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import random
import resource
import sys
import time
import uuid
from collections import Counter
from typing import Any, Callable

AIRPORTS = ("FRA", "JFK", "BOS", "CDG", "LHR", "AMS", "MAD", "ZRH", "VIE", "CPH", "HEL", "MUC")


def _signed_factory(spec: dict[str, Any]) -> Callable[[int], bytes]:
    import httpx

    from partners.client import BatonSigner

    base = spec["base_url"].rstrip("/")
    hostport = base.split("://", 1)[1]
    signers: dict[str, BatonSigner] = {}
    for _ref, keyid, alg, material in spec["targets"]:
        if keyid not in signers:
            signers[keyid] = (BatonSigner.ed25519(keyid, material.encode()) if alg == "ed25519"
                              else BatonSigner.hmac(keyid, material))
    targets = spec["targets"]
    tag = spec.get("tag", "bench")
    idempotency = spec.get("idempotency", True)

    def make(i: int) -> bytes:
        ref, keyid, _alg, _ = targets[i % len(targets)]
        path = f"/v1/cases/{ref}/events"
        body = json.dumps({"status": "tracing", "location": AIRPORTS[i % len(AIRPORTS)],
                           "internal_note": f"seen at belt {i % 40} ({tag} #{i})"}, separators=(",", ":")).encode()
        request = httpx.Request("POST", base + path, content=body)
        signers[keyid].sign_request(request)
        h = request.headers
        head = (f"POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n")
        if idempotency:
            head += f"Idempotency-Key: {uuid.uuid4()}\r\n"
        head += (f"Content-Digest: {h['content-digest']}\r\nSignature-Input: {h['signature-input']}\r\n"
                 f"Signature: {h['signature']}\r\n\r\n")
        return head.encode() + body

    return make


def _bare_factory(spec: dict[str, Any]) -> Callable[[int], bytes]:
    secret = spec["secret"].encode()
    parties = spec["party_ids"]
    hostport = f"{spec['host']}:{spec['port']}"
    tag = spec.get("tag", "bare")

    def make(i: int) -> bytes:
        party = parties[i % len(parties)]
        body = json.dumps({"status": "tracing", "location": AIRPORTS[i % len(AIRPORTS)],
                           "internal_note": f"seen at belt {i % 40} ({tag} #{i})"}, separators=(",", ":")).encode()
        sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
        return (f"POST /update/{party} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nX-Signature: {sig}\r\n\r\n").encode() + body

    return make


def _get_factory(spec: dict[str, Any]) -> Callable[[int], bytes]:
    paths = spec["paths"]
    hostport = f"{spec['host']}:{spec['port']}"
    extra = "".join(f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items())
    forwarded = spec.get("forwarded_for", False)
    rng = random.Random(spec.get("seed", 1))

    def make(i: int) -> bytes:
        path = paths[rng.randrange(len(paths))]
        xff = f"X-Forwarded-For: 10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}\r\n" if forwarded else ""
        return f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\n{xff}{extra}\r\n".encode()

    return make


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    close = b"\r\nconnection: close" in lower
    if b"\r\ntransfer-encoding: chunked" in lower:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        start = lower.find(b"\r\ncontent-length:")
        if start >= 0:
            end = lower.find(b"\r\n", start + 2)
            length = int(lower[start + 17:end].strip())
            if length:
                await reader.readexactly(length)
    return status, close


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec["kind"]
    factory = {"signed": _signed_factory, "bare": _bare_factory, "get": _get_factory}[kind](spec)
    presign = int(spec.get("presign", 0)) if kind in ("signed", "bare") else 0
    t_sign = time.perf_counter()
    ready = [factory(i) for i in range(presign)]
    sign_seconds = time.perf_counter() - t_sign
    on_the_fly = 0

    def request(i: int) -> bytes:
        nonlocal on_the_fly
        if i < len(ready):
            return ready[i]
        if presign:
            on_the_fly += 1
        return factory(i)

    host, port = spec["host"], int(spec["port"])
    concurrency, warmup, duration = int(spec["concurrency"]), float(spec["warmup"]), float(spec["duration"])
    grace = float(spec.get("grace", 30))
    counter = itertools.count()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    in_flight = 0
    t0 = time.perf_counter()
    t_measure = t0 + warmup
    t_end = t_measure + duration

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port, limit=1 << 20)

    async def client() -> None:
        nonlocal in_flight
        reader, writer = await connect()
        try:
            while time.perf_counter() < t_end:
                data = request(next(counter))
                started = time.perf_counter()
                in_flight += 1
                try:
                    writer.write(data)
                    status, close = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
                    in_flight -= 1
                    errors[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await connect()
                    continue
                in_flight -= 1
                done = time.perf_counter()
                if t_measure <= done <= t_end:
                    latencies.append(done - started)
                    statuses[status] += 1
                if close:
                    writer.close()
                    reader, writer = await connect()
        finally:
            writer.close()

    async def announce() -> None:
        # The orchestrator reads these marks from our log to meter CPU over the measured window only.
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        print("WINDOW START", flush=True)
        await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
        print("WINDOW END", flush=True)

    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    marks = asyncio.create_task(announce())
    tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=(t_end - time.perf_counter()) + grace)
    unfinished = in_flight if pending else 0
    for task in pending:
        task.cancel()
    await marks
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            errors[type(task.exception()).__name__] += 1
    usage_after = resource.getrusage(resource.RUSAGE_SELF)

    latencies.sort()
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime)
    ms = lambda v: round(v * 1000, 2) if v is not None else None  # noqa: E731
    return {
        "kind": kind,
        "concurrency": concurrency,
        "warmup_s": warmup,
        "duration_s": duration,
        "completed": len(latencies),
        "ok": ok,
        "rps": round(ok / duration, 1),
        "p50_ms": ms(_percentile(latencies, 0.50)),
        "p90_ms": ms(_percentile(latencies, 0.90)),
        "p99_ms": ms(_percentile(latencies, 0.99)),
        "max_ms": ms(latencies[-1] if latencies else None),
        "mean_ms": ms(sum(latencies) / len(latencies) if latencies else None),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
        "unfinished_at_end": unfinished,
        "presigned": presign,
        "presign_seconds": round(sign_seconds, 2),
        "signed_on_the_fly": on_the_fly,
        "loadgen_cpu_cores": round(cpu / max(time.perf_counter() - t0, 1e-9), 2),
    }


def main() -> int:
    spec = json.loads(open(sys.argv[1]).read())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(spec))
    with open(sys.argv[2], "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
