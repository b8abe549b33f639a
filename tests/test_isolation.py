"""One hook must never hurt another: a hostile hook of one account must not slow another account's ingest or
deliveries.

Each test measures the victim account's latencies in one run, in blocks that alternate between the hostile hooks
stopped and at work, and requires the 95th percentile with them at work within twice the one without (plus 50 ms:
below that, differences are the noise of a busy machine — a CI run saw 14 ms against 3 ms, the attacker's retries
sharing the one SQLite writer with the victim's ingest — not a hook's doing). A victim round ingests one event and
waits for its delivery. Against the faults fixed here the victim's latencies grew by 0.2 s (a backtracking
``success_regex`` on the event loop) and beyond 3 s (Kafka sends holding every thread of the loop's default
executor) in most rounds: four and sixty times the allowance. The 95th rather than the 99th percentile, because of
60 rounds the 99th is the slowest one or two: a CI run, the other test worker busy, failed on one victim round of
168 ms among rounds of 10–20 ms, under attack as without it; a hook that hurts another does so in more rounds
than three in a hundred.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actionhooks.backoff import RetryPolicy
from actionhooks.devtools.receiver import Answer, Receiver

from . import brokers
from .support import Service, User, sqlite_service

tansu = brokers.tansu  # the session's Kafka-compatible broker

EVENT = {
    "event_type": "deliv",
    "event_date": "2016-11-15T09:12:28.514388956Z",
    "list_id": 50,
    "event_data": {"message_id": 5, "segment_id": 0, "campaign_id": 130},
}
# a hostile hook fails every attempt and is retried about ten times a second, for as long as the test runs
RELENTLESS = RetryPolicy(initial_delay_s=0.1, max_delay_s=0.1, max_age_s=10**9)
BLOCKS = 6  # calm and attacked rounds alternate in blocks, so the machine's other load weighs on both alike
ROUNDS = 25  # per block
ROUND_TIMEOUT_S = 3.0  # a round that takes longer ends the comparison, counted as taking this long
ALLOWANCE_S = 0.05  # added to twice the baseline: below it, latencies are the machine's noise, not a hook's


@dataclass
class Latencies:
    ingest: list[float] = field(default_factory=list)
    delivery: list[float] = field(default_factory=list)
    stuck: bool = False


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[94] if len(samples) > 1 else samples[0]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    """The service on SQLite only (the store is not what these tests are about; one engine keeps them short)."""
    async with sqlite_service(tmp_path, retry=RELENTLESS) as svc:
        yield svc


async def make_hook(service: Service, user: User, transport: dict[str, Any]) -> int:
    body = {"name": "hook", "event_types": ["deliv"], "transport": {"max_batch_size": 1, **transport}}
    status, created, _ = await service.call("POST", "/v1/hooks", user, body)
    assert status == 201, created
    hook_id: int = created["id"]
    return hook_id


async def compare(
    service: Service,
    victim: User,
    delivered: Callable[[int], Awaitable[bool]],
    attack: Callable[[bool], Awaitable[None]],
    blocks: int = BLOCKS,
    rounds_per_block: int = ROUNDS,
) -> tuple[Latencies, Latencies]:
    """The victim's latencies without and with the attack (``attack(True)`` starts it, ``attack(False)`` stops
    it), in alternating blocks of rounds. A round ingests one event and waits until ``delivered(n)`` (n victim
    events delivered in all so far)."""
    done = 0

    async def rounds(seen: Latencies) -> None:
        nonlocal done
        for _ in range(rounds_per_block):
            begin = time.perf_counter()
            status, answer, _ = await service.call("POST", "/v1/events", victim, EVENT)
            assert status == 202, answer
            seen.ingest.append(time.perf_counter() - begin)
            done += 1
            while not await delivered(done):
                if time.perf_counter() - begin > ROUND_TIMEOUT_S:  # the victim is stuck: that says enough
                    seen.delivery.append(ROUND_TIMEOUT_S)
                    seen.stuck = True
                    return
                await asyncio.sleep(0.002)
            seen.delivery.append(time.perf_counter() - begin)

    await rounds(Latencies())  # warm-up: connections, caches, the Kafka producer
    baseline, attacked = Latencies(), Latencies()
    for _ in range(blocks):
        await rounds(baseline)
        await attack(True)
        await rounds(attacked)
        if attacked.stuck:
            break
        await attack(False)
    return baseline, attacked


def assert_unhurt(baseline: Latencies, attacked: Latencies) -> None:
    assert not attacked.stuck, f"a victim round took more than {ROUND_TIMEOUT_S} s under attack"
    for what in ("ingest", "delivery"):
        calm, hurt = p95(getattr(baseline, what)), p95(getattr(attacked, what))
        assert hurt <= 2 * calm + ALLOWANCE_S, (
            f"victim {what} p95 {hurt * 1000:.1f} ms under attack vs {calm * 1000:.1f} ms without "
            f"({len(getattr(attacked, what))} rounds)"
        )


async def set_active(service: Service, user: User, hooks: list[int], active: bool) -> None:
    """Stop or resume ``hooks``; resumed, they get an event to fail on and retry (a resumed hook starts from
    "now": what it failed on before is behind it)."""
    for hook_id in hooks:
        status, answer, _ = await service.call("PATCH", f"/v1/hooks/{hook_id}", user, {"active": active})
        assert status == 200, answer
    if active:
        status, answer, _ = await service.call("POST", "/v1/events", user, EVENT)
        assert status == 202, answer


async def test_a_catastrophic_success_regex_does_not_slow_other_accounts(service: Service) -> None:
    victim, attacker = await service.user("victim"), await service.user("attacker")
    async with (
        Receiver(keep_events=False) as sink,
        # `^(a+)+$` backtracks 2^n ways on n a's before the '!': about 0.3 s for Python's re
        Receiver(default=Answer(200, "a" * 22 + "!"), keep_events=False) as short_answer,
        # a pattern RE2 takes (4205 instructions, a DFA larger than its memory) over 16 KiB: linear, ~0.1 s
        Receiver(default=Answer(200, "a" * 16 * 1024), keep_events=False) as long_answer,
    ):
        await make_hook(service, victim, {"type": "http", "url": sink.hook_url, "timeout_s": 0})
        hostile = [
            await make_hook(
                service, attacker, {"type": "http", "url": url, "timeout_s": 0, "success_regex": regex}
            )
            for url, regex in (
                (short_answer.hook_url, "^(a+)+$"),
                (long_answer.hook_url, "(?s).{300}.{300}z"),
            )
        ]
        await set_active(service, attacker, hostile, False)

        async def delivered(count: int) -> bool:
            return sink.event_count >= count

        async def attack(on: bool) -> None:
            await set_active(service, attacker, hostile, on)
            if on:  # both are matching and failing again
                counts = short_answer.request_count, long_answer.request_count
                await short_answer.wait_for_requests(counts[0] + 1)
                await long_answer.wait_for_requests(counts[1] + 1)

        baseline, attacked = await compare(service, victim, delivered, attack)
    assert_unhurt(baseline, attacked)


# a Kafka round is slower (~0.15 s), and the fault this guards against costs seconds a round
KAFKA_BLOCKS, KAFKA_ROUNDS = 4, 15


@pytest.fixture
def black_holes() -> Iterator[list[str]]:
    """Loopback ports that accept connections (the kernel completes the handshake) and never answer."""
    sockets = []
    for _ in range(4):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(256)
        sockets.append(s)
    yield [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()


async def test_unresponsive_kafka_brokers_do_not_delay_another_accounts_kafka_hook(
    service: Service, tansu: str, black_holes: list[str]
) -> None:
    victim, attacker = await service.user("victim"), await service.user("attacker")
    topic = brokers.unique("isolation")
    victim_hook = await make_hook(
        service, victim, {"type": "kafka", "bootstrap_servers": tansu, "topic": topic, "timeout_s": 0}
    )
    # as many hostile hooks as asyncio's default executor has threads (min(32, CPUs + 4)): each send to a broker
    # that never answers waits for its delivery reports until the message timeout
    hostile = [
        await make_hook(
            service, attacker, {"type": "kafka", "bootstrap_servers": black_holes[i % 4], "topic": "t"}
        )
        for i in range(min(32, (os.cpu_count() or 1) + 4))
    ]
    await set_active(service, attacker, hostile, False)

    async def delivered(count: int) -> bool:
        attempts = await service.store.list_attempts(victim_hook, 1000)
        return sum(a.outcome == "delivered" for a in attempts) >= count

    async def attack(on: bool) -> None:
        await set_active(service, attacker, hostile, on)
        if on:
            await asyncio.sleep(0.3)  # every hostile hook is inside its send by now

    baseline, attacked = await compare(service, victim, delivered, attack, KAFKA_BLOCKS, KAFKA_ROUNDS)
    assert_unhurt(baseline, attacked)
