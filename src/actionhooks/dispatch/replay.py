"""Side deliveries: replays of the log and redrives of dead letters, sent to a hook beside its live delivery.

A side delivery is a row of the store with its own cursor (:class:`~actionhooks.store.base.SideDelivery`); one
:class:`SideRunner` task sends it while it is ``running`` and its hook is active:

- a **replay** reads the hook's events (account, types — the replay's, within the hook's —, ``list_id``) after its
  cursor up to its end, keeps those accepted in ``[from, to)`` that the hook's filters accept, and sends them in
  full batches of the hook's ``max_batch_size``, in log order;
- a **redrive** reads the dead letters queued on it in their original (log) order and sends them the same way; a
  delivered letter leaves the dead letters, a batch given up on returns its letters with the new reason.

Each message is what live delivery would send now (the same ``custom_data_fields`` enrichment from the stored
event, the same event ``id``), through a transport of the hook's settings (the same code as live delivery), in a
:class:`~actionhooks.integrations.base.Batch` marked with :class:`~actionhooks.integrations.base.SideMark`: the
header ``Actionhooks-Replay`` (``Actionhooks-Redrive``) and transport-level dedupe ids of their own (the HTTP
``webhook-id`` is the batch id ``<hook>-replay-<id>-<first seq>-<last seq>``, NATS ``Nats-Msg-Id`` is
``<event id>:replay-<id>``). A failing batch is retried with the hook's back-off like a live one; a permanent error,
or one failing for ``RetryPolicy.max_age_s``, fails the replay (``state: failed``, ``error``) — its events are
not dead-lettered: the replay can be made again — or returns a redrive's letters with the new reason.

Progress (``sent``, the cursor, delivered letters removed) is written at most every :data:`PROGRESS_S` seconds and
when the delivery ends: a restart resumes from the last write, sending again at most what was sent since
(at-least-once, like live delivery). A write that matches nothing (cancelled, the hook deleted) stops the runner.

Isolation: a runner reads at most :data:`PAGE` events at a time and yields to the event loop after every batch;
it is one task per (hook, kind), so a hook's replay never holds up another hook or its own live delivery. Every
send waits its turn on the hook's rate limiter (``max_events_per_second``, :mod:`.rate`), shared with live delivery.
:class:`SideDeliveries` keeps the runners in step with the store (the dispatcher calls it at each reconciliation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import msgspec

from ..backoff import STORE_RETRY, RetryPolicy
from ..errors import DeliveryError, SideDeliveryEnded, StoreUnavailable
from ..hooks import Matcher
from ..integrations import Batch, Message, Transport, TransportContext, open_for_sending
from ..integrations.base import REDRIVE_HEADER, REPLAY_HEADER, SideMark
from ..registry import Hook
from ..store.base import DeadLetter, HookQuery, SideDelivery, SideState, Store
from .budget import SEND_BUDGET_BYTES, AccountBudgets, Budget
from .enrich import Enricher, Profiles
from .rate import HookRates, RateLimiter

log = logging.getLogger(__name__)

T = TypeVar("T")
PAGE = 5_000  # events (letters) read at a time
WINDOW = 200_000  # log positions one read of a replay spans at most
PROGRESS_S = 0.5  # progress is written at most this often (and at the end)


class _Envelope(msgspec.Struct):
    """What a dead letter's stored message says of its event (the log's columns)."""

    event_type: str = ""
    list_id: int | None = None
    profile_id: str | None = None


_envelope = msgspec.json.Decoder(_Envelope)


class SideRunner:
    def __init__(
        self,
        side: SideDelivery,
        hook: Hook,
        store: Store,
        context: TransportContext,
        retry: RetryPolicy,
        rate: RateLimiter,
        budget: Budget | None = None,
    ) -> None:
        self.side = side
        self.hook = hook
        self.store = store
        self.context = context
        self.retry = retry
        spec = hook.spec
        self.matcher = Matcher(spec)
        self.enricher = Enricher(spec, store, hook.account_id, cached=False)  # profiles as they are now
        self.rate = rate  # the hook's one limiter (max_events_per_second), shared with its live delivery
        self.max_batch = rate.batch_size(spec.transport.max_batch_size)
        # the account's bytes out at once, shared with live delivery
        self.budget = budget or Budget(SEND_BUDGET_BYTES)
        header = REPLAY_HEADER if side.kind == "replay" else REDRIVE_HEADER
        self.mark = SideMark(header, str(side.id))
        self.transport: Transport | None = None
        # progress not yet written
        self._sent = 0
        self._cursor: int | None = None
        self._delivered: list[int] = []
        self._written_at = time.monotonic()

    async def run(self) -> None:
        self.transport = await open_for_sending(self.hook.spec.transport, self.context)
        try:
            if self.side.kind == "replay":
                await self._replay()
            else:
                await self._redrive()
        except SideDeliveryEnded:
            log.info("hook %s: %s %s stopped", self.hook.id, self.side.kind, self.side.id)
        finally:
            await self.transport.close()

    # --- replay -----------------------------------------------------------------------------------------
    async def _replay(self) -> None:
        side, spec = self.side, self.hook.spec
        types = side.event_types or tuple(spec.event_types)
        query = HookQuery(self.hook.id, self.hook.account_id, tuple(types), spec.list_id)
        start, end = side.from_at or 0.0, side.to_at or 0.0
        cursor = side.cursor
        waiting: list[Message] = []  # read, not yet sent: batches are full but for the last
        found: Profiles = {}  # the stored profiles of what waits, read once per page
        while cursor < side.end_seq or waiting:
            if cursor < side.end_seq:
                events, cursor = await self._retrying(
                    partial(self.store.replay_events, query, cursor, side.end_seq, PAGE, WINDOW)
                )
                chosen = [e for e in events if start <= e.received_at < end and self.matcher(e.body)]
                found.update(await self._retrying(partial(self.enricher.profiles, chosen)))
                waiting += chosen
            while len(waiting) >= self.max_batch or (waiting and cursor >= side.end_seq):
                batch = waiting[: self.max_batch]
                failure = await self._send(batch, found)
                if failure is not None:
                    await self._progress(force=True, state="failed", error=failure)
                    log.warning("hook %s: replay %s failed: %s", self.hook.id, side.id, failure)
                    return
                del waiting[: self.max_batch]
                self._sent += len(batch)
                self._cursor = batch[-1].seq if waiting else cursor
                await self._progress()
            if not waiting:
                found = {}
                self._cursor = cursor
                await self._progress()
        await self._progress(force=True, state="done")

    # --- redrive ----------------------------------------------------------------------------------------
    async def _redrive(self) -> None:
        after = (0, 0)
        while True:
            letters = await self._retrying(
                partial(self.store.redrive_letters, self.side.id, after, max(PAGE, self.max_batch))
            )
            if not letters:
                break
            page = [_event(letter) for letter in letters]
            found = await self._retrying(partial(self.enricher.profiles, page))
            for first in range(0, len(letters), self.max_batch):
                chunk = letters[first : first + self.max_batch]
                failure = await self._send(page[first : first + self.max_batch], found)
                after = (chunk[-1].event_seq, int(chunk[-1].id or 0))
                if failure is None:
                    self._sent += len(chunk)
                    self._delivered += [int(letter.id or 0) for letter in chunk]
                    await self._progress()
                else:
                    now = time.time()
                    returned = [
                        msgspec.structs.replace(letter, reason=failure, attempts=1, failed_at=now)
                        for letter in chunk
                    ]
                    await self._progress(force=True, returned=returned)
                    log.warning(
                        "hook %s: redrive %s: %d letters failed again: %s",
                        self.hook.id,
                        self.side.id,
                        len(chunk),
                        failure,
                    )
        await self._progress(force=True, state="done")

    # --- shared -----------------------------------------------------------------------------------------
    async def _send(self, events: list[Message], found: Profiles) -> str | None:
        """Send ``events`` (completed from ``found``, their stored profiles read with the page) as one marked
        batch, retrying like live delivery: None once delivered, else the reason it was given up on (permanent,
        or failing for ``max_age_s``)."""
        assert self.transport is not None
        try:
            messages = [self.enricher.message(e, found) for e in events]
        except Exception as exc:  # the log holds bytes enrichment cannot read: retrying cannot help
            return f"cannot prepare the message: {type(exc).__name__}: {exc}"
        batch = Batch(
            hook_id=self.hook.id,
            batch_id=f"{self.hook.id}-{self.mark.tag}-{events[0].seq}-{events[-1].seq}",
            messages=messages,
            mark=self.mark,
        )
        attempts = 0
        first_try = time.time()
        size = batch.size()
        while True:
            attempts += 1
            await self.rate.take(len(messages))  # a retry is a send too: it waits its turn
            await self.budget.take(size)
            try:
                await self.transport.send(batch)
                return None
            except DeliveryError as err:
                error = err
            except Exception as exc:  # a transport bug must not stop the runner: retried like any failure
                log.exception("hook %s: transport raised an unexpected error", self.hook.id)
                error = DeliveryError(f"internal error: {exc!r}")
            finally:
                self.budget.give(size)
            age = time.time() - first_try
            if error.permanent:
                return error.reason
            if self.retry.expired(age):
                return f"gave up after {attempts} attempts in {age:.0f} s: {error.reason}"
            await self._progress(force=True)  # a long retry keeps what was sent so far
            await asyncio.sleep(self.retry.delay(attempts, age, error.retry_after))

    async def _retrying(self, read: Callable[[], Awaitable[T]]) -> T:
        """A store read, tried again with back-off while the store is unavailable."""
        failures = 0
        while True:
            try:
                return await read()
            except StoreUnavailable:
                failures += 1
                await asyncio.sleep(STORE_RETRY.delay(failures))

    async def _progress(
        self,
        *,
        force: bool = False,
        state: SideState = "running",
        error: str | None = None,
        returned: list[DeadLetter] | None = None,
    ) -> None:
        """Write what was done since the last write (every :data:`PROGRESS_S` at most, unless ``force``), then
        yield to the other tasks. ``SideDeliveryEnded`` when the side delivery no longer runs."""
        if not force and time.monotonic() - self._written_at < PROGRESS_S:
            await asyncio.sleep(0)
            return
        running = await self._retrying(
            partial(
                self.store.side_progress,
                self.side.id,
                cursor=self._cursor,
                sent=self._sent,
                delivered_letters=self._delivered,
                returned_letters=returned or (),
                state=state,
                error=error,
            )
        )
        self._sent, self._cursor, self._delivered = 0, None, []
        self._written_at = time.monotonic()
        if not running:
            raise SideDeliveryEnded


def _event(letter: DeadLetter) -> Message:
    """A dead letter as the event it was (its stored message says its type, ``list_id`` and ``profile_id``)."""
    try:
        envelope = _envelope.decode(letter.payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        envelope = _Envelope()
    return Message(
        letter.event_seq,
        letter.event_id,
        envelope.event_type,
        envelope.list_id,
        envelope.profile_id,
        letter.payload,
        letter.failed_at,
    )


class SideDeliveries:
    """The runners of one dispatcher: one per running side delivery whose hook is active here, at most one of
    each kind per hook at a time (a hook's redrives go one after the other, oldest first)."""

    def __init__(
        self,
        store: Store,
        context: TransportContext,
        retry: RetryPolicy,
        hook_of: Callable[[int], Hook | None],
        finished: Callable[[], None],
        rates: HookRates,
        budgets: AccountBudgets | None = None,
    ) -> None:
        self.store = store
        self.rates = rates
        self.budgets = budgets or AccountBudgets(SEND_BUDGET_BYTES)
        self.context = context
        self.retry = retry
        self.hook_of = hook_of  # the hook as the dispatcher's live worker has it (None: not running here)
        self.finished = finished  # a runner ended: reconcile soon (the hook's next redrive starts)
        self.runners: dict[int, tuple[SideRunner, asyncio.Task[None]]] = {}

    async def reconcile(self) -> None:
        wanted: dict[int, tuple[SideDelivery, Hook]] = {}
        kinds: set[tuple[int, str]] = set()
        for side in await self.store.running_side_deliveries():
            hook = self.hook_of(side.hook_id)
            if hook is None or (side.hook_id, side.kind) in kinds:
                continue
            kinds.add((side.hook_id, side.kind))
            wanted[side.id] = (side, hook)
        for side_id, (runner, task) in list(self.runners.items()):
            found = wanted.get(side_id)
            if found is None or found[1].generation != runner.hook.generation or task.done():
                await self._stop(side_id)
        for side_id, (side, hook) in wanted.items():
            if side_id not in self.runners:
                rate = self.rates.of(hook.id, hook.spec.max_events_per_second)
                budget = self.budgets.of(hook.account_id)
                runner = SideRunner(side, hook, self.store, self.context, self.retry, rate, budget)
                task = asyncio.create_task(runner.run(), name=f"hook-{hook.id}-{side.kind}-{side.id}")
                task.add_done_callback(self._done)
                self.runners[side_id] = (runner, task)

    def _done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, StoreUnavailable):
            log.error("dispatcher: %s crashed: %r; restarting it", task.get_name(), exc, exc_info=exc)
        self.finished()

    async def _stop(self, side_id: int) -> None:
        _, task = self.runners.pop(side_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def stop(self) -> None:
        for side_id in list(self.runners):
            await self._stop(side_id)
