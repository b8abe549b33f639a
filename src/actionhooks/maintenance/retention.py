"""One pruning round: what falls out of the retention windows is removed in small chunks.

1. The log: the oldest events received before ``now - events_s`` (or any, oldest first, while the log is over
   ``max_bytes``), ``chunk`` per transaction. In the same transaction each active hook whose cursor is behind the
   removed range has the events it matches (account, types, ``list_id``, filters) counted into its
   ``expired_undelivered``: gone for it, but never silently.
2. Attempts older than ``attempts_s``, and each hook's delivered attempts beyond its newest
   ``KEEP_DELIVERED_ATTEMPTS`` (every attempt's events are already in the hook's delivery counts, kept per 10-second
   period for ``attempts_s``); failed attempts stay for the whole window.
3. Dead letters that failed before ``now - dead_letters_s``.
4. Space: SQLite gives pages back when more than a quarter of the file is free; otherwise freed pages are reused.

Each chunk is one short write transaction on the store's writer; appends queued meanwhile commit between chunks,
so ingest waits at most one chunk (bench/retention.py measures it). A chunk starts at ``Retention.chunk`` rows and
doubles while its work on the writer takes under 50 ms (up to 20 times that), halving above 200 ms: with one chunk
per turn of the writer, pruning keeps pace with a heavy ingest whose group commits are large. A round does at most ``max_chunks`` chunks of
each kind, so the caller can renew its lease between rounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..config import Retention
from ..registry import HookRegistry
from ..stats import active_hooks, hook_query
from ..store.base import Pruned, Store

KEEP_DELIVERED_ATTEMPTS = 1000  # per hook: the newest delivered attempts kept as rows
CHUNK_TARGET_S = 0.1  # a chunk's time on the writer (a commit's fsync is a good part of it)
MAX_CHUNK_GROWTH = 20  # a chunk grows to at most this many times ``Retention.chunk`` rows


@dataclass
class PruneRound:
    events: int = 0
    attempts: int = 0
    dead_letters: int = 0
    expired: dict[int, int] = field(default_factory=dict)  # hook id → events lost to retention this round
    more: bool = False  # a kind had more due than ``max_chunks`` chunks: run again at once


async def prune_round(
    store: Store, hooks: HookRegistry, retention: Retention, now: float | None = None, max_chunks: int = 50
) -> PruneRound:
    now = time.time() if now is None else now
    done = PruneRound()
    queries = [hook_query(h) for h in await active_hooks(store, hooks)]

    async def chunks(prune: Callable[[int], Awaitable[Pruned]]) -> int:
        removed, size = 0, retention.chunk
        for _ in range(max_chunks):
            pruned = await prune(size)
            took = pruned.seconds
            removed += pruned.rows
            # one chunk per turn of the writer: keep each near CHUNK_TARGET_S, so pruning keeps pace with ingest
            # (whose group commits alternate with the chunks) without holding appends up for long
            if pruned.more and took < CHUNK_TARGET_S / 2:
                size = min(size * 2, retention.chunk * MAX_CHUNK_GROWTH)
            elif took > CHUNK_TARGET_S * 2:
                size = max(size // 2, retention.chunk)
            for hook_id, n in pruned.expired.items():
                done.expired[hook_id] = done.expired.get(hook_id, 0) + n
            if not pruned.more:
                return removed
            await asyncio.sleep(0)  # let the appends queued meanwhile go first
        done.more = True
        return removed

    done.events = await chunks(
        lambda c: store.prune_events(now - retention.events_s, retention.max_bytes, queries, c)
    )
    done.attempts = await chunks(
        lambda c: store.prune_attempts(now - retention.attempts_s, KEEP_DELIVERED_ATTEMPTS, c)
    )
    done.dead_letters = await chunks(lambda c: store.prune_dead_letters(now - retention.dead_letters_s, c))
    await chunks(lambda c: store.prune_derive_marks(now, c))  # expired derivation marks (docs/capture.md)
    if done.events or done.attempts or done.dead_letters:
        await store.reclaim_space()
    return done
