"""Chaos: the service through the outages of what it depends on, each on its own engine — a receiver down then up
(the resumption delay measured), SQLite's filesystem full, PostgreSQL restarted mid-load (a private server this
test starts), and SIGTERM to a real ``actionhooks serve`` with a batch in flight. Each counts the ids acknowledged
with ``202`` against the ids delivered: none lost, duplicates at most K batches per hook (dispatch/worker.py)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from actionhooks.backoff import RetryPolicy
from actionhooks.devtools import procs
from actionhooks.devtools.receiver import Answer, Receiver
from actionhooks.dispatch.worker import sends_ahead
from actionhooks.store import Store, open_store

from .support import Service, User, eventually, service_missing, service_settings

BATCH = 100  # the hook's max_batch_size
PATIENT = RetryPolicy(initial_delay_s=0.05, max_delay_s=0.5, max_age_s=3600)


def events(producer: int, n: int, size: int = 50) -> list[dict[str, object]]:
    """A request's events with producer ids (what the docs ask of producers, so a retry stores nothing twice)."""
    return [
        {
            "id": f"p{producer}-{n}-{i}",
            "event_type": "deliv",
            "event_date": "2024-05-01T10:00:00Z",
            "event_data": {},
        }
        for i in range(size)
    ]


class Load:
    """Producers posting batches of events, sending each again after a 503 until it is acknowledged."""

    def __init__(self, service: Service, user: User) -> None:
        self.service = service
        self.user = user
        self.acked: set[str] = set()
        self.refused = 0
        self.producers = 0

    async def run(self, producers: int, requests: int, pause: float = 0.0) -> None:
        first, self.producers = self.producers, self.producers + producers
        await asyncio.gather(*(self._produce(k, requests, pause) for k in range(first, self.producers)))

    async def _produce(self, k: int, requests: int, pause: float) -> None:
        for n in range(requests):
            while True:
                status, body, headers = await self.service.call("POST", "/v1/events", self.user, events(k, n))
                if status == 202:
                    self.acked.update(body["ids"])
                    break
                assert status == 503 and int(headers["Retry-After"]) >= 1, (status, body)
                self.refused += 1
                await asyncio.sleep(0.05)
            await asyncio.sleep(pause)


async def http_hook(service: Service, user: User, receiver: Receiver) -> dict[str, Any]:
    transport = {"type": "http", "url": receiver.hook_url, "max_batch_size": BATCH, "timeout_s": 0.05}
    body = {"name": "chaos", "event_types": ["deliv"], "transport": transport}
    status, created, _ = await service.call("POST", "/v1/hooks", user, body)
    assert status == 201, created
    hook: dict[str, Any] = created
    return hook


def delivered(receiver: Receiver) -> collections.Counter[str]:
    return collections.Counter(str(e["id"]) for e in receiver.events)


def assert_none_lost(acked: set[str], got: collections.Counter[str], hooks: int = 1) -> int:
    """Every acknowledged id delivered; duplicates within K batches per hook. Returns the duplicates."""
    assert acked <= set(got), f"{len(acked - set(got))} acknowledged events never delivered"
    duplicates = sum(got.values()) - len(got)
    assert duplicates <= sends_ahead(BATCH) * BATCH * hooks, duplicates
    return duplicates


