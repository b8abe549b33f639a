"""Admin routes for hooks: create, list, read, edit (JSON Merge Patch), delete, clone, resume; attempts; dead
letters.

A hook of another account answers 404, exactly like a hook that does not exist.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ApiError, ValidationError, field_error
from ..hooks import HookSpec, destination_changes, merge_patch, secrets_not_resent, validate_hook
from ..registry import Hook, HookRegistry
from .responses import json_response, read_json, read_optional_json
from .schema import (
    AttemptList,
    AttemptView,
    DeadLetterList,
    DeadLetterView,
    HookList,
    HookView,
    ResumeOptions,
)

_ID = re.compile(r"[0-9]{1,19}\Z")
MAX_ID = 2**63 - 1  # ids are BIGINT columns


def parse_id(text: str) -> int | None:
    """A row id from a path or query: ASCII digits for 0 … 2⁶³−1, or None (``int()`` would also take ``+1``,
    ``1_0``, other scripts' digits and numbers past the columns' range)."""
    if not _ID.match(text):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def _validated(request: Request, data: Any) -> HookSpec:
    try:
        spec = validate_hook(data)
    except ValidationError as exc:
        raise ApiError(422, exc.message, exc.field) from None
    guard = request.app.state.context.net_guard
    for host in spec.transport.hosts():
        refusal = guard.host_refusal(host)
        if refusal:
            name = spec.transport.field_of_host(host)
            raise ApiError(
                422, f"destination refused: {refusal}", f"transport.{name}" if name else "transport"
            )
    return spec


def _secrets_follow(before: HookSpec, after: HookSpec, patch: dict[str, Any]) -> None:
    """A hook sent somewhere else (``patch`` changed where it connects) takes its secrets along only when the
    patch carries them again: otherwise anyone allowed to edit the hook could point it at an endpoint of theirs
    and read the secrets back from what it receives."""
    moved = destination_changes(before, after)
    missing = secrets_not_resent(after, patch) if moved else []
    if missing:
        raise ApiError(
            422,
            f"{', '.join(moved)} changed: send the hook's secrets again with the change ({', '.join(missing)})",
            missing[0],
        )


async def own_hook(request: Request) -> tuple[HookRegistry, int, Hook]:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    hook_id = parse_id(request.path_params["hook_id"])
    if hook_id is None:
        raise ApiError(404, "no such hook")
    hook = await state.hooks.get_hook(account_id, hook_id)
    if hook is None:
        raise ApiError(404, "no such hook")
    return state.hooks, account_id, hook


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
    hook = await state.hooks.create_hook(account_id, spec)
    await _changed(request)
    return json_response(HookView.of(hook), 201, {"Location": f"/v1/hooks/{hook.id}"})


async def list_hooks(request: Request) -> Response:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    hooks = await state.hooks.list_hooks(account_id)
    return json_response(HookList([HookView.of(h) for h in hooks]))


async def get_hook(request: Request) -> Response:
    _, _, hook = await own_hook(request)
    return json_response(HookView.of(hook))


async def patch_hook(request: Request) -> Response:
    hooks, account_id, hook = await own_hook(request)
    patch = await read_json(request)
    if not isinstance(patch, dict):
        raise ApiError(422, "a patch must be a JSON object (JSON Merge Patch, RFC 7386)")
    spec = _validated(request, merge_patch(hook.spec.to_builtins(public=False), patch))
    _secrets_follow(hook.spec, spec, patch)
    updated = await hooks.update_hook(account_id, hook.id, spec)
    if updated is None:
        raise ApiError(404, "no such hook")
    await _changed(request)
    return json_response(HookView.of(updated))


async def delete_hook(request: Request) -> Response:
    hooks, account_id, hook = await own_hook(request)
    await hooks.delete_hook(account_id, hook.id)
    await _changed(request)
    return Response(status_code=204)


async def clone_hook(request: Request) -> Response:
    hooks, account_id, hook = await own_hook(request)
    settings = hook.spec.to_builtins(public=False)
    settings["name"] = f"{hook.spec.name} (copy)"[:200]
    overrides = await read_optional_json(request)
    if overrides is not None:
        if not isinstance(overrides, dict):
            raise ApiError(422, "clone overrides must be a JSON object")
        settings = merge_patch(settings, overrides)
    spec = _validated(request, settings)
    _secrets_follow(hook.spec, spec, overrides or {})
    clone = await hooks.create_hook(account_id, spec)
    await _changed(request)
    return json_response(HookView.of(clone), 201, {"Location": f"/v1/hooks/{clone.id}"})


async def resume_hook(request: Request) -> Response:
    """Start a stopped hook again from its cursor or from now; a running hook is left as it is."""
    hooks, account_id, hook = await own_hook(request)
    try:
        options = msgspec.convert(await read_json(request), ResumeOptions)
    except msgspec.ValidationError as exc:
        wrong = field_error(exc)
        raise ApiError(
            422, f'{wrong.message}; the body is {{"from": "cursor"}} or {{"from": "now"}}', wrong.field
        ) from None
    if hook.spec.active:
        return json_response(HookView.of(hook))
    spec = msgspec.structs.replace(hook.spec, active=True)
    resumed = await hooks.update_hook(account_id, hook.id, spec, keep_cursor=options.from_ == "cursor")
    if resumed is None:
        raise ApiError(404, "no such hook")
    await _changed(request)
    return json_response(HookView.of(resumed))


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
    hooks, _, hook = await own_hook(request)
    limit, before = _paging(request)
    attempts = await hooks.store.list_attempts(hook.id, limit, before)
    return json_response(AttemptList([AttemptView.of(a) for a in attempts]))


async def list_dead_letters(request: Request) -> Response:
    hooks, _, hook = await own_hook(request)
    limit, before = _paging(request)
    letters = await hooks.store.list_dead_letters(hook.id, limit, before)
    return json_response(DeadLetterList([DeadLetterView.of(d) for d in letters]))
