"""The store: one interface, two engines (SQLite embedded, PostgreSQL for scale-out).

The event log is append-only and ordered by ``seq``; a hook's ``cursor`` is the log position up to which every
matching event has been handled (delivered or dead-lettered). Rules every engine keeps:

1. ``append`` returns only after the events are committed (group commit: concurrent appends share a transaction).
2. Events become visible to readers in ``seq`` order: no reader can see ``seq`` n+1 while n may still commit.
   (SQLite has one writer; PostgreSQL serialises appends with a transaction-scoped advisory lock.)
3. An event id is unique per account: appending a known id again stores nothing and reports a duplicate.
4. Hook state changes by the dispatcher are conditional on the hook's ``generation``: an edit of the hook bumps
   it, so a worker running on stale settings cannot move the cursor (the update matches no row).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

import msgspec

from ..events import LoggedEvent, NewEvent
from ..profiles import ProfileWrite, StoredProfile
from .faults import WriteFaults

Scope = Literal["ingest", "admin"]
"""What an API key may do: ``ingest`` only sends events; ``admin`` does everything."""
SCOPES: tuple[Scope, ...] = ("ingest", "admin")


class StoredKey(msgspec.Struct, kw_only=True, frozen=True):
    """An API key's row, less its hash (the secret itself is never stored)."""

    id: int
    account_id: int
    name: str
    scope: Scope
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None  # coalesced: written at most once a minute per key and process


class StoredHook(msgspec.Struct, kw_only=True, frozen=True):
    """A hook's row. ``settings`` are sealed (encrypted) by the caller; the store never reads them."""

    id: int
    account_id: int
    settings: bytes
    active: bool
    cursor: int
    generation: int
    created_at: float
    updated_at: float
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    disabled_reason: str | None = None  # set when the service stopped the hook (auto-disable)
    disabled_at: float | None = None


class FailingHook(NamedTuple):
    """An active hook whose newest outcome is a failure (``last_error`` set), as auto-disable looks at it."""

    id: int
    generation: int
    last_success_at: float | None
    updated_at: float


class FailureStreak(NamedTuple):
    """A hook's failed attempts (retried or dead-lettered) since it last delivered: the first one's time and how
    many (0 when not counted)."""

    first_at: float | None
    attempts: int


class Attempt(msgspec.Struct, kw_only=True, frozen=True):
    """One try at delivering one batch. ``outcome``: delivered | retry | failed (sent to dead letters)."""

    hook_id: int
    at: float
    batch_id: str
    events: int
    first_seq: int
    last_seq: int
    outcome: str
    status: int | None = None
    latency_ms: float | None = None
    response_excerpt: str | None = None
    error: str | None = None
    id: int | None = None


class DeadLetter(msgspec.Struct, kw_only=True, frozen=True):
    hook_id: int
    event_seq: int
    event_id: str
    payload: bytes
    reason: str
    attempts: int
    failed_at: float
    id: int | None = None


class Page(NamedTuple):
    events: list[LoggedEvent]
    scanned_to: int  # every event with seq ≤ scanned_to that matches the query is in ``events``
    caught_up: bool  # scanned_to is the log head: nothing more to read now


class LogPage(NamedTuple):
    """A stretch of the whole log (every account) in ``seq`` order: ``accounts[i]`` owns ``events[i]``."""

    accounts: list[int]
    events: list[LoggedEvent]
    scanned_to: int  # every event with seq ≤ scanned_to is in ``events`` (or before ``after``)
    caught_up: bool  # scanned_to is the log head: nothing more to read now


class StateWrite(NamedTuple):
    """One hook's delivery-state write, as :meth:`Store.write_states` takes many at once. With ``attempt``: what
    :meth:`Store.finish_batch` does. Without: a *cursor note* — move the cursor forward to ``cursor`` (never back)
    when the hook's generation still holds (an idle hook's position, saved lazily)."""

    hook_id: int
    generation: int
    cursor: int | None
    attempt: Attempt | None = None
    dead_letters: Sequence[DeadLetter] = ()
    last_error: str | None = None


