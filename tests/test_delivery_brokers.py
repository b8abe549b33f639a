"""The whole pipeline to real brokers: POST /v1/events → log → dispatcher → broker transport → a consumer the project
did not write (aio-pika, confluent-kafka, nats-py) reads what arrived.

Each delivery test creates, for the same event types, a broker hook and an HTTP hook whose receiver is the
reference: the broker must hold exactly the messages the receiver got, byte for byte, with the documented routing
keys, record keys or subjects, and per-profile order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import msgspec
import nats
import pytest

from actionhooks.backoff import RetryPolicy
from actionhooks.devtools.receiver import Receiver
from actionhooks.store import Store

from . import brokers
from .brokers import drain_queue, free_port, read_topic, run_nats, unique
from .support import Service, User, eventually, service_settings

# fixtures of tests.brokers, visible to this module's tests
rabbitmq, tansu, nats_server, nats_auth_server, nats_workdir = (
    brokers.rabbitmq,
    brokers.tansu,
    brokers.nats_server,
    brokers.nats_auth_server,
    brokers.nats_workdir,
)
rabbitmq_node = brokers.rabbitmq_node
tansu_auth, s3_server = brokers.tansu_auth, brokers.s3_server

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
EVENT_TYPES = ["deliv", "uopen", "campaign_launch"]
PROFILES = [f"{i:024x}" for i in range(1, 6)]


def sample_events(count: int, start: int = 0) -> list[dict[str, Any]]:
    """Profile events spread over five profiles and two databases, and every seventh one a campaign launch without
    a database or a profile (routing key ``0.<type>``, no Kafka key). Non-ASCII text and nanoseconds check bytes."""
    events: list[dict[str, Any]] = []
    for n in range(start, start + count):
        if n % 7 == 6:
            events.append(
                {
                    "event_type": "campaign_launch",
                    "event_date": f"2024-06-10T06:13:20.{n:09d}Z",
                    "event_data": {"campaign_id": n, "launch_id": f"launch{n}", "campaign_name": "Весна №1"},
                }
            )
            continue
        events.append(
            {
                "event_type": "deliv" if n % 2 else "uopen",
                "event_date": f"2024-06-10T06:13:20.{n:09d}Z",
                "profile_id": PROFILES[n % len(PROFILES)],
                "list_id": 12 if n % 3 else 13,
                "event_data": {"message_id": 5, "segment_id": 0, "campaign_id": n},
                "custom_data": {"name": "Татьяна", "note": 'a"b\\c'},
            }
        )
    return events


async def post_events(
    service: Service, user: User, events: list[dict[str, Any]], per_request: int
) -> list[str]:
    """Post ``events`` in order, ``per_request`` at a time; the ids the service acknowledged, in log order."""
    ids: list[str] = []
    for i in range(0, len(events), per_request):
        status, answer, _ = await service.call("POST", "/v1/events", user, events[i : i + per_request])
        assert status == 202, answer
        assert answer["errors"] == []
        ids.extend(answer["ids"])
    return ids


async def make_hook(service: Service, user: User, transport: dict[str, Any], name: str = "hook") -> int:
    body = {"name": name, "event_types": EVENT_TYPES, "transport": transport}
    status, created, _ = await service.call("POST", "/v1/hooks", user, body)
    assert status == 201, created
    hook_id: int = created["id"]
    return hook_id


class Delivered(msgspec.Struct):
    """What the reference HTTP receiver got: each event's raw JSON bytes, in arrival order."""

    raw: list[bytes]
    ids: list[str]
    profiles: list[str | None]
    list_ids: list[int | None]
    types: list[str]


class _Fields(msgspec.Struct):
    id: str
    event_type: str
    profile_id: str | None = None
    list_id: int | None = None


def http_delivered(receiver: Receiver) -> Delivered:
    raw = [
        bytes(r) for req in receiver.requests for r in msgspec.json.decode(req.body, type=list[msgspec.Raw])
    ]
    fields = [msgspec.json.decode(r, type=_Fields) for r in raw]
    return Delivered(
        raw,
        [f.id for f in fields],
        [f.profile_id for f in fields],
        [f.list_id for f in fields],
        [f.event_type for f in fields],
    )


