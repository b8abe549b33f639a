"""API keys fit for a team: several per account, named and scoped (``ingest`` | ``admin``), created, listed and
revoked through the API and the CLI; a revoked key stops working within the cache's time to live in every process.

- through the API on both engines: scopes on every operation of the OpenAPI document, revocation, rotation, the
  rules of revoking (not oneself, not the last admin key, not another account's key), bad bodies;
- the key cache itself (``Authenticator`` over a counting stub store and a hand-turned clock);
- the migration: a database made before scopes keeps its key, now an ``admin`` key named ``default``;
- the command line, and two ``actionhooks serve`` processes on one PostgreSQL database: a key revoked through one
  stops working in the other within ``ACTIONHOOKS_KEY_CACHE_S``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import psycopg
import pytest
from starlette.requests import Request

from actionhooks.api.auth import Authenticator, hash_key, new_api_key
from actionhooks.api.openapi import document
from actionhooks.devtools import procs
from actionhooks.errors import ApiError
from actionhooks.store import Store, open_store
from actionhooks.store.base import StoredKey
from actionhooks.store.dialect import migration_scripts

from .conftest import PG_ADMIN_URL, _empty_postgres
from .support import Service, User, eventually, service_missing

ACTIONHOOKS = str(Path(sys.executable).parent / "actionhooks")
EVENT = {"event_type": "deliv", "event_date": "2024-05-01T12:00:00Z", "event_data": {"message_id": 1}}


async def make_key(service: Service, by: User, name: str, scope: str) -> tuple[dict[str, Any], User]:
    status, created, _ = await service.call("POST", "/v1/keys", by, {"name": name, "scope": scope})
    assert status == 201, created
    return created, User(by.account_id, created["api_key"])


async def keys_of(service: Service, user: User) -> list[dict[str, Any]]:
    status, listing, _ = await service.call("GET", "/v1/keys", user)
    assert status == 200, listing
    keys: list[dict[str, Any]] = listing["keys"]
    return keys


# -- through the API, on both engines ---------------------------------------------------------------------


async def test_an_accounts_first_key_is_an_admin_key_named_default(service: Service, owner: User) -> None:
    (key,) = await keys_of(service, owner)
    assert (key["name"], key["scope"], key["revoked_at"]) == ("default", "admin", None)


async def test_a_new_key_is_shown_once_and_never_listed(service: Service, owner: User) -> None:
    created, producer = await make_key(service, owner, "crm producer", "ingest")
    assert producer.key.startswith("ah_") and producer.key != owner.key
    assert (created["name"], created["scope"], created["revoked_at"]) == ("crm producer", "ingest", None)
    status, raw, _ = await service.call("GET", "/v1/keys", owner)
    assert status == 200
    listed = {k["id"]: k for k in raw["keys"]}
    assert set(listed[created["id"]]) == {"id", "name", "scope", "created_at", "revoked_at", "last_used_at"}
    assert producer.key not in json.dumps(raw) and owner.key not in json.dumps(raw)
    status, result, _ = await service.call("POST", "/v1/events", producer, EVENT)
    assert status == 202 and result["accepted"] == 1


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation of the published document that needs a key: method, path, operation."""
    return [
        (method.upper(), path, op)
        for path, item in document()["paths"].items()
        for method, op in item.items()
        if op.get("security") != []
    ]


async def test_every_operation_enforces_the_scopes_its_document_names(service: Service, owner: User) -> None:
    """An ``ingest`` key gets ``403`` from every operation the document reserves for ``admin`` keys (which
    document the ``403``) and gets through where the document accepts it; an ``admin`` key gets through everywhere."""
    _, producer = await make_key(service, owner, "producer", "ingest")
    checked = {"ingest": 0, "admin": 0}
    for method, path, op in operations():
        accepted = {role for requirement in op["security"] for role in requirement["apiKey"]}
        assert "admin" in accepted, (method, path)
        concrete = path.replace("{hook_id}", "1").replace("{key_id}", "999")
        body = EVENT if path == "/v1/events" else {}
        status, answer, _ = await service.call(method, concrete, producer, body)
        if "ingest" in accepted:
            assert status not in (401, 403), (method, path, status, answer)
            assert "403" not in op["responses"], (method, path)
            checked["ingest"] += 1
        else:
            assert status == 403, (method, path, status, answer)
            assert "scope is ingest" in answer["error"] and "needs an admin key" in answer["error"]
            assert "403" in op["responses"] and "`admin`" in op["description"], (method, path)
            checked["admin"] += 1
        status, answer, _ = await service.call(method, concrete, owner, body)
        assert status not in (401, 403), (method, path, status, answer)
    assert checked["ingest"] == 1 and checked["admin"] >= 12, checked