class Committed(NamedTuple):
    """The events one append transaction added to the log, in ``seq`` order: every position from ``after + 1`` to
    ``after + len(rows)`` is one of them, and nothing else is in that stretch — what :meth:`Store.read_log` would
    return from ``after``, without reading it back (the dispatcher's feed takes it so: ``dispatch/feed.py``)."""

    after: int
    rows: Sequence[NewEvent]

    def page(self) -> LogPage:
        after, rows = self.after, self.rows
        events = [
            LoggedEvent(seq, r.id, r.event_type, r.list_id, r.profile_id, r.payload, r.received_at)
            for seq, r in enumerate(rows, after + 1)
        ]
        return LogPage([r.account_id for r in rows], events, after + len(rows), True)


# ``listener(account_ids, committed)``: after each commit of appended events in this process — the accounts whose
# events it holds and, where the engine can tell their positions, the events themselves (else ``None``)
AppendListener = Callable[[set[int], Committed | None], None]


# --- retention and stats (maintenance/, metrics.py, GET /v1/hooks/{id}/stats) --------------------------------
class HookQuery(NamedTuple):
    """What a hook matches, as the log is queried: its account, event types and ``list_id``; ``accepts`` applies
    its filters on ``event_data`` to a stored message (None: the hook has none)."""

    hook_id: int
    account_id: int
    event_types: tuple[str, ...]
    list_id: int | None
    accepts: Callable[[bytes], bool] | None = None


@dataclass(frozen=True)
class Pruned:
    rows: int  # rows removed
    more: bool  # the chunk was full: more may be due now
    expired: dict[int, int] = field(default_factory=dict)  # hook id → events it matched, not handled
    seconds: float = 0.0  # the work's own time on the writer (not the wait for its turn)


class DeliveryCounts(NamedTuple):
    """Events of a hook over one window: delivered, in failed attempts (each attempt counts), dead-lettered."""

    delivered: int
    failed: int
    dead_lettered: int


class LogSummary(NamedTuple):
    events: int  # log positions from the oldest kept event to the head (rows, but for gaps of rolled-back appends)
    oldest_received_at: float | None
    used_bytes: int


class HookActivity(NamedTuple):
    last_success_at: float | None
    last_outcome: str | None  # of the newest attempt
    expired_undelivered: int


class HookLag(NamedTuple):
    events: int  # matching events after the cursor, counted up to ``LAG_COUNT_CAP``
    oldest_received_at: float | None  # of the first of them


LAG_COUNT_CAP = 1_000_000


# --- the console (actionhooks.console): many hooks' lag at once, a hook's deliveries per period -------------
class DeliveryPeriod(NamedTuple):
    """A hook's events in one 10-second period starting at ``start`` (as in :class:`DeliveryCounts`)."""

    start: float
    delivered: int
    failed: int
    dead_lettered: int


# --- capture: profiles, derivation state, account settings, tracking keys (docs/capture.md) ---------------
class DeriveState(Protocol):
    """What derivation reads and writes inside the append's transaction (the log lock is held: appends of every
    process are serialised, so two concurrent sources cannot both see a mark as new)."""

    def derives(self, account_id: int) -> bool:
        """The account's setting: derivation on (the default) or off."""
        ...

    def marked(self, account_id: int, marks: Collection[str], now: float) -> set[str]:
        """Those of ``marks`` set and not expired at ``now``."""
        ...

    def mark(self, account_id: int, marks: Collection[str], expires_at: float) -> None:
        """Set ``marks`` (replacing expired ones) until ``expires_at``."""
        ...

    def profiles(self, account_id: int, profile_ids: Collection[str]) -> dict[str, StoredProfile]: ...
    def put_profiles(self, account_id: int, profiles: Sequence[ProfileWrite], now: float) -> None: ...


class Derived(NamedTuple):
    """What a :data:`Deriver` gives: ``events``, the events to write in order — each source event (the very object
    given) with the events derived from it around it; ``added``, the derived ones among them."""

    events: list[NewEvent]
    added: list[NewEvent]


