"""Kafka transport (confluent-kafka): ``{"type": "kafka", "bootstrap_servers", "topic", ...}``.

Each event is one record: value = the event's message JSON, key per ``key`` (the profile id by default, so one
profile's events stay in order within one partition), headers ``event_id``, ``event_type`` and ``content-type``.
The producer is idempotent with ``acks=all`` (``idempotent: false`` for brokers older than Kafka 0.11) and uses the
``murmur2_random`` partitioner, so a key lands on the partition the Java client would choose.

``send`` produces the whole batch at once, on the event loop (``produce`` only queues), and waits for every record's
delivery report: the reports decide the outcome. The hook's own thread polls for them while any send waits
(librdkafka's poll is blocking; never the loop's shared default executor, where one unresponsive broker would hold
threads other hooks need) and settles each send as its reports come, so up to ``max_in_flight`` sends wait at once,
produced in the order they started. The first failure ends the producer (queued records purged) and fails every send
out on it; the next ``send`` makes a new one. A record the producer refuses before sending fails its own send alone.
All brokers down, timeouts and other retriable errors → retryable; failed authentication or authorization, a topic
that does not exist (and is not auto-created) or a record too large → permanent.

Every address the producer connects to passes the net guard, before it connects: librdkafka is given only the
loopback endpoints of a guard proxy of its own (``guard_proxy.py``), one per bootstrap server and one per broker the
cluster announces (its advertised listeners, which Metadata answers are rewritten to name). On each connection the
proxy resolves the broker's name once with the guard, connects to a checked address and relays; a refused broker
gets no connection, and the send fails permanently naming it. With ``SSL``/``SASL_SSL`` the proxy makes the TLS
connection (the certificate checked against the broker's name) and librdkafka speaks ``PLAINTEXT``/``SASL_PLAINTEXT``
to the proxy. The proxy lives and dies with the producer, and relays on the service's event loop. Error texts never
carry what a destination answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ...errors import DeliveryError, ValidationError
from ..base import (
    Batch,
    BatchSize,
    BatchTimeout,
    InFlight,
    Message,
    Receipt,
    TransportContext,
    TransportSettings,
)
from .connection import CONNECT_TIMEOUT_S, ConnectionSettings
from .guard_proxy import GuardProxy

DELIVERY_TIMEOUT_S = 30.0
_POLL_S = 0.05  # the longest a poll of the producer waits for a report
_DOWN_GRACE_S = 0.5  # "all brokers are down" may precede the reason (a refused login): waited for so long
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
    # batches out at once; above 1, order holds only as far as docs/transports/kafka.md#batches-in-flight says
    max_in_flight: InFlight = 1

    def sends_in_flight(self) -> int:
        return self.max_in_flight

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


@dataclass(eq=False)
class _Records:
    """One send's records awaiting their delivery reports. ``report`` runs in the hook's thread (librdkafka's
    delivery callback, served by the pump's poll); the outcome is settled in the loop's thread."""

    pending: int
    outcome: asyncio.Future[None]
    done: list[_Records] = field(default_factory=list)  # the link's sends whose reports came (or one failed)
    since: float = 0.0  # monotonic: when the records were produced
    error: Any = None  # the first failed report's error

    def report(self, error: Any, _record: Any) -> None:
        self.pending -= 1
        if error is not None and self.error is None:
            self.error = error
            self.done.append(self)
        elif self.pending == 0 and self.error is None:
            self.done.append(self)


@dataclass(eq=False)
class _Link:
    """One producer and its guard proxy, with the sends whose records it holds (oldest first); ended — its sends
    failed, the producer discarded — at the first failure, and the next send makes a new one."""

    producer: Any
    proxy: GuardProxy
    sends: dict[_Records, None] = field(default_factory=dict)
    done: list[_Records] = field(default_factory=list)
    client_error: Any = None  # the most decisive error librdkafka reported outside a delivery report
    pumping: bool = False
    ended: bool = False

    def on_client_error(self, error: Any) -> None:  # librdkafka's error_cb, served by the pump's poll
        if _rank(error) >= _rank(self.client_error):
            self.client_error = error


def _settle(outcomes: list[tuple[_Records, DeliveryError | None]]) -> None:
    """In the loop's thread: each send's outcome (a send cancelled meanwhile is left alone)."""
    for records, error in outcomes:
        if records.outcome.done():
            continue
        if error is None:
            records.outcome.set_result(None)
        else:
            records.outcome.set_exception(error)


class KafkaTransport:
    def __init__(self, settings: Settings, context: TransportContext) -> None:
        self.settings = settings
        self._guard = context.net_guard
        self._link: _Link | None = None  # the producer the next send produces on
        self._producing = asyncio.Lock()  # sends produce one after another, in the order they started
        # a link's sends and whether its pump runs, shared by the loop and the hook's thread
        self._sends_lock = threading.Lock()
        self._thread: ThreadPoolExecutor | None = None  # this hook's own: its blocking calls wait only here
        self._closing = threading.Event()  # ends the waits for delivery reports

    async def send(self, batch: Batch) -> Receipt:
        """Produce every message of ``batch``; return once the broker acknowledged all (``acks=all``). Up to
        ``max_in_flight`` sends wait at once, each on its own records' reports."""
        loop = asyncio.get_running_loop()
        records = _Records(len(batch.messages), loop.create_future())
        if not records.pending:
            return Receipt(response_excerpt="0 records acknowledged")
        async with self._producing:
            link = self._link
            if link is None or link.ended:
                link = self._link = await self._blocking(self._new_link, loop)
            await self._produce(link, batch, records)
        await records.outcome
        return Receipt(response_excerpt=f"{len(batch.messages)} records acknowledged")

    async def close(self) -> None:
        self._closing.set()
        async with self._producing:
            link, self._link = self._link, None
            if self._thread is not None:
                if link is not None:  # after its pump, which the closing ends
                    await self._blocking(self._finish, link, asyncio.get_running_loop())
                self._thread.shutdown(wait=False)
                self._thread = None

    async def _blocking(self, call: Callable[..., _T], *args: Any) -> _T:
        """``call(*args)`` in this transport's one thread, after what waits there (a link's pump)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(), call, *args)

    def _executor(self) -> ThreadPoolExecutor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-hook")
        return self._thread

    def _new_link(self, loop: asyncio.AbstractEventLoop) -> _Link:
        """A producer whose every connection goes through a new guard proxy (see the module's docstring)."""
        from confluent_kafka import KafkaException, Producer

        s = self.settings
        tls = s.security_protocol.endswith("SSL")
        proxy = GuardProxy(self._guard, loop, tls=tls, connect_timeout_s=CONNECT_TIMEOUT_S)
        endpoints = proxy.start([_host_port(server) for server in s.servers])
        link = _Link(None, proxy)
        config: dict[str, Any] = s.client_config("actionhooks") | {
            "bootstrap.servers": ",".join(endpoints),
            # the proxy makes the TLS connection: librdkafka speaks to it in the clear, on loopback
            "security.protocol": s.security_protocol.replace("SASL_SSL", "SASL_PLAINTEXT").replace(
                "SSL", "PLAINTEXT"
            ),
            "enable.idempotence": s.idempotent,
            "acks": "all",
            # one batch out at a time: nothing else comes before its reports, so nothing to wait for; more: a
            # millisecond lets the batches out together share requests (bench.transports, BENCHMARKS.md)
            "linger.ms": 0 if s.max_in_flight == 1 else 1,
            "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
            "partitioner": "murmur2_random",
            "compression.type": s.compression,
            "error_cb": link.on_client_error,
            "logger": _log,
        }
        try:
            link.producer = Producer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            proxy.close()
            raise _producer_error(exc) from exc
        return link

    async def _produce(self, link: _Link, batch: Batch, records: _Records) -> None:
        """Hand ``batch``'s records to ``link``'s producer, in the loop's thread: ``produce`` only queues (a full
        local queue waits for deliveries to drain it). A record the producer refuses fails this send alone."""
        from confluent_kafka import KafkaException

        records.done, records.since = link.done, time.monotonic()
        with self._sends_lock:
            link.sends[records] = None
        self._pump(link)
        try:
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
                        link.producer.produce(
                            self.settings.topic, m.body, key, headers=headers, on_delivery=records.report
                        )
                        break
                    except BufferError:  # the local queue is full: the pump's deliveries drain it
                        await asyncio.sleep(0.01)
                        if records.outcome.done():  # the link ended meanwhile
                            return
        except (KafkaException, ValueError, TypeError) as exc:
            with self._sends_lock:
                link.sends.pop(records, None)
            refused = isinstance(exc, KafkaException)
            _settle([(records, self._error(exc.args[0], link.proxy) if refused else _producer_error(exc))])

    def _pump(self, link: _Link) -> None:
        """Have the hook's thread serve ``link``'s delivery reports while any of its sends waits."""
        with self._sends_lock:
            if link.pumping or link.ended:
                return
            link.pumping = True
        self._executor().submit(self._serve, link, asyncio.get_running_loop())

    def _serve(self, link: _Link, loop: asyncio.AbstractEventLoop) -> None:
        """In the hook's thread: poll ``link``'s producer and settle each send as its reports come; end the link
        (every send out on it failed, the producer discarded) at the first failure. Returns when no send waits."""
        down_since: float | None = None  # when "all brokers are down" was seen: a better reason may follow
        try:
            while True:
                link.producer.poll(_POLL_S)
                outcomes: list[tuple[_Records, DeliveryError | None]] = []
                culprit: _Records | None = None
                for records in link.done:
                    if records.error is None:
                        outcomes.append((records, None))
                    elif culprit is None:
                        culprit = records
                link.done.clear()
                with self._sends_lock:
                    for records, _ in outcomes:
                        link.sends.pop(records, None)
                    oldest = next(iter(link.sends), None)
                if _rank(link.client_error) == 2:
                    down_since = down_since or time.monotonic()
                    if oldest is None or oldest.since > down_since:  # those waiting then were acknowledged
                        link.client_error = down_since = None
                reason = self._ending(link, culprit, oldest, down_since)
                if reason is not None:
                    outcomes += self._end(link, reason, culprit)
                if outcomes:
                    _call_in(loop, _settle, outcomes)
                with self._sends_lock:
                    if link.ended or not link.sends:
                        link.pumping = False
                        return
        except Exception:  # a bug must not leave sends waiting for ever
            _log.exception("Kafka transport: serving delivery reports failed")
            failed = self._end(link, DeliveryError("internal error while waiting for Kafka's reports"))
            _call_in(loop, _settle, failed)
            with self._sends_lock:
                link.pumping = False

    def _ending(
        self, link: _Link, culprit: _Records | None, oldest: _Records | None, down_since: float | None
    ) -> DeliveryError | None:
        """Why ``link`` ends now, or None: a refused broker, a failed report, credentials refused, the transport
        closing, no broker reachable (after a short grace for a more decisive reason), a report overdue."""
        if link.proxy.refused is not None:  # whatever else failed: it came of the refused broker
            return DeliveryError(
                f"Kafka {','.join(self.settings.servers)}: {link.proxy.refused}", permanent=True
            )
        if culprit is not None:
            return self._error(culprit.error, link.proxy)
        if _rank(link.client_error) == 3:
            return self._error(link.client_error, link.proxy)
        if self._closing.is_set():
            return self._closed()
        if down_since is not None and time.monotonic() - down_since >= _DOWN_GRACE_S:
            return self._error(link.client_error, link.proxy)
        if oldest is not None and time.monotonic() > oldest.since + DELIVERY_TIMEOUT_S + 5:
            return DeliveryError("Kafka did not acknowledge the records in time")
        return None

    def _end(
        self, link: _Link, reason: DeliveryError, culprit: _Records | None = None
    ) -> list[tuple[_Records, DeliveryError | None]]:
        """In the hook's thread: end ``link`` — every send still out on it fails (with ``reason``; those beside the
        ``culprit``, whose own report failed, are retryable), the producer is discarded (queued records purged)."""
        with self._sends_lock:
            if link.ended:
                return []
            link.ended = True
            sends, link.sends = list(link.sends), {}
        outcomes: list[tuple[_Records, DeliveryError | None]] = []
        for records in sends:
            if culprit is None or records is culprit:
                error = DeliveryError(reason.reason, permanent=reason.permanent)
            else:
                error = DeliveryError(f"{reason.reason} (in another batch out at the same time)")
            outcomes.append((records, error))
        producer, link.producer = link.producer, None
        if producer is not None:
            producer.purge()
            producer.poll(0)
            if hasattr(producer, "close"):  # confluent-kafka ≥ 2.11: nothing left to flush after the purge
                producer.close()  # librdkafka's threads end: no connection to the proxy after this
        link.proxy.close()
        return outcomes

    def _finish(self, link: _Link, loop: asyncio.AbstractEventLoop) -> None:
        """In the hook's thread, after ``link``'s pump: end it as the transport closes."""
        _call_in(loop, _settle, self._end(link, self._closed()))

    def _closed(self) -> DeliveryError:
        # A send returns only once every record of its batch is acknowledged, so what is still queued here
        # belongs to a batch that was cut off (the hook stopped or was edited): it is sent again from the cursor,
        # and waiting on a broker that does not answer would hold the hook's stop for seconds.
        return DeliveryError("the transport closed before Kafka acknowledged the records")

    def _text(self, error: Any, proxy: GuardProxy) -> str:
        """A librdkafka error's text, naming the brokers rather than the proxy's endpoints, without echoes."""
        return proxy.brokers_named(_scrub(error.str()))

    def _error(self, error: Any, proxy: GuardProxy) -> DeliveryError:
        """A librdkafka error (a delivery report's, or the client's) as a ``DeliveryError``."""
        from confluent_kafka import KafkaError

        where = f"Kafka {','.join(self.settings.servers)} topic {self.settings.topic!r}"
        cause = (
            f" (last: {proxy.failure})" if proxy.failure else ""
        )  # a broker's failed connection, not its answer
        if error is None:
            return DeliveryError(f"{where}: the records were not acknowledged{cause}")
        code = error.code()
        if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            s = self.settings
            who = f" for user {s.sasl_username!r} ({s.sasl_mechanism})" if s.sasl_username else ""
            return DeliveryError(
                f"{where}: authentication failed{who}: {self._text(error, proxy)}", permanent=True
            )
        if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
            return DeliveryError(
                f"{where}: not authorized to produce: {self._text(error, proxy)}", permanent=True
            )
        if code in (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART):
            return DeliveryError(f"{where}: the topic does not exist", permanent=True)
        if code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE):
            return DeliveryError(f"{where}: a record is larger than the broker accepts", permanent=True)
        if code == KafkaError._UNSUPPORTED_FEATURE or (error.fatal() and "dempoten" in error.str()):
            return DeliveryError(
                f"{where}: {self._text(error, proxy)} (set idempotent false for brokers without idempotent "
                "producers)",
                permanent=True,
            )
        if code == KafkaError._ALL_BROKERS_DOWN:
            return DeliveryError(f"{where}: all brokers are down or unreachable{cause}")
        return DeliveryError(
            f"{where}: {self._text(error, proxy)}{cause}", permanent=not error.retriable() and error.fatal()
        )


def _call_in(loop: asyncio.AbstractEventLoop, call: Callable[..., object], *args: Any) -> None:
    """``call(*args)`` in ``loop``'s thread; nothing when the loop is gone (the process ending)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(call, *args)


def _producer_error(exc: Exception) -> DeliveryError:
    """A producer's own exception (its configuration, an argument it refused): permanent when a type is wrong."""
    return DeliveryError(f"Kafka producer error: {exc}", permanent=isinstance(exc, TypeError))


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
