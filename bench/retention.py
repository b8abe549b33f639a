"""Ingest with pruning running against ingest without, in the same run; and the one-off SQLite upgrade (VACUUM).

In-process on the store (no HTTP): 4 appenders commit batches of 1000 events for ``--seconds`` each way.
The log is first filled with ``--backlog`` events received 8 days ago; "with pruning", the background job's
pruning round (``maintenance.prune_round``, adaptive chunks) runs in a loop beside the appenders, removing that
backlog — the worst case, pruning never idle. Reported: events/s appended, append latency p50/p99, rows pruned/s.

    .venv/bin/python -m bench.retention [--pg postgresql://127.0.0.1:5432/test] [--vacuum-events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from actionhooks.config import Retention
from actionhooks.events import NewEvent
from actionhooks.maintenance import prune_round
from actionhooks.registry import HookRegistry
from actionhooks.store import Store, open_store

BODY = (
    b'{"event_type":"deliv","event_date":"2024-05-01T12:00:00Z","list_id":1,"profile_id":"780a1a1a98e34ceb",'
    b'"event_data":{"message_id":292,"campaign_id":1835,"segment_id":0,"resource_id":9},'
    b'"custom_data":{"email":"anna@example.com","city":"Omsk","name":"Anna"}}' + b" " * 200
)
BATCH = 1000


def batch(account_id: int, at: float) -> list[NewEvent]:
    return [NewEvent(account_id, str(uuid.uuid4()), "deliv", 1, "p", at, BODY) for _ in range(BATCH)]


async def fill(store: Store, account_id: int, events: int, at: float) -> None:
    for _ in range(events // BATCH):
        await store.append(account_id, batch(account_id, at))


class Pruning:
    """``maintenance.prune_round`` in a loop beside the appenders (never idle while a backlog is due) until
    :meth:`stop`, which says how many rows it removed."""

    def __init__(self, store: Store, registry: HookRegistry) -> None:
        self.pruned = 0
        self._running = True
        self._task = asyncio.create_task(self._loop(store, registry))

    async def _loop(self, store: Store, registry: HookRegistry) -> None:
        while self._running:
            done = await prune_round(store, registry, Retention(), max_chunks=10)
            self.pruned += done.events
            if not done.more and not done.events:
                await asyncio.sleep(0.05)

    async def stop(self) -> int:
        self._running = False
        await self._task
        return self.pruned


async def ingest(store: Store, account_id: int, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    count = 0

    async def appender() -> None:
        nonlocal count
        while time.monotonic() < stop:
            events = batch(account_id, time.time())
            started = time.perf_counter()
            await store.append(account_id, events)
            latencies.append(time.perf_counter() - started)
            count += len(events)

    started = time.monotonic()
    await asyncio.gather(*(appender() for _ in range(4)))
    return count / (time.monotonic() - started), latencies


async def run_engine(url: str, seconds: float, backlog: int) -> None:
    store = open_store(url)
    await store.open()
    registry = HookRegistry(store)
    await registry.open()
    account_id = await store.create_account("bench", uuid.uuid4().hex)
    try:
        # the backlog first: pruning goes in log order and stops at the first event still in the window
        await fill(store, account_id, backlog, time.time() - 8 * 86400)
        rate, lat = await ingest(store, account_id, seconds)
        report(url, "without pruning", rate, lat, 0, 0)
        pruning = Pruning(store, registry)
        started = time.monotonic()
        rate, lat = await ingest(store, account_id, seconds)
        elapsed = time.monotonic() - started
        pruned = await pruning.stop()
        report(url, "with pruning", rate, lat, pruned, pruned / elapsed)
        if pruned >= backlog:
            print("  (the backlog was gone before the end: pruning was idle for part of the run)")
    finally:
        await store.close()


def report(url: str, label: str, rate: float, lat: list[float], pruned: int, prune_rate: float) -> None:
    q = statistics.quantiles(lat, n=100)
    engine = url.split(":", 1)[0]
    print(
        f"{engine:10} {label:16} {rate:9.0f} events/s  append p50 {q[49] * 1000:6.1f} ms  p99 {q[98] * 1000:6.1f} ms"
        + (f"  pruned {pruned} ({prune_rate:.0f} rows/s)" if pruned else "")
    )


def vacuum_upgrade(folder: Path, events: int) -> None:
    """The one-off rewrite an existing SQLite file gets when it is switched to incremental vacuum."""
    path = folder / "old.db"
    url = f"sqlite:///{path}"

    async def make() -> None:
        store = open_store(url)
        await store.open()
        account_id = await store.create_account("bench", uuid.uuid4().hex)
        await fill(store, account_id, events, time.time())
        await store.close()

    asyncio.run(make())
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA auto_vacuum=NONE")
        conn.execute("VACUUM")  # as a file made before migration 005 is
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    size = os.path.getsize(path)
    started = time.perf_counter()
    asyncio.run(open_and_close(url))
    took = time.perf_counter() - started
    print(
        f"sqlite upgrade: {events} events, {size / 1e6:.0f} MB rewritten in {took:.1f} s "
        f"({took / events * 1e6:.1f} s per million events)"
    )


async def open_and_close(url: str) -> None:
    store = open_store(url)
    await store.open()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--pg", help="a PostgreSQL server URL: a database is made there for the run")
    parser.add_argument(
        "--vacuum-events", type=int, default=0, help="measure the SQLite upgrade with this many"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        asyncio.run(run_engine(f"sqlite:///{folder / 'bench.db'}", args.seconds, args.backlog))
        if args.pg:
            name = f"actionhooks_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.pg, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            try:
                asyncio.run(run_engine(f"{args.pg.rsplit('/', 1)[0]}/{name}", args.seconds, args.backlog))
            finally:
                with psycopg.connect(args.pg, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if args.vacuum_events:
            vacuum_upgrade(folder, args.vacuum_events)


if __name__ == "__main__":
    main()
