"""Whether the database answers. While it does not, work fails fast with ``StoreUnavailable`` and a new attempt is
let through after a back-off (doubling up to ``most_s``), so the store serves again within ``most_s`` of the
database's return, without a restart. One log line per change of state: down, and back."""

from __future__ import annotations

import logging
import math
import threading
import time

from ..errors import StoreUnavailable

log = logging.getLogger("actionhooks.store")


class Availability:
    def __init__(self, engine: str, first_s: float = 0.05, most_s: float = 1.0) -> None:
        self.engine = engine
        self.first_s = first_s
        self.most_s = most_s
        self.down = False  # read without the lock on every unit of work: a stale value costs one probe
        self._lock = threading.Lock()
        self._since = 0.0
        self._delay = first_s
        self._next_try = 0.0
        self._reason = ""

    def gate(self) -> None:
        """Raise ``StoreUnavailable`` while down and the back-off has not passed (else let a probe through)."""
        if not self.down:
            return
        with self._lock:
            wait = self._next_try - time.monotonic()
            if self.down and wait > 0:
                raise StoreUnavailable(self._message(), retry_after=max(1, math.ceil(wait)))

    def failed(self, exc: BaseException) -> StoreUnavailable:
        """A connection or a unit of work failed in a way a retry may cure: down (or still down), back off."""
        now = time.monotonic()
        with self._lock:
            if not self.down:
                self.down = True
                self._since = now
                self._delay = self.first_s
                log.warning("%s store unavailable (%s); retrying with back-off", self.engine, _oneline(exc))
            else:
                self._delay = min(self._delay * 2, self.most_s)
                log.debug("%s store still unavailable (%s)", self.engine, _oneline(exc))
            self._next_try = now + self._delay
            self._reason = _oneline(exc)
            return StoreUnavailable(self._message(), retry_after=max(1, math.ceil(self._delay)))

    def succeeded(self) -> None:
        if not self.down:
            return
        with self._lock:
            if self.down:
                self.down = False
                log.warning(
                    "%s store available again after %.1f s", self.engine, time.monotonic() - self._since
                )

    def _message(self) -> str:
        return f"the {self.engine} store is unavailable ({self._reason}); retry later"


def _oneline(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
