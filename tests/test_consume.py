"""Broker ingest (``actionhooks consume rabbitmq|kafka|nats``) against real brokers.

Each test runs for the three brokers (RabbitMQ and NATS of the machine, the session's Tansu for Kafka). The
functional tests run the consumer in this process (``consume.base.run``) and stop it as SIGTERM would; the crash
tests run ``actionhooks consume …`` as a real process, ``kill -9`` it after 30 000 of 100 000 events and start it
again. "Acknowledged" is checked at the broker once the consumer stopped: RabbitMQ has no message left in the queue
(unacknowledged ones would have been returned), Kafka's committed offsets are the ends of what was produced,
JetStream's durable consumer has nothing pending or waiting for an ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import nats
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from actionhooks.api.auth import hash_key, new_api_key
from actionhooks.config import IngestLimits, Settings
from actionhooks.consume.base import Ingester, Stats, run
from actionhooks.devtools import procs
from actionhooks.errors import ConfigError
from actionhooks.integrations.kafka.consumer import ConsumerSettings as KafkaSettings
from actionhooks.integrations.kafka.consumer import KafkaSource
from actionhooks.integrations.nats.consumer import ConsumerSettings as NatsSettings
from actionhooks.integrations.nats.consumer import NatsSource
from actionhooks.integrations.rabbitmq.consumer import ConsumerSettings as RabbitMQSettings
from actionhooks.integrations.rabbitmq.consumer import RabbitMQSource
from actionhooks.integrations.source import Source
from actionhooks.service import build
from actionhooks.store import Store
from tests import brokers
from tests.brokers import unique

from .support import Service, eventually, service_settings

rabbitmq, tansu, nats_server = brokers.rabbitmq, brokers.tansu, brokers.nats_server  # fixtures

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # engine-independent behaviour
TOTAL = 100_000
KILL_AT = 30_000


def event(event_id: str | None, account: int, n: int = 0, **changes: Any) -> bytes:
    body: dict[str, Any] = {"id": event_id} if event_id is not None else {}
    body |= {
        "event_type": "deliv",
        "event_date": "2024-05-01T10:00:00.123456789Z",
        "account_id": account,
        "is_test": False,
        "list_id": 12,
        "profile_id": f"p{n % 7}",
        "event_data": {"message_id": 5, "segment_id": 0, "campaign_id": n},
    }
    body |= changes
    return json.dumps(body, separators=(",", ":")).encode()


def array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


Letters = list[tuple[bytes, dict[str, str]]]


class BrokerHarness:
    """A fresh queue/topic/subject (and its dead-letter destination) on one broker, and the test's view of it."""

    name: str  # part of the consumer's source name

    def __init__(self, address: Any) -> None:
        self.address = address
        self.letters: Letters = []

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def source(self, dead_letters: bool = True) -> Source:
        raise NotImplementedError

    def command(self) -> list[str]:
        """``actionhooks consume`` arguments for this broker (account and store are added by the test)."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """The same consumer as an entry of ``serve``'s consumers file (the account is added by the test)."""
        raise NotImplementedError

    async def publish(self, bodies: list[bytes], content_type: str | None = "application/json") -> None: ...
    async def settled(self) -> bool:
        """Everything published was acknowledged (checked once the consumer stopped)."""
        raise NotImplementedError

    async def _more_letters(self) -> None: ...
    async def dead_letters(self, at_least: int = 0) -> Letters:
        """Every dead letter so far ([] while fewer than ``at_least``, so ``eventually`` can wait for them)."""
        await self._more_letters()
        return list(self.letters) if len(self.letters) >= at_least else []


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


