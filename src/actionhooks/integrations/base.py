"""What every integration shares: the transport contract, and settings that keep their secrets out of logs.

A transport receives a :class:`Batch` from the dispatcher and either returns a :class:`Receipt` (the whole batch
was delivered and acknowledged) or raises :class:`~actionhooks.errors.DeliveryError` — ``permanent`` when retrying
cannot help, otherwise retryable, with ``retry_after`` when the destination asked for a delay. Library exceptions are
mapped to ``DeliveryError`` inside the transport; nothing else escapes ``send``.

Each transport module exports ``Settings`` (a :class:`TransportSettings` subclass, tagged with the transport's
``type``) and ``open(settings, context) -> Transport``; importing the module must not import its client library
(that happens inside ``open``), so settings can be validated without the optional extra installed. A broker's
transport settings have two bases: the broker's connection settings (``<broker>/connection.py``, a
:class:`SecretSettings` with the fields its consumer shares) and :class:`TransportSettings`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, Self

import msgspec

from ..errors import ConfigError, ValidationError
from ..events import LoggedEvent
from ..netguard import NetGuard

Message = LoggedEvent
"""One event as it leaves: ``body`` is the JSON object the receiver gets."""
_body = attrgetter("body")


@dataclass(frozen=True, slots=True)
class SideMark:
    """What marks a batch of a replay or a redrive (``dispatch/replay.py``): a header ``name: value`` outside the
    body (HTTP, a broker header), and a tag that makes transport-level dedupe ids differ from live delivery's."""

    name: str  # "Actionhooks-Replay" | "Actionhooks-Redrive"
    value: str  # the replay's (redrive's) id

    @property
    def tag(self) -> str:
        return f"{'replay' if self.name == REPLAY_HEADER else 'redrive'}-{self.value}"


REPLAY_HEADER = "Actionhooks-Replay"
REDRIVE_HEADER = "Actionhooks-Redrive"


@dataclass(frozen=True, slots=True)
class Batch:
    """Events of one hook, in log order. ``batch_id`` stays the same across retries of this batch. ``mark``: a
    replay's or a redrive's batch (None: live delivery)."""

    hook_id: int
    batch_id: str
    messages: list[Message]
    mark: SideMark | None = None

    def json_array(self) -> bytes:
        """The messages as one JSON array, each body's bytes as logged: one join, one copy (the brackets go onto
        the first and the last body; ``b"[%b]" % joined`` formats a second copy, ~13x slower for 1 000 events)."""
        parts = [m.body for m in self.messages]
        if not parts:
            return b"[]"
        parts[0] = b"[" + parts[0]
        parts[-1] += b"]"
        return b",".join(parts)

    def size(self) -> int:
        """The bytes of its messages (what a send holds while it is out: ``dispatch/budget.py``)."""
        return sum(map(len, map(_body, self.messages)))

    def dedupe_id(self, message: Message) -> str:
        """A message's transport-level dedupe id (NATS ``Nats-Msg-Id``): the event id, tagged for a replay or a
        redrive so a receiver deduplicating on it does not drop them as repeats of the live delivery."""
        return message.id if self.mark is None else f"{message.id}:{self.mark.tag}"


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


class SecretSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings with write-only secrets: ``SECRET_FIELDS`` (dotted paths) are never shown by the API nor logged.
    ``DESTINATION_FIELDS`` name the settings that say where it connects: a change to one must bring every secret
    along again (the hooks API refuses it otherwise), so a secret never follows a hook to a destination unasked.

    It declares no field, so a settings class may have one base with fields (a broker's connection settings) and
    another that adds behaviour only (:class:`TransportSettings`): msgspec allows a single base with fields."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()
    DESTINATION_FIELDS: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Validation beyond types; raise ``ValidationError`` naming the field (relative to these settings)."""

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


class TransportSettings(SecretSettings, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    """Settings every transport has: how the dispatcher batches events for it.

    A batch goes out when ``max_batch_size`` events wait or the oldest has waited ``timeout_s`` seconds. Each
    transport declares both fields with its own defaults (``BatchSize`` and ``BatchTimeout`` bound them): this
    class has no field, so that a broker's connection settings can be the other base (see ``SecretSettings``).
    """

    if TYPE_CHECKING:  # declared by every subclass (a field here would forbid a second base with fields)
        max_batch_size: int
        timeout_s: float

    def hosts(self) -> list[str]:
        """Host names or addresses the transport will contact; checked against the net guard when a hook is
        saved (``ACTIONHOOKS_ALLOW_NETS``)."""
        return []

    def sends_in_flight(self) -> int:
        """How many of the hook's batches may be out at once (1: each waits for the answer to the one before;
        the dispatcher bounds it further by K, docs/delivery.md)."""
        return 1

    def field_of_host(self, host: str) -> str | None:
        """The setting (relative to the transport) that names ``host`` of :meth:`hosts`, to blame in an error; None
        when no single one does."""
        return None


class SourceSettings(SecretSettings, kw_only=True, forbid_unknown_fields=True):
    """Settings of a broker consumer (``actionhooks consume <broker>`` options, a consumers-file entry): a broker's
    ``ConsumerSettings`` has its connection settings as the other base. No field here (see ``SecretSettings``).

    ``ALIASES`` maps names the consumer took before it shared its broker's connection settings to the field they
    stand for (a dotted path into a nested one): ``{"user": "sasl_username"}``."""

    ALIASES: ClassVar[dict[str, str]] = {}
    SUMMARY: ClassVar[str] = ""  # the help of ``actionhooks consume <broker>``

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` (field names, aliases resolved) made ready for conversion; a hook for older spellings."""
        return data

    @classmethod
    def from_options(cls, data: dict[str, Any]) -> Self:
        """Settings from named values (a consumers-file entry, command-line options), aliases resolved and checked;
        ``ConfigError`` with msgspec's or the check's message else."""
        try:
            settings = msgspec.convert(cls.prepare(cls.unalias(data)), cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(str(exc)) from None
        settings.validate()
        return settings

    @classmethod
    def unalias(cls, data: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in data.items() if k not in cls.ALIASES}
        for old, path in cls.ALIASES.items():
            if old not in data:
                continue
            *parents, name = path.split(".")
            target = out
            for parent in parents:
                target = target.setdefault(parent, {})
                if not isinstance(target, dict):
                    raise ConfigError(f"{old} stands for {path}: give one of them")
            if name in target:
                raise ConfigError(f"{old} stands for {path}: give one of them")
            target[name] = data[old]
        return out

    def validate(self) -> None:
        """``check``, its ``ValidationError`` as the ``ConfigError`` a consumer's settings raise."""
        try:
            self.check()
        except ValidationError as exc:
            raise ConfigError(exc.message) from None


MAX_IN_FLIGHT = 64  # the dispatcher's K for one-event batches (dispatch/worker.py SENDS_AHEAD)
BatchSize = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
InFlight = Annotated[int, msgspec.Meta(ge=1, le=MAX_IN_FLIGHT)]  # a transport's ``max_in_flight``
BatchTimeout = Annotated[float, msgspec.Meta(ge=0, le=3600)]


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
