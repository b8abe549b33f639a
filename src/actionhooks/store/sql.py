"""The store's logic in SQL shared by both engines. The engine's :class:`~.dialect.Dialect` supplies connections,
transactions, bulk insert, the log lock and the read hint; :class:`~.runtime.Runtime` runs the work on the store's
threads and :class:`~.group_commit.GroupCommit` shares append transactions.

Queries are built once per store with the dialect's parameter marker (``p`` below).
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import NamedTuple, cast

from .. import metrics
from ..errors import PartitionBusy
from ..events import LoggedEvent, NewEvent
from ..profiles import ProfileWrite, StoredProfile
from .base import (
    LAG_COUNT_CAP,
    AccountSettings,
    AppendListener,
    Attempt,
    Committed,
    DeadLetter,
    DeliveryCounts,
    DeliveryPeriod,
    Deriver,
    FailingHook,
    FailureStreak,
    HookActivity,
    HookLag,
    HookQuery,
    LogPage,
    LogSummary,
    Page,
    Pruned,
    Scope,
    StateWrite,
    StoredHook,
    StoredKey,
    TrackingKey,
)
from .dbapi import Connection, Cursor, Param, Row
from .dialect import Dialect, marks, migration_scripts
from .faults import WriteFaults
from .group_commit import GroupCommit, PendingAppend
from .partitions import LogPartitions
from .runtime import Runtime
from .side import SideDeliveriesSql

log = logging.getLogger(__name__)

_EVENT_COLUMNS = "seq, id, event_type, list_id, profile_id, payload, received_at"  # LoggedEvent's order
_HOOK_COLUMNS = (
    "id, account_id, settings, active, cursor, generation, created_at, updated_at, last_error, last_error_at,"
    " last_success_at, disabled_reason, disabled_at"
)
_ATTEMPT_COLUMNS = (
    "hook_id, at, batch_id, events, first_seq, last_seq, outcome, status, latency_ms, response_excerpt, error"
)
_DEAD_COLUMNS = "hook_id, event_seq, event_id, payload, reason, attempts, failed_at"
_ATTEMPT_FIELDS = ("id", *_ATTEMPT_COLUMNS.split(", "))
_DEAD_FIELDS = ("id", *_DEAD_COLUMNS.split(", "))
_KEY_COLUMNS = "id, account_id, name, scope, created_at, revoked_at, last_used_at"  # StoredKey's order
LOG_HEAD = "SELECT COALESCE(MAX(seq), 0) FROM events"
_IDS_PER_QUERY = 500
_IDS_PER_DROP = 10_000  # a partition's producer ids deleted per statement in its drop's transaction
_COUNT_SPAN = 50_000  # a dropped partition's expired events are counted this many log positions at a time
_ARMS_PER_QUERY = 400  # SQLite allows 500 terms in a compound SELECT
_PARAMS_PER_QUERY = 20_000  # SQLite's limit is 32 766
_MARKS_PER_STATEMENT = 500  # rows of a multi-row INSERT of derivation marks (3 parameters each)
_LAG_TAIL = 20_000  # hook_lags reads this many of an account's newest log positions and counts in them
COUNT_PERIOD_S = 10  # delivery counts are kept per hook and period of this many seconds


class _Queries:
    """The fixed statements, with the engine's parameter marker."""

    def __init__(self, p: str) -> None:
        self.meta_get = f"SELECT value FROM meta WHERE key = {p}"
        self.meta_put = f"INSERT INTO meta (key, value) VALUES ({p}, {p})"
        self.account_insert = f"INSERT INTO accounts (name, created_at) VALUES ({p}, {p}) RETURNING id"
        self.key_insert = (
            "INSERT INTO api_keys (key_hash, account_id, name, scope, created_at)"
            f" VALUES ({p}, {p}, {p}, {p}, {p}) RETURNING {_KEY_COLUMNS}"
        )
        self.account_for_key = f"SELECT account_id FROM api_keys WHERE key_hash = {p} AND revoked_at IS NULL"
        self.account_exists = f"SELECT 1 FROM accounts WHERE id = {p}"
        self.account_lock = (
            f"UPDATE accounts SET name = name WHERE id = {p}"  # a row lock: one revocation at once
        )
        self.key = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = {p}"
        self.key_for_hash = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = {p}"
        self.keys_of_account = f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE account_id = {p} ORDER BY id"
        self.other_admin_keys = (
            f"SELECT COUNT(*) FROM api_keys WHERE account_id = {p} AND id <> {p}"
            " AND scope = 'admin' AND revoked_at IS NULL"
        )
        self.key_revoke = f"UPDATE api_keys SET revoked_at = {p} WHERE id = {p} AND revoked_at IS NULL RETURNING {_KEY_COLUMNS}"
        self.key_touch = (
            f"UPDATE api_keys SET last_used_at = {p}"
            f" WHERE id = {p} AND (last_used_at IS NULL OR last_used_at < {p})"
        )
        self.count_account = f"SELECT COUNT(*) FROM events WHERE account_id = {p}"
        self.hook_insert = (
            "INSERT INTO hooks (account_id, settings, active, cursor, generation, created_at, updated_at)"
            f" VALUES ({p}, {p}, {p}, ({LOG_HEAD}), 1, {p}, {p}) RETURNING {_HOOK_COLUMNS}"
        )
        self.hook_of_account = f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE id = {p} AND account_id = {p}"
        self.hooks_of_account = f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE account_id = {p} ORDER BY id"
        self.hook = f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE id = {p}"
        self.active_generations = f"SELECT id, generation FROM hooks WHERE active = {p}"
        self.hook_active = f"SELECT active FROM hooks WHERE id = {p} AND account_id = {p}"
        update = (
            f"UPDATE hooks SET settings = {p}, active = {p}, generation = generation + 1, updated_at = {p}"
        )
        where = f" WHERE id = {p} AND account_id = {p} RETURNING {_HOOK_COLUMNS}"
        enabled = ", disabled_reason = NULL, disabled_at = NULL"  # an active hook is not disabled
        self.hook_update = update + where
        self.hook_update_active = update + enabled + where
        self.hook_update_resume = update + enabled + f", cursor = ({LOG_HEAD})" + where
        self.hook_disable = (
            f"UPDATE hooks SET settings = {p}, active = {p}, generation = generation + 1, updated_at = {p},"
            f" disabled_reason = {p}, disabled_at = {p}"
            f" WHERE id = {p} AND generation = {p} AND active = {p} RETURNING {_HOOK_COLUMNS}"
        )
        self.failing_hooks = (
            "SELECT id, generation, last_success_at, updated_at FROM hooks"
            f" WHERE active = {p} AND last_error IS NOT NULL ORDER BY id"
        )
        # a streak: failed attempts after the hook's newest delivered one (and after a moment) — each read walks the
        # (hook_id, outcome, id) index from there, so it costs the same however many attempts the hook keeps
        after_success = (
            f"id > COALESCE((SELECT MAX(id) FROM attempts WHERE hook_id = {p} AND outcome = 'delivered'), 0)"
        )
        self.streak_first = (
            f"SELECT at FROM attempts WHERE hook_id = {p} AND outcome = {p} AND {after_success} AND at > {p}"
            " ORDER BY id LIMIT 1"
        )
        self.streak_count = (
            f"SELECT COUNT(*) FROM attempts WHERE hook_id = {p} AND outcome IN ('retry', 'failed')"
            f" AND {after_success} AND at > {p}"
        )
        self.hook_delete = f"DELETE FROM hooks WHERE id = {p} AND account_id = {p}"
        self.attempts_delete = f"DELETE FROM attempts WHERE hook_id = {p}"
        self.dead_letters_delete = f"DELETE FROM dead_letters WHERE hook_id = {p}"
        self.cursor_save = (
            f"UPDATE hooks SET cursor = {p} WHERE id = {p} AND generation = {p} AND cursor <= {p}"
        )
        self.delivered_run = (  # a run of delivered batches (SqlStore._write_run): the last one's state, guarded
            f"UPDATE hooks SET cursor = {p}, last_success_at = {p}, last_error = NULL, last_error_at = NULL"
            f" WHERE id = {p} AND generation = {p} AND cursor <= {p}"
        )
        self.cursor_note = (  # forward only; the row matches while the generation holds
            f"UPDATE hooks SET cursor = CASE WHEN cursor < {p} THEN {p} ELSE cursor END"
            f" WHERE id = {p} AND generation = {p}"
        )
        self.read_log = f"SELECT account_id, {_EVENT_COLUMNS} FROM events WHERE seq > {p} AND seq <= {p} ORDER BY seq LIMIT {p}"
        self.next_seq = f"SELECT MIN(seq) FROM events WHERE seq > {p}"
        self.attempt_insert = f"INSERT INTO attempts ({_ATTEMPT_COLUMNS}) VALUES ({marks(p, 11)})"
        self.dead_letter_insert = f"INSERT INTO dead_letters ({_DEAD_COLUMNS}) VALUES ({marks(p, 7)})"
        self.delivery_counts_delete = f"DELETE FROM delivery_counts WHERE hook_id = {p}"
        self.side_deliveries_delete = f"DELETE FROM side_deliveries WHERE hook_id = {p}"
        self.count_attempt = (
            "INSERT INTO delivery_counts (hook_id, period_start, delivered, failed, dead_lettered)"
            f" VALUES ({marks(p, 5)}) ON CONFLICT (hook_id, period_start) DO UPDATE SET"
            " delivered = delivery_counts.delivered + excluded.delivered,"
            " failed = delivery_counts.failed + excluded.failed,"
            " dead_lettered = delivery_counts.dead_lettered + excluded.dead_lettered"
        )


