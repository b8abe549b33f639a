"""Before/after: the benchmarks of two source trees in alternating rounds of one run.

A change that claims to cost nothing (a reshaping, say) is measured against the commit before it on the same
machine in the same session: each round runs every figure once per tree, the order of the two trees swapped every
round (so neither always runs on a warmer or a busier machine), and the tables report each figure's median per
tree and the ratio after / before. Each tree runs its *own* benchmark code (``python -m bench.run`` in that tree,
with ``PYTHONPATH`` pointing at its ``src``), so a benchmark moved or renamed by the change is still the one that
tree ships.

Usage::

    git worktree add /tmp/before <commit>
    python -m bench.ab --before /tmp/before --after . --rounds 3 --only batch,single,e2e [--events 200000]

A figure is any table row of ``bench.run``'s output whose second cell starts with a number (``| label | 61,234
events/s | … |``); rows are matched by their label.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROW = re.compile(r"^\|\s*(?P<label>[^|]+?)\s*\|\s*(?P<value>[\d,]+(?:\.\d+)?)\s*(?P<unit>[a-z/]+)")


def figures(output: str) -> dict[str, tuple[float, str]]:
    """Label → (value, unit) of every numeric table row in a benchmark's output."""
    found: dict[str, tuple[float, str]] = {}
    for line in output.splitlines():
        match = ROW.match(line)
        if match:
            found[match["label"]] = (float(match["value"].replace(",", "")), match["unit"])
    return found


def run_tree(tree: Path, only: str, events: int) -> dict[str, tuple[float, str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{tree / 'src'}{os.pathsep}{tree}"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--only", only, "--events", str(events)],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return figures(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=Path.cwd())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="batch,single,e2e")
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    seen: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    units: dict[str, str] = {}
    for n in range(args.rounds):
        order = ["before", "after"] if n % 2 == 0 else ["after", "before"]
        for side in order:
            for figure in args.only.split(","):
                for label, (value, unit) in run_tree(trees[side], figure, args.events).items():
                    seen[side].setdefault(label, []).append(value)
                    units[label] = unit
                    print(f"round {n + 1} {side:6} {label}: {value:,.0f} {unit}", file=sys.stderr, flush=True)
    print(f"{args.rounds} alternating rounds, {args.events} events per run; median (range)\n")
    print("| figure | before | after | after / before |")
    print("|---|---|---|---|")
    for label in seen["before"]:
        before, after = seen["before"][label], seen["after"].get(label, [])
        if not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        unit = units[label]
        print(
            f"| {label} | {b:,.0f} {unit} ({min(before):,.0f}–{max(before):,.0f}) "
            f"| {a:,.0f} {unit} ({min(after):,.0f}–{max(after):,.0f}) | {a / b:.0%} |"
        )


if __name__ == "__main__":
    main()
