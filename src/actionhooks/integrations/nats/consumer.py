"""NATS JetStream source (nats-py): a durable pull consumer on ``stream`` filtered to ``subject``; a batch is one
``fetch(batch)``, and each message is acknowledged (``+ACK``, then a flush) after its events are committed.

The stream must exist (as for the NATS transport, retention is the operator's choice); the durable consumer is
created when missing (explicit acks, ``ack_wait``, deliver all) and used as it is when it exists. A message not
acknowledged within ``ack_wait`` (the consumer died) is delivered again. Dead letters are published with JetStream
to ``dead_letter_subject`` — a stream must capture it, and it must not match ``subject`` — with the errors in
headers and ``Nats-Msg-Id`` = ``<stream>:<sequence>`` of the original, so a dead letter published again after a
crash is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import msgspec

from ...errors import ConfigError, ConsumeError
from ..base import SourceSettings
from ..source import IDLE_S, Incoming, Rejection, dead_letter_headers
from .connection import CONNECT_TIMEOUT_S, ConnectionSettings

PUBLISH_TIMEOUT_S = 30.0
_log = logging.getLogger("actionhooks.consume.nats")


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more trailing tokens."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


class ConsumerSettings(ConnectionSettings, SourceSettings, kw_only=True):
    """The connection (``connection.py``), the stream and the durable consumer. ``user``/``password`` are the
    former names of ``credentials.user`` and ``credentials.password``; ``ack_wait`` of ``ack_wait_s``."""

    SUMMARY: ClassVar[str] = (
        "Consume a NATS JetStream stream with a durable pull consumer (see docs/consume.md)."
    )

    ALIASES: ClassVar[dict[str, str]] = {
        "user": "credentials.user",
        "password": "credentials.password",
        "ack_wait": "ack_wait_s",
    }

    subject: Annotated[str, msgspec.Meta(description="the subject filter of the consumer")]
    stream: Annotated[
        str, msgspec.Meta(description="the JetStream stream capturing the subject (must exist)")
    ]
    durable: Annotated[
        str, msgspec.Meta(description="the durable pull consumer's name (created when missing)")
    ]
    batch: Annotated[int, msgspec.Meta(description="messages per fetch() and per append")] = 200
    ack_wait_s: Annotated[
        float, msgspec.Meta(description="seconds before an unacknowledged message returns")
    ] = 30.0
    dead_letter_subject: Annotated[str | None, msgspec.Meta(description="where invalid messages go")] = None

    def check(self) -> None:
        super().check()
        dl = self.dead_letter_subject
        if dl is not None and subject_matches(self.subject, dl):
            raise ConfigError("the dead-letter subject must not match the subject consumed")
        if not 1 <= self.batch <= 10_000:
            raise ConfigError("batch must be between 1 and 10000")


def open_source(settings: ConsumerSettings) -> NatsSource:
    return NatsSource(settings)


class NatsSource:
    def __init__(self, settings: ConsumerSettings) -> None:
        settings.validate()
        self.settings = settings
        self.name = (
            f"nats stream {settings.stream!r} subject {settings.subject!r} durable {settings.durable!r}"
        )
        self.dead_letters = settings.dead_letter_subject is not None
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None

    async def open(self) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        s = self.settings
        try:
            options = s.login_options()
            self._nc = await nats.connect(
                servers=s.server_urls,
                name="actionhooks-consume",
                connect_timeout=CONNECT_TIMEOUT_S,
                max_reconnect_attempts=-1,
                error_cb=self._on_error,
                **options,
            )
            self._js = self._nc.jetstream()
            config = ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=s.ack_wait_s,
                max_ack_pending=max(1000, 2 * s.batch),
            )
            self._sub = await self._js.pull_subscribe(
                s.subject, durable=s.durable, stream=s.stream, config=config
            )
        except Exception as exc:
            await self.close()
            servers = s.servers if isinstance(s.servers, str) else ",".join(s.servers)
            raise ConsumeError(f"{self.name} at {servers}: {type(exc).__name__}: {exc}") from exc

    async def _on_error(self, exc: Exception) -> None:
        _log.warning("%s: %s: %s", self.name, type(exc).__name__, exc)

    async def fetch(self) -> list[Incoming]:
        try:
            messages = await self._sub.fetch(self.settings.batch, timeout=IDLE_S)
        except TimeoutError:
            return []
        return [Incoming(m.data, (m.headers or {}).get("Content-Type", ""), m) for m in messages]

    async def dead_letter(self, rejections: Sequence[Rejection]) -> None:
        subject = self.settings.dead_letter_subject
        assert subject is not None
        publishes = []
        for r in rejections:
            meta = r.message.handle.metadata
            headers = dead_letter_headers(r, self.name)
            headers["Nats-Msg-Id"] = f"{meta.stream}:{meta.sequence.stream}"
            if r.stored == 0:
                original = (r.message.handle.headers or {}).get("Content-Type")
                if original:
                    headers["Content-Type"] = original
            else:
                headers["Content-Type"] = "application/json"
            publishes.append(self._js.publish(subject, r.body, timeout=PUBLISH_TIMEOUT_S, headers=headers))
        try:
            await asyncio.gather(*publishes)
        except Exception as exc:
            raise ConsumeError(
                f"{self.name}: dead letters to subject {subject!r} were not stored "
                f"(does a stream capture it?): {type(exc).__name__}: {exc}"
            ) from exc

    async def ack(self, messages: Sequence[Incoming]) -> None:
        for m in messages:
            await m.handle.ack()
        await self._nc.flush()

    async def close(self) -> None:
        nc, self._nc, self._js, self._sub = self._nc, None, None, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):  # unacknowledged messages are delivered again after ack_wait
                await asyncio.wait_for(nc.close(), timeout=5)
