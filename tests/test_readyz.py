"""``GET /readyz``: readiness as the process's named checks — the store reachable and migrated, the dispatcher
running where one runs — against ``/healthz``, which stays liveness."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from actionhooks.config import Retention
from actionhooks.maintenance.runner import FAILED_ROUNDS_NOT_READY
from actionhooks.readiness import Readiness
from actionhooks.store import Store

from .conftest import PG_ADMIN_URL
from .support import Service, eventually, service_settings


async def readyz(service: Service) -> tuple[int, dict[str, object], dict[str, str]]:
    status, body, headers = await service.call("GET", "/readyz", None)
    return status, body, headers


async def test_a_serving_process_is_ready_without_a_key(service: Service) -> None:
    status, body, _ = await readyz(service)
    assert status == 200
    assert body["status"] == "ready"
    assert body["checks"] == {
        **body["checks"],
        "store": "ok",
        "dispatcher": "ok",
        "background_jobs": "ok",
    }  # others may add theirs
    assert (await service.call("GET", "/healthz", None))[0] == 200


@pytest.fixture
async def api_only(store: Store, db_url: str) -> AsyncIterator[Service]:
    from actionhooks.service import build

    svc = Service(store, service_settings(db_url))
    svc.app = build(svc.settings, store, dispatch=False)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def test_an_api_only_process_is_ready_without_a_dispatcher(api_only: Service) -> None:
    status, body, _ = await readyz(api_only)
    assert status == 200 and body["status"] == "ready"
    assert body["checks"]["store"] == "ok" and "dispatcher" not in body["checks"]


async def test_a_stopped_dispatcher_makes_the_process_not_ready(service: Service) -> None:
    await service.dispatcher.stop()
    status, body, headers = await readyz(service)
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert body["status"] == "not_ready"
    assert body["checks"]["dispatcher"] == "the dispatcher is not running"
    assert body["checks"]["store"] == "ok"
    assert (await service.call("GET", "/healthz", None))[0] == 200  # alive all the same


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_database_missing_a_migration_is_not_ready(service: Service, db_url: str) -> None:
    """As when a process of this version serves a database whose migration was undone (a restore, say)."""
    with contextlib.closing(sqlite3.connect(db_url.removeprefix("sqlite:///"))) as conn, conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = 4")
    status, body, _ = await readyz(service)
    assert status == 503 and body["checks"]["store"] == "migrations not applied: [4]"


def _execute(db_url: str, sql: str) -> None:
    if db_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=10)) as conn, conn:
            conn.execute(sql)
    else:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql)


async def test_background_jobs_failing_round_after_round_make_the_process_not_ready(
    store: Store, db_url: str
) -> None:
    """The lease table gone (a botched restore, say): every round of the background jobs fails; after
    FAILED_ROUNDS_NOT_READY of them in a row /readyz names the failure, and is ready again once rounds pass."""
    svc = Service(store, service_settings(db_url, retention=Retention(interval_s=0.05)))
    await svc.start()
    try:
        jobs = svc.app.state.maintenance
        await eventually(lambda: jobs.last_round_at is not None)
        assert (await readyz(svc))[0] == 200
        await asyncio.to_thread(_execute, db_url, "ALTER TABLE leases RENAME TO leases_away")
        await eventually(lambda: jobs.failed_rounds >= FAILED_ROUNDS_NOT_READY, timeout=10)
        status, body, _ = await readyz(svc)
        assert status == 503
        check = str(body["checks"]["background_jobs"])
        assert "rounds failed in a row" in check and "leases" in check
        assert body["checks"]["store"] == "ok"
        await asyncio.to_thread(_execute, db_url, "ALTER TABLE leases_away RENAME TO leases")

        async def ready() -> bool:
            return (await readyz(svc))[0] == 200

        await eventually(ready, timeout=10)
    finally:
        await svc.stop()


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql)


def _database_down(db_url: str, down: bool) -> None:
    """Refuse new connections to the test database and cut the open ones (or accept them again)."""
    name = db_url.rsplit("/", 1)[1]
    _admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(not down).lower()}')
    if down:
        _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_not_ready_while_the_database_is_down_and_ready_again_soon_after(
    service: Service, db_url: str
) -> None:
    try:
        await asyncio.to_thread(_database_down, db_url, True)
        status, body, headers = await readyz(service)
        assert status == 503 and int(headers["Retry-After"]) >= 1
        assert body["status"] == "not_ready" and "unavailable" in str(body["checks"]["store"])
        assert (await service.call("GET", "/healthz", None))[0] == 200  # liveness: restarting would not help
    finally:
        await asyncio.to_thread(_database_down, db_url, False)
    back = time.monotonic()

    async def ready() -> bool:
        return (await readyz(service))[0] == 200

    await eventually(ready, timeout=5)
    print(f"ready again {time.monotonic() - back:.2f} s after the database accepted connections")


async def test_a_check_that_fails_or_raises_names_itself() -> None:
    readiness = Readiness()

    async def fine() -> str | None:
        return None

    async def broken() -> str | None:
        raise RuntimeError("no route to the cache")

    async def waiting() -> str | None:
        return "warming up"

    readiness.add("a", fine)
    readiness.add("b", broken)
    report = await readiness.report()
    assert not report.ready and report.checks == {"a": "ok", "b": "RuntimeError: no route to the cache"}
    readiness.add("b", waiting)
    assert (await readiness.report()).checks["b"] == "warming up"
    readiness.remove("b")
    assert (await readiness.report()).ready
    readiness.stopping()
    stopping = await readiness.report()
    assert not stopping.ready and stopping.checks["shutdown"] == "the process is shutting down"
