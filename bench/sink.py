"""A benchmark destination: an HTTP receiver process that counts delivered events and the latency of each from
ingest to its arrival here (now minus the millisecond in the event's UUIDv7 id, made when ingest accepted it).

``python -m bench.sink --port P``; ``POST /hook`` takes a hook's batch (a JSON array of events), ``GET /stats``
answers ``{"events": n, "latencies_ms": [...]}`` (a sample of at most 200 000), ``POST /reset`` forgets them.
"""

from __future__ import annotations

import argparse
import random
import time

import msgspec
from aiohttp import web


class _Event(msgspec.Struct):
    id: str = ""


_decode = msgspec.json.Decoder(list[_Event]).decode
SAMPLE = 200_000


class Sink:
    def __init__(self) -> None:
        self.events = 0
        self.latencies: list[float] = []
        self.rng = random.Random(1)

    async def hook(self, request: web.Request) -> web.Response:
        items = _decode(await request.read())
        now_ms = time.time() * 1000
        for item in items:
            self.events += 1
            if len(item.id) == 36 and item.id[14] == "7":  # a UUIDv7 made by ingest
                latency = now_ms - int(item.id[:8] + item.id[9:13], 16)
                if len(self.latencies) < SAMPLE:
                    self.latencies.append(latency)
                else:  # reservoir: an even sample of every event
                    at = self.rng.randrange(self.events)
                    if at < SAMPLE:
                        self.latencies[at] = latency
        return web.Response(status=200, text="ok")

    async def stats(self, _: web.Request) -> web.Response:
        body = msgspec.json.encode({"events": self.events, "latencies_ms": self.latencies})
        return web.Response(body=body, content_type="application/json")

    async def reset(self, _: web.Request) -> web.Response:
        self.events, self.latencies = 0, []
        return web.Response(status=200, text="ok")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    sink = Sink()
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.add_routes(
        [web.post("/hook", sink.hook), web.get("/stats", sink.stats), web.post("/reset", sink.reset)]
    )
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
