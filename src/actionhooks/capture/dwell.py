"""How long a message stayed open, measured by the open pixel itself (docs/capture.md#dwell).

``GET /t/dwell/{token}`` answers an animated 1×1 GIF that is never finished early: its first frame at once (the
image shows, the message lays out), then a frame every ``FRAME_S`` seconds. A mail client that displays images
keeps loading it while the message is on screen and drops the connection when the message is closed (or the
reader moves on); the server notes when that happens. The stream ends by itself after ``MAX_S`` seconds — past
8 s the message counts as ``read`` whatever comes after — so a connection is never held longer. The time from the
first frame to the drop (or to ``MAX_S``) is the dwell, recorded on the ``open`` as ``event_data.dwell_s`` when
the stream ends, from which derivation makes exactly one of ``glanced`` / ``skimmed`` / ``read``.

At most ``MAX_STREAMS`` streams are held per process (each holds one of the server's connections); past that the
pixel answers the plain GIF and the open is recorded without a dwell.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

FRAME_S = 1.0  # a frame every second keeps data flowing (idle connections are cut by proxies)
MAX_S = 10.0  # the stream ends after this long: the message was read
MAX_STREAMS = 512  # held at once per process (the server allows 2048 connections)

# GIF89a, 1×1, a two-colour table; each frame: a graphic control extension (transparent, shown FRAME_S) and the
# one-pixel image; the trailer ends the file.
HEADER = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
FRAME = (
    b"!\xf9\x04\x01"
    + int(FRAME_S * 100).to_bytes(2, "little")
    + b"\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00"
)
TRAILER = b";"

Record = Callable[[float], Awaitable[None]]


class Streams:
    """The dwell streams a process holds (the app keeps one: ``state.dwell_streams``)."""

    def __init__(self, limit: int = MAX_STREAMS) -> None:
        self.limit = limit
        self.held = 0

    def take(self) -> bool:
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    def give_back(self) -> None:
        self.held -= 1


class DwellGif:
    """The ASGI response streaming the GIF; ``record(dwell_s)`` is awaited once the stream has ended (the client
    dropped it, or ``max_s`` passed), whatever ended it."""

    def __init__(
        self,
        record: Record,
        streams: Streams,
        headers: dict[str, str],
        frame_s: float = FRAME_S,
        max_s: float = MAX_S,
    ) -> None:
        self.record = record
        self.streams = streams
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.frame_s = frame_s
        self.max_s = max_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.monotonic()
        gone = asyncio.ensure_future(_disconnect(receive))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"image/gif"), *self.headers],
                }
            )
            await send({"type": "http.response.body", "body": HEADER + FRAME, "more_body": True})
            while True:
                left = self.max_s - (time.monotonic() - started)
                if left <= 0:
                    await send({"type": "http.response.body", "body": TRAILER, "more_body": False})
                    break
                done, _ = await asyncio.wait({gone}, timeout=min(self.frame_s, left))
                if done:
                    break
                if self.max_s - (time.monotonic() - started) > 0:
                    await send({"type": "http.response.body", "body": FRAME, "more_body": True})
        except OSError:  # the client went away while a frame was sent
            pass
        finally:
            gone.cancel()
            self.streams.give_back()
            dwell = min(time.monotonic() - started, self.max_s)
            await asyncio.shield(self.record(round(dwell, 3)))


async def _disconnect(receive: Any) -> None:
    """Returns when the client has gone (a GET has no body to read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