async def test_a_revoked_key_stops_at_once_in_the_process_that_revoked_it(
    service: Service, owner: User
) -> None:
    created, deputy = await make_key(service, owner, "deputy", "admin")
    assert (await service.call("GET", "/v1/hooks", deputy))[0] == 200  # known, and cached
    status, revoked, _ = await service.call("DELETE", f"/v1/keys/{created['id']}", owner)
    assert status == 200 and revoked["revoked_at"] is not None and revoked["id"] == created["id"]
    status, error, headers = await service.call("GET", "/v1/hooks", deputy)
    assert status == 401 and error["error"] == "this API key was revoked"
    assert headers["WWW-Authenticate"] == "Bearer"
    status, again, _ = await service.call("DELETE", f"/v1/keys/{created['id']}", owner)
    assert status == 200 and again == revoked  # revoking a revoked key changes nothing
    listed = {k["id"]: k for k in await keys_of(service, owner)}
    assert listed[created["id"]]["revoked_at"] == revoked["revoked_at"]


async def test_rotation_keeps_both_keys_working_until_the_old_one_is_revoked(
    service: Service, owner: User
) -> None:
    (old,) = await keys_of(service, owner)
    _, new = await make_key(service, owner, "default (rotated)", "admin")
    for user in (owner, new, owner, new):
        status, _, _ = await service.call("POST", "/v1/events", user, EVENT)
        assert status == 202
    status, _, _ = await service.call("DELETE", f"/v1/keys/{old['id']}", new)
    assert status == 200
    assert (await service.call("POST", "/v1/events", owner, EVENT))[0] == 401
    assert (await service.call("POST", "/v1/events", new, EVENT))[0] == 202
    assert [k["scope"] for k in await keys_of(service, new) if k["revoked_at"] is None] == ["admin"]


async def test_revoking_rules(service: Service, owner: User, outsider: User) -> None:
    (own,) = await keys_of(service, owner)
    status, error, _ = await service.call("DELETE", f"/v1/keys/{own['id']}", owner)
    assert status == 409 and "cannot revoke itself" in error["error"]
    created, producer = await make_key(service, owner, "producer", "ingest")
    status, error, _ = await service.call("DELETE", f"/v1/keys/{created['id']}", producer)
    assert status == 403  # an ingest key revokes nothing, not even itself
    for key_id in (own["id"], created["id"]):  # another account's keys: as if they did not exist
        status, error, _ = await service.call("DELETE", f"/v1/keys/{key_id}", outsider)
        assert status == 404 and error["error"] == "no such key"
    for key_id in ("abc", "0", "-1", str(2**63), "99999"):
        status, error, _ = await service.call("DELETE", f"/v1/keys/{key_id}", owner)
        assert status == 404, key_id
    assert [k["name"] for k in await keys_of(service, outsider)] == ["default"]
    assert (await service.call("POST", "/v1/events", producer, EVENT))[0] == 202  # nothing was revoked


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "scope"),
        ({"name": "x", "scope": "root"}, "scope"),
        ({"scope": "ingest"}, "name"),
        ({"name": "", "scope": "ingest"}, "name"),
        ({"name": "x" * 201, "scope": "ingest"}, "name"),
        ({"name": 5, "scope": "ingest"}, "name"),
        ({"name": "x", "scope": "ingest", "api_key": "ah_mine"}, "api_key"),
        (["x"], None),
    ],
)
async def test_a_bad_new_key_is_refused_with_its_field(
    service: Service, owner: User, body: Any, field: str | None
) -> None:
    status, error, _ = await service.call("POST", "/v1/keys", owner, body)
    assert status == 422, error
    assert error.get("field") == field
    assert [k["name"] for k in await keys_of(service, owner)] == ["default"]


