"""The transport contract: one small protocol every destination kind implements.

A transport receives a :class:`Batch` from the dispatcher and either returns a :class:`Receipt` (the whole batch
was delivered and acknowledged) or raises :class:`~actionhooks.errors.DeliveryError` — ``permanent`` when retrying
cannot help, otherwise retryable, with ``retry_after`` when the destination asked for a delay. Library exceptions are
mapped to ``DeliveryError`` inside the transport; nothing else escapes ``send``.

Each transport module exports ``Settings`` (a :class:`TransportSettings` subclass, tagged with the transport's
``type``) and ``open(settings, context) -> Transport``; importing the module must not import its client library
(that happens inside ``open``), so settings can be validated without the optional extra installed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Protocol

import msgspec

from ..events import LoggedEvent
from ..netguard import NetGuard

Message = LoggedEvent
"""One event as it leaves: ``body`` is the JSON object the receiver gets."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Events of one hook, in log order. ``batch_id`` stays the same across retries of this batch."""

    hook_id: int
    batch_id: str
    messages: list[Message]

    def json_array(self) -> bytes:
        return b"[" + b",".join(m.body for m in self.messages) + b"]"


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivered batch: what the destination answered, for the attempt record."""

    status: int | None = None
    response_excerpt: str | None = None


@dataclass(frozen=True, slots=True)
class TransportContext:
    """What the service lends every transport."""

    net_guard: NetGuard = field(default_factory=NetGuard)


class Transport(Protocol):
    async def send(self, batch: Batch) -> Receipt:
        """Deliver every message of ``batch`` or raise ``DeliveryError``. Must be safe to call again with the
        same batch after a failure (at-least-once: a retried batch may reach the destination twice)."""
        ...

    async def close(self) -> None:
        """Release connections. ``send`` is not called after ``close``."""
        ...


class TransportSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    """Settings every transport shares: how the dispatcher batches events for it.

    A batch goes out when ``max_batch_size`` events wait or the oldest has waited ``timeout_s`` seconds.
    ``SECRET_FIELDS`` name write-only settings: never returned by the API nor logged. ``DESTINATION_FIELDS`` name
    the settings that say where the transport connects: a change to one must bring every secret along again (the
    hooks API refuses it otherwise), so a secret never follows a hook to a destination unasked.
    """

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()
    DESTINATION_FIELDS: ClassVar[tuple[str, ...]] = ()

    max_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    timeout_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 1.0

    def check(self) -> None:
        """Validation beyond types; raise ``ValidationError`` naming the field (relative to the transport)."""

    def hosts(self) -> list[str]:
        """Host names or addresses the transport will contact; checked against the net guard when a hook is
        saved (``ACTIONHOOKS_ALLOW_NETS``)."""
        return []

    def field_of_host(self, host: str) -> str | None:
        """The setting (relative to the transport) that names ``host`` of :meth:`hosts`, to blame in an error; None
        when no single one does."""
        return None

    def __repr__(self) -> str:  # secrets never reach logs
        return f"{type(self).__name__}({self.public()!r})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return list(self.public().items())

    def public(self) -> dict[str, Any]:
        """The settings as the API shows them: secrets replaced by ``"***"`` when set."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        for name in self.SECRET_FIELDS:
            _redact(data, name.split("."))
        return data


def _redact(data: dict[str, Any], path: list[str]) -> None:
    head, rest = path[0], path[1:]
    if head not in data or data[head] is None:
        return
    if rest:
        if isinstance(data[head], dict):
            _redact(data[head], rest)
    elif isinstance(data[head], dict):
        data[head] = {k: "***" for k in data[head]}
    else:
        data[head] = "***"


def outcome_seen(future: asyncio.Future[Any]) -> None:
    """A done-callback marking ``future``'s exception as retrieved: for futures whose failure nobody may await any
    more (asyncio would log "exception was never retrieved")."""
    if not future.cancelled():
        future.exception()
