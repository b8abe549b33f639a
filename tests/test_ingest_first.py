"""Ingest first (dispatch/priority.py): hooks' sends step aside while ingest is short of CPU, within a bound."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from actionhooks.dispatch.priority import BUSY_EVENTS, Deferral, IngestFirst

from .support import eventually, sqlite_service
from .test_dispatch import event, make_hook, send, stub


class Held(IngestFirst):
    """Ingest with a backlog for as long as the test says (the signal itself is the first test's subject)."""

    def __init__(self, defer_max_s: float) -> None:
        self.backlog = BUSY_EVENTS
        super().__init__(lambda: self.backlog, defer_max_s=defer_max_s)

    def release(self) -> None:
        self.backlog = 0


async def test_ingest_has_a_backlog_from_two_full_requests_waiting_for_their_commit() -> None:
    pending = 0
    first = IngestFirst(lambda: pending)
    assert not first.contended
    pending = 1_000  # one full request committing, or a thousand single events: no backlog
    assert not first.contended
    pending = BUSY_EVENTS
    assert first.contended
    waiting = [asyncio.create_task(first.eased(5)) for _ in range(3)]
    await asyncio.sleep(0.1)
    assert not any(w.done() for w in waiting)
    eased_at = time.monotonic()
    pending = 10
    await asyncio.wait_for(asyncio.gather(*waiting), 2)  # every waiting worker, woken by one timer
    assert time.monotonic() - eased_at < 2  # (their timeout was 5 s)
    started = time.monotonic()
    pending = BUSY_EVENTS
    await first.eased(0.1)  # a wait is bounded by its timeout
    assert 0.08 <= time.monotonic() - started < 1
    await first.close()


async def test_a_deferral_is_bounded_until_the_worker_catches_up() -> None:
    held = Held(defer_max_s=0.2)
    deferral = Deferral(held)
    started = time.monotonic()
    assert await deferral.step_aside()  # waits the whole allowance: ingest never eases
    assert 0.15 <= time.monotonic() - started < 2
    assert (
        not await deferral.step_aside()
    )  # allowance spent: no wait, sends go on sharing the cores as before
    assert deferral.waits == 1
    deferral.caught_up()
    waiting = asyncio.create_task(deferral.step_aside())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    held.release()  # ingest eased: the send goes at once
    assert await asyncio.wait_for(waiting, 1)
    assert not await Deferral(None).step_aside()  # a dispatcher without the signal never waits


async def test_a_workers_batch_waits_for_ingest_then_goes(tmp_path: Path) -> None:
    async with sqlite_service(tmp_path) as service:
        owner = await service.user("owner")
        held = Held(defer_max_s=0.6)
        service.dispatcher.ingest_first = held  # the hook's worker, started below, steps aside on it
        dest, transport = stub(max_batch_size=10, timeout_s=0)
        created = await make_hook(service, owner, transport, event_types=["deliv"])
        started = time.monotonic()
        first = await send(service, owner, [event(n) for n in range(5)])
        await asyncio.sleep(0.3)
        assert dest.calls == 0  # ingest contends: the due batch waits
        await dest.wait_for_calls(1)
        assert 0.5 <= time.monotonic() - started < 5  # and goes once the allowance is spent
        await service.dispatcher.caught_up(created["id"])
        assert dest.event_ids == first

        held.defer_max_s = 60  # (so that only the release below can let the next batch go)
        second = await send(service, owner, [event(n) for n in range(5, 10)])  # caught up: it may defer again
        await asyncio.sleep(0.3)
        assert dest.calls == 1
        held.release()
        await eventually(lambda: dest.calls == 2, timeout=10)  # ingest eased: sent, long before the allowance
        assert dest.event_ids == first + second


async def test_stopping_a_worker_ends_its_wait_for_ingest(tmp_path: Path) -> None:
    async with sqlite_service(tmp_path) as service:
        owner = await service.user("owner")
        service.dispatcher.ingest_first = Held(defer_max_s=60)
        dest, transport = stub(max_batch_size=10, timeout_s=0)
        created = await make_hook(service, owner, transport, event_types=["deliv"])
        await send(service, owner, [event(n) for n in range(5)])
        worker, task = service.dispatcher.workers[created["id"]]
        await eventually(lambda: worker.deferral.waits > 0)
        started = time.monotonic()
        worker.stop()
        await asyncio.wait_for(task, 2)
        assert time.monotonic() - started < 1  # not the allowance's minute
        assert dest.calls == 0  # the batch stays after the saved cursor, for the next worker
