"""The RabbitMQ transports against the local broker; aio-pika consumers read what was published."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import aio_pika
import msgspec
import pytest

from actionhooks.errors import DeliveryError, ValidationError
from actionhooks.integrations import TransportContext, open_transport, parse_settings
from actionhooks.integrations.base import REDRIVE_HEADER, Batch, SideMark
from actionhooks.integrations.rabbitmq.transport import ExchangeSettings, QueueSettings
from tests import brokers
from tests.brokers import (
    RabbitNode,
    drain_queue,
    free_port,
    loopback_context,
    make_batch,
    rabbitmqctl,
    unique,
)

rabbitmq, rabbitmq_node = brokers.rabbitmq, brokers.rabbitmq_node  # fixtures

URL = "amqp://guest:guest@127.0.0.1:5672/"


def settings(**extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "user": "guest", "password": "guest", **extra}


def queue_transport(queue: str, **extra: Any) -> Any:
    s = parse_settings({"type": "rabbitmq_queue", "queue": queue, **settings(**extra)})
    return open_transport(s, loopback_context())


@pytest.fixture
async def channel(rabbitmq: tuple[str, int]) -> Any:
    connection = await aio_pika.connect(URL)
    yield await connection.channel()
    await connection.close()


def test_settings_are_parsed_with_broker_defaults_and_the_password_hidden() -> None:
    s = parse_settings({"type": "rabbitmq_exchange", "exchange": "events", **settings(password="s3cret")})
    assert isinstance(s, ExchangeSettings)
    assert (s.exchange_type, s.durable, s.auto_delete, s.vhost) == ("topic", True, False, "/")
    assert (s.max_batch_size, s.timeout_s, s.effective_port, s.hosts()) == (1000, 0.0, 5672, ["127.0.0.1"])
    assert s.public()["password"] == "***"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)
    q = parse_settings({"type": "rabbitmq_queue", "queue": "q", "tls": True, **settings()})
    assert isinstance(q, QueueSettings) and q.effective_port == 5671
    with pytest.raises(ValidationError) as info:
        parse_settings(
            {"type": "rabbitmq_exchange", "exchange": "e", "exchange_type": "fanout", **settings()}
        )
    assert info.value.field == "transport.exchange_type"
    with pytest.raises(ValidationError):
        parse_settings({"type": "rabbitmq_queue", "queue": "q", **settings(host="amqp://x")})


async def test_queue_receives_each_event_as_a_persistent_json_message(channel: Any) -> None:
    name = unique("ah-q")
    transport = queue_transport(name)
    batch = make_batch(60)
    try:
        receipt = await transport.send(batch)
        assert receipt.response_excerpt == "60 messages confirmed"
        # Declaring it again fails (PRECONDITION_FAILED) unless it is a durable quorum queue.
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        got = await drain_queue(queue, 60)
        assert [m.body for m in got] == [m.body for m in batch.messages]
        assert [m.message_id for m in got] == [m.id for m in batch.messages]
        assert {(m.content_type, m.delivery_mode, m.type) for m in got} == {
            ("application/json", aio_pika.DeliveryMode.PERSISTENT, "deliv")
        }
    finally:
        await transport.close()
        await channel.queue_delete(name)


async def test_a_message_larger_than_a_frame_arrives_whole_and_in_order(channel: Any) -> None:
    """The broker's ``frame_max`` is 128 KiB: a 1 MiB event goes out as several body frames, between two small ones
    and past a write of its own (``FLUSH_EVERY``)."""
    name = unique("ah-q")
    transport = queue_transport(name)
    batch = make_batch(250)
    big = batch.messages[120]
    padding = "x" * (1 << 20)
    batch.messages[120] = msgspec.structs.replace(
        big, body=big.body[:-1] + f',"padding":"{padding}"}}'.encode()
    )
    try:
        await transport.send(batch)
        got = await drain_queue(await channel.declare_queue(name, passive=True), 250, exact=True)
        assert [m.body for m in got] == [m.body for m in batch.messages]
        assert len(got[120].body) > 1 << 20
    finally:
        await transport.close()
        await channel.queue_delete(name)


async def test_an_existing_queue_with_other_arguments_is_used_as_it_is(channel: Any) -> None:
    name = unique("ah-q")
    await channel.declare_queue(
        name, durable=True, arguments={"x-queue-type": "classic", "x-max-priority": 5}
    )
    transport = queue_transport(name)
    batch = make_batch(5)
    try:
        await transport.send(batch)
        got = await drain_queue(await channel.declare_queue(name, passive=True), 5)
        assert [m.body for m in got] == [m.body for m in batch.messages]
    finally:
        await transport.close()
        await channel.queue_delete(name)


async def test_a_missing_queue_is_declared_classic_when_the_hook_asks(channel: Any) -> None:
    name = unique("ah-q")
    transport = queue_transport(name, queue_type="classic")
    try:
        await transport.send(make_batch(3))
        # Declaring it again fails (PRECONDITION_FAILED) unless it is a durable classic queue.
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "classic"})
        assert len(await drain_queue(queue, 3, exact=True)) == 3
    finally:
        await transport.close()
        await channel.queue_delete(name)


@pytest.mark.parametrize("exchange_type", ["topic", "direct"])
async def test_exchange_routes_by_list_id_and_event_type(channel: Any, exchange_type: str) -> None:
    exchange_name, queue_name = unique("ah-x"), unique("ah-q")
    s = parse_settings(
        {"type": "rabbitmq_exchange", "exchange": exchange_name, "exchange_type": exchange_type, **settings()}
    )
    transport = open_transport(s, loopback_context())
    try:
        await transport.send(Batch(1, "warm-up", []))  # declares the exchange
        exchange = await channel.get_exchange(exchange_name)
        queue = await channel.declare_queue(queue_name, exclusive=True)
        for key in ("12.deliv", "0.campaign_launch"):
            await queue.bind(exchange, routing_key=key)
        with_list = make_batch(4, list_id=12)
        without_list = make_batch(3, list_id=None, event_type="campaign_launch")
        other_list = make_batch(2, list_id=99)  # no queue bound: dropped by the broker, still confirmed
        await transport.send(Batch(1, "b", with_list.messages + other_list.messages + without_list.messages))
        got = await drain_queue(queue, 7)
        assert [m.routing_key for m in got] == ["12.deliv"] * 4 + ["0.campaign_launch"] * 3
        assert [m.body for m in got] == [m.body for m in with_list.messages + without_list.messages]
        assert [m.message_id for m in got] == [m.id for m in with_list.messages + without_list.messages]
    finally:
        await transport.close()
        await channel.exchange_delete(exchange_name)


async def test_an_exchange_that_exists_with_another_type_is_a_permanent_error(channel: Any) -> None:
    name = unique("ah-x")
    await channel.declare_exchange(name, type="direct", durable=True)
    s = parse_settings(
        {"type": "rabbitmq_exchange", "exchange": name, "exchange_type": "topic", **settings()}
    )
    transport = open_transport(s, loopback_context())
    try:
        with pytest.raises(DeliveryError) as info:
            await transport.send(make_batch(1))
        assert info.value.permanent and "other properties" in info.value.reason
    finally:
        await transport.close()
        await channel.exchange_delete(name)


async def test_a_wrong_password_is_a_permanent_error_naming_the_user(rabbitmq: tuple[str, int]) -> None:
    transport = queue_transport(unique("ah-q"), password="wrong")
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.permanent and "refused the login of user 'guest'" in info.value.reason
    assert "wrong" not in info.value.reason
    await transport.close()


@pytest.fixture(scope="module")
def read_only_user() -> Iterator[str]:
    """A user that may read but neither configure nor write anything on ``/``."""
    if shutil.which("rabbitmqctl") is None:
        brokers.missing("rabbitmqctl")
    user = unique("ah-reader")
    try:
        rabbitmqctl("add_user", user, "secret")
    except (subprocess.CalledProcessError, PermissionError) as exc:
        brokers.missing(f"a RabbitMQ user for the test ({exc})")
    rabbitmqctl("set_permissions", "-p", "/", user, "^$", "^$", ".*")
    yield user
    rabbitmqctl("delete_user", user)


async def test_missing_permissions_are_a_permanent_error(
    rabbitmq: tuple[str, int], read_only_user: str
) -> None:
    transport = queue_transport(unique("ah-q"), user=read_only_user, password="secret")
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.permanent and "refused access (permissions)" in info.value.reason
    await transport.close()


async def test_an_unknown_vhost_is_a_permanent_error(rabbitmq: tuple[str, int]) -> None:
    transport = queue_transport(unique("ah-q"), vhost=unique("no-such-vhost"))
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.permanent and "refused vhost" in info.value.reason
    await transport.close()


async def test_an_unreachable_broker_is_retryable() -> None:
    transport = queue_transport("q", port=free_port())
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert not info.value.permanent and "unreachable" in info.value.reason
    await transport.close()


async def test_a_loopback_broker_is_refused_without_the_allow_list(rabbitmq: tuple[str, int]) -> None:
    s = parse_settings({"type": "rabbitmq_queue", "queue": "q", **settings()})
    transport = open_transport(s, TransportContext())
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.permanent and "not public" in info.value.reason
    await transport.close()


@pytest.mark.slow
@pytest.mark.parametrize("in_flight", [1, 4])
async def test_a_broker_restart_mid_load_loses_nothing(rabbitmq_node: RabbitNode, in_flight: int) -> None:
    """Batches that fail while the broker restarts are retryable and succeed once it is back (at-least-once).
    The restart is ``rabbitmqctl stop_app`` / ``start_app`` on a private node: the machine's broker stays up. With
    batches in flight, ``in_flight`` lanes send at once on the transport's one link."""
    name = unique("ah-q")
    transport = queue_transport(name, port=rabbitmq_node.port, max_in_flight=in_flight)
    batches = [make_batch(100, start=i * 100) for i in range(40)]
    failures: list[DeliveryError] = []

    async def publish_all() -> None:
        await asyncio.gather(*(lane(batches[n::in_flight]) for n in range(in_flight)))

    async def lane(batches: list[Batch]) -> None:
        for batch in batches:
            while True:
                try:
                    await transport.send(batch)
                    break
                except DeliveryError as exc:
                    assert not exc.permanent, exc.reason
                    failures.append(exc)
                    await asyncio.sleep(0.2)
            await asyncio.sleep(0.05 * in_flight)  # the same pace in all: the restart comes mid-load

    async def restart() -> None:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(rabbitmq_node.stop_app)
        await asyncio.to_thread(rabbitmq_node.start_app)

    try:
        await asyncio.gather(publish_all(), restart())
        assert failures, "the restart should have failed at least one batch"
        expected = {m.id for b in batches for m in b.messages}
        seen: set[str] = set()
        connection = await aio_pika.connect(rabbitmq_node.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            async with asyncio.timeout(30):
                while not expected <= seen:
                    message = await queue.get(no_ack=True, fail=False)
                    if message is None:
                        break
                    seen.add(str(message.message_id))
            await channel.queue_delete(name)
        assert expected - seen == set()
    finally:
        await transport.close()


async def test_a_redriven_batch_carries_its_header_and_live_ones_none(channel: Any) -> None:
    name = unique("ah-q")
    transport = queue_transport(name)
    live = make_batch(5)
    redrive = Batch(1, "1-redrive-3-0-4", live.messages, SideMark(REDRIVE_HEADER, "3"))
    try:
        await transport.send(live)
        await transport.send(redrive)
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        got = await drain_queue(queue, 10)
        assert [m.body for m in got] == [m.body for m in live.messages] * 2
        assert [m.message_id for m in got] == [m.id for m in live.messages] * 2  # the event id, as live
        assert [(m.headers or {}).get(REDRIVE_HEADER) for m in got] == [None] * 5 + ["3"] * 5
    finally:
        await transport.close()
        await channel.queue_delete(name)


async def test_batches_in_flight_are_all_confirmed_and_queued_in_the_order_they_were_sent(
    channel: Any,
) -> None:
    name = unique("ah-q")
    transport = queue_transport(name, max_in_flight=8)
    batches = [make_batch(1 if n % 2 else 40, start=n * 100) for n in range(16)]
    try:
        receipts = await asyncio.gather(*(transport.send(batch) for batch in batches))
        assert [r.response_excerpt for r in receipts] == [
            f"{len(b.messages)} messages confirmed" for b in batches
        ]
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        got = await drain_queue(queue, sum(len(b.messages) for b in batches))
        assert [m.message_id for m in got] == [m.id for b in batches for m in b.messages]
    finally:
        await transport.close()


async def test_an_unroutable_message_fails_its_batch_and_no_batch_in_flight_is_taken_as_delivered(
    channel: Any,
) -> None:
    """The queue is deleted under the transport: the broker returns the messages published to it (``mandatory``)
    and still acks them. A batch whose messages came back fails, retryable, and so do those whose link was dropped
    under them; a batch sent after that declares the queue again. Every batch reported confirmed is in the queue."""
    name = unique("ah-q")
    transport = queue_transport(name, max_in_flight=4)
    batches = [make_batch(5, start=n * 10) for n in range(4)]
    try:
        await transport.send(make_batch(1))  # declares the queue, opens the link
        await channel.queue_delete(name)
        outcomes = await asyncio.gather(*(transport.send(b) for b in batches), return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, DeliveryError)]
        assert failed and all(not o.permanent for o in failed), outcomes
        assert "could not route" in failed[0].reason
        confirmed = [b for b, o in zip(batches, outcomes, strict=True) if not isinstance(o, BaseException)]
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        expected = [m.id for b in confirmed for m in b.messages]
        got = await drain_queue(queue, len(expected)) if expected else []
        assert [m.message_id for m in got] == expected
    finally:
        await transport.close()
        await channel.queue_delete(name)


