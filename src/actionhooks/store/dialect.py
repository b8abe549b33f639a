"""What an engine supplies to the shared SQL: typed DB-API connections, the parameter marker the queries are built
with, transactions, bulk insert, the log lock, the read hint, migrations and which errors mean "connection lost".

The queries in :mod:`.sql` are built once per store with the dialect's ``marker`` (never rewritten as text), so an
engine's own operators (say, PostgreSQL's jsonb ``?``) are never touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Protocol

from ..events import NewEvent
from .dbapi import Connection, Cursor, Param

if TYPE_CHECKING:
    from .partitions import LogPartitions


class Dialect(Protocol):
    engine: str
    marker: str  # the parameter placeholder the engine's driver expects: "?" or "%s"
    walk_hint: str  # appended to ``FROM events`` to walk the log in seq order instead of using an index
    walk_span: int  # reads spanning at most this many log positions walk the log (when ``walk_hint`` is set)
    seqs_first: bool  # a read of several types sorts the matches' positions before it fetches the page's rows
    id_table: str  # the table the duplicate check of producer-chosen ids reads (``account_id``, ``id``)
    partitions: LogPartitions | None  # the log's partitions (PostgreSQL), dropped whole by retention

    def connect(self, *, writer: bool) -> Connection: ...
    def rows_cursor(self, conn: Connection) -> Cursor:
        """A cursor for reading many payloads — the log's, dead letters' (PostgreSQL: results in binary, a payload as
        its bytes)."""
        ...

    def transaction(self, conn: Connection) -> contextlib.AbstractContextManager[Cursor]:
        """A cursor inside a transaction: committed when the block ends, rolled back when it raises; a failure to
        begin is raised as :class:`NotBegun`."""
        ...

    def lock_log(self, cur: Cursor) -> None:
        """Serialise appends so that seq order is commit order (engines with many writers)."""
        ...

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, list[Param]]:
        """A condition that ``column`` is one of ``values`` (strings: ids), and its parameters — a statement whose
        text does not grow with the number of values where the engine can take them as one (PostgreSQL's
        ``= ANY(%s)``: the driver neither parses nor sends a statement of hundreds of markers each time)."""
        ...

    def values(self, types: Sequence[str], rows: Sequence[Sequence[Param]]) -> tuple[str, list[Param]]:
        """A source of ``rows`` for ``INSERT INTO t (…) {source}`` and its parameters; ``types``: the columns'
        PostgreSQL type names (``int8``, ``text``, ``float8``). A multi-row ``VALUES`` where the driver caches a
        statement by its text (SQLite); one array per column where it parses a long statement anew each time
        (PostgreSQL: ``SELECT * FROM unnest(…)``, a statement of fixed text, prepared once)."""
        ...

    def insert_events(self, cur: Cursor, events: Sequence[NewEvent]) -> int | None:
        """Insert ``events`` into the log; the position before the first when they took the positions right after
        it, in order, and nothing else is after it (the append listeners are handed them: ``Committed``) — else
        ``None`` (an engine that cannot tell)."""
        ...

    def claim_ids(self, cur: Cursor, account_id: int, ids: Sequence[str]) -> None:
        """Remember producer-chosen (and derived) ids just found fresh, for the duplicate check of later appends
        (in the append's transaction; where the log itself does not hold them uniquely)."""
        ...

    def delete_events(self, cur: Cursor, low: int, high: int) -> int:
        """Remove the events at ``low..high`` (and their producer ids where kept apart): how many."""
        ...

    def migrate(self, conn: Connection) -> None: ...
    def connection_lost(self, exc: BaseException) -> bool:
        """True when ``exc`` means the connection is no longer usable (drop it, connect afresh)."""
        ...

    def retryable(self, exc: BaseException) -> bool:
        """True when the same work may succeed if tried again on a fresh connection (the database is down or
        busy), as opposed to a refusal of this work (a constraint, a bad value)."""
        ...

    # retention
    def used_bytes(self, cur: Cursor) -> int:
        """About how many bytes the log takes (what ``ACTIONHOOKS_RETENTION_MAX_BYTES`` caps)."""
        ...

    def reclaim(self, conn: Connection) -> None:
        """Give space freed by pruning back to the file system when much of it is free (writer connection)."""
        ...


def migration_scripts(engine: str) -> list[tuple[int, str]]:
    """``store/migrations/<engine>/NNN_name.sql`` in version order."""
    folder = resources.files("actionhooks.store").joinpath("migrations", engine)
    scripts = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            scripts.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return scripts


def marks(marker: str, n: int) -> str:
    """``n`` parameter markers separated by commas (for ``IN (…)`` and ``VALUES (…)``)."""
    return ", ".join([marker] * n)
