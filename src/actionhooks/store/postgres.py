"""PostgreSQL engine: psycopg 3, binary COPY for appends, a transaction-scoped advisory lock that makes seq order equal
commit order (so a reader never skips an event that commits late), migrations under a session advisory lock. The
log is partitioned by ranges of seq (:mod:`.partitions`); producer ids are kept unique in ``event_ids``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import psycopg

from ..errors import NotBegun
from ..events import NewEvent
from .dbapi import Connection, Cursor, Param
from .dialect import migration_scripts
from .partitions import DEFAULT_PARTITION_EVENTS, LogPartitions
from .sql import LOG_HEAD, SqlStore

_LOG_LOCK = 0x61637468_6F6F6B73 & 0x7FFF_FFFF_FFFF_FFFF  # "acthooks"
_MIGRATION_LOCK = _LOG_LOCK - 1
# appends are binary COPY: a payload goes as its bytes (text COPY sends bytea hex-encoded, twice its size, for the
# server to decode), numbers as their binary form — measured 2x the rows/s at a third of the client's CPU
_EVENT_TYPES = ["int8", "text", "text", "int8", "text", "float8", "bytea"]  # NewEvent's fields, in order
_ID_TYPES = ["int8", "text"]


class PostgresDialect:
    engine = "postgres"
    marker = "%s"
    walk_hint = ""  # the planner picks the index or a seq-ordered scan by itself
    walk_span = 0
    # sorting positions first measured mixed here (bench/reads.py): better over long spans of dense hooks, worse
    # for sparse ones
    seqs_first = False
    id_table = "event_ids"  # producer-chosen and derived ids: unique across the partitioned log

    def __init__(self, url: str, partition_events: int = DEFAULT_PARTITION_EVENTS) -> None:
        self.url = url
        self.partitions: LogPartitions | None = LogPartitions(partition_events)
        # ids claimed since the last insert (the writer's one thread; a rolled-back append leaves it set, which only
        # marks the next insert's partition as having ids: harmless)
        self._claimed = False

    def connect(self, *, writer: bool) -> Connection:
        # no server-side prepared statements: a generic plan made while the log was small (say, a scan for the
        # duplicate-id check) would be kept as it grows
        return psycopg.connect(self.url, autocommit=True, prepare_threshold=None, connect_timeout=5)

    def rows_cursor(self, conn: Connection) -> Cursor:
        # text results send a bytea hex-encoded (twice its size, encoded by the server, decoded here): binary took
        # a 5 000-event read from 32 to 15 ms of client CPU (69 to 45 ms) on this machine
        assert isinstance(conn, psycopg.Connection)
        cur: Cursor = conn.cursor(binary=True)
        return cur

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, list[Param]]:
        # one text[] parameter: a 500-id lookup measured 1.4 → 0.5 ms of client CPU against an IN list of markers
        # (psycopg parses a statement over 4 KiB anew each time); sent in binary (``%b``): psycopg's text dumper
        # quotes each element in Python — a 1 000-id array 2.6 → 0.6 ms a statement, round trip included
        return f"{column} = ANY(%b)", [list(values)]

    def values(self, types: Sequence[str], rows: Sequence[Sequence[Param]]) -> tuple[str, list[Param]]:
        # a 500-row multi-row VALUES was parsed by psycopg on every execution (over 4 KiB: not cached) — a quarter
        # of the append's writer thread on derivation marks
        # (the arrays in binary, as in ``one_of``: three 1 000-element columns 3.8 → 1.6 ms a statement)
        arrays = ", ".join(f"%b::{t}[]" for t in types)
        return f"SELECT * FROM unnest({arrays})", [list(column) for column in zip(*rows, strict=True)]

    @contextlib.contextmanager
    def transaction(self, conn: Connection) -> Iterator[Cursor]:
        cur = conn.cursor()
        try:
            cur.execute("BEGIN")
        except psycopg.Error as exc:
            raise NotBegun from exc
        try:
            yield cur
        except BaseException:
            with contextlib.suppress(psycopg.Error):  # a lost connection has nothing to roll back
                cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def lock_log(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOG_LOCK,))

    def insert_events(self, cur: Cursor, events: Sequence[NewEvent]) -> int | None:
        # The positions the rows take: under the log's lock no other append runs, so the sequence's values this
        # COPY takes are all past the head; when the last is the head plus their number, they are the ones right
        # after it, in order (else — a rolled-back append left a gap — the listeners read them back).
        assert isinstance(cur, psycopg.Cursor) and self.partitions is not None
        self.partitions.make_room(cur, len(events), keyed=self._claimed)
        self._claimed = False
        head = int(cur.execute(LOG_HEAD).fetchone()[0])  # type: ignore[index]
        with cur.copy(
            "COPY events (account_id, id, event_type, list_id, profile_id, received_at, payload)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(_EVENT_TYPES)
            for e in events:
                copy.write_row(e)
        last = int(cur.execute("SELECT currval('log_seq')").fetchone()[0])  # type: ignore[index]
        return head if last == head + len(events) else None

    def claim_ids(self, cur: Cursor, account_id: int, ids: Sequence[str]) -> None:
        assert isinstance(cur, psycopg.Cursor)
        if ids:
            self._claimed = True  # the partitions the next insert fills hold ids to delete before their drop
            with cur.copy("COPY event_ids (account_id, id) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_ID_TYPES)
                for event_id in ids:
                    copy.write_row((account_id, event_id))

    def delete_events(self, cur: Cursor, low: int, high: int) -> int:
        cur.execute(
            "WITH gone AS (DELETE FROM events WHERE seq >= %s AND seq <= %s RETURNING account_id, id),"
            " forgotten AS (DELETE FROM event_ids k USING gone WHERE k.account_id = gone.account_id"
            " AND k.id = gone.id) SELECT COUNT(*) FROM gone",
            (low, high),
        )
        row = cur.fetchone()
        return int(row[0]) if row else 0

    def migrate(self, conn: Connection) -> None:
        assert isinstance(conn, psycopg.Connection)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
            try:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                cur.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in cur.fetchall()}
                for version, script in migration_scripts(self.engine):
                    if version in done:
                        continue
                    with conn.transaction():
                        cur.execute(script)
                        cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))

    def connection_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)

    def retryable(self, exc: BaseException) -> bool:
        # the connection failed or broke; or the server is shutting down, starting up, out of connections
        return isinstance(
            exc,
            psycopg.OperationalError
            | psycopg.InterfaceError
            | psycopg.errors.AdminShutdown
            | psycopg.errors.CannotConnectNow
            | psycopg.errors.TooManyConnections,
        )

    # --- retention --------------------------------------------------------------------------------------------
    def used_bytes(self, cur: Cursor) -> int:
        """The log's partitions and ``event_ids``, with their indexes and TOAST, less the share of dead rows not
        yet vacuumed (the statistics lag by up to a second or so: approximate)."""
        cur.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(relid) * COALESCE(n_live_tup::float8"
            " / NULLIF(n_live_tup + n_dead_tup, 0), 1)), 0) FROM pg_stat_user_tables"
            " WHERE relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'events'::regclass)"
            " OR relid = 'event_ids'::regclass"
        )
        row = cur.fetchone()
        return int(row[0]) if row else 0

    def reclaim(self, conn: Connection) -> None:
        """Nothing: retention drops whole partitions; autovacuum makes the rows freed by chunked deletes (the
        newest partition, ``event_ids``) reusable."""


class PostgresStore(SqlStore):
    def __init__(self, url: str, partition_events: int = DEFAULT_PARTITION_EVENTS) -> None:
        super().__init__(PostgresDialect(url, partition_events))
