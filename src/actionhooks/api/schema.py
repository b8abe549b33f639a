"""The API's answers as msgspec types: the handlers encode them, ``openapi.py`` publishes their JSON Schemas and
``actionhooks.client`` decodes them — one definition for all three.

Request bodies are validated by the domain's own types (``events.Envelope``, ``hooks.parse_hook`` with the
transports' ``Settings``); ``TransportChoice`` names those settings classes as one union tagged by ``type``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

import msgspec

from ..catalog import EventType
from ..events import ItemError
from ..hooks import Filters
from ..integrations import TransportSettings
from ..integrations.http.transport import Settings as HttpSettings
from ..integrations.kafka.transport import Settings as KafkaSettings
from ..integrations.nats.transport import Settings as NatsSettings
from ..integrations.rabbitmq.transport import ExchangeSettings as RabbitMQExchangeSettings
from ..integrations.rabbitmq.transport import QueueSettings as RabbitMQQueueSettings
from ..profiles import Subscription
from ..registry import Hook
from ..stats import HookState, HookStats
from ..store.base import Attempt, DeadLetter, Scope, SideDelivery, SideState, StoredKey

TransportChoice = (
    HttpSettings | RabbitMQQueueSettings | RabbitMQExchangeSettings | KafkaSettings | NatsSettings
)
"""Every built-in transport's settings (``tests/test_openapi.py`` checks it against the registry, less what the
tests register themselves)."""


Instant = Annotated[datetime, msgspec.Meta(tz=True)]
"""A moment in UTC, RFC 3339 with ``Z`` (microseconds)."""


def timestamp(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error answer: what is wrong, and the field to blame (a dotted path) when there is one."""

    error: str
    field: str | None = None


class Health(msgspec.Struct):
    status: str


class ReadinessView(msgspec.Struct):
    """``GET /readyz``: ``ready`` or ``not_ready``, with each check's answer — ``"ok"`` or why it is not ready."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


class EventTypeList(msgspec.Struct):
    event_types: list[EventType]


class IngestResult(msgspec.Struct):
    """``POST /v1/events``: ``accepted`` newly stored, ``duplicates`` already known ids, ``ids`` of every valid
    event in request order, ``errors`` of the invalid ones by index."""

    accepted: int
    duplicates: int
    ids: list[str]
    errors: list[ItemError]


class HookView(msgspec.Struct, kw_only=True):
    """A hook as the API shows it: its settings (secrets as ``"***"``) and its delivery state."""

    id: int
    name: str
    active: bool
    list_id: int | None
    event_types: list[str]
    filters: Filters
    custom_data_fields: list[str]
    max_events_per_second: float | None
    transport: TransportChoice
    cursor: int
    created_at: Instant
    updated_at: Instant
    last_error: str | None
    last_error_at: Instant | None
    last_success_at: Instant | None
    disabled_reason: str | None
    disabled_at: Instant | None

    @classmethod
    def of(cls, hook: Hook) -> HookView:
        spec = hook.spec
        return cls(
            id=hook.id,
            name=spec.name,
            active=spec.active,
            list_id=spec.list_id,
            event_types=list(spec.event_types),
            filters=spec.filters,
            custom_data_fields=list(spec.custom_data_fields),
            max_events_per_second=spec.max_events_per_second,
            transport=public_transport(spec.transport),
            cursor=hook.cursor,
            created_at=timestamp(hook.created_at),
            updated_at=timestamp(hook.updated_at),
            last_error=hook.last_error,
            last_error_at=timestamp(hook.last_error_at) if hook.last_error_at is not None else None,
            last_success_at=timestamp(hook.last_success_at) if hook.last_success_at is not None else None,
            disabled_reason=hook.disabled_reason,
            disabled_at=timestamp(hook.disabled_at) if hook.disabled_at is not None else None,
        )


def public_transport(settings: TransportSettings) -> TransportChoice:
    """The settings with their secrets replaced by ``"***"`` (every secret is a string setting), as their own type:
    a transport registered beside the built-in ones (the tests' ``stub``) is shown too, though the document
    names only the built-in ones."""
    shown = msgspec.convert(settings.public(), type(settings))
    return cast(TransportChoice, shown)


class HookList(msgspec.Struct):
    hooks: list[HookView]


class AttemptView(msgspec.Struct, kw_only=True):
    """One try at delivering one batch; ``outcome``: delivered | retry | failed (sent to dead letters)."""

    hook_id: int
    at: Instant
    batch_id: str
    events: int
    first_seq: int
    last_seq: int
    outcome: str
    status: int | None
    latency_ms: float | None
    response_excerpt: str | None
    error: str | None
    id: int | None

    @classmethod
    def of(cls, a: Attempt) -> AttemptView:
        return cls(
            hook_id=a.hook_id,
            at=timestamp(a.at),
            batch_id=a.batch_id,
            events=a.events,
            first_seq=a.first_seq,
            last_seq=a.last_seq,
            outcome=a.outcome,
            status=a.status,
            latency_ms=a.latency_ms,
            response_excerpt=a.response_excerpt,
            error=a.error,
            id=a.id,
        )


class AttemptList(msgspec.Struct):
    attempts: list[AttemptView]


class DeadLetterView(msgspec.Struct, kw_only=True):
    """An event given up on: why, after how many attempts, and the stored message as ``event``."""

    id: int | None
    event_id: str
    event_seq: int
    reason: str
    attempts: int
    failed_at: Instant
    event: msgspec.Raw | str

    @classmethod
    def of(cls, d: DeadLetter) -> DeadLetterView:
        return cls(
            id=d.id,
            event_id=d.event_id,
            event_seq=d.event_seq,
            reason=d.reason,
            attempts=d.attempts,
            failed_at=timestamp(d.failed_at),
            event=stored_event(d.payload),
        )


def stored_event(payload: bytes) -> msgspec.Raw | str:
    """A logged event as JSON; one whose bytes are not UTF-8 (accepted before ingest refused them) as a string with
    the bad bytes replaced, so that the answer stays valid JSON."""
    try:
        payload.decode()
    except UnicodeDecodeError:
        return payload.decode(errors="replace")
    return msgspec.Raw(payload)


class DeadLetterList(msgspec.Struct):
    dead_letters: list[DeadLetterView]


class TestOptions(msgspec.Struct, kw_only=True):
    """``POST /v1/hooks/{id}/test``'s optional body: the event type of the sample (default: the hook's first)."""

    event_type: str | None = None


class ResumeOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/hooks/{id}/resume``'s body: resume ``from`` the hook's cursor (where it stopped: the events kept
    since are delivered) or from ``now`` (the log head: what came in while it was stopped is skipped)."""

    from_: Literal["cursor", "now"] = msgspec.field(name="from")


