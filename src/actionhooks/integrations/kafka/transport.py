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

Every address the producer connects to passes the net guard, before it connects: librdkafka is given only the
loopback endpoints of a guard proxy of its own (``guard_proxy.py``), one per bootstrap server and one per broker the
cluster announces (its advertised listeners, which Metadata answers are rewritten to name). On each connection the
proxy resolves the broker's name once with the guard, connects to a checked address and relays; a refused broker
gets no connection, and the send fails permanently naming it. With ``SSL``/``SASL_SSL`` the proxy makes the TLS
connection (the certificate checked against the broker's name) and librdkafka speaks ``PLAINTEXT``/``SASL_PLAINTEXT``
to the proxy. The proxy lives and dies with the producer. Error texts never carry what a destination answered.
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
from ..base import Batch, BatchSize, BatchTimeout, Message, Receipt, TransportContext, TransportSettings
from .connection import CONNECT_TIMEOUT_S, ConnectionSettings
from .guard_proxy import GuardProxy

DELIVERY_TIMEOUT_S = 30.0
_log = logging.getLogger(__name__)
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_SERVER = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.%]+)\]|(?P<host>[^\s:/\[\]]+)):(?P<port>\d{1,5})")
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
        self._proxy: GuardProxy | None = None  # the producer's: every connection it makes goes through it
        self._client_error: Any = None  # the last error librdkafka reported outside a delivery report
        self._lock = asyncio.Lock()
        self._thread: ThreadPoolExecutor | None = None  # this hook's own: its blocking calls wait only here
        self._closing = (
            threading.Event()
        )  # ends a wait for delivery reports that a cancelled send left behind

    async def send(self, batch: Batch) -> Receipt:
        """Produce every message of ``batch``; return once the broker acknowledged all (``acks=all``)."""
        async with self._lock:
            await self._blocking(self._send_blocking, batch)
        return Receipt(response_excerpt=f"{len(batch.messages)} records acknowledged")

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
            producer = self._producer if self._producer is not None else self._new_producer()
            failures: list[Any] = []
            pending = len(batch.messages)

            def report(error: Any, _record: Any) -> None:
                nonlocal pending
                pending -= 1
                if error is not None:
                    failures.append(error)

            self._client_error = None
            producer.poll(0)
            self._raise_refused()
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
                self._raise_refused()
                if time.monotonic() > deadline:
                    raise DeliveryError("Kafka did not acknowledge the records in time")
                if self._closing.is_set():
                    raise DeliveryError("the transport closed before Kafka acknowledged the records")
                producer.poll(0.05)
            grace = time.monotonic() + 0.5  # "all brokers down" may precede the reason (a refused login)
            while pending and _rank(self._client_error) == 2 and time.monotonic() < grace:
                producer.poll(0.05)
            self._raise_refused()  # whatever else failed: it came of the refused broker
            if failures or pending:
                raise self._error(failures[0] if failures else self._client_error)
        except DeliveryError:
            self._discard()
            raise
        except (KafkaException, ValueError, TypeError) as exc:
            self._discard()
            raise DeliveryError(f"Kafka producer error: {exc}", permanent=isinstance(exc, TypeError)) from exc

    def _new_producer(self) -> Any:
        """A producer whose every connection goes through a new guard proxy (see the module's docstring)."""
        from confluent_kafka import Producer

        s = self.settings
        tls = s.security_protocol.endswith("SSL")
        self._proxy = GuardProxy(self._guard, tls=tls, connect_timeout_s=CONNECT_TIMEOUT_S)
        endpoints = self._proxy.start([_host_port(server) for server in s.servers])
        config: dict[str, Any] = s.client_config("actionhooks") | {
            "bootstrap.servers": ",".join(endpoints),
            # the proxy makes the TLS connection: librdkafka speaks to it in the clear, on loopback
            "security.protocol": s.security_protocol.replace("SASL_SSL", "SASL_PLAINTEXT").replace(
                "SSL", "PLAINTEXT"
            ),
            "enable.idempotence": s.idempotent,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
            "partitioner": "murmur2_random",
            "compression.type": s.compression,
            "error_cb": self._on_client_error,
            "logger": _log,
        }
        self._producer = Producer(config)
        return self._producer

    def _on_client_error(self, error: Any) -> None:
        if _rank(error) >= _rank(self._client_error):
            self._client_error = error

    def _raise_refused(self) -> None:
        if self._proxy is not None and self._proxy.refused is not None:
            raise DeliveryError(
                f"Kafka {','.join(self.settings.servers)}: {self._proxy.refused}", permanent=True
            )

    def _discard(self) -> None:
        producer, self._producer = self._producer, None
        proxy, self._proxy = self._proxy, None
        if producer is not None:
            producer.purge()
            producer.poll(0)
            if hasattr(producer, "close"):  # confluent-kafka ≥ 2.11: nothing left to flush after the purge
                producer.close()  # librdkafka's threads end: no connection to the proxy after this
        if proxy is not None:
            proxy.close()

    def _text(self, error: Any) -> str:
        """A librdkafka error's text, naming the brokers rather than the proxy's endpoints, without echoes."""
        text = _scrub(error.str())
        return self._proxy.brokers_named(text) if self._proxy is not None else text

    def _error(self, error: Any) -> DeliveryError:
        """A librdkafka error (a delivery report's, or the client's) as a ``DeliveryError``."""
        from confluent_kafka import KafkaError

        where = f"Kafka {','.join(self.settings.servers)} topic {self.settings.topic!r}"
        if error is None:
            return DeliveryError(f"{where}: the records were not acknowledged{self._cause()}")
        code = error.code()
        if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            s = self.settings
            who = f" for user {s.sasl_username!r} ({s.sasl_mechanism})" if s.sasl_username else ""
            return DeliveryError(f"{where}: authentication failed{who}: {self._text(error)}", permanent=True)
        if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
            return DeliveryError(f"{where}: not authorized to produce: {self._text(error)}", permanent=True)
        if code in (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART):
            return DeliveryError(f"{where}: the topic does not exist", permanent=True)
        if code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE):
            return DeliveryError(f"{where}: a record is larger than the broker accepts", permanent=True)
        if code == KafkaError._UNSUPPORTED_FEATURE or (error.fatal() and "dempoten" in error.str()):
            return DeliveryError(
                f"{where}: {self._text(error)} (set idempotent false for brokers without idempotent producers)",
                permanent=True,
            )
        if code == KafkaError._ALL_BROKERS_DOWN:
            return DeliveryError(f"{where}: all brokers are down or unreachable{self._cause()}")
        return DeliveryError(
            f"{where}: {self._text(error)}{self._cause()}", permanent=not error.retriable() and error.fatal()
        )

    def _cause(self) -> str:
        """`` (last: <why>)`` — the last connection to a broker that failed (refused, timed out, closed by a
        broker that expected TLS or a SASL login: a ``security_protocol`` mismatch) — or nothing. What the peer
        answered is not repeated."""
        failure = self._proxy.failure if self._proxy is not None else None
        return f" (last: {failure})" if failure else ""


def _scrub(text: str) -> str:
    """A librdkafka error text without the peer's bytes it may quote (a port that does not speak Kafka)."""
    return _ECHOED.sub("an answer that is not Kafka's", text)


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
