"""The Kafka guard proxy: librdkafka connects only to loopback endpoints of this proxy, and the proxy connects to the
brokers — each time to an address the net guard checked at that moment.

librdkafka offers Python no hook at connect time and connects on its own wherever the cluster's metadata points (its
advertised listeners), resolving names itself. So the producer is given loopback endpoints instead of brokers: one
per bootstrap server and one per broker (node id) the cluster announces. When librdkafka connects to an endpoint, the
proxy resolves the real broker's name once with the guard (:meth:`NetGuard.addresses`: any refused address refuses
the name), connects to a checked address — never resolving again (DNS rebinding) — and relays bytes. A refused
broker gets no connection at all: the proxy closes librdkafka's and keeps the refusal in :attr:`GuardProxy.refused`
for the transport to report.

The proxy reads Kafka's framing (a 4-byte size, then the request header's api key, version and correlation id; a
response's correlation id) in both directions, and changes only answers that carry broker addresses:

- **Metadata** (api key 3): every announced broker's host and port become its endpoint's (an endpoint is made when
  a node id first appears; a node announced at a new address has its connections closed, and the next one goes to
  the new address, checked at connect).
- **ApiVersions** (18): rewritten in place (same length) to cap the versions whose answers the proxy would otherwise
  have to parse: Metadata at v8 (the last before flexible versions), Produce at v9 and Fetch at v15 (later ones may
  carry brokers' addresses in tagged fields, KIP-951). librdkafka then asks for versions the proxy reads.
- **FindCoordinator** (10) and **DescribeCluster** (60) also announce brokers; the idempotent producer does not use
  them (only a transactional one does), so such an answer closes the connection rather than pass an unchecked
  address on.

Anything the proxy cannot read (a size beyond ``MAX_FRAME``, an unknown correlation id, a malformed answer) closes
the connection, and ``failure`` says so without repeating what the peer sent. So SASL's pre-Kafka-1.0 raw framing
(``SaslHandshake`` v0 followed by unframed tokens) is not supported; SASL bytes framed as Kafka requests pass through
unchanged.

With TLS (``tls=True``: the hook's ``SSL``/``SASL_SSL``) the proxy makes the TLS connection — system CAs, the
certificate checked against the broker's name, SNI the name — and librdkafka speaks ``PLAINTEXT``/``SASL_PLAINTEXT``
to the endpoint; so the name is resolved by the guard only.

The proxy relays on the event loop it is given — the service's, where the HTTP transport's connections live too —
while :meth:`GuardProxy.start` and :meth:`GuardProxy.close` are called from the hook's own thread. (It had a thread
and a loop of its own until every relayed chunk was measured to cost more in handing the GIL between that thread
and the service's loop than the relaying itself: a hook of one-event batches, 64 in flight, delivered 17 % more on
the service's loop, at 17 % less CPU an event — BENCHMARKS.md.) Bytes are relayed by protocol callbacks as they
arrive (only the answers it rewrites are read whole), and reading one side pauses while the other side's writes
queue. Endpoints listen on 127.0.0.1, on ephemeral ports, from :meth:`GuardProxy.start` until
:meth:`GuardProxy.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import struct
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from ...errors import DeliveryError, UnreadableFrame
from ...netguard import NetGuard

LOOPBACK = "127.0.0.1"
MAX_FRAME = 128 * 1024 * 1024  # beyond librdkafka's receive.message.max.bytes (100 MB) and message.max.bytes
MAX_BROKERS = 512  # node ids one cluster may announce (each is an endpoint)
NOT_KAFKA = "an answer that is not Kafka's"
_ENDPOINT = re.compile(r"127\.0\.0\.1:(?P<port>\d+)")

METADATA, FIND_COORDINATOR, API_VERSIONS, DESCRIBE_CLUSTER = 3, 10, 18, 60
# the highest version of an API whose answers the proxy reads (or which carry no broker address)
VERSION_CAPS = {0: 9, 1: 15, METADATA: 8}  # Produce, Fetch, Metadata
UNSUPPORTED_VERSION = 35

_T = TypeVar("_T")


def broker_name(host: str, port: int) -> str:
    """``host:port`` as Kafka writes it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(eq=False)
