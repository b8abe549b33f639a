"""Kafka source (confluent-kafka): a group consumer with ``enable.auto.commit=false``; a batch is one
``consume(num_messages=batch)``, and its offsets (per partition, the last record's offset + 1) are committed
synchronously after its events are committed.

A group without committed offsets starts at the beginning of the topic (``auto.offset.reset=earliest``). Dead
letters are produced to ``dead_letter_topic`` (``acks=all``; the original record's key; the body as described in
``base``; the errors in record headers) and awaited before the offsets are committed. A failed offset commit (a
rebalance took the partition away) is logged and the run goes on: the records are read again by their new owner,
and producer ids keep them stored once. librdkafka calls are blocking and run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import msgspec

from ...errors import ConfigError, ConsumeError
from ..base import SourceSettings
from ..source import IDLE_S, Incoming, Rejection, dead_letter_headers
from .connection import ConnectionSettings

DELIVERY_TIMEOUT_S = 30.0
_log = logging.getLogger("actionhooks.consume.kafka")


class ConsumerSettings(ConnectionSettings, SourceSettings, kw_only=True):
    """The connection (``connection.py``), the topic and the group. ``config``: extra librdkafka consumer settings
    (e.g. ``session.timeout.ms``), applied last. ``user``/``password`` are the former names of ``sasl_username``
    and ``sasl_password``."""

    SUMMARY: ClassVar[str] = "Consume a Kafka topic with a consumer group (see docs/consume.md)."

    ALIASES: ClassVar[dict[str, str]] = {"user": "sasl_username", "password": "sasl_password"}

    topic: Annotated[str, msgspec.Meta(description="the topic to consume")]
    group: Annotated[str, msgspec.Meta(description="the consumer group (offsets are committed for it)")]
    batch: Annotated[int, msgspec.Meta(description="records per consume() and per append")] = 500
    dead_letter_topic: Annotated[str | None, msgspec.Meta(description="where invalid records go")] = None
    config: Annotated[
        tuple[tuple[str, str], ...], msgspec.Meta(description="librdkafka consumer setting KEY=VALUE")
    ] = ()

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        if isinstance(data.get("config"), dict):  # the consumers file gives an object
            data = data | {"config": list(data["config"].items())}
        return data

    def check(self) -> None:
        super().check()
        if self.dead_letter_topic == self.topic:
            raise ConfigError("the dead-letter topic must not be the topic consumed")
        if not 1 <= self.batch <= 100_000:
            raise ConfigError("batch must be between 1 and 100000")

    def common(self) -> dict[str, Any]:
        """Connection settings the consumer and the dead-letter producer share (credentials included)."""
        return self.client_config("actionhooks-consume") | {"logger": _log}


def open_source(settings: ConsumerSettings) -> KafkaSource:
    return KafkaSource(settings)


class KafkaSource:
    def __init__(self, settings: ConsumerSettings) -> None:
        settings.validate()
        self.settings = settings
        self.name = f"kafka topic {settings.topic!r} group {settings.group!r}"
        self.dead_letters = settings.dead_letter_topic is not None
        self._consumer: Any = None
        self._producer: Any = None

    async def open(self) -> None:
        from confluent_kafka import Consumer, Producer

        s = self.settings
        config = s.common() | {
            "group.id": s.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
        config |= dict(s.config)
        self._consumer = Consumer(config)
        self._consumer.subscribe([s.topic])
        if s.dead_letter_topic is not None:
            self._producer = Producer(s.common() | {"acks": "all", "linger.ms": 5})

    async def fetch(self) -> list[Incoming]:
        records = await asyncio.to_thread(self._consumer.consume, self.settings.batch, IDLE_S)
        batch = []
        for record in records:
            error = record.error()
            if error is not None:
                if error.fatal():
                    raise ConsumeError(f"{self.name}: {error.str()}")
                _log.warning("%s: %s", self.name, error.str())
                continue
            headers = dict(record.headers() or ())
            content_type = headers.get("content-type") or headers.get("Content-Type") or b""
            batch.append(Incoming(record.value() or b"", content_type.decode(errors="replace"), record))
        return batch

    async def dead_letter(self, rejections: Sequence[Rejection]) -> None:
        assert self.settings.dead_letter_topic is not None and self._producer is not None
        failures: list[str] = []

        def report(error: Any, _record: Any) -> None:
            if error is not None:
                failures.append(error.str())

        for r in rejections:
            headers = [(k, v.encode()) for k, v in dead_letter_headers(r, self.name).items()]
            original = r.message.handle
            headers.append(("actionhooks-origin", f"{original.partition()}:{original.offset()}".encode()))
            self._producer.produce(
                self.settings.dead_letter_topic,
                value=r.body,
                key=original.key(),
                headers=headers,
                on_delivery=report,
            )
        left = await asyncio.to_thread(self._producer.flush, DELIVERY_TIMEOUT_S)
        if left or failures:
            reason = failures[0] if failures else f"{left} not acknowledged in {DELIVERY_TIMEOUT_S:g} s"
            raise ConsumeError(
                f"{self.name}: dead letters to topic {self.settings.dead_letter_topic!r} failed: {reason}"
            )

    async def ack(self, messages: Sequence[Incoming]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        ends: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.handle.topic(), m.handle.partition())
            ends[key] = max(ends.get(key, -1), m.handle.offset() + 1)
        offsets = [TopicPartition(topic, partition, end) for (topic, partition), end in ends.items()]
        try:
            committed = await asyncio.to_thread(self._consumer.commit, offsets=offsets, asynchronous=False)
            failed = [tp.error for tp in committed or () if tp.error is not None]
        except KafkaException as exc:
            failed = [exc]
        if failed:
            _log.warning("%s: offset commit failed, the records will be read again: %s", self.name, failed[0])

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await asyncio.to_thread(consumer.close)
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(producer.flush, 5)
