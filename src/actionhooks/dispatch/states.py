"""Delivery-state writes of many hooks sharing commits.

Every hook's worker records its batches through one :class:`StateWriter` per dispatcher. Writes queue on the
event loop; one flush at a time takes everything queued and hands it to ``Store.write_states`` — one transaction,
one commit — so a hundred hooks finishing batches together cost one fsync, not a hundred. Each writer still gets
its own answers (whether its hook's generation held), in the order it wrote: a hook's writes are never reordered.
A hook hands over all its waiting records at once (:meth:`StateWriter.write`): one future for them, not one each —
a hook of one-event batches records an attempt per event.

An idle hook's cursor is a *note* (:meth:`StateWriter.note_cursor`): it waits for the next commit that happens
anyway, or at most ``cursor_lag_s`` seconds, and only the newest note per hook is written (forward only). A note
lagging costs nothing but a rescan of events the hook does not match after a crash. :meth:`StateWriter.hurry`
writes the notes at once (``Dispatcher.caught_up`` uses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from ..store.base import StateWrite, Store

log = logging.getLogger(__name__)

CURSOR_LAG_S = 1.0  # an idle hook's cursor note is written within this long


class StateWriter:
    def __init__(self, store: Store, cursor_lag_s: float = CURSOR_LAG_S) -> None:
        self.store = store
        self.cursor_lag_s = cursor_lag_s
        self._queue: list[tuple[Sequence[StateWrite], asyncio.Future[list[bool]]]] = []
        self._notes: dict[int, tuple[StateWrite, list[asyncio.Future[bool]]]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._take_notes = False  # the next flush writes the notes even without other writes

    async def write(self, writes: Sequence[StateWrite]) -> list[bool]:
        """``Store.write_states`` of ``writes`` (one hook's, in order), in a commit shared with other hooks' writes:
        whether the hook's generation held for each."""
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._queue.append((writes, future))
        self._flush_soon()
        return await future

    def note_cursor(self, hook_id: int, generation: int, cursor: int) -> asyncio.Future[bool]:
        """Move the hook's cursor forward to ``cursor``, lazily. The future tells whether the generation held
        once written (False: the hook changed)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        _, futures = self._notes.get(hook_id, (None, []))
        futures.append(future)
        self._notes[hook_id] = (StateWrite(hook_id, generation, cursor), futures)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.cursor_lag_s, self.hurry)
        return future

    def hurry(self) -> None:
        """Write the cursor notes now (with whatever else is queued)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._notes:
            self._flush_soon(notes=True)

    async def close(self) -> None:
        """Write what is queued, notes included."""
        self.hurry()
        while self._flushing is not None and not self._flushing.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flushing)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush_soon(self, notes: bool = False) -> None:
        self._take_notes = self._take_notes or notes
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name="state-writer")

    async def _flush(self) -> None:
        while self._queue or (self._notes and self._take_notes):
            writes, self._queue = self._queue, []
            # notes ride along with any commit; alone only when due
            notes, self._notes = self._notes, {}
            self._take_notes = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            batch = [w for group, _ in writes for w in group] + [w for w, _ in notes.values()]
            try:
                done = await self.store.write_states(batch)
            except Exception as exc:
                for _, future in writes:
                    if not future.done():
                        future.set_exception(exc)
                for _, futures in notes.values():
                    for noted in futures:
                        if not noted.done():
                            noted.set_exception(exc)
                continue
            at = 0
            for group, future in writes:
                if not future.done():
                    future.set_result(done[at : at + len(group)])
                at += len(group)
            for (_, futures), ok in zip(notes.values(), done[at:], strict=True):
                for noted in futures:
                    if not noted.done():
                        noted.set_result(ok)
