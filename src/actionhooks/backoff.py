"""The back-offs. ``Backoff``: exponential with full jitter, capped — broker consumer reconnects and the worker's
retries of a state write wait by it, for ever. ``RetryPolicy``: a batch's delivery retries, paced by how long its
destination has been failing and given up by age, not by a count of tries.

Retry defaults: waits of 1 s, 2 s, 4 s, 8 s, then 10 s while the batch has been failing for less than 10 minutes;
after that a tenth of the time it has been failing (60 s at 10 minutes, growing by a tenth per wait) up to 5
minutes, until the batch is a day old (``ACTIONHOOKS_RETRY_MAX_AGE_S``): 359 tries in all, 358 waits (nominal;
jitter makes them a little more). So delivery resumes within 10 s of a destination's recovery after an outage of up to 10 minutes, and
within a tenth of the outage's length (at most 5 minutes) after a longer one: a destination down for an hour gets a
try every few minutes, not every few seconds. Jitter draws each wait between half and all of its nominal value, so
hooks failing together do not retry in step (the waits are shorter, not longer: the bounds above hold). A
destination's ``Retry-After`` is honoured when it asks for longer (up to ``max_delay_s``).

This module imports nothing of the package, so settings (``config``) can use it without importing the dispatcher.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


def _jitter(nominal: float, rng: random.Random | None) -> float:
    return nominal * (0.5 + 0.5 * (rng or random).random())


@dataclass(frozen=True)
class Backoff:
    """Waits growing from ``initial_delay_s`` by ``multiplier`` per failure up to ``max_delay_s``, with jitter."""

    initial_delay_s: float = 5.0
    max_delay_s: float = 3600.0
    multiplier: float = 2.0

    def nominal_delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failed attempt (1-based), before jitter."""
        return float(min(self.max_delay_s, self.initial_delay_s * self.multiplier ** min(failures - 1, 64)))

    def delay(
        self, failures: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        wait = _jitter(self.nominal_delay(failures), rng)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay_s))
        return wait


STORE_RETRY = Backoff(
    initial_delay_s=0.1, max_delay_s=2.0
)  # a store read or write tried again while it fails


@dataclass(frozen=True)
class RetryPolicy:
    """A batch's delivery retries. The wait after a failed try depends on the try's number (a short ramp) and on
    how long the batch has been failing (``failing_for``): at most ``steady_delay_s`` during the first
    ``short_outage_s``, then a tenth of ``failing_for``, capped at ``max_delay_s``. The batch goes to dead letters
    when its first try is ``max_age_s`` old."""

    initial_delay_s: float = 1.0
    max_delay_s: float = 300.0
    max_age_s: float = 86_400.0
    steady_delay_s: float = 10.0  # the longest wait while the failure is short (resumption within 10 s)
    short_outage_s: float = 600.0  # how long a failure counts as short
    share: float = 0.1  # of the failure's length, the wait after that

    def nominal_delay(self, failures: int, failing_for: float) -> float:
        """The wait after the ``failures``-th failed try (1-based) of a batch failing for ``failing_for`` seconds,
        before jitter."""
        ramp = self.initial_delay_s * 2.0 ** min(failures - 1, 64)
        if failing_for < self.short_outage_s:
            wait = min(ramp, self.steady_delay_s)
        else:
            wait = max(min(ramp, self.steady_delay_s), failing_for * self.share)
        return float(min(wait, self.max_delay_s))

    def delay(
        self,
        failures: int,
        failing_for: float,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        wait = _jitter(self.nominal_delay(failures, failing_for), rng)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay_s))
        return wait

    def expired(self, age_s: float) -> bool:
        """Whether a batch first tried ``age_s`` seconds ago is given up (its events become dead letters)."""
        return age_s >= self.max_age_s

    def schedule(self) -> list[float]:
        """Nominal waits between the tries of a batch that keeps failing (tries taking no time), from its first
        try until it is given up: for docs and tests."""
        waits: list[float] = []
        elapsed = 0.0
        while not self.expired(elapsed):
            wait = self.nominal_delay(len(waits) + 1, elapsed)
            waits.append(wait)
            elapsed += wait
        return waits
