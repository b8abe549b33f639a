"""The service and a loopback receiver running in a thread of their own, for callers that block (a browser
driver): the console's tests and ``make screenshots``. :meth:`ServiceThread.run` runs a coroutine in the
service's event loop and returns its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from ..api.auth import hash_key, new_api_key
from ..config import Settings
from ..service import build, serving
from ..store import Store, open_store
from .receiver import Receiver

T = TypeVar("T")


class ServiceThread:
    """``with ServiceThread(settings) as service:`` the service on ``service.url`` and a receiver on
    ``service.receiver`` until the block ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = ""
        self.loop = asyncio.new_event_loop()
        self.receiver = Receiver()
        self.store: Store = open_store(settings.db)
        self.app = build(settings, self.store)
        self._thread = threading.Thread(target=self.loop.run_forever, name="actionhooks-service", daemon=True)
        self._stack = contextlib.AsyncExitStack()

    def __enter__(self) -> ServiceThread:
        self._thread.start()
        self.url = self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    async def _start(self) -> str:
        await self.store.open()
        self._stack.push_async_callback(self.store.close)
        await self._stack.enter_async_context(self.receiver)
        url: str = await self._stack.enter_async_context(serving(self.app))
        return url

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return future.result(timeout)

    def account(self, name: str) -> tuple[int, str]:
        """A new account and its API key."""
        key = new_api_key()
        account_id = self.run(self.store.create_account(name, hash_key(key)))
        return account_id, key
