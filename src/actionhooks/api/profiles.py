"""Profile routes (docs/capture.md#profiles): ``PUT`` replaces, ``PATCH`` merges (JSON Merge Patch), ``GET`` reads,
``DELETE`` erases (a tombstone stays), ``POST /v1/profiles`` upserts in bulk (a JSON array or NDJSON). Bodies and
bulk items are strict JSON (``strict_json``: no duplicate keys, numbers a double holds, valid Unicode), as events
are: what a profile holds reaches receivers in delivered messages.

A deleted profile answers 404 to ``GET``; a ``PUT`` or ``PATCH`` after it starts a new profile."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from .. import profiles, strict_json
from ..errors import ApiError, StrictJsonError, ValidationError
from ..events import ItemError, split_body
from ..hooks import merge_patch
from ..profiles import Profile, ProfileWrite, StoredProfile
from .responses import json_response, read_body, read_json
from .schema import ProfileUpsertResult, ProfileView, timestamp

MAX_BODY = 10 * 1024 * 1024
MAX_ITEMS = 10_000
_PROFILE_ID = re.compile(r"[^\x00]{1,256}")


def _view(profile_id: str, profile: Profile, updated_at: float) -> ProfileView:
    return ProfileView(
        profile_id=profile_id,
        list_id=profile.list_id,
        email=profile.email,
        phone=profile.phone,
        fields=profile.fields,
        subscriptions=profile.subscriptions,
        updated_at=timestamp(updated_at),
    )


async def _target(request: Request) -> tuple[Any, int, str]:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    profile_id = request.path_params["profile_id"]
    if not _PROFILE_ID.fullmatch(profile_id):
        raise ApiError(404, "no such profile")
    return state, account_id, profile_id


def _invalid(exc: ValidationError) -> ApiError:
    return ApiError(422, exc.message, exc.field)


async def get_profile(request: Request) -> Response:
    state, account_id, profile_id = await _target(request)
    stored = (await state.store.get_profiles(account_id, [profile_id])).get(profile_id)
    profile = profiles.load(stored) if stored is not None else None
    if stored is None or profile is None:
        raise ApiError(404, "no such profile")
    return json_response(_view(profile_id, profile, stored.updated_at))


async def put_profile(request: Request) -> Response:
    state, account_id, profile_id = await _target(request)
    data = await read_json(request, MAX_BODY)
    try:
        profile = profiles.profile_from_builtins(data)
    except ValidationError as exc:
        raise _invalid(exc) from None
    await state.store.put_profiles(account_id, [profiles.write(profile_id, profile)])
    return await get_profile(request)


async def patch_profile(request: Request) -> Response:
    state, account_id, profile_id = await _target(request)
    patch = await read_json(request, MAX_BODY)
    if not isinstance(patch, dict):
        raise ApiError(422, "a merge patch of a profile is a JSON object")

    def change(stored: StoredProfile | None) -> ProfileWrite:
        current = profiles.load(stored) if stored is not None else None
        base = msgspec.to_builtins(current) if current is not None else {}
        return profiles.write(profile_id, profiles.profile_from_builtins(merge_patch(base, patch)))

    try:
        await state.store.change_profile(account_id, profile_id, change)
    except ValidationError as exc:
        raise _invalid(exc) from None
    return await get_profile(request)


async def delete_profile(request: Request) -> Response:
    state, account_id, profile_id = await _target(request)

    def erase(stored: StoredProfile | None) -> ProfileWrite | None:
        if stored is None or stored.body is None:
            return None
        return profiles.erase(profile_id, stored.list_id)

    if await state.store.change_profile(account_id, profile_id, erase) is None:
        raise ApiError(404, "no such profile")
    return Response(status_code=204)


async def upsert_profiles(request: Request) -> Response:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    body = await read_body(request, MAX_BODY)
    try:
        items = list(split_body(body, request.headers.get("content-type", "")))
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    if len(items) > MAX_ITEMS:
        raise ApiError(413, f"{len(items)} profiles in one request; the limit is {MAX_ITEMS}")
    if not items:
        raise ApiError(400, "no profiles in the body")
    writes: dict[str, ProfileWrite] = {}
    errors: list[ItemError] = []
    for index, raw in enumerate(items):
        try:
            strict_json.check(raw)
        except StrictJsonError as exc:
            errors.append(ItemError(index, str(exc)))
            continue
        try:
            item = profiles.parse_item(raw)
        except ValidationError as exc:
            errors.append(ItemError(index, exc.message, exc.field))
            continue
        data = msgspec.structs.asdict(item)
        profile_id = data.pop("profile_id")
        writes[profile_id] = profiles.write(profile_id, Profile(**data))  # the last of an id wins
    if writes:
        await state.store.put_profiles(account_id, list(writes.values()))
    return json_response(ProfileUpsertResult(len(writes), errors), 200 if writes else 400)