class RabbitHarness(BrokerHarness):
    URL = "amqp://guest:guest@127.0.0.1:5672/"

    async def start(self) -> None:
        self.queue, self.dlq = unique("ah-consume"), unique("ah-dead")
        self.name = f"queue {self.queue!r}"
        self.connection = await aio_pika.connect(self.URL)
        self.channel = await self.connection.channel(publisher_confirms=True)
        for name in (self.queue, self.dlq):
            await self.channel.declare_queue(name, durable=True)

    async def close(self) -> None:
        for name in (self.queue, self.dlq):
            await self.channel.queue_delete(name)
        await self.connection.close()

    def source(self, dead_letters: bool = True) -> Source:
        dlq = self.dlq if dead_letters else None
        return RabbitMQSource(RabbitMQSettings(queue=self.queue, prefetch=100, dead_letter_queue=dlq))

    def command(self) -> list[str]:
        return ["rabbitmq", "--queue", self.queue, "--prefetch", "20", "--dead-letter-queue", self.dlq]

    def spec(self) -> dict[str, Any]:
        return {"broker": "rabbitmq", "queue": self.queue, "prefetch": 20, "dead_letter_queue": self.dlq}

    async def publish(self, bodies: list[bytes], content_type: str | None = "application/json") -> None:
        exchange = self.channel.default_exchange
        messages = [aio_pika.Message(b, content_type=content_type) for b in bodies]
        await asyncio.gather(*(exchange.publish(m, routing_key=self.queue) for m in messages))

    async def settled(self) -> bool:
        queue = await self.channel.declare_queue(self.queue, passive=True)
        return queue.declaration_result.message_count == 0

    async def _more_letters(self) -> None:
        queue = await self.channel.declare_queue(self.dlq, passive=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            headers = {k: _text(v) for k, v in (message.headers or {}).items()}
            self.letters.append((message.body, headers))


class KafkaHarness(BrokerHarness):
    async def start(self) -> None:
        self.topic, self.dlt, self.group = unique("ah-in"), unique("ah-dead"), unique("ah-group")
        self.name = f"topic {self.topic!r}"
        admin = AdminClient({"bootstrap.servers": self.address})
        for future in admin.create_topics([NewTopic(self.topic, 3, 1), NewTopic(self.dlt, 1, 1)]).values():
            await asyncio.to_thread(future.result, 20)
        self.producer = Producer({"bootstrap.servers": self.address, "linger.ms": 5})
        self.ends: dict[int, int] = {}
        self.reader = Consumer({"bootstrap.servers": self.address, "group.id": unique("ah-read")})
        self.reader.assign([TopicPartition(self.dlt, 0, OFFSET_BEGINNING)])

    async def close(self) -> None:
        await asyncio.to_thread(self.reader.close)

    def _config(self) -> tuple[tuple[str, str], ...]:
        return (("session.timeout.ms", "3000"), ("heartbeat.interval.ms", "500"))

    def source(self, dead_letters: bool = True) -> Source:
        dlt = self.dlt if dead_letters else None
        return KafkaSource(
            KafkaSettings(
                bootstrap_servers=self.address,
                topic=self.topic,
                group=self.group,
                batch=100,
                dead_letter_topic=dlt,
                config=self._config(),
            )
        )

    def command(self) -> list[str]:
        args = ["kafka", "--bootstrap-servers", self.address, "--topic", self.topic, "--group", self.group]
        args += ["--batch", "20"]
        for key, value in self._config():
            args += ["--config", f"{key}={value}"]
        return [*args, "--dead-letter-topic", self.dlt]

    def spec(self) -> dict[str, Any]:
        return {
            "broker": "kafka",
            "bootstrap_servers": self.address,
            "topic": self.topic,
            "group": self.group,
            "batch": 20,
            "dead_letter_topic": self.dlt,
            "config": dict(self._config()),
        }

    async def publish(self, bodies: list[bytes], content_type: str | None = "application/json") -> None:
        def report(error: Any, record: Any) -> None:
            assert error is None, error
            self.ends[record.partition()] = max(self.ends.get(record.partition(), 0), record.offset() + 1)

        headers = [("content-type", content_type.encode())] if content_type else []
        for n, body in enumerate(bodies):
            self.producer.produce(self.topic, body, key=str(n).encode(), headers=headers, on_delivery=report)
        assert await asyncio.to_thread(self.producer.flush, 30) == 0

    async def settled(self) -> bool:
        reader = Consumer({"bootstrap.servers": self.address, "group.id": self.group})
        try:
            wanted = [TopicPartition(self.topic, p) for p in self.ends]
            committed = await asyncio.to_thread(reader.committed, wanted, 10)
        finally:
            await asyncio.to_thread(reader.close)
        return {tp.partition: tp.offset for tp in committed} == self.ends

    async def _more_letters(self) -> None:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            records = await asyncio.to_thread(self.reader.consume, 100, 0.2)
            for r in records:
                assert r.error() is None, r.error()
                self.letters.append((r.value(), {k: _text(v) for k, v in r.headers() or ()}))
            if not records and self.letters:
                return


class NatsHarness(BrokerHarness):
    async def start(self) -> None:
        prefix = unique("ah")
        self.stream, self.dead_stream, self.durable = unique("AH-IN"), unique("AH-DEAD"), unique("ah-durable")
        self.subject, self.dead_subject = f"{prefix}.in", f"{prefix}.dead"
        self.name = f"stream {self.stream!r}"
        self.nc = await nats.connect(self.address)
        self.js = self.nc.jetstream()
        await self.js.add_stream(name=self.stream, subjects=[self.subject])
        await self.js.add_stream(name=self.dead_stream, subjects=[self.dead_subject])
        self.read = 0

    async def close(self) -> None:
        for stream in (self.stream, self.dead_stream):
            await self.js.delete_stream(stream)
        await self.nc.close()

    def source(self, dead_letters: bool = True) -> Source:
        dead = self.dead_subject if dead_letters else None
        s = NatsSettings(
            servers=self.address,
            subject=self.subject,
            stream=self.stream,
            durable=self.durable,
            batch=50,
            ack_wait_s=5.0,
            dead_letter_subject=dead,
        )
        return NatsSource(s)

    def command(self) -> list[str]:
        args = ["nats", "--servers", self.address, "--subject", self.subject, "--stream", self.stream]
        args += ["--durable", self.durable, "--batch", "20", "--ack-wait", "3"]
        return [*args, "--dead-letter-subject", self.dead_subject]

    def spec(self) -> dict[str, Any]:
        return {
            "broker": "nats",
            "servers": self.address,
            "subject": self.subject,
            "stream": self.stream,
            "durable": self.durable,
            "batch": 20,
            "ack_wait_s": 3.0,
            "dead_letter_subject": self.dead_subject,
        }

    async def publish(self, bodies: list[bytes], content_type: str | None = "application/json") -> None:
        headers = {"Content-Type": content_type} if content_type else None
        for start in range(0, len(bodies), 50):
            chunk = bodies[start : start + 50]
            await asyncio.gather(*(self.js.publish(self.subject, b, headers=headers) for b in chunk))

    async def settled(self) -> bool:
        info = await self.js.consumer_info(self.stream, self.durable)
        return bool(info.num_ack_pending == 0 and info.num_pending == 0)

    async def _more_letters(self) -> None:
        state = (await self.js.stream_info(self.dead_stream)).state
        for seq in range(self.read + 1, state.last_seq + 1):
            message = await self.js.get_msg(self.dead_stream, seq)
            self.letters.append((message.data, dict(message.headers or {})))
            self.read = seq


HARNESSES: dict[str, tuple[str, type[BrokerHarness]]] = {
    "rabbitmq": ("rabbitmq", RabbitHarness),
    "kafka": ("tansu", KafkaHarness),
    "nats": ("nats_server", NatsHarness),
}


@pytest.fixture(params=list(HARNESSES))
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerHarness]:
    fixture, kind = HARNESSES[request.param]
    harness = kind(request.getfixturevalue(fixture))
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture
async def account(store: Store) -> int:
    return await store.create_account("consume", hash_key(new_api_key()))


