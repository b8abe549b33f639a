"""Run the benchmarks of BENCHMARKS.md on this machine and print the figures (markdown).

Each target is measured against a baseline run in the same session, so the ratio survives a noisy machine:

- batch ingest (1000 events/request, durable 202) vs raw SQLite inserts of the same rows into the same schema;
- single-event ingest (wrk, one event per request) vs a bare ASGI app on the same server stack;
- end to end (ingest → dispatcher → HTTP receiver) events/s.

Usage: ``python -m bench.run [--events N] [--only batch,single,e2e,transports]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import tempfile
import time
from pathlib import Path

import aiohttp
import msgspec

from actionhooks.devtools.procs import create_account, free_port
from actionhooks.devtools.traffic import traffic
from actionhooks.events import NewEvent, parse_event
from actionhooks.store.sqlite import SqliteStore

from . import procs

FIELDS = "account_id, id, event_type, list_id, profile_id, received_at, payload"


def sample_events(n: int, seed: int = 7) -> list[dict[str, object]]:
    return list(traffic(random.Random(seed), n))


def encode_batches(events: list[dict[str, object]], size: int) -> list[bytes]:
    return [msgspec.json.encode(events[i : i + size]) for i in range(0, len(events), size)]


# --- raw SQLite -------------------------------------------------------------------------------------------
def raw_sqlite(events: list[dict[str, object]], folder: Path, txn_rows: int = 1000) -> float:
    path = folder / "raw.db"
    store = SqliteStore(str(path))
    asyncio.run(_open_close(store))
    rows: list[NewEvent] = []
    for i, e in enumerate(events):
        parsed = parse_event(msgspec.json.encode(e), i, 1)
        assert isinstance(parsed, NewEvent)
        rows.append(parsed)
    params = rows
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    # the fastest plain way measured here: multi-row INSERT statements of 250 rows (beats executemany by ~10 %)
    many = f"INSERT INTO events ({FIELDS}) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * 250)
    started = time.perf_counter()
    for start in range(0, len(params), txn_rows):
        conn.execute("BEGIN IMMEDIATE")
        chunk = params[start : start + txn_rows]
        for at in range(0, len(chunk) - len(chunk) % 250, 250):
            conn.execute(many, [value for row in chunk[at : at + 250] for value in row])
        if len(chunk) % 250:
            conn.executemany(
                f"INSERT INTO events ({FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                chunk[len(chunk) - len(chunk) % 250 :],
            )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(params) / elapsed


async def _open_close(store: SqliteStore) -> None:
    await store.open()
    await store.close()


# --- batch ingest -----------------------------------------------------------------------------------------
async def post_all(
    url: str, key: str, bodies: list[bytes], concurrency: int, content_type: str = "application/json"
) -> float:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 202:
                        raise RuntimeError(f"ingest answered {resp.status}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def batch_ingest(
    events: list[dict[str, object]], folder: Path, batch: int = 1000, concurrency: int = 8
) -> float:
    db = f"sqlite:///{folder / 'ingest.db'}"
    _, key = create_account(db)
    port = free_port()
    bodies = encode_batches(events, batch)
    with procs.serve(db, port):
        asyncio.run(post_all(f"http://127.0.0.1:{port}/v1/events", key, bodies[:20], concurrency))  # warm-up
        elapsed = asyncio.run(post_all(f"http://127.0.0.1:{port}/v1/events", key, bodies, concurrency))
    return len(events) / elapsed


# --- single-event ingest (wrk) ----------------------------------------------------------------------------
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def wrk(url: str, key: str, body: bytes, seconds: int, connections: int, folder: Path) -> float:
    """Requests per second of ``wrk -t1`` posting ``body`` with ``key``."""
    count, taken = procs.wrk(
        url, WRK_SCRIPT.format(body=body.decode(), key=key), seconds, connections, folder
    )
    return count / taken


def single_ingest(
    event: dict[str, object], folder: Path, seconds: int = 10, connections: int = 64
) -> tuple[float, float]:
    body = msgspec.json.encode(event)
    port = free_port()
    with procs.bare_app(port):
        wrk(f"http://127.0.0.1:{port}/v1/events", "x", body, 2, connections, folder)
        bare = wrk(f"http://127.0.0.1:{port}/v1/events", "x", body, seconds, connections, folder)
    db = f"sqlite:///{folder / 'single.db'}"
    _, key = create_account(db)
    port = free_port()
    with procs.serve(db, port):
        wrk(f"http://127.0.0.1:{port}/v1/events", key, body, 2, connections, folder)
        ours = wrk(f"http://127.0.0.1:{port}/v1/events", key, body, seconds, connections, folder)
    return ours, bare


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--only", default="batch,single,e2e")
    args = parser.parse_args()
    only = set(args.only.split(","))
    events = sample_events(args.events)
    lines = [f"machine: {os.cpu_count()} cores; events per run: {len(events)}", ""]
    with tempfile.TemporaryDirectory(prefix="ah-bench-") as tmp:
        folder = Path(tmp)
        if "batch" in only:
            raw = raw_sqlite(events, folder)
            ingest = batch_ingest(events, folder)
            lines.append(
                f"| raw SQLite inserts (1000 rows/txn in 250-row INSERTs, WAL, synchronous=FULL) | {raw:,.0f} rows/s | baseline |"
            )
            lines.append(
                f"| batch ingest, 1000 events/request, 8 clients | {ingest:,.0f} events/s | {ingest / raw:.0%} of raw |"
            )
        if "single" in only:
            ours, bare = single_ingest(events[0], folder)
            lines.append(
                f"| bare ASGI app (uvicorn+uvloop+httptools), wrk -c64 | {bare:,.0f} req/s | baseline |"
            )
            lines.append(f"| single-event ingest, wrk -c64 | {ours:,.0f} req/s | {ours / bare:.0%} of bare |")
        if "e2e" in only:
            from .e2e import end_to_end

            rate = end_to_end(events, folder)
            lines.append(
                f"| end to end: ingest → dispatcher → HTTP receiver, 1 hook | {rate:,.0f} events/s | |"
            )
        if "transports" in only:  # not in the default: needs RabbitMQ and NATS running
            from .transports import run as transports

            lines += ["", *transports(events, folder)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
