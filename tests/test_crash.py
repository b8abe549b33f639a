"""kill -9 during a load of 100 000+ events: after a restart, every acknowledged event reaches the receiver.

The service runs as a real process (``actionhooks serve``) on each engine; the test posts batches of 1000 events,
kills the process without warning while requests are in flight, starts it again on the same store and keeps
posting until 100 000 events were acknowledged (202). Duplicates are allowed at the receiver, losses are not.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from typing import Any

import aiohttp
import msgspec
import pytest

from actionhooks.catalog import catalog
from actionhooks.devtools import procs
from actionhooks.devtools.receiver import Receiver
from actionhooks.devtools.traffic import traffic

from .support import eventually

TOTAL = 100_000
BATCH = 1000
KILL_AFTER = 40  # acknowledged batches before the kill


class Load:
    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.acked: list[str] = []
        self.failed_requests = 0
        self.rng = random.Random(11)

    def body(self) -> bytes:
        return msgspec.json.encode(list(traffic(self.rng, BATCH)))

    async def run(self, until_acked: int, concurrency: int = 4) -> None:
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                while len(self.acked) < until_acked:
                    try:
                        async with session.post(
                            f"{self.url}/v1/events", data=self.body(), headers=self.headers
                        ) as r:
                            answer: Any = msgspec.json.decode(await r.read()) if r.status == 202 else None
                    except aiohttp.ClientError:
                        self.failed_requests += 1
                        return  # the service is gone
                    if answer is None:
                        self.failed_requests += 1
                        continue
                    assert not answer["errors"]
                    self.acked.extend(answer["ids"])

            await asyncio.gather(*(worker() for _ in range(concurrency)))


async def start_service(db_url: str, port: int) -> Any:
    cmd = [
        str(procs.BIN / "actionhooks"),
        "serve",
        "--db",
        db_url,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = await asyncio.create_subprocess_exec(*cmd, env=procs.env(), stderr=asyncio.subprocess.DEVNULL)
    await asyncio.to_thread(procs.wait_port, port)
    return proc


@pytest.mark.timeout(300)
async def test_no_acknowledged_event_is_lost_across_kill_9(db_url: str) -> None:
    account_id, key = await asyncio.to_thread(procs.create_account, db_url)
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    async with Receiver() as receiver:
        proc = await start_service(db_url, port)
        try:
            async with aiohttp.ClientSession() as session:
                hook = {
                    "name": "crash",
                    "event_types": [t.code for t in catalog().types],
                    "transport": {
                        "type": "http",
                        "url": receiver.hook_url,
                        "max_batch_size": 1000,
                        "timeout_s": 0.2,
                    },
                }
                async with session.post(
                    f"{url}/v1/hooks", json=hook, headers={"Authorization": f"Bearer {key}"}
                ) as r:
                    assert r.status == 201, await r.text()
            load = Load(url, key)
            loader = asyncio.create_task(load.run(until_acked=TOTAL * 10))
            await eventually(lambda: len(load.acked) >= KILL_AFTER * BATCH, timeout=60, interval=0.01)
            os.kill(proc.pid, signal.SIGKILL)  # no warning, requests in flight
            await proc.wait()
            await loader
            acked_before = len(load.acked)
            assert load.failed_requests > 0, "the kill should have broken requests in flight"
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

        proc = await start_service(db_url, port)
        try:
            await load.run(until_acked=TOTAL)
            assert len(load.acked) >= TOTAL
            missing: set[str] = set()

            def all_arrived() -> bool:
                received = {e["id"] for e in receiver.events}
                missing.clear()
                missing.update(set(load.acked) - received)
                return not missing

            deadline = asyncio.get_running_loop().time() + 180
            while not all_arrived():
                assert asyncio.get_running_loop().time() < deadline, (
                    f"{len(missing)} acknowledged events never arrived"
                )
                await asyncio.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    assert acked_before >= KILL_AFTER * BATCH
    assert account_id > 0