@contextlib.asynccontextmanager
async def running(store: Store, **settings: Any) -> AsyncIterator[Service]:
    service = Service(store, service_settings("", **settings))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = open_store(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# --- a receiver down, then up ---------------------------------------------------------------------------------


async def test_delivery_resumes_within_10_s_of_a_receivers_recovery(tmp_path: Path) -> None:
    """Default retry settings: a receiver refusing connections for 12 s (tries at about 0, 1, 3, 7 s; then every
    10 s at most), then back on the same port."""
    outage = 12.0
    async with (
        opened(f"sqlite:///{tmp_path / 'a.db'}") as store,
        running(store, retry=RetryPolicy()) as service,
    ):
        user = await service.user("u")
        receiver = await Receiver().start()
        port = int(receiver.url.rsplit(":", 1)[1])
        hook = await http_hook(service, user, receiver)
        load = Load(service, user)
        await load.run(2, 2)
        await eventually(lambda: len(receiver.events) >= len(load.acked))
        await receiver.stop()
        down = time.monotonic()
        await load.run(2, 2)  # accepted while the receiver is down
        path = f"/v1/hooks/{hook['id']}"

        async def failing() -> dict[str, Any] | None:
            _, read, _ = await service.call("GET", path, user)
            return read if read["last_error"] else None

        seen = await eventually(failing, timeout=outage)
        assert "connect" in seen["last_error"].lower(), seen["last_error"]
        await asyncio.sleep(outage - (time.monotonic() - down))
        before = receiver.event_count
        receiver = await Receiver().start(port=port)
        up = time.monotonic()
        await receiver.wait_for_events(1, timeout=15)
        resumed = time.monotonic() - up
        await eventually(lambda: len(receiver.events) >= len(load.acked) - before, timeout=10)
        await service.dispatcher.caught_up(hook["id"])
        _, healed, _ = await service.call("GET", path, user)
        await receiver.stop()
    print(f"receiver down {outage:.0f} s: delivery resumed {resumed:.1f} s after it came back")
    assert resumed <= 10.0
    assert healed["last_error"] is None and healed["last_success_at"] is not None


# --- SQLite: the filesystem fills -------------------------------------------------------------------------------


@pytest.fixture
def small_filesystem() -> Iterator[Path]:
    """A 24 MB tmpfs (mounting takes root: skipped without it locally, failed in CI)."""
    where = Path(tempfile.mkdtemp(prefix="actionhooks-full-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        where.rmdir()
        service_missing(f"a tmpfs mount ({done.stderr.decode().strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=False)
        with contextlib.suppress(OSError):
            where.rmdir()


def fill(filler: Path) -> None:
    """Take every free byte of ``filler``'s filesystem with that file (ENOSPC ends it). Unbuffered: a buffered
    file keeps what the full disk refused and raises ENOSPC again when closed."""
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as out:
        chunk = b"\0" * 65536
        while True:
            out.write(chunk)


@contextlib.asynccontextmanager
async def disk_full(where: Path) -> AsyncIterator[Path]:
    """The filesystem ``where`` full for the block, freed when it ends — failing too, so a failure is reported
    at once and the service stops on a disk with room."""
    filler = where / "filler"
    try:
        await asyncio.to_thread(fill, filler)
        yield filler
    finally:
        filler.unlink(missing_ok=True)


def disk_usage(where: Path) -> str:
    """The filesystem's free bytes and its files' sizes (for a failure's message)."""
    files = {f.name: f.stat().st_size for f in where.iterdir()}
    return f"{shutil.disk_usage(where).free} bytes free, files {files}"


async def backlog(service: Service, receiver: Receiver) -> tuple[dict[str, Any], Load, asyncio.Task[None]]:
    """A hook to ``receiver`` and four producers posting 6 000 events in all (the task), once 1 500 are
    acknowledged; the receiver is slower than ingest, so a backlog waits for delivery."""
    user = await service.user("u")
    hook = await http_hook(service, user, receiver)
    load = Load(service, user)
    producing = asyncio.create_task(load.run(4, 30, pause=0.02))
    try:
        await eventually(lambda: len(load.acked) >= 1500, timeout=20)
    except BaseException:
        producing.cancel()
        raise
    return hook, load, producing


@pytest.mark.timeout(240)  # its waits are bounded to fail with a message well before this
async def test_sqlite_disk_full_loses_nothing_and_records_every_attempt(
    small_filesystem: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "actionhooks")
    # each failed try while down, for a failure's message
    caplog.set_level(logging.DEBUG, "actionhooks.store")

    def fail(what: str) -> NoReturn:
        """Fail saying why, with the filesystem's state and the store's last tries."""
        tries = [r.getMessage() for r in caplog.records if r.name == "actionhooks.store"]
        pytest.fail(f"{what}; {disk_usage(small_filesystem)}; the store's log: {tries[-5:]}")

    async with (
        opened(f"sqlite:///{small_filesystem / 'full.db'}") as store,
        running(store, retry=PATIENT) as service,
        Receiver(default=Answer(delay=0.05)) as receiver,  # slower than ingest: a backlog to deliver
    ):
        hook, load, producing = await backlog(service, receiver)
        try:
            async with disk_full(small_filesystem):
                full_at = time.monotonic()
                try:
                    await eventually(lambda: load.refused > 0, timeout=10)  # ingest refuses: 503
                except AssertionError:
                    fail(
                        f"ingest not refused within 10 s of the disk filling ({len(load.acked)} acknowledged)"
                    )
                await asyncio.sleep(2.0)  # deliveries go on; their records cannot be written meanwhile
                if receiver.event_count >= len(load.acked):
                    fail("the backlog was delivered before the disk filled")
            freed = time.monotonic()
            try:
                await asyncio.wait_for(asyncio.shield(producing), 30)
            except TimeoutError:
                try:
                    _, ready, _ = await asyncio.wait_for(service.call("GET", "/readyz", None), 5)
                except TimeoutError:
                    ready = "no answer within 5 s"
                fail(f"ingest still refused 30 s after the disk was freed; /readyz: {ready}")
            await eventually(lambda: load.acked <= set(delivered(receiver)), timeout=20)
            try:
                await service.dispatcher.caught_up(hook["id"], timeout=30)
            except TimeoutError:
                fail("the hook's records not all written 30 s after ingest recovered")
        finally:
            producing.cancel()
        got = delivered(receiver)
        _, answer, _ = await service.call("GET", f"/v1/hooks/{hook['id']}/attempts?limit=1000", load.user)
        recorded = sum(a["events"] for a in answer["attempts"] if a["outcome"] == "delivered")
    duplicates = assert_none_lost(load.acked, got)
    assert recorded == sum(got.values())  # every delivered batch has its attempt row: no record lost
    worker_lines = [r.getMessage() for r in caplog.records if r.name == "actionhooks.dispatch.worker"]
    assert any("writing delivery state failed" in line for line in worker_lines), worker_lines
    assert any("delivery state written after" in line for line in worker_lines), worker_lines
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks"
    print(
        f"disk full {freed - full_at:.1f} s: {load.refused} answers 503, {duplicates} duplicates,"
        f" {len(load.acked)} acknowledged = delivered"
    )


async def test_a_service_stopped_on_a_full_disk_ends_within_its_grace_and_loses_nothing(
    small_filesystem: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopped while its records cannot be written, the service gives them up when its shutdown grace ends
    instead of trying them forever; the next start sends their batches again."""
    caplog.set_level(logging.INFO, "actionhooks")
    url = f"sqlite:///{small_filesystem / 'full.db'}"
    async with Receiver(default=Answer(delay=0.05)) as receiver:  # slower than ingest: a backlog to deliver
        async with contextlib.AsyncExitStack() as full:
            async with opened(url) as store, running(store, retry=PATIENT, shutdown_timeout_s=1.0) as service:
                hook, load, producing = await backlog(service, receiver)
                try:
                    # appends go on into the full disk (refused): the log's file cannot grow for the records either
                    await full.enter_async_context(disk_full(small_filesystem))
                    await eventually(lambda: "writing delivery state failed" in caplog.text, timeout=10)
                finally:
                    producing.cancel()
                stopping = time.monotonic()
            stopped_in = time.monotonic() - stopping
        # started again (a new process's store) on a disk with room
        async with opened(url) as store, running(store, retry=PATIENT) as service:
            await service.dispatcher.caught_up(hook["id"], timeout=30)
    assert stopped_in < 10.0, f"stopping took {stopped_in:.1f} s with a grace of 1 s"
    assert "cut off with delivery state unwritten" in caplog.text
    duplicates = assert_none_lost(load.acked, delivered(receiver))
    print(
        f"stopped on a full disk in {stopped_in:.1f} s (grace 1 s); after a restart {duplicates} duplicates"
    )


# --- PostgreSQL restarted mid-load ------------------------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL server of this test's own, in a temporary directory, run as the ``postgres`` OS user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="actionhooks-pg-"))
        self.data = self.root / "data"
        self.port = procs.free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str) -> None:
        prefix = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists() or (os.geteuid() == 0 and shutil.which("runuser") is None):
        service_missing(f"PostgreSQL's server binaries in {PG_BIN}")
    server = PrivatePostgres()
    try:
        server.init()
    except subprocess.CalledProcessError as exc:
        server.remove()
        service_missing(f"a private PostgreSQL (it could not start: {exc.stderr!r})")
    try:
        yield server
    finally:
        server.remove()


async def test_postgres_restarted_mid_load_loses_nothing(
    private_postgres: PrivatePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "actionhooks")
    async with (
        opened(private_postgres.url) as store,
        running(store, retry=PATIENT) as service,
        Receiver() as receiver,
    ):
        user = await service.user("u")
        hook = await http_hook(service, user, receiver)
        load = Load(service, user)
        producing = asyncio.create_task(load.run(4, 30, pause=0.02))
        await eventually(lambda: len(load.acked) >= 1500, timeout=20)
        stopped = time.monotonic()
        await asyncio.to_thread(private_postgres.stop)
        status, body, headers = await service.call("GET", "/readyz", None)
        assert status == 503 and body["status"] == "not_ready" and "Retry-After" in headers
        await asyncio.sleep(1.0)
        await asyncio.to_thread(private_postgres.start)
        started = time.monotonic()

        async def ready() -> bool:
            return (await service.call("GET", "/readyz", None))[0] == 200

        await eventually(ready, timeout=5)
        ready_after = time.monotonic() - started
        await producing
        await eventually(lambda: load.acked <= set(delivered(receiver)), timeout=30)
        await service.dispatcher.caught_up(hook["id"])
        got = delivered(receiver)
        _, answer, _ = await service.call("GET", f"/v1/hooks/{hook['id']}/attempts?limit=1000", load.user)
        recorded = sum(a["events"] for a in answer["attempts"] if a["outcome"] == "delivered")
    duplicates = assert_none_lost(load.acked, got)
    assert recorded == sum(got.values())
    store_lines = [r.getMessage() for r in caplog.records if r.name == "actionhooks.store"]
    assert 2 <= len(store_lines) <= 6, store_lines  # a line down, a line back — not one per request
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks"
    print(
        f"PostgreSQL down {started - stopped:.1f} s: ready {ready_after:.2f} s after its start,"
        f" {load.refused} answers 503, {duplicates} duplicates, {len(load.acked)} acknowledged = delivered"
    )


# --- PostgreSQL not up when the service starts -----------------------------------------------------------------


async def serve_process(
    db: str, port: int, errors: Path, shutdown_timeout_s: float = 5
) -> asyncio.subprocess.Process:
    """``actionhooks serve`` on ``db`` and ``port``, its standard error into the file ``errors``."""
    with await asyncio.to_thread(errors.open, "wb") as out:
        return await asyncio.create_subprocess_exec(
            str(procs.BIN / "actionhooks"),
            *("serve", "--db", db, "--port", str(port), "--log-level", "warning"),
            *("--shutdown-timeout", str(shutdown_timeout_s)),
            env=procs.env(),
            stderr=out,
        )


async def ended(proc: asyncio.subprocess.Process, timeout: float) -> int:
    """SIGTERM to ``proc``, and its exit code within ``timeout`` seconds (killed past it: the test fails)."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_service_started_before_its_database_waits_and_serves_once_it_answers(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    await asyncio.to_thread(private_postgres.stop)
    port, errors = procs.free_port(), tmp_path / "stderr"
    proc = await serve_process(private_postgres.url, port, errors)
    try:
        await eventually(lambda: "starting: waiting for the store" in errors.read_text(), timeout=20)
        await asyncio.sleep(1.0)
        assert proc.returncode is None, errors.read_text()  # waiting, not ended
        await asyncio.to_thread(private_postgres.start)
        started = time.monotonic()
        await asyncio.to_thread(procs.wait_port, port, 15)
        serving_after = time.monotonic() - started
        _, key = await asyncio.to_thread(procs.create_account, private_postgres.url)
        async with running_client(port, key) as call:
            assert (await call("GET", "/readyz", None))[0] == 200
            status, answer = await call("POST", "/v1/events", events(0, 0, 10))
            assert status == 202, answer
    finally:
        code = await ended(proc, 10)
    said = errors.read_text()
    assert code in (0, -signal.SIGTERM), said
    assert "starting: the store answers after" in said and "Traceback" not in said, said
    print(f"started before its database: serving {serving_after:.1f} s after the database started")


async def test_a_service_waiting_for_its_database_ends_at_sigterm(tmp_path: Path) -> None:
    nobody = f"postgresql://postgres@127.0.0.1:{procs.free_port()}/postgres"  # nothing listens there
    errors = tmp_path / "stderr"
    proc = await serve_process(nobody, procs.free_port(), errors)
    try:
        await eventually(lambda: "starting: waiting for the store" in errors.read_text(), timeout=20)
    finally:
        code = await ended(proc, 10)  # waiting for the database does not keep it from ending
    said = errors.read_text()
    assert code in (0, -signal.SIGTERM), said
    assert "Traceback" not in said, said


# --- SIGTERM: a real process ends gracefully --------------------------------------------------------------------


async def test_sigterm_finishes_the_batch_in_flight_and_records_it(tmp_path: Path) -> None:
    """A receiver slow to answer (1.5 s): SIGTERM arrives while a batch is in flight. The process stops taking
    requests, waits for the answer, records the attempt and the cursor, and exits well within its timeout."""
    db = f"sqlite:///{tmp_path / 'term.db'}"
    _, key = await asyncio.to_thread(procs.create_account, db)
    port = procs.free_port()
    async with Receiver(default=Answer(delay=1.5)) as receiver:
        proc = await serve_process(db, port, tmp_path / "stderr", shutdown_timeout_s=10)
        try:
            await asyncio.to_thread(procs.wait_port, port)
            async with running_client(port, key) as call:
                transport = {
                    "type": "http",
                    "url": receiver.hook_url,
                    "max_batch_size": BATCH,
                    "timeout_s": 0,
                }
                status, hook = await call(
                    "POST", "/v1/hooks", {"name": "h", "event_types": ["deliv"], "transport": transport}
                )
                assert status == 201, hook
                status, answer = await call("POST", "/v1/events", events(0, 0, 10))
                assert status == 202
                acked = set(answer["ids"])
                await receiver.wait_for_requests(1, timeout=10)
                proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                await asyncio.sleep(0.2)
                with pytest.raises(OSError):  # no longer taking connections
                    await call("GET", "/healthz", None)
            code = await asyncio.wait_for(proc.wait(), timeout=15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    took = time.monotonic() - signalled
    assert code in (0, -signal.SIGTERM), code
    assert set(str(e["id"]) for e in receiver.events) == acked  # the batch in flight was answered …
    async with opened(db) as store:  # … and recorded: nothing will be sent again
        attempts = await store.list_attempts(hook["id"])
        assert [(a.outcome, a.events) for a in attempts] == [("delivered", 10)]
        stored = await store.load_hook(hook["id"])
        assert stored is not None and stored.cursor >= await store.head()
    assert 1.0 <= took < 10, took
    print(f"SIGTERM with a batch in flight: exited after {took:.1f} s, the batch recorded")


@contextlib.asynccontextmanager
async def running_client(port: int, key: str) -> AsyncIterator[Any]:
    import aiohttp

    async with aiohttp.ClientSession(
        f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
    ) as http:

        async def call(method: str, path: str, body: Any) -> tuple[int, Any]:
            async with http.request(method, path, json=body) as r:
                return r.status, await r.json()

        yield call
