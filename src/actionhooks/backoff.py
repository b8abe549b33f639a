"""The one back-off: exponential with full jitter, capped. Delivery retries (``RetryPolicy``, bounded) and broker
consumer reconnects (``Backoff``, for ever) both wait by it.

Retry defaults: 5 s, 10 s, 20 s, … doubling up to 1 h, 30 attempts in all — 29 waits of 73 515 s nominal (about
20.4 hours; 5·(2^10−1) s ≈ 85 min for the first 10 waits, then 19 of 1 h), about 15.3 hours with jitter, before
dead letters. Jitter draws each wait between half and all of its nominal value, so hooks (or consumers) failing
together do not retry in step. A destination's ``Retry-After`` is honoured when it asks for longer than the schedule
(up to ``max_delay_s``).

This module imports nothing of the package, so settings (``config``) can use it without importing the dispatcher.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Waits growing from ``initial_delay_s`` by ``multiplier`` per failure up to ``max_delay_s``, with jitter."""

    initial_delay_s: float = 5.0
    max_delay_s: float = 3600.0
    multiplier: float = 2.0

    def nominal_delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failed attempt (1-based), before jitter."""
        return float(min(self.max_delay_s, self.initial_delay_s * self.multiplier ** (failures - 1)))

    def delay(
        self, failures: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        nominal = self.nominal_delay(failures)
        wait = nominal * (0.5 + 0.5 * (rng or random).random())
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay_s))
        return wait


@dataclass(frozen=True)
class RetryPolicy(Backoff):
    """Delivery retries: the back-off for a bounded number of attempts (then the batch goes to dead letters)."""

    max_attempts: int = 30

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts

    def schedule(self) -> list[float]:
        """Nominal waits between attempts, for docs and tests."""
        return [self.nominal_delay(n) for n in range(1, self.max_attempts)]
