"""Who is asking, and under which name: the client address behind proxies, and the Host allowlist.

The client address keys every per-address rate limit (status links, console sign-in). A header
is the sender's to write, so ``X-Forwarded-For`` is believed only when the connection itself comes
from a proxy listed in ``BATON_TRUSTED_PROXIES``; otherwise anybody could pick a fresh address per
request and never be limited, or borrow a victim's address to lock it out.

The Host allowlist refuses requests addressed to a name Baton does not serve: links and Twilio's
signature check are built from the request's URL when no public URL is configured, and a local
instance must not answer a page that DNS rebinding pointed at it.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request

from kernel.config import Settings
from kernel.errors import BadRequest
from tracker.web.problems import send_problem

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Load balancers probe these by address, with whatever Host they like; they reveal nothing.
HOST_EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})


@functools.lru_cache(maxsize=8)
def trusted_networks(spec: str) -> tuple[Network, ...]:
    """``BATON_TRUSTED_PROXIES`` parsed once per distinct value: addresses and CIDRs, comma-separated."""
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec.split(",") if item.strip())


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1:value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.5:443"
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in network for network in networks)


def client_address_of(peer: str | None, forwarded_for: list[str], trusted_proxies: str) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy (entries left of it are the client's to forge)."""
    peer = peer or "unknown"
    networks = trusted_networks(trusted_proxies)
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            return peer  # garbage in the chain: nothing left of it can be believed either
        if not any(ip in network for network in networks):
            return str(ip)
    return peer  # every hop is one of ours: the request started inside


def client_address(request: Request) -> str:
    """The address per-address rate limits key on, for this request."""
    settings: Settings = request.app.state.runtime.settings
    peer = request.client.host if request.client else None
    return client_address_of(peer, request.headers.getlist("x-forwarded-for"), settings.trusted_proxies)


def _host_name(value: str) -> str:
    """``Host`` without its port, lower-case; IPv6 literals keep their brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.index("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_hosts(settings: Settings) -> frozenset[str]:
    hosts = {_host_name(item) for item in settings.allowed_hosts.split(",") if item.strip()}
    if settings.public_base_url:
        hosts.add(_host_name(urlsplit(settings.public_base_url).netloc.rpartition("@")[2]))
    return frozenset(hosts)


class HostAllowlistMiddleware:
    """Refuse (400 problem) a request whose ``Host`` is neither the public URL's host nor in ``BATON_ALLOWED_HOSTS``."""

    def __init__(self, app: Any, *, settings: Settings) -> None:
        self.app = app
        self.hosts = allowed_hosts(settings)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in HOST_EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        if _host_name(host) not in self.hosts:
            await send_problem(send, BadRequest("This server does not answer for that Host; use its public address."))
            return
        await self.app(scope, receive, send)
