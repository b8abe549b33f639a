"""RabbitMQ source (aio-pika): consume a queue with a prefetch window, acknowledge each batch with one
``basic.ack(multiple=True)`` after its events are committed.

A batch is what arrived, up to ``prefetch`` messages (waiting at most ``LINGER_S`` for more once one is there);
the channel's QoS prefetch is twice that, so the broker sends the next batch while one is being stored. Delivery
tags grow and batches are taken in delivery order, so one ``ack(multiple=True)`` of a batch's last tag covers
exactly that batch. Dead letters are published through the default
exchange to ``dead_letter_queue`` (persistent, publisher confirms, ``mandatory``), the body as described in
``base`` and the errors in AMQP headers. Missing queues are declared durable; existing ones are used as they are.
A lost connection ends the run (unacknowledged messages go back to the queue); run the consumer under a
supervisor that restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..transports.rabbitmq import connect
from .base import IDLE_S, ConsumeError, Incoming, Rejection, dead_letter_headers

LINGER_S = 0.05
CONFIRM_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RabbitMQSettings:
    queue: str
    host: str = "127.0.0.1"
    port: int = 5672
    user: str = "guest"
    password: str = field(default="guest", repr=False)
    vhost: str = "/"
    prefetch: int = 300
    dead_letter_queue: str | None = None

    def check(self) -> None:
        from ..errors import ConfigError

        if self.dead_letter_queue == self.queue:
            raise ConfigError("the dead-letter queue must not be the queue consumed")
        if not 1 <= self.prefetch <= 65535:
            raise ConfigError("prefetch must be between 1 and 65535")


class RabbitMQSource:
    def __init__(self, settings: RabbitMQSettings) -> None:
        settings.check()
        self.settings = settings
        self.name = f"rabbitmq queue {settings.queue!r}"
        self.dead_letters = settings.dead_letter_queue is not None
        self._connection: Any = None
        self._confirm_channel: Any = None
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()

    async def open(self) -> None:
        s = self.settings
        try:
            self._connection = await connect(
                s.host, s.port, s.user, s.password, s.vhost, name="actionhooks-consume"
            )
        except Exception as exc:
            raise ConsumeError(
                f"RabbitMQ at {s.host}:{s.port} vhost {s.vhost!r} user {s.user!r}: {type(exc).__name__}: {exc}"
            ) from exc
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=min(2 * s.prefetch, 65535))  # the next batch arrives meanwhile
        queue = await self._declare(channel, s.queue)
        if s.dead_letter_queue is not None:
            self._confirm_channel = await self._connection.channel(publisher_confirms=True)
            await self._declare(self._confirm_channel, s.dead_letter_queue)
        await queue.consume(self._inbox.put, no_ack=False)

    async def _declare(self, channel: Any, name: str) -> Any:
        """The queue ``name``: used as it is when it exists (whatever its arguments), else declared durable."""
        from aiormq.exceptions import ChannelNotFoundEntity

        probe = await self._connection.channel()
        try:
            await probe.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:  # the broker closed the probe channel
            return await channel.declare_queue(name, durable=True)
        await probe.close()
        return await channel.declare_queue(name, passive=True)

    async def fetch(self) -> list[Incoming]:
        if self._connection is None or self._connection.is_closed:
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
        return [Incoming(m.body, m.content_type or "", m) for m in batch]

    async def dead_letter(self, rejections: Sequence[Rejection]) -> None:
        import aio_pika

        assert self.settings.dead_letter_queue is not None and self._confirm_channel is not None
        exchange = self._confirm_channel.default_exchange
        publishes = []
        for r in rejections:
            original = r.message.handle
            message = aio_pika.Message(
                r.body,
                headers=dict(dead_letter_headers(r, self.name)),
                content_type=original.content_type if r.stored == 0 else "application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=original.message_id,
                app_id="actionhooks-consume",
            )
            publishes.append(
                exchange.publish(message, routing_key=self.settings.dead_letter_queue, mandatory=True)
            )
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):
                await asyncio.gather(*publishes)
        except Exception as exc:
            raise ConsumeError(
                f"{self.name}: dead letters to queue {self.settings.dead_letter_queue!r} were not confirmed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    async def ack(self, messages: Sequence[Incoming]) -> None:
        # Delivery tags grow on the channel and every earlier message was acknowledged: one multiple-ack covers
        # exactly this batch.
        last = max((m.handle for m in messages), key=lambda h: h.delivery_tag)
        await last.ack(multiple=True)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):  # unacknowledged messages return to the queue either way
                await asyncio.wait_for(connection.close(), timeout=5)
