"""The Kafka transport against Tansu (a Kafka-compatible broker); a confluent-kafka consumer reads the records."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from typing import Any

import pytest

from actionhooks.errors import DeliveryError, ValidationError
from actionhooks.integrations import TransportContext, open_transport, parse_settings
from actionhooks.integrations.base import REPLAY_HEADER, Batch, Message, SideMark
from actionhooks.integrations.kafka.transport import Settings
from tests import brokers
from tests.brokers import (
    TANSU_USER,
    free_port,
    loopback_context,
    make_batch,
    read_topic,
    run_tansu,
    unique,
)

# the session's fixtures, visible to this module's tests
tansu, tansu_auth, s3_server = brokers.tansu, brokers.tansu_auth, brokers.s3_server


def kafka_transport(servers: str, topic: str, **extra: Any) -> Any:
    s = parse_settings({"type": "kafka", "bootstrap_servers": servers, "topic": topic, **extra})
    return open_transport(s, loopback_context())


def test_settings_validate_sasl_and_hide_the_password() -> None:
    s = parse_settings(
        {
            "type": "kafka",
            "bootstrap_servers": "k1.example.com:9092, [2001:db8::1]:9093",
            "topic": "events.v1",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "app",
            "sasl_password": "s3cret",
        }
    )
    assert isinstance(s, Settings)
    assert s.hosts() == ["k1.example.com", "2001:db8::1"]
    assert (s.key, s.max_batch_size, s.timeout_s, s.idempotent) == ("profile_id", 500, 0.0, True)
    assert s.public()["sasl_password"] == "***" and "s3cret" not in repr(s)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"security_protocol": "SASL_SSL"}, "transport.sasl_mechanism"),
        ({"sasl_username": "x"}, "transport.security_protocol"),
        ({"topic": "no spaces"}, "transport.topic"),
        ({"bootstrap_servers": "k1"}, "transport.bootstrap_servers"),
        ({"key": "email"}, "transport.key"),
    ]
    for extra, field in bad:
        with pytest.raises(ValidationError) as info:
            parse_settings({"type": "kafka", "bootstrap_servers": ["k:9092"], "topic": "t", **extra})
        assert info.value.field == field, extra


async def test_each_event_is_a_record_keyed_by_profile_with_id_and_type_headers(tansu: str) -> None:
    topic = unique("ah-topic")
    transport = kafka_transport(tansu, topic)
    batches = [make_batch(200, profiles=7, start=i * 200) for i in range(3)]
    try:
        for batch in batches:
            receipt = await transport.send(batch)
            assert receipt.response_excerpt == "200 records acknowledged"
    finally:
        await transport.close()
    sent = {m.id: m for b in batches for m in b.messages}
    records = await asyncio.to_thread(read_topic, tansu, topic, len(sent))
    assert len(records) == len(sent)
    per_profile: dict[bytes, list[int]] = {}
    partition_of: dict[bytes, set[int]] = {}
    for record in records:
        headers = dict(record.headers())
        message = sent[headers["event_id"].decode()]
        assert record.value() == message.body
        assert record.key() == str(message.profile_id).encode()
        assert headers["event_type"] == b"deliv" and headers["content-type"] == b"application/json"
        per_profile.setdefault(record.key(), []).append(message.seq)
        partition_of.setdefault(record.key(), set()).add(record.partition())
    assert all(len(p) == 1 for p in partition_of.values())
    assert all(seqs == sorted(seqs) for seqs in per_profile.values())
    assert len({p for ps in partition_of.values() for p in ps}) > 1  # keys spread over partitions


async def test_other_key_choices(tansu: str) -> None:
    batch = make_batch(2, list_id=None, event_type="campaign_launch")
    expected = {
        "list_id": [None, None],
        "event_type": [b"campaign_launch"] * 2,
        "event_id": [m.id.encode() for m in batch.messages],
        "none": [None, None],
    }
    for choice, wanted in expected.items():
        topic = unique("ah-topic")
        transport = kafka_transport(tansu, topic, key=choice)
        await transport.send(batch)
        await transport.close()
        records = await asyncio.to_thread(read_topic, tansu, topic, 2)
        keys = {dict(r.headers())["event_id"]: r.key() for r in records}
        assert [keys[m.id.encode()] for m in batch.messages] == wanted, choice


async def test_an_unreachable_broker_is_retryable_and_the_next_send_reconnects() -> None:
    port = free_port()
    transport = kafka_transport(f"127.0.0.1:{port}", unique("ah-topic"))
    try:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            await transport.send(make_batch(3))
        reason = info.value.reason
        assert not info.value.permanent and "brokers are down" in reason
        assert (
            f"(last: 127.0.0.1:{port} (bootstrap): connect to 127.0.0.1:{port} failed: Connection refused)"
            in reason
        )
        assert time.monotonic() - started < 15
        with run_tansu(port):  # the broker comes up: the same transport delivers on its next send
            await transport.send(make_batch(3))
            await transport.close()
    finally:
        await transport.close()


async def test_closing_cuts_off_a_send_to_a_broker_that_never_answers() -> None:
    """A hook stopped or edited while its send waits on a broker that accepts connections and never answers is
    stopped at once: close() ends the send (a retryable error; the batch is sent again from the cursor) without
    waiting for the connect timeout or a flush."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nothing ever answers
    try:
        transport = kafka_transport(f"127.0.0.1:{silent.getsockname()[1]}", unique("ah-topic"))
        sending = asyncio.create_task(transport.send(make_batch(3)))
        await asyncio.sleep(1.0)
        assert not sending.done()  # waiting on the silent broker
        started = time.monotonic()
        await transport.close()
        with pytest.raises(DeliveryError) as info:
            await sending
        took = time.monotonic() - started
        assert not info.value.permanent
        assert took < 2.0, f"close took {took:.1f} s"
    finally:
        silent.close()


