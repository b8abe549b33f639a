"""What one client may cost the HTTP server before the application sees its request (docs/operations.md).

Kept apart from :mod:`actionhooks.api.server` (which enforces them) so that the command line can show the defaults
without importing the server.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerLimits:
    max_head_bytes: int = 64 * 1024  # request line + headers; larger: 431
    head_timeout_s: float = 10.0  # from the first byte of a head (or the connection) to its end; then 408
    body_timeout_s: float = 30.0  # longest pause while a body arrives; then 408
    keep_alive_s: int = 5  # an idle keep-alive connection is closed after this
    max_concurrency: int = 2048  # open connections + requests in progress; past it new requests get 503
    graceful_shutdown_s: int = 30  # on stop, requests get this long (serve: ACTIONHOOKS_SHUTDOWN_TIMEOUT_S)