@contextlib.asynccontextmanager
async def consuming(source: Source, store: Store, account_id: int) -> AsyncIterator[Stats]:
    """The consumer running in this process, and its counters (updated after each acknowledged batch); on exit
    it is stopped as by SIGTERM (the batch in hand finished) and closed."""
    await source.open()
    stop, stats = asyncio.Event(), Stats()
    task = asyncio.create_task(run(source, Ingester(store, account_id, IngestLimits()), stop, stats))
    try:
        yield stats
    finally:
        stop.set()
        try:
            async with asyncio.timeout(30):
                await task
        finally:
            await source.close()


async def all_events(store: Store, account_id: int) -> list[Any]:
    out: list[Any] = []
    after = 0
    while True:
        page = await store.read_events(account_id, ["deliv", "uopen"], None, after, 20_000, window=200_000)
        out.extend(page.events)
        after = page.scanned_to
        if page.caught_up:
            return out


async def test_valid_events_are_stored_as_sent_and_acknowledged(
    broker: BrokerHarness, store: Store, account: int
) -> None:
    single = event("one", account)
    batch = [event(f"arr-{i}", account, i) for i in range(50)]
    lines = [event(f"nd-{i}", account, i) for i in range(20)]
    sniffed = [event(f"sn-{i}", account, i) for i in range(5)]
    no_id = event(None, account, 99)
    await broker.publish([single, array(batch), no_id])
    await broker.publish([b"\n".join(lines) + b"\n"], content_type="application/x-ndjson")
    await broker.publish([b"\n".join(sniffed)], content_type=None)  # NDJSON told by its shape
    await broker.publish([array(batch[:10])])  # the same ids again: stored once
    sent = {single, *batch, *lines, *sniffed}
    async with consuming(broker.source(), store, account) as stats:
        await eventually(lambda: stats.messages == 6, timeout=30)
    assert (stats.stored, stats.duplicates, stats.rejected) == (len(sent) + 1, 10, 0)
    assert await broker.settled()
    stored = await all_events(store, account)
    assert len(stored) == len(sent) + 1 == len({e.id for e in stored})
    assert {e.body for e in stored if e.body in sent} == set(sent)  # byte for byte
    (generated,) = [e for e in stored if e.body not in sent]
    assert generated.body == b'{"id":"' + generated.id.encode() + b'",' + no_id[1:]
    assert await broker.dead_letters() == []


