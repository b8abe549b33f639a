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
import re
import string
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec

from ...errors import DeliveryError, ValidationError
from ..base import (
    Batch,
    BatchSize,
    BatchTimeout,
    Receipt,
    TransportContext,
    TransportSettings,
    outcome_seen,
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


class NatsTransport:
    def __init__(self, settings: Settings, context: TransportContext) -> None:
        self.settings = settings
        self._guard = context.net_guard
        self._nc: Any = None
        self._js: Any = None
        self._refused: asyncio.Event = asyncio.Event()
        self._refusal = ""
        self._lost: asyncio.Event = asyncio.Event()  # the current client's connection ended
        self._lock = asyncio.Lock()

    async def send(self, batch: Batch) -> Receipt:
        """Publish every message of ``batch`` and wait for JetStream's ack of each."""
        async with self._lock:
            try:
                duplicates = await self._publish(batch)
            except DeliveryError:
                await self._drop()
                raise
            except Exception as exc:
                await self._drop()
                raise self._map_error(exc) from exc
        excerpt = f"{len(batch.messages)} messages acknowledged"
        return Receipt(response_excerpt=excerpt + (f" ({duplicates} duplicates)" if duplicates else ""))

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    async def _publish(self, batch: Batch) -> int:
        js = await self._ready()
        self._refused.clear()
        futures = []
        for m in batch.messages:
            subject = render_subject(self.settings.subject, m.list_id, m.event_type)
            headers = {
                "Nats-Msg-Id": batch.dedupe_id(m),
                "Event-Type": m.event_type,
                "Content-Type": "application/json",
            }
            if batch.mark is not None:
                headers[batch.mark.name] = batch.mark.value
            # publish_async only buffers the message: the acks are awaited together below.
            futures.append(await js.publish_async(subject, m.body, wait_stall=ACK_TIMEOUT_S, headers=headers))
        acks: asyncio.Future[list[Any]] = asyncio.gather(*futures)
        acks.add_done_callback(outcome_seen)  # once cancelled below, nothing else reads its outcome
        refused: asyncio.Future[Any] = asyncio.ensure_future(self._refused.wait())
        # nats-py leaves the acks still awaited pending for ever when the connection ends (a server restarted
        # mid-batch): without this, ``send`` waited out ACK_TIMEOUT_S.
        lost: asyncio.Future[Any] = asyncio.ensure_future(self._lost.wait())
        try:
            waited: list[asyncio.Future[Any]] = [acks, refused, lost]
            await asyncio.wait(waited, timeout=ACK_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
            lost.cancel()
        if self._refused.is_set():
            acks.cancel()
            raise DeliveryError(f"NATS refused the publish: {self._refusal}", permanent=True)
        if acks.done():
            return sum(1 for ack in acks.result() if ack.duplicate)
        acks.cancel()
        if self._lost.is_set():
            from nats.errors import ConnectionClosedError

            raise ConnectionClosedError  # retryable: "server unreachable or connection lost"
        raise DeliveryError(f"NATS JetStream did not acknowledge within {ACK_TIMEOUT_S:g} s")

    async def _ready(self) -> Any:
        if self._nc is not None and self._nc.is_connected:
            return self._js
        await self._drop()
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
            self._nc = NATS()  # kept before connecting, so that ``_drop`` closes a half-open client too
            self._lost = lost = asyncio.Event()  # this client's: a failed attempt's closing does not count

            async def on_lost(lost: asyncio.Event = lost) -> None:
                lost.set()

            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S * 2):
                    await self._nc.connect(
                        servers=[target],
                        name="actionhooks",
                        connect_timeout=CONNECT_TIMEOUT_S,
                        allow_reconnect=False,
                        max_reconnect_attempts=1,
                        reconnect_time_wait=0.1,
                        tls_hostname=host,
                        error_cb=self._on_error,
                        disconnected_cb=on_lost,
                        closed_cb=on_lost,
                        **options,
                    )
                break
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                failure = exc
                await self._drop()
        else:
            assert failure is not None
            raise failure
        self._js = self._nc.jetstream()
        return self._js

    async def _on_error(self, exc: Exception) -> None:
        """Errors the server sends outside a request (a permissions violation); they end the current wait."""
        text = str(exc)
        if "permissions violation" in text.lower() or "authorization" in text.lower():
            self._refusal = text.removeprefix("nats: ")
            self._refused.set()

    async def _drop(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:  # closes a client stuck connecting too
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), timeout=5)

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


def _unreachable(exc: BaseException) -> bool:
    """Whether a failed connect means "no server there" (the next address is worth a try), not a refusal."""
    from nats import errors

    return isinstance(exc, errors.NoServersError | OSError | TimeoutError)


def open(settings: TransportSettings, context: TransportContext) -> NatsTransport:
    assert isinstance(settings, Settings)
    return NatsTransport(settings, context)
