"""``GET /metrics`` parsed by prometheus_client's own text parser, with values asserted after known traffic; the
background jobs' expiry counted there; ``serve --log-format json`` writes one JSON object a line, secrets never."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from actionhooks.devtools import procs
from actionhooks.devtools.receiver import Receiver
from actionhooks.errors import DeliveryError

from .stub import StubDestination
from .support import Service, User, eventually

ACTIONHOOKS = str(procs.BIN / "actionhooks")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(service: Service) -> Samples:
    status, body, headers = await service.call("GET", "/metrics", None)  # no API key
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def event(event_type: str = "deliv") -> dict[str, Any]:
    return {"event_type": event_type, "event_date": "2024-05-01T10:00:00Z", "event_data": {"campaign_id": 1}}


async def stub_hook(service: Service, user: User, **settings: Any) -> tuple[StubDestination, int]:
    name = uuid.uuid4().hex
    dest = StubDestination(name)
    transport = {"type": "stub", "name": name, "max_batch_size": 100, "timeout_s": 0}
    body = {"name": "h", "event_types": ["deliv"], "transport": transport, **settings}
    status, created, _ = await service.call("POST", "/v1/hooks", user, body)
    assert status == 201, created
    return dest, int(created["id"])


async def send(service: Service, user: User, events: list[dict[str, Any]]) -> None:
    status, answer, _ = await service.call("POST", "/v1/events", user, events)
    assert status == 202, answer


async def test_a_scrape_counts_the_traffic_just_sent(service: Service, owner: User) -> None:
    dest, hook = await stub_hook(service, owner)
    broken, broken_hook = await stub_hook(service, owner)
    broken.fail_next(DeliveryError("HTTP 410", status=410, permanent=True), times=1)
    before = await scrape(service)
    await send(service, owner, [event("deliv")] * 3 + [event("open")] * 2)
    await service.dispatcher.caught_up(hook)
    await service.dispatcher.caught_up(broken_hook)
    after = await scrape(service)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("actionhooks_events_ingested_total", event_type="deliv") == 3
    assert delta("actionhooks_events_ingested_total", event_type="open") == 2
    delivered = delta("actionhooks_deliveries_total", hook_id=str(hook), outcome="delivered")
    assert delivered == len(dest.batches) >= 1
    assert delta("actionhooks_deliveries_total", hook_id=str(broken_hook), outcome="failed") == 1
    assert delta("actionhooks_dead_letters_total", hook_id=str(broken_hook)) == 3
    assert delta("actionhooks_dead_letters_total", hook_id=str(hook)) == 0
    assert delta("actionhooks_batch_events_count") == delivered + 1
    assert delta("actionhooks_batch_events_sum") == 6
    assert delta("actionhooks_delivery_seconds_count") == delivered + 1
    assert (
        value(after, "actionhooks_log_events") == 5 + 1
    )  # and the hook.dead_lettered notice (operational.py)
    assert 0 <= value(after, "actionhooks_log_oldest_seconds") < 60
    for h in (hook, broken_hook):
        assert value(after, "actionhooks_hook_lag_events", hook_id=str(h)) == 0
        assert value(after, "actionhooks_hook_lag_seconds", hook_id=str(h)) == 0
        assert ("actionhooks_expired_undelivered_total", (("hook_id", str(h)),)) in after


async def test_lag_and_expiry_of_a_hook_that_cannot_deliver(service: Service, owner: User) -> None:
    dest, hook = await stub_hook(service, owner)
    dest.fail_next(DeliveryError("HTTP 503", status=503), times=10_000)
    await send(service, owner, [event()] * 4)
    await dest.wait_for_calls(2)
    samples = await scrape(service)
    assert value(samples, "actionhooks_hook_lag_events", hook_id=str(hook)) == 4
    assert value(samples, "actionhooks_hook_lag_seconds", hook_id=str(hook)) > 0
    # eight days later the events are out of the window, undelivered: counted for the hook
    jobs = service.app.state.maintenance
    jobs.disable_after_s = (
        30 * 86400
    )  # failing for eight days would stop the hook (auto-disable): not the point here
    await eventually(lambda: jobs.holds_lease)
    done = await jobs.run_once(now=time.time() + 8 * 86400)
    assert done is not None and done.expired == {hook: 4}
    samples = await scrape(service)
    assert value(samples, "actionhooks_expired_undelivered_total", hook_id=str(hook)) == 4
    assert value(samples, "actionhooks_log_events") == 0
    assert value(samples, "actionhooks_hook_lag_events", hook_id=str(hook)) == 0


async def test_serve_logs_one_json_object_a_line_without_secrets(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'json.db'}"
    _, key = await asyncio.to_thread(procs.create_account, db)
    port = procs.free_port()
    secret = "pa55-" + uuid.uuid4().hex
    proc = await asyncio.create_subprocess_exec(
        ACTIONHOOKS,
        *("serve", "--db", db, "--port", str(port), "--log-format", "json", "--log-level", "debug"),
        env=procs.env(),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with Receiver() as receiver:
            receiver.answer(500, b"try later", times=1)
            await asyncio.to_thread(procs.wait_port, port)
            headers = {"Authorization": f"Bearer {key}"}
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as http:
                transport = {
                    "type": "http",
                    "url": receiver.hook_url,
                    "timeout_s": 0,
                    "auth": {"type": "basic", "username": "u", "password": secret},
                }
                hook = {"name": "h", "event_types": ["deliv"], "transport": transport}
                async with http.post("/v1/hooks", json=hook) as r:
                    assert r.status == 201
                    hook_id = (await r.json())["id"]
                async with http.post("/v1/events", json=[event()]) as r:
                    assert r.status == 202
                await receiver.wait_for_events(1, timeout=30)
                # the delivered attempt is recorded after the receiver answered
                await eventually(lambda: attempts_recorded(http, hook_id, 2), timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await proc.communicate()
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]  # every line is JSON
    outcomes = [(r["hook_id"], r["outcome"]) for r in lines if "batch_id" in r]
    assert outcomes == [(hook_id, "retry"), (hook_id, "delivered")]
    assert all(r["batch_id"].startswith(f"{hook_id}-") for r in lines if "batch_id" in r)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in lines)
    assert secret not in err.decode()


async def attempts_recorded(http: aiohttp.ClientSession, hook_id: int, count: int) -> bool:
    async with http.get(f"/v1/hooks/{hook_id}/attempts") as r:
        return len((await r.json())["attempts"]) >= count
