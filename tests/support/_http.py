"""HTTP plumbing shared by the test doubles (Twilio's REST API, a partner's webhook endpoint).

A real server on 127.0.0.1: a thread per request, so a hung answer blocks only its own client,
served from a daemon thread that ``close`` stops within one short poll.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: tuple[float, threading.Event] | None = None

    @classmethod
    def json(cls, status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        return cls(status, json.dumps(payload).encode(), (("Content-Type", "application/json"), *headers))

    def delayed(self, delay: tuple[float, threading.Event] | None) -> Reply:
        return Reply(self.status, self.body, self.headers, delay)


Respond = Callable[[str, str, dict[str, str], bytes], Reply]  # (method, target, headers, body)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0 (the default): one request per connection, so no pooled connection outlives stop().
    # A server with keep_alive speaks HTTP/1.1 and keeps connections, as the real APIs do (the
    # benchmark's double, which is never stopped mid-run).
    server: Server
    # Headers and body go out as two writes: with Nagle's algorithm a kept-alive client waits for
    # a delayed ACK (~40 ms) between them.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        if self.server.keep_alive:
            self.protocol_version = "HTTP/1.1"
        super().setup()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.respond(self.command, self.path, headers, body)
        if reply.delay is not None:
            seconds, released = reply.delay
            released.wait(seconds)
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_PUT = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass  # pytest shows failures; a line per request on stderr would only bury them


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung answer must not keep the test process alive
    request_queue_size = 128  # concurrent senders must not meet socketserver's backlog of 5
    keep_alive = False

    def __init__(self, address: tuple[str, int], respond: Respond, *, name: str) -> None:
        self.respond = respond
        super().__init__(address, _Handler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.01}, name=name)
        self._thread.daemon = True
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a late answer has closed its end: that is the scenario.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
