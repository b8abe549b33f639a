"""A typed client of the HTTP API for producers and operators: send events, manage hooks.

:class:`AsyncClient` runs on aiohttp; :class:`Client` makes the same calls blocking, on an event loop of its own
(create it outside a running loop, e.g. in a script or a worker thread). Answers are decoded into the types the
service encodes them from (``actionhooks.api.schema``)::

    with Client("http://127.0.0.1:8080", "ah_…") as client:
        report = client.send_events(events)          # batched; ids assigned here; retried on 429 and 503
        hook = client.create_hook({"name": "crm", "event_types": ["deliv"], "transport": {...}})

``send_events`` gives every event without an ``id`` a UUIDv7 before the first try, so a batch retried after a lost
answer (a 503, a dropped connection) is stored once: the service acknowledges the repeat as a duplicate. It
retries ``429`` and ``503`` after ``Retry-After`` (else with back-off) and, for events only, connection failures.
Other errors raise :class:`RequestFailed` with the service's ``error`` and ``field``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import msgspec

from .api.schema import (
    AttemptList,
    AttemptView,
    DeadLetterList,
    DeadLetterView,
    Discarded,
    ErrorBody,
    EventTypeList,
    HookList,
    HookView,
    IngestResult,
    Redriven,
    ReplayView,
    TestOutcome,
)
from .catalog import EventType
from .errors import RequestFailed
from .events import ItemError
from .ids import new_ids

T = TypeVar("T")
RETRIED_STATUSES = frozenset({429, 503})

__all__ = ["AsyncClient", "Client", "RequestFailed"]


class _Answer(msgspec.Struct):
    status: int
    body: bytes


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return None  # absent, or an HTTP date: back off instead


class AsyncClient:
    """``url``: the service's base URL; ``api_key``: one account's key. Events go in batches of at most
    ``batch_size`` events and ``batch_bytes`` bytes (keep both under the service's limits); a request is tried
    ``1 + retries`` times, waiting ``Retry-After`` or ``backoff_s`` doubling up to ``max_backoff_s``."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        batch_size: int = 1000,
        batch_bytes: int = 4 * 1024 * 1024,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 60.0,
    ) -> None:
        if batch_size < 1 or batch_bytes < 1 or retries < 0:
            raise ValueError("batch_size and batch_bytes must be positive, retries not negative")
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # events

    async def send_events(self, events: Iterable[Mapping[str, Any]]) -> IngestResult:
        """Send events in batches; the report covers them all, ``errors`` indexed in ``events``' order.

        Every valid event is committed when this returns. Events are not modified: the ids given to those without
        one are in ``ids``."""
        items = [dict(e) for e in events]
        fresh = iter(new_ids(sum("id" not in e for e in items)))
        for item in items:
            if "id" not in item:
                item["id"] = next(fresh)
        report = IngestResult(accepted=0, duplicates=0, ids=[], errors=[])
        start = 0
        for batch in self._batches([msgspec.json.encode(e) for e in items]):
            answer = await self._request(
                "POST", "/v1/events", b"[" + b",".join(batch) + b"]", retry_unreachable=True
            )
            if answer.status in (202, 400) and b'"accepted"' in answer.body:
                part = msgspec.json.decode(answer.body, type=IngestResult)
            else:
                _raise_for(answer)
                raise AssertionError("unreachable")  # _raise_for raises: the service answers 202 or an error
            report.accepted += part.accepted
            report.duplicates += part.duplicates
            report.ids.extend(part.ids)
            report.errors.extend(ItemError(e.index + start, e.error, e.field) for e in part.errors)
            start += len(batch)
        return report

    async def send_event(self, event: Mapping[str, Any]) -> IngestResult:
        return await self.send_events([event])

    def _batches(self, encoded: list[bytes]) -> Iterable[list[bytes]]:
        batch: list[bytes] = []
        size = 2
        for item in encoded:
            if batch and (len(batch) == self.batch_size or size + len(item) + 1 > self.batch_bytes):
                yield batch
                batch, size = [], 2
            batch.append(item)
            size += len(item) + 1
        if batch:
            yield batch

    async def event_types(self) -> list[EventType]:
        return (await self._get("/v1/event-types", EventTypeList)).event_types

    # hooks

    async def create_hook(self, settings: Mapping[str, Any]) -> HookView:
        return await self._send("POST", "/v1/hooks", settings, HookView, 201)

    async def list_hooks(self) -> list[HookView]:
        return (await self._get("/v1/hooks", HookList)).hooks

    async def get_hook(self, hook_id: int) -> HookView:
        return await self._get(f"/v1/hooks/{hook_id}", HookView)

    async def update_hook(self, hook_id: int, patch: Mapping[str, Any]) -> HookView:
        """A JSON Merge Patch over the hook's settings (``None`` removes a field; ``"***"`` keeps a secret)."""
        return await self._send("PATCH", f"/v1/hooks/{hook_id}", patch, HookView, 200)

    async def delete_hook(self, hook_id: int) -> None:
        answer = await self._request("DELETE", f"/v1/hooks/{hook_id}", retry_unreachable=True)
        if answer.status != 204:
            _raise_for(answer)

    async def clone_hook(self, hook_id: int, overrides: Mapping[str, Any] | None = None) -> HookView:
        return await self._send("POST", f"/v1/hooks/{hook_id}/clone", overrides, HookView, 201)

    async def test_hook(self, hook_id: int, event_type: str | None = None) -> TestOutcome:
        options = {"event_type": event_type} if event_type else None
        return await self._send("POST", f"/v1/hooks/{hook_id}/test", options, TestOutcome, 200)

    async def attempts(self, hook_id: int, limit: int = 100, before: int | None = None) -> list[AttemptView]:
        path = f"/v1/hooks/{hook_id}/attempts?{_paging(limit, before)}"
        return (await self._get(path, AttemptList)).attempts

    async def dead_letters(
        self, hook_id: int, limit: int = 100, before: int | None = None
    ) -> list[DeadLetterView]:
        path = f"/v1/hooks/{hook_id}/dead-letters?{_paging(limit, before)}"
        return (await self._get(path, DeadLetterList)).dead_letters

    # replays and dead letters (docs/delivery.md#replay-and-redrive)

    async def start_replay(
        self, hook_id: int, start: datetime, end: datetime, event_types: list[str] | None = None
    ) -> ReplayView:
        """Replay the hook's events accepted in ``[start, end)`` (aware datetimes)."""
        body: dict[str, Any] = {"from": start, "to": end}
        if event_types is not None:
            body["event_types"] = event_types
        return await self._send("POST", f"/v1/hooks/{hook_id}/replays", body, ReplayView, 202)

    async def replay(self, hook_id: int, replay_id: int) -> ReplayView:
        return await self._get(f"/v1/hooks/{hook_id}/replays/{replay_id}", ReplayView)

    async def cancel_replay(self, hook_id: int, replay_id: int) -> ReplayView:
        return await self._send("DELETE", f"/v1/hooks/{hook_id}/replays/{replay_id}", None, ReplayView, 200)

    async def redrive_dead_letters(self, hook_id: int, **selector: Any) -> int:
        """``ids=[...]`` or ``all=True``, optionally ``reason``, ``failed_after``, ``failed_before``: how many."""
        path = f"/v1/hooks/{hook_id}/dead-letters/redrive"
        return (await self._send("POST", path, selector, Redriven, 202)).redriven

    async def discard_dead_letters(self, hook_id: int, **selector: Any) -> int:
        path = f"/v1/hooks/{hook_id}/dead-letters/discard"
        return (await self._send("POST", path, selector, Discarded, 200)).discarded

    # transport

    async def _get(self, path: str, kind: type[T]) -> T:
        answer = await self._request("GET", path, retry_unreachable=True)
        if answer.status != 200:
            _raise_for(answer)
        return msgspec.json.decode(answer.body, type=kind)

    async def _send(
        self, method: str, path: str, body: Mapping[str, Any] | None, kind: type[T], expected: int
    ) -> T:
        answer = await self._request(method, path, msgspec.json.encode(body) if body is not None else None)
        if answer.status != expected:
            _raise_for(answer)
        return msgspec.json.decode(answer.body, type=kind)

    async def _request(
        self, method: str, path: str, body: bytes | None = None, *, retry_unreachable: bool = False
    ) -> _Answer:
        """One call, tried again on 429 and 503 — and, when ``retry_unreachable`` (the request is safe to repeat),
        when the connection fails."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        headers = {"Content-Type": "application/json"} if body is not None else None
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                async with self._session.request(method, self.url + path, data=body, headers=headers) as resp:
                    answer = _Answer(resp.status, await resp.read())
                    wait = _retry_after(resp.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if last or not retry_unreachable:
                    raise RequestFailed(None, f"{type(exc).__name__}: {exc}") from exc
                wait = None
            else:
                if last or answer.status not in RETRIED_STATUSES:
                    return answer
            await asyncio.sleep(min(wait if wait is not None else delay, self.max_backoff_s))
            delay = min(delay * 2, self.max_backoff_s)
        raise AssertionError("unreachable")  # the last attempt returns or raises


def _paging(limit: int, before: int | None) -> str:
    return f"limit={limit}" + (f"&before={before}" if before is not None else "")


def _raise_for(answer: _Answer) -> None:
    try:
        error = msgspec.json.decode(answer.body, type=ErrorBody)
    except msgspec.DecodeError:
        error = ErrorBody(answer.body[:200].decode(errors="replace") or "no answer body")
    raise RequestFailed(answer.status, error.error, error.field)


class Client:
    """:class:`AsyncClient`'s calls, blocking, on a private event loop; same arguments."""

    def __init__(self, url: str, api_key: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = AsyncClient(url, api_key, **options)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._client.close())
            self._loop.close()

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(call)

    def send_events(self, events: Iterable[Mapping[str, Any]]) -> IngestResult:
        return self._run(self._client.send_events(events))

    def send_event(self, event: Mapping[str, Any]) -> IngestResult:
        return self._run(self._client.send_event(event))

    def event_types(self) -> list[EventType]:
        return self._run(self._client.event_types())

    def create_hook(self, settings: Mapping[str, Any]) -> HookView:
        return self._run(self._client.create_hook(settings))

    def list_hooks(self) -> list[HookView]:
        return self._run(self._client.list_hooks())

    def get_hook(self, hook_id: int) -> HookView:
        return self._run(self._client.get_hook(hook_id))

    def update_hook(self, hook_id: int, patch: Mapping[str, Any]) -> HookView:
        return self._run(self._client.update_hook(hook_id, patch))

    def delete_hook(self, hook_id: int) -> None:
        self._run(self._client.delete_hook(hook_id))

    def clone_hook(self, hook_id: int, overrides: Mapping[str, Any] | None = None) -> HookView:
        return self._run(self._client.clone_hook(hook_id, overrides))

    def test_hook(self, hook_id: int, event_type: str | None = None) -> TestOutcome:
        return self._run(self._client.test_hook(hook_id, event_type))

    def attempts(self, hook_id: int, limit: int = 100, before: int | None = None) -> list[AttemptView]:
        return self._run(self._client.attempts(hook_id, limit, before))

    def dead_letters(self, hook_id: int, limit: int = 100, before: int | None = None) -> list[DeadLetterView]:
        return self._run(self._client.dead_letters(hook_id, limit, before))

    def start_replay(
        self, hook_id: int, start: datetime, end: datetime, event_types: list[str] | None = None
    ) -> ReplayView:
        return self._run(self._client.start_replay(hook_id, start, end, event_types))

    def replay(self, hook_id: int, replay_id: int) -> ReplayView:
        return self._run(self._client.replay(hook_id, replay_id))

    def cancel_replay(self, hook_id: int, replay_id: int) -> ReplayView:
        return self._run(self._client.cancel_replay(hook_id, replay_id))

    def redrive_dead_letters(self, hook_id: int, **selector: Any) -> int:
        return self._run(self._client.redrive_dead_letters(hook_id, **selector))

    def discard_dead_letters(self, hook_id: int, **selector: Any) -> int:
        return self._run(self._client.discard_dead_letters(hook_id, **selector))
