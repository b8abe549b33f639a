"""API keys: ``ah_`` + 43 url-safe characters (256 random bits), stored as SHA-256 hashes, each with a scope.

A key this long needs no slow hash: SHA-256 of a random 256-bit secret cannot be reversed or guessed.

Scopes: an ``ingest`` key may only send events (``POST /v1/events``); an ``admin`` key may do everything. A route
asks :meth:`Authenticator.account` for the scope it needs (``admin`` unless it says otherwise); a key of too narrow
a scope is refused with ``403``.

Checks are cached per process for ``ttl`` seconds (``ACTIONHOOKS_KEY_CACHE_S``), so that single-event ingest does
not query the store per request and a key revoked anywhere stops working in every process within ``ttl``:

- known keys in one bounded cache, unknown and revoked ones in another, so a flood of bad keys evicts only bad
  keys; a malformed key is refused without any lookup, and concurrent checks of one key share one lookup;
- a revocation through this process drops the key from its cache at once;
- ``last_used_at`` is written at most once a minute per key and process, after a lookup and off the request's path.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable

from cachetools import TTLCache
from starlette.requests import Request

from ..errors import ApiError
from ..store.base import Scope, Store, StoredKey

log = logging.getLogger(__name__)

PREFIX = "ah_"
KEY_PATTERN = re.compile(r"ah_[A-Za-z0-9_-]{43}")
"""The shape of every key ``new_api_key`` makes."""
TOUCH_INTERVAL_S = 60.0
"""How stale a key's ``last_used_at`` may get (plus the cache's ttl) while the key is in use."""

_BEARER = {"WWW-Authenticate": "Bearer"}


def new_api_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def allows(granted: Scope, needed: Scope) -> bool:
    """Whether a key of scope ``granted`` may call a route that needs ``needed``."""
    return granted == "admin" or granted == needed


class Authenticator:
    """Who calls: the key of a request's ``Authorization: Bearer`` header, checked against the store (cached)."""

    def __init__(
        self,
        store: Store,
        ttl: float = 5.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.known: TTLCache[str, StoredKey] = TTLCache(cache_size, ttl, timer=clock)
        self.refused: TTLCache[str, str] = TTLCache(cache_size, ttl, timer=clock)  # digest → why
        self._lookups: dict[str, asyncio.Task[StoredKey | None]] = {}
        self._touches: set[asyncio.Task[None]] = set()

    async def account(self, request: Request, scope: Scope = "admin") -> int:
        """The account of the request's key, if the key's scope allows ``scope``; else ``401`` / ``403``."""
        return (await self.key(request, scope)).account_id

    async def key(self, request: Request, scope: Scope = "admin") -> StoredKey:
        """The request's key (as of at most ``ttl`` seconds ago), if its scope allows ``scope``."""
        header = request.headers.get("authorization", "")
        method, _, presented = header.partition(" ")
        presented = presented.strip()
        if not hmac.compare_digest(method.lower(), "bearer") or not presented:
            raise ApiError(401, "missing API key: send Authorization: Bearer <key>", headers=_BEARER)
        if not KEY_PATTERN.fullmatch(presented):
            raise ApiError(401, "malformed API key: expected ah_ and 43 characters", headers=_BEARER)
        key = await self._check(hash_key(presented))
        if not allows(key.scope, scope):
            raise ApiError(
                403,
                f"this key's scope is {key.scope}: it may only send events (POST /v1/events); "
                f"this call needs an {scope} key",
            )
        return key

    async def account_for(self, digest: str, scope: Scope = "admin") -> int | None:
        """The account of the key of hash ``digest`` when that key is live and its scope allows ``scope``; else
        None. Cached like every check: for those that hold a key's hash rather than the key (the console's
        session, which signs in with an ``admin`` key and is checked again on every request)."""
        try:
            key = await self._check(digest)
        except ApiError:
            return None
        return key.account_id if allows(key.scope, scope) else None

    async def _check(self, digest: str) -> StoredKey:
        key = self.known.get(digest)
        if key is not None:
            return key
        why = self.refused.get(digest)
        if why is None:
            lookup = self._lookups.get(digest)
            if lookup is None:
                lookup = asyncio.ensure_future(self._lookup(digest))
                self._lookups[digest] = lookup
                lookup.add_done_callback(lambda done: self._finished(digest, done))
            found = await asyncio.shield(lookup)
            if found is not None:
                return found
            why = self.refused.get(digest, "invalid API key")
        raise ApiError(401, why, headers=_BEARER)

    def _finished(self, digest: str, lookup: asyncio.Task[StoredKey | None]) -> None:
        self._lookups.pop(digest, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved, even when every request that waited for it is gone

    async def _lookup(self, digest: str) -> StoredKey | None:
        key = await self.store.key_for_hash(digest)
        if key is None or key.revoked_at is not None:
            self.refused[digest] = "invalid API key" if key is None else "this API key was revoked"
            return None
        self.known[digest] = key
        now = time.time()
        if key.last_used_at is None or key.last_used_at < now - TOUCH_INTERVAL_S:
            touch = asyncio.ensure_future(self._touch(key.id, now))
            self._touches.add(touch)
            touch.add_done_callback(self._touches.discard)
        return key

    async def _touch(self, key_id: int, now: float) -> None:
        try:
            await self.store.touch_key(key_id, now, now - TOUCH_INTERVAL_S)
        except Exception:  # only bookkeeping: the store logs its own outages
            log.debug("could not record the use of API key %s", key_id, exc_info=True)

    def forget(self, key_id: int) -> None:
        """Drop key ``key_id`` from this process's cache (it was just revoked here)."""
        for digest, key in list(self.known.items()):
            if key.id == key_id:
                del self.known[digest]
