"""A TCP hop in front of a server, as a load balancer would be, that can drop what it carries."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Self

from tests.support.processes.env import HOST

__all__ = ["Link"]


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

