"""Where Baton may post a partner's webhooks: ``https`` on public addresses (SPEC.md, "Webhook URLs").

One rule, applied twice:

1. At registration (``check_webhook_url``): the scheme must be ``https`` and a literal host (an IP
   address, or ``localhost`` / ``*.localhost``) must be public. No DNS is asked here: a name's
   answer may change before the first delivery, so names are judged at delivery.
2. At delivery (``resolve_webhook_host``): the host name is resolved once, every address it
   resolves to is checked, and the caller connects to the checked address (no DNS rebinding:
   nothing resolves the name a second time between the check and the connection).

``BATON_WEBHOOK_ALLOW_HOSTS`` lists host names or addresses exempt from both checks, for local
development and tests. A URL whose host is listed may use plain ``http``; an address that is
listed may be connected to whatever name resolved to it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to; injectable so tests need no DNS server.
Resolver = Callable[[str, int], Awaitable[list[str]]]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedWebhookURL(ValueError):
    """The URL may not receive webhooks; the message says why, without echoing resolved addresses."""


def normalize_host(host: str) -> str:
    """Lower case, no brackets, no trailing dot; an address in its canonical spelling."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def normalize_allow_hosts(hosts: str | Collection[str]) -> frozenset[str]:
    """The allow-list, from a setting's comma-separated string or a collection of hosts."""
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    return frozenset(normalize_host(h) for h in hosts if h.strip())


def address_blocked(address: IPAddress) -> bool:
    """True for anything but a public unicast address (an IPv4-mapped IPv6 address is judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address):
        # Forms that carry an IPv4 address (mapped, 6to4, NAT64) reach that address: judge it.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            address = embedded
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return True
    # is_global alone lets multicast through on Python 3.11; the others are spelled out for the reader.
    return (not address.is_global or address.is_private or address.is_loopback or address.is_link_local
            or address.is_multicast or address.is_unspecified or address.is_reserved)


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def check_webhook_url(url: str, *, allow_hosts: str | Collection[str]) -> None:
    """Raise ``BlockedWebhookURL`` unless ``url`` may be registered as a webhook URL."""
    parts = urlsplit(url)
    host = normalize_host(parts.hostname or "")
    if not host:
        raise BlockedWebhookURL("webhook_url needs a host")
    if host in normalize_allow_hosts(allow_hosts):
        if parts.scheme not in ("http", "https"):
            raise BlockedWebhookURL("webhook_url must be an http(s) URL")
        return
    if parts.scheme != "https":
        raise BlockedWebhookURL("webhook_url must use https")
    if _is_localhost(host):
        raise BlockedWebhookURL("webhook_url may not point at localhost")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: its addresses are checked at each delivery
    if address_blocked(address):
        raise BlockedWebhookURL("webhook_url must be on a public address, not a loopback, private, link-local, "
                                "shared, multicast or reserved one")


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer for ``host`` (both families), in its preference order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve_webhook_host(host: str, port: int, *, allow_hosts: frozenset[str],
                               resolver: Resolver = system_resolver) -> IPAddress:
    """The one address to connect to for ``host``, after checking every address it resolves to.

    A listed host is resolved too (the connection still goes to the answer used); a literal is
    its own answer. Any blocked address in the answer blocks the delivery: a name that mixes a
    public and a private address is refused, not tried in turn.
    """
    host = normalize_host(host)
    exempt = host in allow_hosts
    if not exempt and _is_localhost(host):
        raise BlockedWebhookURL("blocked address")
    try:
        answers = [ipaddress.ip_address(host)]
    except ValueError:
        answers = [ipaddress.ip_address(a.partition("%")[0]) for a in await resolver(host, port)]
    if not answers:
        raise OSError("no address")
    if not exempt and any(address_blocked(a) and str(a) not in allow_hosts for a in answers):
        raise BlockedWebhookURL("blocked address")
    return answers[0]

