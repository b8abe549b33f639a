"""The account's settings: ``GET`` / ``PATCH /v1/account`` (derivation on or off) and its tracking keys
(``POST /v1/account/tracking-keys`` makes a new signing key, shown once; ``DELETE …/{key_id}`` retires one)."""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import ApiError
from ..store.base import AccountSettings
from .responses import json_response, read_typed
from .schema import AccountPatch, AccountView, TrackingKeySecret, TrackingKeyView, timestamp


async def _view(state: Any, account_id: int) -> AccountView:
    settings = await state.store.account_settings(account_id)
    keys = await state.store.tracking_keys(account_id)
    return AccountView(
        account_id=account_id,
        derive=settings.derive,
        tracking_keys=[
            TrackingKeyView(
                key_id=k.key_id,
                created_at=timestamp(k.created_at),
                retired_at=None if k.retired_at is None else timestamp(k.retired_at),
            )
            for k in keys
        ],
    )


async def get_account(request: Request) -> Response:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    return json_response(await _view(state, account_id))


async def patch_account(request: Request) -> Response:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    patch = await read_typed(request, AccountPatch)
    if patch.derive is not None:
        await state.store.set_account_settings(account_id, AccountSettings(derive=patch.derive))
    return json_response(await _view(state, account_id))


async def create_tracking_key(request: Request) -> Response:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    key_id, key, at = await state.tracking_keys.rotate(account_id)
    secret = base64.urlsafe_b64encode(key).rstrip(b"=").decode()
    return json_response(TrackingKeySecret(key_id=key_id, secret=secret, created_at=timestamp(at)), 201)


async def retire_tracking_key(request: Request) -> Response:
    state: Any = request.app.state
    account_id = await state.auth.account(request)
    if not await state.tracking_keys.retire(account_id, request.path_params["key_id"]):
        raise ApiError(404, "no such tracking key")
    return Response(status_code=204)
