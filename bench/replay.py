"""Replay throughput against live delivery of the same events, in one run (issue 12 §2).

In-process: the store (SQLite in a temporary directory, or ``--pg``), the dispatcher and a counting HTTP receiver on
loopback (one event loop, as in ``serve``; the receiver's own cost is in both figures alike). Each round:

1. a hook (HTTP, ``max_batch_size`` ``--batch``) is created stopped, ``--events`` events are appended to the log;
2. **live**: the hook is resumed from its cursor and drains them — time until the receiver has every one;
3. **replay**: a replay of the range they were accepted in (``begin_replay``, what the API calls), every event
   arriving marked ``Actionhooks-Replay``;
4. **replay + live**: the same replay again while live events of the hook are appended at ``--live-rate`` per
   second; reported: the replay's rate and the live events' delivery lag (p50 / p99 from append to arrival).

Rates are counted from the first event's arrival to the last one's (a resumed hook's worker may wait up to its
poll interval before it starts; a replay starts at the dispatcher's next reconciliation). Rounds alternate which of the two replays goes first; medians and the spread of the rounds are printed.

    .venv/bin/python -m bench.replay [--events 100000] [--rounds 3] [--batch 100] [--pg postgresql://…]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import psycopg
from aiohttp import web

from actionhooks.api.replays import begin_replay
from actionhooks.dispatch.dispatcher import Dispatcher
from actionhooks.events import NewEvent
from actionhooks.hooks import validate_hook
from actionhooks.integrations import TransportContext
from actionhooks.netguard import NetGuard, parse_nets
from actionhooks.registry import HookRegistry
from actionhooks.store import Store, open_store

BODY = (
    b'{"event_type":"deliv","event_date":"2024-05-01T12:00:00Z","list_id":1,"profile_id":"780a1a1a98e34ceb",'
    b'"event_data":{"message_id":292,"campaign_id":1835,"segment_id":0,"resource_id":9},'
    b'"custom_data":{"email":"anna@example.com","city":"Omsk","name":"Anna"}}'
)


class Counter:
    """The receiver: counts events per kind of request (live or replay), and when live ones arrive."""

    def __init__(self) -> None:
        self.live = 0
        self.replayed = 0
        self.live_arrivals: list[float] = []
        self.replay_first = 0.0  # when the first request of the current replay arrived
        self.replay_last = 0.0
        self.changed = asyncio.Event()

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        n = body.count(b'"event_type"')
        if "Actionhooks-Replay" in request.headers:
            self.replay_first = self.replay_first or time.perf_counter()
            self.replay_last = time.perf_counter()
            self.replayed += n
        else:
            self.live += n
            self.live_arrivals += [time.time()] * n
        self.changed.set()
        return web.Response(text="ok")

    async def until(self, done: object) -> None:
        while not done():  # type: ignore[operator]
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), timeout=120)


async def append(store: Store, account_id: int, n: int, event_type: str = "deliv") -> list[float]:
    """``n`` events in batches of 1 000; the time each batch was appended (one per event)."""
    stamps: list[float] = []
    for start in range(0, n, 1000):
        size = min(1000, n - start)
        now = time.time()
        body = BODY.replace(b'"deliv"', f'"{event_type}"'.encode())
        await store.append(
            account_id,
            [NewEvent(account_id, str(uuid.uuid4()), event_type, 1, "p", now, body) for _ in range(size)],
        )
        stamps += [time.time()] * size
    return stamps


async def one_round(
    store: Store,
    registry: HookRegistry,
    dispatcher: Dispatcher,
    url: str,
    args: argparse.Namespace,
    first: str,
) -> dict[str, float]:
    counter = Counter()
    app = web.Application()
    app.router.add_post("/hook", counter.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    account_id = await store.create_account("bench", uuid.uuid4().hex)
    spec = validate_hook(
        {
            "name": "bench",
            "active": False,
            "event_types": ["deliv", "click"],
            "transport": {
                "type": "http",
                "url": f"http://127.0.0.1:{port}/hook",
                "max_batch_size": args.batch,
                "timeout_s": 0.05,
            },
        }
    )
    hook = await registry.create_hook(account_id, spec)
    out: dict[str, float] = {}
    try:
        start = time.time()
        await append(store, account_id, args.events)
        end = time.time()
        await registry.update_hook(
            account_id, hook.id, msgspec.structs.replace(spec, active=True), keep_cursor=True
        )
        await dispatcher.apply_changes()
        await counter.until(lambda: counter.live >= 1)
        began = counter.live_arrivals[0]
        await counter.until(lambda: counter.live >= args.events)
        out["live"] = args.events / (counter.live_arrivals[-1] - began)
        loaded = await registry.load_hook(hook.id)
        assert loaded is not None

        async def replay(with_live: bool) -> None:
            before = counter.replayed
            counter.replay_first = 0.0
            side = await begin_replay(store, loaded, start, end, None)
            assert side.total == args.events, side
            await dispatcher.apply_changes()
            feeding: asyncio.Task[list[float]] | None = None
            if with_live:
                feeding = asyncio.create_task(
                    feed(store, account_id, args.live_rate, counter, before, args.events)
                )
            await counter.until(lambda: counter.replayed - before >= args.events)
            took = counter.replay_last - counter.replay_first
            key = "replay+live" if with_live else "replay"
            out[key] = args.events / took
            if feeding is not None:
                stamps = await feeding  # the feed stops once the replay arrived whole
                await counter.until(lambda: counter.live - args.events >= len(stamps))
                arrivals = counter.live_arrivals[args.events : args.events + len(stamps)]
                lags = sorted(a - s for a, s in zip(arrivals, stamps, strict=True))
                out["live during replay"] = len(stamps) / took
                out["live lag p50 ms"] = 1000 * lags[len(lags) // 2] if lags else 0.0
                out["live lag p99 ms"] = 1000 * lags[int(len(lags) * 0.99)] if lags else 0.0
            for _ in range(600):  # its last progress write: then the next replay may start
                if await store.running_replay(hook.id) is None:
                    break
                await asyncio.sleep(0.05)

        for with_live in (first == "replay+live", first != "replay+live"):
            await replay(with_live)
    finally:
        await registry.delete_hook(account_id, hook.id)
        await dispatcher.apply_changes()
        await runner.cleanup()
    return out


async def feed(
    store: Store, account_id: int, rate: float, counter: Counter, before: int, total: int
) -> list[float]:
    """Live events at ``rate`` per second (batches of 100) until the replay has arrived whole."""
    stamps: list[float] = []
    step = 100 / rate
    next_at = time.monotonic()
    while counter.replayed - before < total:
        stamps += await append(store, account_id, 100, "click")
        next_at += step
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return stamps


async def run(url: str, args: argparse.Namespace) -> None:
    store = open_store(url)
    await store.open()
    registry = HookRegistry(store)
    await registry.open()
    dispatcher = Dispatcher(store, registry, TransportContext(NetGuard(parse_nets("127.0.0.0/8"))))
    await dispatcher.start()
    rounds: list[dict[str, float]] = []
    try:
        for i in range(args.rounds):
            result = await one_round(
                store, registry, dispatcher, url, args, "replay" if i % 2 == 0 else "replay+live"
            )
            rounds.append(result)
            print(f"  round {i + 1}: " + ", ".join(f"{k} {v:,.0f}" for k, v in result.items()), flush=True)
    finally:
        await dispatcher.stop()
        await store.close()
    print(
        f"{store.engine}: {args.events:,} events, batches of {args.batch}, {args.rounds} rounds (median [min–max])"
    )
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        unit = "" if key.endswith("ms") else " events/s"
        print(
            f"  {key:<22} {statistics.median(values):>10,.0f}{unit}  [{min(values):,.0f}–{max(values):,.0f}]"
        )
    ratio = [r["replay"] / r["live"] for r in rounds]
    print(f"  replay / live          {statistics.median(ratio):.2f}  [{min(ratio):.2f}–{max(ratio):.2f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--live-rate", type=float, default=2000.0, help="live events/s during the second replay"
    )
    parser.add_argument(
        "--pg", help="also on this PostgreSQL server's database (a fresh database is made in it)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(f"sqlite:///{Path(tmp) / 'bench.db'}", args))
    if args.pg:
        name = f"bench_replay_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            asyncio.run(run(args.pg.rsplit("/", 1)[0] + f"/{name}", args))
        finally:
            with psycopg.connect(args.pg, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
