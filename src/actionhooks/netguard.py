"""Outbound destination guard: refuse addresses that are not public unless an operator allow-list opens them.

Loopback, private (RFC 1918, unique-local), link-local (cloud metadata lives at 169.254.169.254), shared,
multicast, reserved and unspecified addresses are refused, so a hook cannot be pointed at the service's own
network. ``ACTIONHOOKS_ALLOW_NETS`` (comma-separated CIDRs) opens chosen ranges, e.g. ``127.0.0.0/8`` for tests.
Checks apply to the addresses a name resolves to, right before connecting, and the connection goes to an address
that was checked — never to the name, which a second resolution could lead elsewhere (DNS rebinding):
``integrations.http.resolver`` applies them to aiohttp's connections; the broker transports connect to what
:meth:`NetGuard.addresses` returned. Names are resolved by the guard's ``resolver`` (the system's by default; tests
give their own).

An IPv6 address that carries an IPv4 address (IPv4-mapped ``::ffff:0:0/96``, IPv4-compatible ``::/96``,
IPv4-translated ``::ffff:0:0:0/96``, NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4 ``2002::/16``, Teredo's
client) is judged by that IPv4 address too: it reaches the same host through a translator or tunnel.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .errors import ConfigError, DeliveryError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``resolver(host, port)``: the addresses ``host`` resolves to (raises ``OSError`` when it does not)."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives for ``host`` (TCP), each once, in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# prefixes whose last 32 bits are an IPv4 address (RFC 4291 §2.5.5, RFC 2765, RFC 6052, RFC 8215)
_IPV4_IN_LOW_32 = tuple(
    ipaddress.IPv6Network(n)
    for n in ("::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48")
)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (see the module's docstring); empty for a plain IPv6 one."""
    found = []
    if any(ip in net for net in _IPV4_IN_LOW_32):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def parse_nets(text: str) -> tuple[IPNetwork, ...]:
    nets = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ConfigError(f"ACTIONHOOKS_ALLOW_NETS: {part!r} is not a CIDR network") from exc
    return tuple(nets)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


class NetGuard:
    def __init__(self, allow: Iterable[IPNetwork] = (), *, resolver: Resolver = system_resolver) -> None:
        self.allow = tuple(allow)
        self.resolver = resolver

    def refusal(self, address: str) -> str | None:
        """Why ``address`` may not be contacted, or None when it may."""
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allow):
            return None
        if not ip.is_global or ip.is_multicast:
            return f"destination address {ip} is not public (loopback, private, link-local or reserved)"
        if isinstance(ip, ipaddress.IPv6Address):
            for inner in embedded_ipv4(ip):
                if not any(inner in net for net in self.allow) and (
                    not inner.is_global or inner.is_multicast
                ):
                    return f"destination address {ip} carries {inner}, which is not public"
        return None

    def host_refusal(self, host: str) -> str | None:
        """A refusal that is certain without DNS: an IP literal or ``localhost``; None otherwise."""
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            if host.lower() == "localhost" or host.lower().endswith(".localhost"):
                return self.refusal("127.0.0.1")
            return None
        return self.refusal(host)

    async def addresses(self, host: str, port: int, what: str) -> list[str]:
        """The addresses to connect to for ``host`` (a broker): an IP literal as it is, a name resolved once — every
        address checked. Connect to these, never to the name again (a second resolution may answer otherwise).
        ``what`` names the kind of destination in the error. Raises ``DeliveryError``: permanent when any address
        is refused, retryable when the name does not resolve."""
        literal = host.strip("[]")
        if _is_ip(literal):
            found = [literal]
        else:
            try:
                found = await self.resolver(host, port)
            except OSError as exc:
                raise DeliveryError(f"cannot resolve {what} host {host!r}: {exc}") from exc
            if not found:
                raise DeliveryError(f"cannot resolve {what} host {host!r}: no address")
        for address in found:
            refusal = self.refusal(address)
            if refusal:
                raise DeliveryError(f"{what} host {host!r} refused: {refusal}", permanent=True)
        return found

    async def check_host(self, host: str, port: int, what: str) -> None:
        """Refuse ``host`` when any address its name resolves to is refused (see :meth:`addresses`, which gives
        the addresses to connect to)."""
        await self.addresses(host, port, what)

    def addresses_ok(self, infos: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
        kept = [i for i in infos if self.refusal(str(i["host"])) is None]
        if kept:
            return kept, None
        reason = self.refusal(str(infos[0]["host"])) if infos else "name did not resolve"
        return [], reason


__all__ = ["NetGuard", "Resolver", "parse_nets", "system_resolver"]
