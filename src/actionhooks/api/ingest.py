"""``POST /v1/events``: one event object, a JSON array of them, or NDJSON.

Valid events are committed before the answer (``202``); invalid ones are named by index in ``errors``. The answer
is ``400`` (same shape) when no event was valid, ``413`` over the body or item limit, ``429`` with ``Retry-After``
while more events wait for commit than the pending limit allows — the global one, or the account's own
(``max_pending_per_account``: one account's flood is refused while other accounts' requests still pass).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..config import IngestLimits
from ..errors import ApiError, TooManyItems
from ..events import parse_events, split_body
from ..store.base import Deriver, Store
from .responses import json_response, read_body
from .schema import IngestResult


async def ingest(
    store: Store,
    account_id: int,
    body: bytes,
    content_type: str,
    limits: IngestLimits,
    derive: Deriver | None = None,
) -> IngestResult:
    """Validate and commit the events of one request body (with what ``derive`` adds, in the same transaction:
    not counted in the answer); raise ApiError for whole-body problems."""
    try:
        items = list(split_body(body, content_type, limits.max_items))
    except TooManyItems as exc:
        raise ApiError(413, str(exc)) from None
    except ValueError as exc:  # msgspec's DecodeError and ValidationError, a string that is not UTF-8
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "body is nested too deeply") from None
    if not items:
        raise ApiError(400, "no events in the body")
    chosen_ids: set[str] = set()
    events, errors = parse_events(items, account_id, time.time(), chosen_ids)
    if events:
        admit(store, account_id, len(events), limits)
    flags = await store.append(account_id, events, chosen_ids, derive) if events else []
    stored = sum(flags)
    return IngestResult(
        accepted=stored, duplicates=len(flags) - stored, ids=[e.id for e in events], errors=errors
    )


def admit(store: Store, account_id: int, n: int, limits: IngestLimits) -> None:
    """Admit ``n`` parsed events of ``account_id`` to the group commit's queue, or raise 429: the account's waiting
    events plus these past its limit, or everyone's past the global one. Called with nothing awaited between it and
    the append's queueing, so concurrent requests are counted exactly (the check before the body is read cannot see
    the requests still reading theirs). A request finding nothing waiting is admitted whatever its size."""
    mine = store.pending_appends_of(account_id)
    if mine and mine + n > limits.max_pending_per_account:
        raise _busy("too many of this account's events waiting to be committed; retry shortly")
    everyone = store.pending_appends
    if everyone and everyone + n > limits.max_pending:
        raise _busy("too many events waiting to be committed; retry shortly")


def _busy(message: str) -> ApiError:
    return ApiError(429, message, headers={"Retry-After": "1"})


async def post_events(request: Request) -> Response:
    state: Any = request.app.state
    account_id = await state.auth.account(request, "ingest")
    limits: IngestLimits = state.settings.limits
    # refused early, before the body is read, when no event could be admitted (a flood's requests cost no parsing);
    # ``admit`` checks again, exactly, once the events are counted
    if state.store.pending_appends >= limits.max_pending:
        raise _busy("too many events waiting to be committed; retry shortly")
    if state.store.pending_appends_of(account_id) >= limits.max_pending_per_account:
        raise _busy("too many of this account's events waiting to be committed; retry shortly")
    body = await read_body(request, limits.max_body_bytes)
    content_type = request.headers.get("content-type", "")
    result = await ingest(state.store, account_id, body, content_type, limits, state.derivation)
    return json_response(result, 202 if result.ids else 400)
