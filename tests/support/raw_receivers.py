"""Misbehaving webhook receivers on real sockets, for the delivery fences (SPEC.md "One partner
cannot slow the others"):

    with RawServer(trickle(every=2.0, total=120.0)) as slow:      # answers one byte every 2 s
        ...  # register slow.url; deliver
        [conn] = slow.connections
        conn.sent, conn.closed_by_peer_at - conn.opened_at       # what went out; when Baton hung up

    RawServer(huge(64 * 1024 * 1024))   # a 200 with a 64 MiB body, sent as fast as the peer takes it
    RawServer(answer(204), tls=server_context("partner.test"))    # TLS: records SNI and Host
    RawServer(answer(204), host="127.0.0.2")                       # another loopback address

Every connection is handled in its own thread and recorded in ``connections`` (a ``Connection``:
when it opened, the TLS server name, the request's Host header, bytes sent, when the peer
closed). A server that only counts connections is ``RawServer(answer(204))`` with nothing sent
to it. The servers stop their handlers at exit, trickles included.
"""

from __future__ import annotations

import datetime as dt
import select
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["Connection", "RawServer", "answer", "huge", "server_context", "trickle"]


@dataclass
class Connection:
    opened_at: float = field(default_factory=time.monotonic)
    sni: str | None = None
    host: str | None = None
    sent: int = 0
    closed_by_peer_at: float | None = None


Handler = Callable[[socket.socket, Connection, threading.Event], None]


class RawServer:
    """A TCP (or TLS) server on ``host`` and a free port; ``handle`` serves each connection."""

    def __init__(self, handle: Handler, *, host: str = "127.0.0.1", port: int = 0,
                 tls: tuple[ssl.SSLContext, list[str]] | None = None) -> None:
        self.handle = handle
        self.host = host
        self.tls = tls
        self.connections: list[Connection] = []
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    def url(self, *, scheme: str = "http", name: str | None = None, path: str = "/hook") -> str:
        return f"{scheme}://{name or self.host}:{self.port}{path}"

    def __enter__(self) -> Self:
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        accept = threading.Thread(target=self._accept, name=f"raw-server-{self.port}", daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            record = Connection()
            self.connections.append(record)
            thread = threading.Thread(target=self._serve, args=(conn, record), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket, record: Connection) -> None:
        try:
            conn.settimeout(10)
            if self.tls is not None:
                context, names = self.tls
                conn = context.wrap_socket(conn, server_side=True)
                record.sni = names[-1] if names else None  # the handshake's SNI (one client at a time)
            self.handle(conn, record, self._stop)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


def _read_request(conn: socket.socket, record: Connection) -> None:
    """Read one request's head and body (by Content-Length); keep its Host header."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            record.host = value.strip().decode()
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def _peer_closed(conn: socket.socket, wait: float) -> bool:
    """Wait up to ``wait`` s; True if the peer closed (or reset) the connection meanwhile."""
    readable, _, _ = select.select([conn], [], [], wait)
    if not readable:
        return False
    try:
        return conn.recv(1) == b""
    except OSError:
        return True


def answer(status: int = 204) -> Handler:
    def handle(conn: socket.socket, record: Connection, stop: threading.Event) -> None:
        _read_request(conn, record)
        reply = f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        conn.sendall(reply)
        record.sent += len(reply)

    return handle


def trickle(*, every: float, total: float) -> Handler:
    """A 200 answer dribbled one byte every ``every`` seconds for up to ``total`` seconds."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n" + b"." * 100000

    def handle(conn: socket.socket, record: Connection, stop: threading.Event) -> None:
        _read_request(conn, record)
        ends = time.monotonic() + total
        for byte in reply:
            if stop.is_set() or time.monotonic() > ends:
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                record.closed_by_peer_at = time.monotonic()
                return
            record.sent += 1
            if _peer_closed(conn, every):
                record.closed_by_peer_at = time.monotonic()
                return

    return handle


def huge(size: int) -> Handler:
    """A 200 whose body is ``size`` bytes, written as fast as the peer takes them (64 KiB writes)."""
    block = b"x" * 65536

    def handle(conn: socket.socket, record: Connection, stop: threading.Event) -> None:
        # A small send buffer, so ``sent`` counts what the peer's side took, not what our kernel held.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        _read_request(conn, record)
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        left = size
        while left > 0 and not stop.is_set():
            try:
                record.sent += conn.send(block[: min(left, len(block))])
            except OSError:
                record.closed_by_peer_at = time.monotonic()
                return
            left = size - record.sent

    return handle


def server_context(name: str) -> tuple[tuple[ssl.SSLContext, list[str]], str]:
    """A TLS server context with a self-signed certificate for ``name``, and that certificate (PEM)
    for the client to trust. The server notes the SNI each client sent."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cert.pem").write_bytes(cert_pem)
        (Path(tmp) / "key.pem").write_bytes(key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(Path(tmp) / "cert.pem", Path(tmp) / "key.pem")
    names: list[str] = []

    def note(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(server_name or "")

    context.sni_callback = note  # type: ignore[assignment]
    return (context, names), cert_pem.decode()
