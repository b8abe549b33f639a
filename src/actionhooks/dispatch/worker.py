"""One hook's delivery loop: read matching events after the cursor, batch, send, record, advance.

The loop, for a hook at cursor ``c``:

1. Read matching events with ``seq > scan`` (``scan`` starts at ``c``) into the buffer; ``scan`` moves to the end
   of what the read covered. Reads are served by the dispatcher's shared :class:`~.feed.LogFeed` (the log read once
   for all hooks); a hook behind the feed's memory reads from the store on its own until it catches up — in one of
   its account's turns (:mod:`.budget`), held while it holds events so read.
2. When ``max_batch_size`` events wait, or the oldest has waited ``timeout_s`` since it was received, take the
   first ``max_batch_size`` as a batch — unless ingest has a backlog: then the worker steps aside first (bounded,
   :mod:`.priority`) and reads what came meanwhile.
3. Send it — once the previous batch's record is written (see below). Delivered → record the attempt and move the
   cursor past the batch (to ``scan`` when nothing else waits) in one transaction. Retryable → record the attempt,
   wait (``RetryPolicy``: by how long the batch has been failing), send the same batch again; later events wait
   (per-hook order). Permanent, or the batch's first try older than ``RetryPolicy.max_age_s`` → the batch's events
   become dead letters with the reason, and the cursor moves on.
4. Nothing to do → note ``scan`` as the cursor (so an idle hook does not rescan): the note is written lazily,
   sharing a commit with other writes (:class:`~.states.StateWriter`), then sleep until the feed routes an event
   of the hook's types, the oldest buffered event falls due, or the poll interval passes. When nothing is
   buffered either, the worker is *caught up*: every event up to the saved cursor is handled (delivered,
   dead-lettered or not matching) and no write is in flight — ``caught_up(seq)`` returns once that holds for
   ``seq`` (a cursor note counts once written).

Batch records go through the :class:`~.states.StateWriter` too: many hooks' records share commits.

Every store write is conditional on the hook's generation: when the hook was edited or deleted the write matches
nothing and the worker stops (the dispatcher starts a fresh one from the stored settings).

Every send (a retry too) first waits its turn on the hook's :class:`~.rate.RateLimiter` (``max_events_per_second``;
a limited hook's batches hold at most one second of its rate).

Sends run at most ``K`` batches ahead of their records: the record of a delivered batch is written while the next
ones are read, prepared and sent, and a batch is sent only while fewer than ``K`` records are unwritten. ``K`` is
bounded by events and by batches (:func:`sends_ahead`: :data:`EVENTS_AHEAD` events' worth, at most
:data:`SENDS_AHEAD` batches, at least one): a hook of one-event batches runs up to 64 sends ahead of their records,
so it does not wait a commit per event, and a hook of 1 000-event batches keeps K = 1. (Up to 1 000 one-event sends
ahead was measured too: no faster for the hook, whose rate aiohttp's cost per request sets, and ingest beside it
ran at 17–24 k events/s instead of 27–35 k: the sends took the event loop from it; 64 cost ingest nothing
measurable against 16, and let a NATS hook of one-event batches with 64 in flight deliver a little faster.)
Records are written in order, those waiting together in one write (one commit, shared with other hooks).

Sends themselves go one at a time by default: a batch goes out after the answer to the one before. A hook whose
transport allows more (``max_in_flight`` n of HTTP, NATS, RabbitMQ or Kafka; at most K) has up to n batches out at once,
each its own task (:class:`_Send`); their outcomes are handled in log order (:meth:`HookWorker._conclude_first`), so
records and the cursor move exactly as above (a crash may then redeliver K + n - 1 batches: those unrecorded and
those out). A batch found failed stops new sends: the batches out before it are handled, it is retried until
delivered or dead-lettered, then the ones out with it are handled (a delivered one is not sent again). A worker
stopping while one fails records what the others did and moves no cursor (:meth:`HookWorker._abandon`): they all
stay for the next worker. A record that fails (the store down, a full disk) is tried again with back-off until it is
written — the worker does not crash, and sends nothing once ``K`` records wait — so a crash redelivers at most ``K``
batches (at most about 1 000 events, whatever the batch size). A read that finds the store unavailable is tried
again the same way.

:meth:`HookWorker.stop` asks for a graceful end: the batch being sent is finished and recorded, nothing new is sent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from .. import operational
from ..backoff import STORE_RETRY, RetryPolicy
from ..errors import DeliveryError, StaleHook, StoreUnavailable
from ..hooks import Matcher
from ..integrations import Batch, Message, Receipt, Transport, TransportContext, open_for_sending
from ..registry import Hook
from ..store.base import Attempt, DeadLetter, FailureStreak, Page, StateWrite, Store
from .budget import CATCH_UP_TURNS, SEND_BUDGET_BYTES, Budget
from .enrich import Enricher, Profiles
from .feed import LogFeed, Subscription
from .priority import Deferral
from .rate import RateLimiter
from .states import StateWriter

log = logging.getLogger(__name__)

EXCERPT = 500
MIN_WINDOW = 4_000  # log positions one read may span
MAX_WINDOW = 1_000_000
EVENTS_AHEAD = 1_000  # K: a hook's sends run at most this many events' batches ahead of their records…
SENDS_AHEAD = 64  # …and at most this many batches (1 000 took the event loop from ingest, BENCHMARKS.md)


def sends_ahead(max_batch_size: int) -> int:
    """K for a hook of ``max_batch_size``: batches its sends may run ahead of their records (docs/delivery.md)."""
    return max(1, min(SENDS_AHEAD, EVENTS_AHEAD // max_batch_size))


class HookWorker:
    def __init__(
        self,
        hook: Hook,
        store: Store,
        context: TransportContext,
        retry: RetryPolicy,
        poll_interval: float = 1.0,
        *,
        feed: LogFeed,
        states: StateWriter,
        rate: RateLimiter | None = None,
        deferral: Deferral | None = None,
        budget: Budget | None = None,
        turns: Budget | None = None,
    ) -> None:
        self.hook = hook
        self.failing = hook.last_error is not None  # the newest outcome known is a failure
        self.last_error = hook.last_error
        self.since_success = hook.last_success_at or 0.0  # failures after this belong to the current streak
        self.store = store
        self.feed = feed
        self.records = states
        self.context = context
        self.retry = retry
        self.poll_interval = poll_interval
        self.wake = asyncio.Event()
        spec = hook.spec
        self.matcher = Matcher(spec, hook.id)
        self.enricher = Enricher(spec, store, hook.account_id)
        self.rate = rate or RateLimiter(spec.max_events_per_second)
        self.deferral = deferral or Deferral(None)  # steps aside for ingest bursts (dispatch/priority.py)
        # the account's bytes of batches out at once (dispatch/budget.py)
        self.budget = budget or Budget(SEND_BUDGET_BYTES)
        # the account's turns at reading alone (dispatch/budget.py): taken for a read behind the feed, held while
        # events of such reads are (the buffer, batches out)
        self.turns = turns or Budget(CATCH_UP_TURNS)
        self._turn = False
        self.alone_through = -1  # the end of its latest read alone (events up to it may be its own copies)
        self.max_batch = self.rate.batch_size(spec.transport.max_batch_size)
        self.timeout_s = spec.transport.timeout_s
        self.read_limit = max(self.max_batch, 1000)
        self.buffer: list[Message] = []
        self.scan = hook.cursor
        self.saved_cursor = hook.cursor  # the newest cursor written or being written
        self.recorded_cursor = hook.cursor  # the newest cursor of a batch's record (written once settled)
        self.transport: Transport | None = None
        # records made, not yet known written (in order); those not yet handed to the store
        self._unwritten: collections.deque[asyncio.Future[bool]] = collections.deque()
        self._unsent: list[tuple[StateWrite, asyncio.Future[bool]]] = []
        self._writing: asyncio.Task[None] | None = None
        self.sends_ahead = sends_ahead(self.max_batch)
        # batches out at once (``max_in_flight``, at most K): sent, their outcomes not yet handled, oldest first
        self.in_flight = min(spec.transport.sends_in_flight(), self.sends_ahead)
        self._in_flight: collections.deque[_Send] = collections.deque()
        # a batch in flight answered with a failure (set by ``_try``), not yet handled
        self._failed_out = False
        self._stopping = asyncio.Event()
        # cancelled: a record that fails is given up (its batch is sent again by the next worker)
        self._cut_off = asyncio.Event()
        self.window = MIN_WINDOW
        # every event up to this log position is handled and recorded; moves when the worker catches up
        self.handled_through = hook.cursor
        self._progress = asyncio.Event()
        self._stale = False  # a cursor note found the hook changed
        self._waiters = 0  # callers of caught_up
        self.own_reads = 0  # reads from the store, not the feed (the hook was behind the feed's memory)
        self.subscription = Subscription(
            hook.account_id, tuple(spec.event_types), spec.list_id, self.wake, self.scan
        )

    async def run(self) -> None:
        self.transport = await open_for_sending(self.hook.spec.transport, self.context)
        self.feed.subscribe(self.subscription)
        try:
            await self._loop()
            await self._drain()
            await self._settle()
        except StaleHook:
            log.info("hook %s changed; worker stops", self.hook.id)
        finally:
            self.feed.unsubscribe(self.subscription)
            self._give_turn()
            # batches still out when the hook changed or the worker was cancelled: cut off, not recorded
            cut_off = [send.outcome for send in self._in_flight if send.outcome is not None]
            for outcome in cut_off:
                outcome.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*cut_off)
            # records being written: the try under way ends (a write begun in the store's thread finishes anyway,
            # so nothing of this worker's lands after its successor starts); one that fails is not tried again —
            # its batches are after the saved cursor and the next worker sends them again (at most K: a crash's)
            self._cut_off.set()
            if self._writing is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._writing)
            await self.transport.close()

    def stop(self) -> None:
        """End gracefully: finish and record the batch being sent (a retry's wait is cut short), send nothing new;
        :meth:`run` then returns. Events read but not sent stay after the saved cursor for the next worker."""
        self._stopping.set()
        self.wake.set()
        self.deferral.interrupt()  # a batch waiting for ingest is not sent: it stays for the next worker

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def caught_up(self, seq: int) -> None:
        """Return once every event up to log position ``seq`` is handled — delivered, dead-lettered or not
        matching the hook — with its cursor saved and no write in flight. Waits indefinitely: the caller bounds
        it (a hook whose batch keeps failing is not caught up until the batch is delivered or dead-lettered)."""
        self._waiters += 1  # while someone waits, cursor notes are written at once
        try:
            while self.handled_through < seq:
                self.wake.set()  # an idle worker is not woken by events it does not match
                progress = self._progress
                await progress.wait()
        finally:
            self._waiters -= 1

    def _went_idle(self) -> None:
        self._handled(self.recorded_cursor)

    def _handled(self, seq: int) -> None:
        if seq > self.handled_through:
            self.handled_through = seq
            self._progress.set()
            self._progress = asyncio.Event()

    def _note_cursor(self, cursor: int) -> None:
        """Save the idle position lazily (:meth:`StateWriter.note_cursor`); once written, every event up to it
        counts as handled (it was, and recorded, when noted). A failed note is superseded by the next one."""
        note = self.records.note_cursor(self.hook.id, self.hook.generation, cursor)

        def written(done: asyncio.Future[bool]) -> None:
            if done.cancelled() or done.exception() is not None:
                if self.saved_cursor == cursor:  # noted again when next idle
                    self.saved_cursor = self.recorded_cursor
                return
            if not done.result():
                self._stale = True
                self.wake.set()
            else:
                self._handled(cursor)

        note.add_done_callback(written)
        if self._waiters:
            self.records.hurry()

    async def _record(self, write: StateWrite, *, wait: bool = False) -> None:
        """Write delivery state, after every write made before (in order). The worker goes on without waiting for
        it (unless ``wait``); sends wait while ``K`` records are unwritten (:meth:`_settle`), so a stale hook is
        noticed within ``K`` batches (those may be delivered twice: at-least-once). A failing write is tried
        again until it is written."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._unsent.append((write, future))
        self._unwritten.append(future)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_all(), name=f"hook-{self.hook.id}-records")
        if wait:
            await self._settle()

    async def _settle(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` records are unwritten; StaleHook when one found the hook changed."""
        while len(self._unwritten) > keep or (self._unwritten and self._unwritten[0].done()):
            first = self._unwritten[0]
            ok = first.result() if first.done() else await asyncio.shield(first)
            self._unwritten.popleft()
            if not ok:
                raise StaleHook

    async def _write_all(self) -> None:
        """Hand the waiting records to the store together (one commit), in order, until none waits."""
        while self._unsent:
            group, self._unsent = self._unsent, []
            done = await self._written([write for write, _ in group])
            for (_, future), ok in zip(group, done, strict=True):
                future.set_result(ok)

    async def _written(self, writes: list[StateWrite]) -> list[bool]:
        """``writes`` done (one commit, shared with other hooks'), tried again with back-off while it fails: whether
        the hook's generation still held for each. One log line when they start failing and one when written."""
        failures = 0
        started = time.monotonic()
        while True:
            try:
                done = await self.records.write(writes)
            except Exception as error:
                failures += 1
                if failures == 1:
                    log.warning(
                        "hook %s: writing delivery state failed (%s: %s); trying again, sending nothing meanwhile",
                        self.hook.id,
                        type(error).__name__,
                        _oneline(error),
                    )
                if self._cut_off.is_set():
                    log.warning(
                        "hook %s: cut off with delivery state unwritten; those batches go out again",
                        self.hook.id,
                    )
                    raise
                await self._pause(STORE_RETRY.delay(failures), self._cut_off)
                continue
            if failures:
                log.warning(
                    "hook %s: delivery state written after %d failed tries in %.1f s",
                    self.hook.id,
                    failures,
                    time.monotonic() - started,
                )
            return done

    async def _read_page(self, limit: int) -> Page:
        """The next page of the hook's events, tried again with back-off while the store is unavailable."""
        failures = 0
        while True:
            try:
                return await self._read(limit)
            except StoreUnavailable:  # the store logs the outage once
                failures += 1
                await self._pause(STORE_RETRY.delay(failures))
                if self.stopping:
                    raise

    async def _read(self, limit: int) -> Page:
        """The next page of the hook's events: from the shared feed, or on its own while behind the feed — in a
        turn of the account's (:mod:`.budget`); a hook holding none of its own reads' events queues for one."""
        spec = self.hook.spec
        page = await self.feed.read(self.hook.account_id, spec.event_types, spec.list_id, self.scan, limit)
        if page is None and not self._holds_alone():
            self._give_turn()  # turns go round: the hooks waiting go first
            if not await self._until_stopped(self._take_turn()):
                return Page([], self.scan, False)
            # while it waited the feed's trail may have come to where the hook is
            page = await self.feed.read(
                self.hook.account_id, spec.event_types, spec.list_id, self.scan, limit
            )
        if page is None:
            self.own_reads += 1
            page = await self.store.read_events(
                self.hook.account_id, spec.event_types, spec.list_id, self.scan, limit, self.window
            )
            self.alone_through = page.scanned_to
        self.enricher.committed(page.scanned_to)
        return page

    def _holds_alone(self) -> bool:
        """Whether the hook holds events it read alone: its oldest event held (a batch out, else the buffer's
        first) is from before the end of its latest read alone."""
        oldest = self._in_flight[0].events[0] if self._in_flight else self.buffer[0] if self.buffer else None
        return oldest is not None and oldest.seq <= self.alone_through

    async def _take_turn(self) -> None:
        await self.turns.take(1)
        self._turn = True  # noted as it is granted: whatever ends the worker then, ``run`` gives it back

    def _give_turn(self) -> None:
        if self._turn:
            self._turn = False
            self.turns.give(1)

    async def _until_stopped(self, waiting: Awaitable[None]) -> bool:
        """Wait for ``waiting``; False (and it cancelled) when the worker is asked to stop first."""
        task = asyncio.ensure_future(waiting)
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return not task.cancelled()

    async def _pause(self, seconds: float, until: asyncio.Event | None = None) -> None:
        """Sleep ``seconds``, or less when asked to stop (or when ``until`` is set)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for((until or self._stopping).wait(), timeout=seconds)

    async def _loop(self) -> None:
        while not self.stopping:
            self.wake.clear()
            if self._stale:
                raise StaleHook
            if self._turn and not self._holds_alone():
                self._give_turn()
            caught_up = True
            # read when a full batch does not wait yet, or the buffer is half empty (not once per small batch)
            if len(self.buffer) < self.max_batch or len(self.buffer) <= self.read_limit // 2:
                caught_up = await self._fill(self.read_limit - len(self.buffer))
            if len(self.buffer) >= self.max_batch or (self.buffer and self._due_in() <= 0):
                self.subscription.deferring = True
                self.subscription.holds_after = self.buffer[0].seq - 1
                try:
                    stepped_aside = await self.deferral.step_aside()
                finally:
                    self.subscription.deferring = False
                if stepped_aside:
                    continue  # ingest went first: read what came meanwhile, the batch may now be fuller
                await self._deliver(self.buffer[: self.max_batch])
                del self.buffer[: self.max_batch]
                continue
            if not caught_up:
                continue
            await self._drain()  # nothing more to send now: handle what is in flight before waiting
            if not self.buffer:
                await self._settle()  # a note never overtakes a batch's record
                if self.scan > self.saved_cursor:
                    self._note_cursor(self.scan)
                    self.saved_cursor = self.scan
                self._went_idle()
                self.deferral.caught_up()
            wait = self.poll_interval if not self.buffer else min(self.poll_interval, self._due_in())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=max(wait, 0.001))

    async def _fill(self, limit: int) -> bool:
        """Read the next page into the buffer; whether it reached the log's head. The page is not kept beyond
        this call: a hook waiting for its next read (or a turn) holds only what its buffer holds — 277 hooks
        waiting for a turn in ``bench.fanout``'s ``1000 hooks at 1 %`` held 89 000 events of their last reads."""
        page = await self._read_page(limit)
        self._adapt_window(len(page.events), limit, page.caught_up)
        if self.matcher.trivial:
            self.buffer.extend(page.events)
        else:
            self.buffer.extend(e for e in page.events if self.matcher(e.body))
        self.scan = self.subscription.position = page.scanned_to
        self.subscription.read_at = time.monotonic()
        return page.caught_up

    def _adapt_window(self, found: int, limit: int, caught_up: bool) -> None:
        """Size the next read's span of log positions to the hook's share of the log: a full page means the
        hook's events are dense (a small span suffices, keeping each index scan short); a short page that did not
        reach the head means they are sparse (widen the span, so a far-behind hook catches up in few reads)."""
        if found >= limit:
            self.window = max(MIN_WINDOW, self.window // 2)
        elif not caught_up:
            self.window = min(MAX_WINDOW, self.window * 4)

    def _due_in(self) -> float:
        return self.buffer[0].received_at + self.timeout_s - time.time()

    async def _deliver(self, events: list[Message]) -> None:
        """Send ``events`` as the next batch. With one send in flight (the default) its outcome is handled before
        this returns; with more (``max_in_flight``) it returns once the batch is out and fewer than that many are
        — the outcomes are handled in order, by :meth:`_conclude_first`."""
        if self.stopping:
            return  # nothing new is sent; the events stay after the saved cursor
        # after this batch, everything up to ``scan`` is handled unless more events wait in the buffer
        cursor_after = events[-1].seq if len(self.buffer) > len(events) else self.scan
        events, messages = await self._prepare(events, cursor_after)
        if not events:
            return
        batch = Batch(
            hook_id=self.hook.id,
            batch_id=f"{self.hook.id}-{events[0].seq}-{events[-1].seq}",
            messages=messages,
        )
        send = _Send(batch, events, cursor_after, first_try=time.time())
        await self._conclude_answered()
        if self.stopping:
            return
        # at most K batches sent ahead of their records, and those still in flight besides
        await self._settle(self.sends_ahead - 1 + self.in_flight - 1 - len(self._in_flight))
        if not await self._launch(send):
            return
        self._in_flight.append(send)
        while len(self._in_flight) >= self.in_flight:
            await self._conclude_first()

    async def _launch(self, send: _Send) -> bool:
        """Send (again) after the hook's rate limit allows it; False when the worker stopped meanwhile (the batch
        stays after the saved cursor: the next worker sends it)."""
        paced = self.rate.reserve(len(send.batch.messages))  # the hook's max_events_per_second
        if paced > 0:
            await self._pause(paced)
            if self.stopping:
                return False
        send.attempts += 1
        send.at = time.time()
        if self.in_flight == 1:  # one at a time: the try runs here, without a task of its own
            outcome = asyncio.get_running_loop().create_future()
            outcome.set_result(await self._try(send.batch))
            send.outcome = outcome
        else:
            send.outcome = asyncio.get_running_loop().create_task(self._try(send.batch))
        return True

    async def _try(self, batch: Batch) -> tuple[Receipt | DeliveryError, float]:
        """One try of ``batch``: the receipt or the error, and the milliseconds it took."""
        assert self.transport is not None
        size = batch.size()
        await self.budget.take(size)  # the account's bytes out at once
        started = time.perf_counter()
        try:
            outcome: Receipt | DeliveryError = await self.transport.send(batch)
        except DeliveryError as err:
            outcome = err
        except Exception as exc:  # a transport bug must not stop the hook: retry it like any failure
            log.exception("hook %s: transport raised an unexpected error", self.hook.id)
            outcome = DeliveryError(f"internal error: {exc!r}")
        finally:
            self.budget.give(size)
        if isinstance(outcome, DeliveryError):
            self._failed_out = True
        return outcome, (time.perf_counter() - started) * 1000

    async def _conclude_answered(self) -> None:
        """Handle the batches in flight whose answers came, oldest first; when one of them failed, every batch up to
        it too (waiting for their answers), so that nothing new goes out before the failed one is retried."""
        if self._failed_out:
            failed = max((n for n, send in enumerate(self._in_flight) if send.failed), default=-1)
            for _ in range(failed + 1):
                if self._in_flight:  # none left when the worker stopped while the failed one waited
                    await self._conclude_first()
            self._failed_out = any(send.failed for send in self._in_flight)
        while self._in_flight and self._in_flight[0].answered:
            await self._conclude_first()

    async def _drain(self) -> None:
        """Handle the outcome of every batch in flight, in order."""
        while self._in_flight:
            await self._conclude_first()

    async def _conclude_first(self) -> None:
        """Handle the oldest batch in flight: delivered → its record moves the cursor past it; failed → retried
        (the batches sent after it wait for it, their outcomes kept) until delivered or dead-lettered. When the
        worker stops while it fails, it and every later batch stay after the saved cursor."""
        send = self._in_flight[0]
        while True:
            assert send.outcome is not None
            outcome, latency_ms = await send.outcome
            at = send.at
            if isinstance(outcome, Receipt):
                attempt = send.attempt(outcome, latency_ms)
                streak = await self._streak() if self.failing else None  # read before this success is written
                await self._record(StateWrite(self.hook.id, self.hook.generation, send.cursor_after, attempt))
                self._in_flight.popleft()
                self.saved_cursor = self.recorded_cursor = send.cursor_after
                if streak is not None:
                    await self._recovered(at, streak)
                self.since_success = at
                return
            error = outcome
            age = time.time() - send.first_try
            give_up = error.permanent or self.retry.expired(age)
            self.failing, self.last_error = True, error.reason
            failed = send.attempt(error, latency_ms, "failed" if give_up else "retry")
            if give_up:
                reason = (
                    error.reason
                    if error.permanent
                    else f"gave up after {send.attempts} attempts in {age:.0f} s: {error.reason}"
                )
                dead = [
                    DeadLetter(
                        hook_id=self.hook.id,
                        event_seq=e.seq,
                        event_id=e.id,
                        payload=e.body,
                        reason=reason,
                        attempts=send.attempts,
                        failed_at=at,
                    )
                    for e in send.events
                ]
                await self._record(
                    StateWrite(self.hook.id, self.hook.generation, send.cursor_after, failed, dead, reason)
                )
                self._in_flight.popleft()
                self.saved_cursor = self.recorded_cursor = send.cursor_after
                log.warning("hook %s: %d events dead-lettered: %r", self.hook.id, len(dead), reason)
                await self._dead_lettered(send.events, reason, at)
                return
            await self._record(
                StateWrite(self.hook.id, self.hook.generation, None, failed, last_error=error.reason),
                wait=True,
            )
            if not self.stopping:
                await self._pause(self.retry.delay(send.attempts, age, error.retry_after))
            if self.stopping or not await self._launch(send):
                await self._abandon()
                return

    async def _abandon(self) -> None:
        """The worker stops while its oldest batch in flight is undelivered: the batches sent after it are
        finished and their attempts recorded, but no cursor moves — they all stay after the saved cursor."""
        self._in_flight.popleft()
        while self._in_flight:
            send = self._in_flight.popleft()
            assert send.outcome is not None
            outcome, latency_ms = await send.outcome
            attempt = send.attempt(outcome, latency_ms)
            await self._record(StateWrite(self.hook.id, self.hook.generation, None, attempt))

    async def _streak(self) -> FailureStreak:
        """The failures since the hook last delivered (their records are written: a failed try waits for its)."""
        await self._settle()
        try:
            return await self.store.failure_streak(self.hook.id, self.since_success)
        except Exception:  # the notice goes out without the counts rather than not at all
            return FailureStreak(None, 0)

    async def _recovered(self, at: float, streak: FailureStreak) -> None:
        """The first delivered batch after failures: write ``hook.recovered`` to the account's log."""
        self.failing = False
        notice = operational.notice(
            self.hook.account_id,
            operational.HOOK_RECOVERED,
            self.hook.id,
            self.hook.spec.name,
            at,
            last_error=self.last_error,
            failing_since=operational.rfc3339(streak.first_at) if streak.first_at is not None else None,
            failed_attempts=streak.attempts,
        )
        await operational.publish(self.store, notice)

    async def _dead_lettered(self, events: list[Message], reason: str, at: float) -> None:
        """Events sent to dead letters: write ``hook.dead_lettered`` (not for a batch of operational events only:
        two hooks failing on each other's notices would feed each other for ever)."""
        if all(e.event_type in operational.OPERATIONAL_CODES for e in events):
            return
        notice = operational.notice(
            self.hook.account_id,
            operational.HOOK_DEAD_LETTERED,
            self.hook.id,
            self.hook.spec.name,
            at,
            reason=reason,
            events=len(events),
            first_seq=events[0].seq,
            last_seq=events[-1].seq,
            event_ids=[e.id for e in events[: operational.MAX_EVENT_IDS]],
        )
        await operational.publish(self.store, notice)

    async def _profiles(self, events: list[Message]) -> Profiles:
        """The stored profiles of the batch's events, from the profile cache the hooks share
        (:class:`~.enrich.ProfileCache`): for events in the feed's memory, those read once per chunk for every
        hook; else by profile id — when it must query, the profiles of everything buffered are read in the same
        query: a hook of small batches makes one query per buffer, not one per batch."""
        spans = self.feed.spans(events[0].seq, events[-1].seq)
        if spans is not None:  # in the feed's memory: read once per chunk for every hook
            found = await self.enricher.of_spans(spans, len(self.buffer))  # the batch is its head
            if found is not None:
                return found
        if self.max_batch >= self.read_limit:
            return await self.enricher.profiles(events)
        return await self.enricher.profiles(events, self.buffer)  # the batch is the buffer's head

    async def _prepare(self, events: list[Message], cursor_after: int) -> tuple[list[Message], list[Message]]:
        """The events that go out and their messages for this hook's destination (the same objects when nothing
        is enriched: no copy per hook). An event that cannot become one (the log holds
        bytes enrichment cannot read, e.g. from before ingest refused them) is dead-lettered at once with the
        reason — retrying cannot help — so it never stalls the events behind it."""
        prepared: list[tuple[Message, Message]] = []
        unfit: list[tuple[Message, str]] = []
        found = await self._profiles(events)
        # the hook takes the stored payload, completed where a profile is found
        whole = not self.enricher.fields
        if whole and not (found and any(e.profile_id in found for e in events)):
            return events, events  # every message is the stored payload as it is
        for event in events:
            if whole and event.profile_id not in found:  # as it is
                prepared.append((event, event))
                continue
            try:
                prepared.append((event, self.enricher.message(event, found)))
            except Exception as exc:  # any failure to prepare is this event's, not the hook's
                unfit.append((event, f"cannot prepare the message: {type(exc).__name__}: {exc}"))
        if unfit:
            at = time.time()
            first, last = unfit[0][0].seq, unfit[-1][0].seq
            record = Batch(self.hook.id, f"{self.hook.id}-{first}-{last}", [e for e, _ in unfit])
            reason = unfit[0][1]
            attempt = _attempt(record, at, 0.0, "failed", None, None, reason)
            dead = [
                DeadLetter(
                    hook_id=self.hook.id,
                    event_seq=e.seq,
                    event_id=e.id,
                    payload=e.body,
                    reason=why,
                    attempts=0,
                    failed_at=at,
                )
                for e, why in unfit
            ]
            cursor = cursor_after if not prepared else None  # else the cursor moves with the batch
            await self._record(
                StateWrite(self.hook.id, self.hook.generation, cursor, attempt, dead, reason), wait=True
            )
            if cursor is not None:
                self.saved_cursor = self.recorded_cursor = cursor
            log.warning("hook %s: %d events dead-lettered: %r", self.hook.id, len(unfit), reason)
            await self._dead_lettered([e for e, _ in unfit], reason, at)
        return [event for event, _ in prepared], [message for _, message in prepared]


@dataclass(eq=False)
class _Send:
    """A batch out to the destination: ``outcome`` is its current try (``attempts`` so far, the latest at ``at``)."""

    batch: Batch
    events: list[Message]  # as logged (``batch`` holds them as they leave: enriched, maybe)
    cursor_after: int  # the cursor once this batch is handled
    first_try: float
    attempts: int = 0
    at: float = 0.0
    outcome: asyncio.Future[tuple[Receipt | DeliveryError, float]] | None = None

    @property
    def answered(self) -> bool:
        return self.outcome is not None and self.outcome.done() and not self.outcome.cancelled()

    @property
    def failed(self) -> bool:
        outcome = self.outcome
        return outcome is not None and self.answered and isinstance(outcome.result()[0], DeliveryError)

    def attempt(
        self, outcome: Receipt | DeliveryError, latency_ms: float, failed_as: str = "retry"
    ) -> Attempt:
        """The record of the latest try: ``delivered``, or ``failed_as`` with the error."""
        if isinstance(outcome, Receipt):
            return _attempt(
                self.batch, self.at, latency_ms, "delivered", outcome.status, outcome.response_excerpt
            )
        return _attempt(
            self.batch,
            self.at,
            latency_ms,
            failed_as,
            outcome.status,
            outcome.response_excerpt,
            outcome.reason,
        )


def _attempt(
    batch: Batch,
    at: float,
    latency_ms: float,
    outcome: str,
    status: int | None,
    excerpt: str | None,
    error: str | None = None,
) -> Attempt:
    return Attempt(
        hook_id=batch.hook_id,
        at=at,
        batch_id=batch.batch_id,
        events=len(batch.messages),
        first_seq=batch.messages[0].seq,
        last_seq=batch.messages[-1].seq,
        outcome=outcome,
        status=status,
        latency_ms=latency_ms,
        response_excerpt=(excerpt or "")[:EXCERPT] or None,
        error=error,
    )


def _oneline(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
