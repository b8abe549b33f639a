"""Background jobs of the service: retention (pruning the log, attempts and dead letters) and auto-disable (stopping
hooks failing for too long), run in exactly one of the processes sharing a database — the one holding the
``maintenance`` lease."""

from __future__ import annotations

from .auto_disable import disable_failing
from .retention import KEEP_DELIVERED_ATTEMPTS, PruneRound, prune_round
from .runner import JobHealth, Maintenance

__all__ = [
    "KEEP_DELIVERED_ATTEMPTS",
    "JobHealth",
    "Maintenance",
    "PruneRound",
    "disable_failing",
    "prune_round",
]
