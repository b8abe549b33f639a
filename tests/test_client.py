"""actionhooks.client against the live service: batching, producer ids, retries on 429, hook management, the
blocking client."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from actionhooks.client import AsyncClient, Client, RequestFailed
from actionhooks.config import IngestLimits
from actionhooks.devtools.procs import free_port
from actionhooks.devtools.receiver import Receiver
from actionhooks.integrations.http.transport import Settings as HttpSettings

from .support import Service, User, eventually


def event(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_type": "deliv",
        "event_date": "2024-05-01T12:00:00Z",
        "event_data": {"message_id": n},
        **fields,
    }


async def test_send_events_in_batches_with_producer_ids(service: Service, owner: User) -> None:
    events = [event(n) for n in range(25)]
    events[13] = {"event_type": "nope", "event_date": "2024-05-01T12:00:00Z", "event_data": {}}
    async with AsyncClient(service.url, owner.key, batch_size=10) as client:
        report = await client.send_events(events)
        assert report.accepted == 24 and report.duplicates == 0
        assert [(e.index, e.field) for e in report.errors] == [(13, "event_type")]
        assert len(set(report.ids)) == 24 and all(len(i) == 36 for i in report.ids)  # UUIDv7 made here
        assert all("id" not in e for e in events)  # the caller's events are left as they were
        # sent again with those ids (what a retry after a lost answer sends): stored nothing twice
        again = [event(n, id=i) for n, i in enumerate(report.ids)]
        repeat = await client.send_events(again)
        assert repeat.accepted == 0 and repeat.duplicates == 24 and repeat.ids == report.ids
        bytes_bound = AsyncClient(service.url, owner.key, batch_bytes=300)
        assert [len(b) for b in bytes_bound._batches([b"x" * 100] * 5)] == [2, 2, 1]


async def test_nothing_valid_is_a_report_and_a_bad_key_an_error(service: Service, owner: User) -> None:
    async with AsyncClient(service.url, owner.key) as client:
        report = await client.send_events([{"event_type": "deliv"}])
        assert report.accepted == 0 and report.errors[0].field == "event_date"
    async with AsyncClient(service.url, "ah_wrong", retries=0) as client:
        with pytest.raises(RequestFailed) as failed:
            await client.send_event(event(1))
        assert failed.value.status == 401 and "API key" in failed.value.error


async def test_retries_after_429_with_retry_after(service: Service, owner: User) -> None:
    state: Any = service.app.state
    normal = state.settings
    state.settings = dataclasses.replace(normal, limits=IngestLimits(max_pending=-1))  # every ingest: 429

    async def recover() -> None:
        await asyncio.sleep(0.3)
        state.settings = normal

    async with AsyncClient(service.url, owner.key, backoff_s=0.01) as client:
        started = time.monotonic()
        recovering = asyncio.create_task(recover())
        report = await client.send_events([event(1), event(2)])
        await recovering
        assert report.accepted == 2
        assert (
            time.monotonic() - started >= 0.9
        )  # waited the service's Retry-After: 1, not the 10 ms back-off
    state.settings = dataclasses.replace(normal, limits=IngestLimits(max_pending=-1))
    async with AsyncClient(service.url, owner.key, retries=1, backoff_s=0.01) as client:
        with pytest.raises(RequestFailed) as failed:
            await client.send_event(event(3))
        assert failed.value.status == 429
    state.settings = normal


async def test_unreachable_service_after_retries() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", "ah_x", retries=2, backoff_s=0.01) as client:
        with pytest.raises(RequestFailed) as failed:
            await client.send_event(event(1))
        assert failed.value.status is None


async def test_manage_hooks(service: Service, owner: User, outsider: User) -> None:
    async with Receiver() as receiver, AsyncClient(service.url, owner.key) as client:
        transport = {"type": "http", "url": receiver.hook_url, "headers": {"X-Secret": "s"}, "timeout_s": 0}
        hook = await client.create_hook(
            {"name": "crm", "event_types": ["deliv", "uopen"], "transport": transport}
        )
        assert hook.name == "crm" and isinstance(hook.transport, HttpSettings)
        assert hook.transport.headers == {"X-Secret": "***"}
        assert [h.id for h in await client.list_hooks()] == [hook.id]
        assert (await client.get_hook(hook.id)).created_at == hook.created_at

        edited = await client.update_hook(
            hook.id, {"list_id": 7, "transport": {"headers": {"X-Secret": "***"}}}
        )
        assert edited.list_id == 7 and edited.updated_at >= hook.updated_at
        copy = await client.clone_hook(hook.id, {"active": False})
        assert copy.name == "crm (copy)" and copy.active is False and copy.list_id == 7

        outcome = await client.test_hook(hook.id, "uopen")
        assert outcome.delivered is True and outcome.status == 200
        assert receiver.requests[-1].headers["X-Secret"] == "s"  # the stored secret, kept through the patch

        await client.send_events([event(1, list_id=7)])
        await receiver.wait_for_events(2)
        attempts = await eventually(lambda: client.attempts(hook.id))
        assert attempts[0].outcome == "delivered" and attempts[0].hook_id == hook.id
        assert await client.dead_letters(hook.id) == []

        with pytest.raises(RequestFailed) as failed:
            await client.update_hook(hook.id, {"event_types": ["nope"]})
        assert failed.value.status == 422 and failed.value.field == "event_types.0"
        await client.delete_hook(hook.id)
        with pytest.raises(RequestFailed) as failed:
            await client.get_hook(hook.id)
        assert failed.value.status == 404
    async with AsyncClient(service.url, outsider.key) as other:
        with pytest.raises(RequestFailed) as failed:
            await other.delete_hook(copy.id)
        assert failed.value.status == 404
        assert [t.code for t in await other.event_types()][:2] == ["send", "reply"]


async def test_blocking_client(service: Service, owner: User) -> None:
    def produce() -> tuple[int, int, list[str]]:
        with Client(service.url, owner.key, batch_size=2) as client:
            report = client.send_events([event(n) for n in range(5)])
            hook = client.create_hook(
                {
                    "name": "h",
                    "event_types": ["deliv"],
                    "active": False,
                    "transport": {"type": "http", "url": "http://127.0.0.1:9/in"},
                }
            )
            return report.accepted, hook.id, [h.name for h in client.list_hooks()]

    accepted, hook_id, names = await asyncio.to_thread(produce)  # the service runs on this thread's loop
    assert accepted == 5 and hook_id > 0 and names == ["h"]
