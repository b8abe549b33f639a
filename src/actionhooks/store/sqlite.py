"""SQLite engine: one file, WAL, one writer thread, group commit, ``synchronous=FULL`` (a commit is on disk
before ``append`` returns, so a power cut loses nothing acknowledged either)."""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence

from ..errors import NotBegun
from ..events import NewEvent
from .dbapi import Connection, Cursor, Param
from .dialect import marks, migration_scripts
from .partitions import LogPartitions
from .sql import LOG_HEAD, SqlStore

_COLUMNS = (
    "INSERT INTO events (account_id, id, event_type, list_id, profile_id, received_at, payload) VALUES "
)
_ROW = "(?, ?, ?, ?, ?, ?, ?)"
_ROWS_PER_STATEMENT = 250  # 1750 parameters, well under SQLite's 32766


@functools.lru_cache(maxsize=_ROWS_PER_STATEMENT)
def _insert_rows(n: int) -> str:
    return _COLUMNS + ", ".join([_ROW] * n)


_INSERT_MANY = _insert_rows(_ROWS_PER_STATEMENT)
log = logging.getLogger(__name__)
_INCREMENTAL = 2  # PRAGMA auto_vacuum
# errors a retry can cure: busy or locked past busy_timeout, I/O errors, a full disk, a file that cannot be opened
_TRANSIENT = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_PROTOCOL",
)
# Each connection's page cache, in KiB (8 MiB). 64 MiB each, the first choice, was never measured: the writer's
# cache alone made 60 MB of the process's memory, and ingest ran no faster for it (1 000 000 events, BENCHMARKS.md).
# The writer's hot pages are the indexes' newest; SQLite empties a reader's cache when the WAL changed since its
# last read, so under ingest a reader's holds one read's pages.
CACHE_KIB = 8 * 1024


