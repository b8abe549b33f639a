"""A hook's ``max_events_per_second``: a draining backlog arrives at a real loopback receiver at the hook's rate
(measured over 10 s, within ±20 %); send paths sharing the hook's limiter share the rate; the setting is validated
and shown like the hook's other settings."""

from __future__ import annotations

import asyncio
import time

import pytest

from actionhooks.devtools.receiver import Receiver
from actionhooks.dispatch.rate import HookRates, RateLimiter

from .support import Service, User
from .test_delivery_http import EVENT

RATE = 40.0
MEASURED_S = 10.0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # pacing is the dispatcher's, not the store's
async def test_a_draining_backlog_keeps_the_hooks_rate_within_20_percent(
    service: Service, owner: User
) -> None:
    async with Receiver(keep_events=False, keep_requests=False) as receiver:
        body = {
            "name": "paced",
            "event_types": ["deliv"],
            "max_events_per_second": RATE,
            "transport": {"type": "http", "url": receiver.hook_url, "max_batch_size": 10, "timeout_s": 0.05},
        }
        status, hook, _ = await service.call("POST", "/v1/hooks", owner, body)
        assert status == 201 and hook["max_events_per_second"] == RATE
        backlog = int(
            RATE * MEASURED_S * 2
        )  # more than the hook may send while measured: it drains all along
        for _ in range(backlog // 500):
            status, _, _ = await service.call("POST", "/v1/events", owner, [EVENT] * 500)
            assert status == 202
        await receiver.wait_for_events(1, timeout=10)
        first, started = receiver.event_count, time.monotonic()
        await asyncio.sleep(MEASURED_S)
        sent, took = receiver.event_count - first, time.monotonic() - started
        rate = sent / took
        print(f"{sent} events in {took:.2f} s: {rate:.1f}/s against {RATE:g}/s")
        assert RATE * 0.8 <= rate <= RATE * 1.2
        assert receiver.event_count < backlog  # still draining: the limit, not the backlog, set the pace


async def test_send_paths_sharing_a_hooks_limiter_share_its_rate() -> None:
    """Live delivery and a replay (say) of one hook await the same limiter: together they keep the rate."""
    rates = HookRates()
    live, replay = rates.of(7, 200.0), rates.of(7, 200.0)
    assert live is replay and rates.of(8, 200.0) is not live
    sent = [0, 0]

    async def sender(limiter: RateLimiter, index: int, batch: int) -> None:
        while True:
            await limiter.take(batch)
            sent[index] += batch

    tasks = [asyncio.create_task(sender(live, 0, 10)), asyncio.create_task(sender(replay, 1, 5))]
    started = time.monotonic()
    await asyncio.sleep(2.0)
    took = time.monotonic() - started
    for task in tasks:
        task.cancel()
    total = sum(sent) / took
    assert 160 <= total <= 240, sent  # ±20 % of 200/s, the two together
    assert min(sent) > 0  # served in turn: neither starves
    rates.of(7, None)
    assert live.reserve(1000) == 0.0  # the limit removed: no wait


def test_a_changed_rate_takes_effect_at_once() -> None:
    limiter = RateLimiter(0.01)
    now = time.monotonic()
    assert limiter.reserve(1, now) == 0.0
    assert limiter.reserve(1, now) == pytest.approx(100)  # the next event waits 100 s at 0.01/s
    limiter.set_rate(1000.0)
    later = time.monotonic()
    assert limiter.reserve(1, later) == 0.0  # raised: the old reservation no longer holds it back
    assert limiter.reserve(1, later) == pytest.approx(0.001)


def test_a_limited_hooks_batches_hold_at_most_one_second_of_its_rate() -> None:
    assert RateLimiter(None).batch_size(500) == 500
    assert RateLimiter(40.0).batch_size(500) == 40
    assert RateLimiter(0.5).batch_size(500) == 1
    assert RateLimiter(1000.0).batch_size(100) == 100


async def test_max_events_per_second_is_validated_and_can_be_removed(service: Service, owner: User) -> None:
    body = {
        "name": "h",
        "event_types": ["deliv"],
        "transport": {"type": "http", "url": "http://127.0.0.1:9/h"},
    }
    for wrong in (0, -1, "fast", True, 1e9):
        status, answer, _ = await service.call(
            "POST", "/v1/hooks", owner, {**body, "max_events_per_second": wrong}
        )
        assert status == 422 and answer["field"] == "max_events_per_second", (wrong, answer)
    status, hook, _ = await service.call("POST", "/v1/hooks", owner, body)
    assert status == 201 and hook["max_events_per_second"] is None
    status, hook, _ = await service.call(
        "PATCH", f"/v1/hooks/{hook['id']}", owner, {"max_events_per_second": 2.5}
    )
    assert status == 200 and hook["max_events_per_second"] == 2.5
    status, hook, _ = await service.call(
        "PATCH", f"/v1/hooks/{hook['id']}", owner, {"max_events_per_second": None}
    )
    assert status == 200 and hook["max_events_per_second"] is None
