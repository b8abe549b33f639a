"""Per-account fairness at ingest: a victim account's requests while another account floods, with the global pending
limit only against the per-account limit beside it, in alternating rounds of one run.

``actionhooks serve`` on SQLite (a fresh database per round, no hooks). The flooder keeps ``--flood`` connections
busy posting 1 000-event arrays, again at once whatever the answer (a hostile client ignores ``Retry-After``); the
victim posts 10 events every 20 ms on one connection. Each round runs ``--seconds``. Configurations:

- ``global only``: ``ACTIONHOOKS_MAX_PENDING`` = ``--pending``, ``ACTIONHOOKS_MAX_PENDING_PER_ACCOUNT`` the same
  (the per-account bound never bites before the global one);
- ``per account``: the same global limit, the per-account one at a quarter of it (the defaults' ratio).

Reported per configuration (median over rounds, and the rounds' range): the victim's share of requests answered
``429``, its latency p50 / p99 for accepted requests, and the flooder's accepted events/s.

    .venv/bin/python -m bench.fairness [--rounds 3] [--seconds 10] [--flood 64] [--pending 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from actionhooks.devtools.procs import create_account, free_port

from .procs import serve, wait_quiet

EVENT = (
    b'{"event_type":"deliv","event_date":"2024-05-01T12:00:00Z","list_id":1,"profile_id":"780a1a1a98e34ceb",'
    b'"event_data":{"message_id":292,"campaign_id":1835,"segment_id":0,"resource_id":9}}'
)
FLOOD_BODY = b"[" + b",".join([EVENT] * 1000) + b"]"
VICTIM_BODY = b"[" + b",".join([EVENT] * 10) + b"]"
VICTIM_EVERY_S = 0.02


@dataclass
class Round:
    victim_status: list[int] = field(default_factory=list)
    victim_latency: list[float] = field(default_factory=list)  # accepted requests only, seconds
    flood_accepted: int = 0
    seconds: float = 0.0

    @property
    def refused(self) -> float:
        return sum(1 for s in self.victim_status if s == 429) / max(1, len(self.victim_status))

    def latency(self, q: float) -> float:
        ordered = sorted(self.victim_latency)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _traffic(url: str, flooder: str, victim: str, seconds: float, flood: int) -> Round:
    result = Round()
    stop = time.monotonic() + seconds
    json = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=flood + 1)
    async with aiohttp.ClientSession(url, connector=connector) as http:

        async def flooding() -> None:
            headers = {**json, "Authorization": f"Bearer {flooder}"}
            while time.monotonic() < stop:
                async with http.post("/v1/events", data=FLOOD_BODY, headers=headers) as answer:
                    await answer.read()
                    if answer.status == 202:
                        result.flood_accepted += 1000

        async def suffering() -> None:
            headers = {**json, "Authorization": f"Bearer {victim}"}
            next_at = time.monotonic()
            while time.monotonic() < stop:
                started = time.perf_counter()
                async with http.post("/v1/events", data=VICTIM_BODY, headers=headers) as answer:
                    await answer.read()
                    result.victim_status.append(answer.status)
                    if answer.status == 202:
                        result.victim_latency.append(time.perf_counter() - started)
                next_at += VICTIM_EVERY_S
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        began = time.monotonic()
        await asyncio.gather(suffering(), *(flooding() for _ in range(flood)))
        result.seconds = time.monotonic() - began
    return result


def one_round(pending: int, per_account: int, seconds: float, flood: int) -> Round:
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{Path(folder) / 'fair.db'}"
        _, flooder = create_account(db, "flooder")
        _, victim = create_account(db, "victim")
        port = free_port()
        wait_quiet()
        extra = {
            "ACTIONHOOKS_MAX_PENDING": str(pending),
            "ACTIONHOOKS_MAX_PENDING_PER_ACCOUNT": str(per_account),
        }
        with serve(db, port, **extra):
            return asyncio.run(_traffic(f"http://127.0.0.1:{port}", flooder, victim, seconds, flood))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--flood", type=int, default=64, help="the flooder's concurrent requests")
    parser.add_argument("--pending", type=int, default=20_000, help="ACTIONHOOKS_MAX_PENDING")
    args = parser.parse_args()
    configs = {"global only": args.pending, "per account": args.pending // 4}
    results: dict[str, list[Round]] = {name: [] for name in configs}
    for n in range(args.rounds):
        for name, per_account in configs.items():  # alternating: the machine's noise falls on both
            done = one_round(args.pending, per_account, args.seconds, args.flood)
            results[name].append(done)
            print(
                f"round {n + 1} {name:12}: victim 429 {done.refused:6.1%} of {len(done.victim_status)},"
                f" p50 {done.latency(0.5) * 1000:6.1f} ms, p99 {done.latency(0.99) * 1000:6.1f} ms;"
                f" flooder {done.flood_accepted / done.seconds:9,.0f} events/s",
                flush=True,
            )

    def spread(values: list[float], fmt: str) -> str:
        return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"

    print(f"\nmedian (range) over {args.rounds} rounds, global pending limit {args.pending}:")
    print(
        "| configuration | victim's requests answered 429 | victim p50 ms | victim p99 ms | flooder events/s |"
    )
    print("|---|---|---|---|---|")
    for name, rounds in results.items():
        print(
            f"| {name} (per account {configs[name]}) | {spread([r.refused * 100 for r in rounds], '.1f')} %"
            f" | {spread([r.latency(0.5) * 1000 for r in rounds], '.1f')}"
            f" | {spread([r.latency(0.99) * 1000 for r in rounds], '.1f')}"
            f" | {spread([r.flood_accepted / r.seconds for r in rounds], ',.0f')} |"
        )


if __name__ == "__main__":
    main()
