"""The signed load client's process: ``python -m tests.support.processes.load_client SPEC [--wait S]``.

It imports only the partner client and this package's helpers, as a partner's program would;
``load.SignedLoad`` starts it and reads what it writes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes.env import poll

__all__ = ["run_load"]


class _Witness(httpx.HTTPTransport):
    """Remembers whether the last answer was a replay of a stored response (``Idempotent-Replayed``):
    the sign that an earlier attempt had been committed although its answer never arrived.
    Being the client's transport, it also keeps proxies from the environment out of the way."""

    replayed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.replayed = response.headers.get("idempotent-replayed") == "true"
        return response


def run_load(spec_path: str, *, wait_for_orders: float = 0.0) -> int:
    """Post signed updates until each is acknowledged; one JSON line per acknowledgement.

    Update ``i`` has the idempotency key ``{prefix}-{i:05d}`` and the text ``[KEY] ...`` (a
    customer message; with ``notes`` in the orders, an internal note when ``i`` is odd), so the
    test can find it in the timeline. A request that got no 2xx answer
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
                        # Routine notes are written by group commit in batches; messages to the
                        # customer take the general path after group commit spent their nonce.
                        text = {"internal_note": message} if spec.get("notes") and i % 2 else {"message": message}
                        event = client.post_update(ref, location="FRA", idempotency_key=key, **text)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.processes.load_client",
                                     description="post signed updates as described by a JSON spec file")
    parser.add_argument("spec")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the spec file to appear")
    args = parser.parse_args(argv)
    return run_load(args.spec, wait_for_orders=args.wait)


if __name__ == "__main__":
    sys.exit(main())
