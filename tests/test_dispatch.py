"""The dispatcher against the stub transport: batching, order, filters, retries, dead letters, isolation.

A test that shows something was *not* delivered waits for the dispatcher's explicit signal that the hook is caught
up (``Dispatcher.caught_up``: every event up to the log head handled, nothing in flight), never for a while."""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from typing import Any

import msgspec
import pytest

from actionhooks import integrations
from actionhooks.errors import DeliveryError
from tests import stub as stub_transport
from tests.stub import StubDestination

from .support import Service, User, eventually


def stub(**settings: Any) -> tuple[StubDestination, dict[str, Any]]:
    name = uuid.uuid4().hex
    return StubDestination(name), {"type": "stub", "name": name, **settings}


def event(n: int = 0, event_type: str = "deliv", **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_type": event_type,
        "event_date": "2024-05-01T10:00:00.123456789Z",
        "list_id": 1,
        "profile_id": f"p{n}",
        "event_data": {"message_id": 10, "campaign_id": 100, "segment_id": 0, "resource_id": 7, "n": n},
    }
    out.update(changes)
    return out


async def make_hook(
    service: Service, user: User, transport: dict[str, Any], **settings: Any
) -> dict[str, Any]:
    body = {"name": "h", "event_types": ["deliv", "send"], "transport": transport, **settings}
    status, created, _ = await service.call("POST", "/v1/hooks", user, body)
    assert status == 201, created
    return created


async def send(service: Service, user: User, events: list[dict[str, Any]]) -> list[str]:
    status, body, _ = await service.call("POST", "/v1/events", user, events)
    assert status == 202, body
    ids: list[str] = body["ids"]
    return ids


async def dead_letters(service: Service, user: User, hook_id: int, count: int) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]]:
        status, answer, _ = await service.call("GET", f"/v1/hooks/{hook_id}/dead-letters", user)
        assert status == 200
        letters: list[dict[str, Any]] = answer["dead_letters"]
        return letters if len(letters) >= count else []

    result: list[dict[str, Any]] = await eventually(listed)
    return result


def bodies(dest: StubDestination) -> list[dict[str, Any]]:
    return [msgspec.json.decode(m.body) for b in dest.batches for m in b.messages]


async def test_batch_is_flushed_when_max_batch_size_events_wait(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=5, timeout_s=60)
    await make_hook(service, owner, transport)
    ids = await send(service, owner, [event(i) for i in range(10)])
    await dest.wait_for_events(10, timeout=5)
    assert [len(b.messages) for b in dest.batches] == [5, 5]
    assert dest.event_ids == ids


async def test_batch_is_flushed_when_timeout_expires(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=100, timeout_s=0.4)
    await make_hook(service, owner, transport)
    started = time.monotonic()
    ids = await send(service, owner, [event(i) for i in range(3)])
    await dest.wait_for_events(3, timeout=5)
    waited = time.monotonic() - started
    assert dest.event_ids == ids
    assert len(dest.batches) == 1
    assert 0.3 <= waited < 3.0


async def test_events_arrive_in_log_order_across_batches(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=7, timeout_s=0.05)
    await make_hook(service, owner, transport)
    ids: list[str] = []
    for chunk in range(10):
        ids += await send(service, owner, [event(chunk * 10 + i) for i in range(10)])
    await dest.wait_for_events(100, timeout=10)
    assert dest.event_ids == ids


async def test_hook_receives_only_its_types_list_and_filters(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=100, timeout_s=0.05)
    created = await make_hook(
        service,
        owner,
        transport,
        event_types=["deliv"],
        list_id=1,
        filters={"campaign_ids": [100, 101], "resource_ids": [7]},
    )
    wanted = event(1)
    others = [
        event(2, event_type="send"),  # other type
        event(3, list_id=2),  # other database
        event(4, event_data={"campaign_id": 999, "resource_id": 7}),  # campaign filtered out
        event(5, event_data={"campaign_id": 100}),  # lacks resource_id: does not pass that filter
        event(6, event_data={"campaign_id": 101, "resource_id": 8}),
    ]
    also = event(7, event_data={"campaign_id": 101, "resource_id": 7})
    ids = await send(service, owner, [wanted, *others, also])
    await service.dispatcher.caught_up(created["id"])
    assert dest.event_ids == [ids[0], ids[-1]]


