"""Fan-out: the log read once for all hooks and routed in memory (dispatch/feed.py); delivery state of many hooks
in shared commits, idle hooks' cursors written lazily (dispatch/states.py). Against the stub transport."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actionhooks.dispatch.budget import Budget
from actionhooks.dispatch.feed import LogFeed, Subscription
from actionhooks.dispatch.states import CURSOR_LAG_S
from actionhooks.dispatch.worker import EVENTS_AHEAD, SENDS_AHEAD, sends_ahead
from actionhooks.events import LoggedEvent, NewEvent
from actionhooks.store import Store, open_store
from actionhooks.store.base import Attempt, Committed, StateWrite

from .support import Service, User, eventually
from .test_derive import event as derive_event
from .test_derive import post
from .test_dispatch import event, make_hook, send, stub

TYPES = ["deliv", "send", "open", "click", "unsub"]


async def test_many_hooks_each_get_their_events_in_order_from_one_read(service: Service, owner: User) -> None:
    hooks: list[tuple[Any, dict[str, Any], list[str], int | None, list[int] | None]] = []
    for n in range(24):
        types = [TYPES[n % 5], TYPES[(n + 2) % 5]] if n % 3 else [TYPES[n % 5]]
        list_id = 2 if n % 4 == 1 else None
        campaigns = [100] if n % 6 == 5 else None
        dest, transport = stub(max_batch_size=7, timeout_s=0.02)
        settings: dict[str, Any] = {"event_types": types}
        if list_id is not None:
            settings["list_id"] = list_id
        if campaigns is not None:
            settings["filters"] = {"campaign_ids": campaigns}
        created = await make_hook(service, owner, transport, **settings)
        hooks.append((dest, created, types, list_id, campaigns))
    sent: list[tuple[str, dict[str, Any]]] = []
    for r in range(8):
        batch = [
            event(
                r * 40 + i,
                event_type=TYPES[(r + i) % 5],
                list_id=1 + i % 3,
                event_data={"campaign_id": 100 + i % 2, "n": i},
            )
            for i in range(40)
        ]
        sent += zip(await send(service, owner, batch), batch, strict=True)
    for dest, created, types, list_id, campaigns in hooks:
        await service.dispatcher.caught_up(created["id"])
        wanted = [
            i
            for i, e in sent
            if e["event_type"] in types
            and (list_id is None or e["list_id"] == list_id)
            and (campaigns is None or e["event_data"]["campaign_id"] in campaigns)
        ]
        assert wanted and dest.event_ids == wanted, created["id"]
    workers = [service.dispatcher.workers[created["id"]][0] for _, created, *_ in hooks]
    assert sum(w.own_reads for w in workers) == 0  # every read served by the shared feed
    assert service.dispatcher.feed.reads < 8 * 4  # a few reads per request, not one per hook


async def test_hooks_far_behind_share_the_trails_reads_and_rejoin(service: Service, owner: User) -> None:
    """Hooks that fell behind the feed's memory catch up from the trail, one read of the log for all of them,
    and are served by the feed again once they reach it."""
    feed = service.dispatcher.feed
    assert feed.trail is not None
    feed.keep, feed.chunk, feed.trail.chunk = 20, 10, 10
    slow = [stub(max_batch_size=5, timeout_s=0) for _ in range(4)]
    quick, quick_transport = stub(max_batch_size=5, timeout_s=0)
    created = [await make_hook(service, owner, transport) for _, transport in slow]
    await make_hook(service, owner, quick_transport)
    gates = [dest.hold() for dest, _ in slow]
    ids = await send(service, owner, [event(0)])
    workers = [service.dispatcher.workers[c["id"]][0] for c in created]
    for r in range(10):
        ids += await send(service, owner, [event(r * 10 + i + 1) for i in range(10)])
    await quick.wait_for_events(len(ids))  # the feed read everything; its memory holds the newest 20
    assert all(feed.low > w.scan for w in workers)
    for gate in gates:
        gate.set()
    for dest, _ in slow:
        await dest.wait_for_events(len(ids))
        assert dest.event_ids == ids
    assert sum(w.own_reads for w in workers) == 0
    # the ~90 events behind the memory read once, 10 a read, for all four hooks (each alone: 4 × 9 reads or more)
    assert feed.trail.reads <= 12, feed.trail.reads
    trail_reads = feed.trail.reads
    more = await send(service, owner, [event(1000 + i) for i in range(5)])
    for (dest, _), c in zip(slow, created, strict=True):
        await dest.wait_for_events(len(ids) + 5)
        await service.dispatcher.caught_up(c["id"])
        assert dest.event_ids == ids + more
    assert feed.trail.reads == trail_reads and sum(w.own_reads for w in workers) == 0  # back on the feed


async def test_a_hook_far_behind_reads_on_its_own_and_rejoins(service: Service, owner: User) -> None:
    """Without a trail (or before it), a hook behind the feed's memory reads its events on its own."""
    feed = service.dispatcher.feed
    feed.keep, feed.chunk, feed.trail = 20, 10, None
    slow, slow_transport = stub(max_batch_size=5, timeout_s=0)
    quick, quick_transport = stub(max_batch_size=5, timeout_s=0)
    created = await make_hook(service, owner, slow_transport)
    await make_hook(service, owner, quick_transport)
    gate = slow.hold()
    ids = await send(service, owner, [event(0)])
    worker = service.dispatcher.workers[created["id"]][0]
    for r in range(10):
        ids += await send(service, owner, [event(r * 10 + i + 1) for i in range(10)])
    await quick.wait_for_events(len(ids))  # the feed read everything; its memory holds the newest 20
    assert feed.low > worker.scan
    gate.set()
    await slow.wait_for_events(len(ids))
    assert slow.event_ids == ids
    assert worker.own_reads > 0
    worker.own_reads = 0
    more = await send(service, owner, [event(1000 + i) for i in range(5)])
    await slow.wait_for_events(len(ids) + 5)
    await service.dispatcher.caught_up(created["id"])
    assert slow.event_ids == ids + more
    assert worker.own_reads == 0  # back on the shared feed


