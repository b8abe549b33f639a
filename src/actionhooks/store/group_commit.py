"""Group commit: while one append transaction runs, newer appends queue up and the next transaction takes them
all. A group whose transaction is refused is committed again append by append, so only the append at fault fails;
when the store is unavailable every append of the group fails with ``StoreUnavailable``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Sequence

from ..errors import StoreUnavailable
from ..events import NewEvent
from .base import AppendListener, Committed, Deriver


class PendingAppend:
    __slots__ = ("account_id", "chosen_ids", "derive", "events", "future")

    def __init__(
        self,
        account_id: int,
        events: Sequence[NewEvent],
        chosen_ids: Collection[str],
        future: asyncio.Future[list[bool]],
        derive: Deriver | None = None,
    ) -> None:
        self.account_id = account_id
        self.events = events
        self.chosen_ids = chosen_ids
        self.future = future
        self.derive = derive


# one transaction for a group: each append's per-event flags, and the rows added where their positions are known
CommitGroup = Callable[[list[PendingAppend]], Awaitable[tuple[list[list[bool]], Committed | None]]]


class GroupCommit:
    def __init__(self, commit: CommitGroup) -> None:
        """``commit(group)``: one transaction for the group, returning each append's per-event flags and what it
        added to the log (for the listeners)."""
        self._commit_group = commit
        self._queue: list[PendingAppend] = []
        self._queued_events = 0
        self._queued_by_account: dict[int, int] = {}
        self._committer: asyncio.Task[None] | None = None
        self.listeners: list[AppendListener] = []

    @property
    def pending(self) -> int:
        """Events waiting for the next commit."""
        return self._queued_events

    def pending_of(self, account_id: int) -> int:
        """Events of ``account_id`` waiting for the next commit (per-account fairness at ingest)."""
        return self._queued_by_account.get(account_id, 0)

    def _done(self, group: list[PendingAppend]) -> None:
        for p in group:
            self._queued_events -= len(p.events)
            left = self._queued_by_account.get(p.account_id, 0) - len(p.events)
            if left > 0:
                self._queued_by_account[p.account_id] = left
            else:
                self._queued_by_account.pop(p.account_id, None)

    async def append(
        self,
        account_id: int,
        events: Sequence[NewEvent],
        chosen_ids: Collection[str],
        derive: Deriver | None = None,
    ) -> list[bool]:
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._queue.append(PendingAppend(account_id, events, chosen_ids, future, derive))
        self._queued_events += len(events)
        self._queued_by_account[account_id] = self._queued_by_account.get(account_id, 0) + len(events)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop())
        return await future

    async def drain(self) -> None:
        """Wait for the appends queued so far."""
        if self._committer is not None:
            await self._committer

    async def _commit_loop(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                await self._commit(group)
            except StoreUnavailable:
                continue  # every waiter heard it: the outcome is unknown, a retry here might store twice
            except Exception:
                if len(group) == 1:
                    continue
                # One append's events broke the group's transaction: commit each append on its own, so only
                # that request fails and the others are not held responsible for it.
                for pending in group:
                    with contextlib.suppress(Exception):
                        await self._commit([pending])

    async def _commit(self, group: list[PendingAppend]) -> None:
        """One transaction for ``group``; every waiter hears the outcome (the exception is re-raised)."""
        try:
            results, committed = await self._commit_group(group)
        except BaseException as exc:
            if len(group) == 1 or isinstance(exc, StoreUnavailable) or not isinstance(exc, Exception):
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(exc)
                self._done(group)
            raise
        self._done(group)
        for p, result in zip(group, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)
        accounts = {p.account_id for p in group}
        for listener in self.listeners:
            listener(accounts, committed)
