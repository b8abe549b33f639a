"""A benchmark destination: an HTTP receiver process that counts delivered events and the latency of each from
ingest to its arrival here (now minus the millisecond in the event's UUIDv7 id, made when ingest accepted it).

``python -m bench.sink --port P``; ``POST /hook`` takes a hook's batch (a JSON array of events), ``GET /count``
answers ``{"events": n}`` (what a bench polls while it waits), ``GET /stats`` answers ``{"events": n,
"latencies_ms": [...]}`` (an even sample of at most 50 000), ``POST /reset`` forgets them.

The receiver must not be what a benchmark measures: every event is parsed and counted, but a latency is worked out
only for the events the sample keeps (a reservoir that skips ahead: Li's algorithm L), and it runs on uvloop, as
the service does.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec
import uvloop
from aiohttp import web


class _Event(msgspec.Struct):
    id: str = ""


_decode = msgspec.json.Decoder(list[_Event]).decode
SAMPLE = 50_000
T = TypeVar("T")


def latency_ms(event_id: str, now_ms: float) -> float | None:
    """Milliseconds since the UUIDv7 ``event_id`` was made; ``None`` for an id ingest did not make."""
    if len(event_id) == 36 and event_id[14] == "7":
        return now_ms - int(event_id[:8] + event_id[9:13], 16)
    return None


class Reservoir:
    """An even sample of at most ``size`` of the values offered in turn, without looking at the ones it skips:
    algorithm L (Li, 1994), which draws the gap to the next value kept rather than each value's chance."""

    def __init__(self, size: int, seed: int = 1) -> None:
        self.size = size
        self.values: list[float] = []
        self.seen = 0
        self._rng = random.Random(seed)
        self._w = math.exp(math.log(self._uniform()) / size)
        self._next = size + self._gap()  # index of the next value kept once the sample is full

    def _uniform(self) -> float:
        while (u := self._rng.random()) == 0.0:
            pass
        return u

    def _gap(self) -> int:
        return int(math.log(self._uniform()) / math.log1p(-self._w))

    def add(self, batch: Sequence[T], value: Callable[[T], float | None]) -> None:
        """Offer ``batch``'s items; ``value`` is called only for those the sample keeps (``None``: none to keep)."""
        start, end = self.seen, self.seen + len(batch)
        self.seen = end
        for index in range(start, min(end, self.size)):
            if (v := value(batch[index - start])) is not None:
                self.values.append(v)
        while self._next < end:
            if (v := value(batch[self._next - start])) is not None:
                self.values[self._rng.randrange(len(self.values))] = v
            self._w *= math.exp(math.log(self._uniform()) / self.size)
            self._next += self._gap() + 1


class Sink:
    def __init__(self) -> None:
        self.sample = Reservoir(SAMPLE)

    async def hook(self, request: web.Request) -> web.Response:
        items = _decode(await request.read())
        now_ms = time.time() * 1000
        self.sample.add(items, lambda item: latency_ms(item.id, now_ms))
        return web.Response(status=200, text="ok")

    async def count(self, _: web.Request) -> web.Response:
        return web.Response(
            body=msgspec.json.encode({"events": self.sample.seen}), content_type="application/json"
        )

    async def stats(self, _: web.Request) -> web.Response:
        body = msgspec.json.encode({"events": self.sample.seen, "latencies_ms": self.sample.values})
        return web.Response(body=body, content_type="application/json")

    async def reset(self, _: web.Request) -> web.Response:
        self.sample = Reservoir(SAMPLE)
        return web.Response(status=200, text="ok")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    sink = Sink()
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.add_routes(
        [
            web.post("/hook", sink.hook),
            web.get("/count", sink.count),
            web.get("/stats", sink.stats),
            web.post("/reset", sink.reset),
        ]
    )
    web.run_app(
        app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=uvloop.new_event_loop()
    )


if __name__ == "__main__":
    main()