async def test_hooks_behind_the_feed_read_alone_in_turns_of_their_account(
    service: Service, owner: User
) -> None:
    """Hooks behind the feed's memory and its trail read alone — each its own copy of its events — in the account's
    turns: at most ``turns`` of them hold events read alone at once; each gives its turn back once it holds none,
    so turns go round, and every hook gets all its events in order."""
    feed = service.dispatcher.feed
    feed.keep, feed.chunk, feed.trail = 20, 10, None
    service.dispatcher.turns.limit = 2  # before the account's first hook
    quick, quick_transport = stub(max_batch_size=5, timeout_s=0)
    await make_hook(service, owner, quick_transport)
    slow = []
    for _ in range(5):
        dest, transport = stub(max_batch_size=5, timeout_s=0)
        slow.append((dest, dest.hold(), (await make_hook(service, owner, transport))["id"]))
    ids = await send(service, owner, [event(0)])
    for r in range(10):
        ids += await send(service, owner, [event(r * 10 + i + 1) for i in range(10)])
    await quick.wait_for_events(len(ids))  # the feed read everything; its memory holds the newest 20
    workers = [service.dispatcher.workers[hook_id][0] for _, _, hook_id in slow]
    assert all(w.scan < feed.low for w in workers)
    turns = service.dispatcher.turns.of(owner.account_id)
    most = {"holding": 0, "turns": 0}

    async def watch() -> None:
        while True:
            most["holding"] = max(most["holding"], sum(w._holds_alone() for w in workers))
            most["turns"] = max(most["turns"], turns.used)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:
        for _, gate, _ in slow:
            gate.set()
        for dest, _, hook_id in slow:
            await dest.wait_for_events(len(ids))
            assert dest.event_ids == ids
            await service.dispatcher.caught_up(hook_id)
    finally:
        watcher.cancel()
    assert all(w.own_reads > 0 for w in workers)
    # two turns taken at once, never more; how many hooks hold events read alone at the same moment is up to the
    # machine's timing (a hook may send all it read before the next one's read returns): at most two
    assert most["turns"] == 2 and 1 <= most["holding"] <= 2, most
    assert turns.used == 0  # caught up, every hook gave its turn back


async def test_a_hook_waiting_for_a_turn_stops_at_once(service: Service, owner: User) -> None:
    """A hook queued for a turn at reading alone (all taken by a hook whose destination does not answer) ends when
    asked to stop gracefully, without waiting for the turn, and leaves no place in the queue."""
    feed = service.dispatcher.feed
    feed.keep, feed.chunk, feed.trail = 20, 10, None
    service.dispatcher.turns.limit = 1
    quick, quick_transport = stub(max_batch_size=5, timeout_s=0)
    await make_hook(service, owner, quick_transport)
    stuck, stuck_transport = stub(max_batch_size=5, timeout_s=0)
    first = stuck.hold()
    waiting, waiting_transport = stub(max_batch_size=5, timeout_s=0)
    gate = waiting.hold()
    await make_hook(service, owner, stuck_transport)
    created = await make_hook(service, owner, waiting_transport)
    ids = [*await send(service, owner, [event(0)])]  # both hooks' first batch, from the feed: held
    for r in range(5):
        ids += await send(service, owner, [event(r * 10 + i + 1) for i in range(10)])
    await quick.wait_for_events(len(ids))  # the feed has moved on: both hooks are behind it
    stuck.hold()  # the sends after the first never get an answer
    first.set()
    turns = service.dispatcher.turns.of(owner.account_id)
    await stuck.wait_for_open_sends(1)
    await eventually(lambda: stuck.calls == 1 and stuck.open_sends == 1 and turns.used == 1)
    worker, task = service.dispatcher.workers[created["id"]]
    gate.set()  # the second hook's first batch goes; then it queues for the turn the first one holds
    await waiting.wait_for_events(1)
    await eventually(lambda: turns._waiting)
    worker.stop()  # as the service's graceful shutdown asks
    await asyncio.wait_for(asyncio.shield(task), timeout=2.0)
    assert worker.own_reads == 0 and turns.used == 1 and not turns._waiting
    assert stuck.gate is not None
    stuck.gate.set()


