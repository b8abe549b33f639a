"""The dispatcher: one :class:`HookWorker` task per active hook, kept in step with the store.

It reconciles its workers with the store's active hooks at start, whenever the API says a hook changed, and every
``reconcile_interval`` seconds (changes made by other processes). A worker that ends or crashes is restarted by the
next reconciliation; one hook's failures never reach another's worker. While the store is unavailable, workers stop
and reconciliation fails quietly; workers wait, trying their reads and state writes again with back-off, and go on
when it is back (dispatch/worker.py).

The workers share one read of the log (:class:`~.feed.LogFeed`: appends in this process make it read the new events
once and wake only the workers they match; appends elsewhere are seen within ``poll_interval``) and one writer of
delivery state (:class:`~.states.StateWriter`: records of many hooks share commits, idle cursors are written
lazily). ``caught_up`` awaits a hook's worker having handled everything up to a log position (tests wait on it
instead of sleeping). ``stop(grace_s)`` lets the workers finish and record the batches they are sending for up to
``grace_s`` seconds, then cuts them off (graceful shutdown: a batch cut off is sent again by the next process —
at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..backoff import RetryPolicy
from ..errors import ActionhooksError, StoreUnavailable
from ..integrations import TransportContext
from ..registry import Hook, HookRegistry
from ..store.base import Store
from .budget import CATCH_UP_TURNS, SEND_BUDGET_BYTES, AccountBudgets
from .feed import LogFeed
from .priority import Deferral, IngestFirst
from .rate import HookRates
from .replay import SideDeliveries
from .states import StateWriter
from .worker import HookWorker

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        hooks: HookRegistry,
        context: TransportContext | None = None,
        retry: RetryPolicy | None = None,
        *,
        poll_interval: float = 1.0,
        reconcile_interval: float = 2.0,
        ingest_first: IngestFirst | None = None,
    ) -> None:
        self.store = store
        self.hooks = hooks
        self.context = context or TransportContext()
        self.retry = retry or RetryPolicy()
        self.poll_interval = poll_interval
        self.reconcile_interval = reconcile_interval
        self.workers: dict[int, tuple[HookWorker, asyncio.Task[None]]] = {}
        self._changed = asyncio.Event()
        self._reconciling = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._unreadable: dict[int, int] = {}  # hook id → generation whose settings could not be loaded
        self._worker_started = asyncio.Event()  # set, and replaced, whenever a worker starts
        self.feed = LogFeed(store)
        # sends step aside while this process's ingest has a backlog (dispatch/priority.py)
        self.ingest_first = ingest_first or IngestFirst(lambda: store.pending_appends)
        self.states = StateWriter(store)
        self.rates = (
            HookRates()
        )  # each hook's max_events_per_second, shared by every send path (dispatch/rate.py)
        self.budgets = AccountBudgets(SEND_BUDGET_BYTES)  # each account's bytes of batches out at once
        self.turns = AccountBudgets(CATCH_UP_TURNS)  # each account's hooks reading alone at once (budget.py)
        store.add_append_listener(self.feed.appended)
        # replays and redrives (dispatch/replay.py), run beside the live workers of the hooks they are for
        self.sides = SideDeliveries(
            store, self.context, self.retry, self._live_hook, self._changed.set, self.rates, self.budgets
        )

    async def start(self) -> None:
        await self.reconcile()
        self._loop_task = asyncio.create_task(self._reconcile_loop())

    @property
    def running(self) -> bool:
        """Started, not stopped, and its reconciliation loop alive (the readiness check)."""
        return self._loop_task is not None and not self._loop_task.done()

    def finish(self) -> None:
        """Begin a graceful stop (at SIGTERM): no new worker starts, and every worker finishes and records the
        batch it is sending and sends nothing new. :meth:`stop` then waits for them."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        for worker, _ in self.workers.values():
            worker.stop()

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop every worker: with ``grace_s`` > 0, first ask them to finish the batch they are sending and record
        it (:meth:`finish`), and wait up to ``grace_s`` seconds for that; then cancel what is left."""
        if grace_s > 0:
            self.finish()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if grace_s > 0 and self.workers:
            tasks = [task for _, task in self.workers.values()]
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            if late:
                log.warning(
                    "dispatcher: %d hooks still busy after %.1f s; cutting them off", len(late), grace_s
                )
        await self.sides.stop()
        for hook_id in list(self.workers):
            await self._stop_worker(hook_id)
        await self.feed.close()
        await self.states.close()
        await self.ingest_first.close()

    def hook_changed(self) -> None:
        """A hook was created, edited or deleted: reconcile soon (without waiting for it)."""
        self._changed.set()

    async def apply_changes(self) -> None:
        """Reconcile now and return when done: a hook stopped, edited or deleted in this process no longer has a
        worker on its old settings, so nothing accepted after the API's answer reaches it (a batch already in
        flight is cut off). Dispatchers in other processes see the change within ``reconcile_interval``."""
        async with self._reconciling:
            await self.reconcile()

    async def caught_up(self, hook_id: int, seq: int | None = None, timeout: float = 10.0) -> None:
        """Return once hook ``hook_id`` has handled (delivered, dead-lettered or found not matching) every event
        up to log position ``seq`` — by default the log head when called — with its cursor saved and nothing in
        flight. A worker replaced meanwhile (the hook was edited) is followed to its successor; a hook without a
        worker (stopped, deleted, unreadable) is waited for. ``TimeoutError`` after ``timeout`` seconds."""
        target = await self.store.head() if seq is None else seq
        async with asyncio.timeout(timeout):
            while True:
                entry = self.workers.get(hook_id)
                if entry is None or entry[1].done():
                    started = self._worker_started
                    await started.wait()
                    continue
                worker, task = entry
                waiting = asyncio.ensure_future(worker.caught_up(target))
                try:
                    await asyncio.wait({waiting, task}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiting.cancel()
                if waiting.done() and not waiting.cancelled():
                    return

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=self.reconcile_interval)
            self._changed.clear()
            try:
                async with self._reconciling:
                    await self.reconcile()
            except StoreUnavailable:
                pass  # the store logs the outage once; the next round tries again
            except Exception:
                log.exception("dispatcher: reconciliation failed; trying again")

    async def reconcile(self) -> None:
        """Stop workers whose hook is gone, stopped or edited (its generation moved); start workers for active
        hooks without one. Only new or changed hooks are loaded; one whose settings cannot be read is logged
        once per generation and skipped, never blocking the others."""
        wanted = await self.store.active_generations()
        for hook_id, (worker, task) in list(self.workers.items()):
            if wanted.get(hook_id) != worker.hook.generation or task.done():
                await self._stop_worker(hook_id)
            if hook_id not in wanted:
                self.rates.forget(hook_id)
        for hook_id, generation in wanted.items():
            if hook_id in self.workers or self._unreadable.get(hook_id) == generation:
                continue
            try:
                hook = await self.hooks.load_hook(hook_id)
            except StoreUnavailable:
                raise
            except ActionhooksError as exc:
                log.error("dispatcher: hook %s cannot be loaded: %s", hook_id, exc)
                self._unreadable[hook_id] = generation
                continue
            if hook is not None and hook.spec.active:
                self._start_worker(hook)
        await self.sides.reconcile()

    def _live_hook(self, hook_id: int) -> Hook | None:
        """The hook as its running worker has it (side deliveries run only beside one)."""
        entry = self.workers.get(hook_id)
        return None if entry is None or entry[1].done() or entry[0].stopping else entry[0].hook

    def _start_worker(self, hook: Hook) -> None:
        worker = HookWorker(
            hook,
            self.store,
            self.context,
            self.retry,
            self.poll_interval,
            feed=self.feed,
            states=self.states,
            rate=self.rates.of(hook.id, hook.spec.max_events_per_second),
            deferral=Deferral(self.ingest_first),
            budget=self.budgets.of(hook.account_id),
            turns=self.turns.of(hook.account_id),
        )
        task = asyncio.create_task(worker.run(), name=f"hook-{hook.id}")
        task.add_done_callback(self._worker_done)
        self.workers[hook.id] = (worker, task)
        self._worker_started.set()
        self._worker_started = asyncio.Event()

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, StoreUnavailable):  # the store logs the outage; the worker resumes from its cursor
            log.info("dispatcher: %s stopped: %s; restarting it", task.get_name(), exc)
        elif exc is not None:  # restarted by the next periodic reconciliation, not at once: no hot crash loop
            log.error("dispatcher: %s crashed: %r; restarting it", task.get_name(), exc, exc_info=exc)
        else:
            self._changed.set()

    async def _stop_worker(self, hook_id: int) -> None:
        _, task = self.workers.pop(hook_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