@SQLITE_ONLY
async def test_invalid_messages_are_dead_lettered_with_their_errors_once(
    broker: BrokerHarness, store: Store, account: int
) -> None:
    bodies = [
        b"not json at all",
        b'[{"event_type": "deliv"',
        event("x1", account, event_type="no_such_type"),
        event("x2", account, account_id=account + 1),
        b"[]",
    ]
    await broker.publish(bodies)
    async with consuming(broker.source(), store, account) as stats:
        await eventually(lambda: stats.messages == len(bodies), timeout=30)
    assert (stats.stored, stats.rejected) == (0, len(bodies))
    assert await broker.settled()  # acknowledged: never delivered again
    letters = await broker.dead_letters()
    assert len(letters) == len(bodies)
    assert await store.count_events(account) == 0
    by_body = {body: headers for body, headers in letters}
    assert set(by_body) == set(bodies)  # the original bodies, unchanged
    for body in bodies:
        headers = by_body[body]
        assert headers["actionhooks-error-count"] == "1" and headers["actionhooks-stored-items"] == "0"
        assert broker.name in headers["actionhooks-source"]
    errors = {body: json.loads(by_body[body]["actionhooks-errors"])[0] for body in bodies}
    assert errors[bodies[0]]["index"] == 0 and "malformed" in errors[bodies[0]]["error"]
    assert "not valid JSON" in errors[bodies[1]]["error"] and "index" not in errors[bodies[1]]
    assert errors[bodies[2]] == {
        "error": "unknown event_type 'no_such_type'",
        "index": 0,
        "field": "event_type",
    }
    assert errors[bodies[3]]["field"] == "account_id"
    assert errors[bodies[4]] == {"error": "no events in the message"}


@SQLITE_ONLY
async def test_without_a_dead_letter_destination_invalid_messages_are_logged_and_acknowledged(
    broker: BrokerHarness, store: Store, account: int, caplog: pytest.LogCaptureFixture
) -> None:
    secret_looking = b'{"event_type": "deliv", "password": "hunter2"'
    await broker.publish([secret_looking, event("ok", account)])
    with caplog.at_level(logging.WARNING, logger="actionhooks.consume"):
        async with consuming(broker.source(dead_letters=False), store, account) as stats:
            await eventually(lambda: stats.messages == 2, timeout=30)
    assert (stats.stored, stats.rejected) == (1, 1) and await store.count_events(account) == 1
    assert "dropped the invalid part" in caplog.text
    assert await broker.settled()
    assert "hunter2" not in caplog.text  # bodies are not logged
    assert await broker.dead_letters() == []


@SQLITE_ONLY
async def test_a_mixed_message_stores_its_valid_items_and_dead_letters_the_rest(
    broker: BrokerHarness, store: Store, account: int
) -> None:
    good = [event(f"g{i}", account, i) for i in range(3)]
    bad = [event("b1", account, event_type="nope"), event("b2", account, list_id="twelve")]
    items = [good[0], bad[0], good[1], bad[1], good[2]]
    await broker.publish([b"\n".join(items)], content_type="application/x-ndjson")
    async with consuming(broker.source(), store, account) as stats:
        await eventually(lambda: stats.messages == 1, timeout=30)
    assert await broker.settled()
    ((body, headers),) = await broker.dead_letters()
    assert body == array(bad)  # the failed items, as sent, in message order
    assert headers["actionhooks-stored-items"] == "3" and headers["actionhooks-error-count"] == "2"
    errors = json.loads(headers["actionhooks-errors"])
    assert [(e["index"], e["field"]) for e in errors] == [(1, "event_type"), (3, "list_id")]
    assert {e.body for e in await all_events(store, account)} == set(good)


