"""A public seam for tests: make the store's next writes fail, or hold its writer.

Every store has one :class:`WriteFaults` (``store.faults``); its writer thread calls :meth:`WriteFaults.check`
before each write, which costs one attribute read while nothing is armed. Production code never arms it.
"""

from __future__ import annotations

import threading


class WriteFaults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []
        self._hold: threading.Event | None = None
        self._armed = False

    def fail_next(self, exc: BaseException, times: int = 1) -> None:
        """The next ``times`` writes raise ``exc`` instead of running (nothing of theirs is committed)."""
        with self._lock:
            self._failures += [exc] * times
            self._armed = True

    def hold_writes(self) -> threading.Event:
        """Writes wait (before they start) until the returned event is set."""
        hold = threading.Event()
        with self._lock:
            self._hold = hold
            self._armed = True
        return hold

    def check(self) -> None:
        """Called by the writer thread before each write: wait while held, then raise a queued failure."""
        if not self._armed:
            return
        with self._lock:  # a failure armed while this write is held is for the writes after it
            failure = self._failures.pop(0) if self._failures else None
            hold = self._hold
        if hold is not None:
            hold.wait()
        with self._lock:
            if self._hold is hold:
                self._hold = None
            self._armed = bool(self._failures) or self._hold is not None
        if failure is not None:
            raise failure
