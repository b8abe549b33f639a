"""Retention: the window run forward (simulated time) keeps the log, the attempts and the SQLite file bounded;
events a hook had not handled are counted per hook when they expire; producer ids repeat after the window; the
background jobs run in one process (the lease); an existing SQLite file is switched to incremental vacuum."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from actionhooks.config import Retention
from actionhooks.events import NewEvent
from actionhooks.hooks import parse_hook
from actionhooks.maintenance import KEEP_DELIVERED_ATTEMPTS, Maintenance, prune_round
from actionhooks.registry import Hook, HookRegistry
from actionhooks.store import Attempt, Store, open_store

from .stub import StubDestination
from .support import eventually

BASE = 1_700_000_000.0  # simulated time starts here
STEP = 60.0  # one simulated minute per round


def make_event(account_id: int, at: float, event_type: str = "deliv", campaign_id: int = 1) -> NewEvent:
    data = {"event_type": event_type, "event_data": {"campaign_id": campaign_id, "message_id": 1}}
    body = msgspec.json.encode(data) + b" " * 200
    return NewEvent(account_id, uuid.uuid4().hex, event_type, 1, "p", at, body)


async def make_hook(registry: HookRegistry, account_id: int, **settings: Any) -> Hook:
    name = uuid.uuid4().hex
    StubDestination(name)
    spec = parse_hook(
        {"name": "h", "event_types": ["deliv"], "transport": {"type": "stub", "name": name}, **settings}
    )
    return await registry.create_hook(account_id, spec)


async def opened_registry(store: Store) -> tuple[HookRegistry, int]:
    registry = HookRegistry(store)
    await registry.open()
    account_id = await store.create_account("acme", uuid.uuid4().hex)
    return registry, account_id


def attempt(hook_id: int, at: float, outcome: str, n: int) -> Attempt:
    return Attempt(
        hook_id=hook_id,
        at=at,
        batch_id=f"{hook_id}-{n}",
        events=10,
        first_seq=n,
        last_seq=n,
        outcome=outcome,
        latency_ms=1.0,
    )


def file_bytes(store: Store) -> int | None:
    path = getattr(store, "dialect", None) and getattr(store.dialect, "path", None)  # type: ignore[attr-defined]
    if not path:
        return None
    return os.path.getsize(
        path
    )  # the WAL beside it is bounded by checkpoints (about 1000 pages + a transaction)


async def attempts_count(store: Store, hook_id: int) -> tuple[int, int]:
    rows = await store.list_attempts(hook_id, limit=100_000)
    failed = sum(1 for a in rows if a.outcome != "delivered")
    return len(rows), failed


async def test_the_window_run_forward_keeps_log_attempts_and_file_bounded(store: Store) -> None:
    registry, account_id = await opened_registry(store)
    hook = await make_hook(registry, account_id)
    retention = Retention(events_s=5 * STEP, attempts_s=5 * STEP, dead_letters_s=5 * STEP, chunk=300)
    sizes: list[tuple[int, int, int, int | None]] = []
    n = 0
    for minute in range(16):
        now = BASE + minute * STEP
        await store.append(account_id, [make_event(account_id, now) for _ in range(1000)])
        for _ in range(40):
            n += 1
            outcome = "retry" if n % 10 == 0 else "delivered"
            await store.finish_batch(attempt(hook.id, now, outcome, n), hook.generation, None)
        done = await prune_round(store, registry, retention, now=now)
        assert not done.more
        total, failed = await attempts_count(store, hook.id)
        sizes.append((await store.count_events(), total, failed, file_bytes(store)))
    steady = sizes[7:]
    # the log holds the window: 5 whole minutes before `now` plus the current one
    assert {s[0] for s in steady} == {6000}
    assert {s[1:3] for s in steady} == {(6 * 40, 6 * 4)}
    first, last = steady[0][3], steady[-1][3]
    if first is not None and last is not None:  # SQLite: freed pages are reused, the file stops growing
        # (within a few pages: the random producer-id index settles) while 9 more minutes' worth of events came
        assert last <= first * 1.02, [s[3] for s in sizes[5:]]
    # delivery counts are kept for the attempts' window too (6 periods of a minute here)
    (day,) = await store.delivery_counts(hook.id, [BASE + 15 * STEP - 86400])
    assert day.delivered == 6 * 36 * 10 and day.failed == 6 * 4 * 10
    # the hook's cursor never moved (no dispatcher): every event that left the window was lost to it
    activity = await store.hook_activity(hook.id)
    assert activity.expired_undelivered == 10 * 1000


async def test_delivered_attempts_beyond_the_newest_are_rolled_up_and_failed_ones_kept(store: Store) -> None:
    registry, account_id = await opened_registry(store)
    hook = await make_hook(registry, account_id)
    extra = 150
    for n in range(KEEP_DELIVERED_ATTEMPTS + extra):
        await store.finish_batch(attempt(hook.id, BASE + n / 1000, "delivered", n), hook.generation, None)
    for n in range(5):
        await store.finish_batch(attempt(hook.id, BASE + 2, "retry", n), hook.generation, None)
    await prune_round(store, registry, Retention(chunk=100), now=BASE + 3)
    total, failed = await attempts_count(store, hook.id)
    assert (total, failed) == (KEEP_DELIVERED_ATTEMPTS + 5, 5)
    newest = await store.list_attempts(hook.id, limit=KEEP_DELIVERED_ATTEMPTS + 5)
    assert min(a.first_seq for a in newest if a.outcome == "delivered") == extra
    (counts,) = await store.delivery_counts(hook.id, [0.0])
    assert counts.delivered == (KEEP_DELIVERED_ATTEMPTS + extra) * 10 and counts.failed == 50


async def test_expired_events_count_for_the_hooks_that_match_them_and_are_behind(store: Store) -> None:
    registry, account_id = await opened_registry(store)
    other_account = await store.create_account("other", uuid.uuid4().hex)
    behind = await make_hook(registry, account_id)
    opens = await make_hook(registry, account_id, event_types=["open"])
    filtered = await make_hook(registry, account_id, filters={"campaign_ids": [7]})
    stopped = await make_hook(registry, account_id, active=False)
    listed = await make_hook(registry, account_id, list_id=2)
    elsewhere = await make_hook(registry, other_account)
    ahead = await make_hook(registry, account_id)
    old = BASE
    events = [make_event(account_id, old, "deliv", campaign_id=7 if i < 4 else 1) for i in range(10)]
    events += [make_event(account_id, old, "open") for _ in range(3)]
    events += [make_event(account_id, old, "click") for _ in range(2)]
    await store.append(account_id, events)
    assert await store.save_cursor(ahead.id, ahead.generation, await store.head())
    done = await prune_round(store, registry, Retention(events_s=60, chunk=4), now=old + 61)
    assert done.events == 15
    expected = {behind.id: 10, opens.id: 3, filtered.id: 4}
    assert done.expired == expected
    for hook in (behind, opens, filtered, stopped, listed, elsewhere, ahead):
        activity = await store.hook_activity(hook.id)
        assert activity.expired_undelivered == expected.get(hook.id, 0), hook.id


async def test_young_events_stay_and_a_size_cap_removes_the_oldest_first(store: Store) -> None:
    registry, account_id = await opened_registry(store)
    now = BASE
    await store.append(account_id, [make_event(account_id, now - 30) for _ in range(50)])
    await store.append(account_id, [make_event(account_id, now) for _ in range(50)])
    done = await prune_round(store, registry, Retention(events_s=10, chunk=7), now=now)
    assert done.events == 50 and await store.count_events() == 50
    summary = await store.log_summary()
    assert summary.events == 50 and summary.oldest_received_at == now
    capped = Retention(events_s=3600, max_bytes=1, chunk=7)  # every byte is over: the log is emptied
    done = await prune_round(store, registry, capped, now=now, max_chunks=3)
    assert 21 <= done.events < 50 and done.more  # three chunks of at least 7 each, not all
    await prune_round(store, registry, capped, now=now)
    assert await store.count_events() == 0


async def test_a_producer_id_may_be_stored_again_once_it_left_the_window(store: Store) -> None:
    registry, account_id = await opened_registry(store)
    first = make_event(account_id, BASE)._replace(id="crm-1")
    assert await store.append(account_id, [first], {"crm-1"}) == [True]
    assert await store.append(account_id, [first], {"crm-1"}) == [False]
    await prune_round(store, registry, Retention(events_s=60), now=BASE + 61)
    again = make_event(account_id, BASE + 61)._replace(id="crm-1")
    assert await store.append(account_id, [again], {"crm-1"}) == [True]


async def test_dead_letters_leave_after_their_window(store: Store) -> None:
    from actionhooks.store import DeadLetter

    registry, account_id = await opened_registry(store)
    hook = await make_hook(registry, account_id)
    for day in range(3):
        letter = DeadLetter(
            hook_id=hook.id,
            event_seq=day,
            event_id=f"e{day}",
            payload=b"{}",
            reason="gone",
            attempts=1,
            failed_at=BASE + day * 86400,
        )
        await store.finish_batch(
            attempt(hook.id, letter.failed_at, "failed", day), hook.generation, day, [letter]
        )
    await prune_round(store, registry, Retention(dead_letters_s=1.5 * 86400), now=BASE + 2 * 86400)
    assert [d.event_id for d in await store.list_dead_letters(hook.id)] == ["e2", "e1"]


async def test_only_the_lease_holder_runs_the_jobs(store: Store) -> None:
    registry, _ = await opened_registry(store)
    first = Maintenance(store, registry, Retention())
    second = Maintenance(store, registry, Retention())
    assert await first.run_once() is not None
    assert await second.run_once() is None
    assert await first.run_once() is not None  # renewing its own lease
    await first.stop()  # gives the lease back
    assert await second.run_once() is not None
    assert await first.run_once() is None


async def test_background_jobs_report_their_health(store: Store) -> None:
    registry, _ = await opened_registry(store)
    jobs = Maintenance(store, registry, Retention(interval_s=0.05))
    other = Maintenance(store, registry, Retention(interval_s=0.05))
    assert not jobs.health().ok  # not started
    await jobs.start()
    await eventually(lambda: jobs.last_round_at is not None)
    await other.start()
    await eventually(lambda: other.last_lease_check_at is not None)
    try:
        assert jobs.health() == (True, "pruning here")
        assert other.health() == (True, "another process holds the lease")
        assert not jobs.health(now=time.time() + 3600).ok  # nothing completed for an hour: not healthy
    finally:
        await jobs.stop()
        await other.stop()
    assert not jobs.health().ok


def test_an_existing_sqlite_file_is_switched_to_incremental_vacuum(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE keep (x)")
        conn.execute("INSERT INTO keep VALUES (42)")
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone() == (0,)

    async def open_and_close() -> None:
        store = open_store(f"sqlite:///{path}")
        await store.open()
        await store.close()

    asyncio.run(open_and_close())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)
        assert conn.execute("SELECT x FROM keep").fetchall() == [(42,)]
