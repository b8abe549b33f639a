"""How long the event loop stands still while a hook's client library is imported (``integrations.load_client``).

A transport imports its client library lazily (a broker's is an optional extra). Imported by a hook's first send, on
the event loop, every request of every account waits for it; ``load_client`` imports it in a thread before the
worker opens the transport. Each run is a fresh interpreter (the library not yet imported) with a 1 ms ticker on
its event loop: the figure is the longest gap between two ticks while the library loads — ``on the loop`` (as a
first send did) against ``in a thread`` (``load_client``), alternating, ``--rounds`` times each.

Usage: ``python -m bench.client_import [--rounds 3] [--transport http|nats|rabbitmq_queue|kafka]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

SETTINGS: dict[str, dict[str, object]] = {
    "http": {"type": "http", "url": "http://127.0.0.1:9/in"},
    "nats": {"type": "nats", "servers": "127.0.0.1:9", "subject": "s"},
    "rabbitmq_queue": {
        "type": "rabbitmq_queue",
        "host": "127.0.0.1",
        "user": "u",
        "password": "p",
        "queue": "q",
    },
    "kafka": {"type": "kafka", "bootstrap_servers": "127.0.0.1:9", "topic": "t"},
}

_RUN = """
import asyncio, importlib, json, sys, time
from actionhooks import integrations

async def ticker(gaps, stop):
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now

async def main(mode, settings):
    gaps, stop = [], asyncio.Event()
    ticks = asyncio.create_task(ticker(gaps, stop))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    if mode == "on the loop":
        for name in integrations.client_modules(settings):
            importlib.import_module(name)
    else:
        await integrations.load_client(settings)
    took = time.perf_counter() - started
    await asyncio.sleep(0.05)
    stop.set()
    await ticks
    print(json.dumps({"import_ms": took * 1000, "stall_ms": max(gaps) * 1000}))

asyncio.run(main(sys.argv[1], integrations.parse_settings(json.loads(sys.argv[2]))))
"""


def run(mode: str, settings: dict[str, object]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, mode, json.dumps(settings)], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transport", choices=sorted(SETTINGS), default="http")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"on the loop": [], "in a thread": []}
    for round_ in range(args.rounds):
        modes = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
        for mode in modes:
            runs[mode].append(run(mode, SETTINGS[args.transport]))
    print(f"| {args.transport}: client library imported | import ms (median) | longest event-loop stall ms |")
    print("|---|---|---|")
    for mode, results in runs.items():
        stalls = sorted(r["stall_ms"] for r in results)
        imports = statistics.median(r["import_ms"] for r in results)
        print(
            f"| {mode} | {imports:.0f} | {statistics.median(stalls):.0f} ({stalls[0]:.0f}–{stalls[-1]:.0f}) |"
        )


if __name__ == "__main__":
    main()
