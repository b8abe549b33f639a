"""The store's logic in SQL shared by both engines; each engine supplies connections, transactions and bulk insert.

Threads: one writer thread owns the only writing connection (appends, hooks, delivery state); a few reader threads
own read-only work. Async callers hop to them with ``run_in_executor``. Appends are group-committed: while one
transaction runs, newer appends queue up and the next transaction takes them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any, TypeVar

import msgspec

from ..crypto import SettingsCipher
from ..events import LoggedEvent, NewEvent
from ..hooks import HookSpec, parse_hook
from .base import AppendListener, Attempt, DeadLetter, Hook, Page

T = TypeVar("T")
Conn = Any  # a DB-API connection of the engine
Row = tuple[Any, ...]

_EVENT_COLUMNS = "seq, id, event_type, list_id, profile_id, payload, received_at"  # LoggedEvent's order
_HOOK_COLUMNS = (
    "id, account_id, settings, cursor, generation, created_at, updated_at, last_error, last_error_at"
)
_ATTEMPT_COLUMNS = (
    "hook_id, at, batch_id, events, first_seq, last_seq, outcome, status, latency_ms, response_excerpt, error"
)
_DEAD_COLUMNS = "hook_id, event_seq, event_id, payload, reason, attempts, failed_at"
_ATTEMPT_FIELDS = ("id", *_ATTEMPT_COLUMNS.split(", "))
_DEAD_FIELDS = ("id", *_DEAD_COLUMNS.split(", "))


class _Pending:
    __slots__ = ("account_id", "chosen_ids", "events", "future")

    def __init__(
        self,
        account_id: int,
        events: Sequence[NewEvent],
        chosen_ids: Collection[str],
        future: asyncio.Future[list[bool]],
    ) -> None:
        self.account_id = account_id
        self.events = events
        self.chosen_ids = chosen_ids
        self.future = future


class SqlStore:
    engine = "sql"
    placeholder = "?"
    readers = 3
    dense_hint = ""  # table hint that makes a read walk the log in seq order

    def __init__(self, secret_key: str | None = None) -> None:
        self._secret_key = secret_key
        self._cipher: SettingsCipher | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(self.readers, thread_name_prefix="store-reader")
        self._local = threading.local()
        self._connections: list[Conn] = []
        self._connections_lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._queued_events = 0
        self._committer: asyncio.Task[None] | None = None
        self._listeners: list[AppendListener] = []

    # --- engine hooks -------------------------------------------------------------------------------------
    def _connect(self, *, writer: bool) -> Conn:
        raise NotImplementedError

    @contextlib.contextmanager
    def _transaction(self, conn: Conn) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def _insert_events(self, cur: Any, events: Sequence[NewEvent]) -> None:
        raise NotImplementedError

    def _lock_log(self, cur: Any) -> None:
        """Serialise appends so that seq order is commit order (engines with many writers)."""

    def _migrate(self, conn: Conn) -> None:
        raise NotImplementedError

    # --- plumbing -----------------------------------------------------------------------------------------
    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _conn(self, writer: bool) -> Conn:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(writer=writer)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: fn(self._conn(True), *args))

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, lambda: fn(self._conn(False), *args))

    def _fetchall(self, conn: Conn, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = conn.cursor()
        cur.execute(self._q(sql), params)
        rows: list[Row] = cur.fetchall()
        return rows

    def migration_scripts(self) -> list[tuple[int, str]]:
        folder = resources.files("actionhooks.store").joinpath("migrations", self.engine)
        scripts = []
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".sql"):
                scripts.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
        return scripts

    async def open(self) -> None:
        await self._write(self._migrate)
        key = self._secret_key
        if key is None:
            key = await self._write(self._stored_key)
        self._cipher = SettingsCipher(key)

    def _stored_key(self, conn: Conn) -> str:
        with self._transaction(conn) as cur:
            cur.execute(self._q("SELECT value FROM meta WHERE key = ?"), ("secret_key",))
            row = cur.fetchone()
            if row:
                return str(row[0])
            key = SettingsCipher.new_key()
            cur.execute(self._q("INSERT INTO meta (key, value) VALUES (?, ?)"), ("secret_key", key))
            return key

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer
        for executor in (self._writer, self._reader):
            executor.submit(self._close_local).result()
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        with self._connections_lock:
            for conn in self._connections:
                with contextlib.suppress(Exception):
                    conn.close()
            self._connections.clear()

    def _close_local(self) -> None:
        self._local.conn = None

    # --- accounts -----------------------------------------------------------------------------------------
    async def create_account(self, name: str, key_hash: str) -> int:
        def work(conn: Conn) -> int:
            now = time.time()
            with self._transaction(conn) as cur:
                cur.execute(
                    self._q("INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING id"), (name, now)
                )
                account_id = int(cur.fetchone()[0])
                cur.execute(
                    self._q("INSERT INTO api_keys (key_hash, account_id, created_at) VALUES (?, ?, ?)"),
                    (key_hash, account_id, now),
                )
            return account_id

        return await self._write(work)

    async def account_for_key(self, key_hash: str) -> int | None:
        rows = await self._read(
            self._fetchall, "SELECT account_id FROM api_keys WHERE key_hash = ?", (key_hash,)
        )
        return int(rows[0][0]) if rows else None

    # --- the event log ------------------------------------------------------------------------------------
    def add_append_listener(self, listener: AppendListener) -> None:
        self._listeners.append(listener)

    @property
    def pending_appends(self) -> int:
        return self._queued_events

    async def append(
        self, account_id: int, events: Sequence[NewEvent], chosen_ids: Collection[str] = ()
    ) -> list[bool]:
        if not events:
            return []
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(account_id, events, chosen_ids, future))
        self._queued_events += len(events)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop())
        return await future

    async def _commit_loop(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                await self._commit(group)
            except Exception:
                if len(group) == 1:
                    continue
                # One append's events broke the group's transaction: commit each append on its own, so only
                # that request fails and the others are not held responsible for it.
                for pending in group:
                    with contextlib.suppress(Exception):
                        await self._commit([pending])

    async def _commit(self, group: list[_Pending]) -> None:
        """One transaction for ``group``; every waiter hears the outcome (the exception is re-raised)."""
        size = sum(len(p.events) for p in group)
        try:
            results = await self._write(self._append_group, group)
        except BaseException as exc:
            if len(group) == 1 or not isinstance(exc, Exception):
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(exc)
                self._queued_events -= size
            raise
        self._queued_events -= size
        for p, result in zip(group, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)
        accounts = {p.account_id for p in group}
        for listener in self._listeners:
            listener(accounts)

    def _append_group(self, conn: Conn, group: list[_Pending]) -> list[list[bool]]:
        results = []
        with self._transaction(conn) as cur:
            self._lock_log(cur)
            for p in group:
                fresh, flags = self._without_duplicates(cur, p.account_id, p.events, p.chosen_ids)
                if fresh:
                    self._insert_events(cur, fresh)
                results.append(flags)
        return results

    def _without_duplicates(
        self, cur: Any, account_id: int, events: Sequence[NewEvent], chosen_ids: Collection[str]
    ) -> tuple[Sequence[NewEvent], list[bool]]:
        """Drop events whose producer-chosen id is already in the log or earlier in the same request."""
        chosen = list(chosen_ids)
        if not chosen:
            return events, [True] * len(events)
        known: set[str] = set()
        for start in range(0, len(chosen), 500):
            part = chosen[start : start + 500]
            marks = ", ".join("?" * len(part))
            cur.execute(
                self._q(f"SELECT id FROM events WHERE account_id = ? AND id IN ({marks})"),
                (account_id, *part),
            )
            known.update(row[0] for row in cur.fetchall())
        fresh: list[NewEvent] = []
        flags: list[bool] = []
        for e in events:
            if e.id in chosen_ids:
                if e.id in known:
                    flags.append(False)
                    continue
                known.add(e.id)
            fresh.append(e)
            flags.append(True)
        return fresh, flags

    async def head(self) -> int:
        rows = await self._read(self._fetchall, "SELECT COALESCE(MAX(seq), 0) FROM events")
        return int(rows[0][0])

    async def count_events(self, account_id: int | None = None) -> int:
        if account_id is None:
            rows = await self._read(self._fetchall, "SELECT COUNT(*) FROM events")
        else:
            rows = await self._read(
                self._fetchall, "SELECT COUNT(*) FROM events WHERE account_id = ?", (account_id,)
            )
        return int(rows[0][0])

    async def read_events(
        self,
        account_id: int,
        event_types: Sequence[str],
        list_id: int | None,
        after: int,
        limit: int,
        window: int = 50_000,
        dense: bool = False,
    ) -> Page:
        return await self._read(
            self._read_events, account_id, tuple(event_types), list_id, after, limit, window, dense
        )

    def _read_events(
        self,
        conn: Conn,
        account_id: int,
        types: tuple[str, ...],
        list_id: int | None,
        after: int,
        limit: int,
        window: int,
        dense: bool,
    ) -> Page:
        cur = conn.cursor()
        cur.execute("SELECT COALESCE(MAX(seq), 0) FROM events")
        head = int(cur.fetchone()[0])
        upper = min(head, after + window)
        if upper <= after:
            return Page([], after, True)
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events{self.dense_hint if dense else ''}"
            " WHERE account_id = ? AND seq > ? AND seq <= ?"
            f" AND event_type IN ({', '.join('?' * len(types))})"
        )
        params: list[Any] = [account_id, after, upper, *types]
        if list_id is not None:
            sql += " AND list_id = ?"
            params.append(list_id)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        cur.execute(self._q(sql), params)
        events = [LoggedEvent._make(r) for r in cur.fetchall()]
        scanned_to = events[-1].seq if len(events) >= limit else upper
        return Page(events, scanned_to, scanned_to >= head)

    # --- hooks --------------------------------------------------------------------------------------------
    def _seal(self, spec: HookSpec) -> bytes:
        assert self._cipher is not None, "store is not open"
        return self._cipher.seal(msgspec.json.encode(spec.to_builtins(public=False)))

    def _hook(self, row: Row) -> Hook:
        assert self._cipher is not None, "store is not open"
        spec = parse_hook(msgspec.json.decode(self._cipher.open(bytes(row[2]))))
        return Hook(
            id=int(row[0]),
            account_id=int(row[1]),
            spec=spec,
            cursor=int(row[3]),
            generation=int(row[4]),
            created_at=row[5],
            updated_at=row[6],
            last_error=row[7],
            last_error_at=row[8],
        )

    async def create_hook(self, account_id: int, spec: HookSpec) -> Hook:
        sealed = self._seal(spec)

        def work(conn: Conn) -> Row:
            now = time.time()
            with self._transaction(conn) as cur:
                cur.execute("SELECT COALESCE(MAX(seq), 0) FROM events")
                head = int(cur.fetchone()[0])
                cur.execute(
                    self._q(
                        "INSERT INTO hooks (account_id, settings, active, cursor, generation, created_at, updated_at)"
                        f" VALUES (?, ?, ?, ?, 1, ?, ?) RETURNING {_HOOK_COLUMNS}"
                    ),
                    (account_id, sealed, spec.active, head, now, now),
                )
                row: Row = cur.fetchone()
            return row

        return self._hook(await self._write(work))

    async def get_hook(self, account_id: int, hook_id: int) -> Hook | None:
        rows = await self._read(
            self._fetchall,
            f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE id = ? AND account_id = ?",
            (hook_id, account_id),
        )
        return self._hook(rows[0]) if rows else None

    async def list_hooks(self, account_id: int) -> list[Hook]:
        rows = await self._read(
            self._fetchall,
            f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE account_id = ? ORDER BY id",
            (account_id,),
        )
        return [self._hook(r) for r in rows]

    async def active_generations(self) -> dict[int, int]:
        rows = await self._read(self._fetchall, "SELECT id, generation FROM hooks WHERE active = ?", (True,))
        return {int(r[0]): int(r[1]) for r in rows}

    async def load_hook(self, hook_id: int) -> Hook | None:
        rows = await self._read(self._fetchall, f"SELECT {_HOOK_COLUMNS} FROM hooks WHERE id = ?", (hook_id,))
        return self._hook(rows[0]) if rows else None

    async def update_hook(self, account_id: int, hook_id: int, spec: HookSpec) -> Hook | None:
        sealed = self._seal(spec)

        def work(conn: Conn) -> Row | None:
            with self._transaction(conn) as cur:
                cur.execute(
                    self._q("SELECT active FROM hooks WHERE id = ? AND account_id = ?"), (hook_id, account_id)
                )
                found = cur.fetchone()
                if found is None:
                    return None
                resume = spec.active and not bool(found[0])
                cursor_sql = ", cursor = (SELECT COALESCE(MAX(seq), 0) FROM events)" if resume else ""
                cur.execute(
                    self._q(
                        f"UPDATE hooks SET settings = ?, active = ?, generation = generation + 1,"
                        f" updated_at = ?{cursor_sql} WHERE id = ? AND account_id = ? RETURNING {_HOOK_COLUMNS}"
                    ),
                    (sealed, spec.active, time.time(), hook_id, account_id),
                )
                row: Row = cur.fetchone()
            return row

        row = await self._write(work)
        return self._hook(row) if row else None

    async def delete_hook(self, account_id: int, hook_id: int) -> bool:
        def work(conn: Conn) -> bool:
            with self._transaction(conn) as cur:
                cur.execute(
                    self._q("DELETE FROM hooks WHERE id = ? AND account_id = ?"), (hook_id, account_id)
                )
                if cur.rowcount == 0:
                    return False
                cur.execute(self._q("DELETE FROM attempts WHERE hook_id = ?"), (hook_id,))
                cur.execute(self._q("DELETE FROM dead_letters WHERE hook_id = ?"), (hook_id,))
                return True

        return await self._write(work)

    # --- delivery state -----------------------------------------------------------------------------------
    async def save_cursor(self, hook_id: int, generation: int, cursor: int) -> bool:
        def work(conn: Conn) -> bool:
            with self._transaction(conn) as cur:
                cur.execute(
                    self._q("UPDATE hooks SET cursor = ? WHERE id = ? AND generation = ? AND cursor <= ?"),
                    (cursor, hook_id, generation, cursor),
                )
                return bool(cur.rowcount)

        return await self._write(work)

    async def finish_batch(
        self,
        attempt: Attempt,
        generation: int,
        cursor: int | None,
        dead_letters: Sequence[DeadLetter] = (),
        last_error: str | None = None,
    ) -> bool:
        def work(conn: Conn) -> bool:
            with self._transaction(conn) as cur:
                sets: list[str] = []
                params: list[Any] = []
                if cursor is not None:
                    sets.append("cursor = ?")
                    params.append(cursor)
                if last_error is not None:
                    sets += ["last_error = ?", "last_error_at = ?"]
                    params += [last_error, attempt.at]
                guard = " AND cursor <= ?" if cursor is not None else ""
                cur.execute(
                    self._q(
                        f"UPDATE hooks SET {', '.join(sets) or 'id = id'} WHERE id = ? AND generation = ?{guard}"
                    ),
                    (*params, attempt.hook_id, generation, *([cursor] if cursor is not None else [])),
                )
                if cur.rowcount == 0:
                    return False
                cur.execute(
                    self._q(f"INSERT INTO attempts ({_ATTEMPT_COLUMNS}) VALUES ({', '.join('?' * 11)})"),
                    (
                        attempt.hook_id,
                        attempt.at,
                        attempt.batch_id,
                        attempt.events,
                        attempt.first_seq,
                        attempt.last_seq,
                        attempt.outcome,
                        attempt.status,
                        attempt.latency_ms,
                        attempt.response_excerpt,
                        attempt.error,
                    ),
                )
                if dead_letters:
                    cur.executemany(
                        self._q(f"INSERT INTO dead_letters ({_DEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                        [
                            (d.hook_id, d.event_seq, d.event_id, d.payload, d.reason, d.attempts, d.failed_at)
                            for d in dead_letters
                        ],
                    )
                return True

        return await self._write(work)

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
        sql = f"SELECT id, {columns} FROM {table} WHERE hook_id = ?"
        params: list[Any] = [hook_id]
        if before is not None:
            sql += " AND id < ?"
            params.append(before)
        return await self._read(self._fetchall, sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