async def test_a_failed_sasl_handshake_is_a_permanent_error(tansu: str) -> None:
    """SASL towards a broker whose listener does not do SASL (``tansu`` runs without ``--authentication``): the
    handshake fails, a permanent authentication error (a wrong password is the next test)."""
    transport = kafka_transport(
        tansu,
        unique("ah-topic"),
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="app",
        sasl_password="wrong-" + uuid.uuid4().hex,
    )
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.permanent and "authentication failed" in info.value.reason
    assert "wrong-" not in info.value.reason
    await transport.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
async def test_a_wrong_scram_password_is_a_permanent_error_naming_the_user(
    tansu_auth: str, mechanism: str
) -> None:
    """A broker that checks SCRAM logins refuses ours. (Tansu 0.6.0 refuses every login, see ``tansu_auth``; its
    ``unknown-user`` and Kafka's "invalid credentials" both reach librdkafka as a failed SASL authentication, the
    error this maps.)"""
    secret = "wrong-" + uuid.uuid4().hex
    transport = kafka_transport(
        tansu_auth,
        unique("ah-topic"),
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username=TANSU_USER,
        sasl_password=secret,
    )
    try:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            await transport.send(make_batch(3))
        assert time.monotonic() - started < 10  # the refusal ends the wait, not the 30 s delivery timeout
        reason = info.value.reason
        assert info.value.permanent, reason
        assert f"authentication failed for user '{TANSU_USER}' ({mechanism})" in reason
        assert secret not in reason and "wrong-" not in reason
    finally:
        await transport.close()


async def test_a_hook_without_sasl_against_a_broker_that_requires_it_says_the_broker_closed_it(
    tansu_auth: str,
) -> None:
    """librdkafka only sees connections closed and then "all brokers down": retryable (the broker may be changing
    its listeners), with the last connection's failure in the reason so a wrong ``security_protocol`` shows."""
    transport = kafka_transport(tansu_auth, unique("ah-topic"))  # PLAINTEXT
    try:
        with pytest.raises(DeliveryError) as info:
            await transport.send(make_batch(3))
        reason = info.value.reason
        assert not info.value.permanent, reason
        assert "all brokers are down or unreachable (last: " in reason
        # closed or reset, as the broker's timing has it (seen by the guard proxy, which relays the connection)
        assert re.search(r"\(bootstrap\): the broker (closed|reset) the connection\)", reason), reason
    finally:
        await transport.close()


async def test_a_loopback_broker_is_refused_without_the_allow_list(tansu: str) -> None:
    s = parse_settings({"type": "kafka", "bootstrap_servers": tansu, "topic": "t"})
    transport = open_transport(s, TransportContext())
    with pytest.raises(DeliveryError) as info:
        await transport.send(Batch(1, "b", make_batch(1).messages))
    assert info.value.permanent and "not public" in info.value.reason


async def test_a_replayed_record_carries_the_replay_header(tansu: str) -> None:
    topic = unique("ah-topic")
    transport = kafka_transport(tansu, topic)
    batch = make_batch(4)
    try:
        await transport.send(Batch(1, "1-replay-9-0-3", batch.messages, SideMark(REPLAY_HEADER, "9")))
    finally:
        await transport.close()
    records = await asyncio.to_thread(read_topic, tansu, topic, 4)
    assert sorted(r.value() for r in records) == sorted(m.body for m in batch.messages)
    assert all(dict(r.headers())[REPLAY_HEADER] == b"9" for r in records)


# -- batches in flight (max_in_flight) -------------------------------------------------------------------------


async def test_batches_in_flight_are_acknowledged_each_and_stored_in_log_order(tansu: str) -> None:
    """Forty batches sent at once, in log order (as the dispatcher starts them): each send returns on its own
    records' reports, and each profile's records are in its partition in log order."""
    topic = unique("ah-topic")
    transport = kafka_transport(tansu, topic, max_in_flight=16)
    batches = [make_batch(5, profiles=4, start=i * 5) for i in range(40)]
    try:
        receipts = await asyncio.gather(*(transport.send(b) for b in batches))
    finally:
        await transport.close()
    assert [r.response_excerpt for r in receipts] == ["5 records acknowledged"] * 40
    records = await asyncio.to_thread(read_topic, tansu, topic, 200)
    seq_of = {m.id: m.seq for b in batches for m in b.messages}
    per_profile: dict[bytes, list[int]] = {}
    for record in records:
        per_profile.setdefault(record.key(), []).append(seq_of[dict(record.headers())["event_id"].decode()])
    assert sorted(s for seqs in per_profile.values() for s in seqs) == list(range(200))  # each record once
    assert all(seqs == sorted(seqs) for seqs in per_profile.values())


async def test_a_batch_goes_to_the_producer_while_the_one_before_awaits_its_acknowledgements() -> None:
    """Against a broker that never answers: the second batch's records are with the producer beside the first's
    (a send does not wait for the one before it); closing the transport fails both at once, retryable."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        transport = kafka_transport(
            f"127.0.0.1:{silent.getsockname()[1]}", unique("ah-topic"), max_in_flight=4
        )
        first = asyncio.create_task(transport.send(make_batch(3)))
        second = asyncio.create_task(transport.send(make_batch(2, start=3)))
        await asyncio.sleep(1.0)
        assert not first.done() and not second.done()
        assert len(transport._link.producer) == 5  # librdkafka's count of records queued or out: both batches
        started = time.monotonic()
        await transport.close()
        for sending in (first, second):
            with pytest.raises(DeliveryError) as info:
                await sending
            assert not info.value.permanent and "closed before Kafka acknowledged" in info.value.reason
        assert time.monotonic() - started < 2.0
    finally:
        silent.close()


async def test_a_record_the_producer_refuses_fails_its_own_batch_alone(tansu: str) -> None:
    """A record over the producer's ``message.max.bytes`` (1 MB) fails its batch at once and for good; the batches
    out beside it are delivered, on the same producer."""
    topic = unique("ah-topic")
    transport = kafka_transport(tansu, topic, max_in_flight=4)
    before, after = make_batch(2), make_batch(2, start=3)
    m = make_batch(1, start=2).messages[0]
    big = Batch(
        1,
        "big",
        [Message(m.seq, m.id, m.event_type, m.list_id, m.profile_id, b'"' + b"x" * 1_100_000 + b'"')],
    )
    try:
        results = await asyncio.gather(
            transport.send(before), transport.send(big), transport.send(after), return_exceptions=True
        )
    finally:
        await transport.close()
    assert [type(r).__name__ for r in results] == ["Receipt", "DeliveryError", "Receipt"]
    refused = results[1]
    assert isinstance(refused, DeliveryError)
    assert refused.permanent and "a record is larger than the broker accepts" in refused.reason
    records = await asyncio.to_thread(read_topic, tansu, topic, 4)
    assert sorted(r.value() for r in records) == sorted(m.body for m in before.messages + after.messages)


async def test_an_unreachable_broker_fails_every_batch_in_flight_retryable() -> None:
    transport = kafka_transport(f"127.0.0.1:{free_port()}", unique("ah-topic"), max_in_flight=4)
    try:
        results = await asyncio.gather(
            *(transport.send(make_batch(2, start=i * 2)) for i in range(3)), return_exceptions=True
        )
    finally:
        await transport.close()
    for result in results:
        assert isinstance(result, DeliveryError), result
        assert not result.permanent and "all brokers are down or unreachable" in result.reason
