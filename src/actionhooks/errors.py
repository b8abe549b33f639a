"""Errors raised by actionhooks.

The tree::

    ActionhooksError
    ├── ConfigError            bad environment or command-line settings; raised at start-up
    ├── ValidationError        bad input (an event, a hook's settings); carries the field it names
    └── DeliveryError          a transport could not deliver a batch
                               ├─ permanent=True   never retried: the batch goes to dead letters
                               └─ permanent=False  retried with back-off; retry_after is the
                                                   destination's own request (seconds), if any

Transports map their libraries' exceptions to ``DeliveryError`` at their edge (``raise … from exc``);
nothing else escapes ``Transport.send``.
"""

from __future__ import annotations


class ActionhooksError(Exception):
    """Base of every error actionhooks raises on purpose."""


class ConfigError(ActionhooksError):
    """A setting is missing or malformed."""


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
