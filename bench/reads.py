"""A hook's own reads of the log (``Store.read_events``): the path of a hook behind the dispatcher's shared memory
of the log and its trail (issue 11; ``dispatch/feed.py``), e.g. one far behind after a restart.

A store is filled with the demo's traffic (``--events``, one account), then each hook of the fan-out scenario's
kind (8 of the 80 types, rotating; also one type, and all 80) pages through the whole log in pages of 1 000 with
a fixed span of log positions per read (``--spans``): microseconds per event read (wall clock: the reads are one at
a time; on PostgreSQL the server's work counts too), with the dialect's ``seqs_first`` on and off (several types:
the page's positions sorted before its rows are fetched, or every match fetched whole and sorted) — the same log,
alternating, best of ``--rounds``.

Usage: ``python -m bench.reads [--events 100000] [--spans 4000,16000,40000] [--pg postgresql://…/test]``; with
``--pg`` the same on a fresh PostgreSQL database as well. For another tree, ``PYTHONPATH=<tree>/src``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import msgspec
import psycopg

from actionhooks.catalog import catalog
from actionhooks.events import NewEvent
from actionhooks.store import Store, open_store

from .run import sample_events


async def fill(store: Store, n: int) -> int:
    account = await store.create_account("bench", "key")
    encode = msgspec.json.encode
    rows = [
        NewEvent(
            account,
            str(uuid.uuid4()),
            str(e["event_type"]),
            cast("int | None", e.get("list_id")),
            cast("str | None", e.get("profile_id")),
            0.0,
            encode(e),
        )
        for e in sample_events(n)
    ]
    for start in range(0, n, 1000):
        await store.append(account, rows[start : start + 1000])
    return account


async def page_through(
    store: Store, account: int, types: list[str], span: int, head: int
) -> tuple[int, float]:
    """Events read and the seconds it took to read every event of ``types``, ``span`` positions a read at most."""
    after, events = 0, 0
    started = time.perf_counter()
    while after < head:
        page = await store.read_events(account, types, None, after, 1000, window=span)
        events += len(page.events)
        after = page.scanned_to
    return events, time.perf_counter() - started


@contextlib.asynccontextmanager
async def opened(engine: str, pg_admin: str) -> AsyncIterator[Store]:
    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ah-reads-") as folder:
            store = open_store(f"sqlite:///{Path(folder) / 'reads.db'}")
            await store.open()
            try:
                yield store
            finally:
                await store.close()
        return
    name = f"ah_reads_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        store = open_store(pg_admin.rsplit("/", 1)[0] + f"/{name}")
        await store.open()
        try:
            yield store
        finally:
            await store.close()
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def measure(engine: str, args: argparse.Namespace) -> None:
    types = [t.code for t in catalog().types]
    hooks = {f"8 types #{i}": types[i * 8 : i * 8 + 8] for i in (0, 3, 7)}
    hooks |= {"1 type": types[:1], "80 types": types}
    async with opened(engine, args.pg) as store:
        account = await fill(store, args.events)
        head = await store.head()
        dialect = store.dialect  # type: ignore[attr-defined]
        modes = [True, False] if dialect.seqs_first else [False, True]
        print(f"\n{engine}: {head:,} events; µs per event read (best of {args.rounds})")
        print("| hook | share | span | " + " | ".join(f"seqs_first {m}" for m in modes) + " |")
        print("|---|---|---|" + "---|" * len(modes))
        for name, wanted in hooks.items():
            for span in args.spans:
                best: dict[bool, float] = {}
                read = 0
                for _ in range(args.rounds):
                    for mode in modes:
                        dialect.seqs_first = mode
                        read, seconds = await page_through(store, account, wanted, span, head)
                        best[mode] = min(best.get(mode, float("inf")), seconds / max(read, 1) * 1e6)
                dialect.seqs_first = modes[0]
                cells = " | ".join(f"{best[m]:.2f}" for m in modes)
                print(f"| {name} | {read / head:.1%} | {span:,} | {cells} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--spans", default="4000,16000,40000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default="", help="an admin URL of PostgreSQL: measure it too")
    args = parser.parse_args()
    args.spans = [int(s) for s in args.spans.split(",")]
    asyncio.run(measure("sqlite", args))
    if args.pg:
        asyncio.run(measure("postgres", args))


if __name__ == "__main__":
    main()
