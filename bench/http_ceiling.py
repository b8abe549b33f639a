"""The HTTP client's own ceiling: how many one-event POSTs aiohttp alone gets answered by the benchmark's receiver.

The receiver is the fan-out benchmark's (``python -m bench.sink``, its own process); the client is a bare aiohttp
session on uvloop with ``concurrency`` requests out at once, each POSTing the same small JSON array and reading the
answer — no batching, no log, no records. Its rate is what a hook of one-event batches could reach if the service
did nothing else; its CPU per request (the client process's, over the run) is the part of each delivery that is
aiohttp's. A baseline for ``bench.fanout``'s ``max_batch_size 1`` scenarios, not a client.

    .venv/bin/python -m bench.http_ceiling --requests 20000 --concurrency 1,16
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import aiohttp
import uvloop

from actionhooks.devtools.procs import free_port

from . import procs

BODY = b'[{"id":"01a22dbc-22ac-72d7-865b-cebe437d02c4","event_type":"deliv","event_data":{"message_id":1}}]'


async def _post_all(url: str, requests: int, concurrency: int) -> float:
    """Seconds for ``requests`` POSTs with ``concurrency`` out at once."""
    left = requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:

        async def one_at_a_time() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url, data=BODY, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"receiver answered {r.status}")

        started = time.perf_counter()
        await asyncio.gather(*(one_at_a_time() for _ in range(concurrency)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", default="1,16", help="comma-separated: requests out at once")
    args = parser.parse_args()
    port = free_port()
    print("| requests out at once | requests/s | client CPU per request |\n|---|---|---|")
    with procs.running([sys.executable, "-m", "bench.sink", "--port", str(port)], port):
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            cpu = time.process_time()
            seconds = uvloop.run(_post_all(f"http://127.0.0.1:{port}/hook", args.requests, concurrency))
            per_request_us = (time.process_time() - cpu) / args.requests * 1e6
            print(f"| {concurrency} | {args.requests / seconds:,.0f} | {per_request_us:.0f} µs |", flush=True)


if __name__ == "__main__":
    main()
