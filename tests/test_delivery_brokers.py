"""The whole pipeline to real brokers: POST /v1/events → log → dispatcher → broker transport → a consumer the project
did not write (aio-pika, confluent-kafka, nats-py) reads what arrived.

Each delivery test creates, for the same event types, a broker hook and an HTTP hook whose receiver is the
reference: the broker must hold exactly the messages the receiver got, byte for byte, with the documented routing
keys, record keys or subjects, and per-profile order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import msgspec
import nats
import pytest

from actionhooks.dispatch.retry import RetryPolicy
from actionhooks.receiver import Receiver
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


async def test_rabbitmq_queue_holds_what_the_http_hook_got(
    service: Service, owner: User, amqp: aio_pika.abc.AbstractChannel
) -> None:
    name = unique("ah-pipe-q")
    queue = await amqp.declare_queue(name, durable=True)  # the consumer's queue; the hook uses it as it is
    try:
        ids, http, hook_id = await send_through_both(service, owner, rabbit("rabbitmq_queue", queue=name))
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


async def test_kafka_records_are_what_the_http_hook_got_keyed_by_profile(
    service: Service, owner: User, tansu: str
) -> None:
    topic = unique("ah-pipe")
    ids, http, hook_id = await send_through_both(
        service, owner, {"type": "kafka", "bootstrap_servers": tansu, "topic": topic}
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


async def test_nats_stream_holds_what_the_http_hook_got_on_templated_subjects(
    service: Service, owner: User, nats_server: str
) -> None:
    nc = await nats.connect(nats_server)
    js = nc.jetstream()
    stream, prefix = unique("AHPIPE"), unique("ahpipe")
    await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
    try:
        transport = {"type": "nats", "servers": nats_server, "subject": prefix + ".{list_id}.{event_type}"}
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


async def test_a_wrong_rabbitmq_password_dead_letters_every_event_with_the_reason(
    service: Service, owner: User, rabbitmq: tuple[str, int]
) -> None:
    secret = "wrong-" + unique("pw")
    hook_id = await make_hook(
        service,
        owner,
        rabbit("rabbitmq_queue", queue=unique("ah-pipe-q"), password=secret, max_batch_size=4),
    )
    ids = await post_events(service, owner, sample_events(10), per_request=3)
    await assert_dead_lettered_with_reason(
        service, owner, hook_id, ids, "refused the login of user 'guest'", secret
    )


async def test_a_wrong_nats_password_dead_letters_every_event_with_the_reason(
    service: Service, owner: User, nats_auth_server: str
) -> None:
    secret = "wrong-" + unique("pw")
    transport = {
        "type": "nats",
        "servers": nats_auth_server,
        "subject": "allowed.{event_type}",
        "credentials": {"user": "app", "password": secret},
        "max_batch_size": 4,
    }
    hook_id = await make_hook(service, owner, transport)
    ids = await post_events(service, owner, sample_events(10), per_request=3)
    await assert_dead_lettered_with_reason(service, owner, hook_id, ids, "refused the credentials", secret)


# -- a broker down, then back ----------------------------------------------------------------------------------

PATIENT_RETRY = RetryPolicy(initial_delay_s=0.05, max_delay_s=0.3, max_attempts=1000)


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
