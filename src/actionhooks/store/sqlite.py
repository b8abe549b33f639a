"""SQLite engine: one file, WAL, one writer thread, group commit, ``synchronous=FULL`` (a commit is on disk
before ``append`` returns, so a power cut loses nothing acknowledged either)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from ..events import NewEvent
from .sql import Conn, SqlStore

_COLUMNS = (
    "INSERT INTO events (account_id, id, event_type, list_id, profile_id, received_at, payload) VALUES "
)
_ROW = "(?, ?, ?, ?, ?, ?, ?)"
_INSERT = _COLUMNS + _ROW
_ROWS_PER_STATEMENT = 250  # 1750 parameters, well under SQLite's 32766
_INSERT_MANY = _COLUMNS + ", ".join([_ROW] * _ROWS_PER_STATEMENT)


class SqliteStore(SqlStore):
    engine = "sqlite"
    dense_hint = " NOT INDEXED"  # rowid (= seq) order: stops after `limit` rows instead of sorting the span

    def __init__(self, path: str, secret_key: str | None = None, synchronous: str = "FULL") -> None:
        super().__init__(secret_key)
        self.path = path
        self.synchronous = synchronous

    def _connect(self, *, writer: bool) -> Conn:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")
        if not writer:
            conn.execute("PRAGMA query_only=ON")
        return conn

    @contextlib.contextmanager
    def _transaction(self, conn: Conn) -> Iterator[Any]:
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def _insert_events(self, cur: Any, events: Sequence[NewEvent]) -> None:
        # Multi-row statements: the rows are bound in one call and inserted in one sqlite3_step, which runs
        # without the GIL — so validation on the event loop overlaps with the B-tree work (executemany takes the
        # GIL back after every row and ends up taking turns with the loop). The remainder goes row by row.
        whole = len(events) - len(events) % _ROWS_PER_STATEMENT
        for start in range(0, whole, _ROWS_PER_STATEMENT):
            cur.execute(
                _INSERT_MANY, [value for row in events[start : start + _ROWS_PER_STATEMENT] for value in row]
            )
        if whole < len(events):
            cur.executemany(_INSERT, events[whole:])

    def _migrate(self, conn: Conn) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, script in self.migration_scripts():
            if version in done:
                continue
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\n"
                f"INSERT INTO schema_migrations VALUES ({version}, unixepoch('subsec'));\nCOMMIT;"
            )