async def test_hook_for_all_databases_gets_every_list(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=100, timeout_s=0.05)
    await make_hook(service, owner, transport, event_types=["deliv"])
    ids = await send(service, owner, [event(1, list_id=1), event(2, list_id=2), event(3, list_id=None)])
    await dest.wait_for_events(3, timeout=5)
    assert dest.event_ids == ids


async def test_other_accounts_events_never_reach_a_hook(
    service: Service, owner: User, outsider: User
) -> None:
    dest, transport = stub(max_batch_size=100, timeout_s=0.05)
    created = await make_hook(service, owner, transport)
    await send(service, outsider, [event(i) for i in range(5)])
    mine = await send(service, owner, [event(9)])
    await service.dispatcher.caught_up(created["id"])
    assert dest.event_ids == mine


async def test_custom_data_fields_narrow_custom_data(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=1, timeout_s=0)
    await make_hook(service, owner, transport, custom_data_fields=["email", "city"])
    await send(
        service, owner, [event(1, custom_data={"email": "a@b.c", "phone": "+7", "city": "Omsk"}), event(2)]
    )
    await dest.wait_for_events(2, timeout=5)
    first, second = bodies(dest)
    assert first["custom_data"] == {"email": "a@b.c", "city": "Omsk"}
    assert "custom_data" not in second


async def test_retries_then_success_keep_the_batch_and_record_attempts(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=3, timeout_s=0)
    dest.fail_next(DeliveryError("HTTP 503", status=503), times=2)
    created = await make_hook(service, owner, transport)
    ids = await send(service, owner, [event(1), event(2), event(3)])
    await dest.wait_for_events(3, timeout=5)
    assert dest.calls == 3 and dest.event_ids == ids

    async def three_attempts() -> list[dict[str, Any]]:
        status, answer, _ = await service.call("GET", f"/v1/hooks/{created['id']}/attempts", owner)
        assert status == 200
        return list(reversed(answer["attempts"])) if len(answer["attempts"]) == 3 else []

    attempts = await eventually(three_attempts)
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "delivered"]
    assert len({a["batch_id"] for a in attempts}) == 1
    assert attempts[0]["status"] == 503 and attempts[0]["error"] == "HTTP 503"
    assert all(a["events"] == 3 for a in attempts)


async def test_failing_batch_holds_later_events_back(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=1, timeout_s=0)
    dest.fail_next(DeliveryError("down"), times=2)
    await make_hook(service, owner, transport)
    ids = await send(service, owner, [event(1)])
    ids += await send(service, owner, [event(2)])
    await dest.wait_for_events(2, timeout=5)
    assert dest.event_ids == ids


async def test_permanent_failure_dead_letters_the_batch_and_delivery_continues(
    service: Service, owner: User
) -> None:
    dest, transport = stub(max_batch_size=2, timeout_s=0)
    dest.fail_next(DeliveryError("HTTP 410 Gone", status=410, permanent=True))
    created = await make_hook(service, owner, transport)
    lost = await send(service, owner, [event(1), event(2)])
    kept = await send(service, owner, [event(3), event(4)])
    await dest.wait_for_events(2, timeout=5)
    assert dest.event_ids == kept
    letters = sorted(await dead_letters(service, owner, created["id"], 2), key=lambda d: d["event_seq"])
    assert [d["event_id"] for d in letters] == lost
    assert letters[0]["reason"] == "HTTP 410 Gone" and letters[0]["attempts"] == 1
    assert letters[0]["event"]["profile_id"] == "p1"
    await service.dispatcher.caught_up(created["id"])
    _, read, _ = await service.call("GET", f"/v1/hooks/{created['id']}", owner)
    # the next delivered batch cleared the error (it stays in the dead letters and the attempts)
    assert read["last_error"] is None and read["last_error_at"] is None
    assert read["last_success_at"] is not None


