"""RabbitMQ transports (aio-pika): ``rabbitmq_queue`` and ``rabbitmq_exchange``.

Each event is one AMQP message: the body is the event's message JSON, ``content_type`` ``application/json``,
``delivery_mode`` persistent, ``message_id`` the event id, ``type`` the event type. Messages go out on a channel
in publisher-confirm mode, the whole batch in flight at once; ``send`` returns only when the broker has confirmed
every message of the batch.

- ``rabbitmq_queue`` publishes through the default exchange to ``queue`` (``mandatory``: a message the broker
  cannot route is an error). An existing queue is used as it is, whatever its arguments (checked with a passive
  declare); a missing one is declared durable, without arguments.
- ``rabbitmq_exchange`` declares ``exchange`` with the hook's type/durable/auto-delete (an existing exchange with
  other properties is a permanent error naming them) and publishes with routing key ``<list_id>.<event_type>``;
  ``0.<event_type>`` for events without ``list_id`` (0 means "none", as ``segment_id`` 0 does in messages).

Errors: unreachable broker, lost connection, a nack, an unroutable message or no confirm in time → retryable (the
connection is dropped and opened again by the next ``send``); bad credentials, refused permissions, a refused vhost
or an incompatible existing exchange → permanent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from ..errors import DeliveryError, ValidationError
from .base import Batch, Message, Receipt, TransportContext, TransportSettings

CONNECT_TIMEOUT_S = 10.0
CONFIRM_TIMEOUT_S = 30.0
NO_LIST_KEY = "0"

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class _ConnectionSettings(TransportSettings, kw_only=True):
    """Settings both RabbitMQ transports share; ``port`` defaults to 5672, or 5671 with ``tls``."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)

    max_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    timeout_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0
    host: Name
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    user: Name
    password: str
    vhost: Name = "/"
    tls: bool = False

    def check(self) -> None:
        if any(c in self.host for c in "/@ ") or self.host.startswith(("amqp:", "amqps:")):
            raise ValidationError("host must be a host name or address, not a URL", "host")

    def hosts(self) -> list[str]:
        return [self.host]

    @property
    def effective_port(self) -> int:
        return self.port or (5671 if self.tls else 5672)


class QueueSettings(_ConnectionSettings, tag="rabbitmq_queue"):
    queue: Name


class ExchangeSettings(_ConnectionSettings, tag="rabbitmq_exchange"):
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
    """One connection and one confirm-mode channel, opened on the first ``send`` and after any failure."""

    def __init__(self, settings: QueueSettings | ExchangeSettings, context: TransportContext) -> None:
        self.settings = settings
        self._guard = context.net_guard
        self._connection: Any = None
        self._channel: Any = None
        self._lock = asyncio.Lock()

    async def send(self, batch: Batch) -> Receipt:
        """Publish every message of ``batch`` and wait for the broker's confirms of all of them."""
        async with self._lock:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S + CONFIRM_TIMEOUT_S):
                    channel = await self._ready()
                    results = await asyncio.gather(
                        *(self._publish(channel, m) for m in batch.messages), return_exceptions=True
                    )
                failures = [r for r in results if isinstance(r, BaseException)]
                failures += [
                    DeliveryError(f"RabbitMQ did not accept a message ({type(r).__name__})")
                    for r in results
                    if type(r).__name__ in {"Nack", "Reject"}
                ]
                if failures:
                    errors = [_map_error(e, self.settings) for e in failures]
                    raise next((e for e in errors if e.permanent), errors[0]) from failures[0]
            except DeliveryError:
                await self._drop()
                raise
            except Exception as exc:
                await self._drop()
                raise _map_error(exc, self.settings) from exc
        return Receipt(response_excerpt=f"{len(batch.messages)} messages confirmed")

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    def _publish(self, channel: Any, message: Message) -> Any:
        """One message on the raw (aiormq) channel: queued for the socket without waiting for it to be written
        (``wait=False``), so the whole batch is in flight at once; the result is the broker's confirm."""
        from pamqp.commands import Basic

        properties = Basic.Properties(
            content_type="application/json",
            delivery_mode=PERSISTENT,
            message_id=message.id,
            message_type=message.event_type,
            app_id="actionhooks",
        )
        if isinstance(self.settings, QueueSettings):
            return channel.basic_publish(
                message.body,
                routing_key=self.settings.queue,
                properties=properties,
                mandatory=True,
                wait=False,
            )
        # Unbound routing keys are the receiver's choice with an exchange: no mandatory flag.
        return channel.basic_publish(
            message.body,
            exchange=self.settings.exchange,
            routing_key=routing_key(message),
            properties=properties,
            mandatory=False,
            wait=False,
        )

    async def _ready(self) -> Any:
        """The confirm-mode channel to publish on, connecting and declaring first when needed."""
        if self._connection is not None and not self._connection.is_closed and self._channel is not None:
            return self._channel
        await self._drop()
        from aiormq.exceptions import ChannelNotFoundEntity

        s = self.settings
        await self._guard.check_host(s.host, s.effective_port, "RabbitMQ")
        self._connection = await connect(
            s.host, s.effective_port, s.user, s.password, s.vhost, tls=s.tls, name="actionhooks"
        )
        channel = await self._connection.channel(publisher_confirms=True)
        if isinstance(s, QueueSettings):
            try:
                await channel.declare_queue(s.queue, passive=True)
            except ChannelNotFoundEntity:
                channel = await self._connection.channel(publisher_confirms=True)
                await channel.declare_queue(s.queue, durable=True)
        else:
            await channel.declare_exchange(
                s.exchange, type=s.exchange_type, durable=s.durable, auto_delete=s.auto_delete
            )
        self._channel = await channel.get_underlay_channel()
        return self._channel

    async def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):  # the connection is being discarded anyway
                await asyncio.wait_for(connection.close(), timeout=5)


