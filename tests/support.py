"""Helpers shared by tests: the service on a real loopback port, named users, polling."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest

from actionhooks.api.auth import hash_key, new_api_key
from actionhooks.backoff import RetryPolicy
from actionhooks.config import IngestLimits, Settings
from actionhooks.netguard import parse_nets
from actionhooks.registry import HookRegistry
from actionhooks.service import build, serving
from actionhooks.store import Store, open_store

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
FAST_RETRY = RetryPolicy(initial_delay_s=0.05, max_delay_s=0.2, max_age_s=0.3)


def service_missing(what: str) -> None:
    """A service the test needs is not there: skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"{what} is not available (CI must provide it)")
    pytest.skip(f"{what} is not available")


def service_settings(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "db": db_url,
        "allow_nets": parse_nets("127.0.0.0/8"),
        "retry": FAST_RETRY,
        "limits": IngestLimits(max_body_bytes=1024 * 1024, max_items=1000, max_pending=100_000),
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class User:
    account_id: int
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Service:
    """The service's app (``service.build``) on a loopback port in the test's event loop, with an aiohttp client."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.app = build(settings, store)
        self.url = ""
        self.session: aiohttp.ClientSession | None = None
        self._running: contextlib.AbstractAsyncContextManager[str] | None = None

    async def start(self) -> None:
        self._running = serving(self.app)
        self.url = await self._running.__aenter__()
        self.session = aiohttp.ClientSession(self.url)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self._running is not None:
            await self._running.__aexit__(None, None, None)

    async def user(self, name: str) -> User:
        key = new_api_key()
        account_id = await self.store.create_account(name, hash_key(key))
        return User(account_id, key)

    async def call(
        self,
        method: str,
        path: str,
        user: User | None,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        assert self.session is not None
        all_headers = dict(user.headers) if user else {}
        all_headers.update(headers or {})
        data = raw if raw is not None else (msgspec.json.encode(body) if body is not None else None)
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        payload_arg: Any = io.BytesIO(data) if data is not None and len(data) > 1_000_000 else data
        async with self.session.request(method, path, data=payload_arg, headers=all_headers) as resp:
            text = await resp.read()
            payload = msgspec.json.decode(text) if text and resp.content_type == "application/json" else text
            return resp.status, payload, dict(resp.headers)

    @property
    def hooks(self) -> HookRegistry:
        registry: HookRegistry = self.app.state.hooks
        return registry

    @property
    def dispatcher(self) -> Any:
        return self.app.state.dispatcher


async def eventually(check: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``check()`` (sync or async) until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def sqlite_service(folder: Any, **overrides: Any) -> AsyncIterator[Service]:
    """The service on a fresh SQLite file in ``folder`` with ``overrides`` of its settings, for tests whose subject
    is not the store (one engine keeps them short)."""
    url = f"sqlite:///{folder / 'actionhooks.db'}"
    store = open_store(url)
    await store.open()
    svc = Service(store, service_settings(url, **overrides))
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
        await store.close()
