"""Fan-out (issue 11): ingest and delivery with many hooks, before and after the shared read, in one run.

Every scenario runs twice in the same session — ``before`` (the service from another source tree, e.g. main
before the change, ``--before-src``) and ``after`` (this tree) — beside the no-hook baseline of the same version:

- ``0 hooks`` (the baseline), ``1 hook`` (all 80 types), ``1 + 99 idle`` (the same hook and 99 matching nothing: a
  ``list_id`` the traffic never has), ``10 hooks`` and ``100 hooks`` at ~10 % (8 of the 80 types each, rotating),
  ``1000 hooks`` at ~1 % (one type each);
- ``max_batch_size 1``: one hook for all types with batches of one event — events/s from the first request to the
  last delivery, then the ingest→delivery latency at 1 000 events/s (10 events every 10 ms for 10 s);
  ``max_batch_size 1 and 16 in flight``: the same hook with ``max_in_flight`` 16;
- ``PostgreSQL end to end``: the one-hook scenario on PostgreSQL beside the same on SQLite.

The service (``actionhooks serve``), the destination (``python -m bench.sink``: counts events and the latency of
each from its UUIDv7 id) and the clients (8 aiohttp clients posting pre-encoded 1000-event arrays) are three
processes on the machine's cores. Ingest events/s: first request to last ``202``; deliveries/s: first request to
the last delivery; service CPU: the seconds of CPU the service process used (every thread) over the same span —
steadier than the rates on a busy machine, where the others' share of the cores moves them. Before each run the
busy share of the machine over one second is recorded (other work on it).

Usage: ``python -m bench.fanout --before-src /tmp/before/src [--events 100000] [--rounds 3] [--charts bench/charts]
[--engine postgres]`` (``--engine``: the store of every scenario but the end-to-end pair);
prints markdown tables (with ``--rounds`` > 1: the median of the rounds, lowest–highest in brackets; the
versions' order alternates between rounds), writes every run into ``fanout.json`` and the PNG charts (medians)
into ``--charts``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import psycopg

from actionhooks.catalog import catalog
from actionhooks.devtools.procs import create_account, free_port

from . import procs
from .run import encode_batches, post_all, sample_events

HERE = Path(__file__).resolve().parent
AFTER_SRC = HERE.parent / "src"
PG_ADMIN = os.environ.get("ACTIONHOOKS_BENCH_PG", "postgresql://127.0.0.1:5432/test")
NOWHERE_LIST = 987_654_321  # a list_id the traffic never has
# one-event batches: the latency scenarios
ONE_EVENT = ("max_batch_size 1", "max_batch_size 1 and 16 in flight")


@dataclass
class Result:
    scenario: str
    version: str
    hooks: int
    events: int
    expected: int  # deliveries the hooks must receive
    ingest_eps: float
    deliveries: int
    delivery_s: float  # first request → last delivery (inf: not all arrived)
    rss_mb: float
    machine_busy: float  # cores busy (all processes) in the second before the run
    latencies_ms: list[float] = field(default_factory=list)
    rounds: int = 1  # a median of this many runs (see medians)
    ingest_range: tuple[float, float] = (0.0, 0.0)  # lowest and highest of the rounds
    deliveries_range: tuple[float, float] = (0.0, 0.0)
    cpu_s: float = 0.0  # the service's CPU (every thread) from the first request to the last delivery
    round: int = (
        0  # which round of the session it ran in (ratios are paired within a round: see paired_ratios)
    )

    @property
    def deliveries_eps(self) -> float:
        return self.deliveries / self.delivery_s if self.delivery_s else 0.0


def machine_busy(window_s: float = 1.0) -> float:
    busy0, total0 = procs._cpu_times()
    time.sleep(window_s)
    busy1, total1 = procs._cpu_times()
    return (busy1 - busy0) / max(total1 - total0, 1.0) * (os.cpu_count() or 1)


def hook_sets(scenario: str) -> list[tuple[list[str], int | None]]:
    """(event types, list_id) per hook of ``scenario``."""
    types = [t.code for t in catalog().types]
    if scenario == "0 hooks":
        return []
    if scenario in ("1 hook", *ONE_EVENT, "PostgreSQL end to end", "SQLite end to end"):
        return [(types, None)]
    if scenario == "1 + 99 idle":
        return [(types, None)] + [(types[i % 80 : i % 80 + 8] or types[:8], NOWHERE_LIST) for i in range(99)]
    if scenario.endswith("hooks at 10 %"):
        n = int(scenario.split()[0])
        return [([types[(i * 8 + k) % len(types)] for k in range(8)], None) for i in range(n)]
    if scenario == "1000 hooks at 1 %":
        return [([types[i % len(types)]], None) for i in range(1000)]
    raise ValueError(scenario)


def logged_counts(db: str) -> dict[tuple[str, Any], int]:
    """Events in the log by (type, list_id): what was posted plus what ingest derived from it."""
    sql = "SELECT event_type, list_id, COUNT(*) FROM events GROUP BY event_type, list_id"
    if db.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(db.removeprefix("sqlite:///"))) as conn:
            rows = conn.execute(sql).fetchall()
    else:
        with psycopg.connect(db) as conn:
            rows = conn.execute(sql).fetchall()
    return {(str(t), lid): int(n) for t, lid, n in rows}


def expected_deliveries(
    by_type: dict[tuple[str, Any], int], hooks: list[tuple[list[str], int | None]]
) -> int:
    total = 0
    for types, list_id in hooks:
        wanted = set(types)
        total += sum(
            n for (t, lid), n in by_type.items() if t in wanted and (list_id is None or lid == list_id)
        )
    return total


@contextlib.contextmanager
def database(kind: str, folder: Path, name: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / (name + '.db')}"
        return
    db = f"ah_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{db}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


async def _create_hooks(
    service: str,
    key: str,
    url: str,
    hooks: list[tuple[list[str], int | None]],
    batch: int,
    timeout_s: float,
    in_flight: int = 1,
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:
        for n, (types, list_id) in enumerate(hooks):
            body: dict[str, Any] = {
                "name": f"bench-{n}",
                "event_types": types,
                "transport": {
                    "type": "http",
                    "url": url,
                    "max_batch_size": batch,
                    "timeout_s": timeout_s,
                    **({"max_in_flight": in_flight} if in_flight > 1 else {}),
                },
            }
            if list_id is not None:
                body["list_id"] = list_id
            async with session.post(f"{service}/v1/hooks", json=body, headers=headers) as resp:
                if resp.status != 201:
                    raise RuntimeError(await resp.text())


async def _stats(sink: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{sink}/stats") as resp:
        answer: dict[str, Any] = msgspec.json.decode(await resp.read())
        return answer


async def _reset(sink: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(f"{sink}/reset") as resp:
        await resp.read()


async def _wait_deliveries(sink: str, expected: int, started: float, timeout: float) -> tuple[int, float]:
    """Deliveries counted and the seconds from ``started`` to the last one (inf when not all came)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{sink}/count") as resp:
                count = int(msgspec.json.decode(await resp.read())["events"])
            if count >= expected:
                return count, time.perf_counter() - started
            if time.monotonic() > deadline:
                return count, float("inf")
            await asyncio.sleep(0.02)


