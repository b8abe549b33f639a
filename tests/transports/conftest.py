"""Fixtures for the HTTP transport's tests: a loopback receiver and transports that are closed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from actionhooks.devtools.receiver import Receiver
from actionhooks.integrations import TransportContext, open_transport, parse_settings
from actionhooks.integrations.http.transport import HttpTransport
from actionhooks.netguard import NetGuard, parse_nets

LOOPBACK = TransportContext(net_guard=NetGuard(parse_nets("127.0.0.0/8")))

OpenHttp = Callable[..., Awaitable[HttpTransport]]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


@pytest.fixture
async def open_http() -> AsyncIterator[OpenHttp]:
    """``await open_http(url, **settings)``: an HTTP transport allowed to reach loopback (pass ``context=`` to
    use another net guard); every transport opened is closed when the test ends."""
    opened: list[HttpTransport] = []

    async def make(url: str, *, context: TransportContext = LOOPBACK, **settings: Any) -> HttpTransport:
        transport = open_transport(parse_settings({"type": "http", "url": url, **settings}), context)
        assert isinstance(transport, HttpTransport)
        opened.append(transport)
        return transport

    yield make
    for transport in opened:
        await transport.close()
