"""Event ids: UUIDv7 (RFC 9562) text, time-sortable and unique across processes.

The 12 bits after the millisecond timestamp are a counter (RFC 9562 §6.2, method 1) so that ids made by one
process within one millisecond still sort in the order they were made; the last 62 bits are random. Ids are
identifiers, not secrets, so the fast ``random`` generator serves (seeded from the OS at import).
"""

from __future__ import annotations

import random
import threading
import time

_rng = random.Random()
_getrandbits = _rng.getrandbits
_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_id() -> str:
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = _getrandbits(10)  # start low: room to count up within the millisecond
        else:
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        high = (ms << 16) | 0x7000 | _counter
    h = f"{high:016x}{0x8000_0000_0000_0000 | _getrandbits(62):016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
