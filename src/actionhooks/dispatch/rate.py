"""A hook's rate limit (``max_events_per_second``): every send path of the hook — live delivery, replays, redrives —
awaits the hook's one :class:`RateLimiter` before it sends a batch, so together they keep the rate.

The limiter paces rather than counts: a batch of ``n`` events at ``r`` events a second takes ``n / r`` seconds of
the hook's time line; a send waits until the time line reaches it (GCRA, the "virtual scheduling" form of a token
bucket whose burst is one batch). Callers are served in the order they asked, so a replay and live delivery share
the rate. An idle hook does not save up: its next batch goes at once, the one after waits its turn. A retry of a
failed batch is a send too, and waits its turn like any other.

Limits are per process (the dispatching process: only one dispatches a database's hooks). :class:`HookRates` keeps
one limiter per hook id, so a worker restarted after an edit goes on with the same time line (a changed rate takes
effect at once: what was reserved at the old one is forgotten).
"""

from __future__ import annotations

import asyncio
import math
import time


class RateLimiter:
    """Paces one hook's sends to ``per_second`` events a second (None: no limit)."""

    def __init__(self, per_second: float | None = None) -> None:
        self.per_second = per_second
        self._next = 0.0  # monotonic time at which the next send may start

    def set_rate(self, per_second: float | None) -> None:
        """A new rate (the hook was edited): what was reserved at the old one no longer holds the next send back."""
        if per_second != self.per_second:
            self._next = min(self._next, time.monotonic())
        self.per_second = per_second

    def batch_size(self, wanted: int) -> int:
        """The largest batch worth sending at this rate: at most one second of it (at least one event)."""
        if self.per_second is None:
            return wanted
        return max(1, min(wanted, math.floor(self.per_second)))

    def reserve(self, events: int, now: float | None = None) -> float:
        """Take the next ``events`` of the hook's time line: the seconds to wait before sending them."""
        if self.per_second is None or events <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        start = max(now, self._next)
        self._next = start + events / self.per_second
        return start - now

    async def take(self, events: int) -> None:
        """Wait until ``events`` may be sent (what a send path awaits before sending a batch of them)."""
        delay = self.reserve(events)
        if delay > 0:
            await asyncio.sleep(delay)


class HookRates:
    """The limiters of the hooks of one process, by hook id."""

    def __init__(self) -> None:
        self._limiters: dict[int, RateLimiter] = {}

    def of(self, hook_id: int, per_second: float | None) -> RateLimiter:
        """The hook's limiter, its rate set to ``per_second`` (the hook's current ``max_events_per_second``)."""
        limiter = self._limiters.get(hook_id)
        if limiter is None:
            limiter = self._limiters[hook_id] = RateLimiter(per_second)
        else:
            limiter.set_rate(per_second)
        return limiter

    def forget(self, hook_id: int) -> None:
        """The hook is gone (or stopped): drop its limiter."""
        self._limiters.pop(hook_id, None)
