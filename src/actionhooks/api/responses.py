"""JSON responses and the API's error shape: ``{"error": "…", "field": "…"}`` (field when one is to blame).

Every route reads its body through :func:`read_body` (or :func:`read_json`, :func:`read_optional_json`): the body
limit is counted before any work, from the declared ``Content-Length`` or as the bytes arrive."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from .. import strict_json
from ..errors import ApiError

_encode = msgspec.json.Encoder().encode


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encode(data), status_code=status, media_type="application/json", headers=headers)


JSON_LIMIT = 1024 * 1024  # bytes of an admin route's JSON body
T = TypeVar("T")


async def read_json(request: Any, limit: int = JSON_LIMIT) -> Any:
    """The body as strict JSON (no duplicate keys, finite numbers, valid UTF-8); 400 when it is not."""
    return _decode(await read_body(request, limit))


async def read_optional_json(request: Any, limit: int = JSON_LIMIT) -> Any:
    """Like :func:`read_json`, but an empty (or blank) body is None."""
    body = await read_body(request, limit)
    return _decode(body) if body.strip() else None


async def read_typed(
    request: Any, type: type[T], limit: int = 64 * 1024, headers: dict[str, str] | None = None
) -> T:
    """The body decoded as ``type`` (msgspec): 422 with msgspec's words when it does not fit the type, 400 when it
    is not JSON; ``headers`` go on the refusal (CORS, for the public collector)."""
    body = await read_body(request, limit)
    try:
        return msgspec.json.decode(body, type=type)
    except msgspec.ValidationError as exc:
        raise ApiError(422, str(exc), headers=headers) from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", headers=headers) from None


def _decode(body: bytes) -> Any:
    try:
        return strict_json.decode(body)
    except ValueError as exc:  # StrictJsonError, msgspec's DecodeError
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
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody is left to answer; not a fault of the service
        raise ApiError(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)
