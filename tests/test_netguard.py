"""The net guard at connect time (issue 9 §4): every address a broker transport connects to is one the guard
checked — a name is not resolved a second time by the client library (DNS rebinding) — and a Kafka cluster cannot
send the producer to an address the guard refuses by announcing it as a broker (advertised listeners).

Rebinding without real DNS: the guard is given a resolver that answers ``localhost`` with 127.0.0.2 (the one address
the tests' allow-list opens) and, asked again, with 127.0.0.1; the system's resolver — the one a client library uses
when it resolves the name itself — answers 127.0.0.1, which the guard refuses. A listener on each address counts
the connections it gets: the allowed one must get them, the refused one none.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actionhooks.errors import DeliveryError
from actionhooks.integrations import TransportContext, open_transport, parse_settings
from actionhooks.netguard import NetGuard, parse_nets
from tests.brokers import TansuBroker, free_port, make_batch, unique

ALLOWED, REFUSED = "127.0.0.2", "127.0.0.1"
NAME = "localhost"  # the system resolves it to REFUSED only
BANNER = b"HTTP/1.1 400 Bad Request\r\n\r\n"  # what an internal web server answers first
BANNER_AS_KAFKA = str(struct.unpack(">i", BANNER[:4])[0])  # how librdkafka reads it: a response size


class RebindingResolver:
    """The guard's resolver: ``answers`` in turn (the last one again once they run out); counts its calls."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [answer]


def rebinding_context() -> tuple[TransportContext, RebindingResolver]:
    resolver = RebindingResolver(ALLOWED, REFUSED)
    guard = NetGuard(parse_nets(f"{ALLOWED}/32"), resolver=resolver)
    return TransportContext(net_guard=guard), resolver


class Listener:
    """A TCP listener on ``host``:``port`` that counts connections, writes ``banner`` and closes each."""

    def __init__(self, host: str, port: int, banner: bytes = b"") -> None:
        self.host, self.port, self.banner = host, port, banner
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            writer.write(self.banner)
            await asyncio.sleep(0.05)
        finally:
            writer.close()


def shared_free_port() -> int:
    """A port free on both loopback addresses."""
    for _ in range(20):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind((ALLOWED, port))
            except OSError:
                continue
            return port
    raise AssertionError("no port free on both addresses")


@pytest.fixture
async def listeners() -> AsyncIterator[tuple[Listener, Listener]]:
    """A listener on the allowed address and one on the refused address, on the same port."""
    port = shared_free_port()
    async with Listener(ALLOWED, port) as allowed, Listener(REFUSED, port) as refused:
        yield allowed, refused


async def send_and_close(transport: Any) -> DeliveryError | None:
    try:
        await transport.send(make_batch(2))
    except DeliveryError as exc:
        return exc
    finally:
        await transport.close()
    return None


# -- the guard's own rules ----------------------------------------------------------------------------------


async def test_addresses_resolves_once_with_the_guards_resolver_and_checks_every_address() -> None:
    resolver = RebindingResolver(ALLOWED, REFUSED)
    guard = NetGuard(parse_nets(f"{ALLOWED}/32"), resolver=resolver)
    assert await guard.addresses("broker.example", 5672, "RabbitMQ") == [ALLOWED]
    with pytest.raises(DeliveryError) as info:  # the second answer is refused
        await guard.addresses("broker.example", 5672, "RabbitMQ")
    assert info.value.permanent and "not public" in info.value.reason
    assert resolver.calls == 2
    # an IP literal is not resolved
    assert await guard.addresses(f"[{ALLOWED}]", 1, "NATS") == [ALLOWED]
    assert resolver.calls == 2


async def test_any_refused_address_refuses_the_name_and_no_address_is_retryable() -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.1.2.3"]

    async def nothing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(DeliveryError) as info:
        await NetGuard(resolver=mixed).addresses("broker.example", 9092, "Kafka")
    assert info.value.permanent and "10.1.2.3" in info.value.reason
    with pytest.raises(DeliveryError) as info:
        await NetGuard(resolver=nothing).addresses("broker.example", 9092, "Kafka")
    assert not info.value.permanent and "cannot resolve Kafka host 'broker.example'" in info.value.reason


async def test_the_default_resolver_is_the_systems() -> None:
    guard = NetGuard([ipaddress.ip_network("127.0.0.0/8")])
    assert await guard.addresses("localhost", 80, "NATS") == ["127.0.0.1"]


# -- DNS rebinding: the client connects to the address that was checked --------------------------------------


async def test_rabbitmq_connects_to_the_checked_address_not_the_name_again(
    listeners: tuple[Listener, Listener],
) -> None:
    allowed, refused = listeners
    context, resolver = rebinding_context()
    settings = {"type": "rabbitmq_queue", "host": NAME, "port": allowed.port, "user": "u", "password": "p"}
    transport = open_transport(parse_settings(settings | {"queue": unique("q")}), context)
    error = await send_and_close(transport)
    assert error is not None and not error.permanent  # the listener is no broker
    assert (allowed.connections, refused.connections, resolver.calls) == (1, 0, 1)


async def test_nats_connects_to_the_checked_address_not_the_name_again(
    listeners: tuple[Listener, Listener],
) -> None:
    allowed, refused = listeners
    context, resolver = rebinding_context()
    settings = {"type": "nats", "servers": f"nats://{NAME}:{allowed.port}", "subject": "a.b"}
    transport = open_transport(parse_settings(settings), context)
    error = await send_and_close(transport)
    assert error is not None and not error.permanent
    assert (allowed.connections, refused.connections, resolver.calls) == (1, 0, 1)


