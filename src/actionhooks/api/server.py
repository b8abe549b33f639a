"""The HTTP server's limits: what a client may cost before the application sees its request.

uvicorn (with httptools) bounds neither the size of a request head nor the time a client takes to send it or its
body, so one slow or oversized client holds memory and a connection for as long as it likes. ``BoundedHttpTools``
adds those bounds to uvicorn's httptools protocol:

- a request head (request line and headers) over ``max_head_bytes`` is answered ``431`` and the connection closed,
  counted as the bytes arrive, so it is never buffered whole;
- a head not complete within ``head_timeout_s`` of its first byte (or of the connection) is answered ``408``;
- a body that stops arriving for ``body_timeout_s`` is answered ``408`` (or the connection closed when the
  answer has already started).

The rest — keep-alive, concurrency, graceful shutdown — are uvicorn's own settings, set by :func:`server_config`.
docs/operations.md lists every limit and its default.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..server_limits import ServerLimits


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head size, head time and body idle time bounded."""

    limits = ServerLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.head_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._head_bytes == 0 and self._timer is None:
                self._arm(self.limits.head_timeout_s)
            self._head_bytes += len(data)
        elif self._timer is not None:  # the body goes on arriving
            self._arm(self.limits.body_timeout_s)
        super().data_received(data)
        if (
            self._in_head
            and self._head_bytes > self.limits.max_head_bytes
            and not self.transport.is_closing()
        ):
            self._refuse(431, "Request Header Fields Too Large", "request head too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm()
        super().on_headers_complete()
        if self.parser is not None and not self.transport.is_closing():
            self._arm(self.limits.body_timeout_s)  # disarmed when the message is complete

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._in_head = True  # the next request's head may follow on this connection

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # an idle connection: nothing to answer
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
            return
        what = "request head" if self._in_head else "request body"
        self._refuse(408, "Request Timeout", f"{what} not received in time")

    def _refuse(self, status: int, phrase: str, error: str) -> None:
        self._disarm()
        body = f'{{"error":"{error}"}}'.encode()
        head = (
            f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        if self.cycle is not None:
            self.cycle.disconnected = True  # the application's reads end; its answer is not sent
            self.cycle.message_event.set()
        self.transport.write(head.encode() + body)
        self.transport.close()


def bounded_protocol(limits: ServerLimits) -> type[BoundedHttpTools]:
    """The protocol class for these limits (uvicorn makes one instance per connection)."""

    class Bounded(BoundedHttpTools):
        pass

    Bounded.limits = limits
    return Bounded


def server_config(
    app: Any, host: str, port: int, log_level: str, limits: ServerLimits, own_logging: bool = False
) -> uvicorn.Config:
    """uvicorn's settings for the service: uvloop, the bounded httptools protocol, no access log; ``own_logging``
    keeps the handlers the caller set up (no uvicorn logging configuration)."""
    extra: dict[str, Any] = {"log_config": None} if own_logging else {}
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=bounded_protocol(limits),
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=limits.keep_alive_s,
        limit_concurrency=limits.max_concurrency,
        timeout_graceful_shutdown=limits.graceful_shutdown_s,
        **extra,
    )
