"""The ``actionhooks`` command as a user runs it: accounts, catalogue, bad settings."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import msgspec

from actionhooks.api.auth import hash_key
from actionhooks.devtools import procs
from actionhooks.devtools.receiver import Receiver
from actionhooks.store import open_store

from .support import eventually

ACTIONHOOKS = str(Path(sys.executable).parent / "actionhooks")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ACTIONHOOKS, *args], capture_output=True, text=True, timeout=60, env=env)


async def test_accounts_create_prints_a_working_key(db_url: str) -> None:
    done = run("accounts", "create", "acme", "--db", db_url)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["api_key"].startswith("ah_")
    store = open_store(db_url)
    await store.open()
    try:
        assert await store.account_for_key(hash_key(created["api_key"])) == created["account_id"]
        assert await store.account_for_key(hash_key(created["api_key"] + "x")) is None
    finally:
        await store.close()


def test_event_types_json_lists_the_catalogue() -> None:
    done = run("event-types", "--json")
    assert done.returncode == 0, done.stderr
    types = msgspec.json.decode(done.stdout)
    assert len(types) == 80
    assert {"code", "name", "group", "description_ru", "description_en", "structure"} <= set(types[0])
    assert types[0]["code"] == "send"


def test_event_types_table_shows_every_code() -> None:
    done = run("event-types")
    assert done.returncode == 0, done.stderr
    for code in ("send", "deliv", "popup_custom", "viber_uclick", "campaign_launch"):
        assert code in done.stdout


def test_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    done = run("accounts", "create", "acme", "--db", "mysql://nope")
    assert done.returncode != 0
    assert "unsupported database URL" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_a_sqlite_file_in_a_folder_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}"
    for args in (("serve", "--db", url), ("accounts", "create", "acme", "--db", url)):
        done = run(*args)
        assert done.returncode == 2, done.stderr
        assert f"the folder {tmp_path / 'nowhere'} does not exist" in done.stderr
        assert "Traceback" not in done.stderr


def test_serve_with_a_bad_consumers_file_stops_with_a_clear_error(tmp_path: Path) -> None:
    consumers = tmp_path / "consumers.json"
    consumers.write_text('[{"broker": "rabbitmq", "account_id": 1, "queue": "q", "hots": "mq"}]')
    done = run("serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--consume", str(consumers))
    assert done.returncode == 2
    assert "entry 0: unknown field(s) hots for rabbitmq" in done.stderr
    assert "Traceback" not in done.stderr


async def test_api_only_process_ingests_and_a_dispatching_one_delivers(db_url: str) -> None:
    """serve --no-dispatch accepts events into the shared store and leaves the hook's cursor where it was; the
    dispatching process delivers them, each once, in one batch. The test waits for the signal that the dispatching
    process is done — the hook's cursor at the log head — rather than for a while."""
    _, key = await asyncio.to_thread(procs.create_account, db_url)
    headers = {"Authorization": f"Bearer {key}"}
    api_port, worker_port = procs.free_port(), procs.free_port()
    base = [ACTIONHOOKS, "serve", "--db", db_url, "--log-level", "warning", "--port"]
    env = procs.env()
    api = await asyncio.create_subprocess_exec(*base, str(api_port), "--no-dispatch", env=env)
    async with Receiver() as receiver:
        try:
            await asyncio.to_thread(procs.wait_port, api_port)
            async with aiohttp.ClientSession(f"http://127.0.0.1:{api_port}", headers=headers) as http:

                async def cursor() -> int:
                    async with http.get(f"/v1/hooks/{created['id']}") as r:
                        value: int = (await r.json())["cursor"]
                        return value

                hook = {
                    "name": "h",
                    "event_types": ["deliv"],
                    "transport": {"type": "http", "url": receiver.hook_url, "timeout_s": 0},
                }
                async with http.get("/readyz") as r:  # ready, and says it runs no dispatcher
                    ready = await r.json()
                    assert r.status == 200 and ready["checks"]["store"] == "ok", ready
                    assert "dispatcher" not in ready["checks"]
                async with http.post("/v1/hooks", json=hook) as r:
                    assert r.status == 201
                    created = await r.json()
                event = {"event_type": "deliv", "event_date": "2024-01-01T00:00:00Z", "event_data": {}}
                async with http.post("/v1/events", json=[event, event]) as r:
                    ids = (await r.json())["ids"]
                head = await log_head(db_url)
                assert await cursor() == created["cursor"] < head  # accepted, not handled
                assert receiver.events == []
                worker = await asyncio.create_subprocess_exec(*base, str(worker_port), env=env)
                try:
                    await asyncio.to_thread(procs.wait_port, worker_port)
                    async with http.get(f"http://127.0.0.1:{worker_port}/readyz") as r:
                        assert r.status == 200 and (await r.json())["checks"]["dispatcher"] == "ok"
                    await eventually(lambda: caught_up(cursor, head), timeout=20)
                finally:
                    worker.send_signal(signal.SIGTERM)
                    await worker.wait()
                assert [e["id"] for e in receiver.events] == ids
                async with http.get(f"/v1/hooks/{created['id']}/attempts") as r:
                    attempts = (await r.json())["attempts"]
                assert [(a["outcome"], a["events"]) for a in attempts] == [("delivered", 2)]
        finally:
            api.send_signal(signal.SIGTERM)
            await api.wait()


async def caught_up(cursor: Callable[[], Awaitable[int]], head: int) -> bool:
    return await cursor() >= head


async def log_head(db_url: str) -> int:
    store = open_store(db_url)
    await store.open()
    try:
        return await store.head()
    finally:
        await store.close()
