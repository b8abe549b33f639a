"""Broker consumers inside ``actionhooks serve``, listed in a JSON file (``serve --consume FILE`` or
``ACTIONHOOKS_CONSUME_FILE``).

The file is a JSON array; each entry names the broker, the account, and the settings the ``actionhooks consume``
command takes as options, under the field names of the broker's ``ConsumerSettings``
(``integrations/<broker>/consumer.py``: its connection settings, shared with its transport, and its own), or their
former names (``ALIASES``)::

    [{"broker": "rabbitmq", "account_id": 1, "queue": "events", "host": "mq", "user": "app", "password": "…",
      "dead_letter_queue": "events.dead"},
     {"broker": "kafka", "account_id": 2, "bootstrap_servers": "k1:9092", "topic": "events", "group": "ah",
      "config": {"session.timeout.ms": "10000"}},
     {"broker": "nats", "account_id": 3, "servers": "nats://n1:4222", "subject": "events.in", "stream": "EVENTS",
      "durable": "actionhooks"}]

Each source runs in the service's process on the service's store, under the same contract as the command
(``base``): one append per broker batch, acknowledged after the commit. Where the command exits so that a
supervisor restarts it, the service keeps its API up instead: a failed source is logged, closed (what was not
acknowledged goes back to the broker) and opened again after a back-off of 1 s doubling to 60 s, with jitter (the
service's one back-off, ``backoff.py``). Stopping the service finishes each source's batch in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from .. import integrations
from ..backoff import Backoff
from ..config import IngestLimits
from ..errors import ConfigError
from ..integrations.base import SourceSettings
from ..integrations.source import Source
from ..store import Store
from ..store.base import Deriver
from .base import Ingester, run

log = logging.getLogger("actionhooks.consume")

RECONNECT = Backoff(initial_delay_s=1.0, max_delay_s=60.0)
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ConsumerSpec:
    broker: str
    account_id: int
    settings: SourceSettings  # the broker's ConsumerSettings (checked)

    def source(self) -> Source:
        return open_source(self.broker, self.settings)


def settings_type(broker: str) -> type[SourceSettings]:
    """The ``ConsumerSettings`` of ``broker`` (a name from ``integrations.brokers()``)."""
    kind: type[SourceSettings] = integrations.INTEGRATIONS[broker].consumer_module().ConsumerSettings
    return kind


def open_source(broker: str, settings: SourceSettings) -> Source:
    source: Source = integrations.INTEGRATIONS[broker].consumer_module().open_source(settings)
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
    brokers = integrations.brokers()
    if broker not in brokers:
        raise ConfigError(f"{where}: broker must be one of {', '.join(brokers)}")
    if type(account_id) is not int or account_id < 1:
        raise ConfigError(f"{where}: account_id must be a positive integer")
    kind = settings_type(broker)
    unknown = sorted(set(entry) - set(kind.__struct_fields__) - set(kind.ALIASES))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} for {broker}")
    try:
        settings = kind.from_options(entry)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return ConsumerSpec(broker, account_id, settings)


class Consumers:
    """The configured sources, each kept running on ``store`` until ``stop``."""

    def __init__(
        self,
        specs: tuple[ConsumerSpec, ...],
        store: Store,
        limits: IngestLimits,
        derivation: Deriver | None = None,
    ) -> None:
        self.specs, self.store, self.limits, self.derivation = specs, store, limits, derivation
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
        failures = 0  # in a row: an open that succeeded starts the back-off again
        while not self._stop.is_set():
            source = spec.source()
            wait = 0.0
            try:
                await source.open()
                log.info("%s: consuming for account %d", source.name, spec.account_id)
                failures = 0
                stats = await run(
                    source, Ingester(self.store, spec.account_id, self.limits, self.derivation), self._stop
                )
                log.info("%s: stopped; %s", source.name, stats.line())
            except Exception as exc:  # the broker or the store failed: nothing of the batch was acknowledged
                failures += 1
                wait = RECONNECT.delay(failures)
                log.error("%s: %s; opening it again in %.1f s", source.name, exc, wait)
            finally:
                await source.close()
            if not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait)
