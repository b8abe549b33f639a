"""What the service tells its operators: Prometheus series (``GET /metrics``) and one log line per attempt.

Two kinds of series (docs/operations.md#metrics):

- **this process's counts** — events ingested, delivery attempts and their latency, batch sizes, dead letters —
  counted where the work is recorded (the store's append and ``write_states``), in prometheus-client's default
  registry; each process counts its own work (sum them across processes);
- **the database's state** — rows in the log, the age of the oldest, each active hook's lag and its events lost to
  retention — read from the store when ``/metrics`` is scraped (:mod:`.stats` fills a :class:`StoreSnapshot`);
  every process reports the same values.

The attempt's log line (logger ``actionhooks.delivery``) carries ``hook_id``, ``batch_id``, ``outcome``,
``events`` and ``status`` as fields (``--log-format json`` prints them as JSON keys); delivered batches at DEBUG,
failed attempts at WARNING. Nothing of a hook's settings is logged, so no secret can be.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

delivery_log = logging.getLogger("actionhooks.delivery")

EVENTS_INGESTED = Counter(
    "actionhooks_events_ingested", "Events newly stored in the log (duplicates not counted)", ["event_type"]
)
DELIVERIES = Counter(
    "actionhooks_deliveries", "Delivery attempts by outcome: delivered, retry, failed", ["hook_id", "outcome"]
)
DELIVERY_SECONDS = Histogram(
    "actionhooks_delivery_seconds",
    "Time to send one batch (success or failure)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_EVENTS = Histogram(
    "actionhooks_batch_events",
    "Events per attempted batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)
DEAD_LETTERS = Counter("actionhooks_dead_letters", "Events sent to a hook's dead letters", ["hook_id"])


def events_appended(event_types: Iterable[str]) -> None:
    """Count newly stored events by type (one increment per type, not per event)."""
    for event_type, n in collections.Counter(event_types).items():
        EVENTS_INGESTED.labels(event_type).inc(n)


class RecordedAttempt(Protocol):
    """What the metrics read of a recorded attempt (``store.base.Attempt``; the store imports this module)."""

    @property
    def hook_id(self) -> int: ...
    @property
    def batch_id(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def events(self) -> int: ...
    @property
    def latency_ms(self) -> float | None: ...
    @property
    def status(self) -> int | None: ...


def attempts_recorded(recorded: Iterable[tuple[RecordedAttempt, int]]) -> None:
    """Attempts were recorded (each with the events it sent to dead letters): count and log them. The counters
    move once per hook and outcome, not once per attempt — a hook of one-event batches records thousands a
    second, and a labelled increment costs more than the rest of its record on the event loop."""
    deliveries: collections.Counter[tuple[int, str]] = collections.Counter()
    dead: collections.Counter[int] = collections.Counter()
    delivered_logged = delivery_log.isEnabledFor(logging.DEBUG)
    for a, dead_lettered in recorded:
        deliveries[a.hook_id, a.outcome] += 1
        BATCH_EVENTS.observe(a.events)
        if a.latency_ms is not None:
            DELIVERY_SECONDS.observe(a.latency_ms / 1000)
        if dead_lettered:
            dead[a.hook_id] += dead_lettered
        if a.outcome != "delivered" or delivered_logged:
            _log_attempt(a)
    for (hook_id, outcome), n in deliveries.items():
        DELIVERIES.labels(str(hook_id), outcome).inc(n)
    for hook_id, n in dead.items():
        DEAD_LETTERS.labels(str(hook_id)).inc(n)


def _log_attempt(a: RecordedAttempt) -> None:
    level = logging.DEBUG if a.outcome == "delivered" else logging.WARNING
    if delivery_log.isEnabledFor(level):
        fields = {
            "hook_id": a.hook_id,
            "batch_id": a.batch_id,
            "outcome": a.outcome,
            "events": a.events,
            "status": a.status,
        }
        delivery_log.log(level, "hook %s batch %s: %s", a.hook_id, a.batch_id, a.outcome, extra=fields)


@dataclass
class HookSnapshot:
    lag_events: int
    lag_seconds: float
    expired_undelivered: int


@dataclass
class StoreSnapshot:
    """The database's state as last read (:func:`actionhooks.stats.snapshot`)."""

    log_events: int = 0
    log_oldest_seconds: float = 0.0
    hooks: dict[int, HookSnapshot] = field(default_factory=dict)


class StoreCollector(Collector):
    """Publishes a :class:`StoreSnapshot` (set ``snapshot`` before collecting)."""

    def __init__(self) -> None:
        self.snapshot = StoreSnapshot()

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        yield GaugeMetricFamily("actionhooks_log_events", "Events in the log now", value=s.log_events)
        yield GaugeMetricFamily(
            "actionhooks_log_oldest_seconds", "Age of the oldest event in the log", value=s.log_oldest_seconds
        )
        lag_events = GaugeMetricFamily(
            "actionhooks_hook_lag_events",
            "Events of an active hook's account, types and list after its cursor (at most 1000000)",
            labels=["hook_id"],
        )
        lag_seconds = GaugeMetricFamily(
            "actionhooks_hook_lag_seconds",
            "Age of the oldest event an active hook has yet to handle (0 when none)",
            labels=["hook_id"],
        )
        expired = CounterMetricFamily(
            "actionhooks_expired_undelivered",
            "Events a hook matched but had not handled when retention removed them",
            labels=["hook_id"],
        )
        for hook_id, h in sorted(s.hooks.items()):
            lag_events.add_metric([str(hook_id)], h.lag_events)
            lag_seconds.add_metric([str(hook_id)], h.lag_seconds)
            expired.add_metric([str(hook_id)], h.expired_undelivered)
        yield lag_events
        yield lag_seconds
        yield expired


class Exposition:
    """One app's ``/metrics`` text: the process's series and its store's."""

    def __init__(self) -> None:
        self.store = StoreCollector()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self.store)

    def render(self, snapshot: StoreSnapshot) -> bytes:
        self.store.snapshot = snapshot
        return generate_latest(REGISTRY) + generate_latest(self._registry)


CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes
