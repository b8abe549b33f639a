"""The NATS JetStream transport against real nats-server processes; nats-py reads the streams back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest

from actionhooks.errors import DeliveryError, ValidationError
from actionhooks.integrations import TransportContext, open_transport, parse_settings
from actionhooks.integrations.base import MAX_IN_FLIGHT, REPLAY_HEADER, Batch, SideMark
from actionhooks.integrations.nats.transport import Settings
from tests import brokers
from tests.brokers import free_port, loopback_context, make_batch, run_nats, unique
from tests.support import eventually

# fixtures of tests.brokers, visible to this module's tests
nats_server, nats_auth_server, nats_workdir = (
    brokers.nats_server,
    brokers.nats_auth_server,
    brokers.nats_workdir,
)


def nats_transport(servers: str, subject: str, **extra: Any) -> Any:
    s = parse_settings({"type": "nats", "servers": servers, "subject": subject, **extra})
    return open_transport(s, loopback_context())


async def stream_messages(js: Any, stream: str) -> list[Any]:
    info = await js.stream_info(stream)
    return [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]


@pytest.fixture
async def jetstream(nats_server: str) -> AsyncIterator[tuple[Any, str, str]]:
    """A JetStream context, and a fresh stream capturing ``<prefix>.>``: yields (js, stream, prefix)."""
    nc = await nats.connect(nats_server)
    js = nc.jetstream()
    stream, prefix = unique("AH"), unique("ah")
    await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
    yield js, stream, prefix
    await js.delete_stream(stream)
    await nc.close()


def test_settings_validate_the_subject_and_hide_credentials() -> None:
    s = parse_settings(
        {
            "type": "nats",
            "servers": "nats://n1.example.com:4222, tls://n2.example.com",
            "subject": "events.{list_id}.{event_type}",
            "credentials": {"user": "app", "password": "s3cret"},
        }
    )
    assert isinstance(s, Settings)
    assert s.hosts() == ["n1.example.com", "n2.example.com"]
    assert (s.max_batch_size, s.timeout_s) == (500, 0.0)
    assert s.public()["credentials"] == {"user": "***", "password": "***", "token": "***", "creds": "***"}
    assert "s3cret" not in repr(s)
    for subject in ("events.{profile}", "events.*", "a..b", "has space", "{list_id.__class__}"):
        with pytest.raises(ValidationError) as info:
            parse_settings({"type": "nats", "servers": ["nats://h:4222"], "subject": subject})
        assert info.value.field == "transport.subject", subject
    with pytest.raises(ValidationError) as info:
        parse_settings({"type": "nats", "servers": "h", "subject": "s", "credentials": {"user": "u"}})
    assert info.value.field == "transport.credentials"


async def test_each_event_is_acknowledged_on_its_subject_with_the_id_header(
    nats_server: str, jetstream: tuple[Any, str, str]
) -> None:
    js, stream, prefix = jetstream
    transport = nats_transport(nats_server, prefix + ".{list_id}.{event_type}")
    with_list = make_batch(300, profiles=5, list_id=12)
    without_list = make_batch(3, list_id=None, event_type="campaign_launch")
    batch = Batch(1, "b", with_list.messages + without_list.messages)
    try:
        receipt = await transport.send(batch)
    finally:
        await transport.close()
    assert receipt.response_excerpt == "303 messages acknowledged"
    got = await stream_messages(js, stream)
    assert [m.data for m in got] == [m.body for m in batch.messages]  # one stream: log order kept
    assert [m.headers["Nats-Msg-Id"] for m in got] == [m.id for m in batch.messages]
    assert {m.subject for m in got} == {f"{prefix}.12.deliv", f"{prefix}.0.campaign_launch"}
    assert [m.headers["Event-Type"] for m in got[-3:]] == ["campaign_launch"] * 3


async def test_a_retried_batch_is_deduplicated_by_jetstream(
    nats_server: str, jetstream: tuple[Any, str, str]
) -> None:
    js, stream, prefix = jetstream
    transport = nats_transport(nats_server, prefix + ".events")
    batch = make_batch(20)
    try:
        await transport.send(batch)
        receipt = await transport.send(batch)
    finally:
        await transport.close()
    assert receipt.response_excerpt == "20 messages acknowledged (20 duplicates)"
    assert [m.data for m in await stream_messages(js, stream)] == [m.body for m in batch.messages]


async def test_no_stream_for_the_subject_is_retryable(nats_server: str) -> None:
    transport = nats_transport(nats_server, unique("nobody") + ".events")
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(2))
    assert not info.value.permanent and "no JetStream stream" in info.value.reason
    await transport.close()


async def test_an_unreachable_server_is_retryable() -> None:
    transport = nats_transport(f"nats://127.0.0.1:{free_port()}", "x")
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert not info.value.permanent and "unreachable" in info.value.reason
    await transport.close()


async def test_wrong_credentials_are_a_permanent_error(nats_auth_server: str) -> None:
    transport = nats_transport(
        nats_auth_server, "allowed.x", credentials={"user": "app", "password": "wrong-password"}
    )
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.permanent and "refused the credentials" in info.value.reason
    assert "wrong-password" not in info.value.reason
    await transport.close()


async def test_a_publish_permission_violation_is_a_permanent_error(nats_auth_server: str) -> None:
    transport = nats_transport(
        nats_auth_server, "denied.{event_type}", credentials={"user": "limited", "password": "secret"}
    )
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(3))
    assert info.value.permanent and "permissions violation for publish" in info.value.reason.lower()
    await transport.close()


async def test_a_server_restart_is_retryable_and_the_transport_reconnects(nats_workdir: Path) -> None:
    port = free_port()
    credentials = {"user": "app", "password": "secret"}
    with run_nats(port, nats_workdir) as url:
        admin = await nats.connect(url, **credentials)
        await admin.jetstream().add_stream(name="AH", subjects=["allowed.>"])
        await admin.close()
        transport = nats_transport(url, "allowed.{list_id}", credentials=credentials)
        await transport.send(make_batch(2))
    try:
        with pytest.raises(DeliveryError) as info:
            await transport.send(make_batch(2))
        assert not info.value.permanent
        with run_nats(port, nats_workdir):
            await transport.send(make_batch(2))
            admin = await nats.connect(url, **credentials)
            assert len(await stream_messages(admin.jetstream(), "AH")) == 4
            await admin.close()
    finally:
        await transport.close()


async def test_a_server_lost_while_acks_are_awaited_fails_the_send_at_once(nats_workdir: Path) -> None:
    """nats-py leaves the acks still awaited pending when the connection ends: the send must fail then (retryable),
    not wait out its ack timeout (30 s) as it did when a server was restarted mid-batch."""
    credentials = {"user": "app", "password": "secret"}
    with contextlib.ExitStack() as server:
        url = server.enter_context(run_nats(free_port(), nats_workdir))
        silent = await nats.connect(url, allow_reconnect=False, **credentials)
        taken = await silent.subscribe("allowed.silent")  # takes each publish and never acks it
        transport = nats_transport(url, "allowed.silent", credentials=credentials)
        try:
            sending = asyncio.create_task(transport.send(make_batch(5)))
            await eventually(lambda: taken.delivered == 5)  # every message is out: the send awaits the acks
            assert not sending.done()
            started = time.monotonic()
            server.close()  # the server goes away with the acks
            with pytest.raises(DeliveryError) as info:
                await asyncio.wait_for(sending, timeout=10)
            assert time.monotonic() - started < 5
            assert not info.value.permanent and "connection lost" in info.value.reason
        finally:
            await transport.close()
            await silent.close()


async def test_a_loopback_server_is_refused_without_the_allow_list(nats_server: str) -> None:
    s = parse_settings({"type": "nats", "servers": nats_server, "subject": "x"})
    transport = open_transport(s, TransportContext())
    with pytest.raises(DeliveryError) as info:
        await transport.send(make_batch(1))
    assert info.value.permanent and "not public" in info.value.reason


async def test_a_replayed_batch_is_not_dropped_as_a_duplicate_and_carries_its_header(
    nats_server: str, jetstream: tuple[Any, str, str]
) -> None:
    js, stream, prefix = jetstream
    transport = nats_transport(nats_server, prefix + ".events")
    live = make_batch(20)
    replay = Batch(1, "1-replay-7-0-19", live.messages, SideMark(REPLAY_HEADER, "7"))
    try:
        await transport.send(live)
        first = await transport.send(replay)
        again = await transport.send(replay)  # a retried replay batch is still deduplicated
    finally:
        await transport.close()
    assert first.response_excerpt == "20 messages acknowledged"
    assert again.response_excerpt == "20 messages acknowledged (20 duplicates)"
    got = await stream_messages(js, stream)
    assert [m.data for m in got] == [m.body for m in live.messages] * 2
    assert [m.headers["Nats-Msg-Id"] for m in got[20:]] == [f"{m.id}:replay-7" for m in live.messages]
    assert all(REPLAY_HEADER not in (m.headers or {}) for m in got[:20])
    assert all(m.headers[REPLAY_HEADER] == "7" for m in got[20:])


def test_max_in_flight_defaults_to_one_and_is_bounded() -> None:
    base = {"type": "nats", "servers": "nats://h:4222", "subject": "s"}
    s = parse_settings(base)
    assert isinstance(s, Settings)
    assert s.max_in_flight == s.sends_in_flight() == 1
    s = parse_settings({**base, "max_in_flight": MAX_IN_FLIGHT})
    assert s.sends_in_flight() == MAX_IN_FLIGHT
    for bad in (0, MAX_IN_FLIGHT + 1, "4"):
        with pytest.raises(ValidationError) as info:
            parse_settings({**base, "max_in_flight": bad})
        assert info.value.field == "transport.max_in_flight", bad


async def test_batches_in_flight_are_all_acknowledged_each_in_its_own_order(
    nats_server: str, jetstream: tuple[Any, str, str]
) -> None:
    js, stream, prefix = jetstream
    transport = nats_transport(nats_server, prefix + ".{list_id}", max_in_flight=8)
    batches = [make_batch(1 if n % 2 else 40, list_id=n) for n in range(16)]
    try:
        receipts = await asyncio.gather(*(transport.send(batch) for batch in batches))
    finally:
        await transport.close()
    assert [r.response_excerpt for r in receipts] == [
        f"{len(b.messages)} messages acknowledged" for b in batches
    ]
    got = await stream_messages(js, stream)
    assert sorted(m.headers["Nats-Msg-Id"] for m in got) == sorted(m.id for b in batches for m in b.messages)
    for n, batch in enumerate(batches):  # each batch in its own order, whatever the others did meanwhile
        assert [m.data for m in got if m.subject == f"{prefix}.{n}"] == [m.body for m in batch.messages]


async def test_a_server_lost_with_batches_in_flight_fails_every_one_of_them_at_once(
    nats_workdir: Path,
) -> None:
    credentials = {"user": "app", "password": "secret"}
    with contextlib.ExitStack() as server:
        url = server.enter_context(run_nats(free_port(), nats_workdir))
        silent = await nats.connect(url, allow_reconnect=False, **credentials)
        taken = await silent.subscribe("allowed.silent")  # takes each publish and never acks it
        transport = nats_transport(url, "allowed.silent", credentials=credentials, max_in_flight=3)
        try:
            sending = [asyncio.create_task(transport.send(make_batch(4))) for _ in range(3)]
            await eventually(lambda: taken.delivered == 12)  # all three batches are out at once, none acked
            assert not any(s.done() for s in sending)
            started = time.monotonic()
            server.close()
            outcomes = await asyncio.wait_for(asyncio.gather(*sending, return_exceptions=True), timeout=10)
            assert time.monotonic() - started < 5
            for outcome in outcomes:
                assert isinstance(outcome, DeliveryError), outcome
                assert not outcome.permanent and "connection lost" in outcome.reason
        finally:
            await transport.close()
            await silent.close()
