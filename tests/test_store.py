"""The store on both engines: group commit, ordering, idempotency, bounded reads, conditional state writes."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
import pytest

from actionhooks.errors import StoreUnavailable
from actionhooks.events import NewEvent
from actionhooks.store import Attempt, DeadLetter, Store, StoredHook, open_store
from actionhooks.store.base import StateWrite

from .conftest import PG_ADMIN_URL
from .stub import StubDestination
from .support import Service, eventually

TYPES = ["deliv", "send", "uopen"]


def events(
    n: int, account_id: int, event_type: str = "deliv", start: int = 0, **changes: object
) -> list[NewEvent]:
    out = []
    for i in range(start, start + n):
        row = NewEvent(account_id, f"e-{event_type}-{i}", event_type, 1, f"p{i}", 1.0, b'{"n":%d}' % i)
        out.append(row._replace(**changes))  # type: ignore[arg-type]
    return out


async def test_concurrent_appends_share_commits_and_keep_order(store: Store) -> None:
    account = await store.create_account("a", "k")
    batches = [events(50, account, start=i * 50) for i in range(20)]
    results = await asyncio.gather(*(store.append(account, b) for b in batches))
    assert all(all(r) for r in results)
    page = await store.read_events(account, TYPES, None, 0, 10_000)
    assert len(page.events) == 1000
    seqs = [e.seq for e in page.events]
    assert seqs == sorted(seqs)
    for batch in batches:  # each append's events are contiguous and in order
        positions = [seqs[[e.id for e in page.events].index(ev.id)] for ev in batch]
        assert positions == list(range(positions[0], positions[0] + len(batch)))


async def test_one_bad_append_fails_alone(store: Store) -> None:
    account = await store.create_account("a", "k")
    good = events(10, account)
    bad = events(1, account, start=100, list_id=2**70)  # past BIGINT: the driver refuses to encode it
    more = events(10, account, start=200)
    outcomes = await asyncio.gather(
        store.append(account, good),
        store.append(account, bad),
        store.append(account, more),
        return_exceptions=True,
    )
    assert outcomes[0] == [True] * 10
    assert type(outcomes[1]) is OverflowError  # sqlite3's binding; psycopg's binary COPY (int8)
    assert outcomes[2] == [True] * 10
    assert await store.count_events(account) == 20
    assert store.pending_appends == 0


async def test_producer_ids_are_stored_once_per_account(store: Store) -> None:
    a = await store.create_account("a", "ka")
    b = await store.create_account("b", "kb")
    batch = events(3, a)
    assert await store.append(a, batch, {e.id for e in batch}) == [True] * 3
    again = [*events(2, a), *events(1, a, start=9)]
    assert await store.append(a, again, {e.id for e in again}) == [False, False, True]
    other = events(3, b)
    assert await store.append(b, other, {e.id for e in other}) == [True] * 3
    assert await store.count_events(a) == 4 and await store.count_events(b) == 3


@pytest.mark.parametrize("others, window", [(300, 100), (3_000, 5_000)])  # a short span (SQLite walks the
async def test_reads_are_bounded_by_the_window_and_never_skip(  # log in order) and a long one (the index)
    store: Store, others: int, window: int
) -> None:
    account = await store.create_account("a", "k")
    other = await store.create_account("b", "k2")
    for half in range(2):
        await store.append(other, events(others, other, start=half * others))
        await store.append(account, events(5, account, event_type="uopen", start=half * 5))
        await store.append(other, events(others, other, start=(half + 2) * others))
    after, seen, reads = 0, [], 0
    while True:
        page = await store.read_events(account, ["uopen"], None, after, 3, window=window)
        reads += 1
        assert page.scanned_to <= after + window
        seen += [e.id for e in page.events]
        after = page.scanned_to
        if page.caught_up:
            break
    assert seen == [f"e-uopen-{i}" for i in range(10)]
    assert reads > 4 * others // window  # the windows walked the other account's events in steps


@pytest.mark.parametrize("list_id", [None, 7])
async def test_a_read_of_several_types_over_a_long_span_pages_in_log_order(
    store: Store, list_id: int | None
) -> None:
    """Past SQLite's walked span (4 000 positions) several types' matches come from as many index ranges: the
    page holds the first ``limit`` of them in log order, and paging on loses and repeats none."""
    account = await store.create_account("a", "k")
    other = await store.create_account("b", "k2")
    await store.append(other, events(4_500, other))  # the span of every read is longer than a walk
    mixed: list[NewEvent] = []
    for i in range(60):  # three types interleaved, every third event of the list
        mixed += events(1, account, event_type=TYPES[i % 3], start=i, list_id=7 if i % 4 == 0 else 1)
    await store.append(account, mixed)
    await store.append(other, events(10, other, start=5_000))
    wanted = [e.id for e in mixed if e.event_type != "send" and (list_id is None or e.list_id == list_id)]
    after, seen = 0, []
    while True:
        page = await store.read_events(account, ["uopen", "deliv"], list_id, after, 7, window=1_000_000)
        assert len(page.events) <= 7
        seen += [e.id for e in page.events]
        after = page.scanned_to
        if page.caught_up:
            break
    assert seen == wanted


async def test_list_id_scopes_reads(store: Store) -> None:
    account = await store.create_account("a", "k")
    await store.append(account, [*events(2, account), *events(3, account, start=2, list_id=7)])
    page = await store.read_events(account, TYPES, 7, 0, 100)
    assert [e.id for e in page.events] == ["e-deliv-2", "e-deliv-3", "e-deliv-4"]


def _writes(hook_id: int, generation: int) -> list[StateWrite]:
    """A day of one hook's records in one commit: runs of one-event batches delivered, a retry, a dead letter,
    idle notes, cursors behind the saved one, writes of a generation the hook is not at, a count period crossed."""

    def delivered(seq: int, at: float, cursor: int | None = None) -> StateWrite:
        a = Attempt(
            hook_id=hook_id,
            at=at,
            batch_id=f"b{seq}",
            events=1,
            first_seq=seq,
            last_seq=seq,
            outcome="delivered",
            status=200,
            latency_ms=1.0,
        )
        return StateWrite(hook_id, generation, seq if cursor is None else cursor, a)

    def nine(at: float, outcome: str) -> Attempt:  # the batch of event 9, answered 503
        return Attempt(
            hook_id=hook_id,
            at=at,
            batch_id="b9",
            events=1,
            first_seq=9,
            last_seq=9,
            outcome=outcome,
            error="hook answered 503",
        )

    retry, failed = nine(1_005.0, "retry"), nine(1_006.0, "failed")
    letter = DeadLetter(
        hook_id=hook_id,
        event_seq=9,
        event_id="e9",
        payload=b"{}",
        reason="503",
        attempts=2,
        failed_at=1_006.0,
    )
    return [
        *(delivered(seq, 1_000.0 + seq / 10) for seq in range(1, 9)),  # a run, crossing no period
        StateWrite(hook_id, generation, None, retry, last_error="hook answered 503"),
        StateWrite(hook_id, generation, 9, failed, [letter], last_error="hook answered 503"),
        *(delivered(seq, 1_004.0 + seq / 2) for seq in range(10, 16)),  # a run across the period at 1 010
        StateWrite(hook_id, generation, 20),  # an idle note
        *(delivered(seq, 1_021.0) for seq in (25, 26)),
        *(delivered(seq, 1_022.0) for seq in (30, 31)),  # a generation the hook is not at (the test sets it)
        *(delivered(seq, 1_000.0 + seq / 2, cursor=40) for seq in (40, 41)),  # one cursor for both
        delivered(45, 1_023.0, cursor=50),
        delivered(46, 1_024.0, cursor=47),  # a cursor behind the one before: refused, as one by one
        delivered(48, 1_025.0),  # still behind 50…
        delivered(55, 1_026.0),  # …and past it
        *(delivered(seq, 1_020.0) for seq in (18, 19)),  # behind the note too
        StateWrite(hook_id, generation, 56),
        delivered(60, 1_027.0),
        delivered(61, 1_028.0),
    ]


async def test_a_commit_of_many_records_ends_as_one_by_one_would(store: Store) -> None:
    """Records of many batches in one commit (one-event batches' records come in dozens) leave the hook, its
    attempts, dead letters and delivery counts as writing them one at a time does, and get the same answers."""
    account = await store.create_account("a", "k")
    together, alone = [await store.create_hook(account, b"s", True) for _ in range(2)]
    answers: dict[int, list[bool]] = {}
    for hook, one_by_one in ((together, False), (alone, True)):
        writes = _writes(hook.id, hook.generation)
        writes = [
            w._replace(generation=hook.generation + 1) if w.attempt and w.attempt.first_seq in (30, 31) else w
            for w in writes
        ]
        if one_by_one:
            answers[hook.id] = [(await store.write_states([w]))[0] for w in writes]
        else:
            other = await store.create_hook(account, b"s", True)  # another hook's records interleaved
            mixed = [
                x for pair in zip(writes, _writes(other.id, other.generation), strict=True) for x in pair
            ]
            answers[hook.id] = (await store.write_states(mixed))[::2]
    assert answers[together.id] == answers[alone.id]
    assert (
        answers[alone.id]
        == [True] * 19 + [False] * 2 + [True] * 3 + [False] * 2 + [True] + [False] * 2 + [True] * 3
    )

    def state(h: StoredHook | None) -> tuple[object, ...]:
        assert h is not None
        return h.cursor, h.last_error, h.last_error_at, h.last_success_at

    t, a = await store.get_hook(account, together.id), await store.get_hook(account, alone.id)
    assert state(t) == state(a) == (61, None, None, 1_028.0)

    def attempts(rows: list[Attempt]) -> list[tuple[object, ...]]:
        return [(r.batch_id, r.outcome, r.at, r.first_seq, r.error) for r in rows]

    assert attempts(await store.list_attempts(together.id)) == attempts(await store.list_attempts(alone.id))
    assert len(await store.list_attempts(alone.id)) == 24
    letters = [(d.event_seq, d.reason) for d in await store.list_dead_letters(together.id)]
    assert (
        letters == [(d.event_seq, d.reason) for d in await store.list_dead_letters(alone.id)] == [(9, "503")]
    )
    periods = await store.delivery_periods(together.id, 0.0)
    assert periods == await store.delivery_periods(alone.id, 0.0)
    assert [tuple(p) for p in periods] == [
        (1_000.0, 10, 2, 1),
        (1_010.0, 4, 0, 0),
        (1_020.0, 8, 0, 0),
    ]


async def test_state_writes_of_a_stale_generation_match_nothing(store: Store) -> None:
    account = await store.create_account("a", "k")
    hook = await store.create_hook(account, b"sealed settings", True)
    await store.append(account, events(5, account))
    attempt = Attempt(
        hook_id=hook.id, at=1.0, batch_id="b", events=5, first_seq=1, last_seq=5, outcome="delivered"
    )
    assert await store.finish_batch(attempt, hook.generation, 5)
    edited = await store.update_hook(account, hook.id, b"other settings", True)
    assert edited is not None and edited.generation == hook.generation + 1
    assert not await store.finish_batch(attempt, hook.generation, 5)
    assert not await store.save_cursor(hook.id, hook.generation, 5)
    assert await store.save_cursor(hook.id, edited.generation, 5)
    assert not await store.save_cursor(hook.id, edited.generation, 3)  # a cursor never moves back
    current = await store.get_hook(account, hook.id)
    assert current is not None and current.cursor == 5
    assert len(await store.list_attempts(hook.id)) == 1
    assert await store.active_generations() == {hook.id: edited.generation}
    assert current.settings == b"other settings"


async def test_a_failed_write_fails_its_appends_and_the_next_one_commits(store: Store) -> None:
    account = await store.create_account("a", "k")
    fault = OSError("disk gone")
    store.faults.fail_next(fault)
    with pytest.raises(OSError) as caught:
        await store.append(account, events(3, account))
    assert caught.value is fault
    assert await store.append(account, events(3, account, start=3)) == [True] * 3
    assert await store.count_events(account) == 3
    assert store.pending_appends == 0


async def test_a_group_broken_by_a_failed_write_is_committed_append_by_append(store: Store) -> None:
    account = await store.create_account("a", "k")
    hold = store.faults.hold_writes()
    first = asyncio.ensure_future(store.append(account, events(2, account)))  # takes the writer and waits
    await asyncio.sleep(0.05)
    store.faults.fail_next(OSError("once"))  # fails the first write: the group of the next two
    rest = asyncio.gather(
        store.append(account, events(2, account, start=2)), store.append(account, events(2, account, start=4))
    )
    await asyncio.sleep(0.05)
    hold.set()
    assert await first == [True, True]
    assert list(await rest) == [[True, True], [True, True]]
    assert await store.count_events(account) == 6


# --- connections that heal (PostgreSQL: the test database's backends are cut from an admin connection) ----------


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql)


def _cut_connections(db_url: str) -> None:
    """Terminate every backend of the test database (as a server restart or a failover would)."""
    name = db_url.rsplit("/", 1)[1]
    _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")


def _accepting(db_url: str, allowed: bool) -> None:
    """Refuse (or accept again) new connections to the test database: down and back, without a private server."""
    _admin(f'ALTER DATABASE "{db_url.rsplit("/", 1)[1]}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')


def stub(**settings: object) -> tuple[StubDestination, dict[str, object]]:
    name = f"healing-{time.monotonic_ns()}"
    return StubDestination(name), {"type": "stub", "name": name, **settings}


def _batch(producer: int, n: int, size: int = 50) -> list[dict[str, object]]:
    return [
        {
            "id": f"p{producer}-{n}-{i}",
            "event_type": "deliv",
            "event_date": "2024-05-01T10:00:00Z",
            "event_data": {},
        }
        for i in range(size)
    ]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_store_heals_after_its_connections_are_cut(store: Store, db_url: str) -> None:
    account = await store.create_account("a", "k")
    await store.append(account, events(3, account))
    await asyncio.to_thread(_cut_connections, db_url)
    assert await store.count_events(account) == 3  # a read on a dead connection is repeated on a fresh one
    await asyncio.to_thread(_cut_connections, db_url)
    assert await store.append(account, events(2, account, start=3)) == [True, True]  # BEGIN failed: repeated
    assert await store.count_events(account) == 5


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_ingest_and_delivery_recover_when_connections_are_cut_mid_load(
    service: Service, db_url: str
) -> None:
    owner = await service.user("owner")
    dest, transport = stub(max_batch_size=100, timeout_s=0.05)
    status, _, _ = await service.call(
        "POST", "/v1/hooks", owner, {"name": "h", "event_types": ["deliv"], "transport": transport}
    )
    assert status == 201
    acked: set[str] = set()
    unavailable = 0

    async def producer(k: int) -> None:
        nonlocal unavailable
        for n in range(40):
            while True:  # what the docs ask of producers: own ids, and send again after a 503
                status, body, headers = await service.call("POST", "/v1/events", owner, _batch(k, n))
                if status == 202:
                    acked.update(body["ids"])
                    break
                assert status == 503 and int(headers["Retry-After"]) >= 1, (status, body)
                unavailable += 1
                await asyncio.sleep(0.05)

    started = time.monotonic()
    load = asyncio.gather(*(producer(k) for k in range(4)))
    for share in (0.1, 0.25, 0.4, 0.55, 0.7):  # cut while the load runs
        await eventually(lambda: len(acked) >= share * 4 * 40 * 50, timeout=30, interval=0.005)  # noqa: B023
        await asyncio.to_thread(_cut_connections, db_url)
    await load
    loaded = time.monotonic()
    assert len(acked) == 4 * 40 * 50
    await eventually(lambda: acked <= set(dest.event_ids), timeout=30)  # every acknowledged id delivered
    print(
        f"5 cuts: {unavailable} answers 503; load {loaded - started:.2f} s,"
        f" all delivered {time.monotonic() - loaded:.2f} s after it"
    )
    assert await service.store.count_events(owner.account_id) == len(acked)  # and stored once


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_api_answers_503_while_the_database_is_down_and_serves_within_seconds_of_its_return(
    service: Service, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner = await service.user("owner")
    assert (await service.call("POST", "/v1/events", owner, _batch(0, 0)))[0] == 202
    caplog.set_level(logging.INFO, "actionhooks")
    try:
        await asyncio.to_thread(_accepting, db_url, False)
        await asyncio.to_thread(_cut_connections, db_url)
        for n in range(1, 20):
            status, body, headers = await service.call("POST", "/v1/events", owner, _batch(0, n))
            assert status == 503 and headers["Retry-After"] == "1" and "unavailable" in body["error"]
            assert (await service.call("GET", "/v1/hooks", owner))[0] == 503
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(_accepting, db_url, True)
    back = time.monotonic()
    while (await service.call("POST", "/v1/events", owner, _batch(0, 99)))[0] != 202:
        assert time.monotonic() - back < 5, (
            "the store did not serve again within 5 s of the database's return"
        )
        await asyncio.sleep(0.02)
    print(f"served again {time.monotonic() - back:.2f} s after the database accepted connections")
    store_lines = [r.getMessage() for r in caplog.records if r.name == "actionhooks.store"]
    assert len(store_lines) == 2, store_lines  # one line down, one line back; no traceback per request
    assert "unavailable" in store_lines[0] and "available again" in store_lines[1]
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks"


async def test_a_full_sqlite_database_is_unavailable_not_an_error_and_recovers(tmp_path: Any) -> None:
    """A statement that finds the database full (SQLITE_FULL) makes SQLite roll the transaction back itself; the
    store must still say "unavailable, retry" (ingest answers 503) — not the failed ROLLBACK's error — and write
    again once there is room. The room here is ``max_page_count`` (a full disk does the same, tests/test_outages)."""
    store = open_store(f"sqlite:///{tmp_path / 'full.db'}")
    await store.open()
    try:
        account = await store.create_account("a", "h")

        def room(pages: int | None) -> Any:
            def work(conn: Any) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA page_count")
                used = cur.fetchone()[0]
                cur.execute(f"PRAGMA max_page_count = {used + pages if pages is not None else 1_000_000_000}")

            return work

        big = [
            NewEvent(account, "e", "deliv", 1, "p", 1.0, b"x" * 200_000)
        ]  # overflow pages: full mid-statement
        await store._runtime.write(room(2))  # type: ignore[attr-defined]
        with pytest.raises(StoreUnavailable, match="full"):
            await store.append(account, big)
        await asyncio.sleep(0.1)  # (the store lets a try through after a back-off: this one makes room)
        await store._runtime.write(room(None))  # type: ignore[attr-defined]
        await eventually(lambda: _appends(store, account, big), timeout=5)
        assert await store.count_events(account) == len(big)
    finally:
        await store.close()


async def _appends(store: Store, account: int, events: list[NewEvent]) -> bool:
    try:
        await store.append(account, events)
    except StoreUnavailable:  # the back-off has not let a try through yet
        return False
    return True
