"""The console's hooks page with 1 000 hooks, rendered on the server: milliseconds per ``GET /console/hooks``.

One account with 1 000 HTTP hooks (in SQLite, settings sealed as always); the page is asked for over loopback from
this process (the service served in the same event loop, no browser): reading the hooks, unsealing and parsing
their settings, the session check, rendering the template, and sending the page. Target: ≤ 100 ms. Reported: the median and the worst of ``--runs`` requests
after a warm-up, and the share of each step.

Usage: ``python -m bench.console [--hooks 1000] [--runs 30]``
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
from actionhooks.hooks import parse_hook
from actionhooks.netguard import parse_nets
from actionhooks.service import build, serving
from actionhooks.store import open_store

TARGET_MS = 100.0


async def measure(hooks: int, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(db=f"sqlite:///{folder}/bench.db", allow_nets=parse_nets("127.0.0.0/8"))
        store = open_store(settings.db)
        await store.open()
        app = build(settings, store, dispatch=False)
        async with serving(app) as url:
            key = new_api_key()
            account = await store.create_account("bench", hash_key(key))
            codes = [t.code for t in catalog().types]
            for i in range(hooks):
                spec = parse_hook(
                    {
                        "name": f"hook {i}",
                        "active": i % 7 != 0,
                        "event_types": codes[: 1 + i % len(codes)],
                        "list_id": None if i % 3 else i,
                        "filters": {"campaign_ids": [i, i + 1]},
                        "transport": {"type": "http", "url": f"http://127.0.0.1:9/hook/{i}"},
                    }
                )
                await app.state.hooks.create_hook(account, spec)
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hooks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.hooks, args.runs))
    verdict = "met" if figures["median_ms"] <= TARGET_MS else "missed"
    print(
        f"| GET /console/hooks, {args.hooks:,} hooks, server-side | **{figures['median_ms']:.1f} ms** median "
        f"(worst {figures['max_ms']:.1f} ms of {args.runs}; reading + unsealing the hooks "
        f"{figures['read_and_unseal_ms']:.1f} ms; page {figures['bytes'] / 1024:,.0f} KiB) | ≤ {TARGET_MS:g} ms: "
        f"**{verdict}** |"
    )


if __name__ == "__main__":
    main()
