"""How many bytes of batches an account has out at once (each batch's messages, while its send is under way).

A send builds its batch's body (a JSON array, a broker message per event) and holds it until the destination has
answered. A thousand hooks with full batches after a burst would each hold one: about a gigabyte for 1 000-event
batches of 1 KB events. The sends of an account's hooks — live delivery, replays and redrives — share a budget
(:data:`SEND_BUDGET_BYTES`) and wait, in order, while it is spent; a batch larger than the whole budget goes out
alone. The budget is per account: one account's slow destinations, holding their batches until they answer or
time out, never hold up another's sends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

SEND_BUDGET_BYTES = 32 * 1024 * 1024


class SendBudget:
    """A budget of bytes in flight, taken in first-come order (a large send is not passed by smaller ones)."""

    def __init__(self, limit: int = SEND_BUDGET_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def take(self, size: int) -> None:
        """Take ``size`` bytes of the budget: at once when they fit (or nothing else is held), else after the sends
        before them have given enough back. Give them back with :meth:`give` (a send that is cancelled while it
        waits takes nothing)."""
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
                self._grant()  # it may have kept smaller sends behind it waiting
            raise

    def give(self, size: int) -> None:
        self.used -= size
        self._grant()

    def _fits(self, size: int) -> bool:
        return self.used + size <= self.limit or self.used == 0

    def _grant(self) -> None:
        """Let the sends at the head of the line go, while they fit."""
        while self._waiting:
            size, granted = self._waiting[0]
            if granted.done():  # its send was cancelled while it waited
                self._waiting.popleft()
                continue
            if not self._fits(size):
                return
            self._waiting.popleft()
            self.used += size
            granted.set_result(None)


class SendBudgets:
    """Each account's :class:`SendBudget`, made when its first hook sends."""

    def __init__(self, limit: int = SEND_BUDGET_BYTES) -> None:
        self.limit = limit
        self._of: dict[int, SendBudget] = {}

    def of(self, account_id: int) -> SendBudget:
        budget = self._of.get(account_id)
        if budget is None:
            budget = self._of[account_id] = SendBudget(self.limit)
        return budget
