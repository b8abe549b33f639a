"""Broker consumers inside ``actionhooks serve``, listed in a JSON file (``serve --consume FILE`` or
``ACTIONHOOKS_CONSUME_FILE``).

The file is a JSON array; each entry names the broker, the account, and the settings the ``actionhooks consume``
command takes as options, under the names of the broker's settings class (``RabbitMQSettings``,
``KafkaSettings``, ``NatsSettings``)::

    [{"broker": "rabbitmq", "account_id": 1, "queue": "events", "host": "mq", "user": "app", "password": "…",
      "dead_letter_queue": "events.dead"},
     {"broker": "kafka", "account_id": 2, "bootstrap_servers": "k1:9092", "topic": "events", "group": "ah",
      "config": {"session.timeout.ms": "10000"}},
     {"broker": "nats", "account_id": 3, "servers": "nats://n1:4222", "subject": "events.in", "stream": "EVENTS",
      "durable": "actionhooks"}]

Each source runs in the service's process on the service's store, under the same contract as the command
(``base``): one append per broker batch, acknowledged after the commit. Where the command exits so that a
supervisor restarts it, the service keeps its API up instead: a failed source is logged, closed (what was not
acknowledged goes back to the broker) and opened again after a back-off of 1 s doubling to 60 s. Stopping the
service finishes each source's batch in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..config import IngestLimits
from ..errors import ConfigError
from ..store import Store
from .base import Ingester, Source, run

log = logging.getLogger("actionhooks.consume")

# broker → (module, settings class, source class)
SOURCES = {
    "rabbitmq": ("actionhooks.consume.rabbitmq", "RabbitMQSettings", "RabbitMQSource"),
    "kafka": ("actionhooks.consume.kafka", "KafkaSettings", "KafkaSource"),
    "nats": ("actionhooks.consume.nats", "NatsSettings", "NatsSource"),
}
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ConsumerSpec:
    broker: str
    account_id: int
    settings: Any  # the broker's settings dataclass (checked)

    def source(self) -> Source:
        module, _, source_class = SOURCES[self.broker]
        source: Source = getattr(importlib.import_module(module), source_class)(self.settings)
        return source


def load_consumers(path: str) -> tuple[ConsumerSpec, ...]:
    """The consumers listed in the JSON file at ``path``; a ``ConfigError`` naming the entry and the field else."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"consumers file {path}: {exc.strerror}") from None
    try:
        entries = msgspec.json.decode(raw, type=list[dict[str, Any]])
    except msgspec.DecodeError as exc:
        raise ConfigError(f"consumers file {path}: {exc}") from None
    return tuple(_spec(entry, f"consumers file {path}, entry {n}") for n, entry in enumerate(entries))


def _spec(entry: dict[str, Any], where: str) -> ConsumerSpec:
    entry = dict(entry)
    broker, account_id = entry.pop("broker", None), entry.pop("account_id", None)
    if broker not in SOURCES:
        raise ConfigError(f"{where}: broker must be one of {', '.join(SOURCES)}")
    if type(account_id) is not int or account_id < 1:
        raise ConfigError(f"{where}: account_id must be a positive integer")
    module, settings_class, _ = SOURCES[broker]
    kind = getattr(importlib.import_module(module), settings_class)
    unknown = sorted(set(entry) - {f.name for f in dataclasses.fields(kind)})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} for {broker}")
    if isinstance(entry.get("config"), dict):  # Kafka's extra librdkafka settings, as an object
        entry["config"] = list(entry["config"].items())
    try:
        settings = msgspec.convert(entry, kind)
        settings.check()
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return ConsumerSpec(broker, account_id, settings)


class Consumers:
    """The configured sources, each kept running on ``store`` until ``stop``."""

    def __init__(self, specs: tuple[ConsumerSpec, ...], store: Store, limits: IngestLimits) -> None:
        self.specs, self.store, self.limits = specs, store, limits
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep_running(spec)) for spec in self.specs]

    async def stop(self) -> None:
        """Finish each source's batch in hand, then close them (cancelled after ``STOP_TIMEOUT_S``)."""
        self._stop.set()
        if not self._tasks:
            return
        _, late = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _keep_running(self, spec: ConsumerSpec) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            source = spec.source()
            try:
                await source.open()
                log.info("%s: consuming for account %d", source.name, spec.account_id)
                backoff = FIRST_BACKOFF_S
                stats = await run(source, Ingester(self.store, spec.account_id, self.limits), self._stop)
                log.info("%s: stopped; %s", source.name, stats.line())
            except Exception as exc:  # the broker or the store failed: nothing of the batch was acknowledged
                log.error("%s: %s; opening it again in %g s", source.name, exc, backoff)
            finally:
                await source.close()
            if not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
