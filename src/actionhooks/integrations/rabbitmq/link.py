"""An AMQP 0-9-1 link for asyncio: one pika connection and one channel, with the callbacks turned into awaitables.

pika (the RabbitMQ team's Python client) publishes a message for ~9 µs of CPU here (``publish_all``);
aio-pika/aiormq took ~110 µs (one coroutine, future and socket write per message, see BENCHMARKS.md). The link
keeps pika's callback style out of the transport and the broker consumer: ``open`` and the declarations are
awaited, and whatever closes the connection or the channel fails every wait in progress with the reason.

Publisher confirms are counted by delivery tag (``Confirms``) rather than with a future per message. Several
publish runs may await their confirms at once (a hook's batches in flight), each its own run of tags; runs are
published one at a time (``publish_all`` is not re-entered before it returns).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable
from typing import Any

import pika
from pika import frame, spec
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.exceptions import ChannelWrongStateError

from ..base import outcome_seen

HEARTBEAT_S = 60
PERSISTENT = 2  # AMQP delivery mode
NOT_FOUND = 404  # AMQP reply code
FLUSH_EVERY = 100  # messages published between two turns of the loop (pika writes on the loop's turn)


class Confirms:
    """The broker's acks and nacks for the delivery tags ``first .. first + count - 1`` of one publish run.

    An ack or nack with ``multiple`` settles every earlier tag still open; ``done`` is resolved once all are settled.
    Returned (unroutable) messages are counted by their ``message_id`` (one of ``returnable``, the ids of the run's
    ``mandatory`` messages) as the broker sends them before their ack.
    """

    def __init__(
        self, first: int, count: int, loop: asyncio.AbstractEventLoop, returnable: set[str] | None = None
    ) -> None:
        self.first, self.count = first, count
        self.returnable = returnable or set()
        self.nacked = 0
        self.returned = 0
        self.done: asyncio.Future[None] = loop.create_future()
        self.done.add_done_callback(outcome_seen)  # a failure nobody awaits any more is not an error to log
        self._state = bytearray(count)  # 0 open, 1 settled
        self._low = 0  # every offset below is settled
        self._settled = 0
        if count == 0:
            self.done.set_result(None)

    def settle(self, tag: int, multiple: bool, ack: bool) -> None:
        last = tag - self.first
        if last < 0 or (not multiple and last >= self.count):  # another run's tag
            return
        last = min(last, self.count - 1)
        offsets = range(self._low, last + 1) if multiple else range(last, last + 1)
        for offset in offsets:
            if not self._state[offset]:
                self._state[offset] = 1
                self._settled += 1
                if not ack:
                    self.nacked += 1
        while self._low < self.count and self._state[self._low]:
            self._low += 1
        if self._settled == self.count and not self.done.done():
            self.done.set_result(None)


class Link:
    """A pika ``AsyncioConnection`` and one channel on the running loop.

    ``closed`` holds the exception that ended the connection or the channel (``None`` while open); every awaitable of
    the link fails with it.
    """

    def __init__(self) -> None:
        self.connection: Any = None
        self.channel: Any = None
        self.closed: BaseException | None = None
        self._waits: set[asyncio.Future[Any]] = set()
        # the publish runs awaiting confirms, oldest first
        self._confirms: collections.deque[Confirms] = collections.deque()
        self._next_tag = 1
        self._confirm_mode = False
        self.on_message_returned: Callable[[Any], None] | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        user: str,
        password: str,
        vhost: str,
        *,
        tls: bool = False,
        tls_hostname: str | None = None,
        name: str,
        confirms: bool = False,
        connect_timeout: float,
    ) -> Link:
        """Connect to ``host`` (a name or an address) and open a channel (in publisher-confirm mode with
        ``confirms``); with ``tls``, the certificate is checked against ``tls_hostname`` (``host`` by default), the
        name given for an address that was resolved beforehand. Raises pika's exceptions."""
        link = cls()
        loop = asyncio.get_running_loop()
        parameters = pika.ConnectionParameters(
            host=host,
            port=port,
            virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password, erase_on_connect=True),
            ssl_options=(
                pika.SSLOptions(ssl.create_default_context(), tls_hostname or host) if tls else None
            ),
            connection_attempts=1,
            socket_timeout=connect_timeout,
            stack_timeout=connect_timeout,
            heartbeat=HEARTBEAT_S,
            client_properties={"connection_name": name, "product": "actionhooks"},
        )
        opened = link._wait()
        link.connection = _Connection(
            parameters,
            on_open_callback=lambda _: _resolve(opened, None),
            on_open_error_callback=lambda _, exc: link._fail(exc),
            on_close_callback=lambda _, exc: link._fail(exc),
            custom_ioloop=loop,
        )
        try:
            await link._until(opened)
            await link._open_channel(confirms=confirms)
        except BaseException:
            await link.close()
            raise
        return link

    async def _open_channel(self, *, confirms: bool) -> None:
        """A new channel in place of the current one (after the broker closed it, say)."""
        self.closed = None
        self._confirm_mode = confirms
        ready = self._wait()
        self.connection.channel(on_open_callback=lambda channel: _resolve(ready, channel))
        channel = await self._until(ready)
        channel.add_on_close_callback(lambda _, exc: self._fail(exc))
        channel.add_on_return_callback(self._returned)
        self.channel = channel
        if confirms:
            selected = self._wait()
            channel.confirm_delivery(self._confirmed, callback=lambda frame: _resolve(selected, frame))
            await self._until(selected)
            self._next_tag = 1

    async def ensure_queue(self, name: str, queue_type: str) -> None:
        """Use the queue ``name`` as it is when it exists, whatever its arguments (a passive declaration); declare
        it durable, of ``queue_type``, when it does not. The broker closes the channel on a passive declaration
        of a missing queue: a new one, in the same confirm mode, takes its place."""
        from pika.exceptions import ChannelClosedByBroker

        try:
            await self.call(self.channel.queue_declare, name, passive=True)
        except ChannelClosedByBroker as exc:
            if exc.reply_code != NOT_FOUND:
                raise
            await self._open_channel(confirms=self._confirm_mode)
            arguments = {"x-queue-type": queue_type}
            await self.call(self.channel.queue_declare, name, durable=True, arguments=arguments)

    async def call(self, method: Callable[..., None], *args: Any, **kwargs: Any) -> Any:
        """A channel method that takes ``callback`` (a declaration, say), awaited; its reply frame."""
        reply = self._wait()
        method(*args, callback=lambda frame: _resolve(reply, frame), **kwargs)
        return await self._until(reply)

    async def publish_all(self, messages: list[tuple[str, str, bytes, Any, bool]]) -> Confirms:
        """Publish ``(exchange, routing_key, body, properties, mandatory)`` messages without waiting for their
        confirms; the returned ``Confirms`` settles as the broker confirms them.

        Frames are marshalled by pika, as ``basic_publish`` would (the ``Basic.Publish`` frame once per
        destination rather than once per message: it only names the exchange and routing key), and every
        ``FLUSH_EVERY`` messages are written as one piece, the loop getting a turn in between so the broker works
        while the rest is encoded: ~9 µs of client CPU per message against ~13 µs through ``basic_publish``
        (BENCHMARKS.md)."""
        if not self.is_open:
            raise self.closed or ChannelWrongStateError("the channel is closed")
        loop = asyncio.get_running_loop()
        returnable = {properties.message_id for _, _, _, properties, mandatory in messages if mandatory}
        confirms = Confirms(self._next_tag, len(messages), loop, returnable)
        if not confirms.done.done():
            self._confirms.append(confirms)
        number, connection = self.channel.channel_number, self.connection
        body_max = connection.body_frame_max
        publish_frames: dict[tuple[str, str, bool], bytes] = {}
        frames: list[bytes] = []
        for n, (exchange, routing_key, body, properties, mandatory) in enumerate(messages, 1):
            key = (exchange, routing_key, mandatory)
            if (publish := publish_frames.get(key)) is None:
                method = spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory)
                publish = publish_frames[key] = frame.Method(number, method).marshal()
            frames.append(publish)
            frames.append(frame.Header(number, len(body), properties).marshal())
            for start in range(0, len(body), body_max):  # none for an empty body
                frames.append(frame.Body(number, body[start : start + body_max]).marshal())
            self._next_tag += 1
            if n % FLUSH_EVERY == 0 or n == len(messages):
                connection.write_frames(b"".join(frames))
                frames.clear()
                await asyncio.sleep(0)
                if self.closed is not None:
                    raise self.closed
        return confirms

    async def settled(self, confirms: Confirms) -> None:
        await self._until(confirms.done)

    async def close(self) -> None:
        """Close the connection (waiting up to 5 s for the broker's close-ok when it was open); never raises."""
        connection, self.connection, self.channel = self.connection, None, None
        if connection is None or connection.is_closed or connection.is_closing:
            return
        was_open = connection.is_open
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        connection.add_on_close_callback(lambda *_: _resolve(closed, None))
        try:
            connection.close()  # while opening, this aborts the handshake
            if was_open:
                await asyncio.wait_for(closed, timeout=5)
        except Exception:
            pass  # the connection is being discarded anyway

    @property
    def is_open(self) -> bool:
        return (
            self.closed is None
            and self.connection is not None
            and self.connection.is_open
            and self.channel is not None
            and self.channel.is_open
        )

    # -- callbacks ----------------------------------------------------------------------------------------------

    def _confirmed(self, frame: Any) -> None:
        method = frame.method
        tag, multiple = method.delivery_tag, bool(method.multiple)
        ack = isinstance(method, pika.spec.Basic.Ack)
        for confirms in self._confirms:  # the runs up to the tag (with ``multiple``, all of them)
            if confirms.first > tag:
                break
            confirms.settle(tag, multiple, ack)
        while self._confirms and self._confirms[0].done.done():
            self._confirms.popleft()

    def _returned(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        runs = [c for c in self._confirms if not c.done.done() and properties.message_id in c.returnable]
        # a message no open run knows counts against every one: none is taken as delivered on a guess
        for confirms in runs or [c for c in self._confirms if not c.done.done()]:
            confirms.returned += 1
        if self.on_message_returned is not None:
            self.on_message_returned(properties)

    def _fail(self, exc: BaseException) -> None:
        self.closed = exc
        waits, self._waits = self._waits, set()
        for wait in waits:
            if not wait.done():
                wait.set_exception(exc)
        runs, self._confirms = self._confirms, collections.deque()
        for confirms in runs:
            if not confirms.done.done():
                confirms.done.set_exception(exc)

    def _wait(self) -> asyncio.Future[Any]:
        wait: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waits.add(wait)
        return wait

    async def _until(self, wait: asyncio.Future[Any]) -> Any:
        if self.closed is not None and not wait.done():
            wait.set_exception(self.closed)
        try:
            return await wait
        finally:
            self._waits.discard(wait)


class _Connection(AsyncioConnection):  # type: ignore[misc]  # pika has no type information
    """pika's asyncio connection, with the frames emitted in one turn of the loop written at once.

    pika hands each frame to the transport on its own and the transport sends each with a ``send`` of its own:
    with ``TCP_NODELAY``, 1 000 messages through ``basic_publish`` made 3 000 small TCP segments, which cost
    RabbitMQ ~50 µs of CPU per message against ~31 µs for the same bytes in large writes (BENCHMARKS.md).
    ``Link.publish_all`` hands over 100 messages at a time; what pika sends a frame at a time (the consumer's acks,
    say) is joined here and goes out in one write at the end of the turn (or at once past ``COALESCE_MAX`` bytes).
    """

    COALESCE_MAX = 1 << 20

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._unsent: list[bytes] = []
        self._unsent_bytes = 0
        super().__init__(*args, **kwargs)

    def _adapter_emit_data(self, data: bytes) -> None:  # pika's hook for what the connection sends
        if not self._unsent:
            asyncio.get_running_loop().call_soon(self._flush)
        self._unsent.append(data)
        self._unsent_bytes += len(data)
        if self._unsent_bytes >= self.COALESCE_MAX:
            self._flush()

    @property
    def body_frame_max(self) -> int:
        """The largest body frame payload the broker accepts (its ``frame_max`` less the frame's overhead)."""
        return int(self._body_max_length)

    def write_frames(self, data: bytes) -> None:
        """Marshalled frames, sent as pika sends its own (counted in ``bytes_sent``, coalesced as above)."""
        self._output_marshaled_frames([data])

    def _flush(self) -> None:
        if not self._unsent:
            return
        data = b"".join(self._unsent)
        self._unsent.clear()
        self._unsent_bytes = 0
        if not self.is_closed:
            super()._adapter_emit_data(data)


def _resolve(wait: asyncio.Future[Any], value: Any) -> None:
    if not wait.done():
        wait.set_result(value)
