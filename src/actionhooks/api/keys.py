"""Admin routes for the account's API keys: create (the secret is answered once), list (never the secret), revoke.

Every route needs an ``admin`` key. A key cannot revoke itself (``409``): revoke it with another admin key, or with
``actionhooks keys revoke``; so through the API an account always keeps an admin key, and the store refuses to
revoke the last live one even when two admin keys revoke each other at once. A key of another account answers
``404``, exactly like a key that does not exist. Revoking a revoked key changes nothing and answers it again.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ApiError, field_error
from ..store.base import Store
from .auth import Authenticator, hash_key, new_api_key
from .responses import json_response, read_json
from .schema import KeyCreated, KeyList, KeyView, NewKey


def _parts(request: Request) -> tuple[Authenticator, Store]:
    state: Any = request.app.state
    return state.auth, state.store


async def create_key(request: Request) -> Response:
    auth, store = _parts(request)
    account_id = await auth.account(request)
    try:
        wanted = msgspec.convert(await read_json(request), NewKey)
    except msgspec.ValidationError as exc:
        wrong = field_error(exc)
        raise ApiError(
            422, f'{wrong.message}; the body is e.g. {{"name": "crm", "scope": "ingest"}}', wrong.field
        ) from None
    secret = new_api_key()
    key = await store.add_key(account_id, wanted.name, wanted.scope, hash_key(secret))
    if key is None:  # the account of a live key exists: accounts are never deleted
        raise ApiError(404, "no such account")
    return json_response(KeyCreated.made(key, secret), 201)


async def list_keys(request: Request) -> Response:
    auth, store = _parts(request)
    account_id = await auth.account(request)
    keys = await store.list_keys(account_id)
    return json_response(KeyList([KeyView.of(k) for k in keys]))


async def revoke_key(request: Request) -> Response:
    auth, store = _parts(request)
    caller = await auth.key(request)
    try:
        key_id = int(request.path_params["key_id"])
    except ValueError:
        raise ApiError(404, "no such key") from None
    if not 0 < key_id < 2**63:  # beyond the BIGINT column: no such key either
        raise ApiError(404, "no such key")
    if key_id == caller.id:
        raise ApiError(409, "a key cannot revoke itself: revoke it with another admin key")
    key = await store.revoke_key(key_id, caller.account_id)
    if key is None:
        raise ApiError(404, "no such key")
    if key.revoked_at is None:
        raise ApiError(409, "this is the account's last admin key: create another admin key first")
    auth.forget(key.id)
    return json_response(KeyView.of(key))
