"""The Kafka guard proxy's TLS path and its ApiVersions rewrite (``integrations/kafka/guard_proxy.py``).

TLS end to end without a public CA: Tansu behind a TLS terminator the test runs (a self-signed certificate for
``localhost``), announcing ``localhost:<terminator>``; the proxy is given a context that trusts that certificate (the
transport always uses the system's CAs; no setting of the service changes that). librdkafka speaks PLAINTEXT to the
proxy's endpoints; the proxy resolves ``localhost`` with the guard's resolver (to the terminator's address), makes
the TLS connection with SNI ``localhost`` and checks the certificate against that name.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from actionhooks.errors import UnreadableFrame
from actionhooks.integrations.kafka.guard_proxy import GuardProxy, cap_api_versions
from actionhooks.netguard import NetGuard, parse_nets
from tests.brokers import TansuBroker, free_port, unique

TERMINATOR = "127.0.0.2"  # the address the guard allows


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for DNS name ``name`` and its key, as PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


class Terminator:
    """TLS on ``TERMINATOR``:``port`` in front of a plain ``target`` port; records the SNI names it was asked."""

    def __init__(self, port: int, target: int, cert: Path, key: Path) -> None:
        self.port, self.target = port, target
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.names: list[str | None] = []
        self.context.sni_callback = lambda _sock, name, _ctx: self.names.append(name)  # type: ignore[assignment,func-returns-value]
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Terminator:
        self._server = await asyncio.start_server(self._relay, TERMINATOR, self.port, ssl=self.context)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)


async def always_terminator(host: str, port: int) -> list[str]:
    return [TERMINATOR]


@pytest.fixture
async def tls_cluster(tmp_path: Path) -> AsyncIterator[tuple[Terminator, Path]]:
    """Tansu behind a TLS terminator whose certificate names ``localhost``; yields it and the certificate."""
    cert, key = self_signed(tmp_path, "localhost")
    tls_port = free_port()
    broker = TansuBroker(advertised=f"localhost:{tls_port}")
    broker.start()
    try:
        async with Terminator(tls_port, broker.port, cert, key) as terminator:
            yield terminator, cert
    finally:
        broker.close()


def produce(endpoints: list[str], topic: str, count: int) -> list[str | None]:
    """``count`` records through the proxy's endpoints (PLAINTEXT); each delivery report's error, or None."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": ",".join(endpoints), "acks": "all", "enable.idempotence": True})
    reports: list[str | None] = []
    for i in range(count):
        producer.produce(topic, f"r{i}".encode(), on_delivery=lambda e, _m: reports.append(e and e.str()))
    producer.flush(20)
    producer.close()
    return reports


async def test_tls_through_the_proxy_checks_the_certificate_against_the_brokers_name(
    tls_cluster: tuple[Terminator, Path],
) -> None:
    terminator, cert = tls_cluster
    guard = NetGuard(parse_nets(f"{TERMINATOR}/32"), resolver=always_terminator)
    proxy = GuardProxy(
        guard, asyncio.get_running_loop(), tls=True, tls_context=ssl.create_default_context(cafile=str(cert))
    )
    endpoints = await asyncio.to_thread(proxy.start, [("localhost", terminator.port)])
    try:
        reports = await asyncio.to_thread(produce, endpoints, unique("ah-topic"), 3)
    finally:
        await asyncio.to_thread(proxy.close)
    assert reports == [None, None, None], (reports, proxy.failure)
    assert proxy.refused is None
    assert terminator.names and set(terminator.names) == {"localhost"}  # SNI: the broker's name


async def test_tls_through_the_proxy_refuses_a_certificate_of_another_name(
    tls_cluster: tuple[Terminator, Path], tmp_path: Path
) -> None:
    terminator, _ = tls_cluster
    other, _ = self_signed(tmp_path, "other.example")  # trusted, but not the broker's name
    context = ssl.create_default_context(cafile=str(other))
    guard = NetGuard(parse_nets(f"{TERMINATOR}/32"), resolver=always_terminator)
    proxy = GuardProxy(guard, asyncio.get_running_loop(), tls=True, tls_context=context, connect_timeout_s=2)
    endpoints = await asyncio.to_thread(proxy.start, [("localhost", terminator.port)])
    try:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": ",".join(endpoints)})
        with pytest.raises(KafkaException):  # no broker answered
            await asyncio.to_thread(admin.list_topics, timeout=3)
    finally:
        await asyncio.to_thread(proxy.close)
    assert proxy.failure is not None and "TLS certificate not accepted" in proxy.failure, proxy.failure


def api_versions_v0(*entries: tuple[int, int, int]) -> bytes:
    body = struct.pack(">ihi", 7, 0, len(entries))  # correlation id, no error, the array
    return body + b"".join(struct.pack(">hhh", *e) for e in entries)


def api_versions_v3(*entries: tuple[int, int, int]) -> bytes:
    body = struct.pack(">ih", 7, 0) + bytes([len(entries) + 1])  # compact array: count + 1
    body += b"".join(struct.pack(">hhh", *e) + b"\x00" for e in entries)  # each with no tagged field
    return body + struct.pack(">i", 0) + b"\x00"  # throttle time, no tagged field


@pytest.mark.parametrize("encode, version", [(api_versions_v0, 0), (api_versions_v3, 3)])
def test_api_versions_are_capped_in_place(encode: object, version: int) -> None:
    assert callable(encode)
    answer = encode((0, 3, 11), (1, 4, 17), (3, 0, 12), (18, 0, 4), (22, 0, 5))
    capped = cap_api_versions(answer, version)
    assert len(capped) == len(answer)
    assert capped == encode((0, 3, 9), (1, 4, 15), (3, 0, 8), (18, 0, 4), (22, 0, 5))


def test_a_broker_without_a_readable_metadata_version_is_refused() -> None:
    with pytest.raises(UnreadableFrame):
        cap_api_versions(api_versions_v0((3, 9, 12)), 0)


async def test_librdkafka_texts_name_the_brokers_not_the_endpoints() -> None:
    guard = NetGuard(parse_nets(f"{TERMINATOR}/32"), resolver=always_terminator)
    proxy = GuardProxy(guard, asyncio.get_running_loop(), tls=False)
    [endpoint] = await asyncio.to_thread(proxy.start, [("k1.example", 9093)])
    try:
        port = int(endpoint.rsplit(":", 1)[1])
        text = f"sasl_plaintext://{endpoint}/bootstrap: failed; 127.0.0.1:{port}1 is another"
        named = proxy.brokers_named(text)
    finally:
        await asyncio.to_thread(proxy.close)
    assert named == f"sasl_plaintext://k1.example:9093/bootstrap: failed; 127.0.0.1:{port}1 is another"


async def test_starting_the_proxy_on_its_own_loop_is_refused_not_a_deadlock() -> None:
    """``start`` and ``close`` wait for the proxy's loop: called on that loop they would wait for themselves."""
    guard = NetGuard(parse_nets(f"{TERMINATOR}/32"), resolver=always_terminator)
    proxy = GuardProxy(guard, asyncio.get_running_loop(), tls=False)
    with pytest.raises(RuntimeError, match="from another thread"):
        proxy.start([("k1.example", 9093)])
    await asyncio.to_thread(proxy.close)
