"""Batches in flight (``max_in_flight``): a hook may have several batches out at once; their outcomes are handled in
log order, a failed one is retried before anything new goes out, and a worker that stops while one fails leaves it
and every batch sent after it after the saved cursor. Against the stub transport (the unit under test is the
dispatcher); the HTTP transport's own test is in ``test_delivery_http.py``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actionhooks.backoff import RetryPolicy
from actionhooks.errors import DeliveryError
from tests.stub import StubDestination

from .support import Service, User, eventually, sqlite_service
from .test_dispatch import event, make_hook, send, stub


async def attempts_of(service: Service, user: User, hook_id: int, count: int) -> list[dict[str, Any]]:
    """The hook's first ``count`` attempts, oldest first (waits until that many are recorded)."""

    async def listed() -> list[dict[str, Any]]:
        status, answer, _ = await service.call("GET", f"/v1/hooks/{hook_id}/attempts?limit=100", user)
        assert status == 200
        found: list[dict[str, Any]] = answer["attempts"]
        return list(reversed(found)) if len(found) >= count else []

    result: list[dict[str, Any]] = await eventually(listed)
    return result


@dataclass
class FourOut:
    """A hook of one-event batches with ``max_in_flight`` 4, its destination held, and its first four batches out."""

    dest: StubDestination
    transport: dict[str, Any]
    hook_id: int
    gate: asyncio.Event
    ids: list[str]


async def four_out(service: Service, user: User, events: int) -> FourOut:
    dest, transport = stub(max_batch_size=1, timeout_s=0, max_in_flight=4)
    created = await make_hook(service, user, transport)
    gate = dest.hold()
    ids = await send(service, user, [event(i) for i in range(events)])
    await dest.wait_for_open_sends(4)
    return FourOut(dest, transport, created["id"], gate, ids)


async def test_a_hook_sends_one_batch_at_a_time_by_default(service: Service, owner: User) -> None:
    dest, transport = stub(max_batch_size=1, timeout_s=0)
    created = await make_hook(service, owner, transport)
    gate = dest.hold()
    ids = await send(service, owner, [event(i) for i in range(6)])
    await dest.wait_for_open_sends(1)
    await service.dispatcher.store.head()  # a round trip through the loop: a second send would have begun
    assert dest.open_sends == 1
    gate.set()
    await service.dispatcher.caught_up(created["id"])
    assert dest.event_ids == ids and dest.most_at_once == 1


async def test_up_to_max_in_flight_batches_are_out_at_once_and_all_arrive_in_order(
    service: Service, owner: User
) -> None:
    out = await four_out(service, owner, 20)
    await service.dispatcher.store.head()
    assert out.dest.open_sends == 4  # the fifth waits for the first's answer
    out.gate.set()
    await service.dispatcher.caught_up(out.hook_id)
    assert out.dest.event_ids == out.ids  # begun in log order; the stub answers in the order asked
    assert out.dest.most_at_once == 4
    attempts = await attempts_of(service, owner, out.hook_id, 20)
    assert [a["outcome"] for a in attempts] == ["delivered"] * 20
    assert [a["first_seq"] for a in attempts] == sorted(a["first_seq"] for a in attempts)


async def test_a_failed_batch_in_flight_is_retried_before_anything_new_and_no_other_is_sent_twice(
    service: Service, owner: User
) -> None:
    out = await four_out(service, owner, 10)  # events 0–3 are out
    out.dest.fail_call(2, DeliveryError("HTTP 503", status=503))  # 0 is delivered, 1 fails
    out.gate.set()
    await service.dispatcher.caught_up(out.hook_id)
    # 2 and 3 were out with 1 and were delivered; 1 was retried before 4 went out; nothing twice
    ids = out.ids
    assert out.dest.event_ids == [ids[0], ids[2], ids[3], ids[1], *ids[4:]]
    attempts = await attempts_of(service, owner, out.hook_id, 11)
    outcomes = [(a["first_seq"], a["outcome"]) for a in attempts]
    seqs = sorted({seq for seq, _ in outcomes})
    # records in log order: 0 delivered, 1 failed and then delivered, then 2, 3 (kept while 1 was retried), 4…
    assert outcomes == [
        (seqs[0], "delivered"),
        (seqs[1], "retry"),
        (seqs[1], "delivered"),
        *((seq, "delivered") for seq in seqs[2:]),
    ]


async def test_a_worker_stopped_while_a_batch_in_flight_fails_leaves_it_and_the_later_ones_to_the_next(
    service: Service, owner: User
) -> None:
    out = await four_out(service, owner, 8)
    out.dest.fail_call(2, DeliveryError("HTTP 503", status=503))
    out.gate.set()
    retry_gate = out.dest.hold()  # the four out wait on the first gate; the retry of 1 waits on this one
    await out.dest.wait_for_events(3)  # 0, 2 and 3 delivered
    await out.dest.wait_for_open_sends(1)  # 1 is out again
    # the worker is replaced: the retry of 1 is cut off, unrecorded; the next sends one batch at a time
    edit = {"transport": {**out.transport, "max_in_flight": 1}}
    status, _, _ = await service.call("PATCH", f"/v1/hooks/{out.hook_id}", owner, edit)
    assert status == 200
    retry_gate.set()
    await service.dispatcher.caught_up(out.hook_id)
    # the cursor stayed after 0: the next worker sent 1, 2 and 3 again (at least once), then the rest, in order
    ids = out.ids
    assert out.dest.event_ids == [ids[0], ids[2], ids[3], ids[1], ids[2], ids[3], *ids[4:]]


async def test_max_in_flight_is_bounded_and_validated(service: Service, owner: User) -> None:
    url = "http://127.0.0.1:9/hook"
    for bad in (0, 17, "4"):
        body = {
            "name": "h",
            "event_types": ["deliv"],
            "transport": {"type": "http", "url": url, "max_in_flight": bad},
        }
        status, answer, _ = await service.call("POST", "/v1/hooks", owner, body)
        assert status == 422, answer
        assert answer["field"] == "transport.max_in_flight", answer
    body = {
        "name": "h",
        "event_types": ["deliv"],
        "transport": {"type": "http", "url": url, "max_in_flight": 16},
    }
    status, created, _ = await service.call("POST", "/v1/hooks", owner, body)
    assert status == 201, created
    assert created["transport"]["max_in_flight"] == 16


async def test_a_graceful_stop_while_a_batch_in_flight_waits_to_be_retried_keeps_the_cursor_before_it(
    tmp_path: Path,
) -> None:
    slow_retry = RetryPolicy(initial_delay_s=30, max_delay_s=60, max_age_s=3600)
    async with sqlite_service(tmp_path, retry=slow_retry) as service:
        owner = await service.user("owner")
        out = await four_out(service, owner, 8)
        out.dest.fail_call(2, DeliveryError("HTTP 503", status=503))
        out.gate.set()
        await attempts_of(service, owner, out.hook_id, 2)  # 0 delivered, 1 failed: its retry is 30 s away
        await service.dispatcher.stop(grace_s=10)  # the wait is cut short; 2 and 3 are finished and recorded
        stored = await service.dispatcher.store.load_hook(out.hook_id)
        attempts = await attempts_of(service, owner, out.hook_id, 4)
    assert [a["outcome"] for a in attempts] == ["delivered", "retry", "delivered", "delivered"]
    first, failed = attempts[0]["first_seq"], attempts[1]["first_seq"]
    assert stored is not None and stored.cursor == first < failed  # 1, 2 and 3 stay for the next worker