class SqliteDialect:
    engine = "sqlite"
    marker = "?"
    # rowid (= seq) order: stops after `limit` rows instead of collecting and sorting the span's matches; measured
    # a clear win for dense hooks (ARCHITECTURE.md), and a span this short is cheap to walk for sparse ones too
    walk_hint = " NOT INDEXED"
    walk_span = 4_000
    # several types over a longer span: their matches come from as many index ranges and must be sorted; sorting
    # just the positions (the covering index) and fetching `limit` rows measured 3.3-4.5 µs an event against
    # 4.5-16 µs for sorting whole rows, at 3-100 % of the log (bench/reads.py, BENCHMARKS.md)
    seqs_first = True
    id_table = "events"  # the log's unique (account_id, id) index
    partitions: LogPartitions | None = None  # one table; retention deletes in chunks

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous

    def connect(self, *, writer: bool) -> Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        if not writer:
            conn.execute("PRAGMA query_only=ON")
        return conn

    def rows_cursor(self, conn: Connection) -> Cursor:
        return conn.cursor()

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, list[Param]]:
        return f"{column} IN ({marks('?', len(values))})", list(values)

    def values(self, types: Sequence[str], rows: Sequence[Sequence[Param]]) -> tuple[str, list[Param]]:
        row = f"({marks('?', len(types))})"
        return f"VALUES {', '.join([row] * len(rows))}", [value for r in rows for value in r]

    @contextlib.contextmanager
    def transaction(self, conn: Connection) -> Iterator[Cursor]:
        cur = conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise NotBegun from exc
        try:
            yield cur
        except BaseException:
            # SQLite may have rolled the transaction back itself (a statement failing with SQLITE_FULL does): then
            # ROLLBACK fails, and its error must not hide the one that matters (a full disk is worth a retry)
            with contextlib.suppress(sqlite3.Error):
                cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def lock_log(self, cur: Cursor) -> None:
        """Nothing to do: SQLite has one writer."""

    def insert_events(self, cur: Cursor, events: Sequence[NewEvent]) -> int | None:
        # The positions the rows take: one writer holds the database, and a row of an `INTEGER PRIMARY KEY` table
        # gets the largest rowid plus one (SQLite's rowid rule), so they follow the head in order — checked by the
        # last row's (a head past 2^63 - 1 would make SQLite pick at random: then the listeners read them back).
        cur.execute(LOG_HEAD)
        row = cur.fetchone()
        head = int(row[0]) if row else 0
        # Multi-row statements: the rows are bound in one call and inserted in one sqlite3_step, which runs
        # without the GIL — so validation on the event loop overlaps with the B-tree work (executemany takes the
        # GIL back after every row and ends up taking turns with the loop: each take can wait for the loop's
        # switch interval, 5 ms).
        # The remainder (say, the rows derivation added to a 1000-event request) is one statement of its own size.
        whole = len(events) - len(events) % _ROWS_PER_STATEMENT
        for start in range(0, whole, _ROWS_PER_STATEMENT):
            cur.execute(
                _INSERT_MANY, [value for row in events[start : start + _ROWS_PER_STATEMENT] for value in row]
            )
        if whole < len(events):
            cur.execute(_insert_rows(len(events) - whole), [value for row in events[whole:] for value in row])
        assert isinstance(cur, sqlite3.Cursor)
        return head if cur.lastrowid == head + len(events) else None

    def claim_ids(self, cur: Cursor, account_id: int, ids: Sequence[str]) -> None:
        """Nothing: the log's unique index holds every id."""

    def delete_events(self, cur: Cursor, low: int, high: int) -> int:
        cur.execute("DELETE FROM events WHERE seq >= ? AND seq <= ?", (low, high))
        return cur.rowcount

    def migrate(self, conn: Connection) -> None:
        self._incremental_vacuum(conn)
        cur = conn.cursor()
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)"
        )
        cur.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for version, script in migration_scripts(self.engine):
            if version in done:
                continue
            assert isinstance(conn, sqlite3.Connection)
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n"
                f"INSERT INTO schema_migrations VALUES ({version}, unixepoch('subsec'));\nCOMMIT;"
            )

    def connection_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc)

    def retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorname", "").startswith(_TRANSIENT)

    # --- retention --------------------------------------------------------------------------------------------
    def _incremental_vacuum(self, conn: Connection) -> None:
        """Turn on ``auto_vacuum=INCREMENTAL`` (so :meth:`reclaim` can give pages back). It takes a ``VACUUM``:
        instant on a new file; a database made before this version is rewritten once (docs/operations.md)."""
        cur = conn.cursor()
        cur.execute("PRAGMA auto_vacuum")
        row = cur.fetchone()
        if row is not None and row[0] == _INCREMENTAL:
            return
        cur.execute("SELECT COUNT(*) FROM sqlite_master")
        existing = (cur.fetchone() or (0,))[0]
        started = time.monotonic()
        cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cur.execute("VACUUM")
        if existing:
            log.warning(
                "%s rewritten once for incremental vacuum in %.1f s", self.path, time.monotonic() - started
            )

    def used_bytes(self, cur: Cursor) -> int:
        """The database's pages in use (the log is nearly all of it)."""
        cur.execute(
            "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count,"
            " pragma_freelist_count, pragma_page_size"
        )
        row = cur.fetchone()
        return int(row[0]) if row else 0

    def reclaim(self, conn: Connection) -> None:
        """Free pages are reused by later appends, so a full window keeps the file's size; only when more than a
        quarter of the file is free (the window shrank, a backlog was pruned) are pages given back, down to an
        eighth free."""
        cur = conn.cursor()
        cur.execute("SELECT page_count, freelist_count FROM pragma_page_count, pragma_freelist_count")
        row = cur.fetchone()
        if row is None:
            return
        pages, free = int(row[0]), int(row[1])
        if free * 4 > pages:
            cur.execute(f"PRAGMA incremental_vacuum({free - pages // 8})")
            cur.fetchall()


class SqliteStore(SqlStore):
    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        super().__init__(SqliteDialect(path, synchronous))
