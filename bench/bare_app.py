"""The baseline for single-event ingest: a bare ASGI app that reads the body and answers 202 with a small JSON,
served by the same uvicorn/uvloop/httptools stack as the service. It does nothing else."""

from __future__ import annotations

from typing import Any

BODY = b'{"accepted":1,"duplicates":0,"ids":["00000000-0000-7000-8000-000000000000"],"errors":[]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 202, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
