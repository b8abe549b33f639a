"""API keys: ``ah_`` + 43 url-safe characters (256 random bits), stored as SHA-256 hashes.

A key this long needs no slow hash: SHA-256 of a random 256-bit secret cannot be reversed or guessed. Lookups are
cached per process (hash → account) so that single-event ingest does not query the store per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request

from ..errors import ApiError
from ..store.base import Store

PREFIX = "ah_"


def new_api_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    def __init__(self, store: Store, cache_size: int = 10_000) -> None:
        self.store = store
        self.cache: dict[str, int] = {}
        self.cache_size = cache_size

    async def account(self, request: Request) -> int:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if not hmac.compare_digest(scheme.lower(), "bearer") or not key.strip():
            raise ApiError(
                401,
                "missing API key: send Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        digest = hash_key(key.strip())
        account_id = self.cache.get(digest)
        if account_id is None:
            account_id = await self.store.account_for_key(digest)
            if account_id is None:
                raise ApiError(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
            self.cache[digest] = account_id
        return account_id