async def send_through_both(
    service: Service, user: User, broker_transport: dict[str, Any], count: int = 70
) -> tuple[list[str], Delivered, int]:
    """An HTTP hook (the reference) and a broker hook for the same types; ``count`` events posted in a few requests
    and delivered in several batches. Returns the acknowledged ids, what the receiver got, the broker hook's id."""
    async with Receiver() as receiver:
        await make_hook(
            service,
            user,
            {"type": "http", "url": receiver.hook_url, "max_batch_size": 16, "timeout_s": 0},
            "ref",
        )
        hook_id = await make_hook(service, user, {"max_batch_size": 16, "timeout_s": 0, **broker_transport})
        ids = await post_events(service, user, sample_events(count), per_request=25)
        await receiver.wait_for_events(count, timeout=15)
        delivered = http_delivered(receiver)
    assert delivered.ids == ids  # the reference got every event once, in log order
    await eventually(lambda: delivered_by_hook(service, user, hook_id, count), timeout=15)
    return ids, delivered, hook_id


async def delivered_by_hook(service: Service, user: User, hook_id: int, count: int) -> bool:
    """Whether the hook's attempts record ``count`` events delivered (the broker confirmed them)."""
    _, body, _ = await service.call("GET", f"/v1/hooks/{hook_id}/attempts?limit=1000", user)
    delivered: int = sum(a["events"] for a in body["attempts"] if a["outcome"] == "delivered")
    return delivered >= count


def routing_key(list_id: int | None, event_type: str) -> str:
    return f"{0 if list_id is None else list_id}.{event_type}"


async def hook_is_clean(service: Service, user: User, hook_id: int) -> None:
    _, hook, _ = await service.call("GET", f"/v1/hooks/{hook_id}", user)
    assert hook["last_error"] is None, hook["last_error"]
    _, letters, _ = await service.call("GET", f"/v1/hooks/{hook_id}/dead-letters", user)
    assert letters["dead_letters"] == []


# -- RabbitMQ --------------------------------------------------------------------------------------------------


@pytest.fixture
async def amqp(rabbitmq: tuple[str, int]) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


def rabbit(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "host": "127.0.0.1", "user": "guest", "password": "guest", **extra}


# batches of 16 one at a time, and one-event batches 8 in flight (sent concurrently, published in log order)
SHAPES = [{}, {"max_batch_size": 1, "max_in_flight": 8}]


@pytest.mark.parametrize("shape", SHAPES, ids=["one at a time", "8 in flight"])
async def test_rabbitmq_queue_holds_what_the_http_hook_got(
    service: Service, owner: User, amqp: aio_pika.abc.AbstractChannel, shape: dict[str, int]
) -> None:
    name = unique("ah-pipe-q")
    queue = await amqp.declare_queue(name, durable=True)  # the consumer's queue; the hook uses it as it is
    try:
        transport = rabbit("rabbitmq_queue", queue=name, **shape)
        ids, http, hook_id = await send_through_both(service, owner, transport)
        got = await drain_queue(queue, len(ids), exact=True)
        assert [m.body for m in got] == http.raw  # one queue: the whole log order
        assert [m.message_id for m in got] == ids
        assert [m.type for m in got] == http.types
        assert {(m.content_type, m.delivery_mode) for m in got} == {
            ("application/json", aio_pika.DeliveryMode.PERSISTENT)
        }
        await hook_is_clean(service, owner, hook_id)
    finally:
        await amqp.queue_delete(name)


async def test_rabbitmq_exchange_routes_by_database_and_type(
    service: Service, owner: User, amqp: aio_pika.abc.AbstractChannel
) -> None:
    exchange_name, queue_name = unique("ah-pipe-x"), unique("ah-pipe-q")
    # The consumer's side exists first: the exchange as the hook declares it, and a queue bound for everything.
    exchange = await amqp.declare_exchange(exchange_name, type="topic", durable=True)
    queue = await amqp.declare_queue(queue_name, exclusive=True)
    await queue.bind(exchange, routing_key="#")
    try:
        ids, http, hook_id = await send_through_both(
            service, owner, rabbit("rabbitmq_exchange", exchange=exchange_name)
        )
        got = await drain_queue(queue, len(ids), exact=True)
        assert [m.body for m in got] == http.raw
        assert [m.message_id for m in got] == ids
        expected_keys = [routing_key(lid, t) for lid, t in zip(http.list_ids, http.types, strict=True)]
        assert [m.routing_key for m in got] == expected_keys
        assert {"12.deliv", "13.uopen", "0.campaign_launch"} <= set(expected_keys)
        await hook_is_clean(service, owner, hook_id)
    finally:
        await amqp.exchange_delete(exchange_name)