Deriver = Callable[[int, Sequence[NewEvent], DeriveState], Derived]
"""``deriver(account_id, fresh, state)``: the events to write for ``fresh`` (the append's new events, in order)
and the derived ones among them. Runs in the append's transaction, once for a run of consecutive appends of one
account committed together."""


class AccountSettings(NamedTuple):
    derive: bool = True


class TrackingKey(NamedTuple):
    key_id: str
    sealed: bytes  # the HMAC key, sealed by the caller (crypto.py)
    created_at: float
    retired_at: float | None


# --- side deliveries: replays and redrives (dispatch/replay.py, store/side.py) -------------------------------
SideKind = Literal["replay", "redrive"]
SideState = Literal["running", "done", "cancelled", "failed"]


class SideDelivery(msgspec.Struct, kw_only=True, frozen=True):
    """A replay of the log or a redrive of dead letters: events sent to a hook beside its live delivery, a row with
    its own cursor. A replay covers the events of ``(cursor, end_seq]`` accepted in ``[from_at, to_at)``
    (``event_types`` None: the hook's); a redrive, the dead letters naming it."""

    id: int
    hook_id: int
    kind: SideKind
    state: SideState
    from_at: float | None
    to_at: float | None
    event_types: tuple[str, ...] | None
    cursor: int
    end_seq: int
    total: int
    sent: int
    error: str | None
    created_at: float
    updated_at: float


class ReplayRange(NamedTuple):
    """Where a replay starts and ends in the log, and how many events it will send."""

    start: int  # the log position before the range's first event
    end: int  # the last log position the range may hold
    total: int  # events in it the hook matches (filters applied)


class LetterSelection(NamedTuple):
    """Which of a hook's dead letters a redrive or a discard takes: ``ids`` (None: all), narrowed by the rest."""

    ids: tuple[int, ...] | None = None
    reason: str | None = None
    failed_after: float | None = None  # failed at or after
    failed_before: float | None = None