async def test_the_first_delivery_after_failures_clears_the_last_error(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=1, timeout_s=0)
    created = await make_hook(service, owner, transport)
    path = f"/v1/hooks/{created['id']}"
    _, fresh, _ = await service.call("GET", path, owner)
    assert fresh["last_success_at"] is None and fresh["last_error"] is None
    dest.fail_next(DeliveryError("HTTP 503"), times=2)
    await send(service, owner, [event(1)])
    await service.dispatcher.caught_up(created["id"])
    _, attempts, _ = await service.call("GET", f"{path}/attempts", owner)
    assert [a["outcome"] for a in attempts["attempts"]] == ["delivered", "retry", "retry"]
    _, healed, _ = await service.call("GET", path, owner)
    assert healed["last_error"] is None and healed["last_error_at"] is None
    assert healed["last_success_at"] == attempts["attempts"][0]["at"]


async def test_a_batch_failing_past_the_max_age_is_dead_lettered(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=1, timeout_s=0)
    max_age = service.settings.retry.max_age_s
    dest.fail_next(DeliveryError("connection refused"), times=1000)
    created = await make_hook(service, owner, transport)
    started = time.monotonic()
    lost = await send(service, owner, [event(1)])
    await service.dispatcher.caught_up(created["id"])
    assert time.monotonic() - started >= max_age
    dest.failures.clear()
    kept = await send(service, owner, [event(2)])
    await dest.wait_for_events(1, timeout=10)
    assert dest.event_ids == kept
    (letter,) = await dead_letters(service, owner, created["id"], 1)
    assert letter["event_id"] == lost[0]
    attempts = letter["attempts"]
    # tried until its age passed, however many tries that took
    assert attempts >= 2 and dest.calls == attempts + 1
    assert re.fullmatch(rf"gave up after {attempts} attempts in \d+ s: connection refused", letter["reason"])


async def test_one_failing_hook_does_not_stop_others(service: Service, owner: User) -> None:
    broken, broken_transport = stub(max_batch_size=1, timeout_s=0)
    broken.fail_next(DeliveryError("down"), times=1000)
    healthy, healthy_transport = stub(max_batch_size=1, timeout_s=0)
    await make_hook(service, owner, broken_transport)
    await make_hook(service, owner, {"type": "stub", "name": "missing-" + uuid.uuid4().hex})
    await make_hook(service, owner, healthy_transport)
    ids = await send(service, owner, [event(i) for i in range(5)])
    await healthy.wait_for_events(5, timeout=5)
    assert healthy.event_ids == ids


async def test_stopped_hook_captures_nothing_and_resumes_from_now(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=100, timeout_s=0)
    created = await make_hook(service, owner, transport)
    path = f"/v1/hooks/{created['id']}"
    await service.call("PATCH", path, owner, {"active": False})
    assert created["id"] not in service.dispatcher.workers  # stopped before the API answered
    await send(service, owner, [event(1), event(2)])
    await service.call("PATCH", path, owner, {"active": True})
    later = await send(service, owner, [event(3)])
    await service.dispatcher.caught_up(created["id"])  # handled up to the head: events 1 and 2 included
    assert dest.event_ids == later


async def test_new_hook_gets_only_events_after_its_creation(service: Service, owner: User) -> None:
    await send(service, owner, [event(1)])
    dest, transport = stub(max_batch_size=100, timeout_s=0)
    await make_hook(service, owner, transport)
    later = await send(service, owner, [event(2)])
    await dest.wait_for_events(1, timeout=5)
    assert dest.event_ids == later