# -- Kafka -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=["one at a time", "8 in flight"])
async def test_kafka_records_are_what_the_http_hook_got_keyed_by_profile(
    service: Service, owner: User, tansu: str, shape: dict[str, int]
) -> None:
    topic = unique("ah-pipe")
    ids, http, hook_id = await send_through_both(
        service, owner, {"type": "kafka", "bootstrap_servers": tansu, "topic": topic, **shape}
    )
    records = await asyncio.to_thread(read_topic, tansu, topic, len(ids), linger=0.5)
    assert len(records) == len(ids)
    by_id = dict(zip(http.ids, zip(http.raw, http.profiles, strict=True), strict=True))
    per_key: dict[bytes | None, list[str]] = {}
    partitions: dict[bytes, set[int]] = {}
    for record in records:
        headers = dict(record.headers())
        event_id = headers["event_id"].decode()
        raw, profile = by_id.pop(event_id)
        assert record.value() == raw
        assert record.key() == (None if profile is None else profile.encode())
        assert headers["content-type"] == b"application/json"
        assert headers["event_type"].decode() == msgspec.json.decode(raw)["event_type"]
        per_key.setdefault(record.key(), []).append(event_id)
        if record.key() is not None:
            partitions.setdefault(record.key(), set()).add(record.partition())
    assert by_id == {}  # every event, once
    for profile in PROFILES:  # one partition per profile, and its events in log order
        key = profile.encode()
        assert len(partitions[key]) == 1
        assert per_key[key] == [i for i, p in zip(http.ids, http.profiles, strict=True) if p == profile]
    assert len(per_key[None]) == http.profiles.count(None) > 0
    await hook_is_clean(service, owner, hook_id)


# -- NATS ------------------------------------------------------------------------------------------------------


async def stream_messages(js: Any, stream: str) -> list[Any]:
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return []
    return [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=["one at a time", "8 in flight"])
async def test_nats_stream_holds_what_the_http_hook_got_on_templated_subjects(
    service: Service, owner: User, nats_server: str, shape: dict[str, int]
) -> None:
    nc = await nats.connect(nats_server)
    js = nc.jetstream()
    stream, prefix = unique("AHPIPE"), unique("ahpipe")
    await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
    try:
        subject = prefix + ".{list_id}.{event_type}"
        transport = {"type": "nats", "servers": nats_server, "subject": subject, **shape}
        ids, http, hook_id = await send_through_both(service, owner, transport)

        async def stored() -> list[Any]:
            got = await stream_messages(js, stream)
            return got if len(got) >= len(ids) else []

        got = await eventually(stored, timeout=15)
        assert [m.data for m in got] == http.raw  # one stream: log order
        assert [m.headers["Nats-Msg-Id"] for m in got] == ids
        subjects = [
            f"{prefix}.{routing_key(lid, t)}" for lid, t in zip(http.list_ids, http.types, strict=True)
        ]
        assert [m.subject for m in got] == subjects
        assert f"{prefix}.0.campaign_launch" in subjects
        await hook_is_clean(service, owner, hook_id)
    finally:
        await js.delete_stream(stream)
        await nc.close()


# -- permanent failures: visible on the hook, nothing lost -----------------------------------------------------


async def dead_lettered(service: Service, user: User, hook_id: int, count: int) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]]:
        _, body, _ = await service.call("GET", f"/v1/hooks/{hook_id}/dead-letters?limit=1000", user)
        letters: list[dict[str, Any]] = body["dead_letters"]
        return letters if len(letters) >= count else []

    result: list[dict[str, Any]] = await eventually(listed, timeout=20)
    return result