async def test_idle_hooks_write_no_commits_of_their_own(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=1, timeout_s=0)
    busy = await make_hook(service, owner, transport, event_types=["deliv"])
    idle = [
        await make_hook(service, owner, stub(max_batch_size=1, timeout_s=0)[1], event_types=["click"])
        for _ in range(20)
    ]
    await service.dispatcher.caught_up(busy["id"])
    store = service.store
    before = store.commits
    started = time.monotonic()
    requests = 15
    for n in range(requests):
        await send(service, owner, [event(n)])
        await dest.wait_for_events(n + 1)
    await service.dispatcher.caught_up(busy["id"])
    commits = store.commits - before
    lazy_flushes = (time.monotonic() - started) / CURSOR_LAG_S + 2
    # one commit per append and per delivered batch; idle hooks add at most a lazy flush now and then
    # (before: each of the 20 idle hooks woke on every append and saved its cursor — 300 commits more)
    assert commits <= 2 * requests + lazy_flushes, commits
    assert all(h["id"] in service.dispatcher.workers for h in idle)


async def test_an_idle_hooks_cursor_follows_the_log_within_the_bound(service: Service, owner: User) -> None:
    busy_dest, busy_transport = stub(max_batch_size=10, timeout_s=0)
    await make_hook(service, owner, busy_transport, event_types=["deliv"])
    idle = await make_hook(service, owner, stub()[1], event_types=["click"])
    await send(service, owner, [event(i) for i in range(10)])
    await busy_dest.wait_for_events(10)
    head = await service.store.head()
    started = time.monotonic()

    async def saved() -> bool:
        hook = await service.store.load_hook(idle["id"])
        return hook is not None and hook.cursor >= head

    await eventually(saved, timeout=10)
    # the worker notices within its poll interval (1 s), the note is written within CURSOR_LAG_S
    assert time.monotonic() - started <= 1.0 + CURSOR_LAG_S + 1.0


async def test_write_states_shares_one_commit_and_answers_each(store: Store) -> None:
    account = await store.create_account("a", "h")
    first = await store.create_hook(account, b"s", True)
    second = await store.create_hook(account, b"s", True)
    attempt = Attempt(
        hook_id=first.id, at=time.time(), batch_id="b", events=1, first_seq=1, last_seq=1, outcome="delivered"
    )
    before = store.commits
    done = await store.write_states(
        [
            StateWrite(first.id, first.generation, 7, attempt),
            StateWrite(second.id, second.generation, 9),  # a cursor note
            StateWrite(second.id, second.generation + 1, 12),  # a stale generation: matches nothing
            StateWrite(second.id, second.generation, 4),  # a note never moves the cursor back
        ]
    )
    assert done == [True, True, False, True]
    assert store.commits == before + 1
    loaded = [await store.load_hook(h.id) for h in (first, second)]
    assert [h.cursor for h in loaded if h is not None] == [7, 9]
    assert [a.batch_id for a in await store.list_attempts(first.id)] == ["b"]


async def test_read_log_reads_every_account_in_seq_order(store: Store) -> None:
    one = await store.create_account("one", "h1")
    two = await store.create_account("two", "h2")

    def new(account: int, n: int) -> NewEvent:
        return NewEvent(account, f"id-{n}", "deliv", 1, "p", 1.0, b"{}")

    await store.append(one, [new(one, 1), new(one, 2)])
    await store.append(two, [new(two, 3)])
    await store.append(one, [new(one, 4)])
    page = await store.read_log(0, 3)
    assert page.accounts == [one, one, two] and [e.id for e in page.events] == ["id-1", "id-2", "id-3"]
    assert not page.caught_up
    rest = await store.read_log(page.scanned_to, 10)
    assert rest.accounts == [one] and rest.caught_up and rest.scanned_to == await store.head()
    assert (await store.read_log(rest.scanned_to, 10)).events == []


async def test_read_log_skips_a_stretch_of_the_log_with_nothing_left_in_it(store: Store) -> None:
    """A read covers at most ``limit`` log positions (so PostgreSQL plans an ordered scan of a few, not a sort of the
    log to its head); positions with nothing left in them (pruned) are skipped to the next event in the same read."""
    account = await store.create_account("one", "h1")
    old = [NewEvent(account, f"old-{n}", "deliv", 1, "p", 1.0, b"{}") for n in range(25)]
    new = [NewEvent(account, f"new-{n}", "deliv", 1, "p", time.time(), b"{}") for n in range(15)]
    await store.append(account, old)
    await store.append(account, new)
    pruned = await store.prune_events(100.0, None, [], 1000)
    assert pruned.rows == 25
    page = await store.read_log(0, 10)  # positions 1-25 hold nothing now
    assert [e.id for e in page.events] == [f"new-{n}" for n in range(10)] and not page.caught_up
    assert page.scanned_to == page.events[-1].seq
    rest = await store.read_log(page.scanned_to, 10)
    assert [e.id for e in rest.events] == [f"new-{n}" for n in range(10, 15)]
    assert rest.caught_up and rest.scanned_to == await store.head()