# -- the same consumers run by ``actionhooks serve`` from its consumers file ---------------------------------------


async def test_serve_runs_the_consumers_of_its_consumers_file(
    broker: BrokerHarness, store: Store, db_url: str, account: int, tmp_path: Path
) -> None:
    """Events published to the broker are stored by the service's own consumer and acknowledged; an invalid
    message is dead-lettered; stopping the service stops the consumer with nothing left unacknowledged."""
    consumers = tmp_path / "consumers.json"
    consumers.write_text(json.dumps([broker.spec() | {"account_id": account}]))
    service = Service(store, service_settings(db_url, consume_file=str(consumers)))
    sent = [event(f"in-serve-{i}", account, i) for i in range(40)]
    await service.start()
    try:
        await broker.publish([array(sent[:25]), *sent[25:], b"{not json"])

        async def stored() -> bool:
            return len(await all_events(store, account)) == len(sent)

        await eventually(stored, timeout=30)
        (letter,) = await eventually(lambda: broker.dead_letters(1), timeout=30)
        assert letter[0] == b"{not json"
        status, _, _ = await service.call("GET", "/healthz", None)
        assert status == 200  # the API serves meanwhile
    finally:
        await service.stop()
    assert {e.body for e in await all_events(store, account)} == set(sent)
    assert await broker.settled()


