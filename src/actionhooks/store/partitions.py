"""PostgreSQL's log partitions: ``events`` is partitioned by ranges of ``seq`` (table ``log_partitions`` lists them,
``[low, high)`` each, named ``events_p<low>``). The writer creates the next partition when an append would pass the
last one (under the log lock, so one process at a time); retention drops a partition whole once every event in it is
due, after deleting its producer ids from ``event_ids`` in chunks (docs/operations.md#retention).

A partition is *closed* when the log's next position lies past it: nothing more is written to it (an append in
flight when it closed is waited for by the log lock the drop takes).
"""

from __future__ import annotations

import time

import psycopg

from ..errors import PartitionBusy
from .dbapi import Cursor

DEFAULT_PARTITION_EVENTS = 1_000_000  # log positions per partition
DROP_WAIT_S = 0.5  # how long a drop waits for the log's readers (new readers queue behind it meanwhile)
HOLD_WAIT_S = (
    3.0  # how long a drop waits for its own partition (past deadlock_timeout: a vacuum there yields)
)
BUSY_PAUSE_S = 60.0  # after a drop gave up, no other is tried for this long (a dump, a long query on the log)


class LogPartitions:
    def __init__(self, span: int = DEFAULT_PARTITION_EVENTS) -> None:
        if span < 1:
            raise ValueError("a partition spans at least one log position")
        self.span = span
        # a closed partition's low → the position its ids are deleted up to
        self._forgotten: dict[int, int] = {}
        self._busy_until = 0.0  # monotonic time before which no drop is tried

    # --- the writer --------------------------------------------------------------------------------------------
    def next_seq(self, cur: Cursor) -> int:
        cur.execute("SELECT last_value, is_called FROM log_seq")
        row = cur.fetchone()
        assert row is not None
        return int(row[0]) + 1 if row[1] else int(row[0])

    def make_room(self, cur: Cursor, events: int, *, keyed: bool) -> None:
        """Partitions for the next ``events`` positions (the caller holds the log lock). One query when there is
        room (no cache: a rolled-back append takes the partitions it made with it). ``keyed``: the events' ids
        were claimed in ``event_ids``, so their partitions are marked to have them deleted before their drop."""
        cur.execute(
            "WITH s AS (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS first FROM log_seq),"
            " marked AS (UPDATE log_partitions SET keyed = TRUE FROM s WHERE %s AND low < s.first + %s"
            " AND high > s.first AND NOT keyed)"  # (no row is written when they are marked already)
            " SELECT s.first, (SELECT MAX(high) FROM log_partitions) FROM s",
            (keyed, events),
        )
        row = cur.fetchone()
        assert row is not None
        needed = int(row[0]) + events
        # none yet: from the partition boundary below the next position (a log whose events were all pruned)
        high = int(row[0]) // self.span * self.span if row[1] is None else int(row[1])
        while high < needed:
            # a table attached, not CREATE … PARTITION OF: attaching locks the log less (readers and writers go on)
            low, high = high, high + self.span
            cur.execute(f"CREATE TABLE events_p{low} (LIKE events INCLUDING DEFAULTS)")
            cur.execute(
                f"ALTER TABLE events ATTACH PARTITION events_p{low} FOR VALUES FROM ({low}) TO ({high})"
            )
            cur.execute(
                "INSERT INTO log_partitions (low, high, keyed) VALUES (%s, %s, %s)", (low, high, keyed)
            )

    # --- retention ---------------------------------------------------------------------------------------------
    def oldest_closed(self, cur: Cursor) -> tuple[int, int, bool] | None:
        """The oldest partition nothing is written to any more, ``(low, high, keyed)``; None when only the one
        being written (and those made ahead) remain."""
        cur.execute("SELECT low, high, keyed FROM log_partitions ORDER BY low LIMIT 1")
        row = cur.fetchone()
        if row is None or int(row[1]) > self.next_seq(cur):
            return None
        return int(row[0]), int(row[1]), bool(row[2])

    def keyed(self, cur: Cursor, low: int) -> bool:
        cur.execute("SELECT keyed FROM log_partitions WHERE low = %s", (low,))
        row = cur.fetchone()
        return bool(row and row[0])

    def forgotten(self, low: int) -> int:
        """Where deleting the partition's producer ids goes on from (committed progress of this process)."""
        return self._forgotten.get(low, low)

    def forget_ids(self, cur: Cursor, start: int, high: int, chunk: int) -> tuple[int, bool]:
        """Delete the producer ids of the next ``chunk`` events in ``[start, high)``: where to go on from, and
        whether that was the last of them. Record the progress with :meth:`note_forgotten` once committed."""
        cur.execute(
            "WITH gone AS (SELECT account_id, id, seq FROM events WHERE seq >= %s AND seq < %s ORDER BY seq"
            " LIMIT %s), forgotten AS (DELETE FROM event_ids k USING gone WHERE k.account_id = gone.account_id"
            " AND k.id = gone.id) SELECT COUNT(*), MAX(seq) FROM gone",
            (start, high, chunk),
        )
        row = cur.fetchone()
        assert row is not None
        count = int(row[0])
        return (start if count == 0 else int(row[1]) + 1), count < chunk

    def note_forgotten(self, low: int, upto: int) -> None:
        self._forgotten[low] = upto

    def may_drop(self) -> bool:
        return time.monotonic() >= self._busy_until

    def drop(self, cur: Cursor, low: int) -> None:
        """Drop the partition (its ids forgotten; the caller holds the log lock and :meth:`hold`). The drop locks the
        partitioned table: readers of the log wait for it briefly, and it waits for those reading; after
        :data:`DROP_WAIT_S` it raises :class:`PartitionBusy` instead (the caller's transaction rolls back: nothing
        was counted or dropped) and no drop is tried for :data:`BUSY_PAUSE_S`."""
        self._locking(cur, f"DROP TABLE events_p{low}", DROP_WAIT_S, low)
        cur.execute("DELETE FROM log_partitions WHERE low = %s", (low,))
        self._forgotten.pop(low, None)

    def hold(self, cur: Cursor, low: int) -> None:
        """Lock the partition itself first, before the log lock: a vacuum running on it is cancelled after
        ``deadlock_timeout`` (1 s) when the wait outlasts it; nothing else but old-range reads use it."""
        self._locking(cur, f"LOCK TABLE events_p{low} IN ACCESS EXCLUSIVE MODE", HOLD_WAIT_S, low)

    def _locking(self, cur: Cursor, sql: str, wait_s: float, low: int) -> None:
        cur.execute(f"SET LOCAL lock_timeout = '{int(wait_s * 1000)}ms'")
        try:
            cur.execute(sql)
        except psycopg.errors.LockNotAvailable as exc:
            self._busy_until = time.monotonic() + BUSY_PAUSE_S
            raise PartitionBusy(f"log partition events_p{low}: held by a reader of the log") from exc
        cur.execute("SET LOCAL lock_timeout TO DEFAULT")