async def assert_dead_lettered_with_reason(
    service: Service, user: User, hook_id: int, ids: list[str], reason: str, secret: str
) -> None:
    letters = await dead_lettered(service, user, hook_id, len(ids))
    assert sorted(letter["event_id"] for letter in letters) == sorted(ids)  # every acknowledged id, once
    for letter in letters:
        assert reason in letter["reason"] and secret not in letter["reason"]
        assert letter["attempts"] == 1  # permanent: not retried
        assert letter["event"]["id"] == letter["event_id"]
    status, hook, _ = await service.call("GET", f"/v1/hooks/{hook_id}", user)
    assert status == 200
    assert reason in hook["last_error"] and secret not in hook["last_error"]
    assert hook["last_error_at"] is not None
    _, attempts, _ = await service.call("GET", f"/v1/hooks/{hook_id}/attempts?limit=1000", user)
    assert {a["outcome"] for a in attempts["attempts"]} == {"failed"}


def _wrong_password_hook(broker: str, address: Any, secret: str) -> tuple[dict[str, Any], str]:
    """A hook's transport with a wrong password for ``broker`` (at the fixture's ``address``), and the reason the
    hook must show."""
    if broker == "rabbitmq":
        transport = rabbit("rabbitmq_queue", queue=unique("ah-pipe-q"), password=secret)
        return transport, "refused the login of user 'guest'"
    if broker == "nats":
        credentials = {"user": "app", "password": secret}
        transport = {
            "type": "nats",
            "servers": address,
            "subject": "allowed.{event_type}",
            "credentials": credentials,
        }
        return transport, "refused the credentials"
    transport = {
        "type": "kafka",
        "bootstrap_servers": address,
        "topic": unique("ah-pipe"),
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": brokers.TANSU_USER,
        "sasl_password": secret,
    }
    return transport, f"authentication failed for user '{brokers.TANSU_USER}' (SCRAM-SHA-512)"


@pytest.mark.parametrize(
    ("broker", "fixture"), [("rabbitmq", "rabbitmq"), ("nats", "nats_auth_server"), ("kafka", "tansu_auth")]
)
async def test_a_wrong_password_dead_letters_every_event_with_the_reason(
    service: Service, owner: User, broker: str, fixture: str, request: pytest.FixtureRequest
) -> None:
    """Permanent: every acknowledged event is dead-lettered once with the broker's refusal, which the hook shows;
    the password appears nowhere. (Tansu refuses every SCRAM login, see ``brokers.tansu_auth``.)"""
    secret = "wrong-" + unique("pw")
    transport, reason = _wrong_password_hook(broker, request.getfixturevalue(fixture), secret)
    hook_id = await make_hook(service, owner, {**transport, "max_batch_size": 4})
    ids = await post_events(service, owner, sample_events(10), per_request=3)
    await assert_dead_lettered_with_reason(service, owner, hook_id, ids, reason, secret)


# -- a broker down, then back ----------------------------------------------------------------------------------

PATIENT_RETRY = RetryPolicy(initial_delay_s=0.05, max_delay_s=0.3, max_age_s=10**9)


async def test_nats_down_then_back_every_event_arrives_after_retries(
    store: Store, db_url: str, nats_workdir: Path
) -> None:
    service = Service(store, service_settings(db_url, retry=PATIENT_RETRY))
    await service.start()
    port = free_port()
    credentials = {"user": "app", "password": "secret"}
    try:
        user = await service.user("owner")
        with run_nats(port, nats_workdir) as url:  # the stream exists; then the server goes down
            admin = await nats.connect(url, **credentials)
            await admin.jetstream().add_stream(name="AHDOWN", subjects=["allowed.>"])
            await admin.close()
        transport = {
            "type": "nats",
            "servers": url,
            "subject": "allowed.{list_id}.{event_type}",
            "credentials": credentials,
            "max_batch_size": 8,
        }
        hook_id = await make_hook(service, user, transport)
        ids = await post_events(service, user, sample_events(30), per_request=10)

        async def retried() -> bool:
            _, body, _ = await service.call("GET", f"/v1/hooks/{hook_id}/attempts", user)
            outcomes = [a["outcome"] for a in body["attempts"]]
            return len(outcomes) >= 3 and set(outcomes) == {"retry"}

        await eventually(retried, timeout=15)
        _, hook, _ = await service.call("GET", f"/v1/hooks/{hook_id}", user)
        assert "unreachable" in hook["last_error"]

        with run_nats(port, nats_workdir):  # back, on the same storage: the dispatcher reconnects by itself
            admin = await nats.connect(url, **credentials)
            js = admin.jetstream()
            try:

                async def stored() -> list[Any]:
                    got = await stream_messages(js, "AHDOWN")
                    return got if len(got) >= len(ids) else []

                got = await eventually(stored, timeout=20)
                assert [m.headers["Nats-Msg-Id"] for m in got] == ids  # none lost, none twice, in order
                await service.dispatcher.caught_up(hook_id)  # the last batches' records follow their sends
            finally:
                await admin.close()

        _, attempts, _ = await service.call("GET", f"/v1/hooks/{hook_id}/attempts?limit=1000", user)
        outcomes = [a["outcome"] for a in reversed(attempts["attempts"])]
        assert outcomes[0] == "retry" and "failed" not in outcomes
        delivered = [a["events"] for a in attempts["attempts"] if a["outcome"] == "delivered"]
        assert sum(delivered) == len(ids)
        _, letters, _ = await service.call("GET", f"/v1/hooks/{hook_id}/dead-letters", user)
        assert letters["dead_letters"] == []
    finally:
        await service.stop()


