"""The dispatcher: one :class:`HookWorker` task per active hook, kept in step with the store.

It reconciles its workers with the store's active hooks at start, whenever the API says a hook changed, and every
``reconcile_interval`` seconds (changes made by other processes). A worker that ends or crashes is restarted by the
next reconciliation; one hook's failures never reach another's worker. Appends in this process wake the workers of
the accounts they touched at once; appends elsewhere are seen within ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..backoff import RetryPolicy
from ..errors import ActionhooksError
from ..integrations import TransportContext
from ..store.base import Hook, Store
from .worker import HookWorker

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        context: TransportContext | None = None,
        retry: RetryPolicy | None = None,
        *,
        poll_interval: float = 1.0,
        reconcile_interval: float = 2.0,
    ) -> None:
        self.store = store
        self.context = context or TransportContext()
        self.retry = retry or RetryPolicy()
        self.poll_interval = poll_interval
        self.reconcile_interval = reconcile_interval
        self.workers: dict[int, tuple[HookWorker, asyncio.Task[None]]] = {}
        self._changed = asyncio.Event()
        self._reconciling = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._unreadable: dict[int, int] = {}  # hook id → generation whose settings could not be loaded
        store.add_append_listener(self._appended)

    async def start(self) -> None:
        await self.reconcile()
        self._loop_task = asyncio.create_task(self._reconcile_loop())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for hook_id in list(self.workers):
            await self._stop_worker(hook_id)

    def hook_changed(self) -> None:
        """A hook was created, edited or deleted: reconcile soon (without waiting for it)."""
        self._changed.set()

    async def apply_changes(self) -> None:
        """Reconcile now and return when done: a hook stopped, edited or deleted in this process no longer has a
        worker on its old settings, so nothing accepted after the API's answer reaches it (a batch already in
        flight is cut off). Dispatchers in other processes see the change within ``reconcile_interval``."""
        async with self._reconciling:
            await self.reconcile()

    def _appended(self, account_ids: set[int]) -> None:
        for worker, _ in self.workers.values():
            if worker.hook.account_id in account_ids:
                worker.wake.set()

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=self.reconcile_interval)
            self._changed.clear()
            try:
                async with self._reconciling:
                    await self.reconcile()
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
        for hook_id, generation in wanted.items():
            if hook_id in self.workers or self._unreadable.get(hook_id) == generation:
                continue
            try:
                hook = await self.store.load_hook(hook_id)
            except ActionhooksError as exc:
                log.error("dispatcher: hook %s cannot be loaded: %s", hook_id, exc)
                self._unreadable[hook_id] = generation
                continue
            if hook is not None and hook.spec.active:
                self._start_worker(hook)

    def _start_worker(self, hook: Hook) -> None:
        worker = HookWorker(hook, self.store, self.context, self.retry, self.poll_interval)
        task = asyncio.create_task(worker.run(), name=f"hook-{hook.id}")
        task.add_done_callback(self._worker_done)
        self.workers[hook.id] = (worker, task)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # restarted by the next periodic reconciliation, not at once: no hot crash loop
            log.error("dispatcher: %s crashed: %r; restarting it", task.get_name(), exc, exc_info=exc)
        else:
            self._changed.set()

    async def _stop_worker(self, hook_id: int) -> None:
        _, task = self.workers.pop(hook_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
