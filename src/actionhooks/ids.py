"""Event ids: UUIDv7 (RFC 9562) text, time-sortable and unique across processes.

The 12 bits after the millisecond timestamp are a counter (RFC 9562 §6.2, method 1), so ids made by one process
sort in the order they were made, even within one millisecond; past 4096 ids in a millisecond the next one is
borrowed. The last 62 bits are random. Ids are identifiers, not secrets, so the fast ``random`` generator serves
(seeded from the OS at import). ``new_ids`` makes many at once: ingest asks for a request's worth.
"""

from __future__ import annotations

import random
import threading
import time

# What an event id may look like (a producer's own or ours): ingest checks it, the JSON Schemas state it.
ID_PATTERN = (
    r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$(?!\n)"  # "$" alone would also match before a final newline in Python
)

_getrandbits = random.Random().getrandbits
_lock = threading.Lock()
_last_ms = 0
_counter = 0
_COUNTER_MAX = 0xFFF


def _reserve(n: int) -> list[tuple[int, int, int]]:
    """Runs of (millisecond, first counter, count) covering ``n`` ids, after every id made before."""
    global _last_ms, _counter
    runs = []
    with _lock:
        now = time.time_ns() // 1_000_000
        if now > _last_ms:
            _last_ms, _counter = now, _getrandbits(10) - 1  # start low: room to count up
        while n:
            if _counter >= _COUNTER_MAX:
                _last_ms, _counter = _last_ms + 1, -1
            take = min(n, _COUNTER_MAX - _counter)
            runs.append((_last_ms, _counter + 1, take))
            _counter += take
            n -= take
    return runs


_COUNTERS = [f"7{c:03x}-" for c in range(_COUNTER_MAX + 1)]  # the version digit and the counter
_VARIANT = {
    d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"
}  # the variant bits (10) and two random ones


def new_ids(n: int) -> list[str]:
    out: list[str] = []
    for ms, first, count in _reserve(n):
        head = f"{ms:012x}"
        prefix = f"{head[:8]}-{head[8:]}-"
        # 64 random bits an id, drawn at once; 62 of them kept (the first hex digit keeps two under the variant)
        random_hex = _getrandbits(64 * count).to_bytes(8 * count, "big").hex()
        for k in range(count):
            r = random_hex[16 * k : 16 * k + 16]
            out.append(f"{prefix}{_COUNTERS[first + k]}{_VARIANT[r[0]]}{r[1:4]}-{r[4:]}")
    return out


def new_id() -> str:
    return new_ids(1)[0]