async def test_small_batches_send_up_to_k_ahead_of_their_records(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=1, timeout_s=0)
    created = await make_hook(service, owner, transport, event_types=["deliv"])
    gate = dest.hold()
    ids = [
        i
        for n in range(0, EVENTS_AHEAD + 200, 600)
        for i in await send(service, owner, [event(n + i) for i in range(600)])
    ]
    worker = service.dispatcher.workers[created["id"]][0]
    k = sends_ahead(1)
    assert (
        worker.sends_ahead == k == SENDS_AHEAD
    )  # one-event batches: 16 ahead (1 000 events would allow more)
    head = await service.store.head()  # the feed holds every event before sends start: the worker never idles
    await eventually(lambda: service.dispatcher.feed.high == head)
    held = service.store.faults.hold_writes()
    try:
        gate.set()
        await dest.wait_for_calls(k)
        await asyncio.sleep(0.3)
        assert dest.calls == k  # K batches out, their records not written: no more sends
    finally:
        held.set()
    await service.dispatcher.caught_up(created["id"])
    assert dest.event_ids == ids
    _, large_transport = stub(max_batch_size=1000, timeout_s=0)
    big = await make_hook(service, owner, large_transport)
    assert service.dispatcher.workers[big["id"]][0].sends_ahead == 1  # K = 1 for batches of 1 000


async def test_a_hook_subscribed_after_its_accounts_appends_were_skipped_reads_them(store: Store) -> None:
    """Appends of an account without a hook cost the feed nothing; a hook of that account that starts afterwards
    (created, or resumed from its cursor) must still get them at once, not after its poll interval — even when the
    feed read the head a moment ago (here: a 'moment' of a minute)."""
    one = await store.create_account("one", "h1")
    two = await store.create_account("two", "h2")

    def new(account: int, n: int) -> NewEvent:
        return NewEvent(account, f"id-{n}", "deliv", 1, "p", 1.0, b"{}")

    feed = LogFeed(store, fresh_s=60.0)
    feed.subscribe(Subscription(one, ("deliv",), None, asyncio.Event()))
    await store.append(one, [new(one, 1)])
    cursor = await store.head()
    assert (
        await feed.read(one, ["deliv"], None, cursor, 10)
    ) is not None  # the feed is at the head, and fresh
    await store.append(two, [new(two, 2), new(two, 3)])
    feed.appended({two})  # as the store's listener says it: account two has no hook, so nothing is read

    feed.subscribe(Subscription(two, ("deliv",), None, asyncio.Event()))  # its hook starts (or resumes)
    got: list[str] = []
    after = cursor
    for _ in range(3):  # what a worker does: read until the page says the head was reached
        page = await feed.read(two, ["deliv"], None, after, 10)
        assert page is not None
        got += [e.id for e in page.events]
        after = page.scanned_to
        if page.caught_up:
            break
    assert got == ["id-2", "id-3"]


async def test_the_feed_wakes_a_hook_of_a_list_only_for_events_of_that_list(store: Store) -> None:
    """Hooks narrowed to a ``list_id`` are woken by a chunk holding an event of their account, type and list — not
    by the same type in other lists (nor other types of their list), however many hooks share the type."""
    account = await store.create_account("one", "h1")
    feed = LogFeed(store)
    await feed.read(account, ["open"], None, 0, 10)  # the feed starts at the head
    subs = {
        name: Subscription(account, types, list_id, asyncio.Event())
        for name, types, list_id in [
            ("any list", ("open",), None),
            ("list 1", ("open",), 1),
            ("list 2", ("open",), 2),
            ("list 2, clicks", ("click",), 2),
            *[(f"idle {n}", ("open",), 100 + n) for n in range(20)],
        ]
    }
    for sub in subs.values():
        feed.subscribe(sub)
    await store.append(
        account,
        [
            NewEvent(account, "a", "open", 1, "p", 1.0, b"{}"),
            NewEvent(account, "b", "click", 1, "p", 1.0, b"{}"),
            NewEvent(account, "c", "open", None, "p", 1.0, b"{}"),
        ],
    )
    feed.appended({account})
    await eventually(lambda: subs["list 1"].wake.is_set())
    woken = {name for name, sub in subs.items() if sub.wake.is_set()}
    assert woken == {"any list", "list 1"}