class _Endpoint:
    """A loopback listener standing for one broker: a bootstrap server, or a node id of the cluster."""

    label: str  # "localhost:9092 (bootstrap)", "node 1"
    host: str
    port: int
    local_port: int = 0
    sock: socket.socket | None = None  # bound at once; served by ``server`` once the loop starts it
    server: asyncio.Server | None = None
    links: set[_Link] = field(default_factory=set)


class GuardProxy:
    """One producer's endpoints and connections (see the module's docstring), on ``loop``. ``start`` and ``close``
    are called from any thread but the loop's (they wait for it); ``refused`` and ``failure`` are read from any
    thread."""

    def __init__(
        self,
        guard: NetGuard,
        loop: asyncio.AbstractEventLoop,
        *,
        tls: bool,
        tls_context: ssl.SSLContext | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.guard = guard
        self.tls_context = (tls_context or ssl.create_default_context()) if tls else None
        self.connect_timeout_s = connect_timeout_s
        self.refused: str | None = None  # the first refusal: a broker the guard refused
        self.failure: str | None = None  # the last connection to a broker that failed, and why
        self._bootstrap: list[_Endpoint] = []
        self._nodes: dict[int, _Endpoint] = {}
        self._opening: set[asyncio.Task[None]] = set()  # links being checked and connected
        self._loop = loop
        self._closed = False

    # -- from the transport's thread ------------------------------------------------------------------------

    def start(self, servers: list[tuple[str, int]]) -> list[str]:
        """An endpoint per bootstrap server; the endpoints (``127.0.0.1:port``), in the order of ``servers``, for
        librdkafka's ``bootstrap.servers``."""
        return self._call(self._open_bootstrap(servers))

    def close(self) -> None:
        """Stop listening and close every connection (once)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # a loop already gone has nothing left open
            asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(timeout=5)

    def brokers_named(self, text: str) -> str:
        """``text`` (librdkafka's) with each endpoint's address replaced by the broker it stands for."""
        brokers = {
            str(e.local_port): broker_name(e.host, e.port) for e in [*self._bootstrap, *self._nodes.values()]
        }
        return _ENDPOINT.sub(lambda m: brokers.get(m["port"], m[0]), text)

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """``coroutine``'s result, run on the proxy's loop — from another thread (on the loop's own it would wait
        for itself)."""
        try:
            own = asyncio.get_running_loop() is self._loop
        except RuntimeError:  # no loop runs in this thread
            own = False
        if own:
            coroutine.close()
            raise RuntimeError(
                "GuardProxy.start and close wait for the proxy's loop: call them from another thread"
            )
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # -- in the proxy's loop ----------------------------------------------------------------------------------

    async def _open_bootstrap(self, servers: list[tuple[str, int]]) -> list[str]:
        for host, port in servers:
            endpoint = _Endpoint(f"{broker_name(host, port)} (bootstrap)", host, port)
            self._listen(endpoint)
            self._bootstrap.append(endpoint)
        await asyncio.sleep(0)  # the servers start listening
        return [f"{LOOPBACK}:{e.local_port}" for e in self._bootstrap]

    def _listen(self, endpoint: _Endpoint) -> None:
        """Bind ``endpoint``'s socket now (its port is known at once); it accepts once the loop serves it (a
        connection made before waits in the backlog)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOOPBACK, 0))
        sock.listen(64)
        sock.setblocking(False)
        endpoint.local_port, endpoint.sock = int(sock.getsockname()[1]), sock
        loop = asyncio.get_running_loop()

        async def serve() -> None:
            endpoint.server = await loop.create_server(lambda: _Link(self, endpoint), sock=sock)

        self._spawn(serve())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    async def _shut(self) -> None:
        await asyncio.sleep(0)  # servers still starting start
        endpoints = [*self._bootstrap, *self._nodes.values()]
        for task in list(self._opening):
            task.cancel()
        await asyncio.gather(*self._opening, return_exceptions=True)
        for endpoint in endpoints:
            if endpoint.server is not None:
                endpoint.server.close()
            elif endpoint.sock is not None:  # its server never started
                endpoint.sock.close()
        for _ in range(3):  # connections accepted just before the close, then the sockets' closing
            for endpoint in endpoints:
                for link in list(endpoint.links):
                    link.close()
            await asyncio.sleep(0.005)

    def node(self, node_id: int, host: str, port: int) -> int:
        """The local port of node ``node_id``'s endpoint (made on its first announcement). A node announced at a
        new address has its connections closed: the next one goes there, checked at connect."""
        endpoint = self._nodes.get(node_id)
        if endpoint is None:
            if len(self._nodes) >= MAX_BROKERS:
                raise UnreadableFrame(f"the cluster announces more than {MAX_BROKERS} brokers")
            endpoint = _Endpoint(f"node {node_id}", host, port)
            self._listen(endpoint)
            self._nodes[node_id] = endpoint
        elif (endpoint.host, endpoint.port) != (host, port):
            endpoint.host, endpoint.port = host, port
            for link in list(endpoint.links):
                asyncio.get_running_loop().call_soon(link.close)
        return endpoint.local_port

    async def open_link(self, link: _Link) -> None:
        """``link``'s broker: its name resolved and checked once, a checked address connected to (TLS: the
        certificate checked against the name); the link is closed when the guard refuses or none answers."""
        endpoint = link.endpoint
        host, port = endpoint.host, endpoint.port
        try:
            addresses = await self.guard.addresses(host, port, "Kafka")
        except DeliveryError as exc:
            if not exc.permanent:
                self.failure = f"{endpoint.label}: {exc.reason}"
            elif self.refused is None:
                self.refused = (
                    exc.reason
                    if endpoint in self._bootstrap
                    else f"the cluster announces broker {endpoint.label} at {broker_name(host, port)}, which is "
                    f"refused: {exc.reason}"
                )
            link.close()
            return
        loop = asyncio.get_running_loop()
        name = host.strip("[]")
        for address in addresses:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    await loop.create_connection(
                        lambda: _BrokerSide(link),
                        address,
                        port,
                        ssl=self.tls_context,
                        server_hostname=name if self.tls_context is not None else None,
                    )
                return
            except TimeoutError:
                why = "timed out"
            except ssl.SSLCertVerificationError as exc:
                why = f"TLS certificate not accepted: {exc.verify_message}"
            except ssl.SSLError as exc:
                why = f"TLS handshake failed ({exc.reason})"
            except OSError as exc:
                why = os.strerror(exc.errno) if exc.errno else type(exc).__name__
            self.failure = f"{endpoint.label}: connect to {broker_name(address, port)} failed: {why}"
        link.close()

    def rewrite_metadata(self, body: bytes, version: int) -> bytes:
        """A Metadata answer (v0–v8, header v0) with each broker's host and port replaced by its endpoint's."""
        if version > VERSION_CAPS[METADATA]:
            raise UnreadableFrame(f"a Metadata answer of version {version}")
        try:
            pos = 4 + (4 if version >= 3 else 0)  # the correlation id, the throttle time
            (count,) = struct.unpack_from(">i", body, pos)
            pos += 4
            if not 0 <= count <= MAX_BROKERS:
                raise UnreadableFrame(f"a Metadata answer announcing {count} brokers")
            out = bytearray(body[:pos])
            for _ in range(count):
                node_id, host_size = struct.unpack_from(">ih", body, pos)
                pos += 6
                if host_size < 0 or pos + host_size > len(body):
                    raise UnreadableFrame("a malformed Metadata answer")
                host = body[pos : pos + host_size].decode()
                pos += host_size
                (port,) = struct.unpack_from(">i", body, pos)
                pos += 4
                rack_start = pos
                if version >= 1:
                    (rack_size,) = struct.unpack_from(">h", body, pos)
                    pos += 2 + max(rack_size, 0)
                if not 0 < port < 65536 or pos > len(body):
                    raise UnreadableFrame("a malformed Metadata answer")
                local_port = self.node(node_id, host, port)
                out += struct.pack(">ih", node_id, len(LOOPBACK)) + LOOPBACK.encode()
                out += struct.pack(">i", local_port) + body[rack_start:pos]
            out += body[pos:]
            return bytes(out)
        except (struct.error, UnicodeDecodeError) as exc:
            raise UnreadableFrame("a malformed Metadata answer") from exc


