"""Kafka transport (confluent-kafka): ``{"type": "kafka", "bootstrap_servers", "topic", ...}``.

Each event is one record: value = the event's message JSON, key per ``key`` (the profile id by default, so one
profile's events stay in order within one partition), headers ``event_id``, ``event_type`` and ``content-type``.
The producer is idempotent with ``acks=all`` (``idempotent: false`` for brokers older than Kafka 0.11) and uses the
``murmur2_random`` partitioner, so a key lands on the partition the Java client would choose.

``send`` produces the whole batch at once and then waits, in the hook's own thread (librdkafka's poll is blocking;
never the loop's shared default executor, where one unresponsive broker would hold threads other hooks need), for
every record's delivery report: the reports decide the outcome. Failures → the producer is discarded (queued records
purged) and the next ``send`` makes a new one. All brokers down, timeouts and other retriable errors → retryable;
failed authentication or authorization, a topic that does not exist (and is not auto-created) or a record too large
→ permanent.

Every address the producer connects to passes the net guard. The bootstrap servers are resolved and checked by the
guard, and with ``PLAINTEXT``/``SASL_PLAINTEXT`` the producer is given the checked addresses (not the names, which
could answer otherwise the second time: DNS rebinding); with ``SSL``/``SASL_SSL`` it gets the names (the certificate
is checked against them, and librdkafka has no separate TLS host name). The brokers the cluster announces (its
advertised listeners, which librdkafka connects to on its own) are checked before the first record is produced:
any refused one is a permanent error naming it, and no record is produced. librdkafka offers Python no hook at
connect time (``connect_cb``/``resolve_cb`` are C-only), so every connection it makes is also audited from its
``broker`` debug log ("Connecting to <address>"): a connection to a refused address — an announcement changed by a
later metadata refresh, a name rebound — ends the send with a permanent error and the producer is discarded. That
audit acts after the fact: the connection attempt (Kafka's first request, never a record of an unchecked cluster)
has been made. Error texts never carry what a destination answered.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from ...errors import DeliveryError, ValidationError
from ...netguard import NetGuard
from ..base import Batch, BatchSize, BatchTimeout, Message, Receipt, TransportContext, TransportSettings
from .connection import CONNECT_TIMEOUT_S, ConnectionSettings

DELIVERY_TIMEOUT_S = 30.0
METADATA_ASK_S = 0.2  # also how long a refused connection the audit catches can go on
_log = logging.getLogger(__name__)
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_SERVER = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.%]+)\]|(?P<host>[^\s:/\[\]]+)):(?P<port>\d{1,5})")
# librdkafka's ``broker`` debug line, logged right before each TCP connect, with the address it resolved
_CONNECTING = re.compile(
    r"(?P<broker>\S+): Connecting to ipv[46]#\[?(?P<address>[0-9A-Fa-f:.%]+?)\]?:(?P<port>\d+) "
)
# what librdkafka reads of a peer's first bytes when they are not Kafka (a 4-byte size or correlation id)
_ECHOED = re.compile(
    r"Invalid response size -?\d+ \([^)]*\)(?:: increase receive\.message\.max\.bytes)?"
    r"|Response for unknown CorrelationId -?\d+"
)

_T = TypeVar("_T")
KeyChoice = Literal["profile_id", "list_id", "event_type", "event_id", "none"]


class Settings(ConnectionSettings, TransportSettings, tag="kafka", kw_only=True):
    """The connection (``connection.py``), the topic and how records are made."""

    max_batch_size: BatchSize = 500
    timeout_s: BatchTimeout = 0.0
    topic: str
    key: KeyChoice = "profile_id"
    idempotent: bool = True
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"

    def check(self) -> None:
        super().check()
        for server in self.servers:
            match = _SERVER.fullmatch(server)
            if match is None or not 1 <= int(match["port"]) <= 65535:
                raise ValidationError(f"{server!r} is not host:port", "bootstrap_servers")
        if not _TOPIC.fullmatch(self.topic) or self.topic in (".", ".."):
            raise ValidationError(
                "topic must be 1-249 characters of letters, digits, '.', '_' and '-'", "topic"
            )

    def hosts(self) -> list[str]:
        return [_host_port(s)[0] for s in self.servers]

    def field_of_host(self, host: str) -> str | None:
        return "bootstrap_servers"


def _host_port(server: str) -> tuple[str, int]:
    match = _SERVER.fullmatch(server)
    assert match is not None
    return match["v6"] or match["host"], int(match["port"])


def record_key(message: Message, choice: KeyChoice) -> bytes | None:
    """The record key for ``message``; None (no key: the partitioner spreads such records) when absent."""
    value: str | int | None = {
        "profile_id": message.profile_id,
        "list_id": message.list_id,
        "event_type": message.event_type,
        "event_id": message.id,
        "none": None,
    }[choice]
    return None if value is None else str(value).encode()


class KafkaTransport:
    def __init__(self, settings: Settings, context: TransportContext) -> None:
        self.settings = settings
        self._guard = context.net_guard
        self._producer: Any = None
        self._client_error: Any = None  # the last error librdkafka reported outside a delivery report
        self._client_log = _ClientLog(context.net_guard)
        self._lock = asyncio.Lock()
        self._thread: ThreadPoolExecutor | None = None  # this hook's own: its blocking calls wait only here
        self._closing = (
            threading.Event()
        )  # ends a wait for delivery reports that a cancelled send left behind

    async def send(self, batch: Batch) -> Receipt:
        """Produce every message of ``batch``; return once the broker acknowledged all (``acks=all``)."""
        async with self._lock:
            if self._producer is None:
                await self._connect()
            await self._blocking(self._send_blocking, batch)
        return Receipt(response_excerpt=f"{len(batch.messages)} records acknowledged")

    async def _connect(self) -> None:
        """A new producer, bootstrapped from the checked addresses, whose cluster's announced brokers all pass the
        guard; raises ``DeliveryError`` (the producer discarded) otherwise."""
        s = self.settings
        pin = not s.security_protocol.endswith("SSL")  # TLS checks the certificate against the name
        bootstrap = []
        for host, port in (_host_port(server) for server in s.servers):
            addresses = await self._guard.addresses(host, port, "Kafka")
            bootstrap += [_server(a, port) for a in addresses] if pin else [_server(host, port)]
        brokers = await self._blocking(self._open_blocking, bootstrap)
        try:
            for host, port in brokers:
                try:
                    await self._guard.addresses(host, port, "Kafka")
                except DeliveryError as exc:
                    raise DeliveryError(
                        f"Kafka {','.join(s.servers)}: the cluster announces broker {_server(host, port)}, "
                        f"which is refused: {exc.reason}",
                        permanent=exc.permanent,
                    ) from exc
        except DeliveryError:
            await self._blocking(self._discard)
            raise

    def _open_blocking(self, bootstrap: list[str]) -> list[tuple[str, int]]:
        """Make the producer and read the cluster's metadata (all topics: asking for one would make librdkafka
        reach its partitions' leaders): ``(host, port)`` of every broker it announces. Asked again every
        ``METADATA_ASK_S`` until it comes, a refused login or the audit ends the wait, or ``CONNECT_TIMEOUT_S``."""
        from confluent_kafka import KafkaError, KafkaException

        producer = self._new_producer(bootstrap)
        self._client_error = None
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        try:
            while True:
                try:
                    metadata = producer.list_topics(timeout=METADATA_ASK_S)
                    break
                except KafkaException as exc:
                    producer.poll(0)  # serves the client's errors and log: a refused login, the last failure
                    if self._client_log.refused is not None:
                        raise DeliveryError(self._client_log.refused, permanent=True) from exc
                    if self._closing.is_set():  # the hook stopped or was edited: no reason to wait on
                        raise DeliveryError("the transport closed before Kafka answered") from exc
                    error = exc.args[0] if exc.args else None
                    if _rank(self._client_error) >= 3 or time.monotonic() > deadline:
                        if _rank(self._client_error) >= 2:
                            error = self._client_error
                        elif error is not None and error.code() in (
                            KafkaError._TRANSPORT,
                            KafkaError._TIMED_OUT,
                            KafkaError._ALL_BROKERS_DOWN,
                        ):
                            error = KafkaError(KafkaError._ALL_BROKERS_DOWN)
                        raise self._error(error) from exc
            producer.poll(0)  # serves the log: the connections made so far are audited
            if self._client_log.refused is not None:
                raise DeliveryError(self._client_log.refused, permanent=True)
        except DeliveryError:
            self._discard()
            raise
        return [(b.host, b.port) for b in metadata.brokers.values()]

    async def close(self) -> None:
        self._closing.set()
        async with self._lock:
            if self._thread is not None:  # after what a cancelled send left running there
                await self._blocking(self._close_blocking)
                self._thread.shutdown(wait=False)
                self._thread = None

    def _close_blocking(self) -> None:
        # A send returns only once every record of its batch is acknowledged, so what is still queued here
        # belongs to a batch that was cut off (the hook stopped or was edited): it is sent again from the cursor,
        # and waiting on a broker that does not answer would hold the hook's stop for seconds.
        self._discard()

    async def _blocking(self, call: Callable[..., _T], *args: Any) -> _T:
        """``call(*args)`` in this transport's one thread (calls are serialized by ``_lock`` anyway)."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-hook")
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)

    def _send_blocking(self, batch: Batch) -> None:
        from confluent_kafka import KafkaException

        try:
            producer = self._producer
            assert producer is not None, "send opens the producer first"
            failures: list[Any] = []
            pending = len(batch.messages)

            def report(error: Any, _record: Any) -> None:
                nonlocal pending
                pending -= 1
                if error is not None:
                    failures.append(error)

            self._client_error = None
            producer.poll(0)
            if self._client_log.refused is not None:
                raise DeliveryError(self._client_log.refused, permanent=True)
            for m in batch.messages:
                headers = [
                    ("event_id", m.id),
                    ("event_type", m.event_type),
                    ("content-type", "application/json"),
                ]
                if batch.mark is not None:
                    headers.append((batch.mark.name, batch.mark.value))
                key = record_key(m, self.settings.key)
                while True:
                    try:
                        producer.produce(
                            self.settings.topic, m.body, key, headers=headers, on_delivery=report
                        )
                        break
                    except BufferError:  # the local queue is full: let deliveries drain it
                        producer.poll(0.05)
            deadline = time.monotonic() + DELIVERY_TIMEOUT_S + 5
            while pending and not failures and _rank(self._client_error) < 2:
                if self._client_log.refused is not None:
                    raise DeliveryError(self._client_log.refused, permanent=True)
                if time.monotonic() > deadline:
                    raise DeliveryError("Kafka did not acknowledge the records in time")
                if self._closing.is_set():
                    raise DeliveryError("the transport closed before Kafka acknowledged the records")
                producer.poll(0.05)
            grace = time.monotonic() + 0.5  # "all brokers down" may precede the reason (a refused login)
            while pending and _rank(self._client_error) == 2 and time.monotonic() < grace:
                producer.poll(0.05)
            if (
                self._client_log.refused is not None
            ):  # whatever else failed: it came of the refused connection
                raise DeliveryError(self._client_log.refused, permanent=True)
            if failures or pending:
                raise self._error(failures[0] if failures else self._client_error)
        except DeliveryError:
            self._discard()
            raise
        except (KafkaException, ValueError, TypeError) as exc:
            self._discard()
            raise DeliveryError(f"Kafka producer error: {exc}", permanent=isinstance(exc, TypeError)) from exc

    def _new_producer(self, bootstrap: list[str]) -> Any:
        from confluent_kafka import Producer

        s = self.settings
        self._client_log = _ClientLog(self._guard)
        config: dict[str, Any] = s.client_config("actionhooks") | {
            "bootstrap.servers": ",".join(bootstrap),
            "debug": "broker",  # each connection's address, for the audit (a dozen lines per connection)
            "enable.idempotence": s.idempotent,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
            "partitioner": "murmur2_random",
            "compression.type": s.compression,
            "error_cb": self._on_client_error,
            "logger": self._client_log,
        }
        self._producer = Producer(config)
        return self._producer

    def _on_client_error(self, error: Any) -> None:
        if _rank(error) >= _rank(self._client_error):
            self._client_error = error

    def _discard(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.purge()
            producer.poll(0)

    def _error(self, error: Any) -> DeliveryError:
        """A librdkafka error (a delivery report's, or the client's) as a ``DeliveryError``."""
        from confluent_kafka import KafkaError

        where = f"Kafka {','.join(self.settings.servers)} topic {self.settings.topic!r}"
        if self._client_log.refused is not None:
            return DeliveryError(self._client_log.refused, permanent=True)
        if error is None:
            return DeliveryError(f"{where}: the records were not acknowledged")
        code = error.code()
        if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            s = self.settings
            who = f" for user {s.sasl_username!r} ({s.sasl_mechanism})" if s.sasl_username else ""
            return DeliveryError(f"{where}: authentication failed{who}: {error.str()}", permanent=True)
        if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
            return DeliveryError(f"{where}: not authorized to produce: {error.str()}", permanent=True)
        if code in (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART):
            return DeliveryError(f"{where}: the topic does not exist", permanent=True)
        if code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE):
            return DeliveryError(f"{where}: a record is larger than the broker accepts", permanent=True)
        if code == KafkaError._UNSUPPORTED_FEATURE or (error.fatal() and "dempoten" in error.str()):
            return DeliveryError(
                f"{where}: {_scrub(error.str())} (set idempotent false for brokers without idempotent producers)",
                permanent=True,
            )
        if code == KafkaError._ALL_BROKERS_DOWN:
            return DeliveryError(f"{where}: all brokers are down or unreachable{self._client_log.cause()}")
        return DeliveryError(
            f"{where}: {_scrub(error.str())}", permanent=not error.retriable() and error.fatal()
        )