class Store(Protocol):
    """What the API and the dispatcher need of a storage engine. All methods are coroutines safe to call
    concurrently from one event loop. Any of them may raise ``StoreUnavailable`` (errors.py) while the database
    cannot be reached; the store heals by itself when it is back."""

    engine: str

    @property
    def faults(self) -> WriteFaults:
        """The test seam that makes writes fail or wait (:mod:`actionhooks.store.faults`)."""
        ...

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def missing_migrations(self) -> list[int]:
        """Versions of the package's migrations not applied to the database (readiness: reachable and migrated)."""
        ...

    async def meta_value(self, key: str, initial: Callable[[], str]) -> str:
        """The stored value of ``key``; on first use ``initial()`` is stored (and returned)."""
        ...

    # accounts and API keys
    async def create_account(self, name: str, key_hash: str) -> int:
        """A new account with one ``admin`` key named ``default`` (of hash ``key_hash``)."""
        ...

    async def account_for_key(self, key_hash: str) -> int | None:
        """The account of the live (not revoked) key of hash ``key_hash``."""
        ...

    async def add_key(self, account_id: int, name: str, scope: Scope, key_hash: str) -> StoredKey | None:
        """A new key of ``account_id``; None when there is no such account."""
        ...

    async def list_keys(self, account_id: int) -> list[StoredKey]:
        """The account's keys, revoked ones included, oldest first."""
        ...

    async def get_key(self, key_id: int) -> StoredKey | None: ...
    async def key_for_hash(self, key_hash: str) -> StoredKey | None:
        """The key of hash ``key_hash``, revoked or not."""
        ...

    async def revoke_key(
        self, key_id: int, account_id: int | None = None, *, keep_an_admin: bool = True
    ) -> StoredKey | None:
        """Revoke key ``key_id`` (of ``account_id`` when given) and return it as it is then; None when there is no
        such key. Revoking a revoked key changes nothing. With ``keep_an_admin``, the account's last live
        ``admin`` key is not revoked: it comes back with ``revoked_at`` still None (decided under a lock on the
        account, so two revocations at once cannot both pass)."""
        ...

    async def touch_key(self, key_id: int, at: float, older_than: float) -> None:
        """Set the key's ``last_used_at`` to ``at`` unless it is already ``older_than`` or later."""
        ...

    # the event log
    async def append(
        self,
        account_id: int,
        events: Sequence[NewEvent],
        chosen_ids: Collection[str] = (),
        derive: Deriver | None = None,
    ) -> list[bool]:
        """Commit ``events`` (in order) and return, per event, True if stored or False if its id was known.
        ``chosen_ids``: the ids producers chose (only those can repeat; generated ids are unique). ``derive``
        adds derived events in the same transaction (their ids are checked like producers' ids; they are not
        in the returned flags)."""
        ...

    def add_append_listener(self, listener: AppendListener) -> None:
        """Call ``listener(account_ids, committed)`` after each commit of appended events (same process only;
        ``committed``: :class:`Committed`, or ``None`` where the engine cannot tell the events' positions)."""
        ...

    @property
    def pending_appends(self) -> int:
        """Events waiting for the next group commit (for back-pressure)."""
        ...

    def pending_appends_of(self, account_id: int) -> int:
        """Those of :attr:`pending_appends` that ``account_id`` sent (per-account fairness at ingest)."""
        ...

    async def head(self) -> int: ...
    async def read_events(
        self,
        account_id: int,
        event_types: Sequence[str],
        list_id: int | None,
        after: int,
        limit: int,
        window: int = 50_000,
    ) -> Page:
        """Events of ``account_id`` with ``seq > after``, of the given types (and ``list_id`` when set), in
        ``seq`` order, at most ``limit``; the scan covers at most ``window`` log positions, so a hook whose
        events are rare still moves forward in bounded steps. How to scan (an index, or the log in order) is
        the engine's choice."""
        ...

    async def read_log(self, after: int, limit: int) -> LogPage:
        """The log after ``after`` in ``seq`` order, every account, at most ``limit`` events: what the
        dispatcher's shared feed reads once for all hooks."""
        ...

    async def count_events(self, account_id: int | None = None) -> int: ...

    # hooks (settings sealed by the caller: see actionhooks.registry)
    async def create_hook(self, account_id: int, settings: bytes, active: bool) -> StoredHook:
        """A new hook whose cursor is the log head."""
        ...

    async def get_hook(self, account_id: int, hook_id: int) -> StoredHook | None: ...
    async def list_hooks(self, account_id: int) -> list[StoredHook]: ...
    async def update_hook(
        self, account_id: int, hook_id: int, settings: bytes, active: bool, *, keep_cursor: bool = False
    ) -> StoredHook | None:
        """Replace the settings and bump ``generation``; reactivating a stopped hook moves its cursor to the
        log head (a stopped hook captures nothing) unless ``keep_cursor``: then it resumes from where it stopped
        (the events retention kept since are delivered). An active hook has its ``disabled_reason`` and
        ``disabled_at`` cleared."""
        ...

    async def delete_hook(self, account_id: int, hook_id: int) -> bool: ...
    async def disable_hook(
        self, hook_id: int, generation: int, settings: bytes, reason: str, at: float
    ) -> StoredHook | None:
        """Stop an active hook on the service's own decision (auto-disable): its settings replaced (``active``
        false), ``generation`` bumped, ``disabled_reason`` and ``disabled_at`` set — only while its generation is
        still ``generation`` and it is active (None otherwise: it was edited or stopped meanwhile)."""
        ...

    async def failing_hooks(self) -> list[FailingHook]:
        """The active hooks whose newest outcome is a failure (``last_error`` set)."""
        ...

    async def failure_streak(self, hook_id: int, since: float, *, count: bool = True) -> FailureStreak:
        """The hook's failed attempts (outcome ``retry`` or ``failed``) after its newest delivered attempt and after
        ``since``: the first one's time (a few index reads) and, with ``count``, how many (a count of them)."""
        ...

    async def active_generations(self) -> dict[int, int]:
        """Every active hook's id → generation (cheap: what the dispatcher polls)."""
        ...

    async def load_hook(self, hook_id: int) -> StoredHook | None:
        """A hook by id, whatever its account (the dispatcher's view)."""
        ...

    # delivery state (dispatcher)
    async def save_cursor(self, hook_id: int, generation: int, cursor: int) -> bool: ...
    async def finish_batch(
        self,
        attempt: Attempt,
        generation: int,
        cursor: int | None,
        dead_letters: Sequence[DeadLetter] = (),
        last_error: str | None = None,
    ) -> bool:
        """Record ``attempt``; when ``cursor`` is given also move the cursor and store ``dead_letters`` — all in
        one transaction. ``last_error`` is kept as the hook's; a delivered attempt without one sets the hook's
        ``last_success_at`` and clears its last error. False when the hook's generation moved on (the caller must
        stop)."""
        ...

    async def write_states(self, writes: Sequence[StateWrite]) -> list[bool]:
        """Many hooks' state writes in one transaction (one commit, one fsync), in order; per write whether the
        hook's generation still held. A failure fails them all (nothing of them is committed)."""
        ...

    @property
    def commits(self) -> int:
        """Write transactions committed so far by this store object (appends, state, hooks): what the tests
        count to hold idle hooks to no commits of their own."""
        ...

    async def list_attempts(
        self, hook_id: int, limit: int = 100, before: int | None = None
    ) -> list[Attempt]: ...
    async def list_dead_letters(
        self, hook_id: int, limit: int = 100, before: int | None = None
    ) -> list[DeadLetter]: ...

    # retention and stats: the background jobs (actionhooks.maintenance), /metrics, the hook's stats
    async def take_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease ``name`` for ``ttl_s`` seconds; False while another holder's is unexpired."""
        ...

    async def release_lease(self, name: str, holder: str) -> None: ...
    async def prune_events(
        self, received_before: float, max_bytes: int | None, hooks: Sequence[HookQuery], chunk: int
    ) -> Pruned:
        """Remove at most ``chunk`` of the oldest events: those received before ``received_before`` (in log order,
        stopping at the first younger one), or any while the log uses more than ``max_bytes``. In the same
        transaction, count for each active hook of ``hooks`` the removed events it matches and had not handled
        (its cursor was behind them) into its ``expired_undelivered``."""
        ...

    async def prune_attempts(self, before: float, keep_delivered: int, chunk: int) -> Pruned:
        """Remove attempts (and delivery counts) older than ``before``, and each hook's delivered attempts beyond
        its newest ``keep_delivered`` (they are counted in ``delivery_counts``)."""
        ...

    async def prune_dead_letters(self, before: float, chunk: int) -> Pruned: ...
    async def reclaim_space(self) -> None:
        """Give freed space back when much of the file is free (SQLite's incremental vacuum; PostgreSQL: none,
        autovacuum makes freed rows reusable)."""
        ...

    async def log_summary(self) -> LogSummary: ...
    async def delivery_counts(self, hook_id: int, since: Sequence[float]) -> list[DeliveryCounts]:
        """The hook's counts over each window starting at ``since[i]`` (to 10-second periods)."""
        ...

    async def hook_activity(self, hook_id: int) -> HookActivity: ...
    async def hook_lag(self, query: HookQuery, cursor: int) -> HookLag:
        """Events after ``cursor`` of the hook's account, event types and ``list_id`` (filters on ``event_data``
        are not applied: an upper bound)."""
        ...

    # the console: the hooks page's lag column, a hook's throughput chart
    async def hook_lags(self, hooks: Sequence[tuple[HookQuery, int]], cap: int) -> list[HookLag]:
        """Per ``(query, cursor)``, as :meth:`hook_lag` but counted up to ``cap``, in one read: the newest event of
        each (account, event type) first (a hook past them is caught up); the hooks behind are counted in the
        account's newest log positions, read once; one further behind is counted in SQL up to ``cap`` (then
        ``oldest_received_at`` is the oldest of the events counted, not of all)."""
        ...

    async def delivery_periods(self, hook_id: int, since: float) -> list[DeliveryPeriod]:
        """The hook's non-empty 10-second periods from ``since`` on, oldest first."""
        ...

    # capture: profiles (actionhooks.profiles), account settings, tracking keys, derivation marks
    async def get_profiles(self, account_id: int, profile_ids: Collection[str]) -> dict[str, StoredProfile]:
        """The stored profiles (tombstones included) of those ids that have one."""
        ...

    async def put_profiles(self, account_id: int, profiles: Sequence[ProfileWrite]) -> None:
        """Upsert every profile in one transaction (``body`` None: a tombstone)."""
        ...

    async def change_profile(
        self,
        account_id: int,
        profile_id: str,
        change: Callable[[StoredProfile | None], ProfileWrite | None],
    ) -> ProfileWrite | None:
        """Read the profile, call ``change`` with it and store what it returns (None: leave it), atomically."""
        ...

    async def account_settings(self, account_id: int) -> AccountSettings: ...
    async def set_account_settings(self, account_id: int, settings: AccountSettings) -> None: ...
    async def tracking_keys(self, account_id: int) -> list[TrackingKey]:
        """The account's tracking keys, newest first."""
        ...

    async def add_tracking_key(self, account_id: int, key: TrackingKey) -> None: ...
    async def retire_tracking_key(self, account_id: int, key_id: str) -> bool: ...
    async def prune_derive_marks(self, now: float, chunk: int) -> Pruned:
        """Remove derivation marks expired at ``now``, at most ``chunk``."""
        ...

    # side deliveries: replays and redrives (dispatch/replay.py; the SQL is store/side.py)
    async def pruned_horizon(self) -> float | None:
        """The acceptance time of the newest event retention removed (None: nothing was ever pruned)."""
        ...

    async def replay_range(self, query: HookQuery, from_at: float, to_at: float) -> ReplayRange:
        """The log positions of the events accepted in ``[from_at, to_at)`` (acceptance times follow log order to
        within a minute: the range is widened by that and the runner checks each event's time) and how many of
        them the hook matches."""
        ...

    async def add_replay(
        self,
        hook_id: int,
        from_at: float,
        to_at: float,
        event_types: Sequence[str] | None,
        found: ReplayRange,
    ) -> SideDelivery | None:
        """A new running replay; None when the hook has one running already."""
        ...

    async def running_replay(self, hook_id: int) -> SideDelivery | None: ...
    async def get_side_delivery(self, hook_id: int, side_id: int) -> SideDelivery | None: ...
    async def list_side_deliveries(self, hook_id: int, limit: int = 20) -> list[SideDelivery]:
        """The hook's newest side deliveries first."""
        ...

    async def running_side_deliveries(self) -> list[SideDelivery]:
        """Every running side delivery, oldest first (what the dispatcher runs)."""
        ...

    async def cancel_side_delivery(self, hook_id: int, side_id: int) -> SideDelivery | None:
        """Cancel it if running (a redrive's letters not yet sent stay dead letters); the row as it is then."""
        ...

    async def side_progress(
        self,
        side_id: int,
        *,
        cursor: int | None = None,
        sent: int = 0,
        delivered_letters: Sequence[int] = (),
        returned_letters: Sequence[DeadLetter] = (),
        state: SideState = "running",
        error: str | None = None,
    ) -> bool:
        """One transaction: ``sent`` more, the cursor moved, delivered letters removed, returned letters given
        their new reason (``attempts`` added) and released, the state set. False when it is no longer running."""
        ...

    async def replay_events(
        self, query: HookQuery, after: int, end: int, limit: int, window: int
    ) -> tuple[list[LoggedEvent], int]:
        """The hook's events (account, types, ``list_id``) after ``after`` up to ``end``, a span of at most
        ``window`` positions, at most ``limit``; and the position the read covered."""
        ...

    async def redrive_dead_letters(
        self, hook_id: int, pick: LetterSelection
    ) -> tuple[SideDelivery | None, int]:
        """Queue the selected dead letters (those not queued already) on a new redrive; None and 0 when none."""
        ...

    async def discard_dead_letters(self, hook_id: int, pick: LetterSelection) -> int: ...
    async def redrive_letters(self, side_id: int, after: tuple[int, int], limit: int) -> list[DeadLetter]:
        """The redrive's letters after ``(event_seq, id)``, in that order."""
        ...