PERSISTENT = 2  # AMQP delivery mode


async def connect(
    host: str, port: int, user: str, password: str, vhost: str, *, tls: bool = False, name: str
) -> Any:
    """An aio-pika connection (the transport's and the broker consumer's), ``name`` shown in RabbitMQ's UI."""
    import aio_pika

    try:
        return await aio_pika.connect(
            host=host,
            port=port,
            login=user,
            password=password,
            virtualhost=vhost,
            ssl=tls,
            timeout=CONNECT_TIMEOUT_S,
            client_properties={"connection_name": name},
        )
    except BaseException:
        # A failed connect leaves its Connection in a reference cycle whose finaliser schedules a close() on the
        # running loop; collected later on another thread (the store's), that coroutine would never run.
        # Collect here, on the loop's thread.
        gc.collect()
        raise


def _map_error(exc: BaseException, s: QueueSettings | ExchangeSettings) -> DeliveryError:
    """An aio-pika/aiormq/socket exception as the ``DeliveryError`` the dispatcher understands."""
    from aiormq import exceptions as amqp

    where = f"{s.host}:{s.effective_port} vhost {s.vhost!r}"
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, amqp.ProbableAuthenticationError | amqp.AuthenticationError):
        return DeliveryError(f"RabbitMQ refused the login of user {s.user!r} at {where}", permanent=True)
    if isinstance(exc, amqp.InvalidFrameError) and "Connection.OpenOk" in str(exc):
        # The broker closed the connection when asked to open the vhost (the reason is lost by aiormq).
        return DeliveryError(
            f"RabbitMQ refused vhost {s.vhost!r} at {s.host}:{s.effective_port}: it does not exist "
            f"or user {s.user!r} has no permissions on it",
            permanent=True,
        )
    if isinstance(exc, amqp.ConnectionNotAllowed | amqp.ChannelAccessRefused):
        return DeliveryError(
            f"RabbitMQ refused access (permissions) at {where}: {_text(exc)}", permanent=True
        )
    if isinstance(exc, amqp.ChannelPreconditionFailed):
        return DeliveryError(
            f"RabbitMQ refused the declaration at {where} (it exists with other properties): {_text(exc)}",
            permanent=True,
        )
    if isinstance(exc, amqp.PublishError):
        return DeliveryError(f"RabbitMQ could not route a message at {where}: {_text(exc)}")
    if isinstance(exc, amqp.DeliveryError):
        return DeliveryError(f"RabbitMQ did not accept a message at {where}: {exc}")
    if isinstance(exc, TimeoutError):
        return DeliveryError(f"RabbitMQ at {where} did not confirm in time")
    return DeliveryError(f"RabbitMQ at {where} unreachable or connection lost: {_text(exc)}")


def _text(exc: BaseException) -> str:
    text = " ".join(str(a) for a in exc.args if not isinstance(a, bytes | bytearray)) or type(exc).__name__
    return text[:300]


def open(settings: TransportSettings, context: TransportContext) -> RabbitMQTransport:
    assert isinstance(settings, QueueSettings | ExchangeSettings)
    return RabbitMQTransport(settings, context)
