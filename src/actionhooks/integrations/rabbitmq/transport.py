"""RabbitMQ transports (pika, through ``link.Link``): ``rabbitmq_queue`` and ``rabbitmq_exchange``.

Each event is one AMQP message: the body is the event's message JSON, ``content_type`` ``application/json``,
``delivery_mode`` persistent, ``message_id`` the event id, ``type`` the event type (a replay's or a redrive's messages
carry the header ``Actionhooks-Replay`` or ``Actionhooks-Redrive``). Messages go out on a channel
in publisher-confirm mode, the whole batch in flight at once; ``send`` returns only when the broker has confirmed
every message of the batch.

- ``rabbitmq_queue`` publishes through the default exchange to ``queue`` (``mandatory``: a message the broker
  cannot route is an error). An existing queue is used as it is, whatever its arguments (checked with a passive
  declare); a missing one is declared durable, of the hook's ``queue_type``: ``quorum`` (the default: RabbitMQ's
  queue for data that must not be lost, and here 3× faster than a classic queue for persistent messages with
  confirms) or ``classic``.
- ``rabbitmq_exchange`` declares ``exchange`` with the hook's type/durable/auto-delete (an existing exchange with
  other properties is a permanent error naming them) and publishes with routing key ``<list_id>.<event_type>``;
  ``0.<event_type>`` for events without ``list_id`` (0 means "none", as ``segment_id`` 0 does in messages).

With ``max_in_flight`` above 1, up to that many batches await their confirms at once on the one channel; each is
published whole before the next one starts, so the queue or exchange gets them in log order.

Errors: unreachable broker, lost connection, a nack, an unroutable message or no confirm in time → retryable (the
connection is dropped and opened again by the next ``send``); bad credentials, refused permissions, a refused vhost
or an incompatible existing exchange → permanent.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

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
from .connection import CONNECT_TIMEOUT_S, ConnectionSettings, Name

if TYPE_CHECKING:
    from .link import Link

CONFIRM_TIMEOUT_S = 30.0
NO_LIST_KEY = "0"


class _Settings(ConnectionSettings, TransportSettings, kw_only=True):
    """What both RabbitMQ transports take: the connection (``connection.py``) and how events are batched."""

    max_batch_size: BatchSize = 1000
    timeout_s: BatchTimeout = 0.0
    # batches awaiting their confirms at once (docs/transports/rabbitmq.md#batches-in-flight)
    max_in_flight: InFlight = 1

    def sends_in_flight(self) -> int:
        return self.max_in_flight


class QueueSettings(_Settings, tag="rabbitmq_queue"):
    queue: Name
    queue_type: Literal["quorum", "classic"] = "quorum"  # for a queue the transport declares


class ExchangeSettings(_Settings, tag="rabbitmq_exchange"):
    exchange: Name
    exchange_type: Literal["direct", "topic"] = "topic"
    durable: bool = True
    auto_delete: bool = False

    def check(self) -> None:
        super().check()
        if self.exchange.startswith("amq."):
            raise ValidationError("exchange names starting with 'amq.' are reserved by RabbitMQ", "exchange")


# The registry converts a hook's settings with ``Settings``: a union tagged by ``type`` picks the class.
Settings = QueueSettings | ExchangeSettings


def routing_key(message: Message) -> str:
    """``<list_id>.<event_type>``; ``0.<event_type>`` when the event has no ``list_id``."""
    list_part = NO_LIST_KEY if message.list_id is None else str(message.list_id)
    return f"{list_part}.{message.event_type}"


class RabbitMQTransport:
    """One connection and one confirm-mode channel, opened on the first ``send`` and after any failure; the sends in
    flight share it."""

    def __init__(self, settings: QueueSettings | ExchangeSettings, context: TransportContext) -> None:
        self.settings = settings
        self._guard = context.net_guard
        self._link: Link | None = None
        self._publishing = asyncio.Lock()  # one batch published at a time: its delivery tags are one run

    async def send(self, batch: Batch) -> Receipt:
        """Publish every message of ``batch`` and wait for the broker's confirms of all of them. A failure drops
        the link it happened on (failing the other sends awaiting confirms there: retryable), not a newer one."""
        link = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S + CONFIRM_TIMEOUT_S):
                async with self._publishing:
                    link = await self._ready()
                    confirms = await link.publish_all(self._messages(batch))
                await link.settled(confirms)
        except Exception as exc:
            await self._drop(link)
            raise _map_error(exc, self.settings) from exc
        if confirms.nacked or confirms.returned:
            await self._drop(link)
            where = _where(self.settings)
            if confirms.returned:
                raise DeliveryError(
                    f"RabbitMQ at {where} could not route {confirms.returned} of {confirms.count} messages "
                    f"(no queue {getattr(self.settings, 'queue', '')!r})"
                )
            raise DeliveryError(f"RabbitMQ at {where} refused {confirms.nacked} of {confirms.count} messages")
        return Receipt(response_excerpt=f"{len(batch.messages)} messages confirmed")

    async def close(self) -> None:
        async with self._publishing:
            await self._drop(self._link)

    def _messages(self, batch: Batch) -> list[tuple[str, str, bytes, Any, bool]]:
        """``(exchange, routing_key, body, properties, mandatory)`` of each message, for ``Link.publish_all``."""
        from pika import BasicProperties

        from .link import PERSISTENT

        out = []
        headers = None if batch.mark is None else {batch.mark.name: batch.mark.value}
        for message in batch.messages:
            properties = BasicProperties(
                content_type="application/json",
                delivery_mode=PERSISTENT,
                message_id=message.id,
                type=message.event_type,
                app_id="actionhooks",
                headers=headers,
            )
            if isinstance(self.settings, QueueSettings):
                # Through the default exchange; ``mandatory``: a message the broker cannot route is returned.
                out.append(("", self.settings.queue, message.body, properties, True))
            else:  # unbound routing keys are the receiver's choice with an exchange: no mandatory flag
                out.append((self.settings.exchange, routing_key(message), message.body, properties, False))
        return out

    async def _ready(self) -> Link:
        """The confirm-mode link to publish on, connecting and declaring first when needed."""
        if self._link is not None and self._link.is_open:
            return self._link
        await self._drop(self._link)
        s = self.settings
        addresses = await self._guard.addresses(s.host, s.effective_port, "RabbitMQ")
        link = await s.connect(name="actionhooks", confirms=True, addresses=addresses)
        try:
            if isinstance(s, QueueSettings):
                await link.ensure_queue(s.queue, s.queue_type)
            else:
                await link.call(
                    link.channel.exchange_declare,
                    s.exchange,
                    exchange_type=s.exchange_type,
                    durable=s.durable,
                    auto_delete=s.auto_delete,
                )
        except BaseException:
            await link.close()
            raise
        self._link = link
        return link

    async def _drop(self, link: Link | None) -> None:
        """Close ``link``; forget it if it is still the current one."""
        if link is None:
            return
        if self._link is link:
            self._link = None
        await link.close()


ACCESS_REFUSED, PRECONDITION_FAILED, NOT_ALLOWED = 403, 406, 530  # AMQP reply codes


def _where(s: QueueSettings | ExchangeSettings) -> str:
    return s.where


def _map_error(exc: BaseException, s: QueueSettings | ExchangeSettings) -> DeliveryError:
    """A pika/socket exception as the ``DeliveryError`` the dispatcher understands."""
    from pika import exceptions as amqp

    where = _where(s)
    if isinstance(exc, DeliveryError):
        return exc
    # pika wraps a failed connect: the last attempt's error says what happened
    wrapped = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    if attempts := getattr(wrapped, "exceptions", None):
        exc = attempts[-1]
    login_refused = DeliveryError(f"RabbitMQ refused the login of user {s.user!r} at {where}", permanent=True)
    if isinstance(exc, amqp.ProbableAuthenticationError | amqp.AuthenticationError):
        return login_refused
    if isinstance(exc, amqp.ProbableAccessDeniedError):
        return DeliveryError(
            f"RabbitMQ refused vhost {s.vhost!r} at {s.host}:{s.effective_port}: it does not exist "
            f"or user {s.user!r} has no permissions on it",
            permanent=True,
        )
    if isinstance(exc, amqp.ConnectionClosedByBroker):
        if exc.reply_code == ACCESS_REFUSED:
            return login_refused
        if exc.reply_code == NOT_ALLOWED:
            return DeliveryError(
                f"RabbitMQ refused vhost {s.vhost!r} at {s.host}:{s.effective_port}: {exc.reply_text}",
                permanent=True,
            )
        return DeliveryError(f"RabbitMQ at {where} closed the connection: {exc.reply_text}")
    if isinstance(exc, amqp.ChannelClosedByBroker):
        if exc.reply_code == ACCESS_REFUSED:
            return DeliveryError(
                f"RabbitMQ refused access (permissions) at {where}: {exc.reply_text}", permanent=True
            )
        if exc.reply_code == PRECONDITION_FAILED:
            return DeliveryError(
                f"RabbitMQ refused the declaration at {where} (it exists with other properties): "
                f"{exc.reply_text}",
                permanent=True,
            )
        return DeliveryError(f"RabbitMQ at {where} closed the channel: {exc.reply_text}")
    if isinstance(exc, TimeoutError):
        return DeliveryError(f"RabbitMQ at {where} did not confirm in time")
    return DeliveryError(f"RabbitMQ at {where} unreachable or connection lost: {_text(exc)}")


def _text(exc: BaseException) -> str:
    text = " ".join(str(a) for a in exc.args if not isinstance(a, bytes | bytearray)) or type(exc).__name__
    return text[:300]


def open(settings: TransportSettings, context: TransportContext) -> RabbitMQTransport:
    assert isinstance(settings, QueueSettings | ExchangeSettings)
    return RabbitMQTransport(settings, context)
