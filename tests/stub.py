"""A stub transport for tests of the dispatcher (the unit under test is the caller, not the destination); the
tests register it (``INTEGRATION``, from ``conftest.py``), the service does not know it.

``{"type": "stub", "name": "x"}`` delivers to the in-process :class:`StubDestination` registered as ``x``: it
records every batch it accepts, fails or holds sends on command, and lets a test wait for a number of events.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import ClassVar

from actionhooks.errors import DeliveryError
from actionhooks.integrations import Integration
from actionhooks.integrations.base import (
    Batch,
    BatchSize,
    BatchTimeout,
    Receipt,
    TransportContext,
    TransportSettings,
)

INTEGRATION = Integration("stub", ("stub",), __name__)
"""Registered by ``tests/conftest.py``: the service itself knows no ``stub`` transport."""


class Settings(TransportSettings, tag="stub"):
    max_batch_size: BatchSize = 100
    timeout_s: BatchTimeout = 1.0
    name: str = "default"
    max_in_flight: int = 1

    def sends_in_flight(self) -> int:
        return self.max_in_flight


class StubDestination:
    registry: ClassVar[dict[str, StubDestination]] = {}

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.batches: list[Batch] = []
        self.calls = 0
        self.failures: deque[DeliveryError] = deque()
        self.failing_calls: dict[int, DeliveryError] = {}
        self._changed = asyncio.Event()
        self.gate: asyncio.Event | None = None  # while set up and not yet set, sends wait (see ``hold``)
        self.open_sends = 0  # sends begun and not yet answered
        self.most_at_once = 0  # the most sends open at one time
        StubDestination.registry[name] = self

    def hold(self) -> asyncio.Event:
        """Sends wait until the returned event is set (a slow destination)."""
        self.gate = asyncio.Event()
        return self.gate

    def fail_next(self, error: DeliveryError, times: int = 1) -> None:
        self.failures.extend([error] * times)

    def fail_call(self, number: int, error: DeliveryError) -> None:
        """The ``number``-th send to reach the destination (counting from 1, all sends so far included) fails."""
        self.failing_calls[number] = error

    @property
    def event_ids(self) -> list[str]:
        return [m.id for b in self.batches for m in b.messages]

    async def wait_for_events(self, count: int, timeout: float = 10.0) -> None:
        await self._until(lambda: len(self.event_ids) >= count, timeout)

    async def wait_for_open_sends(self, count: int, timeout: float = 10.0) -> None:
        await self._until(lambda: self.open_sends >= count, timeout)

    async def wait_for_calls(self, count: int, timeout: float = 10.0) -> None:
        await self._until(lambda: self.calls >= count, timeout)

    async def _until(self, done: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    def receive(self, batch: Batch) -> Receipt:
        self.calls += 1
        self._changed.set()
        if self.calls in self.failing_calls:
            raise self.failing_calls.pop(self.calls)
        if self.failures:
            raise self.failures.popleft()
        self.batches.append(batch)
        return Receipt(status=200)


class StubTransport:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, batch: Batch) -> Receipt:
        destination = StubDestination.registry.get(self.settings.name)
        if destination is None:
            raise DeliveryError(f"no stub destination named {self.settings.name!r}", permanent=True)
        destination.open_sends += 1
        destination.most_at_once = max(destination.most_at_once, destination.open_sends)
        destination._changed.set()
        try:
            if destination.gate is not None:
                await destination.gate.wait()
            return destination.receive(batch)
        finally:
            destination.open_sends -= 1

    async def close(self) -> None:
        return None


def open(settings: TransportSettings, context: TransportContext) -> StubTransport:
    assert isinstance(settings, Settings)
    return StubTransport(settings)
