"""Ingest first: while ingest has a backlog, hooks' sends step aside — for a bounded time.

Ingest acknowledges what producers send; delivery can catch up. During a burst, the process's append writer is the
bottleneck: requests are parsed faster than their events are committed, and the events wait in the group commit's
queue. Every send made then takes the cores (and the interpreter) from the writer and the parsing; deferred, the
same events leave a moment later in fuller batches (fewer requests — measured: delivery as a whole loses nothing).

So a hook's worker with a batch ready waits while at least :data:`BUSY_EVENTS` events wait for their commit in this
process (the running commit included: two full requests' worth), until no such backlog has been seen for
:data:`EASE_S` — one timer, every :data:`TICK_S`, looks for all the waiting workers. A worker waits at most
:data:`DEFER_MAX_S` in all, then sends as usual, and does not wait again before it has caught up with the log
(nothing buffered, nothing more to read). So a batch waits at most ``DEFER_MAX_S`` for ingest, and under a steady
overload — the hook never catching up — the hooks share the cores as they would without this.

At a light load the queue holds a few events (1 000 single events/s on a disk whose fsync takes 5 ms: about 5),
far below the threshold: nothing waits. Retries, replays and redrives do not defer. Appends of another process
(an API-only ``serve``) are not seen. docs/delivery.md#ingest-first; BENCHMARKS.md has the measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

BUSY_EVENTS = 2_000  # events waiting for their commit at which ingest has a backlog
TICK_S = 0.01  # how often the waiting workers' timer looks at the queue
DEFER_MAX_S = 5.0  # the longest a worker's sends wait for ingest before it has caught up again
EASE_S = 0.1  # the backlog counts as gone once it has not been seen for this long


class IngestFirst:
    """The process's signal: ``pending()`` events wait for their commit (the store's group commit)."""

    def __init__(
        self, pending: Callable[[], int], *, busy_events: int = BUSY_EVENTS, defer_max_s: float = DEFER_MAX_S
    ) -> None:
        self.pending = pending
        self.busy_events = busy_events
        self.defer_max_s = defer_max_s
        self._eased = asyncio.Event()  # set (and replaced) when the backlog is gone
        self._waiting = 0
        self._busy_at = float("-inf")  # when a backlog was last seen (monotonic)
        self._ticking: asyncio.Task[None] | None = None

    @property
    def contended(self) -> bool:
        """A backlog now, or one seen less than :data:`EASE_S` ago (the queue dips whenever the writer takes a
        group: not the end of a burst)."""
        now = time.monotonic()
        if self.pending() >= self.busy_events:
            self._busy_at = now
            return True
        return now - self._busy_at < EASE_S

    async def eased(self, timeout: float) -> None:
        """Return once ingest has no backlog, or after ``timeout`` seconds."""
        if not self.contended or timeout <= 0:
            return
        self._waiting += 1
        if self._ticking is None or self._ticking.done():
            self._ticking = asyncio.create_task(self._tick(), name="ingest-first")
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._eased.wait(), timeout)
        finally:
            self._waiting -= 1

    async def _tick(self) -> None:
        """While workers wait: wake them all once the backlog is gone."""
        while self._waiting:
            await asyncio.sleep(TICK_S)
            if not self.contended:
                self._eased.set()
                self._eased = asyncio.Event()

    async def close(self) -> None:
        if self._ticking is not None and not self._ticking.done():
            self._ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticking


class Deferral:
    """One worker's use of :class:`IngestFirst`: at most ``defer_max_s`` of waiting until it catches up again."""

    def __init__(self, first: IngestFirst | None) -> None:
        self.first = first
        self.used_s = 0.0
        self.waits = 0  # times a batch waited (for tests and stats)
        self._waiting: asyncio.Future[None] | None = None

    async def step_aside(self) -> bool:
        """Wait while ingest has a backlog, within what is left of the allowance (or until :meth:`interrupt`):
        whether it waited."""
        first = self.first
        if first is None or not first.contended:
            return False
        left = first.defer_max_s - self.used_s
        if left <= 0:
            return False
        self.waits += 1
        started = time.monotonic()
        waiting = self._waiting = asyncio.ensure_future(first.eased(left))
        try:
            await asyncio.wait([waiting])  # (returns when it is cut short too)
        finally:
            self._waiting = None
            waiting.cancel()
            self.used_s += time.monotonic() - started
        return True

    def interrupt(self) -> None:
        """End a wait now (the worker is stopping)."""
        if self._waiting is not None:
            self._waiting.cancel()

    def caught_up(self) -> None:
        """The worker has caught up with the log: it may defer again."""
        self.used_s = 0.0
