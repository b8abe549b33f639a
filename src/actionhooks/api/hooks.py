"""Admin routes for hooks: create, list, read, edit (JSON Merge Patch), delete, clone; attempts; dead letters.

A hook of another account answers 404, exactly like a hook that does not exist.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ValidationError
from ..hooks import HookSpec, merge_patch, validate_hook
from ..store.base import Hook, Store
from .responses import ApiError, json_response, read_json, read_optional_json

_ID = re.compile(r"[0-9]{1,19}\Z")
MAX_ID = 2**63 - 1  # ids are BIGINT columns


def parse_id(text: str) -> int | None:
    """A row id from a path or query: ASCII digits for 0 … 2⁶³−1, or None (``int()`` would also take ``+1``,
    ``1_0``, other scripts' digits and numbers past the columns' range)."""
    if not _ID.match(text):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def hook_view(hook: Hook) -> dict[str, Any]:
    return {
        "id": hook.id,
        **hook.spec.to_builtins(public=True),
        "cursor": hook.cursor,
        "created_at": iso(hook.created_at),
        "updated_at": iso(hook.updated_at),
        "last_error": hook.last_error,
        "last_error_at": iso(hook.last_error_at),
    }


def _validated(request: Request, data: Any) -> HookSpec:
    try:
        spec = validate_hook(data)
    except ValidationError as exc:
        raise ApiError(422, exc.message, exc.field) from None
    guard = request.app.state.context.net_guard
    for host in spec.transport.hosts():
        refusal = guard.host_refusal(host)
        if refusal:
            field = "transport.url" if spec.transport.__struct_config__.tag == "http" else "transport"
            raise ApiError(422, f"destination refused: {refusal}", field)
    return spec


async def own_hook(request: Request) -> tuple[Store, int, Hook]:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    hook_id = parse_id(request.path_params["hook_id"])
    if hook_id is None:
        raise ApiError(404, "no such hook")
    hook = await state.store.get_hook(account_id, hook_id)
    if hook is None:
        raise ApiError(404, "no such hook")
    return state.store, account_id, hook


async def _changed(request: Request) -> None:
    """Bring this process's dispatcher in step before answering (the change itself is already committed)."""
    dispatcher = request.app.state.dispatcher
    if dispatcher is not None:
        try:
            await dispatcher.apply_changes()
        except Exception:  # the store hiccupped: the background reconciliation will catch up
            dispatcher.hook_changed()


async def create_hook(request: Request) -> Response:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    spec = _validated(request, await read_json(request))
    hook = await state.store.create_hook(account_id, spec)
    await _changed(request)
    return json_response(hook_view(hook), 201, {"Location": f"/v1/hooks/{hook.id}"})


async def list_hooks(request: Request) -> Response:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    return json_response({"hooks": [hook_view(h) for h in await state.store.list_hooks(account_id)]})


async def get_hook(request: Request) -> Response:
    _, _, hook = await own_hook(request)
    return json_response(hook_view(hook))


async def patch_hook(request: Request) -> Response:
    store, account_id, hook = await own_hook(request)
    patch = await read_json(request)
    if not isinstance(patch, dict):
        raise ApiError(422, "a patch must be a JSON object (JSON Merge Patch, RFC 7386)")
    spec = _validated(request, merge_patch(hook.spec.to_builtins(public=False), patch))
    updated = await store.update_hook(account_id, hook.id, spec)
    if updated is None:
        raise ApiError(404, "no such hook")
    await _changed(request)
    return json_response(hook_view(updated))


async def delete_hook(request: Request) -> Response:
    store, account_id, hook = await own_hook(request)
    await store.delete_hook(account_id, hook.id)
    await _changed(request)
    return Response(status_code=204)


async def clone_hook(request: Request) -> Response:
    store, account_id, hook = await own_hook(request)
    settings = hook.spec.to_builtins(public=False)
    settings["name"] = f"{hook.spec.name} (copy)"[:200]
    patch = await read_optional_json(request)
    if patch is not None:
        if not isinstance(patch, dict):
            raise ApiError(422, "clone overrides must be a JSON object")
        settings = merge_patch(settings, patch)
    spec = _validated(request, settings)
    clone = await store.create_hook(account_id, spec)
    await _changed(request)
    return json_response(hook_view(clone), 201, {"Location": f"/v1/hooks/{clone.id}"})


def _paging(request: Request) -> tuple[int, int | None]:
    limit = parse_id(request.query_params.get("limit", "100"))
    if limit is None or not 1 <= limit <= 1000:
        raise ApiError(422, "limit must be an integer between 1 and 1000", "limit")
    before = request.query_params.get("before")
    before_id = parse_id(before) if before is not None else None
    if before is not None and before_id is None:
        raise ApiError(422, f"before must be an id between 0 and {MAX_ID}", "before")
    return limit, before_id


async def list_attempts(request: Request) -> Response:
    store, _, hook = await own_hook(request)
    limit, before = _paging(request)
    attempts = await store.list_attempts(hook.id, limit, before)
    return json_response({"attempts": [{**msgspec.to_builtins(a), "at": iso(a.at)} for a in attempts]})


def _stored_event(payload: bytes) -> msgspec.Raw | str:
    """A logged event as JSON; one whose bytes are not UTF-8 (accepted before ingest refused them) as a string with
    the bad bytes replaced, so that the answer stays valid JSON."""
    try:
        payload.decode()
    except UnicodeDecodeError:
        return payload.decode(errors="replace")
    return msgspec.Raw(payload)


async def list_dead_letters(request: Request) -> Response:
    store, _, hook = await own_hook(request)
    limit, before = _paging(request)
    letters = await store.list_dead_letters(hook.id, limit, before)
    return json_response(
        {
            "dead_letters": [
                {
                    "id": d.id,
                    "event_id": d.event_id,
                    "event_seq": d.event_seq,
                    "reason": d.reason,
                    "attempts": d.attempts,
                    "failed_at": iso(d.failed_at),
                    "event": _stored_event(d.payload),
                }
                for d in letters
            ]
        }
    )
