"""``actionhooks demo``: the whole path, end to end, in one process and one event loop.

The service (API + dispatcher) runs on SQLite behind uvicorn on a loopback port; a local :class:`Receiver` plays
the customer's system. The demo creates an account and, through the HTTP API, a hook for all 80 event types
that sends JSON batches to the receiver; then it posts realistic traffic (``devtools.traffic``) to ``/v1/events``
for ``duration`` seconds at about ``rate`` events/s, showing live counts. When the traffic stops it waits until
every acknowledged event has reached the receiver and prints a summary. Ctrl-C stops the traffic early and
still shuts everything down cleanly and prints the summary.

Then (``serve_after``, what ``actionhooks demo`` does unless ``--exit-after-traffic``) the service, its console
and the receiver keep running: the demo prints the console's address and the API key to sign in with, and serves
until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import Counter, deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from ..api.auth import hash_key, new_api_key
from ..catalog import catalog
from ..config import Settings
from ..netguard import parse_nets
from ..service import build, serving
from ..store import open_store
from .receiver import Receiver
from .traffic import traffic

DEFAULT_DB = "sqlite:///actionhooks-demo.db"
MAX_IN_FLIGHT = 4  # concurrent POST /v1/events requests
DRAIN_TIMEOUT_S = 30.0
NEXT_STEPS = """
Next, by hand (after `. .venv/bin/activate`): the service, a receiver, a hook, an event:
  ACTIONHOOKS_ALLOW_NETS=127.0.0.0/8 actionhooks serve &     # API + dispatcher on http://127.0.0.1:8000
  python -m actionhooks.devtools.receiver --port 8099 --ids-file ids.txt &
  actionhooks accounts create me                             # then: KEY=<the api_key it printed>
  curl localhost:8000/v1/hooks -H "Authorization: Bearer $KEY" \\
    -d '{"name":"mine","event_types":["send"],"transport":{"type":"http","url":"http://127.0.0.1:8099/hook"}}'
  curl localhost:8000/v1/events -H "Authorization: Bearer $KEY" \\
    -d '{"event_type":"send","event_date":"2025-01-01T00:00:00Z","event_data":{}}'; sleep 2; cat ids.txt"""


@dataclass(frozen=True)
class DemoResult:
    sent: int
    acknowledged: int
    delivered: int
    types_seen: int
    seconds: float


@dataclass
class _Run:
    """What the demo counted so far; read by the live view."""

    receiver: Receiver
    duration: float
    rate: int
    started: float = field(default_factory=time.monotonic)
    traffic_s: float | None = None  # seconds the traffic lasted, once it stopped
    phase: str = "playing traffic"
    sent: int = 0
    acknowledged: int = 0
    refused: int = 0
    last_error: str = ""
    ids: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    by_group: Counter[str] = field(default_factory=Counter)
    final: bool = False
    samples: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=8))

    @property
    def delivered(self) -> int:
        return self.receiver.event_count

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def rates(self) -> tuple[float, float]:
        """Events/s acknowledged and delivered: over the last ~2 s while running, the averages at the end."""
        if self.final:
            return self.acknowledged / (self.traffic_s or 1.0), self.delivered / self.elapsed()
        self.samples.append((time.monotonic(), self.acknowledged, self.delivered))
        (t0, a0, d0), (t1, a1, d1) = self.samples[0], self.samples[-1]
        return ((a1 - a0) / (t1 - t0), (d1 - d0) / (t1 - t0)) if t1 > t0 else (0.0, 0.0)

    def view(self) -> Group:
        rate_in, rate_out = self.rates()
        backlog = max(0, self.acknowledged - self.delivered)
        stats = Table.grid(padding=(0, 2))
        for _ in range(3):
            stats.add_column()
            stats.add_column(justify="right", style="bold")
        stats.add_row(
            "sent", f"{self.sent:,}", "delivered", f"{self.delivered:,}", "in", f"{rate_in:,.0f} ev/s"
        )
        batches = f"{self.receiver.request_count:,}"
        stats.add_row(
            "acknowledged", f"{self.acknowledged:,}", "HTTP batches", batches, "out", f"{rate_out:,.0f} ev/s"
        )
        stats.add_row("backlog", f"{backlog:,}", "event types", f"{len(self.types)}/{len(catalog())}")
        groups = Table(title="sent by group", title_justify="left", show_header=False, box=None, expand=True)
        for _ in range(2):
            groups.add_column(ratio=1, no_wrap=True, overflow="ellipsis", style="dim")
            groups.add_column(justify="right")
        names = list(dict.fromkeys(t.group_en for t in catalog().types))
        for pair in zip(names[::2], names[1::2], strict=True):
            groups.add_row(*(cell for g in pair for cell in (g, f"{self.by_group[g]:,}")))
        status = f"[cyan]{self.phase}[/] · {self.elapsed():.1f} s"
        if self.traffic_s is None:
            status += f" · {self.duration:g} s at about {self.rate:,} events/s · Ctrl-C stops early"
        if self.last_error:
            status += f"\n[red]{self.last_error}[/]"
        return Group(status, stats, "", groups)

    def result(self) -> DemoResult:
        return DemoResult(self.sent, self.acknowledged, self.delivered, len(self.types), self.elapsed())


async def _interruptible(work: Awaitable[None]) -> bool:
    """Await ``work``; True when Ctrl-C (the cancellation of this task) cut it short."""
    try:
        await work
    except asyncio.CancelledError:
        _uncancel()
        return True
    return False


def _uncancel() -> None:
    """The cancellation (Ctrl-C) is handled: later awaits and timeouts of this task work as usual."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _post(http: aiohttp.ClientSession, events: list[dict[str, Any]], run: _Run) -> None:
    body = msgspec.json.encode(events)
    try:
        for _ in range(10):
            async with http.post("/v1/events", data=body) as resp:
                if resp.status == 202:
                    ack = msgspec.json.decode(await resp.read())
                    run.acknowledged += ack["accepted"]
                    run.ids.update(ack["ids"])
                    run.refused += len(events) - len(ack["ids"])
                    return
                run.last_error = f"POST /v1/events: {resp.status} {(await resp.text())[:200]}"
                if resp.status not in (429, 503):
                    break
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
    except aiohttp.ClientError as exc:
        run.last_error = f"POST /v1/events: {exc!r}"
    run.refused += len(events)