async def test_kafka_bootstraps_from_the_checked_address_not_the_name_again() -> None:
    """Tansu on the allowed address (announcing itself there); the producer delivers through it, and the refused
    address on the same port gets nothing."""
    port = shared_free_port()
    broker = TansuBroker(port, host=ALLOWED)
    broker.start()
    try:
        async with Listener(REFUSED, port) as refused:
            context, resolver = rebinding_context()
            settings = {"type": "kafka", "bootstrap_servers": f"{NAME}:{port}", "topic": unique("ah-topic")}
            transport = open_transport(parse_settings(settings), context)
            assert await send_and_close(transport) is None
            assert refused.connections == 0
            assert resolver.calls == 1  # the announced broker is an address: nothing more to resolve
    finally:
        broker.close()


async def test_kafka_with_tls_connects_only_to_the_address_the_guard_checked(
    listeners: tuple[Listener, Listener],
) -> None:
    """With TLS the certificate is checked against the name, yet librdkafka never resolves it: the guard proxy
    makes the TLS connection to the address the guard checked (the allowed one, where the handshake fails), and
    when a reconnection's resolution answers the refused address, it is refused before any connection. The refused
    address gets no TCP connection at all."""
    allowed, refused = listeners
    context, resolver = rebinding_context()
    settings = {
        "type": "kafka",
        "bootstrap_servers": f"{NAME}:{allowed.port}",
        "topic": "t",
        "security_protocol": "SSL",
    }
    error = await send_and_close(open_transport(parse_settings(settings), context))
    assert refused.connections == 0
    assert error is not None and error.permanent, error
    assert f"Kafka host {NAME!r} refused: destination address {REFUSED}" in error.reason, error.reason
    assert allowed.connections >= 1 and resolver.calls >= 2  # once per connection, never by librdkafka


# -- Kafka: the brokers a cluster announces ------------------------------------------------------------------


async def test_kafka_refuses_a_cluster_announcing_a_refused_broker_and_never_echoes_its_answer() -> None:
    """Tansu (allowed) announces a broker on an address the guard refuses, where a web server answers: the send
    fails permanently naming that broker, the refused address gets no connection at all (so no record can reach
    the cluster: its only broker is reached through that announcement), and the error says nothing of what
    answered."""
    internal_port = shared_free_port()
    broker = TansuBroker(host=ALLOWED, advertised=f"{REFUSED}:{internal_port}")
    broker.start()
    try:
        async with Listener(REFUSED, internal_port, BANNER) as internal:
            context, _ = rebinding_context()
            settings = {"type": "kafka", "bootstrap_servers": broker.servers, "topic": unique("ah-topic")}
            transport = open_transport(parse_settings(settings), context)
            error = await send_and_close(transport)
        assert internal.connections == 0
        assert error is not None and error.permanent, error
        assert f"{REFUSED}:{internal_port}" in error.reason and "refused" in error.reason
        assert BANNER_AS_KAFKA not in error.reason and "HTTP" not in error.reason
    finally:
        broker.close()


async def test_kafka_follows_a_changed_announcement_only_to_a_checked_address() -> None:
    """A cluster announcing itself (allowed) first: records are delivered. Then the broker comes back announcing
    a refused address: librdkafka's metadata refresh points node's endpoint there, the next connection is
    checked and refused — the refused address never gets a connection — and the send fails permanently."""
    port, internal_port = shared_free_port(), shared_free_port()
    first = TansuBroker(port, host=ALLOWED)
    first.start()
    context = TransportContext(net_guard=NetGuard(parse_nets(f"{ALLOWED}/32")))
    topic = unique("ah-topic")
    settings = {"type": "kafka", "bootstrap_servers": first.servers, "topic": topic}
    transport = open_transport(parse_settings(settings), context)
    try:
        await transport.send(make_batch(2))
    finally:
        first.close()
    second = TansuBroker(port, host=ALLOWED, advertised=f"{REFUSED}:{internal_port}")
    second.start()
    try:
        async with Listener(REFUSED, internal_port, BANNER) as internal:
            for _ in range(5):  # as the hook's worker would: the broker's restart may fail a send first
                try:
                    await transport.send(make_batch(2))
                except DeliveryError as exc:
                    error: DeliveryError | None = exc
                    if exc.permanent:
                        break
                else:
                    error = None
            await transport.close()
        assert internal.connections == 0
        assert error is not None and error.permanent, error
        assert f"announces broker node 111 at {REFUSED}:{internal_port}, which is refused" in error.reason
    finally:
        second.close()


def topics_of(servers: str) -> set[str]:
    from confluent_kafka.admin import AdminClient

    # the admin client's metadata request goes to the bootstrap broker, which answers it
    return set(AdminClient({"bootstrap.servers": servers}).list_topics(timeout=10).topics)


async def test_kafka_errors_never_echo_what_a_port_answered() -> None:
    """A "broker" that is a web server (allowed): the reason says the brokers are unreachable, not what it sent
    (librdkafka reads its first four bytes as a response size and says so)."""
    async with Listener(ALLOWED, shared_free_port(), BANNER) as web:
        context, _ = rebinding_context()
        settings = {"type": "kafka", "bootstrap_servers": f"{ALLOWED}:{web.port}", "topic": "t"}
        error = await send_and_close(open_transport(parse_settings(settings), context))
    assert error is not None and web.connections >= 1
    assert "all brokers are down or unreachable" in error.reason, error.reason
    assert BANNER_AS_KAFKA not in error.reason and "an answer that is not Kafka's" in error.reason