class _Link(asyncio.Protocol):
    """One connection of librdkafka's to an endpoint (this protocol is its side) and the proxy's to the broker
    (``_BrokerSide``). Requests are passed on as they arrive, their correlation ids noted on the way; answers too,
    except those the proxy rewrites (read whole first). Reading one side pauses while the other's writes queue."""

    def __init__(self, proxy: GuardProxy, endpoint: _Endpoint) -> None:
        self.proxy, self.endpoint = proxy, endpoint
        self.client: asyncio.Transport | None = None
        self.broker: asyncio.Transport | None = None
        self.closed = False
        self.asked: dict[int, tuple[int, int]] = {}  # correlation id → (api key, api version)
        self._request_left = 0  # bytes of the current request still to pass on
        self._request_head = bytearray()
        self._answer_left = 0  # bytes of the current answer still to pass on
        self._answer_head = bytearray()
        self._answer_whole: bytearray | None = None  # an answer read whole, to rewrite
        self._answer_size = 0
        self._answer_asked = (0, 0)
        self._early: list[bytes] = []  # requests that came before the broker's connection

    # librdkafka's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.endpoint.links.add(self)
        self.proxy._spawn(self.proxy.open_link(self))

    def data_received(self, data: bytes) -> None:
        if not self._note_requests(data):
            self.close()
        elif self.broker is None:
            self._early.append(data)
        else:
            self.broker.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:
        if self.broker is not None:
            self.broker.pause_reading()

    def resume_writing(self) -> None:
        if self.broker is not None:
            self.broker.resume_reading()

    # the broker's side (through ``_BrokerSide``)
    def broker_connected(self, transport: asyncio.Transport) -> None:
        if self.closed:
            transport.close()
            return
        self.broker = transport
        for data in self._early:
            transport.write(data)
        self._early.clear()

    def broker_data(self, data: bytes) -> None:
        if self.closed or self.client is None:
            return
        try:
            self.client.writelines(self._answers(data))
        except UnreadableFrame as exc:
            self.proxy.failure = f"{self.endpoint.label}: {exc}; the connection was closed"
            self.close()

    def broker_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.proxy.failure = (
                f"{self.endpoint.label}: the broker "
                + ("reset" if isinstance(exc, ConnectionResetError) else "closed")
                + " the connection"
            )
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.endpoint.links.discard(self)
        for transport in (self.client, self.broker):
            if transport is not None:
                transport.close()

    def _note_requests(self, data: bytes) -> bool:
        """Note the correlation id of each request that starts in ``data``; False on a frame that is not Kafka's."""
        pos, size = 0, len(data)
        while pos < size:
            if self._request_left:
                step = min(self._request_left, size - pos)
                self._request_left -= step
                pos += step
                continue
            head = self._request_head
            pos = _fill(head, 12, data, pos)
            if len(head) < 12:
                break
            length, api_key, version, correlation = struct.unpack(">ihhi", head)
            if not 8 <= length <= MAX_FRAME:
                return False
            self.asked[correlation] = (api_key, version)
            self._request_left = length - 8
            head.clear()
        return True

    def _answers(self, data: bytes) -> list[bytes]:
        """What to pass on of ``data``: answers as they came, those that carry addresses rewritten."""
        out: list[bytes] = []
        pos, size = 0, len(data)
        while pos < size:
            if self._answer_left:
                step = min(self._answer_left, size - pos)
                out.append(data if step == size else data[pos : pos + step])
                self._answer_left -= step
                pos += step
                continue
            whole = self._answer_whole
            if whole is not None:
                pos = _fill(whole, self._answer_size, data, pos)
                if len(whole) == self._answer_size:
                    self._answer_whole = None
                    api_key, version = self._answer_asked
                    if api_key == API_VERSIONS:
                        body = cap_api_versions(bytes(whole), version)
                    else:
                        body = self.proxy.rewrite_metadata(bytes(whole), version)
                    out += (len(body).to_bytes(4, "big"), body)
                continue
            head = self._answer_head
            pos = _fill(head, 8, data, pos)
            if len(head) < 8:
                break
            length, correlation = struct.unpack(">ii", head)
            asked = self.asked.pop(correlation, None)
            if not 4 <= length <= MAX_FRAME or asked is None:
                raise UnreadableFrame(NOT_KAFKA)
            if asked[0] in (API_VERSIONS, METADATA):
                self._answer_whole, self._answer_size, self._answer_asked = bytearray(head[4:]), length, asked
            elif asked[0] in (FIND_COORDINATOR, DESCRIBE_CLUSTER):
                raise UnreadableFrame(f"an answer to api key {asked[0]}, which announces brokers")
            else:
                out.append(bytes(head))
                self._answer_left = length - 4
            head.clear()
        return out


