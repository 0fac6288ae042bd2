"""A real S3-protocol server for tests: moto's server, in this process, on a loopback port.

    with running_s3_server() as s3:
        settings = Settings(storage_url=f"s3://{s3.bucket}/attachments", s3_endpoint_url=s3.endpoint_url)
        os.environ.update(s3.environ())  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION
        ...  # code under test talks S3 over HTTP to http://127.0.0.1:PORT

The server keeps objects in memory and checks no signatures, so any credentials do; the code
under test still signs its requests as it would for AWS. One bucket is made at start. Or, for a
scratch server from a shell: ``python -m tests.support.s3_server``.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from tests.support._http import free_port

__all__ = ["S3Server", "running_s3_server"]

_START_SECONDS = 30.0
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class S3Server:
    """Where the server listens, its bucket, and credentials it accepts."""

    endpoint_url: str
    bucket: str
    access_key_id: str = "baton-test"
    secret_access_key: str = "baton-test-secret"
    region: str = "us-east-1"

    def environ(self) -> dict[str, str]:
        """The AWS_* variables a client reads."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
        }

    def create_bucket(self, name: str) -> None:
        """Another bucket on the same server."""
        answer = httpx.put(f"{self.endpoint_url}/{name}", timeout=10.0)
        answer.raise_for_status()


@contextlib.contextmanager
def running_s3_server(bucket: str = "baton-test") -> Iterator[S3Server]:
    """Start moto's server on a free loopback port with ``bucket`` made; stop it on leaving.

    Raises ImportError when moto is not installed, RuntimeError when the server does not start.
    """
    from moto.server import ThreadedMotoServer

    for _ in range(_ATTEMPTS):
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        # start() waits for the listening socket with no time limit, and forever if binding
        # failed (another process took the port since free_port): wait in a thread, bounded.
        starter = threading.Thread(target=server.start, name="moto-start", daemon=True)
        starter.start()
        starter.join(_START_SECONDS)
        if not starter.is_alive():
            break
    else:
        raise RuntimeError(f"moto's S3 server did not start on 127.0.0.1 in {_ATTEMPTS} attempts")
    try:
        s3 = S3Server(endpoint_url=f"http://127.0.0.1:{port}", bucket=bucket)
        _wait_until_answering(s3.endpoint_url)
        s3.create_bucket(bucket)
        yield s3
    finally:
        server.stop()
        # stop() shuts the serving loop down but leaves the listening socket open.
        listener = getattr(server, "_server", None)
        if listener is not None:
            listener.server_close()


def _wait_until_answering(endpoint_url: str) -> None:
    deadline = time.monotonic() + _START_SECONDS
    while True:
        try:
            httpx.get(f"{endpoint_url}/", timeout=2.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto's S3 server at {endpoint_url} does not answer") from None
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run an S3-protocol server on loopback until interrupted.")
    parser.add_argument("--bucket", default="baton-test")
    args = parser.parse_args()
    with running_s3_server(args.bucket) as s3:
        for name, value in s3.environ().items():
            print(f"export {name}={value}")
        print(f"export BATON_STORAGE_URL=s3://{s3.bucket}/attachments")
        print(f"export BATON_S3_ENDPOINT_URL={s3.endpoint_url}")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
