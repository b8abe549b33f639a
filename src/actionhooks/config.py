"""Settings from the environment, read through small typed helpers that fail loudly at start-up.

==============================  =======================  ==============================================
variable                        default                  meaning
==============================  =======================  ==============================================
ACTIONHOOKS_DB                  sqlite:///actionhooks.db the store (``sqlite:///path``, ``postgresql://…``)
ACTIONHOOKS_SECRET_KEY          (generated, in store)    Fernet key encrypting hook settings at rest
ACTIONHOOKS_ALLOW_NETS          (none)                   CIDRs hooks may reach although not public
ACTIONHOOKS_MAX_BODY_BYTES      10485760                 ingest request body limit (413 above)
ACTIONHOOKS_MAX_ITEMS           10000                    events per ingest request (413 above)
ACTIONHOOKS_MAX_PENDING         200000                   events waiting for commit before 429
ACTIONHOOKS_MAX_PENDING_PER_ACCOUNT 50000                one account's events waiting for commit before
                                                         its requests get 429 (others' still pass)
ACTIONHOOKS_RETRY_INITIAL_S     1                        first wait before a batch is sent again
ACTIONHOOKS_RETRY_MAX_DELAY_S   300                      longest wait between a batch's tries
ACTIONHOOKS_RETRY_MAX_AGE_S     86400 (1 day)            a failing batch is dead-lettered this long after
                                                         its first try
ACTIONHOOKS_SHUTDOWN_TIMEOUT_S  20                       on SIGTERM, how long to finish requests and
                                                         batches in flight
ACTIONHOOKS_CONSUME_FILE        (none)                   JSON file of broker consumers ``serve`` runs
ACTIONHOOKS_RETENTION_S         604800 (7 days)          how long the log keeps an event
ACTIONHOOKS_RETENTION_MAX_BYTES (none)                   size cap of the log (oldest events go first)
ACTIONHOOKS_ATTEMPT_RETENTION_S 2592000 (30 days)        how long failed attempts and delivery counts stay
ACTIONHOOKS_DEAD_LETTER_RETENTION_S 2592000 (30 days)    how long dead letters stay
ACTIONHOOKS_LOG_PARTITION_EVENTS 1000000                 PostgreSQL: log positions per partition of the log
                                                         (read by ``store.open_store``)
ACTIONHOOKS_PUBLIC_URL          http://127.0.0.1:8000    base URL of the tracking links (open pixel, click)
ACTIONHOOKS_DERIVE_TTL_S        7776000 (90 days)        how long derivation remembers a first open / click
ACTIONHOOKS_KEY_CACHE_S         5                        seconds an API key's check is cached per process
ACTIONHOOKS_DISABLE_AFTER_S     259200 (3 days)          a hook failing without a success this long is
                                                         stopped (auto-disable)
ACTIONHOOKS_GEOIP_DB            (none)                   MaxMind DB file (GeoLite2-City…) giving the
                                                         tracking endpoints' geo fields
==============================  =======================  ==============================================
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .backoff import RetryPolicy
from .errors import ConfigError
from .netguard import IPNetwork, parse_nets

N = TypeVar("N", int, float)


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_number(name: str, default: N, minimum: N, kind: Callable[[str], N], noun: str) -> N:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {noun}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_int(name: str, default: int, minimum: int = 0) -> int:
    return _env_number(name, default, minimum, int, "an integer")


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    return _env_number(name, default, minimum, float, "a number")


@dataclass(frozen=True)
class IngestLimits:
    max_body_bytes: int = 10 * 1024 * 1024
    max_items: int = 10_000
    max_pending: int = 200_000
    max_pending_per_account: int = 50_000  # one account's flood is refused before it fills the global limit


@dataclass(frozen=True)
class Retention:
    """What the background pruning keeps (``maintenance/``; docs/operations.md#retention)."""

    events_s: float = 7 * 86400
    max_bytes: int | None = None
    attempts_s: float = 30 * 86400
    dead_letters_s: float = 30 * 86400
    interval_s: float = 5.0  # between pruning rounds (a round goes on while it finds full chunks)
    chunk: int = 5000  # rows first removed per transaction (it adapts: maintenance/retention.py)


@dataclass(frozen=True)
class Settings:
    db: str = "sqlite:///actionhooks.db"
    secret_key: str | None = None
    allow_nets: tuple[IPNetwork, ...] = ()
    limits: IngestLimits = field(default_factory=IngestLimits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    consume_file: str | None = None  # broker consumers run by ``serve`` (``consume/configured.py``)
    retention: Retention = field(default_factory=Retention)
    shutdown_timeout_s: float = 20.0  # on SIGTERM: finish requests and batches in flight (``service.py``)
    public_url: str = "http://127.0.0.1:8000"  # the tracking links' base (docs/capture.md)
    derive_ttl_s: float = 90 * 86400  # derivation marks (docs/capture.md#the-uniqueness-window)
    key_cache_s: float = 5.0  # a revoked API key stops working in every process within this time
    disable_after_s: float = 3 * 86400  # auto-disable (maintenance/auto_disable.py)
    geoip_db: str | None = None  # a MaxMind DB file: the tracking endpoints' geo fields (capture/geo.py)

    @classmethod
    def from_env(cls, db: str | None = None) -> Settings:
        return cls(
            db=db or env_str("ACTIONHOOKS_DB", cls.db),
            secret_key=os.environ.get("ACTIONHOOKS_SECRET_KEY") or None,
            allow_nets=parse_nets(env_str("ACTIONHOOKS_ALLOW_NETS", "")),
            limits=IngestLimits(
                max_body_bytes=env_int("ACTIONHOOKS_MAX_BODY_BYTES", IngestLimits.max_body_bytes, 1024),
                max_items=env_int("ACTIONHOOKS_MAX_ITEMS", IngestLimits.max_items, 1),
                max_pending=env_int("ACTIONHOOKS_MAX_PENDING", IngestLimits.max_pending, 1),
                max_pending_per_account=env_int(
                    "ACTIONHOOKS_MAX_PENDING_PER_ACCOUNT", IngestLimits.max_pending_per_account, 1
                ),
            ),
            retry=RetryPolicy(
                initial_delay_s=env_float("ACTIONHOOKS_RETRY_INITIAL_S", RetryPolicy.initial_delay_s, 0.0),
                max_delay_s=env_float("ACTIONHOOKS_RETRY_MAX_DELAY_S", RetryPolicy.max_delay_s, 0.0),
                max_age_s=env_float("ACTIONHOOKS_RETRY_MAX_AGE_S", RetryPolicy.max_age_s, 0.0),
            ),
            consume_file=os.environ.get("ACTIONHOOKS_CONSUME_FILE") or None,
            retention=Retention(
                events_s=env_float("ACTIONHOOKS_RETENTION_S", Retention.events_s, 1.0),
                max_bytes=env_int("ACTIONHOOKS_RETENTION_MAX_BYTES", 0, 0) or None,
                attempts_s=env_float("ACTIONHOOKS_ATTEMPT_RETENTION_S", Retention.attempts_s, 1.0),
                dead_letters_s=env_float(
                    "ACTIONHOOKS_DEAD_LETTER_RETENTION_S", Retention.dead_letters_s, 1.0
                ),
            ),
            shutdown_timeout_s=env_float("ACTIONHOOKS_SHUTDOWN_TIMEOUT_S", cls.shutdown_timeout_s, 0.0),
            public_url=env_str("ACTIONHOOKS_PUBLIC_URL", cls.public_url).rstrip("/"),
            derive_ttl_s=env_float("ACTIONHOOKS_DERIVE_TTL_S", cls.derive_ttl_s, 1.0),
            key_cache_s=env_float("ACTIONHOOKS_KEY_CACHE_S", cls.key_cache_s, 0.0),
            disable_after_s=env_float("ACTIONHOOKS_DISABLE_AFTER_S", cls.disable_after_s, 1.0),
            geoip_db=os.environ.get("ACTIONHOOKS_GEOIP_DB") or None,
        )

    def __post_init__(self) -> None:
        if self.derive_ttl_s < self.retention.events_s:
            raise ConfigError(
                f"ACTIONHOOKS_DERIVE_TTL_S ({self.derive_ttl_s:g}) must be at least the log's retention"
                f" ACTIONHOOKS_RETENTION_S ({self.retention.events_s:g})"
            )