@SQLITE_ONLY
async def test_a_failing_consumer_is_opened_again_and_the_api_keeps_serving(
    store: Store, db_url: str, account: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    consumers = tmp_path / "consumers.json"
    unreachable = {"broker": "rabbitmq", "account_id": account, "queue": "q", "port": brokers.free_port()}
    consumers.write_text(json.dumps([unreachable | {"password": "hunter2"}]))
    service = Service(store, service_settings(db_url, consume_file=str(consumers)))
    caplog.set_level(logging.INFO, "actionhooks.consume")
    await service.start()
    try:

        def reopened() -> bool:
            return sum("opening it again" in r.getMessage() for r in caplog.records) >= 2

        await eventually(reopened, timeout=10)  # 1 s, then 2 s of back-off
        status, _, _ = await service.call("GET", "/healthz", None)
        assert status == 200
    finally:
        await service.stop()
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "consumers file"),
        ('[{"broker": "mqtt", "account_id": 1}]', "entry 0: broker must be one of rabbitmq, kafka, nats"),
        ('[{"broker": "nats", "account_id": 0}]', "entry 0: account_id must be a positive integer"),
        ('[{"broker": "rabbitmq", "account_id": 1, "queue": "q", "qeue": "x"}]', "unknown field(s) qeue"),
        ('[{"broker": "rabbitmq", "account_id": 1}]', "entry 0: Object missing required field `queue`"),
        (
            '[{"broker": "rabbitmq", "account_id": 1, "queue": "q", "prefetch": 0}]',
            "prefetch must be between",
        ),
        (
            '[{"broker": "kafka", "account_id": 1, "bootstrap_servers": "k:9092", "topic": "t", "group": "g"},'
            ' {"broker": "nats", "account_id": 1, "servers": "x", "subject": "s", "stream": "S", "durable": "d",'
            ' "batch": "many"}]',
            "entry 1: Expected `int`, got `str` - at `$.batch`",
        ),
    ],
)
def test_a_bad_consumers_file_is_refused_at_start_naming_the_entry(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "consumers.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        build(Settings(db=f"sqlite:///{tmp_path / 'x.db'}", consume_file=str(path)))
    assert message in str(info.value), str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_100k_events_with_a_kill_9_midway_are_stored_exactly_once(
    broker: BrokerHarness, store: Store, db_url: str, account: int
) -> None:
    rng = random.Random(7)
    ids = [f"crash-{i:06d}" for i in range(TOTAL)]
    bodies, start = [], 0
    while start < TOTAL:
        size = rng.randint(100, 500)
        bodies.append(array([event(i, account, n) for n, i in enumerate(ids[start : start + size], start)]))
        start += size
    await broker.publish(bodies)
    command = [str(procs.BIN / "actionhooks"), "consume", *broker.command(), "--account-id", str(account)]
    command += ["--db", db_url, "--log-level", "info"]
    with tempfile.TemporaryDirectory() as tmp:
        logs = [Path(tmp) / "first.log", Path(tmp) / "second.log"]
        first = await _start(command, logs[0])
        try:
            await eventually(lambda: _count_at_least(store, account, KILL_AT), timeout=90, interval=0.01)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            await first.wait()
        at_kill = await store.count_events(account)
        assert at_kill < TOTAL, "the consumer finished before the kill: the crash tested nothing"
        second = await _start(command, logs[1])
        try:
            await eventually(lambda: _count_at_least(store, account, TOTAL), timeout=120, interval=0.1)
            # Messages the killed run had fetched but not acknowledged come back once their ack wait is over
            # (NATS: 3 s here), maybe after every event is stored: let the second run take them before it stops.
            await eventually(broker.settled, timeout=60, interval=0.5)
        finally:
            second.send_signal(signal.SIGTERM)
            code = await second.wait()
        tail = logs[1].read_text()[-2000:]
        print(f"\n{broker.name}: killed at {at_kill} events; second run: {tail.splitlines()[-1]}")
        assert code == 0, tail
    assert await broker.settled(), "messages left unacknowledged after a clean stop"
    stored = await all_events(store, account)
    assert await store.count_events(account) == len(stored) == TOTAL
    assert sorted(e.id for e in stored) == ids  # each id exactly once


async def _start(command: list[str], log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(*command, env=procs.env(), stderr=out)


async def _count_at_least(store: Store, account_id: int, count: int) -> bool:
    return await store.count_events(account_id) >= count


# -- settings: the broker's connection settings, shared with its transport; the former names still accepted -------


def test_consumer_settings_take_the_transports_connection_options_and_the_former_names() -> None:
    kafka = KafkaSettings.from_options(
        {"bootstrap_servers": "k:9092", "topic": "t", "group": "g", "security_protocol": "SASL_SSL"}
        | {"sasl_mechanism": "SCRAM-SHA-512", "user": "app", "password": "hunter2", "config": {"a.b": "1"}}
    )
    assert (kafka.sasl_username, kafka.sasl_password, kafka.config) == ("app", "hunter2", (("a.b", "1"),))
    assert kafka.common()["sasl.username"] == "app" and "hunter2" not in repr(kafka)
    nats_ = NatsSettings.from_options(
        {"servers": "tls://n:4222", "subject": "s", "stream": "S", "durable": "d", "ack_wait": 3}
        | {"user": "app", "password": "hunter2"}
    )
    assert nats_.ack_wait_s == 3.0 and nats_.login_options() == {"user": "app", "password": "hunter2"}
    assert "hunter2" not in repr(nats_)
    rabbit = RabbitMQSettings.from_options({"queue": "q", "tls": True})
    assert (rabbit.host, rabbit.user, rabbit.effective_port) == ("127.0.0.1", "guest", 5671)
    with pytest.raises(ConfigError, match="user stands for sasl_username"):
        KafkaSettings.from_options(
            {"bootstrap_servers": "k:9092", "topic": "t", "group": "g"}
            | {"user": "a"}
            | {"sasl_username": "b"}
        )
    with pytest.raises(ConfigError, match="sasl_password is required with SASL_SSL"):
        KafkaSettings.from_options(
            {"bootstrap_servers": "k:9092", "topic": "t", "group": "g", "security_protocol": "SASL_SSL"}
            | {"sasl_mechanism": "PLAIN", "user": "app"}
        )
    with pytest.raises(ConfigError, match="host must be a host name or address"):
        RabbitMQSettings.from_options({"queue": "q", "host": "amqp://mq"})


def test_the_commands_options_are_the_settings_and_bad_ones_are_a_clear_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from actionhooks.cli import app

    base = ["consume", "kafka", "--account-id", "1", "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    base += ["--bootstrap-servers", "k:9092", "--topic", "t", "--group", "g"]
    done = CliRunner().invoke(app, [*base, "--user", "app"])  # the former name of --sasl-username
    assert done.exit_code == 2, done.output
    assert "SASL settings need security_protocol SASL_PLAINTEXT or SASL_SSL" in _unboxed(done.output)
    done = CliRunner().invoke(app, [*base, "--security-protocol", "TLS"])
    assert done.exit_code == 2 and "Invalid enum value 'TLS' - at `$.security_protocol`" in _unboxed(
        done.output
    ), done.output
    done = CliRunner().invoke(app, ["consume", "nats", "--help"])
    assert "--ack-wait-s" in done.output and "--creds" in done.output


def _unboxed(output: str) -> str:
    """The text of typer's boxed error, its lines joined."""
    return " ".join(output.replace("│", " ").split())