async def test_the_read_ahead_waits_for_hooks_reading_what_it_would_push_out(store: Store) -> None:
    """A burst longer than the feed's memory while its hooks step aside for ingest (or work through it): the
    read-ahead stops where reading on would push out events a hook reading has yet to read — else each such hook
    reads them again alone (``bench.fanout``'s ``100 hooks at 10 %``: 870 000 events read alone of 2.25 million
    delivered). It goes on as the hook moves past them, or once the hook stops reading (a stuck destination)."""
    account = await store.create_account("one", "h1")
    feed = LogFeed(store, chunk=10, keep=30, trail_keep=0)
    base = await store.head()
    feed.high = feed.low = base  # the feed starts before the burst, as a running one would
    reader = Subscription(account, ("deliv",), None, asyncio.Event(), position=base)
    reader.deferring = True  # its sends step aside for ingest
    feed.subscribe(reader)
    await store.append(
        account, [NewEvent(account, f"id-{n}", "deliv", 1, "p", 1.0, b"{}") for n in range(100)]
    )
    feed.appended({account})
    await eventually(lambda: feed._held)
    assert (feed.low - base, feed.high - base) == (0, 30)  # three chunks; a fourth would push out the first
    reader.deferring = False
    reader.position, reader.read_at = base + 15, time.monotonic()  # it read past the first chunk
    await eventually(lambda: feed.high - base == 40 and feed._held)
    assert feed.low - base == 10
    reader.read_at = time.monotonic() - 2  # its destination hangs: it reads no more
    await eventually(lambda: feed._at_head)
    assert feed.high - base == 100 and not feed._held


async def test_the_read_ahead_waits_for_a_hook_stepping_aside_with_events_of_the_oldest_chunk_to_send(
    store: Store,
) -> None:
    """A hook stepping aside for ingest with a batch to send that begins in the oldest chunk has read past the
    chunk, but the batch's profiles are read once per chunk for every hook: the read-ahead waits, or the batch
    would read its profiles alone (``bench.fanout``'s ``100 hooks at 10 %``: each hook's first batch, 101 000
    profiles read alone). It goes on once the hook has sent (it no longer steps aside)."""
    account = await store.create_account("one", "h1")
    feed = LogFeed(store, chunk=10, keep=30, trail_keep=0)
    base = await store.head()
    feed.high = feed.low = base
    holder = Subscription(account, ("deliv",), None, asyncio.Event(), position=base + 30)
    holder.deferring, holder.holds_after = True, base + 5  # its batch: events after base + 5
    feed.subscribe(holder)
    await store.append(
        account, [NewEvent(account, f"id-{n}", "deliv", 1, "p", 1.0, b"{}") for n in range(100)]
    )
    feed.appended({account})
    await eventually(lambda: feed._held)
    assert (feed.low - base, feed.high - base) == (0, 30)
    assert feed.spans(base + 6, base + 30) is not None  # the batch's chunks are there for its profiles
    holder.deferring = False  # sent
    await eventually(lambda: feed._at_head)
    assert feed.high - base == 100 and not feed._held


async def test_another_accounts_appends_are_read_at_once_while_the_read_ahead_waits(store: Store) -> None:
    """A hook held up by its destination inside the memory holds the read-ahead back for its own account's burst,
    never for another account: the other account's events are read and its hook woken at once (the slow hook
    then reads alone, as it would have)."""
    one = await store.create_account("one", "h1")
    two = await store.create_account("two", "h2")
    feed = LogFeed(store, chunk=10, keep=30, trail_keep=0)
    base = await store.head()
    feed.high = feed.low = base
    slow = Subscription(one, ("deliv",), None, asyncio.Event(), position=base, read_at=time.monotonic() + 60)
    other = Subscription(two, ("deliv",), None, asyncio.Event(), position=base)
    for sub in (slow, other):
        feed.subscribe(sub)
    await store.append(one, [NewEvent(one, f"one-{n}", "deliv", 1, "p", 1.0, b"{}") for n in range(50)])
    feed.appended({one})
    await eventually(lambda: feed._held)
    await asyncio.sleep(0.1)
    assert feed._held and feed.high - base == 30  # held for as long as the slow hook reads there
    await store.append(two, [NewEvent(two, "two-1", "deliv", 1, "p", 1.0, b"{}")])
    feed.appended({two})
    await eventually(lambda: other.wake.is_set(), timeout=5)
    assert feed._at_head and feed.high - base == 51
    page = await feed.read(two, ["deliv"], None, feed.low, 10)  # (from where the memory begins now)
    assert page is not None and [e.id for e in page.events] == ["two-1"] and page.caught_up