def _delivered(write: StateWrite) -> bool:
    """A batch delivered whole: its record moves the cursor and clears the hook's error, nothing else."""
    a = write.attempt
    return (
        a is not None
        and a.outcome == "delivered"
        and write.cursor is not None
        and write.last_error is None
        and not write.dead_letters
    )


def _continues(before: StateWrite, write: StateWrite) -> bool:
    """Whether ``write``, the same hook's next, extends a run of delivered batches that ``before`` ends (see
    ``SqlStore._write_run``)."""
    return (
        _delivered(before)
        and _delivered(write)
        and write.generation == before.generation
        and cast(int, write.cursor) >= cast(int, before.cursor)
    )


def _period(at: float) -> float:
    """The start of the delivery-count period holding ``at``."""
    return at - at % COUNT_PERIOD_S


def _attempt_row(a: Attempt) -> tuple[Param, ...]:
    return (
        a.hook_id,
        a.at,
        a.batch_id,
        a.events,
        a.first_seq,
        a.last_seq,
        a.outcome,
        a.status,
        a.latency_ms,
        a.response_excerpt,
        a.error,
    )


class SqlStore(SideDeliveriesSql):
    """A :class:`~.base.Store` on a SQL engine described by ``dialect`` (side deliveries: :mod:`.side`)."""

    def __init__(self, dialect: Dialect, readers: int = 3) -> None:
        self.dialect = dialect
        self.engine = dialect.engine
        self._p = dialect.marker
        self._sql = _Queries(dialect.marker)
        self._runtime = Runtime(dialect, readers)
        self._appends = GroupCommit(self._commit_group)

    @property
    def commits(self) -> int:
        return self._runtime.commits

    @property
    def faults(self) -> WriteFaults:
        """The test seam that makes writes fail or wait (see :mod:`.faults`)."""
        return self._runtime.faults

    async def _fetchall(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        def work(conn: Connection) -> list[Row]:
            cur = conn.cursor()
            cur.execute(sql, params)
            return cur.fetchall()

        return await self._runtime.read(work)

    async def open(self) -> None:
        await self._runtime.write(self.dialect.migrate)

    async def missing_migrations(self) -> list[int]:
        """The versions of this package's migrations the database has not applied (a read: it also shows the
        database answers)."""
        known = [version for version, _ in migration_scripts(self.dialect.engine)]
        rows = await self._fetchall("SELECT version FROM schema_migrations")
        applied = {int(row[0]) for row in rows}
        return [version for version in known if version not in applied]

    async def close(self) -> None:
        await self._appends.drain()
        await self._runtime.close()

    async def meta_value(self, key: str, initial: Callable[[], str]) -> str:
        def work(conn: Connection) -> str:
            with self.dialect.transaction(conn) as cur:
                cur.execute(self._sql.meta_get, (key,))
                row = cur.fetchone()
                if row:
                    return str(row[0])
                value = initial()
                cur.execute(self._sql.meta_put, (key, value))
                return value

        return await self._runtime.write(work)

    # --- accounts and API keys -----------------------------------------------------------------------------
    async def create_account(self, name: str, key_hash: str) -> int:
        def work(conn: Connection) -> int:
            now = time.time()
            with self.dialect.transaction(conn) as cur:
                cur.execute(self._sql.account_insert, (name, now))
                account_id = int(_one(cur)[0])
                cur.execute(self._sql.key_insert, (key_hash, account_id, "default", "admin", now))
            return account_id

        return await self._runtime.write(work)

    async def account_for_key(self, key_hash: str) -> int | None:
        rows = await self._fetchall(self._sql.account_for_key, (key_hash,))
        return int(rows[0][0]) if rows else None

    async def add_key(self, account_id: int, name: str, scope: Scope, key_hash: str) -> StoredKey | None:
        def work(conn: Connection) -> StoredKey | None:
            with self.dialect.transaction(conn) as cur:
                cur.execute(self._sql.account_exists, (account_id,))
                if cur.fetchone() is None:
                    return None
                cur.execute(self._sql.key_insert, (key_hash, account_id, name, scope, time.time()))
                return _key(_one(cur))

        return await self._runtime.write(work)

    async def list_keys(self, account_id: int) -> list[StoredKey]:
        return [_key(r) for r in await self._fetchall(self._sql.keys_of_account, (account_id,))]

    async def get_key(self, key_id: int) -> StoredKey | None:
        rows = await self._fetchall(self._sql.key, (key_id,))
        return _key(rows[0]) if rows else None

    async def key_for_hash(self, key_hash: str) -> StoredKey | None:
        rows = await self._fetchall(self._sql.key_for_hash, (key_hash,))
        return _key(rows[0]) if rows else None

    async def revoke_key(
        self, key_id: int, account_id: int | None = None, *, keep_an_admin: bool = True
    ) -> StoredKey | None:
        def work(conn: Connection) -> StoredKey | None:
            with self.dialect.transaction(conn) as cur:
                cur.execute(self._sql.key, (key_id,))
                row = cur.fetchone()
                if row is None or (account_id is not None and int(row[1]) != account_id):
                    return None
                # lock the account, then read the key again: a revocation committed meanwhile is seen
                cur.execute(self._sql.account_lock, (int(row[1]),))
                cur.execute(self._sql.key, (key_id,))
                key = _key(_one(cur))
                if key.revoked_at is not None:
                    return key
                if keep_an_admin and key.scope == "admin":
                    cur.execute(self._sql.other_admin_keys, (key.account_id, key.id))
                    if int(_one(cur)[0]) == 0:
                        return key
                cur.execute(self._sql.key_revoke, (time.time(), key.id))
                return _key(_one(cur))

        return await self._runtime.write(work)

    async def touch_key(self, key_id: int, at: float, older_than: float) -> None:
        def work(conn: Connection) -> None:
            with self.dialect.transaction(conn) as cur:
                cur.execute(self._sql.key_touch, (at, key_id, older_than))

        await self._runtime.write(work)

    # --- the event log ------------------------------------------------------------------------------------
    def add_append_listener(self, listener: AppendListener) -> None:
        self._appends.listeners.append(listener)

    @property
    def pending_appends(self) -> int:
        return self._appends.pending

    def pending_appends_of(self, account_id: int) -> int:
        return self._appends.pending_of(account_id)

    async def append(
        self,
        account_id: int,
        events: Sequence[NewEvent],
        chosen_ids: Collection[str] = (),
        derive: Deriver | None = None,
    ) -> list[bool]:
        if not events:
            return []
        stored = await self._appends.append(account_id, events, chosen_ids, derive)
        metrics.events_appended(e.event_type for e, fresh in zip(events, stored, strict=True) if fresh)
        return stored

    async def _commit_group(self, group: list[PendingAppend]) -> tuple[list[list[bool]], Committed | None]:
        """One transaction for a group of appends: duplicates dropped per append, derivation run once for each run
        of consecutive appends of one account and deriver (in order: the same marks as one after the other; an
        append with chosen ids starts a run of its own, so that it sees the ids derived before it), every row
        inserted at the end in a few multi-row statements (the statements, not the rows, are what costs: on
        SQLite each gives the GIL away and waits to take it back from the event loop). Also the rows it added
        with their positions, where the engine can tell them (for the append listeners)."""

        def work(conn: Connection) -> tuple[list[list[bool]], Committed | None]:
            results = []
            head: int | None = None  # the log's head before the rows, when the engine can tell
            with self.dialect.transaction(conn) as cur:
                self.dialect.lock_log(cur)
                state = _TxState(self, cur)
                rows: list[NewEvent] = []
                taken: dict[int, set[str]] = {}  # chosen and derived ids of the group's rows, by account
                run: list[NewEvent] = []
                for i, p in enumerate(group):
                    ids = taken.setdefault(p.account_id, set())
                    fresh, flags = self._without_duplicates(cur, p.account_id, p.events, p.chosen_ids, ids)
                    results.append(flags)
                    run.extend(fresh)
                    after = group[i + 1] if i + 1 < len(group) else None
                    if (
                        after is not None
                        and after.account_id == p.account_id
                        and after.derive is p.derive
                        and not after.chosen_ids  # (a chosen id may be one the run derives: seen first then)
                    ):
                        continue
                    if run and p.derive is not None:
                        run = self._with_derived(cur, p.account_id, run, p.derive, state, ids)
                    rows.extend(run)
                    run = []
                if rows:
                    head = self.dialect.insert_events(cur, rows)
            return results, (Committed(head, rows) if head is not None else None)

        return await self._runtime.write(work)

    def _without_duplicates(
        self,
        cur: Cursor,
        account_id: int,
        events: Sequence[NewEvent],
        chosen_ids: Collection[str],
        taken: set[str],
    ) -> tuple[Sequence[NewEvent], list[bool]]:
        """Drop events whose producer-chosen id is already in the log, in ``taken`` (the ids of the transaction's
        rows not yet inserted; the kept chosen ids are added to it) or earlier in the same request; the kept ones'
        ids are claimed (where the engine keeps them apart from the log)."""
        chosen = list(chosen_ids)
        if not chosen:
            return events, [True] * len(events)
        known = self._known_ids(cur, account_id, chosen)
        fresh: list[NewEvent] = []
        flags: list[bool] = []
        for e in events:
            if e.id in chosen_ids:
                if e.id in known or e.id in taken:
                    flags.append(False)
                    continue
                taken.add(e.id)
            fresh.append(e)
            flags.append(True)
        self.dialect.claim_ids(cur, account_id, [e.id for e in fresh if e.id in chosen_ids])
        return fresh, flags

    def _known_ids(self, cur: Cursor, account_id: int, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` the account's log holds."""
        known: set[str] = set()
        for start in range(0, len(ids), _IDS_PER_QUERY):
            one_of, values = self.dialect.one_of("id", ids[start : start + _IDS_PER_QUERY])
            cur.execute(
                f"SELECT id FROM {self.dialect.id_table} WHERE account_id = {self._p} AND {one_of}",
                (account_id, *values),
            )
            known.update(row[0] for row in cur.fetchall())
        return known

    def _with_derived(
        self,
        cur: Cursor,
        account_id: int,
        fresh: Sequence[NewEvent],
        derive: Deriver,
        state: _TxState,
        taken: set[str],
    ) -> list[NewEvent]:
        """``fresh`` with what ``derive`` adds, less the derived events whose id the log, ``taken`` or ``fresh``
        already holds (a source re-posted under a new id cannot derive twice either: the marks say so)."""
        out, added = derive(account_id, fresh, state)
        if not added:
            return out
        known = self._known_ids(cur, account_id, [e.id for e in added])
        dropped: set[int] = set()  # by identity: only derived events are dropped, never a source
        claimed: list[str] = []
        for e in added:
            if e.id in known or e.id in taken:  # (taken holds the chosen ids of ``fresh`` too)
                dropped.add(id(e))
            else:
                taken.add(e.id)
                claimed.append(e.id)
        self.dialect.claim_ids(cur, account_id, claimed)
        return [e for e in out if id(e) not in dropped] if dropped else out

    async def head(self) -> int:
        rows = await self._fetchall(LOG_HEAD)
        return int(rows[0][0])

    async def count_events(self, account_id: int | None = None) -> int:
        if account_id is None:
            rows = await self._fetchall("SELECT COUNT(*) FROM events")
        else:
            rows = await self._fetchall(self._sql.count_account, (account_id,))
        return int(rows[0][0])

    async def read_events(
        self,
        account_id: int,
        event_types: Sequence[str],
        list_id: int | None,
        after: int,
        limit: int,
        window: int = 50_000,
    ) -> Page:
        types = tuple(event_types)
        return await self._runtime.read(
            lambda conn: self._read_events(conn, account_id, types, list_id, after, limit, window)
        )

    def _read_events(
        self,
        conn: Connection,
        account_id: int,
        types: tuple[str, ...],
        list_id: int | None,
        after: int,
        limit: int,
        window: int,
    ) -> Page:
        cur = self.dialect.rows_cursor(conn)
        cur.execute(LOG_HEAD)
        head = int(_one(cur)[0])
        upper = min(head, after + window)
        if upper <= after:
            return Page([], after, True)
        p = self._p
        where = f"account_id = {p} AND seq > {p} AND seq <= {p} AND event_type IN ({marks(p, len(types))})"
        params: list[Param] = [account_id, after, upper, *types]
        if list_id is not None:
            where += f" AND list_id = {p}"
            params.append(list_id)
        params.append(limit)
        # A short span is walked in log order, stopping after `limit` matches (bounded by the span however few
        # events match); over a long one the (account, type) index finds the matches without the walk. One type's
        # matches come from the index in seq order (the read stops at `limit`); several types' need sorting, so
        # the page's positions are found and sorted first and only their rows fetched — not every match of the
        # span fetched whole to keep `limit` of them (the dialect's choice: ``seqs_first``).
        hint = self.dialect.walk_hint if upper - after <= self.dialect.walk_span else ""
        if hint or len(types) == 1 or not self.dialect.seqs_first:
            sql = f"SELECT {_EVENT_COLUMNS} FROM events{hint} WHERE {where} ORDER BY seq LIMIT {p}"
        else:
            sql = (
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq IN"
                f" (SELECT seq FROM events WHERE {where} ORDER BY seq LIMIT {p}) ORDER BY seq"
            )
        cur.execute(sql, params)
        events = [LoggedEvent(*r) for r in cur.fetchall()]
        scanned_to = events[-1].seq if len(events) >= limit else upper
        return Page(events, scanned_to, scanned_to >= head)

    async def read_log(self, after: int, limit: int) -> LogPage:
        """The log after ``after``, at most ``limit`` events, read over at most ``limit`` positions: a range up to
        the head planned by PostgreSQL before its first ``ANALYZE`` of fresh rows (~5 000 rows guessed) as a bitmap
        scan of all of it sorted on disk — 165 000 rows and 340 ms for each 5 000-event page of a hook catching up
        after a burst. A range with nothing in it (a pruned stretch, positions of rolled-back appends) is skipped
        to the next event there is."""

        def work(conn: Connection) -> LogPage:
            cur = self.dialect.rows_cursor(conn)
            cur.execute(LOG_HEAD)
            head = int(_one(cur)[0])
            if head <= after:
                return LogPage([], [], after, True)

            def read_from(start: int) -> tuple[int, list[Row]]:
                upper = min(head, start + limit)
                cur.execute(self._sql.read_log, (start, upper, limit))
                return upper, cur.fetchall()

            upper, rows = read_from(after)
            if not rows and upper < head:
                cur.execute(self._sql.next_seq, (upper,))
                upper, rows = read_from(int(_one(cur)[0]) - 1)
            accounts = [r[0] for r in rows]
            events = [LoggedEvent(*r[1:]) for r in rows]
            scanned_to = events[-1].seq if len(events) >= limit else upper
            return LogPage(accounts, events, scanned_to, scanned_to >= head)

        return await self._runtime.read(work)

    # --- hooks --------------------------------------------------------------------------------------------
    async def create_hook(self, account_id: int, settings: bytes, active: bool) -> StoredHook:
        def work(conn: Connection) -> Row:
            now = time.time()
            with self.dialect.transaction(conn) as cur:
                cur.execute(self._sql.hook_insert, (account_id, settings, active, now, now))
                return _one(cur)

        return _hook(await self._runtime.write(work))

    async def get_hook(self, account_id: int, hook_id: int) -> StoredHook | None:
        rows = await self._fetchall(self._sql.hook_of_account, (hook_id, account_id))
        return _hook(rows[0]) if rows else None

    async def list_hooks(self, account_id: int) -> list[StoredHook]:
        return [_hook(r) for r in await self._fetchall(self._sql.hooks_of_account, (account_id,))]

    async def active_generations(self) -> dict[int, int]:
        rows = await self._fetchall(self._sql.active_generations, (True,))
        return {int(r[0]): int(r[1]) for r in rows}

    async def load_hook(self, hook_id: int) -> StoredHook | None:
        rows = await self._fetchall(self._sql.hook, (hook_id,))
        return _hook(rows[0]) if rows else None

    async def update_hook(
        self, account_id: int, hook_id: int, settings: bytes, active: bool, *, keep_cursor: bool = False
    ) -> StoredHook | None:
        def work(conn: Connection) -> Row | None:
            with self.dialect.transaction(conn) as cur:
                cur.execute(self._sql.hook_active, (hook_id, account_id))
                found = cur.fetchone()
                if found is None:
                    return None
                resume = active and not bool(found[0]) and not keep_cursor
                sql = (
                    self._sql.hook_update_resume
                    if resume
                    else self._sql.hook_update_active
                    if active
                    else self._sql.hook_update
                )
                cur.execute(sql, (settings, active, time.time(), hook_id, account_id))
                return _one(cur)

        row = await self._runtime.write(work)
        return _hook(row) if row else None

    async def disable_hook(
        self, hook_id: int, generation: int, settings: bytes, reason: str, at: float
    ) -> StoredHook | None:
        def work(conn: Connection) -> Row | None:
            with self.dialect.transaction(conn) as cur:
                cur.execute(
                    self._sql.hook_disable, (settings, False, at, reason, at, hook_id, generation, True)
                )
                row: Row | None = cur.fetchone()  # None: edited or stopped meanwhile
                return row

        row = await self._runtime.write(work)
        return _hook(row) if row else None

    async def failing_hooks(self) -> list[FailingHook]:
        rows = await self._fetchall(self._sql.failing_hooks, (True,))
        return [
            FailingHook(int(r[0]), int(r[1]), None if r[2] is None else float(r[2]), float(r[3]))
            for r in rows
        ]

    async def failure_streak(self, hook_id: int, since: float, *, count: bool = True) -> FailureStreak:
        def work(conn: Connection) -> FailureStreak:
            cur = conn.cursor()
            firsts = []
            for outcome in ("retry", "failed"):
                cur.execute(self._sql.streak_first, (hook_id, outcome, hook_id, since))
                row = cur.fetchone()
                if row is not None:
                    firsts.append(float(row[0]))
            attempts = 0
            if count and firsts:
                cur.execute(self._sql.streak_count, (hook_id, hook_id, since))
                found = cur.fetchone()
                attempts = int(found[0]) if found else 0
            return FailureStreak(min(firsts) if firsts else None, attempts)

        return await self._runtime.read(work)

    async def delete_hook(self, account_id: int, hook_id: int) -> bool:
        def work(conn: Connection) -> bool:
            with self.dialect.transaction(conn) as cur:
                cur.execute(self._sql.hook_delete, (hook_id, account_id))
                if cur.rowcount == 0:
                    return False
                cur.execute(self._sql.attempts_delete, (hook_id,))
                cur.execute(self._sql.dead_letters_delete, (hook_id,))
                cur.execute(self._sql.delivery_counts_delete, (hook_id,))
                cur.execute(self._sql.side_deliveries_delete, (hook_id,))
                return True

        return await self._runtime.write(work)

    # --- delivery state -----------------------------------------------------------------------------------
    async def save_cursor(self, hook_id: int, generation: int, cursor: int) -> bool:
        def work(conn: Connection) -> bool:
            with self.dialect.transaction(conn) as cur:
                cur.execute(self._sql.cursor_save, (cursor, hook_id, generation, cursor))
                return bool(cur.rowcount)

        return await self._runtime.write(work)

    async def finish_batch(
        self,
        attempt: Attempt,
        generation: int,
        cursor: int | None,
        dead_letters: Sequence[DeadLetter] = (),
        last_error: str | None = None,
    ) -> bool:
        write = StateWrite(attempt.hook_id, generation, cursor, attempt, dead_letters, last_error)
        return (await self.write_states([write]))[0]

    async def write_states(self, writes: Sequence[StateWrite]) -> list[bool]:
        if not writes:
            return []

        def work(conn: Connection) -> list[bool]:
            with self.dialect.transaction(conn) as cur:
                return self._write_states(cur, writes)

        done = await self._runtime.write(work)
        metrics.attempts_recorded(
            (w.attempt, len(w.dead_letters))
            for w, recorded in zip(writes, done, strict=True)
            if recorded and w.attempt is not None
        )
        return done

    def _write_states(self, cur: Cursor, writes: Sequence[StateWrite]) -> list[bool]:
        """Each write's outcome, as if written one after another: hook by hook, each hook's in order; a hook's
        run of delivered batches (one-event batches come in dozens per commit) is written as one — an update of
        the hook, the attempts in one statement, their counts added once."""
        by_hook: dict[int, list[int]] = {}
        for n, write in enumerate(writes):
            by_hook.setdefault(write.hook_id, []).append(n)
        done = [False] * len(writes)
        for positions in by_hook.values():
            start = 0
            while start < len(positions):
                end = start + 1
                while end < len(positions) and _continues(writes[positions[end - 1]], writes[positions[end]]):
                    end += 1
                run = [writes[n] for n in positions[start:end]]
                answers = self._write_run(cur, run) if len(run) > 1 else [self._write_state(cur, run[0])]
                for n, ok in zip(positions[start:end], answers, strict=True):
                    done[n] = ok
                start = end
        return done

    def _write_run(self, cur: Cursor, run: Sequence[StateWrite]) -> list[bool]:
        """Delivered batches of one hook and generation, cursors in order: the first one's guard decides for all
        (each cursor is past the one before). When it fails they are written one by one: the same answers."""
        first, last = run[0], run[-1]
        assert first.attempt is not None and last.attempt is not None
        cur.execute(
            self._sql.delivered_run,
            (last.cursor, last.attempt.at, first.hook_id, first.generation, first.cursor),
        )
        if cur.rowcount == 0:
            return [self._write_state(cur, w) for w in run]
        attempts = [w.attempt for w in run if w.attempt is not None]
        cur.executemany(self._sql.attempt_insert, [_attempt_row(a) for a in attempts])
        periods: collections.Counter[float] = collections.Counter()
        for a in attempts:
            periods[_period(a.at)] += a.events
        for period, delivered in periods.items():
            cur.execute(self._sql.count_attempt, (first.hook_id, period, delivered, 0, 0))
        return [True] * len(run)

    def _write_state(self, cur: Cursor, write: StateWrite) -> bool:
        attempt, cursor, last_error = write.attempt, write.cursor, write.last_error
        if attempt is None:
            assert cursor is not None
            cur.execute(self._sql.cursor_note, (cursor, cursor, write.hook_id, write.generation))
            return bool(cur.rowcount)
        p = self._p
        sets: list[str] = []
        params: list[Param] = []
        if cursor is not None:
            sets.append(f"cursor = {p}")
            params.append(cursor)
        if last_error is not None:
            sets += [f"last_error = {p}", f"last_error_at = {p}"]
            params += [last_error, attempt.at]
        elif attempt.outcome == "delivered":  # the hook is healthy again: its old error is cleared
            sets += [f"last_success_at = {p}", "last_error = NULL", "last_error_at = NULL"]
            params.append(attempt.at)
        params += [attempt.hook_id, write.generation]
        guard = ""
        if cursor is not None:
            guard = f" AND cursor <= {p}"
            params.append(cursor)
        update = f"UPDATE hooks SET {', '.join(sets) or 'id = id'} WHERE id = {p} AND generation = {p}{guard}"
        cur.execute(update, params)
        if cur.rowcount == 0:
            return False
        cur.execute(self._sql.attempt_insert, _attempt_row(attempt))
        if write.dead_letters:
            cur.executemany(
                self._sql.dead_letter_insert,
                [
                    (d.hook_id, d.event_seq, d.event_id, d.payload, d.reason, d.attempts, d.failed_at)
                    for d in write.dead_letters
                ],
            )
        self._count_attempt(cur, attempt, len(write.dead_letters))
        return True

    async def list_attempts(self, hook_id: int, limit: int = 100, before: int | None = None) -> list[Attempt]:
        rows = await self._newest("attempts", _ATTEMPT_COLUMNS, hook_id, limit, before)
        return [Attempt(**dict(zip(_ATTEMPT_FIELDS, r, strict=True))) for r in rows]

    async def list_dead_letters(
        self, hook_id: int, limit: int = 100, before: int | None = None
    ) -> list[DeadLetter]:
        rows = await self._newest("dead_letters", _DEAD_COLUMNS, hook_id, limit, before)
        return [
            DeadLetter(**dict(zip(_DEAD_FIELDS, (*r[:4], bytes(r[4]), *r[5:]), strict=True))) for r in rows
        ]

    async def _newest(
        self, table: str, columns: str, hook_id: int, limit: int, before: int | None
    ) -> list[Row]:
        """A hook's rows of ``table``, newest first; ``before`` pages on by id."""
        p = self._p
        sql = f"SELECT id, {columns} FROM {table} WHERE hook_id = {p}"
        params: list[Param] = [hook_id]
        if before is not None:
            sql += f" AND id < {p}"
            params.append(before)
        params.append(limit)
        return await self._fetchall(sql + f" ORDER BY id DESC LIMIT {p}", params)

    # --- retention and stats ------------------------------------------------------------------------------
    def _count_attempt(self, cur: Cursor, attempt: Attempt, dead_lettered: int) -> None:
        """Add the attempt's events to the hook's delivery counts of its 10-second period (same transaction)."""
        delivered = attempt.events if attempt.outcome == "delivered" else 0
        failed = 0 if delivered else attempt.events
        cur.execute(
            self._sql.count_attempt, (attempt.hook_id, _period(attempt.at), delivered, failed, dead_lettered)
        )

    async def take_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        p = self._p

        def work(conn: Connection) -> bool:
            now = time.time()
            with self.dialect.transaction(conn) as cur:
                cur.execute(
                    f"UPDATE leases SET holder = {p}, expires_at = {p}"
                    f" WHERE name = {p} AND (holder = {p} OR expires_at < {p})",
                    (holder, now + ttl_s, name, holder, now),
                )
                if cur.rowcount:
                    return True
                cur.execute(
                    f"INSERT INTO leases (name, holder, expires_at) VALUES ({marks(p, 3)})"
                    " ON CONFLICT (name) DO NOTHING",
                    (name, holder, now + ttl_s),
                )
                return bool(cur.rowcount)

        return await self._runtime.write(work)

    async def release_lease(self, name: str, holder: str) -> None:
        p = self._p

        def work(conn: Connection) -> None:
            with self.dialect.transaction(conn) as cur:
                cur.execute(
                    f"UPDATE leases SET expires_at = 0 WHERE name = {p} AND holder = {p}", (name, holder)
                )

        await self._runtime.write(work)

    async def prune_events(
        self, received_before: float, max_bytes: int | None, hooks: Sequence[HookQuery], chunk: int
    ) -> Pruned:
        p = self._p

        partitions = self.dialect.partitions

        def work(conn: Connection) -> Pruned | _DropDue:
            started = time.perf_counter()
            if partitions is not None:
                whole = self._prune_partition(conn, partitions, received_before, max_bytes, chunk)
                if isinstance(whole, _DropDue):
                    return whole
                if whole is not None:
                    return dataclasses.replace(whole, seconds=time.perf_counter() - started)
            with self.dialect.transaction(conn) as cur:
                cur.execute(f"SELECT seq, received_at FROM events ORDER BY seq LIMIT {p}", (chunk,))
                oldest = cur.fetchall()
                if max_bytes is not None and oldest and self.dialect.used_bytes(cur) > max_bytes:
                    n = len(oldest)
                else:  # log order is (nearly) arrival order: stop at the first event still in the window
                    n = next((i for i, row in enumerate(oldest) if row[1] >= received_before), len(oldest))
                if n == 0:
                    return Pruned(0, False, seconds=time.perf_counter() - started)
                low, high = int(oldest[0][0]), int(oldest[n - 1][0])
                expired = self._count_expired(cur, low, high, hooks)
                self._note_pruned(cur, max(float(row[1]) for row in oldest[:n]))
                removed = self.dialect.delete_events(cur, low, high)
            return Pruned(removed, n == chunk, expired, time.perf_counter() - started)

        done = await self._runtime.write(work)
        if not isinstance(done, _DropDue):
            return done
        assert partitions is not None
        # off the writer: the drop may wait for locks (its partition, the log's readers), and appends go on meanwhile
        started = time.perf_counter()
        try:
            dropped = await self._runtime.read(
                lambda conn: self._drop_partition(conn, partitions, done, hooks)
            )
        except PartitionBusy:
            log.warning(
                "retention: log partition %d.. is held by a reader of the log; trying later", done.low
            )
            return Pruned(0, False, seconds=time.perf_counter() - started)
        return dataclasses.replace(dropped, seconds=time.perf_counter() - started)

    def _prune_partition(
        self,
        conn: Connection,
        partitions: LogPartitions,
        received_before: float,
        max_bytes: int | None,
        chunk: int,
    ) -> Pruned | _DropDue | None:
        """One step of dropping the oldest closed partition when every event in it is due (or the log is over
        ``max_bytes``): its producer ids are deleted ``chunk`` at a time, then it is due for :meth:`_drop_partition`.
        None when no partition but the one being written is left: its due events are deleted in chunks as on
        SQLite."""
        p = self._p
        with self.dialect.transaction(conn) as cur:
            closed = partitions.oldest_closed(cur)
            if closed is None:
                return None
            low, high, keyed = closed
            cur.execute(
                f"SELECT received_at FROM events WHERE seq >= {p} AND seq < {p} ORDER BY seq DESC LIMIT 1",
                (low, high),
            )
            newest = cur.fetchone()
            over = max_bytes is not None and self.dialect.used_bytes(cur) > max_bytes
            if newest is not None and not over and float(newest[0]) >= received_before:
                return Pruned(0, False)  # the partition still holds events in the window: it waits whole
            if not partitions.may_drop():
                return Pruned(0, False)  # a drop gave up lately: the log has a long reader (a dump?)
            start, last = partitions.forgotten(low), newest is None or not keyed
            if not last:  # its producer ids first, a chunk per step
                start, last = partitions.forget_ids(cur, start, high, chunk)
        if not last:
            partitions.note_forgotten(low, start)
            return Pruned(0, True)
        return _DropDue(low, high, start)

    def _drop_partition(
        self, conn: Connection, partitions: LogPartitions, due: _DropDue, hooks: Sequence[HookQuery]
    ) -> Pruned:
        """Drop the partition: its own lock first, then the log lock (appends in flight when it closed have
        committed); the ids of events committed since the last chunk; the events the hooks behind had not handled
        counted; the pruned horizon moved; ``DROP TABLE``. One transaction: a :class:`PartitionBusy` rolls all back."""
        p = self._p
        low, high, start = due
        with self.dialect.transaction(conn) as cur:
            partitions.hold(cur, low)
            self.dialect.lock_log(cur)
            done = not partitions.keyed(cur, low)
            while not done:  # the ids of events committed since the last chunk
                start, done = partitions.forget_ids(cur, start, high, _IDS_PER_DROP)
            cur.execute(
                f"SELECT COUNT(*), MIN(seq), MAX(seq) FROM events WHERE seq >= {p} AND seq < {p}", (low, high)
            )
            count, first_seq, last_seq = _one(cur)
            expired: dict[int, int] = {}
            if count:
                # in parts: a hook with filters reads the payloads of the events it matches
                for part in range(int(first_seq), int(last_seq) + 1, _COUNT_SPAN):
                    some = self._count_expired(cur, part, min(part + _COUNT_SPAN - 1, int(last_seq)), hooks)
                    for hook_id, n in some.items():
                        expired[hook_id] = expired.get(hook_id, 0) + n
                cur.execute(  # the newest acceptance time (log order is arrival order, to within the clocks)
                    f"SELECT MAX(received_at) FROM (SELECT received_at FROM events WHERE seq >= {p} AND seq < {p}"
                    f" ORDER BY seq DESC LIMIT {p}) AS newest",
                    (low, high, _IDS_PER_DROP),
                )
                self._note_pruned(cur, float(_one(cur)[0]))
            partitions.drop(cur, low)
        return Pruned(int(count), True, expired)

    def _count_expired(self, cur: Cursor, low: int, high: int, hooks: Sequence[HookQuery]) -> dict[int, int]:
        """Per active hook behind ``high``: the events in ``[low, high]`` after its cursor that it matches."""
        p = self._p
        cur.execute(f"SELECT id, cursor FROM hooks WHERE active = {p} AND cursor < {p}", (True, high))
        behind = {int(r[0]): int(r[1]) for r in cur.fetchall()}
        expired: dict[int, int] = {}
        for q in hooks:
            if q.hook_id not in behind or not q.event_types:
                continue
            after = max(behind[q.hook_id], low - 1)
            where = (
                f" FROM events WHERE account_id = {p} AND seq > {p} AND seq <= {p}"
                f" AND event_type IN ({marks(p, len(q.event_types))})"
            )
            params: list[Param] = [q.account_id, after, high, *q.event_types]
            if q.list_id is not None:
                where += f" AND list_id = {p}"
                params.append(q.list_id)
            if q.accepts is None:
                cur.execute("SELECT COUNT(*)" + where, params)
                count = int(_one(cur)[0])
            else:
                cur.execute("SELECT payload" + where, params)
                count = sum(1 for row in cur.fetchall() if q.accepts(bytes(row[0])))
            if count:
                expired[q.hook_id] = count
                cur.execute(
                    f"UPDATE hooks SET expired_undelivered = expired_undelivered + {p} WHERE id = {p}",
                    (count, q.hook_id),
                )
        return expired

    async def prune_attempts(self, before: float, keep_delivered: int, chunk: int) -> Pruned:
        p = self._p

        def work(conn: Connection) -> Pruned:
            started = time.perf_counter()
            removed, full = 0, False
            with self.dialect.transaction(conn) as cur:
                removed += self._prune_prefix(cur, "attempts", "at", before, chunk)
                full = removed == chunk
                cur.execute("SELECT id FROM hooks")
                for (hook_id,) in cur.fetchall():
                    cur.execute(
                        f"SELECT id FROM attempts WHERE hook_id = {p} AND outcome = 'delivered'"
                        f" ORDER BY id DESC LIMIT 1 OFFSET {p}",
                        (hook_id, keep_delivered),
                    )
                    found = cur.fetchone()
                    if found is None:
                        continue
                    cur.execute(
                        f"DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE hook_id = {p}"
                        f" AND outcome = 'delivered' AND id <= {p} ORDER BY id LIMIT {p})",
                        (hook_id, found[0], chunk),
                    )
                    removed += cur.rowcount
                    full = full or cur.rowcount == chunk
                cur.execute(f"DELETE FROM delivery_counts WHERE period_start < {p}", (before,))
            return Pruned(removed, full, seconds=time.perf_counter() - started)

        return await self._runtime.write(work)

    async def prune_dead_letters(self, before: float, chunk: int) -> Pruned:
        def work(conn: Connection) -> Pruned:
            started = time.perf_counter()
            with self.dialect.transaction(conn) as cur:
                removed = self._prune_prefix(cur, "dead_letters", "failed_at", before, chunk)
            return Pruned(removed, removed == chunk, seconds=time.perf_counter() - started)

        return await self._runtime.write(work)

    def _prune_prefix(self, cur: Cursor, table: str, column: str, before: float, chunk: int) -> int:
        """Delete the oldest rows of ``table`` (by id: written in time order) whose ``column`` is before ``before``,
        at most ``chunk``."""
        p = self._p
        cur.execute(f"SELECT id, {column} FROM {table} ORDER BY id LIMIT {p}", (chunk,))
        rows = cur.fetchall()
        n = next((i for i, row in enumerate(rows) if row[1] >= before), len(rows))
        if n == 0:
            return 0
        cur.execute(f"DELETE FROM {table} WHERE id <= {p}", (rows[n - 1][0],))
        return cur.rowcount

    async def reclaim_space(self) -> None:
        await self._runtime.write(self.dialect.reclaim)

    async def log_summary(self) -> LogSummary:
        def work(conn: Connection) -> LogSummary:
            cur = conn.cursor()
            cur.execute("SELECT MIN(seq), MAX(seq) FROM events")
            low, high = _one(cur)
            cur.execute("SELECT received_at FROM events ORDER BY seq LIMIT 1")
            first = cur.fetchone()
            used = self.dialect.used_bytes(cur)
            if low is None or first is None:
                return LogSummary(0, None, used)
            return LogSummary(int(high) - int(low) + 1, float(first[0]), used)

        return await self._runtime.read(work)

    async def delivery_counts(self, hook_id: int, since: Sequence[float]) -> list[DeliveryCounts]:
        p = self._p
        if not since:
            return []
        sums = ", ".join(
            f"COALESCE(SUM(CASE WHEN period_start >= {p} THEN {column} END), 0)"
            for _ in since
            for column in ("delivered", "failed", "dead_lettered")
        )
        params: list[Param] = [t for t in since for _ in range(3)]
        params += [hook_id, min(since)]
        rows = await self._fetchall(
            f"SELECT {sums} FROM delivery_counts WHERE hook_id = {p} AND period_start >= {p}", params
        )
        values = [int(v) for v in rows[0]]
        return [DeliveryCounts(*values[i : i + 3]) for i in range(0, len(values), 3)]

    async def hook_activity(self, hook_id: int) -> HookActivity:
        p = self._p

        def work(conn: Connection) -> HookActivity:
            cur = conn.cursor()
            cur.execute(
                f"SELECT at FROM attempts WHERE hook_id = {p} AND outcome = 'delivered' ORDER BY id DESC LIMIT 1",
                (hook_id,),
            )
            success = cur.fetchone()
            cur.execute(
                f"SELECT outcome FROM attempts WHERE hook_id = {p} ORDER BY id DESC LIMIT 1", (hook_id,)
            )
            newest = cur.fetchone()
            cur.execute(f"SELECT expired_undelivered FROM hooks WHERE id = {p}", (hook_id,))
            expired = cur.fetchone()
            return HookActivity(
                float(success[0]) if success else None,
                str(newest[0]) if newest else None,
                int(expired[0]) if expired else 0,
            )

        return await self._runtime.read(work)

    async def hook_lag(self, query: HookQuery, cursor: int) -> HookLag:
        p = self._p
        if not query.event_types:
            return HookLag(0, None)
        where = (
            f" FROM events WHERE account_id = {p} AND seq > {p}"
            f" AND event_type IN ({marks(p, len(query.event_types))})"
        )
        params: list[Param] = [query.account_id, cursor, *query.event_types]
        if query.list_id is not None:
            where += f" AND list_id = {p}"
            params.append(query.list_id)

        def work(conn: Connection) -> HookLag:
            cur = conn.cursor()
            cur.execute(
                f"SELECT COUNT(*) FROM (SELECT 1{where} LIMIT {p}) AS behind", [*params, LAG_COUNT_CAP]
            )
            count = int(_one(cur)[0])
            if not count:
                return HookLag(0, None)
            cur.execute(f"SELECT received_at{where} ORDER BY seq LIMIT 1", params)
            first = cur.fetchone()
            return HookLag(count, float(first[0]) if first else None)

        return await self._runtime.read(work)

    # --- capture: profiles, account settings, tracking keys, derivation marks --------------------------------
    def _profiles(self, cur: Cursor, account_id: int, ids: Collection[str]) -> dict[str, StoredProfile]:
        p = self._p
        wanted = list(ids)
        found: dict[str, StoredProfile] = {}
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            one_of, values = self.dialect.one_of("profile_id", wanted[start : start + _IDS_PER_QUERY])
            cur.execute(
                f"SELECT profile_id, list_id, body, updated_at FROM profiles WHERE account_id = {p} AND {one_of}",
                (account_id, *values),
            )
            for r in cur.fetchall():
                found[r[0]] = StoredProfile(r[0], r[1], None if r[2] is None else bytes(r[2]), float(r[3]))
        return found

    def _put_profiles(self, cur: Cursor, account_id: int, rows: Sequence[ProfileWrite], now: float) -> None:
        p = self._p
        cur.executemany(
            f"INSERT INTO profiles (account_id, profile_id, list_id, body, updated_at) VALUES ({marks(p, 5)})"
            " ON CONFLICT (account_id, profile_id) DO UPDATE SET list_id = excluded.list_id,"
            " body = excluded.body, updated_at = excluded.updated_at",
            [(account_id, w.profile_id, w.list_id, w.body, now) for w in rows],
        )

    async def get_profiles(self, account_id: int, profile_ids: Collection[str]) -> dict[str, StoredProfile]:
        if not profile_ids:
            return {}
        ids = tuple(profile_ids)
        return await self._runtime.read(lambda conn: self._profiles(conn.cursor(), account_id, ids))

    async def put_profiles(self, account_id: int, profiles: Sequence[ProfileWrite]) -> None:
        def work(conn: Connection) -> None:
            with self.dialect.transaction(conn) as cur:
                self._put_profiles(cur, account_id, profiles, time.time())

        if profiles:
            await self._runtime.write(work)

    async def change_profile(
        self,
        account_id: int,
        profile_id: str,
        change: Callable[[StoredProfile | None], ProfileWrite | None],
    ) -> ProfileWrite | None:
        def work(conn: Connection) -> ProfileWrite | None:
            with self.dialect.transaction(conn) as cur:
                current = self._profiles(cur, account_id, [profile_id]).get(profile_id)
                new = change(current)
                if new is not None:
                    self._put_profiles(cur, account_id, [new], time.time())
                return new

        return await self._runtime.write(work)

    async def account_settings(self, account_id: int) -> AccountSettings:
        rows = await self._fetchall(
            f"SELECT derive FROM account_settings WHERE account_id = {self._p}", (account_id,)
        )
        return AccountSettings(derive=bool(rows[0][0])) if rows else AccountSettings()

    async def set_account_settings(self, account_id: int, settings: AccountSettings) -> None:
        p = self._p

        def work(conn: Connection) -> None:
            with self.dialect.transaction(conn) as cur:
                cur.execute(
                    f"INSERT INTO account_settings (account_id, derive) VALUES ({p}, {p})"
                    " ON CONFLICT (account_id) DO UPDATE SET derive = excluded.derive",
                    (account_id, settings.derive),
                )

        await self._runtime.write(work)

    async def tracking_keys(self, account_id: int) -> list[TrackingKey]:
        rows = await self._fetchall(
            "SELECT key_id, sealed, created_at, retired_at FROM tracking_keys"
            f" WHERE account_id = {self._p} ORDER BY created_at DESC, key_id DESC",
            (account_id,),
        )
        return [TrackingKey(r[0], bytes(r[1]), float(r[2]), r[3]) for r in rows]

    async def add_tracking_key(self, account_id: int, key: TrackingKey) -> None:
        p = self._p

        def work(conn: Connection) -> None:
            with self.dialect.transaction(conn) as cur:
                cur.execute(
                    "INSERT INTO tracking_keys (account_id, key_id, sealed, created_at, retired_at)"
                    f" VALUES ({marks(p, 5)})",
                    (account_id, key.key_id, key.sealed, key.created_at, key.retired_at),
                )

        await self._runtime.write(work)

    async def retire_tracking_key(self, account_id: int, key_id: str) -> bool:
        p = self._p

        def work(conn: Connection) -> bool:
            with self.dialect.transaction(conn) as cur:
                cur.execute(
                    f"UPDATE tracking_keys SET retired_at = {p}"
                    f" WHERE account_id = {p} AND key_id = {p} AND retired_at IS NULL",
                    (time.time(), account_id, key_id),
                )
                return bool(cur.rowcount)

        return await self._runtime.write(work)

    async def prune_derive_marks(self, now: float, chunk: int) -> Pruned:
        p = self._p

        def work(conn: Connection) -> Pruned:
            started = time.perf_counter()
            with self.dialect.transaction(conn) as cur:
                cur.execute(
                    f"SELECT account_id, mark FROM derive_marks WHERE expires_at < {p} LIMIT {p}",
                    (now, chunk),
                )
                rows = cur.fetchall()
                cur.executemany(
                    f"DELETE FROM derive_marks WHERE account_id = {p} AND mark = {p} AND expires_at < {p}",
                    [(r[0], r[1], now) for r in rows],
                )
            return Pruned(len(rows), len(rows) == chunk, seconds=time.perf_counter() - started)

        return await self._runtime.write(work)

    # --- the console: many hooks' lag at once, a hook's deliveries per period ----------------------------------
    async def hook_lags(self, hooks: Sequence[tuple[HookQuery, int]], cap: int) -> list[HookLag]:
        def work(conn: Connection) -> list[HookLag]:
            cur = conn.cursor()
            newest = self._newest_per_type(cur, {(q.account_id, t) for q, _ in hooks for t in q.event_types})
            lags = [HookLag(0, None)] * len(hooks)
            behind: dict[int, list[tuple[int, HookQuery, int, list[str]]]] = {}  # account → its hooks behind
            newest_of_account: dict[int, int] = {}
            for (account_id, _), seq in newest.items():
                newest_of_account[account_id] = max(seq, newest_of_account.get(account_id, 0))
            for index, (q, cursor) in enumerate(hooks):
                if cursor >= newest_of_account.get(q.account_id, 0):
                    continue  # caught up (most hooks, most of the time)
                types = [t for t in q.event_types if newest.get((q.account_id, t), 0) > cursor]
                if types:
                    behind.setdefault(q.account_id, []).append((index, q, cursor, types))
            far: list[tuple[int, HookQuery, int, list[str]]] = []
            for account_id, waiting in behind.items():
                head = max(newest[(account_id, t)] for _, _, _, types in waiting for t in types)
                low = max(min(cursor for _, _, cursor, _ in waiting), head - _LAG_TAIL)
                tail = _Tail(self._account_tail(cur, account_id, low, head))
                for index, q, cursor, types in waiting:
                    if cursor >= low:
                        lags[index] = tail.lag(types, q.list_id, cursor, cap)
                    else:
                        far.append((index, q, cursor, types))
            for index, lag in self._capped_lags(cur, far, cap).items():
                lags[index] = lag
            return lags

        if not hooks:
            return []
        return await self._runtime.read(work)

    def _newest_per_type(self, cur: Cursor, pairs: Collection[tuple[int, str]]) -> dict[tuple[int, str], int]:
        """The newest ``seq`` of each (account, event type) that has events (one index seek each)."""
        p = self._p
        newest_sql = f"(SELECT MAX(seq) FROM events WHERE account_id = {p} AND event_type = {p})"
        ordered = sorted(pairs)
        newest: dict[tuple[int, str], int] = {}
        for start in range(0, len(ordered), _ARMS_PER_QUERY):
            some = ordered[start : start + _ARMS_PER_QUERY]
            cur.execute(
                " UNION ALL ".join(f"SELECT {i}, {newest_sql}" for i in range(len(some))),
                [v for pair in some for v in pair],
            )
            for i, seq in cur.fetchall():
                if seq is not None:
                    newest[some[int(i)]] = int(seq)
        return newest

    def _account_tail(self, cur: Cursor, account_id: int, low: int, high: int) -> list[Row]:
        """The account's events in ``(low, high]``: ``(seq, event_type, list_id, received_at)`` in order. The log
        positions are read in order and the account's kept here: a condition on ``account_id`` would let the
        engine walk the account's index, all of its events, instead."""
        p = self._p
        cur.execute(
            "SELECT seq, event_type, list_id, received_at, account_id FROM events"
            f" WHERE seq > {p} AND seq <= {p} ORDER BY seq",
            (low, high),
        )
        return [row[:4] for row in cur.fetchall() if row[4] == account_id]

    def _capped_lags(
        self, cur: Cursor, hooks: Sequence[tuple[int, HookQuery, int, list[str]]], cap: int
    ) -> dict[int, HookLag]:
        """Lags counted in SQL up to ``cap`` (hooks further behind than the tail read): one arm per hook."""
        p = self._p
        arms: list[tuple[str, list[Param]]] = []
        for index, q, cursor, types in hooks:
            where = f"account_id = {p} AND event_type IN ({marks(p, len(types))}) AND seq > {p}"
            params: list[Param] = [q.account_id, *types, cursor]
            if q.list_id is not None:
                where += f" AND list_id = {p}"
                params.append(q.list_id)
            params.append(cap)
            sub = f"SELECT seq FROM events WHERE {where} LIMIT {p}"
            arms.append((f"SELECT {index}, COUNT(*), MIN(seq) FROM ({sub}) AS behind", params))
        found: dict[int, tuple[int, int]] = {}  # hook's index → (events, the first one's seq)
        start = 0
        while start < len(arms):
            part: list[tuple[str, list[Param]]] = []
            size = 0
            while start < len(arms) and len(part) < _ARMS_PER_QUERY and size < _PARAMS_PER_QUERY:
                part.append(arms[start])
                size += len(arms[start][1])
                start += 1
            cur.execute(" UNION ALL ".join(arm for arm, _ in part), [v for _, ps in part for v in ps])
            found.update((int(i), (int(count), int(first))) for i, count, first in cur.fetchall() if count)
        firsts = sorted({first for _, first in found.values()})
        received: dict[int, float] = {}
        for start in range(0, len(firsts), _IDS_PER_QUERY):
            seqs = firsts[start : start + _IDS_PER_QUERY]
            cur.execute(f"SELECT seq, received_at FROM events WHERE seq IN ({marks(p, len(seqs))})", seqs)
            received.update((int(seq), float(at)) for seq, at in cur.fetchall())
        return {index: HookLag(count, received.get(first)) for index, (count, first) in found.items()}

    async def delivery_periods(self, hook_id: int, since: float) -> list[DeliveryPeriod]:
        p = self._p
        rows = await self._fetchall(
            "SELECT period_start, delivered, failed, dead_lettered FROM delivery_counts"
            f" WHERE hook_id = {p} AND period_start >= {p} ORDER BY period_start",
            (hook_id, _period(since)),
        )
        return [DeliveryPeriod(float(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]


class _DropDue(NamedTuple):
    """A closed partition whose ids are deleted, due to be dropped: ``[low, high)``, ids deleted up to ``start``."""

    low: int
    high: int
    start: int


class _Tail:
    """An account's newest events, indexed to count each hook's lag without another query: per event type, and
    per event type and ``list_id``, the ``seq`` in order."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.by_type: dict[str, list[int]] = {}
        self.by_list: dict[tuple[str, int | None], list[int]] = {}
        self.received: dict[int, float] = {}
        for seq, event_type, list_id, at in rows:
            self.by_type.setdefault(event_type, []).append(int(seq))
            self.by_list.setdefault((event_type, list_id), []).append(int(seq))
            self.received[int(seq)] = float(at)

    def lag(self, event_types: Sequence[str], list_id: int | None, cursor: int, cap: int) -> HookLag:
        count = 0
        first: int | None = None
        for event_type in event_types:
            seqs = (
                self.by_type.get(event_type, [])
                if list_id is None
                else self.by_list.get((event_type, list_id), [])
            )
            at = bisect.bisect_right(seqs, cursor)
            if at < len(seqs):
                count += len(seqs) - at
                first = seqs[at] if first is None else min(first, seqs[at])
        if first is None:
            return HookLag(0, None)
        return HookLag(min(count, cap), self.received[first])


class _TxState:
    """:class:`~.base.DeriveState` over the append transaction's cursor."""

    def __init__(self, store: SqlStore, cur: Cursor) -> None:
        self._store = store
        self._cur = cur
        self._derives: dict[int, bool] = {}

    def derives(self, account_id: int) -> bool:
        if account_id not in self._derives:
            self._cur.execute(
                f"SELECT derive FROM account_settings WHERE account_id = {self._store._p}", (account_id,)
            )
            row = self._cur.fetchone()
            self._derives[account_id] = True if row is None else bool(row[0])
        return self._derives[account_id]

    def marked(self, account_id: int, wanted: Collection[str], now: float) -> set[str]:
        p = self._store._p
        ids = list(wanted)
        found: set[str] = set()
        for start in range(0, len(ids), _IDS_PER_QUERY):
            one_of, values = self._store.dialect.one_of("mark", ids[start : start + _IDS_PER_QUERY])
            self._cur.execute(
                f"SELECT mark FROM derive_marks WHERE account_id = {p} AND expires_at >= {p} AND {one_of}",
                (account_id, now, *values),
            )
            found.update(r[0] for r in self._cur.fetchall())
        return found

    def mark(self, account_id: int, new: Collection[str], expires_at: float) -> None:
        # multi-row statements, not executemany: on SQLite each row of an executemany gives the GIL away and waits
        # to take it back from the event loop (a switch interval, 5 ms, while the loop validates a request)
        ids = list(new)
        for start in range(0, len(ids), _MARKS_PER_STATEMENT):
            rows = [(account_id, m, expires_at) for m in ids[start : start + _MARKS_PER_STATEMENT]]
            source, values = self._store.dialect.values(("int8", "text", "float8"), rows)
            self._cur.execute(
                f"INSERT INTO derive_marks (account_id, mark, expires_at) {source}"
                " ON CONFLICT (account_id, mark) DO UPDATE SET expires_at = excluded.expires_at",
                values,
            )

    def profiles(self, account_id: int, profile_ids: Collection[str]) -> dict[str, StoredProfile]:
        return self._store._profiles(self._cur, account_id, profile_ids)

    def put_profiles(self, account_id: int, profiles: Sequence[ProfileWrite], now: float) -> None:
        self._store._put_profiles(self._cur, account_id, profiles, now)


def _one(cur: Cursor) -> Row:
    row = cur.fetchone()
    assert row is not None, "the statement returns a row"
    return row


def _hook(row: Row) -> StoredHook:
    return StoredHook(
        id=int(row[0]),
        account_id=int(row[1]),
        settings=bytes(row[2]),
        active=bool(row[3]),
        cursor=int(row[4]),
        generation=int(row[5]),
        created_at=row[6],
        updated_at=row[7],
        last_error=row[8],
        last_error_at=row[9],
        last_success_at=row[10],
        disabled_reason=row[11],
        disabled_at=row[12],
    )


def _key(row: Row) -> StoredKey:
    return StoredKey(
        id=int(row[0]),
        account_id=int(row[1]),
        name=str(row[2]),
        scope=cast(Scope, row[3]),
        created_at=float(row[4]),
        revoked_at=None if row[5] is None else float(row[5]),
        last_used_at=None if row[6] is None else float(row[6]),
    )
