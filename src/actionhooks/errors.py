"""Every exception actionhooks defines, in one place.

The tree::

    ActionhooksError
    ├── ConfigError            bad environment, command-line or consumers-file settings; raised at start-up
    ├── SeedError              the product owner's seed table is not in the expected format (also a ValueError)
    ├── ValidationError        bad input (an event, a hook's settings); carries the field it names
    ├── ApiError               an HTTP request refused with a 4xx: status, message, the field to blame, headers
    ├── StoreUnavailable       the database does not answer (down, restarting, connection lost); retry later —
    │                          the outcome of a write cut off this way is unknown (producer ids make a retry safe)
    ├── DeliveryError          a transport could not deliver a batch
    │                          ├─ permanent=True   never retried: the batch goes to dead letters
    │                          └─ permanent=False  retried with back-off; retry_after is the
    │                                              destination's own request (seconds), if any
    ├── DestinationRefused     the net guard refused every address of a destination (also an OSError, so the
    │                          HTTP client's connector passes it up; the transport maps it to a permanent
    │                          DeliveryError)
    ├── ConsumeError           a broker or dead-letter failure that ends a consumer run (nothing of the batch in
    │                          hand is acknowledged)
    ├── StaleHook              the hook changed under its delivery worker (edited, stopped or deleted); the worker
    │                          stops and the dispatcher starts a fresh one from the stored settings
    ├── SideDeliveryEnded      a replay or redrive is no longer running (cancelled, its hook deleted): its runner
    │                          stops
    ├── StrictJsonError        JSON that receivers could read differently (duplicate keys, numbers past a double,
    │                          invalid UTF-8): an item error at ingest, a 400 elsewhere (also a ValueError)
    ├── TooManyItems           a body with more events than one request may carry: 413 (also a ValueError)
    ├── NotBegun               a store transaction failed to begin: none of its work reached the database
    ├── PartitionBusy          PostgreSQL: dropping a log partition waited too long for readers of the log; the
    │                          pruning step is rolled back and tried again next round
    ├── BrowserMissing         devtools: Debian's Chromium or its driver is not installed (also a RuntimeError)
    ├── BadToken               a tracking token malformed, unsigned, tampered with or signed by no key: 400,
    │                          nothing recorded
    ├── UnreadableFrame        the Kafka guard proxy cannot read a frame (or it would pass on an address it does
    │                          not rewrite): it closes that connection
    └── RequestFailed          actionhooks.client: the service refused a request, or stayed unreachable

Transports map their libraries' exceptions to ``DeliveryError`` at their edge (``raise … from exc``);
nothing else escapes ``Transport.send``. The API answers an ``ApiError`` with its status and the body
``{"error": "…", "field": "…"}`` (route handlers turn a ``ValidationError`` into a 422 one); anything unexpected
becomes a 503 that asks for a retry.
"""

from __future__ import annotations


class ActionhooksError(Exception):
    """Base of every error actionhooks raises on purpose."""


class ConfigError(ActionhooksError):
    """A setting is missing or malformed."""


class SeedError(ActionhooksError, ValueError):
    """The seed text is not in the expected format."""


class ValidationError(ActionhooksError):
    """Input that does not follow the rules; ``field`` names where (dotted path), when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, str]:
        out = {"error": self.message}
        if self.field:
            out["field"] = self.field
        return out


def field_error(exc: Exception, prefix: str = "") -> ValidationError:
    """A ``ValidationError`` from msgspec's message: its JSON path (`` - at `$.a[0].b` ``) becomes ``a.0.b``, and a
    missing or unknown field's name is appended to the path."""
    message, _, at = str(exc).partition(" - at `$")
    path = [p for p in at.rstrip("`").replace("[", ".").replace("]", "").split(".") if p]
    if message.startswith(("Object missing required field", "Object contains unknown field")):
        path.append(message.split("`")[1])
    if prefix:
        path.insert(0, prefix)
    return ValidationError(message, ".".join(path) or None)


class StoreUnavailable(ActionhooksError):
    """The database cannot be reached now; ``retry_after``: seconds after which trying again makes sense."""

    def __init__(self, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class DeliveryError(ActionhooksError):
    """A batch was not delivered.

    ``permanent``: retrying cannot help (410 Gone, a refused destination, bad credentials).
    ``retry_after``: seconds the destination asked us to wait (``Retry-After``), or None.
    ``status``/``response_excerpt``: what the destination answered, recorded on the attempt.
    """

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        response_excerpt: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status
        self.response_excerpt = response_excerpt


class ApiError(ActionhooksError):
    """A request the API refuses: ``status`` (4xx), the ``error`` message, the ``field`` to blame (dotted path,
    when one is) and extra response ``headers`` (``Retry-After`` on a 429, say)."""

    def __init__(
        self, status: int, error: str, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field
        self.headers = headers or {}

    def as_dict(self) -> dict[str, str]:
        """The API's error body."""
        out = {"error": self.error}
        if self.field:
            out["field"] = self.field
        return out


class StaleHook(ActionhooksError):
    """The hook changed under the worker (edited, stopped or deleted)."""


class SideDeliveryEnded(ActionhooksError):
    """A replay or a redrive is no longer running (cancelled, its hook deleted): its runner stops."""


class ConsumeError(ActionhooksError):
    """A broker or dead-letter failure that ends a consumer run (nothing of the batch in hand is acknowledged)."""


class DestinationRefused(OSError, ActionhooksError):
    """The net guard refused every address of a destination; ``reason`` says why.

    An ``OSError``, so that aiohttp, whose resolver raises it (``integrations.http.resolver``), wraps it in
    ``ClientConnectorDNSError`` like any failed resolution; the HTTP transport maps it to a permanent
    ``DeliveryError``."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


class StrictJsonError(ActionhooksError, ValueError):
    """JSON that is well-formed but ambiguous, or not JSON at all; the message says why."""


class TooManyItems(ActionhooksError, ValueError):
    """A body holds more events than one request may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} events in one request; the limit is {limit}")
        self.limit = limit


class NotBegun(ActionhooksError):
    """A transaction failed to begin (its ``__cause__`` says why): none of its work reached the database."""


class PartitionBusy(ActionhooksError):
    """Dropping a log partition waited too long for the log's readers (rolled back; tried again later)."""


class BrowserMissing(ActionhooksError, RuntimeError):
    """The system's Chromium or its driver is not installed."""


class RequestFailed(ActionhooksError):
    """The service refused the request (``status``, its ``error`` and ``field``), or could not be reached
    (``status`` None) after the retries."""

    def __init__(self, status: int | None, error: str, field: str | None = None) -> None:
        super().__init__(f"{status or 'unreachable'}: {error}" + (f" ({field})" if field else ""))
        self.status = status
        self.error = error
        self.field = field


class BadToken(ActionhooksError):
    """A tracking token that is malformed, unsigned, tampered with, or signed by no key of its account."""


class UnreadableFrame(ActionhooksError):
    """A Kafka frame the guard proxy cannot read: the connection is closed (the message says why, never what the
    peer sent)."""