async def test_a_body_that_is_not_json_answers_400(service: Service, owner: User) -> None:
    status, error, _ = await service.call("POST", "/v1/keys", owner, raw=b"{name")
    assert status == 400 and "not valid JSON" in error["error"]


async def test_last_used_at_is_recorded(service: Service, owner: User) -> None:
    created, producer = await make_key(service, owner, "producer", "ingest")
    assert created["last_used_at"] is None
    assert (await service.call("POST", "/v1/events", producer, EVENT))[0] == 202

    async def used() -> Any:
        listed = {k["id"]: k for k in await keys_of(service, owner)}
        return listed[created["id"]]["last_used_at"]

    assert await eventually(used)


async def test_the_store_keeps_an_accounts_last_admin_key_unless_told(store: Store) -> None:
    account = await store.create_account("a", hash_key("first"))
    other = await store.create_account("b", hash_key("other"))
    (first,) = await store.list_keys(account)
    assert (first.name, first.scope) == ("default", "admin")
    assert await store.add_key(10**9, "x", "admin", hash_key("nobody")) is None
    producer = await store.add_key(account, "producer", "ingest", hash_key("producer"))
    assert producer is not None
    kept = await store.revoke_key(first.id, account)
    assert kept is not None and kept.revoked_at is None  # an ingest key is not an admin key
    deputy = await store.add_key(account, "deputy", "admin", hash_key("deputy"))
    assert deputy is not None
    revoked = await store.revoke_key(first.id, account)
    assert revoked is not None and revoked.revoked_at is not None
    assert await store.account_for_key(hash_key("first")) is None
    found = await store.key_for_hash(hash_key("first"))
    assert found is not None and found.revoked_at == revoked.revoked_at
    kept = await store.revoke_key(deputy.id, account)
    assert kept is not None and kept.revoked_at is None
    assert await store.revoke_key(deputy.id, other) is None  # not that account's key
    assert await store.revoke_key(10**9) is None
    gone = await store.revoke_key(deputy.id, keep_an_admin=False)
    assert gone is not None and gone.revoked_at is not None
    assert [k.revoked_at is None for k in await store.list_keys(account)] == [False, True, False]
    assert await store.account_for_key(hash_key("other")) == other


async def test_two_admin_keys_revoking_each_other_at_once_leave_one(store: Store, db_url: str) -> None:
    """Each revocation through its own store (its own connection, as two processes would): one of them is
    refused, whichever commits second."""
    account = await store.create_account("a", hash_key("first"))
    (first,) = await store.list_keys(account)
    second = await store.add_key(account, "second", "admin", hash_key("second"))
    assert second is not None
    elsewhere = open_store(db_url)
    await elsewhere.open()
    try:
        results = await asyncio.gather(
            store.revoke_key(first.id, account), elsewhere.revoke_key(second.id, account)
        )
    finally:
        await elsewhere.close()
    assert sorted(r is not None and r.revoked_at is None for r in results) == [False, True]
    assert len([k for k in await store.list_keys(account) if k.revoked_at is None]) == 1


# -- the key cache ----------------------------------------------------------------------------------------


