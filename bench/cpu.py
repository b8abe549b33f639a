"""Before/after in CPU time: what batch ingest costs the service, per thread, for two source trees.

Throughput on a shared 2-core machine swings by half from one run to the next (the other tenants' load); the CPU
time the service itself spends on the same requests does not. Each round starts each tree's ``actionhooks serve``
(on SQLite, ``PYTHONPATH`` at that tree's ``src``), posts the same events (1000-event arrays, 8 clients, after a
20-request warm-up) and reads the process's CPU time (user + system, ``/proc``) before and after, for the event
loop's thread and for all the others (the store's writer above all); the order of the trees is swapped every
round. Linux only.

Usage::

    python -m bench.cpu --before /tmp/before --after . --rounds 3 [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from actionhooks.devtools.procs import free_port

from .run import encode_batches, post_all, sample_events

_TICK = os.sysconf("SC_CLK_TCK")
_KEY = """
import sys
try:
    from actionhooks.devtools.procs import create_account
except ImportError:  # a tree from before devtools/
    from bench.procs import create_account
print(create_account(sys.argv[1])[1])
"""


def _cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _threads(pid: int) -> tuple[float, float]:
    """CPU seconds of the process's main thread and of all its other threads."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        spent = _cpu(task / "stat")
        if int(task.name) == pid:
            main += spent
        else:
            other += spent
    return main, other


def measure(tree: Path, bodies: list[bytes], warm: list[bytes]) -> tuple[float, float, float]:
    """Seconds taken and CPU seconds (event loop, other threads) of ``tree``'s service for ``bodies``."""
    env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tree}")
    with tempfile.TemporaryDirectory(prefix="ah-bench-cpu-") as folder:
        db = f"sqlite:///{folder}/cpu.db"
        key = subprocess.run(
            [sys.executable, "-c", _KEY, db], env=env, cwd=tree, check=True, capture_output=True, text=True
        ).stdout.strip()
        port = free_port()
        command = [Path(sys.executable).parent / "actionhooks", "serve", "--db", db, "--port", str(port)]
        server = subprocess.Popen(
            [*map(str, command), "--log-level", "warning"], env=env, cwd=tree, stdout=subprocess.DEVNULL
        )
        try:
            url = f"http://127.0.0.1:{port}/v1/events"
            deadline = time.monotonic() + 30
            while True:
                try:
                    asyncio.run(post_all(url, key, warm, 8))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            main0, other0 = _threads(server.pid)
            elapsed = asyncio.run(post_all(url, key, bodies, 8))
            main1, other1 = _threads(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    return elapsed, main1 - main0, other1 - other0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=Path.cwd())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    bodies = encode_batches(sample_events(args.events), 1000)
    warm = encode_batches(sample_events(20_000, seed=3), 1000)
    seen: dict[str, list[tuple[float, float, float, float]]] = {"before": [], "after": []}
    for n in range(args.rounds):
        for side in ["before", "after"] if n % 2 == 0 else ["after", "before"]:
            elapsed, main_s, other_s = measure(trees[side], bodies, warm)
            rate = args.events / elapsed
            seen[side].append((rate, main_s, other_s, main_s + other_s))
            print(
                f"round {n + 1} {side:6} {rate:,.0f} events/s, CPU {main_s:.2f} s loop + {other_s:.2f} s other",
                file=sys.stderr,
                flush=True,
            )
    per_k = 1000 / args.events
    print(f"{args.rounds} alternating rounds, {args.events} events per run; median (range)\n")
    print("| figure | before | after | after / before |")
    print("|---|---|---|---|")
    rows = [
        ("batch ingest, events/s", 0, 1.0, "{:,.0f}"),
        ("CPU ms per 1000 events: event loop", 1, per_k * 1000, "{:.1f}"),
        ("CPU ms per 1000 events: other threads (writer)", 2, per_k * 1000, "{:.1f}"),
        ("CPU ms per 1000 events: the whole service", 3, per_k * 1000, "{:.1f}"),
    ]
    for label, at, scale, shape in rows:
        b = [r[at] * scale for r in seen["before"]]
        a = [r[at] * scale for r in seen["after"]]
        mb, ma = statistics.median(b), statistics.median(a)
        print(
            f"| {label} | {shape.format(mb)} ({shape.format(min(b))}–{shape.format(max(b))}) "
            f"| {shape.format(ma)} ({shape.format(min(a))}–{shape.format(max(a))}) | {ma / mb:.0%} |"
        )


if __name__ == "__main__":
    main()