async def _paced(url: str, key: str, events: list[dict[str, Any]], per_s: int, seconds: float) -> None:
    """``per_s`` events a second, 10 per request every ``10 / per_s`` seconds, for ``seconds``."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    bodies = encode_batches(events, 10)
    period = 10 / per_s
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        for n in range(int(seconds / period)):
            delay = start + n * period - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            async with session.post(url, data=bodies[n % len(bodies)], headers=headers) as resp:
                await resp.read()


def _cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` has used so far (user and system, every thread)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(
    scenario: str,
    version: str,
    src: Path,
    events: list[dict[str, Any]],
    folder: Path,
    *,
    engine: str = "sqlite",
    timeout: float = 180.0,
) -> Result:
    hooks = hook_sets(scenario)
    batch, timeout_s = (1, 0.0) if scenario in ONE_EVENT else (1000, 0.2)
    in_flight = 16 if scenario.endswith("16 in flight") else 1
    if scenario in ONE_EVENT:
        events = events[:20_000]
    bodies = encode_batches(events, 1000)
    name = (
        f"{scenario}-{version}-{uuid.uuid4().hex[:6]}".replace(" ", "_").replace("%", "pc").replace("+", "p")
    )
    sink_port, port = free_port(), free_port()
    sink_cmd = [sys.executable, "-m", "bench.sink", "--port", str(sink_port)]
    with database(engine, folder, name) as db:
        _, key = create_account(db)
        extra = {"PYTHONPATH": str(src)}
        with procs.running(sink_cmd, sink_port), procs.serve(db, port, **extra) as server:
            service, sink = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sink_port}"
            asyncio.run(_create_hooks(service, key, f"{sink}/hook", hooks, batch, timeout_s, in_flight))
            time.sleep(1.0)  # the dispatcher's workers start
            busy = machine_busy()
            cpu = _cpu_s(server.pid)
            started = time.perf_counter()
            elapsed = asyncio.run(post_all(f"{service}/v1/events", key, bodies, 8))
            expected = expected_deliveries(logged_counts(db), hooks)
            count, delivery_s = (
                asyncio.run(_wait_deliveries(sink, expected, started, timeout)) if hooks else (0, 0.0)
            )
            cpu = _cpu_s(server.pid) - cpu
            latencies: list[float] = []
            if scenario in ONE_EVENT and delivery_s != float("inf"):
                asyncio.run(_reset(sink))
                asyncio.run(_paced(f"{service}/v1/events", key, events, 1000, 10.0))
                asyncio.run(_wait_deliveries(sink, 10_000, time.perf_counter(), 60))
                latencies = list(asyncio.run(_stats(sink))["latencies_ms"])
            elif hooks:
                latencies = list(asyncio.run(_stats(sink))["latencies_ms"])
            rss = _rss_mb(server.pid)
    result = Result(
        scenario,
        version,
        len(hooks),
        len(events),
        expected,
        len(events) / elapsed,
        count,
        delivery_s,
        rss,
        busy,
        latencies,
        cpu_s=cpu,
    )
    print(
        f"{scenario:>24} {version:>6}: ingest {result.ingest_eps:>9,.0f}/s  deliveries {count:>9,}/{expected:,}"
        f" in {delivery_s:6.1f} s = {result.deliveries_eps:>9,.0f}/s  cpu {cpu:5.1f} s  rss {rss:5.0f} MB"
        f"  busy {busy:.2f}",
        file=sys.stderr,
        flush=True,
    )
    return result


SCENARIOS = ["0 hooks", "1 hook", "1 + 99 idle", "10 hooks at 10 %", "100 hooks at 10 %", "1000 hooks at 1 %"]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def medians(results: list[Result]) -> list[Result]:
    """One result per (scenario, version), in first-seen order: the median of its rounds' figures, with their
    lowest and highest; the latencies of every round together."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.version), []).append(r)
    out: list[Result] = []
    for runs in groups.values():
        ingest = [r.ingest_eps for r in runs]
        rates = [r.deliveries_eps if r.delivery_s != float("inf") else 0.0 for r in runs]
        first = runs[0]
        rate = statistics.median(rates)
        out.append(
            Result(
                first.scenario,
                first.version,
                first.hooks,
                first.events,
                first.expected,
                statistics.median(ingest),
                min(r.deliveries for r in runs),
                (first.deliveries / rate if rate else float("inf")) if first.hooks else 0.0,
                statistics.median(r.rss_mb for r in runs),
                statistics.median(r.machine_busy for r in runs),
                [v for r in runs for v in r.latencies_ms],
                len(runs),
                (min(ingest), max(ingest)),
                (min(rates), max(rates)),
                statistics.median(r.cpu_s for r in runs),
            )
        )
    return out


