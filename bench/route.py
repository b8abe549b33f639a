"""The feed's routing alone (issue 11, ``1 + 99 idle``): the event loop's time to wake the hooks a chunk of the log
concerns, with one hook taking every type and ``--idle`` hooks of the same types narrowed to a ``list_id`` the
traffic never has; and the idle hooks' reads of the chunk (each polls once a second). CPU time only, no store, no
I/O: steadier than the end-to-end scenario.

Usage: ``python -m bench.route [--idle 99] [--events 5000]``; for another tree, ``PYTHONPATH=<tree>/src``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import timeit

from actionhooks.dispatch.feed import LogFeed, Subscription, _Chunk
from actionhooks.events import LoggedEvent
from actionhooks.store.base import LogPage, Store


async def route_time(idle: int, events: int) -> tuple[float, float]:
    """Seconds the routing of one ``events``-event chunk takes, and the idle hooks' reads of it (best of five)."""
    rnd = random.Random(1)
    types = [f"type{i}" for i in range(80)]
    logged = [LoggedEvent(i + 1, str(i), rnd.choice(types), 1, "p", b"{}") for i in range(events)]
    page = LogPage([1] * events, logged, events, True)
    store: Store = None  # type: ignore[assignment]  # routing reads nothing
    feed = LogFeed(store)
    subs = [
        Subscription(1, tuple(types), None if i == 0 else 1_000 + i, asyncio.Event()) for i in range(idle + 1)
    ]
    for sub in subs:
        feed.subscribe(sub)
    chunk = _Chunk.of(0, page, feed._subscribers)

    def route() -> None:
        for sub in subs:
            sub.wake.clear()
        feed._route(chunk)

    def read() -> None:  # what each idle hook's poll (once a second) does: read the chunk after its position
        chunk._by_list = None  # (the index is built by the first such read of a chunk, and counted here)
        for sub in subs[1:]:
            chunk.pick(1, frozenset(sub.event_types), sub.list_id, 0, 1000)

    routing = min(timeit.repeat(route, number=20, repeat=5)) / 20
    reading = min(timeit.repeat(read, number=5, repeat=5)) / 5
    return routing, reading


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=int, default=99)
    parser.add_argument("--events", type=int, default=5_000)
    args = parser.parse_args()
    routing, reading = asyncio.run(route_time(args.idle, args.events))
    for what, seconds in (("routing", routing), (f"the {args.idle} idle hooks reading", reading)):
        print(
            f"{what} a {args.events}-event chunk, 1 + {args.idle} idle hooks: {seconds * 1000:.2f} ms"
            f" ({seconds / args.events * 1e9:,.0f} µs per 1000 events)"
        )


if __name__ == "__main__":
    main()
