"""End to end: events posted to the service reach an HTTP receiver through one hook; events/s from the first
POST until the receiver holds every id.

Three processes on the 2 cores: ``actionhooks serve`` (SQLite), ``python -m actionhooks.devtools.receiver`` writing each
received id to a file, and this one posting pre-encoded batches of 1000 events with 4 clients.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from actionhooks.catalog import catalog
from actionhooks.devtools.procs import create_account, free_port

from . import procs
from .run import encode_batches, post_all

ID_LINE = 37  # a UUIDv7 and a newline


def end_to_end(events: list[dict[str, object]], folder: Path, batch_size: int = 1000) -> float:
    db = f"sqlite:///{folder / 'e2e.db'}"
    _, key = create_account(db)
    ids_file = folder / "received.ids"
    ids_file.touch()
    receiver_port, service_port = free_port(), free_port()
    bodies = encode_batches(events, 1000)
    with procs.receiver(receiver_port, ids_file), procs.serve(db, service_port):
        service = f"http://127.0.0.1:{service_port}"
        asyncio.run(_create_hook(service, key, f"http://127.0.0.1:{receiver_port}/hook", batch_size))
        started = time.perf_counter()
        asyncio.run(post_all(f"{service}/v1/events", key, bodies, 4))
        deadline = time.monotonic() + 600
        while (received := _sources_received(ids_file, len(events))) < len(events):
            if time.monotonic() > deadline:
                raise RuntimeError(f"receiver has {received} of {len(events)} events")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    return len(events) / elapsed


def _sources_received(ids_file: Path, wanted: int) -> int:
    """Distinct ids of posted events the receiver holds: the ids the service generated (UUIDv7, 36 characters);
    the events derivation adds (opens from clicks, unique opens, …; their ids are longer) are delivered too and
    not counted. The file is read only once it is large enough to hold ``wanted`` of them."""
    if ids_file.stat().st_size < wanted * ID_LINE:
        return 0
    return len({line for line in ids_file.read_text().split() if len(line) == ID_LINE - 1})


async def _create_hook(service: str, key: str, url: str, batch_size: int) -> None:
    hook = {
        "name": "bench",
        "event_types": [t.code for t in catalog().types],
        "transport": {"type": "http", "url": url, "max_batch_size": batch_size, "timeout_s": 0.2},
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{service}/v1/hooks", json=hook, headers={"Authorization": f"Bearer {key}"}) as resp,
    ):
        if resp.status != 201:
            raise RuntimeError(await resp.text())
