"""The console's hooks page with 1 000 hooks, rendered on the server: milliseconds per ``GET /console/hooks``.

One account with 1 000 HTTP hooks (in SQLite, settings sealed as always) over a log of ``--events`` events of every
type; every ``--behind``-th running hook has not handled the last ``--tail`` of them, the others are caught up. The
page is asked for over loopback from this process (the service served in the same event loop, no browser): reading
the hooks, unsealing and parsing their settings, their lag (one read for the page), the session check, rendering
the template, and sending the page. Target: ≤ 100 ms. Reported: the median and the worst of ``--runs`` requests
after a warm-up.

Usage: ``python -m bench.console [--hooks 1000] [--runs 30] [--events 100000] [--tail 2000] [--behind 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time

import aiohttp

from actionhooks.api.auth import hash_key, new_api_key
from actionhooks.catalog import catalog
from actionhooks.config import Settings
from actionhooks.events import NewEvent
from actionhooks.hooks import parse_hook
from actionhooks.netguard import parse_nets
from actionhooks.service import build, serving
from actionhooks.stats import hook_query
from actionhooks.store import Store, open_store

TARGET_MS = 100.0
BODY = b'{"event_type":"deliv","event_data":{"campaign_id":1}}'


async def measure(hooks: int, runs: int, events: int, tail: int, behind: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(db=f"sqlite:///{folder}/bench.db", allow_nets=parse_nets("127.0.0.0/8"))
        store = open_store(settings.db)
        await store.open()
        app = build(settings, store, dispatch=False)
        async with serving(app) as url:
            key = new_api_key()
            account = await store.create_account("bench", hash_key(key))
            codes = [t.code for t in catalog().types]
            await _fill(store, account, codes, events - tail)
            for i in range(hooks):
                spec = parse_hook(
                    {
                        "name": f"hook {i}",
                        "active": i % 7 != 0,
                        "event_types": codes[: 1 + i % len(codes)],
                        "list_id": None if i % 3 else i % 10,
                        "filters": {"campaign_ids": [i, i + 1]},
                        "transport": {"type": "http", "url": f"http://127.0.0.1:9/hook/{i}"},
                    }
                )
                await app.state.hooks.create_hook(account, spec)
            await _fill(store, account, codes, tail, start=events - tail)
            head = await store.head()
            lagging = 0  # hooks with events waiting (as the one-hook lag of the stats counts them)
            for i, hook in enumerate(await app.state.hooks.list_hooks(account)):
                if hook.spec.active and i % behind:
                    await store.save_cursor(hook.id, hook.generation, head)
                elif hook.spec.active:
                    lagging += bool((await store.hook_lag(hook_query(hook), hook.cursor)).events)
            async with aiohttp.ClientSession(url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.get("/console/sign-in") as answer:
                    csrf = re.search(r'name="csrf" value="([^"]+)"', await answer.text())
                assert csrf
                async with http.post("/console/sign-in", data={"csrf": csrf[1], "key": key}) as answer:
                    assert answer.url.path == "/console/hooks", await answer.text()
                times = []
                size = 0
                for i in range(runs + 3):
                    started = time.perf_counter()
                    async with http.get("/console/hooks") as answer:
                        page = await answer.text()
                    elapsed = (time.perf_counter() - started) * 1000
                    assert answer.status == 200 and page.count('<tr id="hook-') == hooks
                    assert page.count('class="behind"') == lagging, "every hook behind shows its lag"
                    size = len(page.encode())
                    if i >= 3:
                        times.append(elapsed)
            started = time.perf_counter()
            listed = await app.state.hooks.list_hooks(account)
            unseal_ms = (time.perf_counter() - started) * 1000
            assert len(listed) == hooks
        await store.close()
    return {
        "median_ms": statistics.median(times),
        "max_ms": max(times),
        "read_and_unseal_ms": unseal_ms,
        "bytes": float(size),
        "lagging": float(lagging),
    }


async def _fill(store: Store, account: int, codes: list[str], count: int, start: int = 0) -> None:
    """``count`` events of every type in turn, over 10 databases, received a second apart until now."""
    now = time.time()
    for first in range(start, start + count, 1000):
        batch = [
            NewEvent(
                account,
                f"e{n}",
                codes[n % len(codes)],
                n % 10,
                f"p{n % 500}",
                now - (start + count - n),
                BODY,
            )
            for n in range(first, min(first + 1000, start + count))
        ]
        await store.append(account, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hooks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--tail", type=int, default=2000)
    parser.add_argument("--behind", type=int, default=10)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.hooks, args.runs, args.events, args.tail, args.behind))
    verdict = "met" if figures["median_ms"] <= TARGET_MS else "missed"
    print(
        f"| GET /console/hooks, {args.hooks:,} hooks ({figures['lagging']:.0f} behind by up to {args.tail:,} "
        f"of {args.events:,} events), server-side | **{figures['median_ms']:.1f} ms** median "
        f"(worst {figures['max_ms']:.1f} ms of {args.runs}; reading + unsealing the hooks "
        f"{figures['read_and_unseal_ms']:.1f} ms; page {figures['bytes'] / 1024:,.0f} KiB) | ≤ {TARGET_MS:g} ms: "
        f"**{verdict}** |"
    )


if __name__ == "__main__":
    main()