class TestOutcome(msgspec.Struct, kw_only=True):
    """One sample event sent through a hook now: ``delivered``, what the destination answered, and (when not
    delivered) the error and whether retrying could help; ``event`` is the message as sent."""

    delivered: bool
    status: int | None
    response_excerpt: str | None
    error: str | None = None
    permanent: bool | None = None
    latency_ms: float
    event: msgspec.Raw


class WindowCounts(msgspec.Struct):
    """Events over the last minute, hour and day (to 10 seconds)."""

    minute: int
    hour: int
    day: int


class HookStatsView(msgspec.Struct, kw_only=True):
    """``GET /v1/hooks/{id}/stats``: events delivered, in failed attempts, dead-lettered; lost to retention;
    the lag; the last success and error; the state (docs/api.md#stats)."""

    hook_id: int
    state: HookState
    delivered: WindowCounts
    failed: WindowCounts
    dead_lettered: WindowCounts
    expired_undelivered: int
    lag_events: int
    lag_seconds: float
    last_success_at: Instant | None
    last_error: str | None
    last_error_at: Instant | None

    @classmethod
    def of(cls, hook_id: int, s: HookStats) -> HookStatsView:
        return cls(
            hook_id=hook_id,
            state=s.state,
            delivered=WindowCounts(**s.delivered),
            failed=WindowCounts(**s.failed),
            dead_lettered=WindowCounts(**s.dead_lettered),
            expired_undelivered=s.expired_undelivered,
            lag_events=s.lag_events,
            lag_seconds=round(s.lag_seconds, 3),
            last_success_at=timestamp(s.last_success_at) if s.last_success_at is not None else None,
            last_error=s.last_error,
            last_error_at=timestamp(s.last_error_at) if s.last_error_at is not None else None,
        )


# --- capture: profiles, the account's settings, tracking tokens (docs/capture.md) ----------------------------
class ProfileView(msgspec.Struct, kw_only=True):
    """A stored profile (``GET`` / ``PUT`` / ``PATCH /v1/profiles/{profile_id}``)."""

    profile_id: str
    list_id: int | None
    email: str | None
    phone: str | None
    fields: dict[str, Any]
    subscriptions: list[Subscription]
    updated_at: Instant


