"""An account's budgets: what its hooks may hold at once, taken in first-come order.

**Bytes of batches out** (:data:`SEND_BUDGET_BYTES`). A send builds its batch's body (a JSON array, a broker message
per event) and holds it until the destination has answered. A thousand hooks with full batches after a burst would
each hold one: about a gigabyte for 1 000-event batches of 1 KB events. The sends of an account's hooks — live
delivery, replays and redrives — share a budget and wait, in order, while it is spent; a batch larger than the
whole budget goes out alone.

**Turns at reading alone** (:data:`CATCH_UP_TURNS`). A hook behind the shared feed's memory and its trail reads its
events from the store on its own (``dispatch/feed.py``), and what it reads is its own copy, held until delivered.
After a burst longer than the feed's memory nearly every hook of a busy account is there at once: 900 of the
1 000 hooks of ``bench.fanout``'s ``1000 hooks at 1 %`` read ~460 000 events of their own within two seconds
(~430 MB). A hook takes a turn before such a read and keeps it while it holds events it read alone (its buffer
and the batches out); holding none, it gives the turn back before its next read alone — and queues behind the hooks
waiting, so turns go round. A hook holding a turn never waits for another: it delivers what it holds.

Budgets are per account: one account's slow destinations, or hooks far behind, never hold up another's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

SEND_BUDGET_BYTES = 32 * 1024 * 1024
CATCH_UP_TURNS = 32  # hooks of an account reading alone at once (each holds at most a read and a batch out)


class Budget:
    """A budget of units (bytes, turns) taken in first-come order: a large take is not passed by smaller ones."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def take(self, size: int) -> None:
        """Take ``size`` units of the budget: at once when they fit (or nothing else is held), else after the takes
        before them have given enough back. Give them back with :meth:`give` (a take cancelled while it waits
        takes nothing)."""
        if not self._waiting and self._fits(size):
            self.used += size
            return
        granted = asyncio.get_running_loop().create_future()
        entry = (size, granted)
        self._waiting.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():  # granted as it was cancelled: give it back
                self.give(size)
            else:
                with contextlib.suppress(ValueError):  # not already passed over by ``_grant``
                    self._waiting.remove(entry)
                self._grant()  # it may have kept smaller takes behind it waiting
            raise

    def give(self, size: int) -> None:
        self.used -= size
        self._grant()

    def _fits(self, size: int) -> bool:
        return self.used + size <= self.limit or self.used == 0

    def _grant(self) -> None:
        """Let the takes at the head of the line go, while they fit."""
        while self._waiting:
            size, granted = self._waiting[0]
            if granted.done():  # cancelled while it waited
                self._waiting.popleft()
                continue
            if not self._fits(size):
                return
            self._waiting.popleft()
            self.used += size
            granted.set_result(None)


class AccountBudgets:
    """Each account's :class:`Budget` of ``limit``, made when the account first needs it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._of: dict[int, Budget] = {}

    def of(self, account_id: int) -> Budget:
        budget = self._of.get(account_id)
        if budget is None:
            budget = self._of[account_id] = Budget(self.limit)
        return budget