class _BrokerSide(asyncio.Protocol):
    """The proxy's connection to the broker, for its ``_Link``."""

    def __init__(self, link: _Link) -> None:
        self.link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.link.broker_connected(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        self.link.broker_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.broker_lost(exc)

    def pause_writing(self) -> None:
        if self.link.client is not None:
            self.link.client.pause_reading()

    def resume_writing(self) -> None:
        if self.link.client is not None:
            self.link.client.resume_reading()


def _fill(buffer: bytearray, want: int, data: bytes, pos: int) -> int:
    """Add to ``buffer`` what ``data`` has from ``pos`` on, up to ``want`` bytes in all; where ``data`` goes on."""
    step = min(want - len(buffer), len(data) - pos)
    buffer += data[pos : pos + step]
    return pos + step


def cap_api_versions(body: bytes, version: int) -> bytes:
    """An ApiVersions answer (header v0; body v0–v2 or flexible v3+) with the highest versions of
    ``VERSION_CAPS`` lowered to their caps, in place (the same length)."""
    data = bytearray(body)
    try:
        pos = 4
        (error_code,) = struct.unpack_from(">h", data, pos)
        pos += 2
        flexible = version >= 3 and error_code != UNSUPPORTED_VERSION  # that one is answered as v0
        if flexible:
            count, pos = _uvarint(data, pos)
            count -= 1
        else:
            (count,) = struct.unpack_from(">i", data, pos)
            pos += 4
        for _ in range(max(count, 0)):
            api_key, lowest, highest = struct.unpack_from(">hhh", data, pos)
            cap = VERSION_CAPS.get(api_key)
            if cap is not None and highest > cap:
                if lowest > cap:
                    raise UnreadableFrame(f"the broker knows api key {api_key} only from version {lowest}")
                struct.pack_into(">h", data, pos + 4, cap)
            pos += 6
            if flexible:
                pos = _skip_tags(data, pos)
    except (struct.error, IndexError) as exc:
        raise UnreadableFrame("a malformed ApiVersions answer") from exc
    return bytes(data)


def _uvarint(data: bytearray, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise UnreadableFrame("a malformed varint")


def _skip_tags(data: bytearray, pos: int) -> int:
    count, pos = _uvarint(data, pos)
    for _ in range(count):
        _, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        pos += size
    return pos


__all__ = ["GuardProxy", "broker_name", "cap_api_versions"]