async def test_the_trail_serves_hooks_within_its_window_and_no_others(store: Store) -> None:
    """The trail starts at the first hook behind, reads on as hooks reach its end (never past the feed's memory,
    never more than half its size ahead), keeps its newest events; a hook before it or far past it gets ``None``
    (it reads on its own) — until the window is left alone for a while, when the next hook behind starts another."""
    account = await store.create_account("one", "h1")
    await store.append(
        account, [NewEvent(account, f"id-{n}", "deliv", 1, "p", 1.0, b"{}") for n in range(100)]
    )
    base = await store.head() - 100  # the log's positions before these events
    feed = LogFeed(store, chunk=10, trail_keep=30)
    trail = feed.trail
    assert trail is not None

    async def read(after: int, limit: int = 4, ceiling: int = 80) -> list[int] | None:
        page = await trail.read(account, frozenset({"deliv"}), None, base + after, limit, base + ceiling)
        return None if page is None else [e.seq - base for e in page.events]

    assert await read(5) == [6, 7, 8, 9]  # started at 5: one read of 10
    assert (trail.low - base, trail.high - base, trail.reads) == (5, 15, 1)
    assert await read(13) == [14, 15]  # what it holds (the page ends at 15)
    assert await read(15) == [16, 17, 18, 19] and trail.reads == 2  # at its end: one more read
    assert await read(41) is None  # 16 past its end (25): more than half of 30 ahead
    assert await read(25, limit=20) == list(range(26, 36)) and trail.reads == 3  # (5, 35]: 30 kept
    assert await read(35) == [36, 37, 38, 39] and trail.low - base == 15  # the oldest 10 dropped
    assert await read(6) is None  # before the window now
    for at in (45, 55, 65):
        assert await read(at) == [at + 1, at + 2, at + 3, at + 4]
    assert await read(75, limit=10) == [76, 77, 78, 79, 80]  # never past the feed's memory (80)…
    assert trail.high - base == 80 and await read(80) is None  # …which serves from there
    assert trail.reads == 8
    trail.idle_s = 0.0  # the window left alone: the next hook behind starts another where it asks
    assert await read(6) == [7, 8, 9, 10] and (trail.low - base, trail.high - base) == (6, 16)


async def test_chunks_the_feed_drops_while_a_hook_still_needs_them_go_to_the_trail(store: Store) -> None:
    """A burst longer than the feed's memory: the chunks it drops while a hook has not read past them are kept by
    the trail as they are — the hook behind is served the same event objects, and nothing is read again; chunks no
    hook needs are not kept."""
    account = await store.create_account("one", "h1")
    base = await store.head()
    await store.append(
        account, [NewEvent(account, f"id-{n}", "deliv", 1, "p", 1.0, b"{}") for n in range(100)]
    )
    await store.append(account, [NewEvent(account, f"s-{n}", "send", 1, "p", 1.0, b"{}") for n in range(10)])
    feed = LogFeed(store, chunk=10, keep=30, trail_keep=100)
    trail = feed.trail
    assert trail is not None
    feed.high = feed.low = base  # the feed starts before the burst, as a running one would
    behind = Subscription(account, ("deliv",), None, asyncio.Event(), position=base + 25)
    sends = Subscription(account, ("send",), None, asyncio.Event(), position=base)  # its events come last
    for sub in (behind, sends):
        feed.subscribe(sub)
    kept: dict[int, LoggedEvent] = {}
    while not feed._at_head:
        await feed._read_more()
        kept.update((e.seq, e) for chunk in feed._chunks for e in chunk.events)
    assert (feed.low - base, feed.high - base) == (80, 110)
    # dropped: (0, 10] and (10, 20] — no hook needs them (the hook of sends is behind, but its events are all past
    # 100) — then (20, 80], kept by the trail
    assert (trail.low - base, trail.high - base, trail.reads) == (20, 80, 0)
    page = await feed.read(account, ["deliv"], None, base + 45, 10)
    assert page is not None and [e.seq - base for e in page.events] == list(range(46, 56))
    assert all(e is kept[e.seq] for e in page.events)  # the objects the feed read: no second copy
    assert trail.reads == 0
    assert (
        await feed.read(account, ["deliv"], None, base + 15, 10) is None
    )  # before the trail: reads on its own


async def test_a_hook_of_many_types_in_one_list_reads_that_lists_events_from_the_feed(store: Store) -> None:
    """More types than the per-type merge takes (MERGE_TYPES): the feed picks by the chunk's list index — the
    list's events of the hook's types, in seq order, after the position, within the limit."""
    account = await store.create_account("one", "h1")
    types = [f"t{n}" for n in range(12)]  # (event types are not checked by the store)
    feed = LogFeed(store)
    feed.subscribe(Subscription(account, tuple(types), 2, asyncio.Event()))
    start = await store.head()
    assert await feed.read(account, types, 2, start, 10) is not None  # the feed starts at the head
    sent = [
        NewEvent(account, f"id-{n}", types[n % 12] if n % 5 else "other", 1 + n % 3, "p", 1.0, b"{}")
        for n in range(60)
    ]
    await store.append(account, sent)
    feed.appended({account})  # as the store's listener says it
    wanted = [e.id for e in sent if e.list_id == 2 and e.event_type in types]
    got: list[str] = []
    after = start
    while True:
        page = await feed.read(account, types, 2, after, 7)
        assert page is not None and len(page.events) <= 7
        got += [e.id for e in page.events]
        after = page.scanned_to
        if page.caught_up:
            break
    assert got == wanted
    page = await feed.read(account, types, 99, start, 10)  # a list the log does not have: nothing, at once
    assert page is not None and page.events == []