class _ClientLog:
    """The producer's ``logger``: librdkafka's log lines go on to this module's logger; the last connection
    failure (facility ``FAIL``) is kept, to say why no broker is reachable; and each connection's address (the
    ``broker`` debug line "Connecting to …") is checked by the net guard, the first refusal kept in ``refused``."""

    def __init__(self, guard: NetGuard) -> None:
        self.guard = guard
        self.last_failure: str | None = None
        self.refused: str | None = None

    def log(
        self, level: int, msg: str, *args: Any
    ) -> None:  # called as log(level, "%s [%s] %s", fac, name, text)
        if len(args) == 3 and args[0] == "FAIL" and "(_DESTROY" not in str(args[2]):  # not librdkafka's own
            self.last_failure = str(args[2]).partition("]: ")[2] or str(args[2])  # without the thread's name
        elif (
            len(args) == 3
            and args[0] == "CONNECT"
            and self.refused is None
            and (connecting := _CONNECTING.search(str(args[2]))) is not None
        ):
            self.audit(connecting["broker"], connecting["address"], int(connecting["port"]))
        if level < 7:  # the debug lines asked for the audit stay out of the log
            _log.log(level, msg, *args)

    def audit(self, broker: str, address: str, port: int) -> None:
        refusal = self.guard.refusal(address)
        if refusal is not None:
            where = _server(address, port)
            self.refused = f"Kafka broker {broker} resolved to a refused address ({where}): {refusal}"

    def cause(self) -> str:
        """`` (last: <why>)`` — refused, timed out, or closed by a broker that expected TLS or a SASL login (a
        ``security_protocol`` mismatch) — or nothing. What the peer answered is not repeated."""
        return f" (last: {_scrub(self.last_failure)})" if self.last_failure else ""


def _scrub(text: str) -> str:
    """A librdkafka error text without the peer's bytes it may quote (a port that does not speak Kafka)."""
    return _ECHOED.sub("an answer that is not Kafka's", text)


def _server(host: str, port: int) -> str:
    """``host:port`` as librdkafka reads it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _rank(error: Any) -> int:
    """How decisive a client-level error is: 3 credentials refused or fatal, 2 no broker reachable (both end the
    wait for delivery reports), 1 anything else, 0 none."""
    if error is None:
        return 0
    from confluent_kafka import KafkaError

    if error.fatal() or error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        return 3
    return 2 if error.code() == KafkaError._ALL_BROKERS_DOWN else 1


def open(settings: TransportSettings, context: TransportContext) -> KafkaTransport:
    assert isinstance(settings, Settings)
    return KafkaTransport(settings, context)