@pytest.mark.slow
@pytest.mark.parametrize("in_flight", [1, 8], ids=["one at a time", "8 in flight"])
async def test_kafka_restarted_mid_load_loses_nothing(
    store: Store, db_url: str, s3_server: str, in_flight: int
) -> None:
    """Tansu killed (SIGKILL) and started again on the same port while events are posted and delivered: the hook
    retries through the outage and resumes by itself, and the topic holds every acknowledged event, each profile's
    in log order (one batch at a time; with batches in flight the records of those out with a failed one may come
    before its retry). Tansu keeps its topics in S3 (a local moto server): memory storage would forget the
    topic."""
    storage, env = brokers.s3_storage(s3_server)
    broker = brokers.TansuBroker(storage=storage, env=env)
    service = Service(store, service_settings(db_url, retry=PATIENT_RETRY))
    topic = unique("ah-restart")
    try:
        await asyncio.to_thread(broker.start)
        await service.start()
        user = await service.user("owner")
        transport = {"type": "kafka", "bootstrap_servers": broker.servers, "topic": topic}
        if in_flight > 1:
            transport |= {"max_batch_size": 50, "max_in_flight": in_flight}
        hook_id = await make_hook(service, user, transport)

        ids, restart = await post_across_a_restart(
            service, user, hook_id, broker.kill, broker.start, total=20_000
        )
        assert "all brokers are down or unreachable" in restart.error_while_down

        # The hook's attempts: retries caused by the kill, then deliveries by themselves, each event delivered
        # once, nothing failed, no dead letters.
        await eventually(lambda: delivered_by_hook(service, user, hook_id, len(ids)), timeout=30)
        _, body, _ = await service.call("GET", f"/v1/hooks/{hook_id}/attempts?limit=1000", user)
        attempts: list[dict[str, Any]] = list(reversed(body["attempts"]))  # oldest first
        assert len(attempts) < 1000  # all of them
        outcomes = [a["outcome"] for a in attempts]
        assert "failed" not in outcomes
        retried = [a for a in attempts if a["outcome"] == "retry"]
        assert retried, "the kill should have failed at least one attempt"
        for a in retried:  # each ended after the kill and began before the broker was back
            assert epoch(a["at"]) + a["latency_ms"] / 1000 >= restart.began_at, a
            assert epoch(a["at"]) <= restart.ended_at, a
        assert "delivered" in outcomes[outcomes.index("retry") + 1 :], "no delivery after the restart"
        assert sum(a["events"] for a in attempts if a["outcome"] == "delivered") == len(ids)
        _, hook, _ = await service.call("GET", f"/v1/hooks/{hook_id}", user)
        # the first delivery after the failures cleared the error and is the hook's last success
        assert (hook["last_error"], hook["last_error_at"]) == (None, None)
        assert epoch(hook["last_success_at"]) >= epoch(retried[-1]["at"])
        _, letters, _ = await service.call("GET", f"/v1/hooks/{hook_id}/dead-letters", user)
        assert letters["dead_letters"] == []

        records = await asyncio.to_thread(read_topic, broker.servers, topic, len(ids), 60, linger=1.0)
        got = [dict(r.headers())["event_id"].decode() for r in records]
        assert len(set(ids)) == len(ids)
        assert set(got) == set(ids)  # every acknowledged event, nothing else
        # At least once: a batch in flight when the broker died may have been stored in part (some partitions)
        # with its acknowledgements lost; the worker sends the whole batch again with a new producer (the
        # idempotent producer's dedup does not outlive it), so those records are there twice. Only events of
        # retried batches can be.
        seq_of: dict[str, int] = {}
        after = 0
        while len(seq_of) < len(ids):
            page = await store.read_events(user.account_id, EVENT_TYPES, None, after, 5000, window=1_000_000)
            seq_of.update((e.id, e.seq) for e in page.events)
            assert page.events, "the log lost events"
            after = page.events[-1].seq
        twice = [i for i, n in Counter(got).items() if n > 1]
        for event_id in twice:
            assert any(a["first_seq"] <= seq_of[event_id] <= a["last_seq"] for a in retried), event_id
        # Keyed by profile (none without one), each profile in one partition, its first copies in log order.
        profile_of = {i: sample_events(1, n)[0].get("profile_id") for n, i in enumerate(ids)}
        per_profile: dict[str | None, list[str]] = {}
        partitions: dict[str, set[int]] = {}
        for record, event_id in zip(records, got, strict=True):
            profile = profile_of[event_id]
            assert record.key() == (None if profile is None else profile.encode())
            per_profile.setdefault(profile, []).append(event_id)
            if profile is not None:
                partitions.setdefault(profile, set()).add(record.partition())
        for profile in PROFILES:
            assert len(partitions[profile]) == 1
            first_copies = list(dict.fromkeys(per_profile[profile]))
            in_order = [i for i in ids if profile_of[i] == profile]
            if in_flight == 1:
                assert first_copies == in_order
            else:  # in log order but for the events of retried batches
                redone = {
                    i for i in in_order if any(a["first_seq"] <= seq_of[i] <= a["last_seq"] for a in retried)
                }
                assert [i for i in first_copies if i not in redone] == [
                    i for i in in_order if i not in redone
                ]
    finally:
        await service.stop()
        broker.close()


