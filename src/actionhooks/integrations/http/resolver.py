"""An aiohttp resolver that lets a connection reach only the addresses the net guard accepts.

Names are resolved by aiohttp's own resolver; every address the :class:`~actionhooks.netguard.NetGuard`
refuses is dropped, and when none is left :class:`~actionhooks.errors.DestinationRefused` is raised. It is an ``OSError``, so
aiohttp wraps it in ``ClientConnectorDNSError`` (whose ``os_error`` is this exception) and the transport maps
it to a permanent ``DeliveryError``. Because the check runs on the addresses a connection is about to use, a
name that resolves to a private address (or DNS rebinding) cannot slip past it.

aiohttp does not call the resolver for IP-literal hosts (``http://10.0.0.1/``, ``http://[::1]/``): transports
must check those themselves with :meth:`NetGuard.host_refusal` before connecting, and must not follow
redirects.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, cast

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from ...errors import DestinationRefused

if TYPE_CHECKING:
    from ...netguard import NetGuard


class GuardedResolver(AbstractResolver):
    def __init__(self, guard: NetGuard, inner: AbstractResolver | None = None) -> None:
        self.guard = guard
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        refusal = self.guard.host_refusal(host)
        if refusal is not None:
            raise DestinationRefused(host, refusal)
        if self._inner is None:
            # created here, not in __init__: aiohttp's resolvers bind to the running loop
            self._inner = DefaultResolver()
        infos = await self._inner.resolve(host, port, family)
        kept, reason = self.guard.addresses_ok(cast("list[dict[str, Any]]", infos))
        if not kept:
            raise DestinationRefused(host, reason or "no address left")
        return cast("list[ResolveResult]", kept)

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
