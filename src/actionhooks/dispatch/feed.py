"""The shared read path: the log read once for every hook of the process, each event routed in memory.

One :class:`LogFeed` per dispatcher reads the whole log in ``seq`` order (every account, one query per chunk of
:data:`CHUNK` events) and keeps the newest :data:`KEEP` events in memory, each chunk indexed by account and event
type. A hook's read is served from that memory: the events of its account and types after its position (and its
``list_id`` when set), in ``seq`` order — no query, no copy of the event. Filters on ``event_data`` are the worker's
(``Matcher``), as before.

After each chunk the feed wakes only the hooks whose account, type and ``list_id`` occur in it (an index of the
subscribed hooks by account and type): a hook matching nothing is not woken, reads nothing and writes nothing.

A hook whose position is before the oldest event kept (it was far behind when the process started, or fell behind
by more than :data:`KEEP` events) is served by the *trail* (:class:`_Trail`): a second window of the log, at most
:data:`TRAIL_KEEP` events, read once for every hook catching up there and moved forward as they reach its end —
after a restart with a backlog, or a burst longer than the memory, the hooks behind share its reads instead of each
reading its own events. The chunks the feed drops while a hook of their accounts and types has not read past them
(each subscription carries its hook's position) go to the trail as they are: those hooks are served the same
events, without a read of the log and without a second copy in memory. A hook before the trail, or far past its
end, gets ``None`` from :meth:`LogFeed.read` and reads on its own from the store (the store's per-hook query, in a
turn of its account's: ``budget.py``); once its position reaches the feed's memory it is served by the feed again.

Seq order is commit order (store rule 2), so a chunk ending at ``scanned_to`` holds every event up to it: the
memory is always a gap-free stretch ``(low, high]`` of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from operator import attrgetter
from typing import TYPE_CHECKING

from ..events import LoggedEvent
from ..store.base import Committed, LogPage, Page, Store

if TYPE_CHECKING:
    from .enrich import SpanProfiles

log = logging.getLogger(__name__)

CHUNK = 5_000  # events per read of the log
NEAR_HEAD = 4  # chunks looked at from the newest end before the rest are bisected
KEEP = 100_000  # events kept in memory (older chunks are dropped; hooks behind them are served by the trail)
TRAIL_KEEP = 20_000  # events the trail behind the memory keeps (a hook before or far past it reads alone)
TRAIL_IDLE_S = 1.0  # a trail no hook read from for this long is given up: the next hook behind starts another
LIVE_S = (
    1.0  # a hook that read this recently (or is stepping aside for ingest) is reading: the read-ahead waits
)
HOLD_TICK_S = 0.02  # how often a held read-ahead looks again
FRESH_S = (
    0.1  # a hook at the feed's head triggers no read within this long after the last one reached the head
)
MERGE_TYPES = (
    8  # a hook of at most this many types picks its events from the per-type index; more: walks the chunk
)

_seq = attrgetter("seq")
_high = attrgetter("high")


@dataclass(eq=False)
class Subscription:
    """A hook as the feed routes to it: what it matches (filters aside) and the event that wakes its worker."""

    account_id: int
    event_types: tuple[str, ...]
    list_id: int | None
    wake: asyncio.Event
    position: int = 0  # how far the hook has read the log (its worker keeps it current)
    read_at: float = 0.0  # monotonic time of its last read (its worker keeps it current)
    deferring: bool = False  # its sends are stepping aside for ingest: it reads on once they are done
    holds_after: int = 0  # while deferring: the events it holds to send are after this position

    def reading(self, now: float) -> bool:
        """Whether the hook is working through the log (not stuck on a slow destination or a retry's wait)."""
        return self.deferring or now - self.read_at < LIVE_S


@dataclass
class _Chunk:
    low: int  # holds every event with low < seq ≤ high
    high: int
    accounts: list[int]
    events: list[LoggedEvent]
    by_key: dict[tuple[int, str], list[LoggedEvent]] = field(default_factory=dict)
    # built at the first read of a hook narrowed to a list (:meth:`by_list`)
    _by_list: dict[tuple[int, int | None], list[LoggedEvent]] | None = None
    # the stored profiles its events name, per account, read once for every hook (:meth:`ProfileCache.of_spans`)
    profiles: dict[int, SpanProfiles] = field(default_factory=dict)
    # the feed's hooks by (account, type): who takes the chunk's events (:meth:`taken_of`)
    subscribers: dict[tuple[int, str], set[Subscription]] = field(default_factory=dict)

    @classmethod
    def of(cls, low: int, page: LogPage, subscribers: dict[tuple[int, str], set[Subscription]]) -> _Chunk:
        chunk = cls(low, page.scanned_to, page.accounts, page.events, subscribers=subscribers)
        for account, event in zip(page.accounts, page.events, strict=True):
            chunk.by_key.setdefault((account, event.event_type), []).append(event)
        return chunk

    def pick(
        self, account_id: int, types: frozenset[str], list_id: int | None, after: int, limit: int
    ) -> list[LoggedEvent]:
        """This chunk's events of the hook after ``after``, in seq order, at most ``limit``."""
        if list_id is None and self.only(account_id, types):  # every event of the chunk: a slice
            start = _start(self.events, after)
            return self.events[start : start + limit]
        listed: Sequence[LoggedEvent] = ()
        first = 0
        if list_id is not None:
            # the list's events: none at all for a list the chunk lacks (a hook narrowed to a quiet list reads
            # nothing), and when they are fewer than the types' they are the shorter walk
            listed = self.by_list().get((account_id, list_id)) or ()
            first = _start(listed, after)
            if first >= len(listed):
                return []
        starts: list[tuple[list[LoggedEvent], int]] = []  # the types' runs and where their events after begin
        if len(types) <= MERGE_TYPES:
            for event_type in types:
                run = self.by_key.get((account_id, event_type))
                if run:
                    start = _start(run, after)
                    if start < len(run):
                        starts.append((run, start))
        if list_id is not None and (
            len(types) > MERGE_TYPES or len(listed) - first <= sum(len(run) - start for run, start in starts)
        ):
            return _first(
                (listed[i] for i in range(first, len(listed)) if listed[i].event_type in types), limit
            )
        if len(types) <= MERGE_TYPES:
            runs = [run[start : start + limit] if list_id is None else run[start:] for run, start in starts]
            # sorted runs concatenated and sorted again: timsort merges them in C
            # (measured: 20 µs for 8 runs of a 5 000-event chunk, heapq.merge 93 µs)
            merged: Sequence[LoggedEvent] = (
                runs[0] if len(runs) == 1 else sorted(chain.from_iterable(runs), key=_seq) if runs else ()
            )
            if list_id is None:
                return list(merged[:limit])
            return _first((e for e in merged if e.list_id == list_id), limit)
        start = _start(self.events, after)
        accounts, events = self.accounts, self.events
        return _first(
            (
                events[i]
                for i in range(start, len(events))
                if accounts[i] == account_id and events[i].event_type in types
            ),
            limit,
        )

    def profile_ids(self, account_id: int) -> set[str]:
        """The profile ids the account's events in this chunk name."""
        return {
            e.profile_id
            for (account, _), run in self.by_key.items()
            if account == account_id
            for e in run
            if e.profile_id is not None
        }

    def events_of(self, account_id: int) -> int:
        """How many of this chunk's events are the account's."""
        return sum(len(run) for (account, _), run in self.by_key.items() if account == account_id)

    def taken_of(self, account_id: int) -> int:
        """How many of the account's events in this chunk a hook of the feed takes (one of its types)."""
        subscribers = self.subscribers
        return sum(
            len(run) for key, run in self.by_key.items() if key[0] == account_id and subscribers.get(key)
        )

    def by_list(self) -> dict[tuple[int, int | None], list[LoggedEvent]]:
        """The chunk's events by account and ``list_id``, in seq order (made once, when a hook narrowed to a list
        first reads the chunk)."""
        if self._by_list is None:
            self._by_list = {}
            for account, event in zip(self.accounts, self.events, strict=True):
                self._by_list.setdefault((account, event.list_id), []).append(event)
        return self._by_list

    def only(self, account_id: int, types: frozenset[str]) -> bool:
        """Whether every event of the chunk is of ``account_id`` and one of ``types``."""
        keys = self.by_key
        return all(account == account_id and event_type in types for account, event_type in keys)


class _Memory:
    """A stretch of the log in chunks, the newest ``keep`` events (at least one chunk): the feed's and the trail's."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._chunks: deque[_Chunk] = deque()
        self._kept = 0
        self.low = 0  # holds the log (low, high]

    def _hold(self, chunk: _Chunk) -> list[_Chunk]:
        """Keep ``chunk``, the newest; drop the oldest ones while more than ``keep`` events are kept (returned)."""
        self._chunks.append(chunk)
        self._kept += len(chunk.events)
        dropped: list[_Chunk] = []
        while self._kept > self.keep and len(self._chunks) > 1:
            dropped.append(self._chunks.popleft())
            self._kept -= len(dropped[-1].events)
            self.low = dropped[-1].high
        return dropped

    def covering(self, first: int, last: int) -> list[_Chunk] | None:
        """The chunks holding the log positions ``first`` to ``last``; None unless all are kept here."""
        chunks = self._chunks
        if not chunks or first <= chunks[0].low or last > chunks[-1].high:
            return None
        found: list[_Chunk] = []
        for chunk in self._after(first - 1):
            if chunk.low >= last:
                break
            found.append(chunk)
        return found

    def _after(self, after: int) -> Iterator[_Chunk]:
        """The chunks holding positions after ``after``, oldest first. Found from the newest end when that takes a
        few steps (a hook near the head, however many chunks light traffic made), else by bisection (a hook far
        behind: one of one-event batches asks once per event)."""
        chunks = self._chunks
        start = len(chunks)
        while start > 0 and chunks[start - 1].high > after:
            start -= 1
            if len(chunks) - start == NEAR_HEAD:  # the rest by bisection
                start = bisect_right(chunks, after, hi=start, key=_high)
                break
        return islice(chunks, start, None)

    def _page(
        self,
        account_id: int,
        types: frozenset[str],
        list_id: int | None,
        after: int,
        limit: int,
        high: int,
        caught_up: bool,
    ) -> Page:
        """The hook's events kept after ``after``, at most ``limit``: up to the last when ``limit`` were found,
        else up to ``high`` (and ``caught_up`` then says whether that is the log's head)."""
        found: list[LoggedEvent] = []
        for chunk in self._after(after):
            found += chunk.pick(account_id, types, list_id, after, limit - len(found))
            if len(found) >= limit:
                return Page(found, found[-1].seq, False)
        return Page(found, high, caught_up)


def _start(run: Sequence[LoggedEvent], after: int) -> int:
    """Where the events after ``after`` begin in ``run`` (in seq order)."""
    return bisect_right(run, after, key=_seq) if run and run[0].seq <= after else 0


def _first(events: Iterable[LoggedEvent], limit: int) -> list[LoggedEvent]:
    out: list[LoggedEvent] = []
    for event in events:
        out.append(event)
        if len(out) >= limit:
            break
    return out


class LogFeed(_Memory):
    def __init__(
        self,
        store: Store,
        *,
        chunk: int = CHUNK,
        keep: int = KEEP,
        fresh_s: float = FRESH_S,
        trail_keep: int = TRAIL_KEEP,
    ) -> None:
        super().__init__(keep)
        self.store = store
        self.chunk = chunk
        self.fresh_s = fresh_s
        self.high: int | None = None  # nothing held before the first read
        self._at_head = False
        self._dirty = False
        self._read_at = 0.0  # monotonic time of the last read that reached the head
        self._pass: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._subscribers: dict[tuple[int, str], set[Subscription]] = {}
        self._accounts: dict[int, set[Subscription]] = {}
        self._held = False  # the read-ahead waits for hooks reading what it would push out (``_crowded``)
        self._appended_by: set[int] = set()  # accounts whose appends the feed has not read to the head since
        self.reads = 0  # log reads so far (for tests and benchmarks)
        self.trail = _Trail(store, chunk, trail_keep, self._subscribers) if trail_keep else None

    # --- who is routed to --------------------------------------------------------------------------------
    def subscribe(self, sub: Subscription) -> None:
        if sub.account_id not in self._accounts:
            # the account's appends were not read while it had no hook (:meth:`appended`): the log may hold this
            # hook's events past what the feed has, so the next read goes to the store, not to a "fresh" head
            self._dirty = True
        for event_type in sub.event_types:
            self._subscribers.setdefault((sub.account_id, event_type), set()).add(sub)
        self._accounts.setdefault(sub.account_id, set()).add(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        for event_type in sub.event_types:
            subs = self._subscribers.get((sub.account_id, event_type))
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[(sub.account_id, event_type)]
        left = self._accounts.get(sub.account_id)
        if left is not None:
            left.discard(sub)
            if not left:
                del self._accounts[sub.account_id]

    def appended(self, account_ids: set[int], committed: Committed | None = None) -> None:
        """Events of ``account_ids`` were committed in this process: take them, or read them soon (once), and wake
        the hooks they match. Accounts without a hook cost nothing.

        They are taken as they were committed (``committed``, where the store can tell their positions), not read
        back, when they are what comes next: the feed holds the log up to its head and nothing else is being read,
        and keeping them pushes out no chunk a hook has yet to read (:meth:`_crowded`). Otherwise they are read."""
        if self.high is None or not any(a in self._accounts for a in account_ids):
            return
        if (
            committed is not None
            and committed.after == self.high
            and self._at_head
            and not self._dirty
            and (self._pass is None or self._pass.done())
            and not self._crowded(account_ids, len(committed.rows))
        ):
            self._add(_Chunk.of(self.high, committed.page(), self._subscribers))
            self._read_at = time.monotonic()
            return
        self._dirty = True
        self._appended_by |= account_ids
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._pumping(), name="log-feed")

    async def close(self) -> None:
        for task in (self._pump, self._pass):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # --- reading -----------------------------------------------------------------------------------------
    async def read(
        self, account_id: int, event_types: Sequence[str], list_id: int | None, after: int, limit: int
    ) -> Page | None:
        """The hook's events after ``after`` from memory, like ``Store.read_events`` (at most ``limit``; the page
        says how far it covered and whether that is the log head). ``None`` when ``after`` is before the memory:
        the hook reads on its own."""
        if self.high is None or after >= self.high:
            fresh = self._at_head and not self._dirty and time.monotonic() - self._read_at < self.fresh_s
            if self.high is None or not fresh:
                await asyncio.shield(self._read_more())
            assert self.high is not None
            if after >= self.high:
                return Page([], after, self._at_head)
        types = frozenset(event_types)
        if after < self.low:
            if self.trail is None:
                return None
            return await self.trail.read(account_id, types, list_id, after, limit, self.low)
        return self._page(
            account_id, types, list_id, after, limit, self.high, self._at_head and not self._dirty
        )

    def spans(self, first: int, last: int) -> list[_Chunk] | None:
        """The chunks of the feed's memory, or else of the trail, holding log positions ``first`` to ``last`` (a
        batch's events: their profiles are read once per chunk for every hook); None when neither holds them all."""
        spans = self.covering(first, last)
        if spans is None and self.trail is not None:
            spans = self.trail.covering(first, last)
        return spans

    def _read_more(self) -> asyncio.Task[None]:
        """The read of the next chunk: one at a time, shared by everyone waiting for it."""
        if self._pass is None or self._pass.done():
            self._pass = asyncio.create_task(self._read_chunk())
        return self._pass

    async def _read_chunk(self) -> None:
        if self.high is None:  # the feed starts at the head: hooks behind it read on their own, then join
            start = await self.store.head()
            self.low = self.high = start
        after = self.high
        self._dirty = False
        appended_by, self._appended_by = self._appended_by, set()
        try:
            page = await self.store.read_log(after, self.chunk)
        except BaseException:
            self._appended_by |= appended_by
            raise
        self.reads += 1
        if self.high != after:  # cannot happen: one read at a time, and no commit is taken meanwhile
            return
        if page.events:
            self._add(_Chunk.of(after, page, self._subscribers))
        else:
            self.high = max(after, page.scanned_to)
            if not self._chunks:
                self.low = self.high
        self._at_head = page.caught_up
        if page.caught_up:
            self._read_at = time.monotonic()
        else:
            self._appended_by |= appended_by

    def _add(self, chunk: _Chunk) -> None:
        """Keep ``chunk``, the log right after what is kept: the oldest chunks it pushes out go to the trail from
        the first a hook still needs; wake the hooks it matches."""
        dropped = self._hold(chunk)
        if dropped and self.trail is not None:
            needed = next((i for i, c in enumerate(dropped) if self._needed(c)), len(dropped))
            self.trail.adopt(dropped[needed:])
        self.high = chunk.high
        self._route(chunk)

    def _subscribed(self, chunk: _Chunk) -> Iterator[Subscription]:
        """The hooks of an account and type ``chunk`` holds (one of several types: once per type)."""
        subscribers = self._subscribers
        return (sub for key in chunk.by_key for sub in subscribers.get(key, ()))

    def _behind(self, chunk: _Chunk) -> Iterator[Subscription]:
        """The hooks of an account and type ``chunk`` holds that have not read past it yet."""
        return (sub for sub in self._subscribed(chunk) if sub.position < chunk.high)

    def _needed(self, chunk: _Chunk) -> bool:
        """Whether a hook of an account and type ``chunk`` holds has not read past it yet."""
        return any(self._behind(chunk))

    def _route(self, chunk: _Chunk) -> None:
        """Wake the hooks whose account, type (and ``list_id``) occur in ``chunk``."""
        subscribers = self._subscribers
        for key, events in chunk.by_key.items():
            subs = subscribers.get(key)
            if not subs:
                continue
            lists: set[int | None] | None = None  # the key's list ids, gathered once for all its hooks
            for sub in subs:
                if sub.wake.is_set():
                    continue
                if sub.list_id is not None:
                    if lists is None:
                        lists = {e.list_id for e in events}
                    if sub.list_id not in lists:
                        continue
                sub.wake.set()

    def _crowded(self, appended_by: set[int] | None = None, events: int | None = None) -> bool:
        """Whether the next chunk read would push the oldest kept out while a hook reading has not read past it
        — its events would be read again, by the trail or by the hook alone — or while a hook stepping aside for
        ingest holds events of it to send (its batch's profiles, read once per chunk for every hook, would be
        read again for the batch alone: 100 hooks in a 100 000-event burst read 101 000 profiles so, as many as
        every chunk's); and only its own account's appends wait to be read: another account's never wait for it
        (they are read, and the hook reads alone). ``appended_by`` and ``events``: the accounts whose appends wait
        and the size of the next chunk, when not the feed's own (a commit it would take)."""
        if not self._chunks or self._kept + (self.chunk if events is None else events) <= self.keep:
            return False
        now = time.monotonic()
        oldest = self._chunks[0]
        holding = {
            sub.account_id
            for sub in self._subscribed(oldest)
            if (self.low <= sub.position < oldest.high and sub.reading(now))
            or (sub.deferring and self.low <= sub.holds_after < oldest.high)
        }
        return bool(holding) and (self._appended_by if appended_by is None else appended_by) <= holding

    async def _pumping(self) -> None:
        """Read until the head while appends keep coming (the read-ahead: chunks arrive while hooks send). It
        waits while reading on would push out what hooks reading have yet to read (a burst longer than the memory,
        the hooks stepping aside for ingest): a hook at the memory's end reads on by itself (:meth:`read`)."""
        while self._dirty or not self._at_head:
            self._held = self._crowded()
            try:
                while self._held:  # a poll: whether a hook is reading is a matter of time
                    await asyncio.sleep(HOLD_TICK_S)
                    self._held = self._crowded()
            finally:
                self._held = False
            try:
                await asyncio.shield(self._read_more())
            except Exception as exc:  # the store logs outages; hooks' own reads and polls go on meanwhile
                log.debug("log feed: read failed: %r", exc)
                return


class _Trail(_Memory):
    """A window of the log behind the feed's memory, read once for the hooks catching up there.

    It starts where the first hook behind asks, holds at most ``keep`` events (the oldest chunks dropped first) and
    reads on when a hook asks at or past its end — by no more than half of ``keep`` past it, so a hook far ahead of
    the others does not make it read what nobody needs yet; such a hook, and one before the window, read on their
    own. It never reads past ``ceiling``, the feed's memory, which serves from there. A window no hook read from
    for ``idle_s`` is given up: the next hook behind starts another where it asks."""

    def __init__(
        self, store: Store, chunk: int, keep: int, subscribers: dict[tuple[int, str], set[Subscription]]
    ) -> None:
        super().__init__(keep)
        self.subscribers = subscribers
        self.store = store
        self.chunk = chunk
        self.high = 0  # (low, high] while it has chunks
        self._pass: asyncio.Task[None] | None = None
        self.reads = 0  # log reads so far (for tests and benchmarks)
        self.idle_s = TRAIL_IDLE_S
        self._used_at = 0.0  # monotonic time of the last page served

    async def read(
        self,
        account_id: int,
        types: frozenset[str],
        list_id: int | None,
        after: int,
        limit: int,
        ceiling: int,
    ) -> Page | None:
        now = time.monotonic()
        # no window, or none a hook read from lately: the first hook behind (for a while) starts one where it asks
        left = not self._chunks or now - self._used_at >= self.idle_s
        reading = self._pass is not None and not self._pass.done()
        if left and not reading and not self.low <= after < self.high:
            self._chunks.clear()
            self._kept = 0
            self.low = self.high = after
        while after >= self.high and self.high < ceiling:
            if after < self.low or after - self.high > self.keep // 2:
                return None
            await asyncio.shield(self._read_more(ceiling))
        if after < self.low or after >= self.high:
            return None
        self._used_at = now
        return self._page(account_id, types, list_id, after, limit, self.high, False)

    def _read_more(self, ceiling: int) -> asyncio.Task[None]:
        if self._pass is None or self._pass.done():
            self._pass = asyncio.create_task(self._read_chunk(ceiling))
        return self._pass

    def adopt(self, chunks: list[_Chunk]) -> None:
        """Chunks the feed just dropped that hooks behind still need: kept here — the same events, not read again.
        They continue the window when it ends where they begin; else they start a new one, unless the window
        serves hooks now (read from within ``idle_s``) or a read of it is under way."""
        if not chunks or (self._pass is not None and not self._pass.done()):
            return
        now = time.monotonic()
        for chunk in chunks:
            if not (self._chunks and self.high == chunk.low):
                if self._chunks and now - self._used_at < self.idle_s:
                    return
                self._chunks.clear()
                self._kept = 0
                self.low = chunk.low
            self._hold(chunk)
            self.high = chunk.high
            self._used_at = now  # a window just made: not left alone yet

    async def _read_chunk(self, ceiling: int) -> None:
        after = self.high
        page = await self.store.read_log(after, min(self.chunk, ceiling - after))
        self.reads += 1
        if not page.events:
            self.high = max(after, min(page.scanned_to, ceiling))
            return
        self._hold(_Chunk.of(after, page, self.subscribers))
        self.high = page.scanned_to
