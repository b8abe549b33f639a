"""The SQL of side deliveries — replays of the log and redrives of dead letters (``dispatch/replay.py``) — shared by
both engines, mixed into :class:`~.sql.SqlStore`.

A side delivery is a row of ``side_deliveries`` with its own cursor: a replay's is a log position (every event up to
it is handled), a redrive's set is the dead letters naming it (``dead_letters.redrive_id``), which leave the table as
they are delivered. Progress is written conditionally on the row still ``running``: a cancel (or a deleted hook)
makes the runner's next write match nothing, and it stops.

The pruned horizon (table ``pruned_horizon``, one row) is the newest acceptance time of an event retention removed:
a replay from before it would miss events, and is refused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import msgspec

from ..events import LoggedEvent
from .base import DeadLetter, HookQuery, LetterSelection, ReplayRange, SideDelivery, SideKind, SideState
from .dbapi import Connection, Cursor, Param, Row
from .dialect import marks

if TYPE_CHECKING:
    from .dialect import Dialect
    from .runtime import Runtime

CLOCK_SLACK_S = 60.0  # acceptance times are in log order to within this (group commits, several processes)
_COLUMNS = (
    "id, hook_id, kind, state, from_at, to_at, event_types, cursor, end_seq, total, sent, error, created_at,"
    " updated_at"
)
_LETTER_COLUMNS = "id, hook_id, event_seq, event_id, payload, reason, attempts, failed_at"
_COUNT_PAGE = 5_000  # events whose payloads a replay's count reads at a time (a hook with filters)
_types = msgspec.json.Decoder(list[str])


class SideDeliveriesSql:
    """Mixed into ``SqlStore``: it supplies ``dialect``, ``_runtime`` and ``_p``."""

    if TYPE_CHECKING:
        dialect: Dialect
        _runtime: Runtime
        _p: str

    # --- the pruned horizon (maintenance/retention.py moves it) -------------------------------------------
    def _note_pruned(self, cur: Cursor, received_at: float) -> None:
        """Move the pruned horizon forward to ``received_at`` (inside the pruning transaction)."""
        p = self._p
        cur.execute(
            f"INSERT INTO pruned_horizon (id, received_at) VALUES (1, {p}) ON CONFLICT (id) DO UPDATE"
            " SET received_at = CASE WHEN excluded.received_at > pruned_horizon.received_at"
            " THEN excluded.received_at ELSE pruned_horizon.received_at END",
            (received_at,),
        )

    async def pruned_horizon(self) -> float | None:
        def work(conn: Connection) -> float | None:
            cur = conn.cursor()
            cur.execute("SELECT received_at FROM pruned_horizon WHERE id = 1")
            row = cur.fetchone()
            return None if row is None else float(row[0])

        return await self._runtime.read(work)

    # --- replays ------------------------------------------------------------------------------------------
    async def replay_range(self, query: HookQuery, from_at: float, to_at: float) -> ReplayRange:
        def work(conn: Connection) -> ReplayRange:
            cur = self.dialect.rows_cursor(conn)  # (a filtered range's count reads its payloads)
            start = self._seq_before(cur, from_at - CLOCK_SLACK_S)
            cur.execute("SELECT COALESCE(MAX(seq), 0) FROM events")
            head = int(_first(cur)[0])
            end = min(head, self._seq_before(cur, to_at + CLOCK_SLACK_S, default=head))
            return ReplayRange(start, end, self._count_range(cur, query, start, end, from_at, to_at))

        return await self._runtime.read(work)

    def _seq_before(self, cur: Cursor, at: float, default: int | None = None) -> int:
        """The last log position before the first event accepted at ``at`` or later (a binary search over
        ``seq``: acceptance times rise with it, to within :data:`CLOCK_SLACK_S`). ``default`` (or the head)
        when every event is older."""
        p = self._p
        cur.execute("SELECT MIN(seq), MAX(seq) FROM events")
        low_row = _first(cur)
        if low_row[0] is None:
            return 0 if default is None else default
        low, high = int(low_row[0]), int(low_row[1])
        at_or_after = f"SELECT seq, received_at FROM events WHERE seq >= {p} ORDER BY seq LIMIT 1"
        cur.execute(at_or_after, (high,))
        last = _first(cur)
        if float(last[1]) < at:
            return high if default is None else default
        lo, hi = (
            low,
            high,
        )  # the first event accepted at ``at`` or later is the first at or after ``lo`` = ``hi``
        while lo < hi:
            mid = (lo + hi) // 2
            cur.execute(at_or_after, (mid,))
            seq, received_at = _first(cur)
            if float(received_at) < at:
                lo = int(seq) + 1
            else:
                hi = mid
        cur.execute(at_or_after, (lo,))
        return int(_first(cur)[0]) - 1

    def _count_range(
        self, cur: Cursor, q: HookQuery, start: int, end: int, from_at: float, to_at: float
    ) -> int:
        """The events in ``(start, end]`` accepted in ``[from_at, to_at)`` that the hook matches (filters too)."""
        if end <= start or not q.event_types:
            return 0
        p = self._p
        where = (
            f" FROM events WHERE account_id = {p} AND seq > {p} AND seq <= {p}"
            f" AND received_at >= {p} AND received_at < {p} AND event_type IN ({marks(p, len(q.event_types))})"
        )
        params: list[Param] = [q.account_id, start, end, from_at, to_at, *q.event_types]
        if q.list_id is not None:
            where += f" AND list_id = {p}"
            params.append(q.list_id)
        if q.accepts is None:
            cur.execute("SELECT COUNT(*)" + where, params)
            return int(_first(cur)[0])
        counted, after = 0, start  # payloads read a page at a time: a long range holds no more in memory
        while True:
            params[1] = after
            cur.execute(f"SELECT seq, payload{where} ORDER BY seq LIMIT {_COUNT_PAGE}", params)
            rows = cur.fetchall()
            counted += sum(1 for row in rows if q.accepts(bytes(row[1])))
            if len(rows) < _COUNT_PAGE:
                return counted
            after = int(rows[-1][0])

    async def add_replay(
        self,
        hook_id: int,
        from_at: float,
        to_at: float,
        event_types: Sequence[str] | None,
        found: ReplayRange,
    ) -> SideDelivery | None:
        p = self._p
        types = None if event_types is None else msgspec.json.encode(list(event_types)).decode()

        def work(conn: Connection) -> Row | None:
            now = time.time()
            with self.dialect.transaction(conn) as cur:
                cur.execute(
                    "INSERT INTO side_deliveries (hook_id, kind, state, from_at, to_at, event_types, cursor,"
                    f" end_seq, total, sent, created_at, updated_at) VALUES ({marks(p, 12)})"
                    f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
                    (hook_id, "replay", "running", from_at, to_at, types, *found, 0, now, now),
                )
                return cur.fetchone()

        row = await self._runtime.write(work)
        return None if row is None else _side(row)

    async def running_replay(self, hook_id: int) -> SideDelivery | None:
        p = self._p
        rows = await self._side_rows(
            f"SELECT {_COLUMNS} FROM side_deliveries WHERE hook_id = {p} AND kind = 'replay'"
            " AND state = 'running'",
            (hook_id,),
        )
        return rows[0] if rows else None

    async def get_side_delivery(self, hook_id: int, side_id: int) -> SideDelivery | None:
        p = self._p
        rows = await self._side_rows(
            f"SELECT {_COLUMNS} FROM side_deliveries WHERE id = {p} AND hook_id = {p}", (side_id, hook_id)
        )
        return rows[0] if rows else None

    async def list_side_deliveries(self, hook_id: int, limit: int = 20) -> list[SideDelivery]:
        p = self._p
        return await self._side_rows(
            f"SELECT {_COLUMNS} FROM side_deliveries WHERE hook_id = {p} ORDER BY id DESC LIMIT {p}",
            (hook_id, limit),
        )

    async def running_side_deliveries(self) -> list[SideDelivery]:
        return await self._side_rows(
            f"SELECT {_COLUMNS} FROM side_deliveries WHERE state = 'running' ORDER BY id", ()
        )

    async def _side_rows(self, sql: str, params: Sequence[Param]) -> list[SideDelivery]:
        def work(conn: Connection) -> list[Row]:
            cur = conn.cursor()
            cur.execute(sql, params)
            return cur.fetchall()

        return [_side(r) for r in await self._runtime.read(work)]

    async def cancel_side_delivery(self, hook_id: int, side_id: int) -> SideDelivery | None:
        p = self._p

        def work(conn: Connection) -> Row | None:
            with self.dialect.transaction(conn) as cur:
                cur.execute(
                    f"UPDATE side_deliveries SET state = 'cancelled', updated_at = {p}"
                    f" WHERE id = {p} AND hook_id = {p} AND state = 'running'",
                    (time.time(), side_id, hook_id),
                )
                cur.execute("UPDATE dead_letters SET redrive_id = NULL WHERE redrive_id = " + p, (side_id,))
                cur.execute(
                    f"SELECT {_COLUMNS} FROM side_deliveries WHERE id = {p} AND hook_id = {p}",
                    (side_id, hook_id),
                )
                return cur.fetchone()

        row = await self._runtime.write(work)
        return None if row is None else _side(row)

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
        p = self._p

        def work(conn: Connection) -> bool:
            with self.dialect.transaction(conn) as cur:
                sets = f"sent = sent + {p}, state = {p}, updated_at = {p}"
                params: list[Param] = [sent, state, time.time()]
                if cursor is not None:
                    sets += f", cursor = {p}"
                    params.append(cursor)
                if error is not None:
                    sets += f", error = {p}"
                    params.append(error)
                cur.execute(
                    f"UPDATE side_deliveries SET {sets} WHERE id = {p} AND state = 'running'",
                    [*params, side_id],
                )
                if cur.rowcount == 0:
                    return False
                for start in range(0, len(delivered_letters), 500):
                    ids = delivered_letters[start : start + 500]
                    cur.execute(
                        f"DELETE FROM dead_letters WHERE redrive_id = {p} AND id IN ({marks(p, len(ids))})",
                        (side_id, *ids),
                    )
                if returned_letters:
                    cur.executemany(
                        f"UPDATE dead_letters SET redrive_id = NULL, reason = {p}, attempts = attempts + {p},"
                        f" failed_at = {p} WHERE id = {p} AND redrive_id = {p}",
                        [(d.reason, d.attempts, d.failed_at, d.id, side_id) for d in returned_letters],
                    )
                if state != "running":
                    cur.execute(
                        f"UPDATE dead_letters SET redrive_id = NULL WHERE redrive_id = {p}", (side_id,)
                    )
                return True

        return await self._runtime.write(work)

    # --- dead letters: redrive and discard ---------------------------------------------------------------
    def _letters_where(self, hook_id: int, pick: LetterSelection) -> tuple[str, list[Param]]:
        p = self._p
        where = f" WHERE hook_id = {p}"
        params: list[Param] = [hook_id]
        if pick.ids is not None:
            where += f" AND id IN ({marks(p, len(pick.ids))})" if pick.ids else " AND 1 = 0"
            params += pick.ids
        if pick.reason is not None:
            where += f" AND reason = {p}"
            params.append(pick.reason)
        if pick.failed_after is not None:
            where += f" AND failed_at >= {p}"
            params.append(pick.failed_after)
        if pick.failed_before is not None:
            where += f" AND failed_at < {p}"
            params.append(pick.failed_before)
        return where, params

    async def redrive_dead_letters(
        self, hook_id: int, pick: LetterSelection
    ) -> tuple[SideDelivery | None, int]:
        p = self._p

        def work(conn: Connection) -> tuple[Row | None, int]:
            now = time.time()
            with self.dialect.transaction(conn) as cur:
                cur.execute(
                    "INSERT INTO side_deliveries (hook_id, kind, state, cursor, end_seq, total, sent, created_at,"
                    f" updated_at) VALUES ({marks(p, 9)}) RETURNING id",
                    (hook_id, "redrive", "running", 0, 0, 0, 0, now, now),
                )
                side_id = int(_first(cur)[0])
                where, params = self._letters_where(hook_id, pick)
                cur.execute(
                    f"UPDATE dead_letters SET redrive_id = {p}{where} AND redrive_id IS NULL",
                    [side_id, *params],
                )
                n = cur.rowcount
                if n == 0:
                    cur.execute(f"DELETE FROM side_deliveries WHERE id = {p}", (side_id,))
                    return None, 0
                cur.execute(f"UPDATE side_deliveries SET total = {p} WHERE id = {p}", (n, side_id))
                cur.execute(f"SELECT {_COLUMNS} FROM side_deliveries WHERE id = {p}", (side_id,))
                return cur.fetchone(), n

        row, n = await self._runtime.write(work)
        return (None if row is None else _side(row)), n

    async def discard_dead_letters(self, hook_id: int, pick: LetterSelection) -> int:
        def work(conn: Connection) -> int:
            where, params = self._letters_where(hook_id, pick)
            with self.dialect.transaction(conn) as cur:
                cur.execute("DELETE FROM dead_letters" + where, params)
                return cur.rowcount

        return await self._runtime.write(work)

    async def redrive_letters(self, side_id: int, after: tuple[int, int], limit: int) -> list[DeadLetter]:
        """The letters of redrive ``side_id`` after ``(event_seq, id)``, in their original (log) order."""
        p = self._p
        seq, last_id = after

        def work(conn: Connection) -> list[Row]:
            cur = self.dialect.rows_cursor(conn)
            cur.execute(
                f"SELECT {_LETTER_COLUMNS} FROM dead_letters WHERE redrive_id = {p}"
                f" AND (event_seq > {p} OR (event_seq = {p} AND id > {p})) ORDER BY event_seq, id LIMIT {p}",
                (side_id, seq, seq, last_id, limit),
            )
            return cur.fetchall()

        return [
            DeadLetter(
                id=int(r[0]),
                hook_id=int(r[1]),
                event_seq=int(r[2]),
                event_id=str(r[3]),
                payload=bytes(r[4]),
                reason=str(r[5]),
                attempts=int(r[6]),
                failed_at=float(r[7]),
            )
            for r in await self._runtime.read(work)
        ]

    async def replay_events(
        self, query: HookQuery, after: int, end: int, limit: int, window: int
    ) -> tuple[list[LoggedEvent], int]:
        """Events of the hook's account, types and ``list_id`` in ``(after, min(after + window, end)]``, at most
        ``limit``: those found and how far the read covered."""
        p = self._p
        upper = min(end, after + window)
        if upper <= after:
            return [], after
        types = query.event_types

        def work(conn: Connection) -> list[Row]:
            cur = self.dialect.rows_cursor(conn)
            sql = (
                "SELECT seq, id, event_type, list_id, profile_id, payload, received_at FROM events"
                f" WHERE account_id = {p} AND seq > {p} AND seq <= {p} AND event_type IN ({marks(p, len(types))})"
            )
            params: list[Param] = [query.account_id, after, upper, *types]
            if query.list_id is not None:
                sql += f" AND list_id = {p}"
                params.append(query.list_id)
            cur.execute(sql + f" ORDER BY seq LIMIT {p}", [*params, limit])
            return cur.fetchall()

        rows = await self._runtime.read(work)
        events = [LoggedEvent(int(r[0]), r[1], r[2], r[3], r[4], bytes(r[5]), float(r[6])) for r in rows]
        return events, (events[-1].seq if len(events) >= limit else upper)


def _first(cur: Cursor) -> Row:
    row = cur.fetchone()
    assert row is not None, "the statement returns a row"
    return row


def _side(row: Row) -> SideDelivery:
    return SideDelivery(
        id=int(row[0]),
        hook_id=int(row[1]),
        kind=cast(SideKind, row[2]),
        state=cast(SideState, row[3]),
        from_at=None if row[4] is None else float(row[4]),
        to_at=None if row[5] is None else float(row[5]),
        event_types=None if row[6] is None else tuple(_types.decode(row[6])),
        cursor=int(row[7]),
        end_seq=int(row[8]),
        total=int(row[9]),
        sent=int(row[10]),
        error=row[11],
        created_at=float(row[12]),
        updated_at=float(row[13]),
    )