async def test_a_hook_of_few_types_in_one_list_reads_that_lists_events_whichever_is_fewer(
    store: Store,
) -> None:
    """A hook of a few types narrowed to a list: the feed walks the list's events or merges the types', whichever
    are fewer — a rare list (2) and a common one (1) alike give the hook's events in seq order, within the limit;
    a list the log does not have gives nothing."""
    account = await store.create_account("one", "h1")
    types = ["send", "deliv", "open"]
    feed = LogFeed(store)
    feed.subscribe(Subscription(account, tuple(types), 1, asyncio.Event()))
    start = await store.head()
    assert await feed.read(account, types, 1, start, 10) is not None  # the feed starts at the head
    kinds = [*types, "click", "read"]
    sent = [
        NewEvent(account, f"id-{n}", kinds[n % 5], 2 if n % 7 == 0 else 1, "p", 1.0, b"{}")
        for n in range(120)
    ]
    await store.append(account, sent)
    feed.appended({account})
    for list_id in (1, 2):
        wanted = [e.id for e in sent if e.list_id == list_id and e.event_type in types]
        got: list[str] = []
        after = start
        while True:
            page = await feed.read(account, types, list_id, after, 7)
            assert page is not None and len(page.events) <= 7
            got += [e.id for e in page.events]
            after = page.scanned_to
            if page.caught_up:
                break
        assert got == wanted and wanted
    page = await feed.read(account, types, 99, start, 10)
    assert page is not None and page.events == []


async def test_the_send_budget_lets_sends_go_in_order_within_its_bytes() -> None:
    """Sends hold their batch's bytes while they are out: one that does not fit waits, and the sends after it wait
    behind it (a large batch is not passed by small ones forever); one larger than the whole budget goes alone; a
    send that gives up waiting leaves the line."""
    budget = Budget(100)
    order: list[str] = []

    async def send(name: str, size: int, release: asyncio.Event) -> None:
        await budget.take(size)
        order.append(name)
        await release.wait()
        budget.give(size)

    gates = {name: asyncio.Event() for name in "abcdefg"}
    a = asyncio.create_task(send("a", 60, gates["a"]))
    await asyncio.sleep(0)
    b = asyncio.create_task(send("b", 60, gates["b"]))  # does not fit beside a
    c = asyncio.create_task(send("c", 10, gates["c"]))  # would fit, but waits behind b
    await asyncio.sleep(0.01)
    assert order == ["a"] and budget.used == 60
    gates["a"].set()
    await a
    await asyncio.sleep(0.01)
    assert order == ["a", "b", "c"] and budget.used == 70
    d = asyncio.create_task(send("d", 500, gates["d"]))  # waits for everything to be back
    e = asyncio.create_task(send("e", 10, gates["e"]))  # behind d
    await asyncio.sleep(0.01)
    assert order == ["a", "b", "c"]
    d.cancel()  # gives up waiting: e, behind it, fits now
    await asyncio.sleep(0.01)
    assert order == ["a", "b", "c", "e"] and budget.used == 80
    g = asyncio.create_task(send("g", 500, gates["g"]))  # larger than the budget: alone, once nothing is out
    f = asyncio.create_task(send("f", 10, gates["f"]))
    for name in "bce":
        gates[name].set()
    await asyncio.sleep(0.01)
    assert order == ["a", "b", "c", "e", "g"] and budget.used == 500
    gates["g"].set()
    await asyncio.sleep(0.01)
    assert order == ["a", "b", "c", "e", "g", "f"] and budget.used == 10
    gates["f"].set()
    await asyncio.gather(b, c, e, f, g)
    assert d.cancelled() and budget.used == 0


async def test_an_accounts_hooks_share_its_send_budget_and_no_other_account_waits_on_it(
    service: Service, owner: User, outsider: User
) -> None:
    """An account's hooks share its budget of bytes out at once: while a slow destination holds all of it, the
    account's other hooks wait — and another account's hooks, with a budget of their own, do not."""
    service.dispatcher.budgets.limit = 1  # every batch takes the whole of its account's budget
    slow, slow_transport = stub(max_batch_size=10, timeout_s=0)
    waiting, waiting_transport = stub(max_batch_size=10, timeout_s=0)
    other, other_transport = stub(max_batch_size=10, timeout_s=0)
    await make_hook(service, owner, slow_transport, event_types=["deliv"])
    await make_hook(service, owner, waiting_transport, event_types=["send"])
    await make_hook(service, outsider, other_transport, event_types=["send"])
    gate = slow.hold()
    await send(service, owner, [event(1)])
    await slow.wait_for_open_sends(1)  # out, and holding the owner's budget
    theirs = await send(service, outsider, [event(2, event_type="send")])
    mine = await send(service, owner, [event(3, event_type="send")])
    await other.wait_for_events(1)
    assert other.event_ids == theirs
    await asyncio.sleep(0.3)
    assert waiting.calls == 0  # behind the slow send, in its own account
    gate.set()
    await waiting.wait_for_events(1)
    assert waiting.event_ids == mine