async def test_deleted_hook_stops_delivering(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=100, timeout_s=0)
    created = await make_hook(service, owner, transport)
    await send(service, owner, [event(1)])
    await dest.wait_for_events(1, timeout=5)
    await service.call("DELETE", f"/v1/hooks/{created['id']}", owner)
    assert created["id"] not in service.dispatcher.workers  # stopped before the API answered
    witness_dest, witness_transport = stub(max_batch_size=100, timeout_s=0)
    witness = await make_hook(service, owner, witness_transport)
    later = await send(service, owner, [event(2)])
    await service.dispatcher.caught_up(witness["id"])
    assert witness_dest.event_ids == later  # the event was dispatched, to the live hook only
    assert len(dest.event_ids) == 1


async def test_a_hook_whose_settings_cannot_be_read_does_not_stop_the_others(
    service: Service, owner: User, db_url: str
) -> None:
    broken_dest, broken_transport = stub(max_batch_size=1, timeout_s=0)
    healthy, healthy_transport = stub(max_batch_size=1, timeout_s=0)
    broken = await make_hook(service, owner, broken_transport)
    await make_hook(service, owner, healthy_transport)
    # the stored, encrypted settings of one hook are damaged (a wrong key, a bad restore…)
    await service.store.update_hook(owner.account_id, broken["id"], b"not a fernet token", True)
    await service.dispatcher.stop()  # as after a restart: the dispatcher loads every hook afresh
    await service.dispatcher.start()
    assert broken["id"] not in service.dispatcher.workers
    ids = await send(service, owner, [event(1), event(2)])
    await healthy.wait_for_events(2, timeout=5)
    assert healthy.event_ids == ids
    assert broken_dest.event_ids == []


async def test_caught_up_waits_until_a_failing_batch_is_dead_lettered(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=1, timeout_s=0)
    dest.fail_next(DeliveryError("down"), times=1000)
    created = await make_hook(service, owner, transport)
    await send(service, owner, [event(1)])
    await service.dispatcher.caught_up(created["id"])
    assert dest.calls >= 2 and dest.event_ids == []
    _, answer, _ = await service.call("GET", f"/v1/hooks/{created['id']}/dead-letters", owner)
    assert [d["attempts"] for d in answer["dead_letters"]] == [dest.calls]


async def test_caught_up_waits_while_events_wait_for_their_batch(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=100, timeout_s=60)
    created = await make_hook(service, owner, transport)
    await send(service, owner, [event(1)])
    with pytest.raises(TimeoutError):
        await service.dispatcher.caught_up(created["id"], timeout=0.5)
    assert dest.calls == 0


async def test_caught_up_follows_an_edited_hook_to_its_new_worker(service: Service, owner: User) -> None:
    waiting_dest, waiting_transport = stub(max_batch_size=100, timeout_s=60)
    prompt, prompt_transport = stub(max_batch_size=100, timeout_s=0)
    created = await make_hook(service, owner, waiting_transport)
    ids = await send(service, owner, [event(1)])
    waiting = asyncio.create_task(service.dispatcher.caught_up(created["id"]))
    worker, _ = service.dispatcher.workers[created["id"]]
    await eventually(lambda: worker.buffer)  # the old worker holds the event for its 60 s batch
    assert not waiting.done()
    status, _, _ = await service.call(
        "PATCH", f"/v1/hooks/{created['id']}", owner, {"transport": prompt_transport}
    )
    assert status == 200
    await waiting  # the new worker, on the new settings, delivered what the old one held
    assert prompt.event_ids == ids and waiting_dest.calls == 0


async def test_a_hooks_client_library_is_imported_in_a_thread_before_its_first_send(
    service: Service, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # importing aiohttp on the event loop held every request for 0.15-0.57 s at a hook's first send
    sys.modules.pop("tests.stub_client", None)
    monkeypatch.setattr(integrations, "_LOADED", set())
    integrations.register(
        integrations.Integration("stub", ("stub",), stub_transport.__name__, client=("tests.stub_client",))
    )
    try:
        dest, transport = stub(max_batch_size=1, timeout_s=0)
        await make_hook(service, owner, transport)
        await send(service, owner, [event(1)])
        await dest.wait_for_events(1)
    finally:
        integrations.register(stub_transport.INTEGRATION)
    assert sys.modules["tests.stub_client"].IMPORTED_ON_MAIN_THREAD is False