class Restart(msgspec.Struct):
    """When the broker went down and came back (``time.time()``), how many events were acknowledged by then,
    and the hook's ``last_error`` while the broker was down."""

    began_at: float = 0.0
    ended_at: float = 0.0
    posted_before: int = 0
    posted_by_end: int = 0
    error_while_down: str = ""


async def post_across_a_restart(
    service: Service,
    user: User,
    hook_id: int,
    stop: Callable[[], object],
    start: Callable[[], object],
    total: int,
    rate: float = 4_000,
    per_request: int = 200,
) -> tuple[list[str], Restart]:
    """Post events steadily, ``rate`` a second in requests of ``per_request``, and restart the broker meanwhile:
    ``stop()`` once a quarter of ``total`` is in and the hook has delivered, wait for the hook to report the outage
    in ``last_error``, ``start()``. Posting goes on until ``total`` events are in and the broker is back, then a few
    requests more. Returns the acknowledged ids (log order) and the restart's record. ``stop`` and ``start`` are
    blocking calls, run in a thread; ``start()`` runs once ``stop()`` has, whatever fails."""
    ids: list[str] = []
    restart = Restart()

    async def last_error() -> str | None:
        _, hook, _ = await service.call("GET", f"/v1/hooks/{hook_id}", user)
        error: str | None = hook["last_error"]
        return error

    async def restart_while_delivering() -> None:
        await eventually(lambda: len(ids) >= total // 4, timeout=15)
        await eventually(lambda: delivered_by_hook(service, user, hook_id, 1), timeout=15)
        assert await last_error() is None
        restart.began_at, restart.posted_before = time.time(), len(ids)
        await asyncio.to_thread(stop)
        try:
            restart.error_while_down = await eventually(last_error, timeout=10)
        finally:
            await asyncio.to_thread(start)
        restart.ended_at, restart.posted_by_end = time.time(), len(ids)

    restarting = asyncio.create_task(restart_while_delivering())
    began = time.monotonic()
    try:
        while len(ids) < total or not restarting.done():
            if len(ids) >= 3 * total:  # a slow restart: wait for it without adding more
                await asyncio.wait([restarting])
                continue
            ids += await post_events(service, user, sample_events(per_request, len(ids)), per_request)
            await asyncio.sleep(began + len(ids) / rate - time.monotonic())  # no faster than ``rate``
    finally:
        if not restart.began_at:
            restarting.cancel()  # posting failed before the broker was stopped: nothing to bring back
        await asyncio.wait([restarting])  # the broker is back before anything else happens
    restarting.result()
    for _ in range(4):  # events that reach the broker only after the restart
        ids += await post_events(service, user, sample_events(per_request, len(ids)), per_request)
    assert 0 < restart.posted_before < restart.posted_by_end < len(ids)  # posting went on throughout
    return ids, restart


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def attempts_through_a_restart(
    service: Service, user: User, hook_id: int, count: int, restart: Restart
) -> list[dict[str, Any]]:
    """The hook's attempts (oldest first) once it has delivered ``count`` events, checked: retries caused by the
    restart (each ended after the broker went down, began before it was back), deliveries after them, each event
    delivered once, nothing failed, no dead letters, ``last_error`` cleared by the first delivery after the outage."""
    await eventually(lambda: delivered_by_hook(service, user, hook_id, count), timeout=30)
    _, body, _ = await service.call("GET", f"/v1/hooks/{hook_id}/attempts?limit=1000", user)
    attempts: list[dict[str, Any]] = list(reversed(body["attempts"]))
    assert len(attempts) < 1000  # all of them
    outcomes = [a["outcome"] for a in attempts]
    assert "failed" not in outcomes
    retries = [a for a in attempts if a["outcome"] == "retry"]
    assert retries, "the restart should have failed at least one attempt"
    for a in retries:
        assert epoch(a["at"]) + a["latency_ms"] / 1000 >= restart.began_at, a
        assert epoch(a["at"]) <= restart.ended_at, a  # once the broker was back, the first try delivered
    last_retry = len(outcomes) - 1 - outcomes[::-1].index("retry")
    resumed = [a for a in attempts[last_retry + 1 :] if a["outcome"] == "delivered"]
    assert resumed, "no delivery after the restart"
    assert sum(a["events"] for a in attempts if a["outcome"] == "delivered") == count  # each batch once
    _, hook, _ = await service.call("GET", f"/v1/hooks/{hook_id}", user)
    # the first delivery after the outage cleared the error and is the hook's last success
    assert (hook["last_error"], hook["last_error_at"]) == (None, None)
    assert epoch(hook["last_success_at"]) >= epoch(retries[-1]["at"])
    _, letters, _ = await service.call("GET", f"/v1/hooks/{hook_id}/dead-letters", user)
    assert letters["dead_letters"] == []
    return attempts


async def log_positions(store: Store, account_id: int, count: int) -> dict[str, int]:
    """The log position (``seq``) of each of the account's first ``count`` events, by id."""
    positions: dict[str, int] = {}
    after = 0
    while len(positions) < count:
        page = await store.read_events(account_id, EVENT_TYPES, None, after, 5000, window=1_000_000)
        assert page.events, "the log lost events"
        positions.update((e.id, e.seq) for e in page.events)
        after = page.events[-1].seq
    return positions


async def queue_message_ids(url: str, name: str) -> list[str]:
    """The ``message_id`` of every message in queue ``name``, in queue order; then deletes the queue. Read with a
    consumer on aio-pika's underlying aiormq channel: aio-pika's own message objects make 20 000 messages take
    seconds."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        assert count is not None
        ids: list[str] = []
        everything = asyncio.Event()

        async def on_message(message: Any) -> None:
            ids.append(message.header.properties.message_id)
            if len(ids) == count:
                everything.set()

        if count:
            raw = await channel.get_underlay_channel()
            await raw.basic_consume(name, on_message, no_ack=True)
            async with asyncio.timeout(30):
                await everything.wait()
        await channel.queue_delete(name)
    return ids


def hook_connections(node: brokers.RabbitNode) -> int:
    """The connections the service's RabbitMQ transports hold on ``node``."""
    listed = brokers.rabbitmqctl("list_connections", "--no-table-headers", "client_properties", node=node)
    return listed.count('{"connection_name","actionhooks"}')


@pytest.mark.slow
async def test_rabbitmq_restarted_mid_load_loses_nothing(
    store: Store, db_url: str, rabbitmq_node: brokers.RabbitNode
) -> None:
    """RabbitMQ restarted by its own command (``rabbitmqctl stop_app``, ``start_app``) while events are posted
    and delivered to a durable queue: the hook retries through the outage and resumes by itself, and the queue holds
    every acknowledged event. The node is the test's own: the machine's broker is shared and stays up."""
    service = Service(store, service_settings(db_url, retry=PATIENT_RETRY))
    await service.start()
    name = unique("ah-restart-q")
    try:
        user = await service.user("owner")
        # The hook declares the queue as the transport does by default (durable: it must outlive the restart).
        transport = rabbit("rabbitmq_queue", queue=name, port=rabbitmq_node.port)
        hook_id = await make_hook(service, user, transport)

        ids, restart = await post_across_a_restart(
            service, user, hook_id, rabbitmq_node.stop_app, rabbitmq_node.start_app, total=20_000
        )
        assert f"RabbitMQ at 127.0.0.1:{rabbitmq_node.port}" in restart.error_while_down
        attempts = await attempts_through_a_restart(service, user, hook_id, len(ids), restart)
        assert hook_connections(rabbitmq_node) == 1  # the failed attempts left no connection behind

        got = await queue_message_ids(rabbitmq_node.url, name)
        assert len(set(ids)) == len(ids)
        assert set(got) == set(ids)  # every acknowledged event, nothing else
        # At least once: a batch in flight when the broker stopped may have been enqueued in part with its
        # confirms lost; the worker sends the whole batch again, so those messages are in the queue twice. Only
        # events of retried batches can be, once more per retry at most; and the first copies still follow the
        # log order (one queue: the hook's whole order, so each profile's too).
        retried = [a for a in attempts if a["outcome"] == "retry"]
        position = await log_positions(store, user.account_id, len(ids))
        for event_id, copies in Counter(got).items():
            if copies > 1:
                tries = [a for a in retried if a["first_seq"] <= position[event_id] <= a["last_seq"]]
                assert copies <= 1 + len(tries), (event_id, copies, tries)
        assert list(dict.fromkeys(got)) == ids

        await service.stop()
        assert hook_connections(rabbitmq_node) == 0  # the worker closed its connection
    finally:
        await service.stop()


async def stream_message_ids(js: Any, stream: str) -> list[str]:
    """The ``Nats-Msg-Id`` of every message in ``stream``, in stream order (an ephemeral pull consumer)."""
    count = (await js.stream_info(stream)).state.messages
    config = nats.js.api.ConsumerConfig(ack_policy=nats.js.api.AckPolicy.NONE)
    subscription = await js.pull_subscribe(">", stream=stream, config=config)
    ids: list[str] = []
    try:
        while len(ids) < count:
            ids += [m.headers["Nats-Msg-Id"] for m in await subscription.fetch(1000, timeout=5)]
    finally:
        await subscription.unsubscribe()
    return ids


@pytest.mark.slow
async def test_nats_restarted_mid_load_loses_nothing(store: Store, db_url: str, nats_workdir: Path) -> None:
    """nats-server stopped and started again on the same port and storage while events are posted and delivered:
    the hook retries through the outage and resumes by itself, and the stream holds every acknowledged event once
    (``Nats-Msg-Id``: JetStream drops what a retried batch sends again), in log order."""
    service = Service(store, service_settings(db_url, retry=PATIENT_RETRY))
    port = free_port()
    credentials = {"user": "app", "password": "secret"}
    server = contextlib.ExitStack()
    try:
        url = server.enter_context(run_nats(port, nats_workdir))
        admin = await nats.connect(url, **credentials)
        await admin.jetstream().add_stream(name="AHMID", subjects=["allowed.>"])
        await admin.close()
        await service.start()
        user = await service.user("owner")
        transport = {"type": "nats", "servers": url, "subject": "allowed.{list_id}.{event_type}"}
        hook_id = await make_hook(service, user, {**transport, "credentials": credentials})

        def start() -> None:
            server.enter_context(run_nats(port, nats_workdir))

        ids, restart = await post_across_a_restart(service, user, hook_id, server.close, start, total=8_000)
        assert f"127.0.0.1:{port}" in restart.error_while_down
        await attempts_through_a_restart(service, user, hook_id, len(ids), restart)
        admin = await nats.connect(url, **credentials)
        try:
            got = await stream_message_ids(admin.jetstream(), "AHMID")
        finally:
            await admin.close()
        assert got == ids  # none lost, none twice, in log order
    finally:
        await service.stop()
        server.close()
