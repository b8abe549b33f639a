"""Admin routes of side deliveries (``dispatch/replay.py``): a hook's replays (start, progress, cancel) and its
dead letters' redrive and discard.

A hook of another account answers 404, like a hook that does not exist; so does a replay of another hook.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ApiError, field_error
from ..registry import Hook
from ..stats import hook_query
from ..store.base import LetterSelection, SideDelivery, Store
from .hooks import _changed as changed
from .hooks import own_hook, parse_id
from .responses import json_response, read_json
from .schema import DeadLetterSelector, Discarded, Redriven, ReplayRequest, ReplayView, timestamp

T = TypeVar("T")
RUNNING = "the hook has a replay running: wait for it or cancel it"


def _body(data: Any, type_: type[T], hint: str) -> T:
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        wrong = field_error(exc)
        raise ApiError(422, f"{wrong.message}; {hint}", wrong.field) from None


async def begin_replay(
    store: Store, hook: Hook, from_at: float, to_at: float, event_types: list[str] | None
) -> SideDelivery:
    """Start a replay of ``hook`` (the API's and ``actionhooks hooks replay``'s checks): ``ApiError`` 422 naming
    the field, or 409 when one is running."""
    if to_at <= from_at:
        raise ApiError(422, "to must be after from", "to")
    types = event_types
    if types is not None:
        outside = [t for t in types if t not in hook.spec.event_types]
        if outside:
            raise ApiError(
                422, f"not among the hook's event types: {', '.join(sorted(set(outside)))}", "event_types"
            )
        types = list(dict.fromkeys(types))
    horizon = await store.pruned_horizon()
    if horizon is not None and from_at <= horizon:
        raise ApiError(
            422,
            f"events accepted up to {timestamp(horizon).isoformat()} were removed by retention:"
            " replay from a later time",
            "from",
        )
    if await store.running_replay(hook.id) is not None:
        raise ApiError(409, RUNNING)
    query = hook_query(hook)
    if types is not None:
        query = query._replace(event_types=tuple(types))
    found = await store.replay_range(query, from_at, to_at)
    replay = await store.add_replay(hook.id, from_at, to_at, types, found)
    if replay is None:
        raise ApiError(409, RUNNING)
    return replay


async def start_replay(request: Request) -> Response:
    hooks, _, hook = await own_hook(request)
    asked = _body(
        await read_json(request),
        ReplayRequest,
        'the body is {"from": RFC 3339, "to": RFC 3339, "event_types": [...] (optional)}',
    )
    replay = await begin_replay(
        hooks.store, hook, asked.from_.timestamp(), asked.to.timestamp(), asked.event_types
    )
    await changed(request)
    return json_response(ReplayView.of(replay), 202, {"Location": f"/v1/hooks/{hook.id}/replays/{replay.id}"})


async def get_replay(request: Request) -> Response:
    hooks, _, hook = await own_hook(request)
    replay_id = parse_id(request.path_params["replay_id"])
    replay = None if replay_id is None else await hooks.store.get_side_delivery(hook.id, replay_id)
    if replay is None or replay.kind != "replay":
        raise ApiError(404, "no such replay")
    return json_response(ReplayView.of(replay))


async def cancel_replay(request: Request) -> Response:
    hooks, _, hook = await own_hook(request)
    replay_id = parse_id(request.path_params["replay_id"])
    replay = None if replay_id is None else await hooks.store.get_side_delivery(hook.id, replay_id)
    if replay is None or replay.kind != "replay":
        raise ApiError(404, "no such replay")
    cancelled = await hooks.store.cancel_side_delivery(hook.id, replay.id)
    if cancelled is None:
        raise ApiError(404, "no such replay")
    await changed(request)
    return json_response(ReplayView.of(cancelled))


def selection(data: Any) -> LetterSelection:
    """The dead letters a redrive or a discard body selects (422 naming the field when it is wrong)."""
    if not isinstance(data, dict):
        raise ApiError(422, 'the body is a JSON object: {"ids": [...]} or {"all": true}')
    picked = _body(data, DeadLetterSelector, 'select {"ids": [...]} or {"all": true}')
    if picked.ids is not None and picked.all:
        raise ApiError(422, "give ids or all: true, not both", "all")
    if picked.ids is None and not picked.all:
        raise ApiError(422, 'select the dead letters: {"ids": [...]} or {"all": true}', "ids")
    if picked.ids is not None and not picked.ids:
        raise ApiError(422, "ids is empty", "ids")
    after = None if picked.failed_after is None else picked.failed_after.timestamp()
    before = None if picked.failed_before is None else picked.failed_before.timestamp()
    if after is not None and before is not None and before <= after:
        raise ApiError(422, "failed_before must be after failed_after", "failed_before")
    ids = None if picked.ids is None else tuple(dict.fromkeys(picked.ids))
    return LetterSelection(ids, picked.reason, after, before)


async def redrive_dead_letters(request: Request) -> Response:
    hooks, _, hook = await own_hook(request)
    pick = selection(await read_json(request))
    _, n = await hooks.store.redrive_dead_letters(hook.id, pick)
    if n:
        await changed(request)
    return json_response(Redriven(n), 202)


async def discard_dead_letters(request: Request) -> Response:
    hooks, _, hook = await own_hook(request)
    pick = selection(await read_json(request))
    return json_response(Discarded(await hooks.store.discard_dead_letters(hook.id, pick)))
