"""Where a delivery may go: no private, loopback, link-local or reserved addresses.

The host is resolved once; if ANY of its addresses is not public the delivery is refused
(no connection is made), and otherwise the POST goes to the first resolved address (the
``Host`` header and TLS name stay the host's), so that a second lookup cannot lead it
elsewhere (DNS rebinding). Redirects are never followed (see the transport).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from worker.webhooks.errors import AddressRefusedError, TransportError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``; the default asks the system resolver.
Resolver = Callable[[str, int], Awaitable[list[str]]]
_ALLOW = "set QUEUE_WEBHOOK_ALLOW_PRIVATE=true to allow it"


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect: ``url`` (host replaced by the pinned address) and the real host."""

    url: str
    host_header: str | None = None
    sni_hostname: str | None = None


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise TransportError(f"cannot resolve {host!r}: {error}") from error
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


async def target(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> Target:
    """The connection target for ``url``, or :class:`AddressRefusedError`."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise AddressRefusedError(f"refused {url!r}: not an http(s) URL with a host")
    if allow_private:
        return Target(url)
    host = parsed.host
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in await resolver(host, port)]
    if not addresses:
        raise TransportError(f"cannot resolve {host!r}: no addresses")
    for address in addresses:
        if not is_public(address):
            raise AddressRefusedError(
                f"refused {host!r}: it resolves to a non-public address ({address}); {_ALLOW}"
            )
    pinned = parsed.copy_with(host=str(addresses[0]))
    host_header = host if parsed.port is None else f"{host}:{parsed.port}"
    return Target(
        str(pinned),
        host_header=host_header,
        sni_hostname=host if parsed.scheme == "https" else None,
    )
