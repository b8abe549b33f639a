"""PostgreSQL engine: psycopg 3, COPY for appends, a transaction-scoped advisory lock that makes seq order equal
commit order (so a reader never skips an event that commits late), migrations under a session advisory lock."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from ..events import NewEvent
from .sql import Conn, SqlStore

_LOG_LOCK = 0x61637468_6F6F6B73 & 0x7FFF_FFFF_FFFF_FFFF  # "acthooks"
_MIGRATION_LOCK = _LOG_LOCK - 1


class PostgresStore(SqlStore):
    engine = "postgres"
    placeholder = "%s"

    def __init__(self, url: str, secret_key: str | None = None) -> None:
        super().__init__(secret_key)
        self.url = url

    def _connect(self, *, writer: bool) -> Conn:
        # no server-side prepared statements: a generic plan made while the log was small (say, a scan for the
        # duplicate-id check) would be kept as it grows
        return psycopg.connect(self.url, autocommit=True, prepare_threshold=None)

    @contextlib.contextmanager
    def _transaction(self, conn: Conn) -> Iterator[Any]:
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    def _lock_log(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOG_LOCK,))

    def _insert_events(self, cur: Any, events: Sequence[NewEvent]) -> None:
        with cur.copy(
            "COPY events (account_id, id, event_type, list_id, profile_id, received_at, payload) FROM STDIN"
        ) as copy:
            for e in events:
                copy.write_row(e)

    def _migrate(self, conn: Conn) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
            try:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                cur.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in cur.fetchall()}
                for version, script in self.migration_scripts():
                    if version in done:
                        continue
                    with conn.transaction():
                        cur.execute(script)
                        cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
