"""PostgreSQL's partitioned log against the unpartitioned one, in alternating rounds of one run; and the upgrade.

Two source trees: ``--before`` (a checkout of the commit before the partitioned log) and this one. Each figure runs
in a child process with ``PYTHONPATH`` at the tree's ``src`` (this file's code drives both), on a fresh database,
the order of the two trees swapped every round. Figures, in-process on the store (no HTTP), 4 appenders committing
batches of 1000 events (~450 bytes) for ``--seconds``:

- **ingest, generated ids**: the service's own ids (no duplicate check);
- **ingest, producer ids**: every event carries a producer id (the duplicate check reads the ids first);
- **ingest while pruning**: the log first filled with ``--backlog`` events received 8 days ago, the pruning round
  looping beside the appenders (the worst case); the partitioned tree with partitions of ``--span`` positions,
  so the backlog is dropped as whole partitions. Rows pruned per second are reported too. (The ingest figures use
  the default span, 1 000 000.)
- **drain**: the same backlog pruned with nothing else running (rows/s), then ``VACUUM events`` timed — the work
  a chunked ``DELETE`` leaves behind for (auto)vacuum, and a dropped partition does not.

``--upgrade N`` measures migration 009 (the rewrite of the log): N events written by the before tree, then the
first start of this tree, timed.

    .venv/bin/python -m bench.partition --before /tmp/before --pg postgresql://127.0.0.1:5432/test \\
        [--rounds 3] [--seconds 8] [--backlog 300000] [--span 100000] [--upgrade 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent.parent
FIGURES = ("generated", "producer", "pruning", "drain")


# --- the child: one figure on one tree ---------------------------------------------------------------------------
def open_pg(url: str, span: int) -> Any:
    from actionhooks.store.postgres import PostgresStore

    if span and "partition_events" in inspect.signature(PostgresStore).parameters:
        return PostgresStore(url, partition_events=span)
    return PostgresStore(url)


async def child(url: str, figure: str, seconds: float, backlog: int, span: int) -> dict[str, float]:
    from actionhooks.registry import HookRegistry

    from .retention import Pruning, batch, fill

    store = open_pg(url, span) if figure in ("pruning", "drain") else open_pg(url, 0)
    await store.open()
    account_id = await store.create_account("bench", uuid.uuid4().hex)
    registry = HookRegistry(store)
    await registry.open()

    try:
        if figure in ("pruning", "drain"):
            await fill(store, account_id, backlog, time.time() - 8 * 86400)
        if figure == "drain":
            return await drain(store, registry, url)
        latencies: list[float] = []
        count = 0
        stop = time.monotonic() + seconds

        async def appender() -> None:
            nonlocal count
            while time.monotonic() < stop:
                events = batch(account_id, time.time())
                chosen = {e.id for e in events} if figure == "producer" else ()
                started = time.perf_counter()
                await store.append(account_id, events, chosen)
                latencies.append(time.perf_counter() - started)
                count += len(events)

        pruning = Pruning(store, registry) if figure == "pruning" else None
        started = time.monotonic()
        await asyncio.gather(*(appender() for _ in range(4)))
        elapsed = time.monotonic() - started
        pruned = await pruning.stop() if pruning is not None else 0
        q = statistics.quantiles(latencies, n=100)
        return {
            "events/s": count / elapsed,
            "p50 ms": q[49] * 1000,
            "p99 ms": q[98] * 1000,
            "pruned/s": pruned / elapsed,
        }
    finally:
        await store.close()


async def drain(store: Any, registry: Any, url: str) -> dict[str, float]:
    """Prune the whole backlog with nothing else running; then the VACUUM the removed rows leave to do."""
    from actionhooks.config import Retention
    from actionhooks.maintenance import prune_round

    await asyncio.sleep(1)  # let the statistics settle
    pruned = 0
    started = time.perf_counter()
    while True:
        done = await prune_round(store, registry, Retention())
        pruned += done.events
        if not done.more and not done.events:
            break
    took = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        vacuum_started = time.perf_counter()
        conn.execute("VACUUM events")
        vacuum = time.perf_counter() - vacuum_started
    return {
        "events/s": 0.0,
        "p50 ms": 0.0,
        "p99 ms": 0.0,
        "pruned/s": pruned / took,
        "vacuum ms": vacuum * 1000,
    }


async def fill(url: str, events: int) -> None:
    from actionhooks.events import NewEvent
    from actionhooks.store.postgres import PostgresStore

    from .retention import BODY

    store = PostgresStore(url)
    await store.open()
    account_id = await store.create_account("bench", uuid.uuid4().hex)
    for _ in range(events // 1000):
        at = time.time()
        await store.append(
            account_id,
            [NewEvent(account_id, str(uuid.uuid4()), "deliv", 1, "p", at, BODY) for _ in range(1000)],
        )
    await store.close()


async def upgrade(url: str) -> dict[str, float]:
    from actionhooks.store.postgres import PostgresStore

    store = PostgresStore(url)
    started = time.perf_counter()
    await store.open()
    took = time.perf_counter() - started
    events = await store.count_events()
    await store.close()
    return {"seconds": took, "events": events}


# --- the parent ----------------------------------------------------------------------------------------------------
class Database:
    def __init__(self, server: str) -> None:
        self.server = server
        self.name = f"actionhooks_bench_{uuid.uuid4().hex[:8]}"
        self.url = f"{server.rsplit('/', 1)[0]}/{self.name}"

    def __enter__(self) -> Database:
        with psycopg.connect(self.server, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def run_child(tree: Path, *args: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{HERE}")
    out = subprocess.run(
        [sys.executable, "-m", "bench.partition", "--child", *args],
        env=env,
        cwd=HERE,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path)
    parser.add_argument("--pg", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--backlog", type=int, default=300_000)
    parser.add_argument("--span", type=int, default=100_000)
    parser.add_argument("--only", default=",".join(FIGURES))
    parser.add_argument("--upgrade", type=int, default=0, help="measure the upgrade of this many events")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--figure", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.figure == "fill":
            asyncio.run(fill(args.url, args.backlog))
            print("{}")
        elif args.figure == "upgrade":
            print(json.dumps(asyncio.run(upgrade(args.url))))
        else:
            print(
                json.dumps(asyncio.run(child(args.url, args.figure, args.seconds, args.backlog, args.span)))
            )
        return
    assert args.before is not None, "--before: a checkout of the commit before the partitioned log"
    trees = {"before": args.before.resolve(), "after": HERE}
    figures = [f for f in args.only.split(",") if f]
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_no in range(args.rounds):
        order = ["before", "after"] if round_no % 2 == 0 else ["after", "before"]
        for figure in figures:
            for label in order:
                with Database(args.pg) as db:
                    common = ["--url", db.url, "--seconds", str(args.seconds), "--backlog", str(args.backlog)]
                    got = run_child(trees[label], *common, "--figure", figure, "--span", str(args.span))
                results.setdefault((figure, label), []).append(got)
                print(
                    f"round {round_no + 1} {figure:9} {label:6} {json.dumps({k: round(v) for k, v in got.items()})}"
                )
    print(f"\n{args.rounds} rounds, {args.seconds:.0f} s each; median [min–max]")
    for figure in figures:
        keys = ("events/s", "p50 ms", "p99 ms") + (("pruned/s",) if figure == "pruning" else ())
        if figure == "drain":
            keys = ("pruned/s", "vacuum ms")
        for key in keys:
            cells = []
            for label in ("before", "after"):
                values = [r[key] for r in results[(figure, label)]]
                cells.append(f"{statistics.median(values):9,.0f} [{min(values):,.0f}–{max(values):,.0f}]")
            before = statistics.median(r[key] for r in results[(figure, "before")])
            after = statistics.median(r[key] for r in results[(figure, "after")])
            ratio = after / before if before else float("nan")
            print(f"  {figure:9} {key:9} before {cells[0]:28} after {cells[1]:28} after/before {ratio:.2f}")
    if args.upgrade:
        with Database(args.pg) as db:
            run_child(trees["before"], "--url", db.url, "--figure", "fill", "--backlog", str(args.upgrade))
            got = run_child(trees["after"], "--url", db.url, "--figure", "upgrade")
        per_million = got["seconds"] / got["events"] * 1e6 if got["events"] else 0.0
        print(
            f"upgrade: {got['events']:,.0f} events rewritten in {got['seconds']:.1f} s"
            f" ({per_million:.1f} s per million events)"
        )


if __name__ == "__main__":
    main()
