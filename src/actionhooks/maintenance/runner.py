"""The background jobs' loop: take (or renew) the lease, run a round (pruning, then auto-disable), wait, again.

Several processes may share a database (PostgreSQL: API-only processes beside the dispatching one); each runs this
loop, and only the holder of the ``maintenance`` lease (a row of the ``leases`` table, taken with a conditional
UPDATE, valid for ``LEASE_TTL_S``) does the work. A holder that dies leaves its lease to expire; another process
takes it within a TTL. Clocks of the processes must agree to within a few seconds.

:meth:`Maintenance.health` says whether the jobs are keeping up: the process's readiness check
``background_jobs`` (``GET /readyz``) is not ready while they are not running, the lease was not checked or no
round completed for ``3 × interval + LEASE_TTL_S``, or ``FAILED_ROUNDS_NOT_READY`` rounds in a row failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

from ..config import Retention
from ..errors import StoreUnavailable
from ..registry import HookRegistry
from ..store.base import Store
from .auto_disable import disable_failing
from .retention import PruneRound, prune_round

log = logging.getLogger(__name__)

LEASE = "maintenance"
LEASE_TTL_S = 30.0
FAILED_ROUNDS_NOT_READY = 3  # rounds failed in a row before the jobs count as unhealthy
DISABLE_AFTER_S = 3 * 86400.0  # ACTIONHOOKS_DISABLE_AFTER_S's default


class JobHealth(NamedTuple):
    ok: bool
    detail: str


class Maintenance:
    def __init__(
        self,
        store: Store,
        hooks: HookRegistry,
        retention: Retention,
        disable_after_s: float = DISABLE_AFTER_S,
        hooks_changed: Callable[[], None] | None = None,
    ) -> None:
        """``hooks_changed`` is called after auto-disable stopped hooks (the dispatcher of this process, told at once;
        others notice within their reconciliation interval)."""
        self.store = store
        self.hooks = hooks
        self.retention = retention
        self.disable_after_s = disable_after_s
        self.hooks_changed = hooks_changed
        self.disabled: list[int] = []  # hooks auto-disabled by this object, oldest first
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.holds_lease = False
        self.last_round_at: float | None = None  # when a round last completed (here, holding the lease)
        self.last_lease_check_at: float | None = None
        self.last_error: str | None = None
        self.failed_rounds = 0  # in a row, up to now
        self.last_round = PruneRound()
        self._task: asyncio.Task[None] | None = None
        self._started_at = time.time()

    async def start(self) -> None:
        self._started_at = time.time()
        self._task = asyncio.create_task(self._loop(), name="maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.holds_lease:
            with contextlib.suppress(Exception):  # the lease expires by itself anyway
                await self.store.release_lease(LEASE, self.holder)
            self.holds_lease = False

    async def run_once(self, now: float | None = None) -> PruneRound | None:
        """Take or renew the lease and, holding it, run one round — pruning, then auto-disable — (None: another
        process holds it)."""
        self.holds_lease = await self.store.take_lease(LEASE, self.holder, LEASE_TTL_S)
        self.last_lease_check_at = time.time()
        if not self.holds_lease:
            return None
        done = await prune_round(self.store, self.hooks, self.retention, now)
        stopped = await disable_failing(self.store, self.hooks, self.disable_after_s, now)
        if stopped:
            self.disabled += stopped
            if self.hooks_changed is not None:
                self.hooks_changed()
        self.last_round, self.last_round_at, self.last_error = done, time.time(), None
        if done.expired:
            log.warning(
                "retention removed events hooks had not handled: %s",
                ", ".join(f"hook {h}: {n}" for h, n in sorted(done.expired.items())),
            )
        return done

    async def _loop(self) -> None:
        while True:
            more = False
            try:
                done = await self.run_once()
                more = done is not None and done.more
                self.failed_rounds = 0
            except StoreUnavailable as exc:  # the store logs the outage; try again next time
                self.last_error = str(exc)
                self.failed_rounds += 1
            except Exception as exc:
                self.last_error = repr(exc)
                self.failed_rounds += 1
                log.exception("maintenance: round failed; trying again")
            await asyncio.sleep(0 if more else self.retention.interval_s)

    def health(self, now: float | None = None) -> JobHealth:
        """Healthy while the lease was checked lately and, when held here, rounds complete (within
        ``3 × interval + LEASE_TTL_S`` of now), and fewer than ``FAILED_ROUNDS_NOT_READY`` failed in a row."""
        now = time.time() if now is None else now
        late = 3 * self.retention.interval_s + LEASE_TTL_S
        if self._task is None or self._task.done():
            return JobHealth(False, "background jobs are not running")
        if self.failed_rounds >= FAILED_ROUNDS_NOT_READY:
            return JobHealth(False, f"{self.failed_rounds} rounds failed in a row: {self.last_error}")
        checked = self.last_lease_check_at or self._started_at
        if now - checked > late:
            return JobHealth(
                False, f"lease not checked for {now - checked:.0f} s: {self.last_error or 'busy'}"
            )
        if self.holds_lease:
            finished = self.last_round_at or self._started_at
            if now - finished > late:
                return JobHealth(False, f"no pruning round completed for {now - finished:.0f} s")
            return JobHealth(True, "pruning here")
        return JobHealth(True, "another process holds the lease")
