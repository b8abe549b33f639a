"""RabbitMQ source (pika, through ``link.Link``): consume a queue with a prefetch window, acknowledge each
batch with one ``basic.ack(multiple=True)`` after its events are committed.

A batch is what arrived, up to ``prefetch`` messages (waiting at most ``LINGER_S`` for more once one is there);
the channel's QoS prefetch is twice that, so the broker sends the next batch while one is being stored. Delivery
tags grow and batches are taken in delivery order, so one ``ack(multiple=True)`` of a batch's last tag covers
exactly that batch. Dead letters are published through the default exchange to ``dead_letter_queue`` (persistent,
publisher confirms on the same channel, ``mandatory``), the body as described in ``base`` and the errors in AMQP
headers. Missing queues are declared durable quorum queues; existing ones are used as they are. A lost connection
ends the run (unacknowledged messages go back to the queue); run the consumer under a supervisor that restarts it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NamedTuple

import msgspec

from ...errors import ConfigError, ConsumeError
from ..base import SourceSettings
from ..source import IDLE_S, Incoming, Rejection, dead_letter_headers
from .connection import ConnectionSettings, Name

if TYPE_CHECKING:
    from .link import Link

LINGER_S = 0.05
CONFIRM_TIMEOUT_S = 30.0


class Delivery(NamedTuple):
    """What pika hands the consumer callback, kept as the ``Incoming`` handle."""

    delivery_tag: int
    properties: Any
    body: bytes


class ConsumerSettings(ConnectionSettings, SourceSettings, kw_only=True):
    """The connection (``connection.py``; the defaults reach a local broker as ``guest``) and the queue."""

    SUMMARY: ClassVar[str] = "Consume a RabbitMQ queue (see docs/consume.md)."

    queue: Annotated[Name, msgspec.Meta(description="the queue to consume (declared durable when missing)")]
    host: Annotated[Name, msgspec.Meta(description="broker host name or address")] = "127.0.0.1"
    user: Name = "guest"
    password: Annotated[str, msgspec.Meta(description="broker password (never logged)")] = "guest"
    prefetch: Annotated[
        int,
        msgspec.Meta(
            description="messages per batch (QoS prefetch is twice this: the next batch flows meanwhile)"
        ),
    ] = 300
    dead_letter_queue: Annotated[Name | None, msgspec.Meta(description="where invalid messages go")] = None

    def check(self) -> None:
        super().check()
        if self.dead_letter_queue == self.queue:
            raise ConfigError("the dead-letter queue must not be the queue consumed")
        if not 1 <= self.prefetch <= 65535:
            raise ConfigError("prefetch must be between 1 and 65535")


def open_source(settings: ConsumerSettings) -> RabbitMQSource:
    return RabbitMQSource(settings)


class RabbitMQSource:
    def __init__(self, settings: ConsumerSettings) -> None:
        settings.validate()
        self.settings = settings
        self.name = f"rabbitmq queue {settings.queue!r}"
        self.dead_letters = settings.dead_letter_queue is not None
        self._link: Link | None = None
        self._inbox: asyncio.Queue[Delivery] = asyncio.Queue()

    async def open(self) -> None:
        s = self.settings
        try:
            self._link = link = await s.connect(name="actionhooks-consume", confirms=self.dead_letters)
            await link.ensure_queue(s.queue, "quorum")
            if s.dead_letter_queue is not None:
                await link.ensure_queue(s.dead_letter_queue, "quorum")
            # the next batch arrives while one is being stored
            await link.call(link.channel.basic_qos, prefetch_count=min(2 * s.prefetch, 65535))
            await link.call(link.channel.basic_consume, s.queue, self._delivered)
        except Exception as exc:
            await self.close()
            raise ConsumeError(f"RabbitMQ at {s.where} user {s.user!r}: {type(exc).__name__}: {exc}") from exc

    def _delivered(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._inbox.put_nowait(Delivery(method.delivery_tag, properties, body))

    async def fetch(self) -> list[Incoming]:
        if self._link is None or not self._link.is_open:
            raise ConsumeError(f"{self.name}: the connection to RabbitMQ was lost")
        try:
            first = await asyncio.wait_for(self._inbox.get(), IDLE_S)
        except TimeoutError:
            return []
        batch = [first]
        deadline = time.monotonic() + LINGER_S
        while len(batch) < self.settings.prefetch:
            while len(batch) < self.settings.prefetch and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            remaining = deadline - time.monotonic()
            if len(batch) >= self.settings.prefetch or remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._inbox.get(), remaining))
            except TimeoutError:
                break
        return [Incoming(d.body, d.properties.content_type or "", d) for d in batch]

    async def dead_letter(self, rejections: Sequence[Rejection]) -> None:
        from pika import BasicProperties

        from .link import PERSISTENT

        assert self.settings.dead_letter_queue is not None and self._link is not None
        messages = []
        for r in rejections:
            original = r.message.handle.properties
            properties = BasicProperties(
                headers=dict(dead_letter_headers(r, self.name)),
                content_type=original.content_type if r.stored == 0 else "application/json",
                delivery_mode=PERSISTENT,
                message_id=original.message_id,
                app_id="actionhooks-consume",
            )
            messages.append(("", self.settings.dead_letter_queue, r.body, properties, True))
        try:
            confirms = await self._link.publish_all(messages)
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                await self._link.settled(confirms)
        except Exception as exc:
            raise ConsumeError(
                f"{self.name}: dead letters to queue {self.settings.dead_letter_queue!r} were not confirmed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if confirms.nacked or confirms.returned:
            raise ConsumeError(
                f"{self.name}: RabbitMQ refused {confirms.nacked} and could not route {confirms.returned} of "
                f"{confirms.count} dead letters to queue {self.settings.dead_letter_queue!r}"
            )

    async def ack(self, messages: Sequence[Incoming]) -> None:
        # Delivery tags grow on the channel and every earlier message was acknowledged: one multiple-ack covers
        # exactly this batch.
        assert self._link is not None
        last = max(m.handle.delivery_tag for m in messages)
        try:
            self._link.channel.basic_ack(delivery_tag=last, multiple=True)
        except Exception as exc:
            raise ConsumeError(
                f"{self.name}: the acknowledgement was not sent: {type(exc).__name__}: {exc}"
            ) from exc

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:  # unacknowledged messages return to the queue either way
            await link.close()