class ProfileUpsertResult(msgspec.Struct):
    """``POST /v1/profiles``: ``upserted`` profiles written, ``errors`` of the invalid items by index."""

    upserted: int
    errors: list[ItemError]


class TrackingKeyView(msgspec.Struct, kw_only=True):
    key_id: str
    created_at: Instant
    retired_at: Instant | None = None


class AccountView(msgspec.Struct, kw_only=True):
    """``GET /v1/account``: the account's settings. ``derive``: derived events on (docs/capture.md)."""

    account_id: int
    derive: bool
    tracking_keys: list[TrackingKeyView]


class AccountPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /v1/account``: the settings to change."""

    derive: bool | None = None


class TrackingKeySecret(msgspec.Struct, kw_only=True):
    """A new tracking key, shown once: ``secret`` is the base64url of the HMAC key (docs/capture.md#tokens)."""

    key_id: str
    secret: str
    created_at: Instant


class TrackingToken(msgspec.Struct, kw_only=True):
    """``POST /v1/tracking-tokens``: the token, the open pixel's URL, the open pixel measuring dwell (use one of the
    two in a message) and (with a ``link_url``) the click URL."""

    token: str
    open_url: str
    dwell_url: str
    click_url: str | None


# -- API keys (``api/keys.py``) -----------------------------------------------------------------------------


class NewKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/keys``'s body: a name to tell the key by, and its scope (``ingest``: send events only;
    ``admin``: everything)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    scope: Scope


class KeyView(msgspec.Struct, kw_only=True):
    """An API key as listed: never its secret. ``last_used_at`` is coarse (to about a minute); ``revoked_at`` is
    set once the key is revoked (it then stops working in every process within ``ACTIONHOOKS_KEY_CACHE_S``)."""

    id: int
    name: str
    scope: Scope
    created_at: Instant
    revoked_at: Instant | None
    last_used_at: Instant | None

    @classmethod
    def of(cls, key: StoredKey) -> KeyView:
        return cls(
            id=key.id,
            name=key.name,
            scope=key.scope,
            created_at=timestamp(key.created_at),
            revoked_at=timestamp(key.revoked_at) if key.revoked_at is not None else None,
            last_used_at=timestamp(key.last_used_at) if key.last_used_at is not None else None,
        )


class KeyCreated(KeyView, kw_only=True):
    """A key just created, with its secret ``api_key`` — shown in this answer only."""

    api_key: str

    @classmethod
    def made(cls, key: StoredKey, secret: str) -> KeyCreated:
        return cls(**msgspec.structs.asdict(KeyView.of(key)), api_key=secret)


class KeyList(msgspec.Struct):
    keys: list[KeyView]


# --- replays and dead-letter redrives (api/replays.py, dispatch/replay.py) -----------------------------------
class ReplayRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Send a hook the events accepted in ``[from, to)`` again (of ``event_types``, within the hook's; default:
    the hook's)."""

    from_: Instant = msgspec.field(name="from")
    to: Instant
    event_types: Annotated[list[str], msgspec.Meta(min_length=1, max_length=100)] | None = None


class ReplayView(msgspec.Struct, kw_only=True):
    """A replay: ``total`` events of the range the hook matches, ``sent`` so far; ``error`` when it failed."""

    id: int
    state: SideState
    total: int
    sent: int
    from_: Instant = msgspec.field(name="from")
    to: Instant
    event_types: list[str] | None
    error: str | None
    created_at: Instant
    updated_at: Instant

    @classmethod
    def of(cls, side: SideDelivery) -> ReplayView:
        return cls(
            id=side.id,
            state=side.state,
            total=side.total,
            sent=side.sent,
            from_=timestamp(side.from_at or 0.0),
            to=timestamp(side.to_at or 0.0),
            event_types=None if side.event_types is None else list(side.event_types),
            error=side.error,
            created_at=timestamp(side.created_at),
            updated_at=timestamp(side.updated_at),
        )


class DeadLetterSelector(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which dead letters to redrive or discard: ``ids``, or ``all: true``; narrowed by ``reason`` (exactly as
    listed) and by when they failed, ``[failed_after, failed_before)``."""

    ids: (
        Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]], msgspec.Meta(max_length=10_000)]
        | None
    ) = None
    all: bool = False
    reason: str | None = None
    failed_after: Instant | None = None
    failed_before: Instant | None = None


class Redriven(msgspec.Struct):
    """Dead letters queued for delivery again."""

    redriven: int


class Discarded(msgspec.Struct):
    """Dead letters removed."""

    discarded: int
