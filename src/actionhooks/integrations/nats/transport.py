"""NATS JetStream transport (nats-py): ``{"type": "nats", "servers", "subject", "credentials"}``.

Each event is one message published to ``subject`` (``{list_id}`` and ``{event_type}`` are replaced per event;
``{list_id}`` is ``0`` for events without one) with headers ``Nats-Msg-Id`` (the event id: JetStream drops a
duplicate inside the stream's duplicate window, so a retried batch is stored once; a replay's or a redrive's is tagged,
``<event id>:replay-<id>``, so they are not dropped as repeats) and ``Event-Type`` (and ``Actionhooks-Replay`` or
``Actionhooks-Redrive`` on theirs). The whole
batch is published at once and ``send`` returns when JetStream acknowledged every message (a duplicate's ack counts).

A stream must capture the subject: the transport does not create streams (retention is the receiver's choice).
No stream answering, an unreachable server, a lost connection or missing acks → retryable (the connection is
closed and opened again by the next ``send``); refused credentials, a permissions violation or a message larger
than the server's maximum payload → permanent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec

from ...errors import DeliveryError, ValidationError
from ..base import (
    Batch,
    BatchSize,
    BatchTimeout,
    InFlight,
    Receipt,
    TransportContext,
    TransportSettings,
)
from .connection import CONNECT_TIMEOUT_S, ConnectionSettings, pinned_url

ACK_TIMEOUT_S = 30.0
NO_LIST_TOKEN = "0"
_PLACEHOLDERS = ("list_id", "event_type")
_TOKEN = re.compile(r"[^\s.*>]+")


class Settings(ConnectionSettings, TransportSettings, tag="nats", kw_only=True):
    """The connection (``connection.py``) and the subject template."""

    max_batch_size: BatchSize = 500
    timeout_s: BatchTimeout = 0.0
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    # batches out at once; above 1, order holds only as far as docs/transports/nats.md#batches-in-flight says
    max_in_flight: InFlight = 1

    def sends_in_flight(self) -> int:
        return self.max_in_flight

    def check(self) -> None:
        super().check()
        for url in self.server_urls:
            parts = urlsplit(url)
            if parts.username or parts.path:  # credentials belong in ``credentials``, which is never shown
                raise ValidationError(f"{url!r} is not nats://host:port or tls://host:port", "servers")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.subject) if f is not None]
        except ValueError:  # an unmatched brace
            fields = ["?"]
        if any(f not in _PLACEHOLDERS for f in fields) or not all(
            _TOKEN.fullmatch(t) for t in render_subject(self.subject, 1, "deliv").split(".")
        ):
            raise ValidationError(
                "subject must be dot-separated tokens without spaces or wildcards; placeholders: "
                "{list_id}, {event_type}",
                "subject",
            )


def render_subject(template: str, list_id: int | None, event_type: str) -> str:
    """The subject of one event (plain replacement: no ``str.format`` on a user-supplied template)."""
    list_token = NO_LIST_TOKEN if list_id is None else str(list_id)
    return template.replace("{list_id}", list_token).replace("{event_type}", event_type)


@dataclass(eq=False)
class _Client:
    """One connection and what happened to it: sends in flight share it, each waiting on its own outcome
    (:meth:`watch`), which the connection's end or a refused publish fails at once; a send's failure drops only
    this client (not a newer one another send opened meanwhile)."""

    nc: Any
    js: Any = None
    lost: bool = False  # the connection ended
    waiting: set[asyncio.Future[int]] = field(default_factory=set)

    def watch(self) -> asyncio.Future[int]:
        """The outcome of one send: the number of duplicates among its acks, or the send's failure."""
        outcome: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self.lost:
            outcome.set_exception(_connection_lost())
        else:
            self.waiting.add(outcome)
            outcome.add_done_callback(self.waiting.discard)
        return outcome

    async def on_lost(self) -> None:
        # nats-py leaves the acks still awaited pending for ever when the connection ends (a server restarted
        # mid-batch): without this, a send waited out ACK_TIMEOUT_S.
        self.lost = True
        self._fail(_connection_lost)

    async def on_error(self, exc: Exception) -> None:
        """Errors the server sends outside a request (a permissions violation): no ack will come for the publish,
        so the sends waiting fail at once (each send's own publishes are in flight on this connection)."""
        text = str(exc)
        if "permissions violation" in text.lower() or "authorization" in text.lower():
            refusal = text.removeprefix("nats: ")
            self._fail(lambda: DeliveryError(f"NATS refused the publish: {refusal}", permanent=True))

    def _fail(self, error: Callable[[], BaseException]) -> None:
        for outcome in list(self.waiting):
            if not outcome.done():
                outcome.set_exception(error())