class CountingKeys:
    """The store's key lookups, counted (the authenticator is the unit under test; this is what it calls)."""

    def __init__(self) -> None:
        self.keys: dict[str, StoredKey] = {}
        self.lookups: Counter[str] = Counter()
        self.touched: list[int] = []

    def add(self, key_id: int, scope: str = "admin") -> str:
        secret = new_api_key()
        self.keys[hash_key(secret)] = StoredKey(
            id=key_id, account_id=7, name=f"k{key_id}", scope=cast(Any, scope), created_at=0.0
        )
        return secret

    def revoke(self, secret: str) -> None:
        digest = hash_key(secret)
        self.keys[digest] = StoredKey(**{**self._fields(self.keys[digest]), "revoked_at": 1.0})

    @staticmethod
    def _fields(key: StoredKey) -> dict[str, Any]:
        return {f: getattr(key, f) for f in key.__struct_fields__}

    async def key_for_hash(self, key_hash: str) -> StoredKey | None:
        self.lookups[key_hash] += 1
        await asyncio.sleep(0.01)
        return self.keys.get(key_hash)

    async def touch_key(self, key_id: int, at: float, older_than: float) -> None:
        self.touched.append(key_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(key: str) -> Request:
    return Request({"type": "http", "headers": [(b"authorization", f"Bearer {key}".encode())]})


async def refusal(auth: Authenticator, key: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await auth.account(bearer(key))
    return caught.value


@pytest.fixture
def keys() -> CountingKeys:
    return CountingKeys()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(keys: CountingKeys, clock: Clock) -> Authenticator:
    return Authenticator(cast(Store, keys), ttl=5.0, cache_size=100, clock=clock)


async def test_a_known_key_is_looked_up_once_per_ttl_and_a_revocation_shows_after_it(
    auth: Authenticator, keys: CountingKeys, clock: Clock
) -> None:
    secret = keys.add(1)
    for _ in range(50):
        assert await auth.account(bearer(secret)) == 7
    assert keys.lookups[hash_key(secret)] == 1
    keys.revoke(secret)  # elsewhere: this process does not know yet
    clock.now += 4.9
    assert await auth.account(bearer(secret)) == 7
    clock.now += 0.2
    assert (await refusal(auth, secret)).error == "this API key was revoked"
    assert keys.lookups[hash_key(secret)] == 2


async def test_bad_keys_are_refused_from_their_own_cache_and_cannot_push_out_good_ones(
    auth: Authenticator, keys: CountingKeys, clock: Clock
) -> None:
    good = keys.add(1)
    await auth.account(bearer(good))
    bad = new_api_key()
    for _ in range(20):
        error = await refusal(auth, bad)
        assert (error.status, error.error) == (401, "invalid API key")
    assert keys.lookups[hash_key(bad)] == 1  # a client retrying with a wrong key costs one lookup per ttl
    for _ in range(500):  # a flood of distinct bad keys, five times the cache's size
        await refusal(auth, new_api_key())
    assert await auth.account(bearer(good)) == 7
    assert keys.lookups[hash_key(good)] == 1
    clock.now += 5.1
    await refusal(auth, bad)
    assert keys.lookups[hash_key(bad)] == 2


async def test_a_malformed_key_is_refused_without_a_lookup(auth: Authenticator, keys: CountingKeys) -> None:
    for header in ("ah_short", "ah_" + "x" * 44, "ah_" + "!" * 43, "sk_" + "x" * 43, "ah_" + "é" * 43):
        error = await refusal(auth, header)
        assert error.status == 401 and error.error.startswith("malformed API key")
    missing = Request({"type": "http", "headers": []})
    with pytest.raises(ApiError) as caught:
        await auth.account(missing)
    assert caught.value.status == 401 and caught.value.error.startswith("missing API key")
    assert sum(keys.lookups.values()) == 0


async def test_concurrent_checks_of_one_key_share_one_lookup(auth: Authenticator, keys: CountingKeys) -> None:
    secret = keys.add(1)
    bad = new_api_key()
    accounts = await asyncio.gather(*(auth.account(bearer(secret)) for _ in range(30)))
    assert accounts == [7] * 30
    refused = await asyncio.gather(*(auth.account(bearer(bad)) for _ in range(30)), return_exceptions=True)
    assert all(isinstance(r, ApiError) and r.status == 401 for r in refused)
    assert (keys.lookups[hash_key(secret)], keys.lookups[hash_key(bad)]) == (1, 1)


async def test_an_ingest_key_is_refused_where_admin_is_needed_and_its_use_is_recorded(
    auth: Authenticator, keys: CountingKeys
) -> None:
    secret = keys.add(3, "ingest")
    assert await auth.account(bearer(secret), "ingest") == 7
    with pytest.raises(ApiError) as caught:
        await auth.account(bearer(secret))
    assert caught.value.status == 403
    await eventually(lambda: keys.touched == [3])


async def test_account_for_a_hash_needs_a_live_key_of_the_scope(
    auth: Authenticator, keys: CountingKeys, clock: Clock
) -> None:
    """What the console's session asks on every request: the hash of the key it signed in with."""
    admin, producer = keys.add(1), keys.add(2, "ingest")
    assert await auth.account_for(hash_key(admin)) == 7
    assert await auth.account_for(hash_key(producer)) is None
    assert await auth.account_for(hash_key(producer), "ingest") == 7
    assert await auth.account_for(hash_key(new_api_key())) is None
    keys.revoke(admin)
    assert await auth.account_for(hash_key(admin)) == 7  # cached for the ttl …
    clock.now += 5.1
    assert await auth.account_for(hash_key(admin)) is None  # … then it is refused
    assert keys.lookups[hash_key(admin)] == 2


async def test_forget_drops_a_key_revoked_here_at_once(auth: Authenticator, keys: CountingKeys) -> None:
    secret, other = keys.add(1), keys.add(2)
    await auth.account(bearer(secret))
    await auth.account(bearer(other))
    keys.revoke(secret)
    auth.forget(1)
    assert (await refusal(auth, secret)).error == "this API key was revoked"
    assert await auth.account(bearer(other)) == 7
    assert keys.lookups[hash_key(other)] == 1


# -- the migration ----------------------------------------------------------------------------------------


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A database of its own (the session's one is migrated already)."""
    name = f"actionhooks_keys_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        service_missing(f"PostgreSQL at {PG_ADMIN_URL}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def schema_before_scopes(engine: str, url: str, key_hash: str) -> None:
    """The schema as migrations before 003 left it, with an account and its one key as they were stored then."""
    scripts = [(v, s) for v, s in migration_scripts(engine) if v < 3]
    if engine == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
        for version, script in scripts:
            conn.executescript(script)
            conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        conn.execute("INSERT INTO accounts (name, created_at) VALUES ('old', 1.0)")
        conn.execute(
            "INSERT INTO api_keys (key_hash, account_id, created_at) VALUES (?, 1, 2.0)", (key_hash,)
        )
        conn.commit()
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, script in scripts:
            pg.execute(cast(Any, script))
            pg.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        pg.execute("INSERT INTO accounts (name, created_at) VALUES ('old', 1.0)")
        pg.execute("INSERT INTO api_keys (key_hash, account_id, created_at) VALUES (%s, 1, 2.0)", (key_hash,))


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_a_key_made_before_scopes_becomes_an_admin_key_named_default(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.db'}" if engine == "sqlite" else request.getfixturevalue("fresh_pg_url")
    )
    secret = new_api_key()
    schema_before_scopes(engine, url, hash_key(secret))
    store = open_store(url)
    await store.open()
    try:
        key = await store.key_for_hash(hash_key(secret))
        assert key is not None
        assert (key.account_id, key.name, key.scope, key.created_at, key.revoked_at) == (
            1,
            "default",
            "admin",
            2.0,
            None,
        )
        added = await store.add_key(1, "producer", "ingest", hash_key(new_api_key()))
        assert added is not None and added.id > key.id  # ids go on after the migrated keys
        with pytest.raises(Exception, match=r"(?i)unique"):
            await store.add_key(1, "same secret", "ingest", hash_key(secret))
    finally:
        await store.close()


# -- the command line, and two processes on one PostgreSQL database ------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ACTIONHOOKS, *args], capture_output=True, text=True, timeout=60, env=procs.env())


async def test_keys_commands_create_list_and_revoke(db_url: str) -> None:
    account_id, admin_key = await asyncio.to_thread(procs.create_account, db_url)
    done = await asyncio.to_thread(
        cli, "keys", "create", str(account_id), "--name", "crm", "--scope", "ingest", "--db", db_url
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert (created["account_id"], created["name"], created["scope"]) == (account_id, "crm", "ingest")
    assert created["api_key"].startswith("ah_") and created["revoked_at"] is None
    done = await asyncio.to_thread(cli, "keys", "list", str(account_id), "--db", db_url)
    listed = json.loads(done.stdout)["keys"]
    assert [(k["name"], k["scope"]) for k in listed] == [("default", "admin"), ("crm", "ingest")]
    assert created["api_key"] not in done.stdout and admin_key not in done.stdout
    # the last admin key too: the operator's way out when it leaked
    for key in listed:
        done = await asyncio.to_thread(cli, "keys", "revoke", str(key["id"]), "--db", db_url)
        assert done.returncode == 0, done.stderr
        revoked = json.loads(done.stdout)
        assert revoked["id"] == key["id"] and revoked["revoked_at"] is not None
        assert revoked["account_id"] == account_id and "api_key" not in revoked
    store = open_store(db_url)
    await store.open()
    try:
        assert await store.account_for_key(hash_key(admin_key)) is None
        assert await store.account_for_key(hash_key(created["api_key"])) is None
    finally:
        await store.close()


async def test_keys_commands_refuse_what_does_not_exist(db_url: str) -> None:
    account_id, _ = await asyncio.to_thread(procs.create_account, db_url)
    unknown = await asyncio.to_thread(
        cli, "keys", "create", "999", "--name", "x", "--scope", "admin", "--db", db_url
    )
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "actionhooks: no account 999")
    unknown = await asyncio.to_thread(cli, "keys", "revoke", "999", "--db", db_url)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "actionhooks: no key 999")
    for bad in (["--scope", "root", "--name", "x"], ["--scope", "admin", "--name", ""]):
        done = await asyncio.to_thread(cli, "keys", "create", str(account_id), *bad, "--db", db_url)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    done = await asyncio.to_thread(cli, "keys", "list", str(account_id), "--db", db_url)
    assert [k["name"] for k in json.loads(done.stdout)["keys"]] == ["default"]


TTL_S = 1.0


async def test_a_key_revoked_through_one_process_stops_in_another_within_the_ttl(pg_url: str) -> None:
    """Two ``actionhooks serve`` processes on one PostgreSQL database, each caching key checks for ``TTL_S``:
    scopes hold in both, a key revoked through A (or by the CLI) stops working in B within the ttl, and the
    other keys go on working throughout (rotation without downtime)."""
    _empty_postgres(pg_url)
    _, owner_key = await asyncio.to_thread(procs.create_account, pg_url)
    ports = procs.free_port(), procs.free_port()
    env = procs.env(ACTIONHOOKS_KEY_CACHE_S=str(TTL_S))
    servers = [
        await asyncio.create_subprocess_exec(
            ACTIONHOOKS,
            "serve",
            "--db",
            pg_url,
            "--no-dispatch",
            "--log-level",
            "warning",
            "--port",
            str(port),
            env=env,
        )
        for port in ports
    ]
    try:
        for port in ports:
            await asyncio.to_thread(procs.wait_port, port)
        async with (
            aiohttp.ClientSession(f"http://127.0.0.1:{ports[0]}") as a,
            aiohttp.ClientSession(f"http://127.0.0.1:{ports[1]}") as b,
        ):

            async def call(
                http: aiohttp.ClientSession, method: str, path: str, key: str, body: Any = None
            ) -> int:
                async with http.request(
                    method, path, json=body, headers={"Authorization": f"Bearer {key}"}
                ) as r:
                    await r.read()
                    return r.status

            async def create(scope: str) -> dict[str, Any]:
                headers = {"Authorization": f"Bearer {owner_key}"}
                async with a.post("/v1/keys", json={"name": scope, "scope": scope}, headers=headers) as r:
                    assert r.status == 201
                    created: dict[str, Any] = await r.json()
                    return created

            producer, deputy = await create("ingest"), await create("admin")
            # scopes hold in the other process too; both keys are now in B's cache
            assert await call(b, "POST", "/v1/events", producer["api_key"], EVENT) == 202
            assert await call(b, "GET", "/v1/hooks", producer["api_key"]) == 403
            assert await call(b, "GET", "/v1/keys", deputy["api_key"]) == 200

            async def refused_in_b(key: str) -> float:
                """Seconds until B refuses ``key`` (polled); meanwhile the owner's key keeps working in B."""
                started = time.monotonic()
                while await call(b, "POST", "/v1/events", key, EVENT) != 401:
                    assert time.monotonic() - started < TTL_S + 5, "B still accepts the revoked key"
                    await asyncio.sleep(0.05)
                waited = time.monotonic() - started
                assert await call(b, "POST", "/v1/events", owner_key, EVENT) == 202
                return waited

            assert await call(a, "DELETE", f"/v1/keys/{deputy['id']}", owner_key) == 200
            assert await call(a, "GET", "/v1/keys", deputy["api_key"]) == 401  # at once where it was revoked
            assert await refused_in_b(deputy["api_key"]) <= TTL_S + 1.0

            done = await asyncio.to_thread(cli, "keys", "revoke", str(producer["id"]), "--db", pg_url)
            assert done.returncode == 0, done.stderr
            assert await refused_in_b(producer["api_key"]) <= TTL_S + 1.0
            assert await call(a, "POST", "/v1/events", producer["api_key"], EVENT) == 401
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            await server.wait()
