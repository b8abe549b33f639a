"""Capture at the source against its baselines, each pair in the same run (BENCHMARKS.md, issue 14):

- **open pixel** — ``wrk`` GETs of ``/t/open/<token>`` (10 000 tokens minted here with the account's tracking key,
  as a sending platform would, rotated per request; an iPhone's user agent) vs plain single-event ingest (``wrk``
  POSTs of one event, as ``bench.run``'s single-event bench) on the same ``actionhooks serve``, alternated
  (ingest, pixel, pixel, ingest) and summed per kind. The log is checked afterwards: one ``open`` per pixel
  request answered (the pixel answers its GIF even when it records nothing).
- **derivation** — batch ingest (1000 events/request, 8 clients) of the demo's traffic into an account with
  derivation on and one with it off, same service, alternated (off, on, on, off); events/s counts the producer's
  events (derived ones are written on top).
- **enrichment** — delivery of a backlog, one hook (all 80 types, HTTP, batches of 1000, ``custom_data_fields``
  name, city, email) per run: *plain* gets the demo's traffic as a producer that sends everything posts it
  (``custom_data``, ``_md5``, ``_xxh`` in each event; its profiles are not stored), *enriched* the same traffic
  without them (``custom_data``, ``subscription``, ``_md5``, ``_xxh`` stripped), its profile ids drawn from
  10 000 stored profiles, so every message is completed from its profile at delivery. Four runs (plain, enriched,
  enriched, plain), each hook's backlog built by an API-only process (``serve --no-dispatch``: a hook starts at
  the log's head); a dispatching ``serve`` then delivers it, timed from the first id its receiver process holds
  until it holds them all. Six runs (plain, enriched, enriched, plain, plain, enriched); besides events/s, the CPU
  time the dispatching process spent meanwhile (``/proc/<pid>/stat``), per 1000 events — steadier than the rate
  when other processes share the cores.

Usage: ``python -m bench.capture [--events N] [--only pixel,derive,enrich]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from actionhooks.capture.tokens import Claims, sign
from actionhooks.catalog import catalog
from actionhooks.devtools.procs import BIN, create_account, free_port

from . import procs
from .run import encode_batches, post_all, sample_events

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.4 Mobile/15E148 Safari/604.1"
)
PROFILES = 10_000
ENRICHED = ["name", "city", "email"]
ID_LINE = 37  # a UUIDv7 and a newline, as the receiver writes them

POST_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""
PIXEL_SCRIPT = """
wrk.headers["User-Agent"] = "{agent}"
local paths = {{{paths}}}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
"""


async def _call(
    service: str, key: str, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    if raw is not None:
        headers["Content-Type"] = "application/x-ndjson"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, service + path, json=body, data=raw, headers=headers) as resp,
    ):
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
        return await resp.json() if resp.content_type == "application/json" else None


def _count(db_path: Path, account_id: int, event_type: str) -> int:
    with sqlite3.connect(db_path) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM events WHERE account_id = ? AND event_type = ?", (account_id, event_type)
        ).fetchone()
    return int(count)


def quiet() -> None:
    """A pause for the service to settle (the machine may be shared: give up waiting after 10 s; the pairs are
    alternated so both sides meet the same neighbours)."""
    procs.wait_quiet(busy_cores=0.3, timeout=10)


# --- open pixel vs single-event ingest --------------------------------------------------------------------
def pixel(
    event: dict[str, object], folder: Path, seconds: int = 5, connections: int = 64
) -> tuple[float, float, float, float]:
    """Requests/s of the open pixel and of single-event ingest, one service, alternated; and the service's CPU ms
    per 1000 requests of each (steadier than the rate when other processes share the cores)."""
    db_path = folder / "pixel.db"
    account_id, key = create_account(f"sqlite:///{db_path}")
    port = free_port()
    service = f"http://127.0.0.1:{port}"
    post = POST_SCRIPT.format(body=msgspec.json.encode(event).decode(), key=key)
    with procs.serve(f"sqlite:///{db_path}", port) as proc:
        made = asyncio.run(_call(service, key, "POST", "/v1/account/tracking-keys"))
        secret = base64.urlsafe_b64decode(made["secret"] + "=" * (-len(made["secret"]) % 4))
        now = int(time.time()) - 3600  # sent an hour ago: no machine-open flag
        paths = ",".join(
            f'"/t/open/{sign(made["key_id"], secret, Claims(a=account_id, p=f"p{i}", l=1, m=i % 50, c=7, t=now))}"'
            for i in range(10_000)
        )
        get = PIXEL_SCRIPT.format(agent=IPHONE, paths=paths)
        procs.wrk(f"{service}/v1/events", post, 2, connections, folder)  # warm-up
        procs.wrk(service, get, 2, connections, folder)
        opens_before = _count(db_path, account_id, "open")
        totals = {"ingest": [0, 0.0, 0.0], "pixel": [0, 0.0, 0.0]}
        for kind in ("ingest", "pixel", "pixel", "ingest"):
            quiet()
            url, script = (f"{service}/v1/events", post) if kind == "ingest" else (service, get)
            cpu = _cpu_s(proc.pid)
            count, taken = procs.wrk(url, script, seconds, connections, folder)
            totals[kind][0] += count
            totals[kind][1] += taken
            totals[kind][2] += _cpu_s(proc.pid) - cpu
    recorded = _count(db_path, account_id, "open") - opens_before
    if recorded < totals["pixel"][0]:
        raise RuntimeError(f"{totals['pixel'][0]} pixel requests answered, {recorded} opens recorded")
    opened, ingested = (totals[k][0] / totals[k][1] for k in ("pixel", "ingest"))
    cpu_opened, cpu_ingested = (totals[k][2] / totals[k][0] * 1e6 for k in ("pixel", "ingest"))
    return opened, ingested, cpu_opened, cpu_ingested


# --- derivation on vs off ---------------------------------------------------------------------------------
def derivation(events: list[dict[str, object]], folder: Path) -> tuple[float, float, int]:
    """Batch-ingest events/s with derivation on and off (one service, two accounts), and how many events the
    derivation added."""
    db_path = folder / "derive.db"
    db = f"sqlite:///{db_path}"
    on_id, on_key = create_account(db, "derive-on")
    off_id, off_key = create_account(db, "derive-off")
    port = free_port()
    service = f"http://127.0.0.1:{port}"
    half = len(events) // 2
    rounds = [
        ("off", events[:half]),
        ("on", events[:half]),
        ("on", events[half:]),
        ("off", events[half:]),
    ]
    times = {"on": 0.0, "off": 0.0}
    counts = {"on": 0, "off": 0}
    with procs.serve(db, port):
        asyncio.run(_call(service, off_key, "PATCH", "/v1/account", {"derive": False}))
        warm = encode_batches(sample_events(20_000, seed=3), 1000)
        for key in (on_key, off_key):
            asyncio.run(post_all(f"{service}/v1/events", key, warm, 8))
        for mode, part in rounds:
            quiet()
            key = on_key if mode == "on" else off_key
            times[mode] += asyncio.run(post_all(f"{service}/v1/events", key, encode_batches(part, 1000), 8))
            counts[mode] += len(part)
    with sqlite3.connect(db_path) as conn:
        (stored_on,) = conn.execute("SELECT count(*) FROM events WHERE account_id = ?", (on_id,)).fetchone()
        (stored_off,) = conn.execute("SELECT count(*) FROM events WHERE account_id = ?", (off_id,)).fetchone()
    return counts["on"] / times["on"], counts["off"] / times["off"], int(stored_on) - int(stored_off)


# --- delivery with enrichment vs without ------------------------------------------------------------------
def bare_events(events: list[dict[str, object]]) -> list[dict[str, object]]:
    """The traffic without what enrichment adds; profile ids from ``PROFILES`` stored profiles."""
    out = []
    for i, event in enumerate(events):
        stripped = {
            k: v for k, v in event.items() if k not in {"custom_data", "subscription", "_md5", "_xxh"}
        }
        if "profile_id" in stripped:
            stripped["profile_id"] = f"p{i % PROFILES}"
        out.append(stripped)
    return out


def profiles() -> bytes:
    return b"\n".join(
        msgspec.json.encode(
            {
                "profile_id": f"p{i}",
                "list_id": 1,
                "email": f"Person.{i}@Example.com",
                "fields": {"name": f"Person {i}", "city": "Москва", "tier": i % 3},
            }
        )
        for i in range(PROFILES)
    )


def enrichment(events: list[dict[str, object]], folder: Path) -> tuple[float, float, float, float]:
    """Delivery events/s of a backlog with enrichment (``custom_data_fields``) and without, one database.

    A hook starts at the log's head, so each run builds its backlog with an API-only process (``serve
    --no-dispatch``): the previous hook deleted, the hook created, the events posted. Then a dispatching ``serve``
    delivers it, counted from the first id its receiver holds until it holds them all (start-up excluded).
    Returns events/s enriched and plain, and the median CPU ms per 1000 events of each."""
    db = f"sqlite:///{folder / 'enrich.db'}"
    _, key = create_account(db)
    port = free_port()
    service = f"http://127.0.0.1:{port}"
    plan = ["plain", "enriched", "enriched", "plain", "plain", "enriched"]
    receivers = [(free_port(), folder / f"received-{i}.ids") for i in range(len(plan))]
    for _, ids in receivers:
        ids.touch()
    bodies = {"plain": encode_batches(events, 1000), "enriched": encode_batches(bare_events(events), 1000)}
    rates: dict[str, list[float]] = {"plain": [], "enriched": []}
    cpu: dict[str, list[float]] = {"plain": [], "enriched": []}
    previous = None
    with _api_only(db, port):
        asyncio.run(_call(service, key, "PATCH", "/v1/account", {"derive": False}))
        asyncio.run(_call(service, key, "POST", "/v1/profiles", raw=profiles()))
    with _receivers(receivers):
        for kind, (receiver_port, ids) in zip(plan, receivers, strict=True):
            hook = {
                "name": kind,
                "event_types": [t.code for t in catalog().types],
                "custom_data_fields": ENRICHED,
                "transport": {
                    "type": "http",
                    "url": f"http://127.0.0.1:{receiver_port}/hook",
                    "max_batch_size": 1000,
                    "timeout_s": 0.2,
                },
            }
            with _api_only(db, port):
                if previous is not None:
                    asyncio.run(_call(service, key, "DELETE", f"/v1/hooks/{previous}"))
                previous = asyncio.run(_call(service, key, "POST", "/v1/hooks", hook))["id"]
                asyncio.run(post_all(f"{service}/v1/events", key, bodies[kind], 4))
            quiet()
            with procs.serve(db, port) as proc:
                rate, cpu_s = _delivered(ids, len(events), kind, proc.pid)
                rates[kind].append(rate)
                cpu[kind].append(cpu_s / len(events) * 1e6)
    # harmonic mean of the runs of each: the events/s of all its runs together
    plain, enriched = (len(rates[k]) / sum(1 / r for r in rates[k]) for k in ("plain", "enriched"))
    print(f"enrichment runs, events/s: {rates}; CPU ms per 1000 events: {cpu}", file=sys.stderr)
    return enriched, plain, statistics.median(cpu["enriched"]), statistics.median(cpu["plain"])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _api_only(db: str, port: int) -> contextlib.AbstractContextManager[Any]:
    """``actionhooks serve --no-dispatch``: ingest and the API, no delivery."""
    cmd = [
        str(BIN / "actionhooks"),
        "serve",
        "--no-dispatch",
        "--db",
        db,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return procs.running(cmd, port)


def _delivered(ids: Path, total: int, kind: str, pid: int) -> tuple[float, float]:
    """Events/s from the first id in ``ids`` until all ``total`` are there, and the CPU seconds process ``pid``
    spent meanwhile."""
    deadline = time.monotonic() + 600
    while ids.stat().st_size == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind}: nothing delivered")
        time.sleep(0.002)
    started, first, cpu = time.perf_counter(), ids.stat().st_size // ID_LINE, _cpu_s(pid)
    while ids.stat().st_size < total * ID_LINE:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind}: the receiver has {ids.stat().st_size // ID_LINE} of {total}")
        time.sleep(0.002)
    taken, cpu = time.perf_counter() - started, _cpu_s(pid) - cpu
    return (total - first) / taken, cpu * total / (total - first)


@contextlib.contextmanager
def _receivers(receivers: Sequence[tuple[int, Path]]) -> Iterator[None]:
    """A ``python -m actionhooks.devtools.receiver`` process per (port, ids file)."""
    with contextlib.ExitStack() as stack:
        for port, ids in receivers:
            stack.enter_context(procs.receiver(port, ids))
        yield


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--only", default="pixel,derive,enrich")
    args = parser.parse_args()
    only = set(args.only.split(","))
    events = sample_events(args.events)
    lines = [f"machine: {os.cpu_count()} cores; events per run: {len(events)}", ""]
    with tempfile.TemporaryDirectory(prefix="ah-bench-capture-") as tmp:
        folder = Path(tmp)
        if "pixel" in only:
            opened, ingested, cpu_opened, cpu_ingested = pixel(events[0], folder)
            lines.append(f"| single-event ingest, wrk -c64 | {ingested:,.0f} req/s | baseline |")
            lines.append(
                f"| open pixel, wrk -c64 | {opened:,.0f} req/s | {opened / ingested:.0%} of ingest |"
            )
            lines.append(
                f"| service CPU per 1000 requests, ingest / pixel | {cpu_ingested:.0f} / {cpu_opened:.0f} ms | {cpu_ingested / cpu_opened:.0%} |"
            )
        if "derive" in only:
            on, off, added = derivation(events, folder)
            lines.append(f"| batch ingest, derivation off | {off:,.0f} events/s | baseline |")
            lines.append(
                f"| batch ingest, derivation on ({added:,} derived events) | {on:,.0f} events/s | {on / off:.0%} of off |"
            )
        if "enrich" in only:
            enriched, plain, cpu_enriched, cpu_plain = enrichment(events, folder)
            lines.append(f"| delivery of a backlog, no enrichment | {plain:,.0f} events/s | baseline |")
            lines.append(
                f"| delivery of a backlog, custom_data_fields from profiles | {enriched:,.0f} events/s | {enriched / plain:.0%} of plain |"
            )
            lines.append(
                f"| dispatching process CPU per 1000 events, plain / enriched (medians) | {cpu_plain:.1f} / {cpu_enriched:.1f} ms | {cpu_plain / cpu_enriched:.0%} |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