async def test_an_append_listener_is_handed_the_commit_as_the_log_holds_it(store: Store) -> None:
    """What a commit hands its listeners (``Committed``) is exactly what ``read_log`` returns from the position
    before it: the same events at the same positions, derived ones among them, and the accounts owning them —
    also when a group commit holds two accounts' requests, and not for a request whose events were all known."""
    one = await store.create_account("one", "h1")
    two = await store.create_account("two", "h2")
    handed: list[tuple[set[int], Committed | None]] = []
    store.add_append_listener(lambda accounts, committed: handed.append((accounts, committed)))
    await post(store, one, {**derive_event("click"), "id": "crm-1"}, derive_event("open", profile="p2"))
    await asyncio.gather(
        post(store, one, derive_event("click", profile="p3")),
        post(store, two, derive_event("send"), derive_event("deliv")),
    )
    await post(store, one, {**derive_event("click"), "id": "crm-1"})  # known: nothing is added
    committed = [c for _, c in handed if c is not None]
    assert len(committed) == len(handed) - 1  # all but the last: it added nothing
    for accounts, c in handed[:-1]:
        assert c is not None and {r.account_id for r in c.rows} == accounts
    for c in committed:
        page, read = c.page(), await store.read_log(c.after, len(c.rows))
        assert (page.accounts, page.events, page.scanned_to) == (read.accounts, read.events, read.scanned_to)
    # both engines tell the positions of every commit that added events (derived ones among them: uclick…)
    assert sum(len(c.rows) for c in committed) == await store.head() > 7


async def test_the_feed_takes_a_commit_that_follows_its_head_without_reading_it_back(tmp_path: Any) -> None:
    """A commit of this process that continues the log right where the feed holds it is kept as it was committed
    — no read of the log — and wakes its hooks; one that does not (another process appended in between) is read,
    with what came before it, in log order."""
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    store, other = open_store(url), open_store(url)  # ``other``: another process appending to the same log
    await store.open()
    await other.open()
    try:
        account = await store.create_account("one", "h1")
        feed = LogFeed(store)
        store.add_append_listener(feed.appended)
        sub = Subscription(account, ("deliv",), None, asyncio.Event())
        feed.subscribe(sub)
        start = await store.head()
        assert await feed.read(account, ["deliv"], None, start, 10) is not None  # the feed starts at the head
        reads = feed.reads

        def new(n: int) -> NewEvent:
            return NewEvent(account, f"id-{n}", "deliv", 1, "p", 1.0, b'{"n": %d}' % n)

        await store.append(account, [new(1), new(2)])
        assert sub.wake.is_set() and feed.reads == reads  # taken, not read
        page = await feed.read(account, ["deliv"], None, start, 10)
        assert page is not None and [e.id for e in page.events] == ["id-1", "id-2"] and page.caught_up
        assert page.events == (await store.read_log(start, 10)).events and feed.reads == reads

        await other.append(account, [new(3)])  # not this process's: no listener hears it
        await store.append(account, [new(4)])  # so this one does not follow what the feed holds
        page = await feed.read(account, ["deliv"], None, page.scanned_to, 10)
        assert page is not None and [e.id for e in page.events] == ["id-3", "id-4"] and feed.reads > reads
    finally:
        await other.close()
        await store.close()


async def test_a_commit_that_would_push_out_what_a_hook_has_yet_to_read_waits_for_the_read_ahead(
    tmp_path: Any,
) -> None:
    """Taking commits as they come keeps the read-ahead's rule: a commit that would push the oldest chunk out of
    memory while a hook reading has yet to read it is not taken; the feed reads it once the hook has moved on."""
    store = open_store(f"sqlite:///{tmp_path / 'feed.db'}")
    await store.open()
    try:
        account = await store.create_account("one", "h1")
        feed = LogFeed(store, chunk=10, keep=30, trail_keep=0)
        store.add_append_listener(feed.appended)
        base = await store.head()
        reader = Subscription(account, ("deliv",), None, asyncio.Event(), position=base)
        reader.deferring = True  # its sends step aside for ingest
        feed.subscribe(reader)
        await feed.read(account, ["deliv"], None, base, 10)  # the feed starts at the head
        reads = feed.reads
        for burst in range(4):
            await store.append(
                account,
                [NewEvent(account, f"id-{burst}-{n}", "deliv", 1, "p", 1.0, b"{}") for n in range(10)],
            )
        assert feed.reads == reads and feed.low == base  # three commits taken: the memory is full
        await eventually(lambda: feed._held)
        assert feed.high - base == 30  # the fourth waits: it would push out the chunk the hook holds
        reader.deferring = False
        reader.position, reader.read_at = base + 15, time.monotonic()  # it read past the first chunk
        await eventually(lambda: feed.high - base == 40 and feed._at_head)
        assert feed.reads == reads + 1 and feed.low - base == 10
    finally:
        await store.close()