def _spread(r: Result, low_high: tuple[float, float]) -> str:
    return f" ({low_high[0]:,.0f}–{low_high[1]:,.0f})" if r.rounds > 1 else ""


def tables(results: list[Result]) -> list[str]:
    by = {(r.scenario, r.version): r for r in results}
    lines = [
        "| scenario | version | ingest events/s | vs 0 hooks | deliveries | deliveries/s (first request → last"
        " delivery) | service CPU s | RSS MB | machine busy (cores) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.scenario in (*ONE_EVENT, "PostgreSQL end to end", "SQLite end to end"):
            continue
        base = by.get(("0 hooks", r.version))
        ratio = f"{r.ingest_eps / base.ingest_eps:.0%}" if base else ""
        done = f"{r.deliveries:,} of {r.expected:,}" if r.hooks else "—"
        rate = f"{r.deliveries_eps:,.0f}" if r.hooks and r.delivery_s != float("inf") else "—"
        if r.hooks and r.delivery_s == float("inf"):
            rate = "not all within the timeout"
        if r.hooks and r.delivery_s != float("inf"):
            rate += _spread(r, r.deliveries_range)
        lines.append(
            f"| {r.scenario} | {r.version} | {r.ingest_eps:,.0f}{_spread(r, r.ingest_range)} | {ratio} | {done} |"
            f" {rate} | {r.cpu_s:.1f} | {r.rss_mb:.0f} | {r.machine_busy:.2f} |"
        )
    lines += ["", "| scenario | version | figure | |", "|---|---|---|---|"]
    for r in results:
        if r.scenario in ONE_EVENT:
            lat = r.latencies_ms
            lines.append(
                f"| {r.scenario}, one hook | {r.version} | {r.deliveries_eps:,.0f} events/s delivered |"
                f" at 1 000 events/s: p50 {_pct(lat, 0.5):.0f} ms, p99 {_pct(lat, 0.99):.0f} ms,"
                f" max {max(lat, default=float('nan')):.0f} ms |"
            )
    pg, lite = by.get(("PostgreSQL end to end", "after")), by.get(("SQLite end to end", "after"))
    for found in (lite, pg):
        if found is not None:
            r = found
            extra = (
                f"{r.deliveries_eps / lite.deliveries_eps:.0%} of SQLite" if lite and r is pg else "baseline"
            )
            lines.append(f"| {r.scenario}, one hook | after | {r.deliveries_eps:,.0f} events/s | {extra} |")
    return lines


# (scenario, its baseline, what is compared): each ratio is worked out within a round, then the rounds' median
PAIRS = (
    *((s, "0 hooks", "ingest") for s in SCENARIOS[1:]),
    ("1 + 99 idle", "1 hook", "ingest"),
    ("PostgreSQL end to end", "SQLite end to end", "deliveries"),
)


def paired_ratios(runs: list[Result]) -> list[str]:
    """The targets' ratios, each from a scenario's run and its baseline's in the same round (the two ran minutes
    apart, not the whole session): on a noisy machine the median of those pairs moves less than a ratio of
    medians taken from different moments."""
    lines = [
        "| ratio (paired within each round) | version | median of the rounds | lowest–highest | rounds |",
        "|---|---|---|---|---|",
    ]
    for scenario, baseline, what in PAIRS:
        for version in dict.fromkeys(r.version for r in runs):
            ratios = []
            for r in runs:
                if r.scenario != scenario or r.version != version:
                    continue
                base = next(
                    (
                        b
                        for b in runs
                        if b.scenario == baseline
                        and b.round == r.round
                        and (b.version == version or baseline.endswith("end to end"))
                    ),
                    None,
                )
                if base is None:
                    continue
                if what == "ingest":
                    ratios.append(r.ingest_eps / base.ingest_eps)
                elif r.delivery_s != float("inf") and base.delivery_s != float("inf"):
                    ratios.append(r.deliveries_eps / base.deliveries_eps)
            if ratios:
                lines.append(
                    f"| {scenario} {what} vs {baseline} | {version} | {statistics.median(ratios):.0%} |"
                    f" {min(ratios):.0%}–{max(ratios):.0%} | {len(ratios)} |"
                )
    return lines


def charts(results: list[Result], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    order = [s for s in SCENARIOS if any(r.scenario == s for r in results)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for version, style in (("before", "o--"), ("after", "s-")):
        rows = [next((r for r in results if r.scenario == s and r.version == version), None) for s in order]
        xs = [i for i, r in enumerate(rows) if r is not None]
        left.plot(xs, [rows[i].ingest_eps / 1000 for i in xs], style, label=version)  # type: ignore[union-attr]
        delivered = [(i, rows[i]) for i in xs if rows[i].hooks and rows[i].delivery_s != float("inf")]  # type: ignore[union-attr]
        right.plot(
            [i for i, _ in delivered],
            [r.deliveries_eps / 1000 for _, r in delivered],  # type: ignore[union-attr]
            style,
            label=version,
        )
    for ax, title in ((left, "ingest (k events/s)"), (right, "deliveries over all hooks (k events/s)")):
        ax.set_xticks(range(len(order)), order, rotation=20, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    path = folder / "fanout_hooks.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    out.append(path)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    panels = (
        ("max_batch_size 1", "max_batch_size 1 at 1 000 events/s"),
        ("100 hooks at 10 %", "100 hooks at 10 %"),
    )
    for ax, (scenario, title) in zip(axes, panels, strict=True):
        for version in ("before", "after"):
            r = next((r for r in results if r.scenario == scenario and r.version == version), None)
            if r is None or not r.latencies_ms:
                continue
            ordered = sorted(r.latencies_ms)
            ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
            ax.plot(
                [max(v, 0.5) for v in ordered], ys, label=f"{version} (p99 {_pct(ordered, 0.99):,.0f} ms)"
            )
        ax.set_xscale("log")
        ax.set_xlabel("ingest → delivery latency (ms, log)")
        ax.set_ylabel("share of events")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = folder / "fanout_latency.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    out.append(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before-src", type=Path, required=True, help="the src/ folder of the tree before")
    parser.add_argument("--after-src", type=Path, default=AFTER_SRC, help="the src/ folder of the tree after")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--only", default=",".join([*SCENARIOS, *ONE_EVENT, "postgres"]))
    parser.add_argument("--charts", type=Path, default=HERE / "charts")
    parser.add_argument("--versions", default="before,after")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each, versions alternating; medians")
    parser.add_argument(
        "--engine", choices=["sqlite", "postgres"], default="sqlite", help="the store of the scenarios"
    )
    args = parser.parse_args()
    only = args.only.split(",")
    events = sample_events(args.events)
    sources = {"before": args.before_src.resolve(), "after": args.after_src.resolve()}
    versions = args.versions.split(",")
    results: list[Result] = []
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ah-fanout-") as tmp:
        folder = Path(tmp)
        for round_ in range(
            args.rounds
        ):  # versions (and engines) in turn first, so neither always goes first
            order = versions if round_ % 2 == 0 else versions[::-1]
            for scenario in [s for s in [*SCENARIOS, *ONE_EVENT] if s in only]:
                for version in order:
                    results.append(
                        run(scenario, version, sources[version], events, folder, engine=args.engine)
                    )
                    results[-1].round = round_
            if "postgres" in only:
                engines = ["sqlite", "postgres"] if round_ % 2 == 0 else ["postgres", "sqlite"]
                for engine in engines:
                    name = "SQLite end to end" if engine == "sqlite" else "PostgreSQL end to end"
                    results.append(run(name, "after", sources["after"], events, folder, engine=engine))
                    results[-1].round = round_
        runs = results
        results = medians(runs)
    args.charts.mkdir(parents=True, exist_ok=True)
    saved = [
        {
            **{k: v for k, v in asdict(r).items() if k != "latencies_ms"},
            "p50_ms": _pct(r.latencies_ms, 0.5),
            "p99_ms": _pct(r.latencies_ms, 0.99),
            "deliveries_eps": r.deliveries_eps,
        }
        for r in runs
    ]
    (args.charts / "fanout.json").write_text(json.dumps(saved, indent=1, default=str))
    drawn = charts(results, args.charts)
    lines = [
        f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f};"
        f" events per run: {len(events)}; store: {args.engine}; median machine busy before runs:"
        f" {statistics.median(r.machine_busy for r in runs):.2f} cores; rounds: {args.rounds} (medians, lowest–highest"
        " in brackets)",
        "",
        *tables(results),
        "",
        *paired_ratios(runs),
        "",
        *[f"![{p.stem}]({os.path.relpath(p, HERE.parent)})" for p in drawn],
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
