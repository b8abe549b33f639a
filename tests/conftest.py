"""Shared fixtures: a store on each engine, the service on a real loopback port, named API users.

The ``store`` fixture runs each test that uses it twice: on SQLite (a file in tmp_path) and on PostgreSQL (a
database made for this test session, emptied before each test). A missing PostgreSQL skips locally and fails in CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from actionhooks.integrations import register
from actionhooks.store import Store, open_store

from . import brokers, stub
from .support import Service, User, service_missing, service_settings

# One private RabbitMQ node for the whole session (a fixture defined in each module would start one per module);
# tests take it through ``brokers.rabbitmq_node``.
rabbitmq_session_node = brokers.rabbitmq_session_node

# The dispatcher's tests deliver to the in-process stub transport; the service itself does not know it.
register(stub.INTEGRATION)

PG_ADMIN_URL = os.environ.get("ACTIONHOOKS_TEST_PG", "postgresql://127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"actionhooks_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        service_missing(f"PostgreSQL at {PG_ADMIN_URL}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty_postgres(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        # the log's partitions go with their list (the writer makes them anew from position 0)
        if conn.execute("SELECT to_regclass('log_partitions')").fetchone() != (None,):
            for (low,) in conn.execute("SELECT low FROM log_partitions").fetchall():
                conn.execute(f"DROP TABLE events_p{low}")
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind IN ('r', 'p') AND NOT relispartition"
            )
        ]
        wipe = [t for t in tables if t not in {"schema_migrations", "meta"}]
        if wipe:
            conn.execute(f"TRUNCATE {', '.join(wipe)} RESTART IDENTITY")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'actionhooks.db'}"
    url: str = request.getfixturevalue("pg_url")
    _empty_postgres(url)
    return url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = open_store(db_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def service(store: Store, db_url: str) -> AsyncIterator[Service]:
    svc = Service(store, service_settings(db_url))
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture
async def owner(service: Service) -> User:
    return await service.user("owner")


@pytest.fixture
async def outsider(service: Service) -> User:
    return await service.user("outsider")
