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

The proxy runs in a thread of its own with its own event loop: its relaying never takes turns of the service's loop
(ingest, other hooks). Endpoints listen on 127.0.0.1, on ephemeral ports, from :meth:`GuardProxy.start` until
:meth:`GuardProxy.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ...errors import DeliveryError, UnreadableFrame
from ...netguard import NetGuard

LOOPBACK = "127.0.0.1"
MAX_FRAME = 128 * 1024 * 1024  # beyond librdkafka's receive.message.max.bytes (100 MB) and message.max.bytes
MAX_BROKERS = 512  # node ids one cluster may announce (each is an endpoint)
NOT_KAFKA = "an answer that is not Kafka's"

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
    server: asyncio.Server | None = None
    links: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def local_port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


class GuardProxy:
    """One producer's endpoints and connections (see the module's docstring). ``start`` and ``close`` are called
    from any thread but the proxy's own; ``refused`` and ``failure`` are read from any thread."""

    def __init__(
        self,
        guard: NetGuard,
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- from the transport's thread ------------------------------------------------------------------------

    def start(self, servers: list[tuple[str, int]]) -> list[str]:
        """Start the proxy's thread and an endpoint per bootstrap server; the endpoints (``127.0.0.1:port``), in
        the order of ``servers``, for librdkafka's ``bootstrap.servers``."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="kafka-guard-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        return self._call(self._open_bootstrap(servers))

    def close(self) -> None:
        """Stop listening, close every connection and end the thread."""
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shut(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)

    def brokers_named(self, text: str) -> str:
        """``text`` (librdkafka's) with each endpoint's address replaced by the broker it stands for."""
        for endpoint in [*self._bootstrap, *self._nodes.values()]:
            if endpoint.server is not None and endpoint.server.sockets:
                local = f"{LOOPBACK}:{endpoint.local_port}"
                text = text.replace(local, broker_name(endpoint.host, endpoint.port))
        return text

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # -- in the proxy's loop ----------------------------------------------------------------------------------

    async def _open_bootstrap(self, servers: list[tuple[str, int]]) -> list[str]:
        for host, port in servers:
            endpoint = _Endpoint(f"{broker_name(host, port)} (bootstrap)", host, port)
            await self._listen(endpoint)
            self._bootstrap.append(endpoint)
        return [f"{LOOPBACK}:{e.local_port}" for e in self._bootstrap]

    async def _listen(self, endpoint: _Endpoint) -> None:
        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Coroutine[Any, Any, None]:
            return self._serve(endpoint, reader, writer)

        endpoint.server = await asyncio.start_server(accept, LOOPBACK, 0)

    async def _shut(self) -> None:
        endpoints = [*self._bootstrap, *self._nodes.values()]
        for endpoint in endpoints:
            if endpoint.server is not None:
                endpoint.server.close()
        quiet = 0
        while quiet < 3:  # connections accepted just before the close get their task in the next turns
            links = [link for endpoint in endpoints for link in endpoint.links]
            for link in links:
                link.cancel()
            await asyncio.gather(*links, return_exceptions=True)
            quiet = 0 if links else quiet + 1
            await asyncio.sleep(0.005)  # and the sockets closed above are closed in the next turns

    async def _node(self, node_id: int, host: str, port: int) -> int:
        """The local port of node ``node_id``'s endpoint (made on its first announcement). A node announced at a
        new address has its connections closed: the next one goes there, checked at connect."""
        endpoint = self._nodes.get(node_id)
        if endpoint is None:
            if len(self._nodes) >= MAX_BROKERS:
                raise UnreadableFrame(f"the cluster announces more than {MAX_BROKERS} brokers")
            endpoint = _Endpoint(f"node {node_id}", host, port)
            await self._listen(endpoint)
            self._nodes[node_id] = endpoint
        elif (endpoint.host, endpoint.port) != (host, port):
            endpoint.host, endpoint.port = host, port
            current = asyncio.current_task()
            for link in list(endpoint.links):
                if link is not current:
                    link.cancel()
        return endpoint.local_port

    async def _serve(
        self, endpoint: _Endpoint, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        """One connection of librdkafka's: the broker's name resolved and checked once, a checked address connected
        to, then the frames relayed until either side closes."""
        task = asyncio.current_task()
        assert task is not None
        endpoint.links.add(task)
        broker_writer: asyncio.StreamWriter | None = None
        try:
            host, port = endpoint.host, endpoint.port
            where = broker_name(host, port)
            try:
                addresses = await self.guard.addresses(host, port, "Kafka")
            except DeliveryError as exc:
                if not exc.permanent:
                    self.failure = f"{endpoint.label}: {exc.reason}"
                elif self.refused is None:
                    self.refused = (
                        exc.reason
                        if endpoint in self._bootstrap
                        else f"the cluster announces broker {endpoint.label} at {where}, which is refused: "
                        f"{exc.reason}"
                    )
                return
            connected = await self._connect(endpoint, addresses, host, port)
            if connected is None:
                return
            broker_reader, broker_writer = connected
            await self._relay(endpoint, client_reader, client_writer, broker_reader, broker_writer)
        except asyncio.CancelledError:
            pass
        finally:
            endpoint.links.discard(task)
            for writer in (client_writer, broker_writer):
                if writer is not None:
                    writer.close()

    async def _connect(
        self, endpoint: _Endpoint, addresses: list[str], host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the first of the checked ``addresses`` that answers (TLS: the certificate checked
        against ``host``); None, with ``failure`` set, when none does."""
        name = host.strip("[]")
        for address in addresses:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    return await asyncio.open_connection(
                        address,
                        port,
                        ssl=self.tls_context,
                        server_hostname=name if self.tls_context is not None else None,
                    )
            except TimeoutError:
                why = "timed out"
            except ssl.SSLCertVerificationError as exc:
                why = f"TLS certificate not accepted: {exc.verify_message}"
            except ssl.SSLError as exc:
                why = f"TLS handshake failed ({exc.reason})"
            except OSError as exc:
                why = os.strerror(exc.errno) if exc.errno else type(exc).__name__
            self.failure = f"{endpoint.label}: connect to {broker_name(address, port)} failed: {why}"
        return None

    async def _relay(
        self,
        endpoint: _Endpoint,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        broker_reader: asyncio.StreamReader,
        broker_writer: asyncio.StreamWriter,
    ) -> None:
        asked: dict[int, tuple[int, int]] = {}  # correlation id → (api key, api version)
        requests = asyncio.ensure_future(self._requests(client_reader, broker_writer, asked))
        answers = asyncio.ensure_future(self._answers(endpoint, broker_reader, client_writer, asked))
        try:
            await asyncio.wait((requests, answers), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (requests, answers):
                task.cancel()
            await asyncio.gather(requests, answers, return_exceptions=True)

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, asked: dict[int, tuple[int, int]]
    ) -> None:
        """librdkafka → broker: each request's correlation id noted, the bytes passed on unchanged."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readexactly(4)
                size = int.from_bytes(head, "big", signed=True)
                if not 8 <= size <= MAX_FRAME:
                    return
                body = await reader.readexactly(size)
                api_key, version, correlation = struct.unpack_from(">hhi", body)
                asked[correlation] = (api_key, version)
                writer.write(head)
                writer.write(body)
                await writer.drain()

    async def _answers(
        self,
        endpoint: _Endpoint,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        asked: dict[int, tuple[int, int]],
    ) -> None:
        """broker → librdkafka: each answer matched to its request; the ones that carry addresses rewritten."""
        try:
            while True:
                head = await reader.readexactly(4)
                size = int.from_bytes(head, "big", signed=True)
                if not 4 <= size <= MAX_FRAME:
                    raise UnreadableFrame(NOT_KAFKA)
                body = await reader.readexactly(size)
                request = asked.pop(int.from_bytes(body[:4], "big", signed=True), None)
                if request is None:
                    raise UnreadableFrame(NOT_KAFKA)
                api_key, version = request
                if api_key == API_VERSIONS:
                    body = cap_api_versions(body, version)
                elif api_key == METADATA:
                    body = await self._rewrite_metadata(body, version)
                    head = len(body).to_bytes(4, "big")
                elif api_key in (FIND_COORDINATOR, DESCRIBE_CLUSTER):
                    raise UnreadableFrame(f"an answer to api key {api_key}, which announces brokers")
                writer.write(head)
                writer.write(body)
                await writer.drain()
        except asyncio.IncompleteReadError:
            self.failure = f"{endpoint.label}: the broker closed the connection"
        except ConnectionResetError:
            self.failure = f"{endpoint.label}: the broker reset the connection"
        except ConnectionError:
            return  # librdkafka's side went away
        except UnreadableFrame as exc:
            self.failure = f"{endpoint.label}: {exc}; the connection was closed"

    async def _rewrite_metadata(self, body: bytes, version: int) -> bytes:
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
                local_port = await self._node(node_id, host, port)
                out += struct.pack(">ih", node_id, len(LOOPBACK)) + LOOPBACK.encode()
                out += struct.pack(">i", local_port) + body[rack_start:pos]
            out += body[pos:]
            return bytes(out)
        except (struct.error, UnicodeDecodeError) as exc:
            raise UnreadableFrame("a malformed Metadata answer") from exc


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
