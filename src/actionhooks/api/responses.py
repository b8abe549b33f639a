"""JSON responses and request bodies read within limits; refusals are :class:`~actionhooks.errors.ApiError`."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from ..errors import ApiError

_encode = msgspec.json.Encoder().encode


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(data), status_code=status, media_type="application/json", headers=headers)


async def read_json(request: Any, limit: int = 1024 * 1024) -> Any:
    body = await read_body(request, limit)
    try:
        return msgspec.json.decode(body)
    except ValueError as exc:  # msgspec's DecodeError, or a string that is not UTF-8
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "body is nested too deeply") from None


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, refusing with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise ApiError(413, f"body larger than {limit} bytes")
        except ValueError:
            raise ApiError(400, "Content-Length is not a number") from None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