async def test_confirms_settle_only_the_runs_their_tags_cover() -> None:
    """Two runs awaiting confirms at once (tags 1–3 and 4–6): a single ack settles its own tag only, a ``multiple``
    one every open tag up to it in every run, a nack counts in the run it falls in, a return in the run holding its
    message id, and a closed channel fails whatever is still open."""
    from pika import BasicProperties, frame, spec

    from actionhooks.integrations.rabbitmq.link import Confirms, Link

    link, loop = Link(), asyncio.get_running_loop()
    first, second = Confirms(1, 3, loop, {"a", "b", "c"}), Confirms(4, 3, loop, {"d", "e", "f"})
    link._confirms.extend([first, second])

    def confirm(method: Any) -> None:
        link._confirmed(frame.Method(1, method))

    confirm(spec.Basic.Ack(delivery_tag=5, multiple=False))
    assert (first._settled, second._settled) == (0, 1)
    confirm(spec.Basic.Nack(delivery_tag=2, multiple=True))
    assert (first._settled, first.nacked, second._settled) == (2, 2, 1)
    link._returned(None, None, BasicProperties(message_id="e"), b"")
    assert (first.returned, second.returned) == (0, 1)
    confirm(spec.Basic.Ack(delivery_tag=3, multiple=False))
    assert first.done.done() and list(link._confirms) == [second]
    link._fail(ConnectionError("gone"))
    with pytest.raises(ConnectionError):
        await second.done