async def _play(http: aiohttp.ClientSession, run: _Run) -> None:
    """Post traffic for ``run.duration`` seconds at about ``run.rate`` events/s (as fast as possible if slower)."""
    rng = random.Random()
    per_post = max(len(catalog()), min(500, run.rate // 20))
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    in_flight: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    try:
        while (now := time.monotonic() - start) < run.duration:
            ahead = run.sent / run.rate - now
            if ahead > 0:
                await asyncio.sleep(min(ahead, run.duration - now))
                continue
            await slots.acquire()
            events = list(traffic(rng, per_post, cover_all=run.sent == 0))
            run.sent += len(events)
            for event in events:
                run.types.add(event["event_type"])
                run.by_group[catalog().by_code[event["event_type"]].group_en] += 1
            task = asyncio.create_task(_post(http, events, run))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            task.add_done_callback(lambda _: slots.release())
    finally:
        run.traffic_s = time.monotonic() - start
        if in_flight:
            await asyncio.wait(in_flight)  # their answers count: wait for them even on Ctrl-C


async def _drain(run: _Run) -> None:
    run.phase = "waiting for the last deliveries"
    with contextlib.suppress(TimeoutError):
        await run.receiver.wait_for_events(run.acknowledged, timeout=DRAIN_TIMEOUT_S)


async def _refresh(live: Live, run: _Run) -> None:
    while True:  # in the event loop, not rich's thread: the counts change only here
        live.update(run.view(), refresh=True)
        await asyncio.sleep(0.25)


async def _attempts(http: aiohttp.ClientSession, hook_id: int, delivered: int) -> Counter[str]:
    """The hook's delivery attempts by outcome, read page by page from the API (polled briefly: an attempt is
    recorded just after the receiver has answered it)."""
    for _ in range(40):
        outcomes: Counter[str] = Counter()
        events, params = 0, {"limit": 1000}
        while True:
            async with http.get(f"/v1/hooks/{hook_id}/attempts", params=params) as resp:
                page = (await resp.json())["attempts"] if resp.status == 200 else []
            outcomes.update(a["outcome"] for a in page)
            events += sum(a["events"] for a in page if a["outcome"] == "delivered")
            if len(page) < 1000:
                break
            params["before"] = page[-1]["id"]
        if events >= delivered:
            break
        await asyncio.sleep(0.05)
    return outcomes


def _summary(console: Console, run: _Run, attempts: Counter[str], hook_id: int, interrupted: bool) -> None:
    traffic_s = run.traffic_s or run.elapsed()
    delivered, acked = run.delivered, run.acknowledged
    console.print()
    if interrupted:
        console.print("[yellow]Interrupted: traffic stopped early.[/]")
    console.print(
        f"[bold]{run.sent:,}[/] events of {len(run.types)} types sent in {traffic_s:.1f} s "
        f"([bold]{acked / max(traffic_s, 1e-9):,.0f}[/] acknowledged/s); [bold]{acked:,}[/] acknowledged, "
        f"[bold]{delivered:,}[/] delivered in {run.receiver.request_count:,} HTTP batches, "
        f"all done in {run.elapsed():.1f} s."
    )
    if len(run.ids) != acked:
        console.print(f"[red]{acked:,} events acknowledged but {len(run.ids):,} distinct ids returned[/]")
    if acked and delivered >= acked:
        extra = f" ({delivered - acked:,} redelivered: at least once)" if delivered > acked else ""
        console.print(f"[green]✓ every acknowledged event was delivered[/]{extra}")
    elif acked:
        why = "Ctrl-C stopped the wait for them" if interrupted else f"not within {DRAIN_TIMEOUT_S:g} s"
        console.print(f"[red]✗ {acked - delivered:,} acknowledged events were not delivered[/] ({why})")
    if run.refused:
        console.print(f"[red]{run.refused:,} events were refused by the API[/] ({run.last_error})")
    detail = ", ".join(f"{n:,} {outcome}" for outcome, n in attempts.most_common())
    console.print(
        f"The hook made {attempts.total():,} delivery attempts ({detail}): GET /v1/hooks/{hook_id}/attempts."
    )
    console.print(NEXT_STEPS, soft_wrap=True, highlight=False, markup=False)


class _CtrlC:
    """The SIGINT handler: cancels the demo's task while ``armed``; once it shuts down, Ctrl-C is ignored.

    (Under asyncio.run's own handler a second Ctrl-C raises KeyboardInterrupt wherever the code happens to be.)
    """

    def __init__(self) -> None:
        self.task, self.armed = asyncio.current_task(), True

    def __call__(self) -> None:
        if self.armed and self.task is not None:
            self.task.cancel()


async def run_demo(
    duration: float, rate: int, db: str | None, console: Console | None = None, *, serve_after: bool = False
) -> DemoResult:
    """Run the demo (see the module's docstring) and return its counts. The first Ctrl-C stops the traffic,
    the next one the wait for deliveries; shutdown and summary happen either way. ``serve_after``: then keep
    the service and its console up until Ctrl-C."""
    console = console or Console()
    loop, ctrl_c = asyncio.get_running_loop(), _CtrlC()
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not in the main thread
        loop.add_signal_handler(signal.SIGINT, ctrl_c)
    try:
        return await _demo(duration, max(1, rate), db, console, ctrl_c, serve_after)
    except asyncio.CancelledError:  # Ctrl-C before the traffic: everything was shut down on the way out
        _uncancel()
        console.print("[yellow]Interrupted.[/]")
        return DemoResult(0, 0, 0, 0, 0.0)
    finally:
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.remove_signal_handler(signal.SIGINT)


async def _demo(
    duration: float, rate: int, db: str | None, console: Console, ctrl_c: _CtrlC, serve_after: bool
) -> DemoResult:
    settings = Settings(db=db or DEFAULT_DB, allow_nets=parse_nets("127.0.0.0/8"))
    store = open_store(settings.db)
    await store.open()
    try:
        async with (
            Receiver(keep_events=False, keep_requests=False) as receiver,
            serving(build(settings, store)) as url,
        ):
            key = new_api_key()
            await store.create_account("demo", hash_key(key))
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            async with aiohttp.ClientSession(url, headers=headers) as http:
                transport = {
                    "type": "http",
                    "url": receiver.hook_url,
                    "max_batch_size": 500,
                    "timeout_s": 0.5,
                }
                hook = {
                    "name": "demo",
                    "event_types": [t.code for t in catalog().types],
                    "transport": transport,
                }
                async with http.post("/v1/hooks", json=hook) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"creating the hook failed: {resp.status} {await resp.text()}")
                    hook_id: int = (await resp.json())["id"]
                console.print(
                    f"service  {url}  ({settings.db})\nhook {hook_id} → receiver  {receiver.hook_url}"
                )
                run = _Run(receiver, duration, rate)
                with Live(run.view(), console=console, auto_refresh=False) as live:
                    refresher = asyncio.create_task(_refresh(live, run))
                    interrupted = await _interruptible(_play(http, run))
                    interrupted = await _interruptible(_drain(run)) or interrupted
                    refresher.cancel()
                    await asyncio.gather(refresher, return_exceptions=True)
                    ctrl_c.armed = False
                    run.phase, run.final = ("interrupted" if interrupted else "done"), True
                    live.update(run.view(), refresh=True)
                attempts = await _attempts(http, hook_id, run.delivered)
                _summary(console, run, attempts, hook_id, interrupted)
                if serve_after:
                    await _serve_console(console, url, key, ctrl_c)
                # the receiver goes away with the demo: a later `serve` on this database must not call it
                async with http.patch(f"/v1/hooks/{hook_id}", json={"active": False}):
                    pass
    finally:
        await store.close()
    return run.result()


async def _serve_console(console: Console, url: str, key: str, ctrl_c: _CtrlC) -> None:
    """Keep serving (the console, the API, the hook and its receiver) until Ctrl-C."""
    console.print(
        f"\n[bold]The console:[/] {url}/console/  ·  sign in with the API key [bold]{key}[/]\n"
        "Serving until Ctrl-C.",
        soft_wrap=True,
        highlight=False,
    )
    ctrl_c.armed = True
    await _interruptible(_forever())
    ctrl_c.armed = False


async def _forever() -> None:
    await asyncio.Event().wait()