def _connection_lost() -> BaseException:
    from nats.errors import ConnectionClosedError

    return ConnectionClosedError()  # retryable: "server unreachable or connection lost"


def _settle(outcome: asyncio.Future[int], acks: asyncio.Future[Any]) -> None:
    """Pass the acks (one ack, or a gathered list) on to the send's outcome, unless the outcome came first."""
    error = None if acks.cancelled() else acks.exception()  # read even when too late: never "not retrieved"
    if outcome.done():
        return
    if acks.cancelled():
        outcome.cancel()
    elif error is not None:
        outcome.set_exception(error)
    else:
        result = acks.result()
        outcome.set_result(
            sum(1 for ack in result if ack.duplicate) if isinstance(result, list) else result.duplicate
        )


class NatsTransport:
    def __init__(self, settings: Settings, context: TransportContext) -> None:
        self.settings = settings
        self._guard = context.net_guard
        self._client: _Client | None = None
        self._connecting = asyncio.Lock()  # sends in flight share one connection: one opens it

    async def send(self, batch: Batch) -> Receipt:
        """Publish every message of ``batch`` and wait for JetStream's ack of each. Up to ``max_in_flight`` sends
        run at once on the same connection, each publishing its batch whole before the next one starts."""
        client = None
        try:
            client = await self._ready()
            duplicates = await self._publish(client, batch)
        except DeliveryError:
            await self._drop(client)
            raise
        except Exception as exc:
            await self._drop(client)
            raise self._map_error(exc) from exc
        excerpt = f"{len(batch.messages)} messages acknowledged"
        return Receipt(response_excerpt=excerpt + (f" ({duplicates} duplicates)" if duplicates else ""))

    async def close(self) -> None:
        async with self._connecting:
            await self._drop(self._client)

    async def _publish(self, client: _Client, batch: Batch) -> int:
        """Publish the batch on ``client`` and wait for its acks; the number of duplicates among them."""
        js = client.js
        outcome = client.watch()  # before publishing: a refusal while the batch goes out fails it too
        acks = []
        try:
            async with asyncio.timeout(ACK_TIMEOUT_S):
                # Without ``wait_stall`` nats-py takes its pending-acks slot without a task and a timer of its own
                # per message (2.4 times the CPU per message with one, measured); the timeout here bounds it all.
                for m in batch.messages:
                    if outcome.done():
                        break
                    subject = render_subject(self.settings.subject, m.list_id, m.event_type)
                    headers = {
                        "Nats-Msg-Id": batch.dedupe_id(m),
                        "Event-Type": m.event_type,
                        "Content-Type": "application/json",
                    }
                    if batch.mark is not None:
                        headers[batch.mark.name] = batch.mark.value
                    # publish_async only buffers the message: the acks are awaited together below.
                    acks.append(await js.publish_async(subject, m.body, headers=headers))
                if acks:  # also when the outcome came first: their failures are read, not left unretrieved
                    joined = acks[0] if len(acks) == 1 else asyncio.gather(*acks)
                    joined.add_done_callback(functools.partial(_settle, outcome))
                return await outcome
        except TimeoutError:
            raise DeliveryError(f"NATS JetStream did not acknowledge within {ACK_TIMEOUT_S:g} s") from None
        finally:
            outcome.cancel()  # done already, unless this send was cancelled or timed out

    async def _ready(self) -> _Client:
        client = self._client
        if client is not None and client.nc.is_connected:
            return client
        async with self._connecting:
            client = self._client
            if client is not None and client.nc.is_connected:  # another send connected meanwhile
                return client
            await self._drop(client)
            self._client = client = await self._connect()
            return client

    async def _connect(self) -> _Client:
        from nats.aio.client import Client as NATS

        # Each server's name is resolved once, by the guard, and the client is given the checked address (the
        # certificate of a tls:// server is still checked against the name): a name that answers otherwise the
        # second time (DNS rebinding) cannot lead elsewhere. Servers the cluster announces (INFO connect_urls) are
        # never used: there is no reconnection.
        targets = []
        for url, host, port in self.settings.endpoints():
            for address in await self._guard.addresses(host, port, "NATS"):
                targets.append((pinned_url(url, address, port), host))
        options = self.settings.login_options()

        # No background reconnection: a failed send drops the client and the next send connects again. One
        # attempt per address, in order (max_reconnect_attempts=0 would make nats-py retry a refused server
        # forever).
        failure: BaseException | None = None
        for target, host in targets:
            client = _Client(NATS())  # a failed attempt's closing fails its own sends only
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S * 2):
                    await client.nc.connect(
                        servers=[target],
                        name="actionhooks",
                        connect_timeout=CONNECT_TIMEOUT_S,
                        allow_reconnect=False,
                        max_reconnect_attempts=1,
                        reconnect_time_wait=0.1,
                        tls_hostname=host,
                        error_cb=client.on_error,
                        disconnected_cb=client.on_lost,
                        closed_cb=client.on_lost,
                        **options,
                    )
                    client.js = client.nc.jetstream()
                    # nats-py subscribes its inbox of acks on the first publish_async; a second send arriving
                    # meanwhile (batches in flight) would subscribe again and forget the first one's acks.
                    await client.js._init_async_reply()
            except BaseException as exc:
                await _close(client)  # closes a client stuck connecting too
                if not isinstance(exc, Exception) or not _unreachable(exc):
                    raise
                failure = exc
                continue
            return client
        assert failure is not None
        raise failure

    async def _drop(self, client: _Client | None) -> None:
        """Close ``client``; the transport forgets it if it is still the current one (a send failing on an older
        connection leaves a newer one alone)."""
        if client is None:
            return
        if self._client is client:
            self._client = None
        await _close(client)

    def _map_error(self, exc: BaseException) -> DeliveryError:
        from nats import errors
        from nats.js import errors as js_errors

        where = f"NATS {','.join(self.settings.server_urls)} subject {self.settings.subject!r}"
        if isinstance(exc, errors.AuthorizationError | errors.InvalidUserCredentialsError) or (
            isinstance(exc, errors.Error) and "authorization violation" in str(exc).lower()
        ):
            return DeliveryError(f"{where}: the server refused the credentials ({exc})", permanent=True)
        if isinstance(exc, ModuleNotFoundError):
            return DeliveryError(f"{where}: credentials.creds needs the nkeys package", permanent=True)
        if isinstance(exc, errors.MaxPayloadError):
            return DeliveryError(
                f"{where}: a message is larger than the server's max payload", permanent=True
            )
        if isinstance(exc, js_errors.NoStreamResponseError):
            return DeliveryError(
                f"{where}: no JetStream stream answered (does a stream capture the subject?)"
            )
        if isinstance(exc, js_errors.APIError):
            return DeliveryError(f"{where}: JetStream refused a message: {exc}")
        if isinstance(exc, errors.NoServersError | OSError | TimeoutError | errors.Error):
            return DeliveryError(
                f"{where}: server unreachable or connection lost ({type(exc).__name__}: {exc})"
            )
        return DeliveryError(f"{where}: {type(exc).__name__}: {exc}")


async def _close(client: _Client) -> None:
    if not client.nc.is_closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.nc.close(), timeout=5)


def _unreachable(exc: BaseException) -> bool:
    """Whether a failed connect means "no server there" (the next address is worth a try), not a refusal."""
    from nats import errors

    return isinstance(exc, errors.NoServersError | OSError | TimeoutError)


def open(settings: TransportSettings, context: TransportContext) -> NatsTransport:
    assert isinstance(settings, Settings)
    return NatsTransport(settings, context)
