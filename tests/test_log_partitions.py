"""PostgreSQL's partitioned log (docs/operations.md#retention): retention drops whole partitions under steady load,
producer ids stay unique across partitions (and across processes), a partition holding an event still in the window
waits whole, and the upgrade from a database made before partitioning keeps every event, position and id.

SQLite has one table and no partitions: its retention is tested in test_retention.py (on both engines)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from actionhooks.config import Retention
from actionhooks.events import NewEvent
from actionhooks.maintenance import prune_round
from actionhooks.store import partitions as partitions_module
from actionhooks.store import sql as sql_module
from actionhooks.store.dialect import migration_scripts
from actionhooks.store.postgres import PostgresStore

from .conftest import PG_ADMIN_URL, _empty_postgres
from .test_retention import BASE, STEP, make_event, make_hook, opened_registry

SPAN = 100  # log positions per partition in these tests


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg_url, partition_events=SPAN)
    await store.open()
    _empty_postgres(pg_url)  # after the migrations: the first partition too is made by this store, SPAN wide
    try:
        yield store
    finally:
        await store.close()


def partitions(url: str) -> list[tuple[int, int]]:
    with psycopg.connect(url) as conn:
        listed = conn.execute("SELECT low, high FROM log_partitions ORDER BY low").fetchall()
        attached = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'events'::regclass ORDER BY c.relname"
        ).fetchall()
    assert sorted(f"events_p{low}" for low, _ in listed) == [r[0] for r in attached]  # the list is the truth
    return [(int(low), int(high)) for low, high in listed]


def scalar(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def chosen(account_id: int, at: float, n: int) -> list[NewEvent]:
    return [make_event(account_id, at)._replace(id=f"crm-{uuid.uuid4().hex}") for _ in range(n)]


async def test_pruning_drops_whole_partitions_under_steady_load(pg_store: PostgresStore, pg_url: str) -> None:
    store = pg_store
    registry, account_id = await opened_registry(store)
    hook = await make_hook(registry, account_id)  # never delivers: everything that goes is lost to it
    retention = Retention(events_s=5 * STEP, chunk=40)
    counts: list[int] = []
    parts: list[tuple[int, int]] = []  # partitions before and after each round
    dropped_total, appended = 0, 0
    seen_partitions: set[int] = set()
    for minute in range(16):
        now = BASE + minute * STEP
        events = chosen(account_id, now, 150)  # producer ids: their keys go with their partitions
        assert all(await store.append(account_id, events, {e.id for e in events}))
        appended += len(events)
        before = partitions(pg_url)
        seen_partitions.update(low for low, _ in before)
        done = await prune_round(store, registry, retention, now=now)
        assert not done.more
        dropped_total += done.events
        counts.append(await store.count_events())
        parts.append((len(before), len(partitions(pg_url))))
        # the ids kept are exactly those of the events kept
        assert scalar(pg_url, "SELECT COUNT(*) FROM event_ids") == counts[-1]
    steady = counts[7:]
    # the window (5 minutes, 750 events) plus at most the partially due partition and the one being written
    assert all(750 <= c <= 750 + 150 + 2 * SPAN for c in steady), counts
    # once the window is full every round drops partitions, and their number stops growing
    assert all(after < before for before, after in parts[7:]), parts
    assert max(after for _, after in parts[7:]) <= min(after for _, after in parts[7:]) + 1, parts
    # whole partitions went: the oldest ones no longer exist, no rows were deleted from those kept
    assert min(low for low, _ in partitions(pg_url)) > min(seen_partitions)
    assert (
        scalar(
            pg_url,
            "SELECT COALESCE(SUM(n_tup_del), 0) FROM pg_stat_user_tables WHERE relname LIKE 'events_p%'",
        )
        == 0
    )
    assert dropped_total + counts[-1] == appended
    activity = await store.hook_activity(hook.id)
    assert activity.expired_undelivered == dropped_total
    assert await store.pruned_horizon() is not None


async def test_a_duplicate_whose_first_copy_is_in_an_older_partition_is_refused(
    pg_store: PostgresStore, pg_url: str
) -> None:
    store = pg_store
    _, account_id = await opened_registry(store)
    first = make_event(account_id, BASE)._replace(id="crm-1")
    assert await store.append(account_id, [first], {"crm-1"}) == [True]
    for _ in range(3):  # three partitions further on
        await store.append(account_id, [make_event(account_id, BASE) for _ in range(SPAN)])
    assert len(partitions(pg_url)) >= 4
    again = make_event(account_id, BASE + 1)._replace(id="crm-1")
    fresh = make_event(account_id, BASE + 1)._replace(id="crm-2")
    assert await store.append(account_id, [again, fresh], {"crm-1", "crm-2"}) == [False, True]
    assert await store.count_events() == 1 + 3 * SPAN + 1
    # another account may use the same id
    other = await store.create_account("other", uuid.uuid4().hex)
    assert await store.append(other, [make_event(other, BASE)._replace(id="crm-1")], {"crm-1"}) == [True]


async def test_two_processes_appending_the_same_producer_id_store_it_once(
    pg_store: PostgresStore, pg_url: str
) -> None:
    _, account_id = await opened_registry(pg_store)
    other = PostgresStore(pg_url, partition_events=SPAN)  # another process's store: its own connections
    await other.open()
    try:
        for n in range(20):
            event = make_event(account_id, BASE)._replace(id=f"race-{n}")
            filler = [make_event(account_id, BASE) for _ in range(SPAN // 2)]  # partitions are made meanwhile
            results = await asyncio.gather(
                pg_store.append(account_id, [*filler, event], {event.id}),
                other.append(account_id, [event, *filler], {event.id}),
            )
            assert sorted([results[0][-1], results[1][0]]) == [False, True], n
    finally:
        await other.close()
    assert scalar(pg_url, "SELECT COUNT(*) FROM events WHERE id LIKE 'race-%'") == 20


async def test_a_partition_holding_an_event_in_the_window_waits_whole(
    pg_store: PostgresStore, pg_url: str
) -> None:
    store = pg_store
    registry, account_id = await opened_registry(store)
    # the first partition is [0, SPAN): positions 1..SPAN-2 old, SPAN-1 young
    await store.append(account_id, [make_event(account_id, BASE) for _ in range(SPAN - 2)])
    await store.append(account_id, [make_event(account_id, BASE + 100)])
    await store.append(
        account_id, [make_event(account_id, BASE) for _ in range(10)]
    )  # the next partition, old
    done = await prune_round(store, registry, Retention(events_s=60), now=BASE + 100)
    # nothing: the old events of the partition being written wait behind the closed one too (log order)
    assert done.events == 0 and await store.count_events() == SPAN - 1 + 10
    done = await prune_round(store, registry, Retention(events_s=60), now=BASE + 161)
    assert done.events == SPAN - 1 + 10  # the closed partition whole; then the head's due events, in chunks
    assert await store.count_events() == 0
    assert [low for low, _ in partitions(pg_url)] == [SPAN]


async def test_a_size_cap_drops_closed_partitions_oldest_first(pg_store: PostgresStore, pg_url: str) -> None:
    store = pg_store
    registry, account_id = await opened_registry(store)
    for _ in range(4):
        await store.append(account_id, [make_event(account_id, BASE) for _ in range(SPAN)])
    done = await prune_round(store, registry, Retention(max_bytes=1, chunk=1000), now=BASE, max_chunks=2)
    # two steps, a partition each (no producer ids to delete first): positions 1..SPAN-1, then SPAN..2*SPAN-1
    assert done.events == 2 * SPAN - 1 and done.more
    assert [low for low, _ in partitions(pg_url)] == [2 * SPAN, 3 * SPAN, 4 * SPAN]
    await prune_round(store, registry, Retention(max_bytes=1, chunk=1000), now=BASE)
    # the closed ones went whole; the one being written was emptied in chunks, and stays
    assert await store.count_events() == 0 and [low for low, _ in partitions(pg_url)] == [4 * SPAN]


@pytest.fixture
def old_database() -> Iterator[str]:
    name = f"actionhooks_upgrade_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_the_upgrade_from_a_database_before_partitioning_keeps_every_event(old_database: str) -> None:
    url = old_database
    with psycopg.connect(
        url, autocommit=True
    ) as conn:  # the schema as the migrations before partitioning left it
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, script in migration_scripts("postgres"):
            if "CREATE TABLE log_partitions" in script:  # the partitioning migration (whatever its number)
                break
            conn.execute(script)
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        made = conn.execute(
            "INSERT INTO accounts (name, created_at) VALUES ('old', 0) RETURNING id"
        ).fetchone()
        assert made is not None
        account_id = int(made[0])
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY events (account_id, id, event_type, list_id, profile_id, received_at, payload) FROM STDIN"
            ) as copy,
        ):
            for n in range(2500):
                copy.write_row((account_id, f"old-{n}", "deliv", n % 3, "p", BASE + n, b'{"n": %d}' % n))
        conn.execute(
            "DELETE FROM events WHERE seq <= 700 OR seq > 2400"
        )  # pruned before, and a tail gone too
        before = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    store = PostgresStore(url)
    await store.open()  # migration 009 rewrites the log
    try:
        with psycopg.connect(url) as conn:
            after = conn.execute(
                "SELECT seq, account_id, id, event_type, list_id, profile_id, received_at, payload FROM events ORDER BY seq"
            ).fetchall()
            assert conn.execute("SELECT to_regclass('events_unpartitioned')").fetchone() == (None,)
        assert after == before and len(after) == 1700
        assert len(partitions(url)) == 1  # [0, 1 000 000)
        # positions are never reused: the next event comes after the last one ever made (2500), not after 2400
        new = NewEvent(account_id, "new-1", "deliv", 1, "p", BASE, b"{}")
        assert await store.append(account_id, [new], {"new-1"}) == [True]
        assert await store.head() == 2501
        # the old log's ids are still refused as duplicates
        old = NewEvent(account_id, "old-1000", "deliv", 1, "p", BASE, b"{}")
        assert await store.append(account_id, [old], {"old-1000"}) == [False]
        # pruned, the events take their ids with them
        registry, _ = await opened_registry(store)
        await prune_round(store, registry, Retention(events_s=60), now=BASE + 10_000)
        assert await store.count_events() == 0 and scalar(url, "SELECT COUNT(*) FROM event_ids") == 0
    finally:
        await store.close()


async def test_a_drop_that_waits_too_long_for_readers_is_rolled_back_and_tried_again(
    pg_store: PostgresStore, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partitions_module, "DROP_WAIT_S", 0.2)
    monkeypatch.setattr(partitions_module, "BUSY_PAUSE_S", 0.5)
    monkeypatch.setattr(partitions_module, "HOLD_WAIT_S", 0.2)
    store = pg_store
    registry, account_id = await opened_registry(store)
    hook = await make_hook(registry, account_id)
    await store.append(account_id, [make_event(account_id, BASE) for _ in range(SPAN + 10)])
    retention = Retention(events_s=60)
    with psycopg.connect(
        pg_url
    ) as reader:  # a long read of the log's newest part holds the partitioned table
        reader.execute(f"SELECT COUNT(*) FROM events WHERE seq > {SPAN}").fetchone()
        done = await prune_round(store, registry, retention, now=BASE + 61)
        assert done.events == 0 and await store.count_events() == SPAN + 10
        assert (await store.hook_activity(hook.id)).expired_undelivered == 0  # nothing counted: rolled back
        assert await store.append(account_id, [make_event(account_id, BASE + 61)]) == [
            True
        ]  # the store is fine
        reader.rollback()
    done = await prune_round(store, registry, retention, now=BASE + 61)
    assert done.events == 0  # no drop is tried for a while after one gave up
    await asyncio.sleep(0.5)
    done = await prune_round(store, registry, retention, now=BASE + 61)
    # the closed partition (1..SPAN-1), then the head's due events (SPAN..SPAN+10; the young one stays)
    assert done.events == SPAN + 10 and await store.count_events() == 1
    assert (await store.hook_activity(hook.id)).expired_undelivered == SPAN + 10


async def test_a_dropped_partition_counts_what_each_hook_behind_had_not_handled(
    pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_module, "_COUNT_SPAN", 7)  # counted in several parts
    store = pg_store
    registry, account_id = await opened_registry(store)
    behind = await make_hook(registry, account_id)
    opens = await make_hook(registry, account_id, event_types=["open"])
    filtered = await make_hook(registry, account_id, filters={"campaign_ids": [7]})
    halfway = await make_hook(registry, account_id)
    events = [make_event(account_id, BASE, "deliv", campaign_id=7 if i % 3 == 0 else 1) for i in range(60)]
    events += [make_event(account_id, BASE, "open") for _ in range(39)]
    await store.append(account_id, events)  # positions 1..99: the first partition, whole
    await store.append(account_id, [make_event(account_id, BASE + 1000)])  # the next one: young
    assert await store.save_cursor(halfway.id, halfway.generation, 30)
    done = await prune_round(store, registry, Retention(events_s=60), now=BASE + 61)
    assert done.events == 99
    expected = {behind.id: 60, opens.id: 39, filtered.id: 20, halfway.id: 30}
    assert done.expired == expected
    for hook_id, n in expected.items():
        assert (await store.hook_activity(hook_id)).expired_undelivered == n
