"""The dispatcher's own cost per event for a hook of one-event batches (``max_batch_size`` 1), before and after.

A hook of one-event batches makes a send, an attempt and a state write per event, so its rate is set by what the
dispatcher spends per event. Here the destination costs nothing — the tests' stub transport, in process (the unit
measured is the caller) — and the events are in the log before the stub lets the first send through, so the
figure is the dispatcher alone: the service's CPU seconds from that moment to the last event received, per event.
Each round runs every case once per tree (in a child process with that tree's ``src`` first on ``PYTHONPATH``; the
harness — this file and ``tests/`` — is the checkout's), the trees' order swapped every round.

The cases ``Kafka one in flight`` and ``Kafka 64 in flight`` (``--cases``) send to a real broker instead — Tansu,
started here — through the Kafka transport: the hook is made stopped, the events are logged, and the clock runs from
its resume (its producer's start included) until its cursor reaches the log head (polled through the API every
10 ms, which the CPU figure includes). Children run on uvloop, as the service does.

Usage::

    mkdir -p /tmp/before && git archive <commit> src | tar -x -C /tmp/before
    TMPDIR=/dev/shm python -m bench.one_event --before-src /tmp/before/src --rounds 3 [--events 20000]
    TMPDIR=/dev/shm python -m bench.one_event --cases "Kafka 64 in flight" --rounds 3   # the tree after alone
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

if TYPE_CHECKING:
    from tests.support import Service, User

CASES = {
    "one in flight": ("stub", 1),
    "16 in flight": ("stub", 16),
    "64 in flight": ("stub", 64),
    "Kafka one in flight": ("kafka", 1),
    "Kafka 64 in flight": ("kafka", 64),
}
STUB_CASES = "one in flight,16 in flight"
KAFKA_ENV = "ACTIONHOOKS_BENCH_KAFKA"  # the Tansu broker's host:port, for the children
CHUNK = 1_000  # events per ingest request


def sample(n: int) -> dict[str, object]:
    return {
        "event_type": "deliv",
        "event_date": "2026-12-02T10:00:00Z",
        "list_id": 1,
        "profile_id": f"p{n}",
        "event_data": {"message_id": 10, "campaign_id": 100, "segment_id": 0, "resource_id": 7},
    }


async def measure(events: int, case: str) -> dict[str, float]:
    kind, in_flight = CASES[case]
    if kind == "kafka":
        return await measure_kafka(events, in_flight, os.environ[KAFKA_ENV])
    return await measure_stub(events, in_flight)


async def measure_stub(events: int, in_flight: int) -> dict[str, float]:
    from actionhooks.integrations import register
    from tests import stub
    from tests.support import sqlite_service

    register(stub.INTEGRATION)
    dest = stub.StubDestination("bench")
    with tempfile.TemporaryDirectory() as folder:
        async with sqlite_service(Path(folder)) as service:
            user = await service.user("owner")
            await make_hook(service, user, {"type": "stub", "name": "bench"}, in_flight)
            gate = dest.hold()
            await log_events(service, user, events)
            await dest.wait_for_open_sends(in_flight)
            started = Clock.start(service)
            gate.set()
            # a poll, not the stub's wait: waking on every send received would add to the cost measured
            while len(dest.batches) < events:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            return started.figures(service, events)


async def measure_kafka(events: int, in_flight: int, servers: str) -> dict[str, float]:
    from tests.brokers import unique
    from tests.support import sqlite_service

    transport: dict[str, object] = {
        "type": "kafka",
        "bootstrap_servers": servers,
        "topic": unique("one-event"),
    }
    with tempfile.TemporaryDirectory() as folder:
        async with sqlite_service(Path(folder)) as service:
            user = await service.user("owner")
            hook_id = await make_hook(service, user, transport, in_flight, active=False)
            await log_events(service, user, events)
            head = await service.store.head()
            started = Clock.start(service)
            status, body, _ = await service.call(
                "POST", f"/v1/hooks/{hook_id}/resume", user, {"from": "cursor"}
            )
            assert status == 200 and body["active"], body
            while body["cursor"] < head:
                await asyncio.sleep(0.01)
                status, body, _ = await service.call("GET", f"/v1/hooks/{hook_id}", user)
                assert status == 200 and body["last_error"] is None, body
            return started.figures(service, events)


async def make_hook(
    service: Service, user: User, transport: dict[str, object], in_flight: int, active: bool = True
) -> int:
    """A hook of one-event batches, ``in_flight`` of them out at once, sending to ``transport``."""
    shape = {"max_batch_size": 1, "timeout_s": 0, "max_in_flight": in_flight}
    hook = {"name": "one event", "event_types": ["deliv"], "transport": transport | shape, "active": active}
    status, body, _ = await service.call("POST", "/v1/hooks", user, hook)
    assert status == 201, body
    hook_id: int = body["id"]
    return hook_id


async def log_events(service: Service, user: User, events: int) -> None:
    for start in range(0, events, CHUNK):
        batch = [sample(n) for n in range(start, min(events, start + CHUNK))]
        status, body, _ = await service.call("POST", "/v1/events", user, batch)
        assert status == 202, body


@dataclass(frozen=True)
class Clock:
    """The service's CPU, the wall clock and the store's commits when the measured stretch began."""

    cpu: float
    wall: float
    commits: int

    @classmethod
    def start(cls, service: Service) -> Clock:
        return cls(time.process_time(), time.perf_counter(), service.store.commits)

    def figures(self, service: Service, events: int) -> dict[str, float]:
        cpu, wall = time.process_time() - self.cpu, time.perf_counter() - self.wall
        commits = service.store.commits - self.commits
        return {
            "cpu_us_per_event": cpu / events * 1e6,
            "events_per_s": events / wall,
            "events_per_commit": events / max(commits, 1),
        }


def run_child(src: Path, case: str, events: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src.resolve()), str(Path.cwd())]))
    args = [sys.executable, "-m", "bench.one_event", "--child", case, "--events", str(events)]
    done = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before-src", type=Path, help="the src/ folder of the tree before")
    parser.add_argument(
        "--after-src", type=Path, default=Path("src"), help="the src/ folder of the tree after"
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default=STUB_CASES, help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(uvloop.run(measure(args.events, args.child))))  # the service runs on uvloop
        return
    cases = args.cases.split(",")
    if unknown := set(cases) - set(CASES):
        parser.error(f"no such case: {', '.join(sorted(unknown))}")
    trees = (
        {"after": args.after_src}
        if args.before_src is None
        else {"before": args.before_src, "after": args.after_src}
    )
    with contextlib.ExitStack() as stack:
        if any(CASES[case][0] == "kafka" for case in cases):
            from tests.brokers import run_tansu

            os.environ[KAFKA_ENV] = stack.enter_context(run_tansu())
        found = run_rounds(trees, cases, args.events, args.rounds)
    print(f"\nevents per run: {args.events:,}; rounds: {args.rounds} (medians, lowest–highest in brackets)\n")
    print("| case | version | CPU µs per event | events/s |")
    print("|---|---|---|---|")
    for (case, version), results in found.items():
        cpu = [r["cpu_us_per_event"] for r in results]
        rate = [r["events_per_s"] for r in results]
        print(
            f"| {case} | {version} | {statistics.median(cpu):.0f} ({min(cpu):.0f}–{max(cpu):.0f}) "
            f"| {statistics.median(rate):,.0f} ({min(rate):,.0f}–{max(rate):,.0f}) |"
        )


def run_rounds(
    trees: dict[str, Path], cases: list[str], events: int, rounds: int
) -> dict[tuple[str, str], list[dict[str, float]]]:
    """Every case once per tree per round, the trees' order swapped every round."""
    found: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_ in range(rounds):
        order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
        for case in cases:
            for version in order:
                result = run_child(trees[version], case, events)
                found.setdefault((case, version), []).append(result)
                print(
                    f"{case:>19} {version:>6}: {result['cpu_us_per_event']:6.1f} µs CPU per event, "
                    f"{result['events_per_s']:8,.0f} events/s, {result.get('events_per_commit', 0):5.1f} events "
                    "per commit",
                    flush=True,
                )
    return found


if __name__ == "__main__":
    main()
