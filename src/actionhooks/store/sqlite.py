"""SQLite engine: one file, WAL, one writer thread, group commit, ``synchronous=FULL`` (a commit is on disk
before ``append`` returns, so a power cut loses nothing acknowledged either)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from ..events import NewEvent
from .sql import Conn, SqlStore

_INSERT = (
    "INSERT INTO events (account_id, id, event_type, list_id, profile_id, received_at, payload)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


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
        cur.executemany(_INSERT, events)

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
